//! Detach leaves nothing, and is idempotent. Detaching after the netns was deleted works, and
//! a netns re-created under the same name is never touched. The per-sandbox lock keeps
//! concurrent operations on one sandbox apart. The CLI's JSON output and file modes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Barrier;

use crate::common::*;
use sandbox_net::state::StateDir;
use sandbox_net::{AttachOptions, Detached, Error};
use sandbox_net_testkit::scratch::ScratchNet;
use serde_json::Value;

fn options(net: &ScratchNet, dir: &TempStateDir, id: &str) -> AttachOptions {
    let mut opts = AttachOptions::new(net.pod_name.clone(), id);
    opts.state_dir = dir.path().to_path_buf();
    opts
}

fn state_file(dir: &TempStateDir, id: &str) -> std::path::PathBuf {
    dir.path().join(format!("{id}.json"))
}

fn lock_file(dir: &TempStateDir, id: &str) -> std::path::PathBuf {
    dir.path().join(format!("{id}.lock"))
}

fn link_exists(ns: &str, name: &str) -> bool {
    ip_json(ns, &["link", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .any(|l| l["ifname"] == name)
}

fn dir_arg(dir: &TempStateDir) -> String {
    dir.path().display().to_string()
}

#[test]
fn detach_leaves_nothing_and_is_idempotent() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let id = "dt-idem";
    let _cleanup = DetachOnDrop::new(dir.path(), id.to_string());
    let before = snapshot(&net.pod_name);
    sandbox_net::attach(&options(&net, &dir, id)).expect("attach");
    assert!(state_file(&dir, id).exists());
    assert!(lock_file(&dir, id).exists());
    assert_ne!(snapshot(&net.pod_name), before);

    let d = sandbox_net::detach(dir.path(), id).expect("detach");
    assert_eq!(
        d,
        Detached::Detached {
            id: id.into(),
            objects: 5,
            left_alone: vec![],
        }
    );
    assert_eq!(snapshot(&net.pod_name), before);
    assert!(!state_file(&dir, id).exists(), "state file left");
    assert!(!lock_file(&dir, id).exists(), "lock file left");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read state dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "state dir not empty: {left:?}");

    // Again: nothing to do, through the library and the CLI.
    let d = sandbox_net::detach(dir.path(), id).expect("second detach");
    assert_eq!(d, Detached::NotAttached { id: id.into() });
    assert!(
        !lock_file(&dir, id).exists(),
        "lock file left by a no-op detach"
    );
    let (code, out, err) = cli(&["--state-dir", &dir_arg(&dir), "detach", "--id", id]);
    assert_eq!(code, 0, "stdout {out} stderr {err}");
    assert!(out.contains("nothing was attached"), "{out}");
    let (code, out, err) = cli(&[
        "--state-dir",
        &dir_arg(&dir),
        "detach",
        "--id",
        id,
        "--json",
    ]);
    assert_eq!(code, 0, "stdout {out} stderr {err}");
    let v: Value = serde_json::from_str(&out).expect("detach JSON");
    assert_eq!(v["outcome"], "not-attached", "{v}");
    assert_eq!(v["id"], id, "{v}");
    assert!(!lock_file(&dir, id).exists());
    assert_eq!(snapshot(&net.pod_name), before);
}

#[test]
fn detach_after_the_netns_was_deleted() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let id = "dt-gone";
    let _cleanup = DetachOnDrop::new(dir.path(), id.to_string());
    let pod_name = net.pod_name.clone();
    sandbox_net::attach(&options(&net, &dir, id)).expect("attach");
    // Delete both namespaces (what the container runtime does when the pod goes away).
    drop(net);
    assert!(!Path::new("/run/netns").join(&pod_name).exists());

    let st = sandbox_net::status(dir.path(), id)
        .expect("status")
        .expect("still recorded");
    assert!(st.drift, "{st:?}");
    assert!(
        st.problem
            .as_deref()
            .is_some_and(|p| p.contains("no longer exists")),
        "{st:?}"
    );

    let (code, out, err) = cli(&["--state-dir", &dir_arg(&dir), "detach", "--id", id]);
    println!("{out}");
    assert_eq!(code, 0, "stdout {out} stderr {err}");
    assert!(out.contains("no longer exists"), "{out}");
    assert!(out.contains(&pod_name), "{out}");
    assert!(!state_file(&dir, id).exists(), "state file left");
    assert!(!lock_file(&dir, id).exists(), "lock file left");
    assert_eq!(
        sandbox_net::detach(dir.path(), id).expect("detach again"),
        Detached::NotAttached { id: id.into() }
    );
}

#[test]
fn netns_recreated_under_the_same_name_is_not_touched() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let id = "dt-recreated";
    let _cleanup = DetachOnDrop::new(dir.path(), id.to_string());
    let name = net.pod_name.clone();
    sandbox_net::attach(&options(&net, &dir, id)).expect("attach");
    // Delete the name and create a new netns under it. `net.pod` still holds the old netns
    // open, so the new one can't get its inode number.
    run("ip", &["netns", "del", &name]);
    let _recreated = DeleteOnDrop(name.clone());
    run("ip", &["netns", "add", &name]);
    run(
        "ip",
        &[
            "-n", &name, "tuntap", "add", "dev", "tap0_sn", "mode", "tap",
        ],
    );
    let before = snapshot(&name);

    let st = sandbox_net::status(dir.path(), id)
        .expect("status")
        .expect("still recorded");
    assert!(st.drift, "{st:?}");
    let d = sandbox_net::detach(dir.path(), id).expect("detach");
    println!("{d}");
    assert!(
        matches!(&d, Detached::NetnsGone { id: i, .. } if i == id),
        "{d:?}"
    );
    assert!(
        link_exists(&name, "tap0_sn"),
        "the new netns' tap0_sn was removed"
    );
    assert_eq!(snapshot(&name), before, "the new netns was changed");
    assert!(!state_file(&dir, id).exists());
    assert!(!lock_file(&dir, id).exists());
}

#[test]
fn a_held_lock_makes_the_cli_busy() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let id = "dt-lock";
    let _cleanup = DetachOnDrop::new(dir.path(), id.to_string());
    let before = snapshot(&net.pod_name);
    let attach_args = [
        "--state-dir",
        &dir_arg(&dir),
        "attach",
        "--netns",
        &net.pod_name,
        "--id",
        id,
    ]
    .map(String::from);
    let attach_args: Vec<&str> = attach_args.iter().map(String::as_str).collect();

    let store = StateDir::open(dir.path()).expect("open state dir");
    let lock = store.lock(id).expect("take the lock");
    let (code, out, err) = cli(&attach_args);
    assert_eq!(code, 1, "stdout {out} stderr {err}");
    assert!(err.contains("busy"), "{err}");
    assert_eq!(
        snapshot(&net.pod_name),
        before,
        "a busy attach changed the netns"
    );
    assert!(!state_file(&dir, id).exists());
    drop(lock);

    let (code, out, err) = cli(&attach_args);
    assert_eq!(code, 0, "stdout {out} stderr {err}");
    assert!(out.contains("tap0_sn"), "{out}");

    // Detach waits for nobody either: busy while the lock is held, then fine.
    let lock = store.lock(id).expect("take the lock");
    let (code, out, err) = cli(&["--state-dir", &dir_arg(&dir), "detach", "--id", id]);
    assert_eq!(code, 1, "stdout {out} stderr {err}");
    assert!(err.contains("busy"), "{err}");
    assert!(state_file(&dir, id).exists());
    drop(lock);
    let (code, out, err) = cli(&["--state-dir", &dir_arg(&dir), "detach", "--id", id]);
    assert_eq!(code, 0, "stdout {out} stderr {err}");
    assert!(out.contains("detached"), "{out}");
    assert_eq!(snapshot(&net.pod_name), before);
}

/// The end state after a race: attached exactly once, no drift, one tap.
fn assert_attached_once(net: &ScratchNet, dir: &TempStateDir, id: &str, context: &str) {
    let st = sandbox_net::status(dir.path(), id)
        .expect("status")
        .unwrap_or_else(|| panic!("{context}: not attached"));
    assert!(!st.drift, "{context}: {st:?}");
    assert!(
        st.objects.iter().flatten().all(|o| o.present),
        "{context}: {st:?}"
    );
    assert_eq!(
        st.objects.as_ref().map(Vec::len),
        Some(5),
        "{context}: {st:?}"
    );
    let taps: Vec<String> = ip_json(&net.pod_name, &["link", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["ifname"].as_str().map(String::from))
        .filter(|n| n.starts_with("tap"))
        .collect();
    assert_eq!(taps, vec!["tap0_sn".to_string()], "{context}");
    assert_eq!(
        sandbox_net::list(dir.path()).expect("list").len(),
        1,
        "{context}"
    );
}

#[test]
fn concurrent_attaches_of_one_id_exactly_one_wins() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let id = "dt-race";
    let _cleanup = DetachOnDrop::new(dir.path(), id.to_string());
    let before = snapshot(&net.pod_name);
    let opts = options(&net, &dir, id);
    for round in 0..8 {
        let barrier = Barrier::new(2);
        let results: Vec<sandbox_net::Result<sandbox_net::Attachment>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        sandbox_net::attach(&opts)
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("attach thread panicked"))
                .collect()
        });
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "round {round}: {results:?}");
        for r in &results {
            match r {
                Ok(_) | Err(Error::Busy { .. }) | Err(Error::AlreadyAttached { .. }) => {}
                Err(e) => panic!("round {round}: unexpected failure: {e}"),
            }
        }
        let outcome: Vec<&str> = results
            .iter()
            .map(|r| match r {
                Ok(_) => "ok",
                Err(Error::Busy { .. }) => "busy",
                Err(_) => "already attached",
            })
            .collect();
        println!("round {round}: {outcome:?}");
        assert_attached_once(&net, &dir, id, &format!("round {round}"));
        assert!(matches!(
            sandbox_net::detach(dir.path(), id),
            Ok(Detached::Detached { objects: 5, .. })
        ));
        assert_eq!(snapshot(&net.pod_name), before, "round {round}");
    }
}

#[test]
fn concurrent_cli_attaches_of_one_id_exactly_one_wins() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let id = "dt-race-cli";
    let _cleanup = DetachOnDrop::new(dir.path(), id.to_string());
    let before = snapshot(&net.pod_name);
    let state_dir = dir_arg(&dir);
    for round in 0..4 {
        let children: Vec<_> = (0..2)
            .map(|_| {
                Command::new(bin())
                    .args(["--state-dir", &state_dir, "attach"])
                    .args(["--netns", &net.pod_name, "--id", id])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn sandbox-net")
            })
            .collect();
        let outputs: Vec<_> = children
            .into_iter()
            .map(|c| c.wait_with_output().expect("wait for sandbox-net"))
            .collect();
        let codes: Vec<i32> = outputs
            .iter()
            .map(|o| o.status.code().unwrap_or(-1))
            .collect();
        let stderr: Vec<String> = outputs
            .iter()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .collect();
        println!("round {round}: exit codes {codes:?}");
        assert_eq!(
            codes.iter().filter(|&&c| c == 0).count(),
            1,
            "round {round}: {stderr:?}"
        );
        for (code, err) in codes.iter().zip(&stderr) {
            match code {
                0 => {}
                // Busy is an operation failure (1); already attached is the caller's (2).
                1 => assert!(err.contains("busy"), "round {round}: {err}"),
                2 => assert!(err.contains("already attached"), "round {round}: {err}"),
                _ => panic!("round {round}: exit {code}: {err}"),
            }
        }
        assert_attached_once(&net, &dir, id, &format!("CLI round {round}"));
        let (code, out, err) = cli(&["--state-dir", &state_dir, "detach", "--id", id]);
        assert_eq!(code, 0, "stdout {out} stderr {err}");
        assert_eq!(snapshot(&net.pod_name), before, "CLI round {round}");
    }
}

#[test]
fn cli_json_attach_and_detach_and_file_modes() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let id = "dt-cli";
    let _cleanup = DetachOnDrop::new(dir.path(), id.to_string());
    let before = snapshot(&net.pod_name);
    let state_dir = dir_arg(&dir);
    assert!(!dir.path().exists(), "the CLI is to create the state dir");
    let (code, out, err) = cli(&[
        "--state-dir",
        &state_dir,
        "attach",
        "--netns",
        &net.pod_name,
        "--id",
        id,
        "--json",
    ]);
    assert_eq!(code, 0, "stdout {out} stderr {err}");
    let a: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("attach JSON {e}: {out}"));
    assert_eq!(a["id"], id, "{a}");
    assert_eq!(a["model"], "tcfilter", "{a}");
    assert_eq!(a["netns"], format!("/run/netns/{}", net.pod_name), "{a}");
    let eps = a["endpoints"].as_array().expect("endpoints");
    assert_eq!(eps.len(), 1, "{a}");
    assert_eq!(eps[0]["name"], "eth0", "{a}");
    assert_eq!(eps[0]["tap"], "tap0_sn", "{a}");
    assert_eq!(eps[0]["mac"], "02:77:00:00:00:02", "{a}");
    assert_eq!(eps[0]["queues"], 1, "{a}");
    assert_eq!(eps[0]["mtu"], 1500, "{a}");
    let addrs: Vec<&str> = a["guest"]["interfaces"][0]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x["address"].as_str())
        .collect();
    assert!(
        addrs.contains(&"10.77.0.2") && addrs.contains(&"fd77::2"),
        "{a}"
    );

    let mode = |p: &Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode(dir.path()), 0o700, "state dir mode");
    assert_eq!(mode(&state_file(&dir, id)), 0o600, "state file mode");
    assert_eq!(mode(&lock_file(&dir, id)), 0o600, "lock file mode");

    // The state file agrees with what the CLI printed.
    let saved = StateDir::open(dir.path())
        .expect("open")
        .load(id)
        .expect("load")
        .expect("state");
    assert_eq!(saved.endpoints.len(), 1);
    assert_eq!(saved.endpoints[0].device(), Some("tap0_sn"));
    assert_eq!(saved.journal.len(), 5);

    let (code, out, err) = cli(&["--state-dir", &state_dir, "status", "--id", id, "--json"]);
    assert_eq!(code, 0, "stdout {out} stderr {err}");
    let st: Value = serde_json::from_str(&out).expect("status JSON");
    assert_eq!(st["drift"], false, "{st}");
    assert_eq!(st["phase"], "attached", "{st}");

    let (code, out, err) = cli(&["--state-dir", &state_dir, "detach", "--id", id, "--json"]);
    assert_eq!(code, 0, "stdout {out} stderr {err}");
    let d: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("detach JSON {e}: {out}"));
    assert_eq!(d["outcome"], "detached", "{d}");
    assert_eq!(d["id"], id, "{d}");
    assert_eq!(d["objects"], 5, "{d}");
    assert_eq!(snapshot(&net.pod_name), before);
    assert!(!state_file(&dir, id).exists());
    assert!(!lock_file(&dir, id).exists());
    assert_eq!(mode(dir.path()), 0o700, "state dir mode after detach");

    // Not attached any more: exit 3 (docs/cli.md), the JSON answer still on stdout.
    let (code, out, err) = cli(&["--state-dir", &state_dir, "status", "--id", id, "--json"]);
    assert_eq!(code, 3, "stdout {out} stderr {err}");
    let st: Value = serde_json::from_str(&out).expect("status JSON");
    assert_eq!(st["attached"], false, "{st}");
    assert!(err.contains("not attached"), "{err}");
}
