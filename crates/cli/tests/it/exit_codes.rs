//! The exit-code rule, one for every command (docs/cli.md, "Exit codes and errors"): a
//! command that needs an attached sandbox exits 3 for an id with nothing attached, naming
//! the id; removing what is not there succeeds (`detach` of an unknown id,
//! `remove-endpoint` of an interface that is not attached), saying "nothing was attached".

use std::path::Path;

use crate::common::*;

fn sn(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut full = vec!["--state-dir", dir.to_str().expect("utf-8 state dir")];
    full.extend_from_slice(args);
    cli(&full)
}

/// A scratch pod attached by the CLI as `id`, detached on drop (the guard goes last).
fn attached(id: &str) -> (ScratchNet, TempStateDir, DetachOnDrop) {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let (code, _, err) = sn(
        dir.path(),
        &["attach", "--netns", &net.pod_name, "--id", id],
    );
    assert_eq!(code, 0, "{err}");
    let guard = DetachOnDrop::new(dir.path(), id);
    (net, dir, guard)
}

#[test]
fn every_command_that_needs_an_attached_sandbox_exits_3_naming_the_id() {
    // One sandbox is attached, so that the state directory exists and is not empty: the
    // unknown id is unknown among others.
    let (_net, dir, _detach) = attached("known");
    let id = "nosuch-3";
    let commands: &[&[&str]] = &[
        &["status", "--id", id],
        &["status", "--id", id, "--json"],
        &["guest-config", "--id", id],
        &["guest-config", "--id", id, "--format", "kernel-ip"],
        &["guest-config", "--id", id, "--format", "cloud-init"],
        &["vmm-args", "--id", id, "--vmm", "qemu"],
        &["vmm-args", "--id", id, "--vmm", "firecracker", "--json"],
        &["exec", "--id", id, "--vmm", "qemu", "--", "true"],
        &["set-rate", "--id", id, "--rx", "10mbit"],
        &["add-endpoint", "--id", id, "--iface", "eth0"],
        &["remove-endpoint", "--id", id, "--iface", "eth0"],
        &["watch", "--id", id],
    ];
    for args in commands {
        let (code, _, err) = sn(dir.path(), args);
        assert_eq!(code, 3, "{args:?}: {err}");
        assert!(
            err.contains(&format!("sandbox {id}: not attached")),
            "{args:?}: {err}"
        );
    }
    // --json keeps its answer on stdout.
    let (_, out, _) = sn(dir.path(), &["status", "--id", id, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
    assert_eq!(v["attached"], false, "{out}");
}

#[test]
fn removing_what_is_not_there_succeeds() {
    let (_net, dir, _detach) = attached("rm-ok");

    let (code, out, err) = sn(dir.path(), &["detach", "--id", "nosuch-0"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("sandbox nosuch-0: nothing was attached"),
        "{out}"
    );

    let (code, out, err) = sn(
        dir.path(),
        &["remove-endpoint", "--id", "rm-ok", "--iface", "eth9"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("sandbox rm-ok: interface eth9: nothing was attached"),
        "{out}"
    );
    let (code, out, err) = sn(
        dir.path(),
        &[
            "remove-endpoint",
            "--id",
            "rm-ok",
            "--iface",
            "eth9",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        (v["outcome"].as_str(), v["id"].as_str(), v["iface"].as_str()),
        (Some("not-attached"), Some("rm-ok"), Some("eth9")),
        "{out}"
    );
    let (_, out, _) = sn(dir.path(), &["detach", "--id", "nosuch-0", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["outcome"], "not-attached", "{out}");
    // eth0 is still attached: nothing was removed.
    let (code, out, err) = sn(dir.path(), &["status", "--id", "rm-ok", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("tap0_sn"), "{out}");
}
