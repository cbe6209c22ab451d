//! Bad input corpus: every case is listed here. Each exits with code 2, names the problem
//! on stderr, prints nothing on stdout, and changes nothing: the pod netns is as it was
//! (iproute2 snapshot) and every state directory involved holds the same files with the
//! same contents (no state, temp or lock file appears, a corrupt state file is left as it
//! is). The table covers netns paths, ids, models, queues, rates, interface names, state
//! directories and state files; the tests after it cover an unsupported interface, a netns
//! with no usable interface, and attaching twice.

use std::path::{Path, PathBuf};

use crate::common::{
    DetachOnDrop, ScratchNet, TempDir, TempStateDir, cli, listing, run, scratch, settle, snapshot,
    unique_name,
};
use serde_json::Value;

/// A state directory that exists (mode 0700, as sandbox-net makes it) and starts empty.
fn state_dir() -> TempStateDir {
    use std::os::unix::fs::DirBuilderExt;
    let state = TempStateDir::new();
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(state.path())
        .expect("create state dir");
    state
}

fn dir_str(state: &TempStateDir) -> &str {
    state.path().to_str().expect("utf-8 state dir")
}

/// One bad invocation: `sandbox-net --state-dir DIR ARGS` (ARGS start with the command).
struct Case {
    what: &'static str,
    args: Vec<String>,
    /// Run the CLI inside this netns (via nsenter) instead of the test's own.
    inside: Option<String>,
    /// Use this state directory instead of the shared empty one.
    state_dir: Option<PathBuf>,
    /// Every one of these must appear on stderr.
    stderr: Vec<String>,
}

fn case(what: &'static str, args: &[&str], stderr: &[&str]) -> Case {
    Case {
        what,
        args: args.iter().map(|s| s.to_string()).collect(),
        inside: None,
        state_dir: None,
        stderr: stderr.iter().map(|s| s.to_string()).collect(),
    }
}

/// An `attach` case.
fn attach_case(what: &'static str, args: &[&str], stderr: &[&str]) -> Case {
    let mut full = vec!["attach"];
    full.extend_from_slice(args);
    case(what, &full, stderr)
}

/// What a state directory holds: its type (a symlink is followed once and its target
/// listed too), and every file's name and contents.
fn fingerprint(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => {
            let target = std::fs::read_link(dir).expect("read state dir symlink");
            out.push(format!("symlink -> {}", target.display()));
            dirs.push(target);
        }
        Ok(m) => out.push(format!(
            "{} mode {:o}",
            if m.is_dir() { "dir" } else { "file" },
            std::os::unix::fs::PermissionsExt::mode(&m.permissions())
        )),
        Err(_) => out.push("absent".into()),
    }
    for d in dirs {
        for name in listing(&d) {
            let contents = std::fs::read(d.join(&name)).unwrap_or_default();
            out.push(format!(
                "{}/{name}: {}",
                d.display(),
                String::from_utf8_lossy(&contents)
            ));
        }
    }
    out
}

/// Run one case; the problems found, if any.
fn check(case: &Case, pod: &str, state: &TempStateDir) -> Vec<String> {
    let dir = case.state_dir.as_deref().unwrap_or(state.path());
    let before = snapshot(pod);
    let files = fingerprint(dir);
    let mut args: Vec<String> = vec!["--state-dir".into(), dir.display().to_string()];
    args.extend(case.args.iter().cloned());
    let (code, stdout, stderr) = match &case.inside {
        None => {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            cli(&refs)
        }
        Some(ns) => {
            let out = std::process::Command::new("nsenter")
                .arg(format!("--net=/run/netns/{ns}"))
                .arg("--")
                .arg(crate::common::bin())
                .args(&args)
                .output()
                .expect("run nsenter");
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    println!(
        "case {:?}: {:?} -> exit {code}\n  stderr: {}",
        case.what,
        case.args,
        stderr.trim_end().replace('\n', "\n          ")
    );
    let mut problems = Vec::new();
    if code != 2 {
        problems.push(format!("{}: exit {code}, expected 2", case.what));
    }
    for needle in &case.stderr {
        if !stderr.contains(needle.as_str()) {
            problems.push(format!("{}: stderr lacks {needle:?}: {stderr}", case.what));
        }
    }
    if !stdout.trim().is_empty() {
        problems.push(format!("{}: printed on stdout: {stdout}", case.what));
    }
    if snapshot(pod) != before {
        problems.push(format!("{}: the pod netns changed", case.what));
    }
    let after = fingerprint(dir);
    if after != files {
        problems.push(format!(
            "{}: the state dir changed: {files:?} -> {after:?}",
            case.what
        ));
    }
    problems
}

fn run_cases(cases: &[Case], pod: &str, state: &TempStateDir) {
    let problems: Vec<String> = cases.iter().flat_map(|c| check(c, pod, state)).collect();
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// State directories that hold a bad state file for sandbox `bad` (next to its lock file,
/// as an attach leaves them): not JSON, cut off halfway, and of a future version.
fn bad_state_dirs(tmp: &TempDir) -> [(&'static str, PathBuf); 3] {
    use std::os::unix::fs::DirBuilderExt;
    let good = r#"{"version": 1, "id": "bad", "netns": "pod", "netns_path": "/run/netns/pod", "netns_id": {"dev": 4, "ino": 1}, "model": "tcfilter", "phase": "attached", "endpoints": [], "guest": {"interfaces": [], "routes": [], "neighbors": []}, "journal": []}"#;
    let cut = &good[..good.len() / 2];
    let future = good.replace(r#""version": 1"#, r#""version": 99"#);
    let make = |name: &str, text: &str| {
        let dir = tmp.0.join(name);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .expect("create state dir");
        std::fs::write(dir.join("bad.json"), text).expect("write state file");
        std::fs::write(dir.join("bad.lock"), "").expect("write lock file");
        dir
    };
    [
        ("not JSON", make("corrupt", "this is not JSON {")),
        ("truncated", make("truncated", cut)),
        ("future version", make("future", &future)),
    ]
}

#[test]
fn bad_input_corpus_exits_2_and_changes_nothing() {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let net = scratch(1);
    let pod = net.pod_name.clone();
    settle(&pod);
    let state = state_dir();
    let tmp = TempDir::new("snt-bad");
    let file = tmp.0.join("not-a-netns");
    std::fs::write(&file, "").expect("create regular file");
    let file = file.to_str().expect("utf-8").to_string();
    let dir = tmp.0.to_str().expect("utf-8").to_string();
    let own_link = tmp.0.join("own-netns-link");
    std::os::unix::fs::symlink("/proc/self/ns/net", &own_link).expect("symlink");
    let own_link = own_link.to_str().expect("utf-8").to_string();
    let missing = unique_name("snt-missing");
    assert!(!Path::new("/run/netns").join(&missing).exists());
    let long_id = "a".repeat(65);
    let long_iface = "a".repeat(16);
    let p = pod.as_str();
    // State directories that are refused: a symlink (to a good directory), world-writable,
    // a regular file.
    let real = tmp.0.join("real-state");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&real)
        .expect("create state dir");
    let symlinked = tmp.0.join("symlinked-state");
    std::os::unix::fs::symlink(&real, &symlinked).expect("symlink state dir");
    let open = tmp.0.join("world-writable-state");
    std::fs::create_dir(&open).expect("create state dir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod 0777");
    let plain_file = tmp.0.join("state-is-a-file");
    std::fs::write(&plain_file, "").expect("create file");

    let mut cases = vec![
        // Netns paths.
        attach_case(
            "netns is a regular file",
            &["--netns", &file, "--id", "a"],
            &[&file, "not a namespace file"],
        ),
        attach_case(
            "netns is a directory",
            &["--netns", &dir, "--id", "a"],
            &[&dir, "not a namespace file"],
        ),
        attach_case(
            "netns is a mount namespace",
            &["--netns", "/proc/self/ns/mnt", "--id", "a"],
            &["/proc/self/ns/mnt", "not a network namespace"],
        ),
        attach_case(
            "netns name does not exist",
            &["--netns", &missing, "--id", "a"],
            &[&missing, "does not exist"],
        ),
        attach_case(
            "empty netns",
            &["--netns", "", "--id", "a"],
            &["empty netns argument"],
        ),
        attach_case(
            "netns name ..",
            &["--netns", "..", "--id", "a"],
            &["netns ..", "not a valid netns name"],
        ),
        // Ids.
        attach_case(
            "empty id",
            &["--netns", p, "--id", ""],
            &["sandbox id \"\"", "empty"],
        ),
        attach_case(
            "id ..",
            &["--netns", p, "--id", ".."],
            &["sandbox id \"..\"", "must start with a letter or digit"],
        ),
        attach_case(
            "id with a slash",
            &["--netns", p, "--id", "a/b"],
            &["sandbox id \"a/b\"", "may contain only"],
        ),
        attach_case(
            "id of 65 characters",
            &["--netns", p, "--id", &long_id],
            &[&long_id, "longer than 64 characters"],
        ),
        attach_case(
            "id starting with a dash",
            &["--netns", p, "--id=-x"],
            &["sandbox id \"-x\"", "must start with a letter or digit"],
        ),
        // Given as a separate word, clap takes "-x" for an option and refuses it itself.
        attach_case(
            "id starting with a dash, as its own word",
            &["--netns", p, "--id", "-x"],
            &["'-x'"],
        ),
        attach_case(
            "id with a space",
            &["--netns", p, "--id", "a b"],
            &["sandbox id \"a b\"", "may contain only"],
        ),
        attach_case(
            "id with a non-ASCII letter",
            &["--netns", p, "--id", "pod-ä"],
            &["sandbox id \"pod-ä\"", "may contain only"],
        ),
        attach_case(
            "hidden-file id",
            &["--netns", p, "--id", ".hidden"],
            &[
                "sandbox id \".hidden\"",
                "must start with a letter or digit",
            ],
        ),
        case(
            "detach with id ..",
            &["detach", "--id", ".."],
            &["sandbox id \"..\""],
        ),
        case(
            "status with id a/b",
            &["status", "--id", "a/b"],
            &["sandbox id \"a/b\""],
        ),
        // Models.
        attach_case(
            "unknown model",
            &["--netns", p, "--id", "a", "--model", "bogus"],
            &["model \"bogus\"", "unknown model"],
        ),
        attach_case(
            "empty model",
            &["--netns", p, "--id", "a", "--model", ""],
            &["model \"\"", "unknown model"],
        ),
        attach_case(
            "model in capitals",
            &["--netns", p, "--id", "a", "--model", "TCFILTER"],
            &["model \"TCFILTER\"", "unknown model"],
        ),
        // Queues.
        attach_case(
            "zero queues",
            &["--netns", p, "--id", "a", "--queues", "0"],
            &["queue count 0", "must be between 1 and"],
        ),
        attach_case(
            "too many queues",
            &["--netns", p, "--id", "a", "--queues", "1025"],
            &["queue count 1025", "must be between 1 and"],
        ),
        attach_case(
            "queues not a number",
            &["--netns", p, "--id", "a", "--queues", "many"],
            &["'many'", "--queues"],
        ),
        // Rates.
        attach_case(
            "zero rate",
            &["--netns", p, "--id", "a", "--rx-rate", "0"],
            &["rate \"0\"", "above 0"],
        ),
        attach_case(
            "rate that is a word",
            &["--netns", p, "--id", "a", "--tx-rate", "fast"],
            &["rate \"fast\"", "is not a rate"],
        ),
        attach_case(
            "negative rate",
            &["--netns", p, "--id", "a", "--rx-rate", "-5mbit"],
            &["rate \"-5mbit\"", "is not a rate"],
        ),
        attach_case(
            "rate too large",
            &[
                "--netns",
                p,
                "--id",
                "a",
                "--tx-rate",
                "99999999999999999999tbit",
            ],
            &["99999999999999999999tbit", "too large"],
        ),
        case(
            "set-rate with a bad rate",
            &["set-rate", "--id", "a", "--rx", "1..2mbit"],
            &["rate \"1..2mbit\"", "is not a rate"],
        ),
        case(
            "set-rate with no change",
            &["set-rate", "--id", "a"],
            &["give --rx-rate and/or --tx-rate"],
        ),
        // Interface names.
        attach_case(
            "interface name too long",
            &["--netns", p, "--id", "a", "--iface", &long_iface],
            &[&long_iface, "must be 1 to 15 bytes long"],
        ),
        attach_case(
            "interface that does not exist",
            &["--netns", p, "--id", "a", "--iface", "eth9"],
            &["eth9", "no such interface"],
        ),
        case(
            "add-endpoint with a bad interface name",
            &["add-endpoint", "--id", "a", "--iface", "a/b"],
            &["interface name \"a/b\""],
        ),
        attach_case(
            "vhost-user dir that is not a directory",
            &["--netns", p, "--id", "a", "--vhost-user-dir", &file],
            &[&file, "is not a directory"],
        ),
    ];
    // State directories.
    for (what, dir, needle) in [
        ("state dir is a symlink", &symlinked, "is a symlink"),
        ("state dir is world-writable", &open, "is world-writable"),
        (
            "state dir is a regular file",
            &plain_file,
            "is not a directory",
        ),
    ] {
        cases.push(Case {
            state_dir: Some(dir.clone()),
            ..attach_case(what, &["--netns", p, "--id", "a"], &[needle])
        });
    }
    // Bad state files, for detach, status and set-rate.
    let bad_dirs = bad_state_dirs(&tmp);
    for (what, dir) in &bad_dirs {
        let needle = if *what == "future version" {
            "version 99 is not supported"
        } else {
            "bad.json"
        };
        for (command, label) in [
            (&["detach", "--id", "bad"][..], "detach"),
            (&["status", "--id", "bad"][..], "status"),
            (
                &["set-rate", "--id", "bad", "--rx", "1mbit"][..],
                "set-rate",
            ),
        ] {
            let what: &'static str =
                Box::leak(format!("{label}: state file {what}").into_boxed_str());
            cases.push(Case {
                state_dir: Some(dir.clone()),
                ..case(what, command, &[needle])
            });
        }
    }
    // The caller's own netns, by its /proc path and through a symlink. This is how refusing
    // the host netns is tested here: PID 1's netns (/proc/1/ns/net) is unreadable on this
    // machine, so only the own-netns guard can be exercised. The CLI runs inside the scratch
    // pod netns (nsenter), so its own netns is the pod: were the guard broken, the attach
    // would land in the scratch netns and fail the test, never in the host's.
    for (what, netns) in [
        ("the caller's own netns", "/proc/self/ns/net"),
        ("a symlink to the caller's own netns", own_link.as_str()),
    ] {
        cases.push(Case {
            inside: Some(pod.clone()),
            ..attach_case(
                what,
                &["--netns", netns, "--id", "a"],
                &[netns, "caller's own network namespace"],
            )
        });
    }
    println!("{} cases", cases.len());
    assert!(cases.len() >= 30);
    run_cases(&cases, &pod, &state);
}

#[test]
fn an_unsupported_interface_is_named_with_its_kind() {
    let net = scratch(1);
    let pod = net.pod_name.clone();
    for args in [
        &["link", "add", "br0", "type", "bridge"][..],
        &["addr", "add", "10.99.1.1/24", "dev", "br0"],
        &["link", "set", "br0", "up"],
    ] {
        let mut full = vec!["-n", pod.as_str()];
        full.extend_from_slice(args);
        run("ip", &full);
    }
    settle(&pod);
    let state = state_dir();
    let cases = [attach_case(
        "a bridge with an address",
        &["--netns", &pod, "--id", "br"],
        &["br0", "bridge"],
    )];
    run_cases(&cases, &pod, &state);
}

#[test]
fn a_netns_without_a_usable_interface_is_refused() {
    let net = ScratchNet::new("snt").expect("create scratch namespaces");
    let pod = net.pod_name.clone();
    settle(&pod);
    let state = state_dir();
    let cases = [attach_case(
        "only loopback",
        &["--netns", &pod, "--id", "empty"],
        &[&pod, "no usable interface"],
    )];
    run_cases(&cases, &pod, &state);
}

#[test]
fn attaching_the_same_id_twice_is_refused_and_the_first_stays_intact() {
    let net = scratch(1);
    let pod = net.pod_name.clone();
    settle(&pod);
    let state = state_dir();
    let dir = dir_str(&state);
    let id = "twice";
    let pristine = snapshot(&pod);
    // Detaches the sandbox when the test ends, whatever happened (a no-op once detached).
    let _guard = DetachOnDrop::new(state.path(), id);
    let (code, _, err) = cli(&["--state-dir", dir, "attach", "--netns", &pod, "--id", id]);
    assert_eq!(code, 0, "first attach: {err}");
    settle(&pod);
    let attached = snapshot(&pod);
    let files = listing(state.path());
    assert!(files.contains(&format!("{id}.json")), "{files:?}");

    let (code, out, err) = cli(&["--state-dir", dir, "attach", "--netns", &pod, "--id", id]);
    println!("second attach: exit {code}\n  stderr: {}", err.trim_end());
    assert_eq!(code, 2, "second attach: {out}{err}");
    assert!(
        err.contains("already attached") && err.contains(id),
        "{err}"
    );
    assert_eq!(
        attached,
        snapshot(&pod),
        "the second attach changed the netns (left: before it)"
    );
    assert_eq!(
        listing(state.path()),
        files,
        "the second attach changed the state dir"
    );

    let s = sandbox_net::status(state.path(), id)
        .expect("status")
        .expect("still attached");
    assert!(!s.drift, "{s:?}");
    assert!(s.objects.iter().flatten().all(|o| o.present), "{s:?}");

    let (code, out, err) = cli(&["--state-dir", dir, "detach", "--id", id]);
    assert_eq!(code, 0, "detach: {err}");
    assert!(out.contains("detached"), "{out}");
    assert_eq!(
        pristine,
        snapshot(&pod),
        "detach left something behind (left: before attach)"
    );
    assert!(
        listing(state.path()).is_empty(),
        "{:?}",
        listing(state.path())
    );
}

#[test]
fn detaching_an_unknown_id_says_nothing_was_attached() {
    let state = state_dir();
    let dir = dir_str(&state);
    let (code, out, err) = cli(&["--state-dir", dir, "detach", "--id", "never-attached"]);
    println!(
        "detach unknown id: exit {code}\n  stdout: {}",
        out.trim_end()
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("nothing was attached"), "{out}");
    let (code, out, err) = cli(&[
        "--state-dir",
        dir,
        "detach",
        "--id",
        "never-attached",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let json: Value = serde_json::from_str(&out).expect("detach JSON");
    assert_eq!(json["outcome"], "not-attached", "{out}");
    assert_eq!(json["id"], "never-attached", "{out}");
    assert!(
        listing(state.path()).is_empty(),
        "{:?}",
        listing(state.path())
    );
}
