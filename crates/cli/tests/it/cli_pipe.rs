//! Issue #17, CLI item 1: a reader that closes stdout early (`status | true`,
//! `vmm-args | head -1`, `attach --json | true`) is not a failure. The command ends quietly
//! with its own exit code (attach: 0, and still attached), never a panic (101) nor a death
//! by SIGPIPE.

use std::process::{Command, Stdio};

use crate::common::*;

/// Run the CLI with a stdout whose reading end is already closed: every write fails with
/// EPIPE, deterministically. Returns (exit code, stderr).
fn with_closed_stdout(args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(bin())
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("run the CLI");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_every_command_quietly_with_its_own_exit_code() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let sd = dir.path().to_str().expect("utf-8");
    let id = unique_name("pipe");

    let (code, err) = with_closed_stdout(&[
        "--state-dir",
        sd,
        "attach",
        "--netns",
        &net.pod_name,
        "--id",
        &id,
        "--json",
    ]);
    let _guard = DetachOnDrop::new(dir.path(), id.clone());
    assert_eq!(code, Some(0), "attach | true: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        link_names(&net.pod_name).iter().any(|n| n == "tap0_sn"),
        "still attached"
    );

    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["status", "--id", &id],
        vec!["vmm-args", "--id", &id, "--vmm", "qemu"],
        vec!["guest-config", "--id", &id],
        vec!["guest-config", "--id", &id, "--format", "kernel-ip"],
        vec!["attach", "--netns", &net.pod_name, "--id", &id, "--json"],
    ] {
        let mut full = vec!["--state-dir", sd];
        full.extend(&args);
        let (code, err) = with_closed_stdout(&full);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
        // The operation's own code: a second attach is refused (2), the others succeed.
        let expected = if args[0] == "attach" { 2 } else { 0 };
        assert_eq!(code, Some(expected), "{args:?}: {err}");
    }

    let (code, err) = with_closed_stdout(&["--state-dir", sd, "detach", "--id", &id]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!link_names(&net.pod_name).iter().any(|n| n == "tap0_sn"));
}

/// `watch` whose reader went away stops at its next event, with exit 0 (a stop asked
/// for), and what it was doing is done: the interface that made the event is attached.
#[test]
fn watch_stops_quietly_when_its_reader_goes_away() {
    let _serial = serial();
    let mut net = scratch(1);
    let dir = TempStateDir::new();
    let id = unique_name("pipe-watch");
    let _guard = DetachOnDrop::new(dir.path(), id.clone());
    let (code, _, err) = cli_attach(&dir, &net.pod_name, &id, &[]);
    assert_eq!(code, 0, "{err}");
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut child = Command::new(bin())
        .args(["--state-dir", dir.path().to_str().expect("utf-8")])
        .args(["watch", "--id", &id, "--json"])
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    std::thread::sleep(std::time::Duration::from_millis(500));
    net.add_link(1, 1500, false).expect("add eth1");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("watch did not stop when its reader went away");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("stderr");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
    let state = sandbox_net::status(dir.path(), &id)
        .expect("status")
        .expect("attached");
    assert!(
        state.endpoints.iter().any(|e| e.name == "eth1"),
        "{state:?}"
    );
}

/// `command` with its stdin and stdout closed, as a careless supervisor may start it.
fn with_closed_stdin_and_stdout(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the child only calls close(2), which is
    // async-signal-safe; it closes stdin and stdout of the child alone.
    unsafe {
        command.pre_exec(|| {
            libc::close(0);
            libc::close(1);
            Ok(())
        })
    }
}

/// A command started with its stdin and stdout closed opens files and sockets as it
/// works: none of them may become fd 1 and take the command's output. The closed fds are
/// opened on /dev/null at start (`start.rs`): the attach succeeds and its state file is
/// what it should be, and a running `watch` (which holds its netlink socket and prints
/// events) has /dev/null as its fds 0 and 1.
#[test]
fn a_command_started_with_its_standard_fds_closed_writes_into_no_file_it_opens() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let sd = dir.path().to_str().expect("utf-8");
    let id = unique_name("closed-fds");
    let _guard = DetachOnDrop::new(dir.path(), id.clone());
    let out = with_closed_stdin_and_stdout(
        Command::new(bin())
            .args(["--state-dir", sd, "attach", "--netns", &net.pod_name])
            .args(["--id", &id, "--json"])
            .stderr(Stdio::piped()),
    )
    .output()
    .expect("run attach");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let parsed = state_value(&dir.path().join(format!("{id}.json")));
    assert_eq!(parsed["id"], id.as_str(), "{parsed}");

    let watch = with_closed_stdin_and_stdout(
        Command::new(bin())
            .args(["--state-dir", sd, "watch", "--id", &id, "--json"])
            .stderr(Stdio::piped()),
    )
    .spawn()
    .expect("spawn watch");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let fds: Vec<String> = [0, 1]
        .iter()
        .map(|fd| {
            std::fs::read_link(format!("/proc/{}/fd/{fd}", watch.id()))
                .map(|p| p.display().to_string())
                .unwrap_or_else(|e| format!("fd {fd}: {e}"))
        })
        .collect();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(watch.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM watch");
    let out = watch.wait_with_output().expect("wait for watch");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(fds, ["/dev/null", "/dev/null"], "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");

    let (code, _, err) = cli_at(&dir, &["detach", "--id", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(!link_names(&net.pod_name).iter().any(|n| n == "tap0_sn"));
}
