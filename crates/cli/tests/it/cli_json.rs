//! Issue #17, CLI items 7, 8 and 9: `--help` documents `--id`, `--iface` and `--json`
//! wherever they are, and `exec` offers only the VMM it supports; `guest-config --format
//! json` carries the `--dns` nameservers, and `guest-config --json` is the same; the JSON
//! shapes share their names (`id`, `endpoint`, `guest`); gc calls a tap a tap, removes the
//! lock files of ids with no state (a regular file it could lock, never through a symlink,
//! never a held one); unknown ids leave no lock file; logs written to a pipe carry no
//! colour.

use std::os::unix::fs::symlink;
use std::process::Command;

use serde_json::Value;

use crate::common::*;

/// The help line of `flag` in `sandbox-net SUBCOMMAND -h` (one line per option).
fn help_line(subcommand: &str, flag: &str) -> Option<String> {
    let (code, out, err) = cli(&[subcommand, "-h"]);
    assert_eq!(code, 0, "{subcommand} -h: {err}");
    out.lines()
        .find(|l| l.trim_start().split([' ', ',']).any(|word| word == flag))
        .map(String::from)
}

#[test]
fn every_subcommand_documents_id_iface_and_json() {
    for subcommand in [
        "attach",
        "add-endpoint",
        "remove-endpoint",
        "set-rate",
        "detach",
        "gc",
        "status",
        "guest-config",
        "vmm-args",
        "exec",
        "watch",
    ] {
        for flag in ["--id", "--iface", "--json"] {
            let Some(line) = help_line(subcommand, flag) else {
                continue;
            };
            // "  --id <ID>  The sandbox id": text after the flag and its value name.
            let words: Vec<&str> = line.split_whitespace().collect();
            let described = words.iter().skip(1).any(|w| !w.starts_with('<'));
            assert!(described, "{subcommand} {flag} is undocumented: {line:?}");
        }
    }
    // Each of these has all three (status and watch have no --iface).
    for subcommand in ["add-endpoint", "remove-endpoint", "set-rate"] {
        for flag in ["--id", "--iface", "--json"] {
            assert!(help_line(subcommand, flag).is_some(), "{subcommand} {flag}");
        }
    }
    assert!(help_line("guest-config", "--json").is_some());

    // exec offers what it supports, and refuses the others as bad usage.
    let (_, help, _) = cli(&["exec", "--help"]);
    assert!(help.contains("qemu"), "{help}");
    assert!(!help.contains("firecracker"), "{help}");
    assert!(!help.contains("cloud-hypervisor"), "{help}");
    let (code, _, err) = cli(&["exec", "--id", "a", "--vmm", "firecracker", "--", "x"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn guest_config_json_carries_the_nameservers_and_json_is_the_same() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let id = unique_name("gc-dns");
    let _cleanup = DetachOnDrop::new(dir.path(), id.clone());
    let (code, _, err) = cli_attach(
        &dir,
        &net.pod_name,
        &id,
        &["--dns", "10.77.0.53", "--dns", "fd77::53"],
    );
    assert_eq!(code, 0, "{err}");
    let (code, format_json, err) = cli_at(&dir, &["guest-config", "--id", &id, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&format_json).expect("guest JSON");
    assert_eq!(
        v["nameservers"],
        serde_json::json!(["10.77.0.53", "fd77::53"])
    );
    assert_eq!(v["interfaces"][0]["name"], "eth0", "{v}");
    let (code, json, err) = cli_at(&dir, &["guest-config", "--id", &id, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json, format_json);
    let (code, _, err) = cli_at(
        &dir,
        &[
            "guest-config",
            "--id",
            &id,
            "--json",
            "--format",
            "kernel-ip",
        ],
    );
    assert_eq!(code, 2, "--json with another format is bad usage: {err}");
    // The other formats carry them too, as before.
    let (_, cloud, _) = cli_at(
        &dir,
        &["guest-config", "--id", &id, "--format", "cloud-init"],
    );
    assert!(
        cloud.contains("10.77.0.53") && cloud.contains("fd77::53"),
        "{cloud}"
    );
}

#[test]
fn json_shapes_share_their_names() {
    let net = scratch(2);
    let dir = TempStateDir::new();
    let id = unique_name("shapes");
    let _cleanup = DetachOnDrop::new(dir.path(), id.clone());
    let (code, out, err) = cli_attach(&dir, &net.pod_name, &id, &["--iface", "eth0", "--json"]);
    assert_eq!(code, 0, "{err}");
    let attached: Value = serde_json::from_str(&out).expect("attach JSON");
    let (_, out, _) = cli_at(
        &dir,
        &["add-endpoint", "--id", &id, "--iface", "eth1", "--json"],
    );
    let added: Value = serde_json::from_str(&out).expect("add-endpoint JSON");
    let (_, out, _) = cli_at(
        &dir,
        &["remove-endpoint", "--id", &id, "--iface", "eth1", "--json"],
    );
    let removed: Value = serde_json::from_str(&out).expect("remove-endpoint JSON");
    let (_, out, _) = cli_at(
        &dir,
        &["set-rate", "--id", &id, "--rx-rate", "1mbit", "--json"],
    );
    let rated: Value = serde_json::from_str(&out).expect("set-rate JSON");
    let (_, out, _) = cli_at(&dir, &["status", "--id", &id, "--json"]);
    let status: Value = serde_json::from_str(&out).expect("status JSON");
    let (_, out, _) = cli_at(&dir, &["detach", "--id", &id, "--json"]);
    let detached: Value = serde_json::from_str(&out).expect("detach JSON");
    for v in [&attached, &added, &removed, &rated, &status, &detached] {
        assert_eq!(v["id"], id.as_str(), "every object names its sandbox: {v}");
    }
    for v in [&added, &removed] {
        assert_eq!(v["endpoint"]["name"], "eth1", "{v}");
        assert!(v["guest"]["interfaces"].is_array(), "{v}");
    }
    assert!(attached["guest"]["interfaces"].is_array());
    assert_eq!(attached["endpoints"][0]["name"], "eth0");
    assert_eq!(status["endpoints"][0]["name"], "eth0");
    // set-rate's limits are status's limits.
    assert_eq!(rated["limits"], status["limits"], "{rated} {status}");
    assert_eq!(attached["rate_limits"]["rx_rate_bps"], Value::Null);
    assert_eq!(rated["rate_limits"]["rx_rate_bps"], 1_000_000);
}

#[test]
fn gc_calls_a_tap_a_tap_and_removes_stale_lock_files_safely() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let id = unique_name("locks");
    let _cleanup = DetachOnDrop::new(dir.path(), id.clone());
    let (code, _, err) = cli_attach(&dir, &net.pod_name, &id, &[]);
    assert_eq!(code, 0, "{err}");

    // Unknown ids leave no lock file, whatever the command.
    for args in [
        &["detach", "--id", "nope"][..],
        &["set-rate", "--id", "nope", "--rx-rate", "1mbit"][..],
        &["add-endpoint", "--id", "nope", "--iface", "eth0"][..],
        &["remove-endpoint", "--id", "nope", "--iface", "eth0"][..],
        &["status", "--id", "nope"][..],
        &["watch", "--id", "nope"][..],
    ] {
        cli_at(&dir, args);
        assert!(!dir.path().join("nope.lock").exists(), "{args:?}");
    }

    // Left behind by an operation killed before it cleaned up: a plain one, one that
    // is held, one that is a symlink (to a file that must survive), and a sandbox's own.
    let d = dir.path();
    std::fs::write(d.join("ghost.lock"), "").expect("ghost");
    let held = std::fs::File::create(d.join("held.lock")).expect("held");
    held.try_lock().expect("hold it");
    let target = TempDir::new("snt-lock-target");
    let precious = target.join("precious");
    std::fs::write(&precious, "keep").expect("target");
    symlink(&precious, d.join("evil.lock")).expect("symlink");

    let (code, out, err) = cli_at(&dir, &["gc", "--dry-run", "--json"]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).expect("gc JSON");
    assert!(
        report["lock_files"]
            .as_array()
            .is_some_and(|l| l.contains(&Value::from("ghost.lock")))
    );
    assert!(d.join("ghost.lock").exists(), "a dry run removes nothing");

    let (_, out, err) = cli_at(&dir, &["gc", "--json"]);
    let report: Value = serde_json::from_str(&out).expect("gc JSON");
    println!("{report}");
    assert_eq!(
        report["lock_files"],
        serde_json::json!(["ghost.lock"]),
        "{err}"
    );
    assert!(!d.join("ghost.lock").exists());
    assert!(d.join("held.lock").exists(), "a held lock stays");
    assert!(
        std::fs::symlink_metadata(d.join("evil.lock")).is_ok_and(|m| m.file_type().is_symlink()),
        "the symlink is left alone"
    );
    assert_eq!(std::fs::read_to_string(&precious).expect("target"), "keep");
    let skipped = report["skipped"].to_string();
    assert!(
        skipped.contains("held") && skipped.contains("busy"),
        "{skipped}"
    );
    assert!(skipped.contains("evil.lock"), "{skipped}");
    drop(held);
    std::fs::remove_file(d.join("evil.lock")).expect("rm symlink");
    std::fs::remove_file(d.join("held.lock")).expect("rm held");

    // An orphan tap is reported as a tap: forget the state, keep the kernel objects.
    std::fs::remove_file(d.join(format!("{id}.json"))).expect("forget the state");
    let pod = net.pod_name.as_str();
    let (_, out, _) = cli_at(&dir, &["gc", "--dry-run", "--netns", pod]);
    assert!(out.contains("would remove orphan tap tap0_sn"), "{out}");
    assert!(!out.contains("tun"), "{out}");
    let (_, out, _) = cli_at(&dir, &["gc", "--json", "--netns", pod]);
    let report: Value = serde_json::from_str(&out).expect("gc JSON");
    assert_eq!(report["links"][0]["name"], "tap0_sn", "{report}");
    assert_eq!(report["links"][0]["kind"], "tap", "{report}");
}

#[test]
fn logs_to_a_pipe_carry_no_colour() {
    let dir = TempStateDir::new();
    let out = Command::new(bin())
        .args(["--state-dir", dir.path().to_str().expect("utf-8"), "gc"])
        .env("SANDBOX_NET_LOG", "debug")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.is_empty(), "debug logs expected");
    assert!(!err.contains('\u{1b}'), "{err:?}");
}
