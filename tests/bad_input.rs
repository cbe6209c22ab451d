//! Bad input: each case exits with code 2, names the problem on stderr, and changes
//! nothing: the pod netns is as it was (iproute2 snapshot) and the state directory stays
//! empty (no state file, no lock file).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{TempStateDir, cli, ip_json, run, scratch, snapshot};
use sandbox_net::scratch::{ScratchNet, unique_name};
use serde_json::Value;

/// Wait (up to 10 s, then go on regardless) until the kernel has finished configuring the
/// netns by itself, so that snapshots taken before and after a command differ only by what
/// the command did: IPv6 link-local addresses present and none tentative, and every tap
/// that is up past its initial operstate UNKNOWN (the kernel's link watch sets it, up to a
/// second or so after the tap's carrier went off, later under load).
fn settle(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let links = ip_json(ns, &["addr", "show"]);
        let addresses_settled = links.as_array().into_iter().flatten().all(|l| {
            let flags = l["flags"].to_string();
            let addrs = l["addr_info"].as_array().cloned().unwrap_or_default();
            let none_tentative = addrs.iter().all(|a| a["tentative"] != Value::Bool(true));
            let needs_ll = flags.contains("\"UP\"")
                && flags.contains("\"LOWER_UP\"")
                && !flags.contains("\"LOOPBACK\"");
            let has_ll = addrs
                .iter()
                .any(|a| a["local"].as_str().is_some_and(|s| s.starts_with("fe80:")));
            none_tentative && (!needs_ll || has_ll)
        });
        let links = ip_json(ns, &["-d", "link", "show"]);
        let taps_settled = links.as_array().into_iter().flatten().all(|l| {
            l["linkinfo"]["info_kind"] != "tun"
                || !l["flags"].to_string().contains("\"UP\"")
                || l["operstate"] != "UNKNOWN"
        });
        if (addresses_settled && taps_settled) || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(unique_name("snt-bad"));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn dir_str(state: &TempStateDir) -> &str {
    state.path().to_str().expect("utf-8 state dir")
}

/// Detaches the sandbox when the test ends, whatever happened (a no-op once detached).
struct DetachGuard<'a> {
    dir: &'a Path,
    id: String,
}

impl Drop for DetachGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = sandbox_net::detach(self.dir, &self.id) {
            eprintln!("cleanup: detach {} failed: {e}", self.id);
        }
    }
}

/// One bad invocation of `sandbox-net --state-dir DIR attach ARGS`.
struct Case {
    what: &'static str,
    args: Vec<String>,
    /// Run the CLI inside this netns (via nsenter) instead of the test's own.
    inside: Option<String>,
    /// Every one of these must appear on stderr.
    stderr: Vec<String>,
}

fn case(what: &'static str, args: &[&str], stderr: &[&str]) -> Case {
    Case {
        what,
        args: args.iter().map(|s| s.to_string()).collect(),
        inside: None,
        stderr: stderr.iter().map(|s| s.to_string()).collect(),
    }
}

/// Run one case; the problems found, if any.
fn check(case: &Case, pod: &str, state: &TempStateDir) -> Vec<String> {
    let before = snapshot(pod);
    let mut args: Vec<String> = vec!["--state-dir".into(), dir_str(state).into(), "attach".into()];
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
                .arg(common::bin())
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
        "case {:?}: attach {:?} -> exit {code}\n  stderr: {}",
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
    let left = entries(state.path());
    if !left.is_empty() {
        problems.push(format!("{}: left {left:?} in the state dir", case.what));
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

#[test]
fn bad_attach_arguments_exit_2_and_change_nothing() {
    let net = scratch(1);
    let pod = net.pod_name.clone();
    settle(&pod);
    let state = state_dir();
    let tmp = TempDir::new();
    let file = tmp.0.join("not-a-netns");
    std::fs::write(&file, "").expect("create regular file");
    let file = file.to_str().expect("utf-8").to_string();
    let dir = tmp.0.to_str().expect("utf-8").to_string();
    let missing = unique_name("snt-missing");
    assert!(!Path::new("/run/netns").join(&missing).exists());
    let long_id = "a".repeat(65);
    let p = pod.as_str();

    let mut cases = vec![
        case(
            "netns is a regular file",
            &["--netns", &file, "--id", "a"],
            &[&file, "not a namespace file"],
        ),
        case(
            "netns is a directory",
            &["--netns", &dir, "--id", "a"],
            &[&dir, "not a namespace file"],
        ),
        case(
            "netns is a mount namespace",
            &["--netns", "/proc/self/ns/mnt", "--id", "a"],
            &["/proc/self/ns/mnt", "not a network namespace"],
        ),
        case(
            "netns name does not exist",
            &["--netns", &missing, "--id", "a"],
            &[&missing, "does not exist"],
        ),
        case(
            "empty id",
            &["--netns", p, "--id", ""],
            &["sandbox id \"\"", "empty"],
        ),
        case(
            "id ..",
            &["--netns", p, "--id", ".."],
            &["sandbox id \"..\"", "must start with a letter or digit"],
        ),
        case(
            "id with a slash",
            &["--netns", p, "--id", "a/b"],
            &["sandbox id \"a/b\"", "may contain only"],
        ),
        case(
            "id of 65 characters",
            &["--netns", p, "--id", &long_id],
            &[&long_id, "longer than 64 characters"],
        ),
        case(
            "id starting with a dash",
            &["--netns", p, "--id=-x"],
            &["sandbox id \"-x\"", "must start with a letter or digit"],
        ),
        // Given as a separate word, clap takes "-x" for an option and refuses it itself.
        case(
            "id starting with a dash, as its own word",
            &["--netns", p, "--id", "-x"],
            &["'-x'"],
        ),
        case(
            "unknown model",
            &["--netns", p, "--id", "a", "--model", "bogus"],
            &["model \"bogus\"", "unknown model"],
        ),
        case(
            "zero queues",
            &["--netns", p, "--id", "a", "--queues", "0"],
            &["queue count 0", "must be between 1 and"],
        ),
        case(
            "too many queues",
            &["--netns", p, "--id", "a", "--queues", "1025"],
            &["queue count 1025", "must be between 1 and"],
        ),
    ];
    // The caller's own netns. This is how refusing the host netns is tested here: PID 1's
    // netns (/proc/1/ns/net) is unreadable on this machine, so only the own-netns guard can
    // be exercised. The CLI runs inside the scratch pod netns (nsenter), so its own netns is
    // the pod: were the guard broken, the attach would land in the scratch netns and fail
    // the test, never in the host's.
    cases.push(Case {
        inside: Some(pod.clone()),
        ..case(
            "the caller's own netns",
            &["--netns", "/proc/self/ns/net", "--id", "a"],
            &["/proc/self/ns/net", "caller's own network namespace"],
        )
    });
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
    let cases = [case(
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
    let cases = [case(
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
    let _guard = DetachGuard {
        dir: state.path(),
        id: id.into(),
    };
    let (code, _, err) = cli(&["--state-dir", dir, "attach", "--netns", &pod, "--id", id]);
    assert_eq!(code, 0, "first attach: {err}");
    settle(&pod);
    let attached = snapshot(&pod);
    let files = entries(state.path());
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
        entries(state.path()),
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
        entries(state.path()).is_empty(),
        "{:?}",
        entries(state.path())
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
        entries(state.path()).is_empty(),
        "{:?}",
        entries(state.path())
    );
}
