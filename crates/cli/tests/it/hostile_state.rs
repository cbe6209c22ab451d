//! Issue 13, case 3 and the file items of case 9: a state directory, state file, lock file,
//! CNI record or temp file that someone else planted or can change is never trusted, and no
//! path read back from a state steers a write by root.
//!
//! Each test reproduces the attack as the issue describes it, runs the CLI (or the CNI
//! plugin) as root the way an operator would, and checks that nothing foreign changed (the
//! victim file's content and mtime, the netns, the planted files) and that the refusal
//! names the object.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::common::*;
use crate::common::{listing, settled_snapshot};
use sandbox_net::cni::record::{RECORD_VERSION, Record, Records};
use sandbox_net::journal::Entry;
use sandbox_net::netns::NsId;
use sandbox_net::state::{Phase, STATE_FILE_LIMIT, STATE_VERSION, Settings, State, StateDir};
use sandbox_net::{AttachOptions, Model};
use sandbox_net_testkit::fake_sysfs::ADDR;
use sandbox_net_testkit::scratch::unique_name;

/// A directory under the temp dir (mode 0700, root's), removed with everything in it.
struct Base(TempDir);

impl Base {
    fn new(tag: &str) -> Base {
        let dir = TempDir::new(tag);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod base dir");
        Base(dir)
    }

    /// A directory `name` in the base with `mode`, owned by `uid`.
    fn dir(&self, name: &str, mode: u32, uid: u32) -> PathBuf {
        let dir = self.0.path().join(name);
        fs::create_dir_all(&dir).expect("mkdir");
        std::os::unix::fs::chown(&dir, Some(uid), None).expect("chown");
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).expect("chmod");
        dir
    }
}

/// A root-only file that must never change: its content and mtime.
struct Victim {
    path: PathBuf,
    content: Vec<u8>,
    mtime: SystemTime,
}

impl Victim {
    /// A new root-only file at `path`.
    fn new(path: PathBuf) -> Victim {
        plant(&path, "root's secret, mode 0600\n", 0o600);
        // An mtime in the past, so that a write now would show even on a coarse clock.
        let past = SystemTime::now() - Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(past))
            .expect("set victim mtime");
        Victim::existing(path)
    }

    /// An existing file, as it is now.
    fn existing(path: PathBuf) -> Victim {
        Victim {
            content: fs::read(&path).expect("read"),
            mtime: fs::metadata(&path)
                .and_then(|m| m.modified())
                .expect("mtime"),
            path,
        }
    }

    fn assert_untouched(&self, after: &str) {
        let content = fs::read(&self.path).expect("read victim");
        assert_eq!(
            String::from_utf8_lossy(&content),
            String::from_utf8_lossy(&self.content),
            "victim {} changed after {after}",
            self.path.display()
        );
        let mtime = fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .expect("mtime");
        assert_eq!(mtime, self.mtime, "victim mtime changed after {after}");
        let mode = fs::metadata(&self.path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "victim mode changed after {after}");
    }
}

/// Run the CLI with `--state-dir dir` and ARGS; (exit code, stdout + stderr).
fn cli_in(dir: &Path, args: &[&str]) -> (i32, String) {
    let mut full = vec!["--state-dir", dir.to_str().expect("utf-8 path")];
    full.extend_from_slice(args);
    let (code, out, err) = cli(&full);
    println!("sandbox-net {full:?} -> {code}\n{out}{err}");
    (code, format!("{out}{err}"))
}

/// A state of sandbox `id` in the netns `ns` (or static, without one), with `journal`.
fn state_of(id: &str, ns: Option<(&Path, NsId)>, journal: Vec<Entry>) -> State {
    let (path, ns_id) = ns.unwrap_or((Path::new(""), NsId { dev: 0, ino: 0 }));
    State {
        detached_by_user: Vec::new(),
        version: STATE_VERSION,
        id: id.to_string(),
        netns: path.display().to_string(),
        netns_path: path.to_path_buf(),
        netns_id: ns_id,
        netns_cookie: None,
        model: if ns.is_some() {
            Model::Tcfilter
        } else {
            Model::None
        },
        settings: Settings::default(),
        phase: Phase::Attached,
        endpoints: Vec::new(),
        guest: None,
        journal,
        dns: Vec::new(),
    }
}

/// Write `text` to `path` with `mode`, as root.
fn plant(path: &Path, text: &str, mode: u32) {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("plant {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn plant_state(dir: &Path, state: &State) -> PathBuf {
    let path = dir.join(format!("{}.json", state.id));
    plant(
        &path,
        &serde_json::to_string_pretty(state).expect("json"),
        0o600,
    );
    path
}

/// (a) A state directory owned by uid 1000 with mode 775 (and a group-writable one owned
/// by root, and one below a directory another user owns) is refused by every command that
/// would use it: exit 2, the directory and the reason named, nothing created in it, the
/// netns untouched. A state or lock file owned by another uid, or group-writable, inside a
/// good directory is refused the same way and left as it is.
#[test]
fn a_state_dir_or_file_another_user_can_write_is_refused() {
    let net = scratch(1);
    let pod = net.pod_name.clone();
    let before = settled_snapshot(&pod);
    let base = Base::new("snt-hostile-dir");
    let users = base.dir("users", 0o775, 1000);
    let groupw = base.dir("groupw", 0o770, 0);
    let theirs = base.dir("theirs", 0o755, 1000);
    let below = theirs.join("state");
    let cases: [(&str, &Path, &[&str]); 3] = [
        (
            "owned by uid 1000, mode 775",
            &users,
            &[
                "is owned by uid 1000, not the effective uid 0",
                "is group-writable",
            ],
        ),
        ("group-writable, root's", &groupw, &["is group-writable"]),
        (
            "below a directory uid 1000 owns",
            &below,
            &[theirs.to_str().expect("utf-8"), "is owned by uid 1000"],
        ),
    ];
    for (what, dir, reasons) in cases {
        let shown = dir.display().to_string();
        for args in [
            &["attach", "--netns", pod.as_str(), "--id", "a"][..],
            &["detach", "--id", "a"],
            &["gc"],
            &["status", "--id", "a"],
            &["status"],
        ] {
            let (code, out) = cli_in(dir, args);
            if code == 0 && args[0] == "attach" {
                let _ = sandbox_net::detach(dir, "a");
            }
            assert_eq!(code, 2, "{what}: {args:?} must be refused: {out}");
            assert!(
                out.contains(&shown),
                "{what}: {args:?} names the dir: {out}"
            );
            for reason in reasons {
                assert!(
                    out.contains(reason),
                    "{what}: {args:?} says {reason:?}: {out}"
                );
            }
        }
        assert_eq!(
            listing(dir),
            Vec::<String>::new(),
            "{what}: nothing created"
        );
    }
    assert!(
        !below.exists(),
        "nothing created below another user's directory"
    );
    assert_eq!(snapshot(&pod), before, "the netns is untouched");

    // Files inside a good directory: a state file owned by uid 1000, a group-writable one,
    // a lock file owned by uid 1000.
    let good = base.dir("good", 0o700, 0);
    let theirs_state = plant_state(&good, &state_of("theirs", None, Vec::new()));
    std::os::unix::fs::chown(&theirs_state, Some(1000), None).expect("chown");
    let groupw_state = plant_state(&good, &state_of("groupw", None, Vec::new()));
    fs::set_permissions(&groupw_state, fs::Permissions::from_mode(0o660)).expect("chmod");
    plant(&good.join("locked.lock"), "", 0o600);
    std::os::unix::fs::chown(good.join("locked.lock"), Some(1000), None).expect("chown");
    plant_state(&good, &state_of("locked", None, Vec::new()));
    let files_before: Vec<(String, Vec<u8>)> = listing(&good)
        .into_iter()
        .map(|n| (n.clone(), fs::read(good.join(&n)).expect("read")))
        .collect();
    for (id, file, reason) in [
        ("theirs", "theirs.json", "is owned by uid 1000"),
        ("groupw", "groupw.json", "is group-writable"),
        ("locked", "locked.lock", "is owned by uid 1000"),
    ] {
        let shown = good.join(file).display().to_string();
        let mut commands = vec![vec!["detach", "--id", id]];
        if id != "locked" {
            // Only the commands that change something take the lock.
            commands.push(vec!["status", "--id", id]);
            commands.push(vec!["guest-config", "--id", id]);
        }
        for args in commands {
            let (code, out) = cli_in(&good, &args);
            assert_eq!(code, 2, "{args:?} must be refused: {out}");
            assert!(out.contains(&shown), "{args:?} names {shown}: {out}");
            assert!(out.contains(reason), "{args:?} says {reason:?}: {out}");
        }
    }
    for (name, content) in &files_before {
        let now = fs::read(good.join(name)).expect("read");
        assert!(&now == content, "{name} is left as it was");
    }
    // The only new files are the lock files detach took before it read the state (as
    // for any state it refuses): empty, root's, mode 0600.
    for name in listing(&good) {
        if files_before.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let meta = fs::metadata(good.join(&name)).expect("stat");
        assert!(
            name.ends_with(".lock")
                && meta.len() == 0
                && std::os::unix::fs::MetadataExt::uid(&meta) == 0
                && meta.permissions().mode() & 0o777 == 0o600,
            "unexpected {name}"
        );
    }
}

/// A fake sysfs tree whose device's `driver_override` is a symlink to the victim, as the
/// attacker builds it.
fn evil_sysfs(base: &Base, victim: &Path) -> PathBuf {
    let root = base.0.join("evil-sysfs");
    let dev = root.join(format!("bus/pci/devices/{ADDR}"));
    fs::create_dir_all(&dev).expect("mkdir");
    symlink(victim, dev.join("driver_override")).expect("symlink driver_override");
    root
}

/// Run the CNI plugin with `command` for (ctr, eth0) in `netns`, state in `dir`.
fn cni(command: &str, dir: &Path, netns: &Path) -> (i32, String) {
    let conf = serde_json::json!({"cniVersion": "1.0.0", "name": "hostile", "type": "sandbox-net",
                                  "stateDir": dir})
    .to_string();
    let netns = netns.to_string_lossy();
    let out = crate::cni::plugin(&crate::cni::env(command, "ctr", &netns), &conf);
    let text = format!("{}{}", out.stdout, out.stderr);
    println!("CNI {command} -> {}\n{text}", out.code);
    (out.code, text)
}

/// (b) The planted-state attack: a state whose journal has a `vfio-bind` entry carrying
/// its own `sysfs_root`, pointing at a tree where `driver_override` is a symlink to a
/// root-only file. detach, CNI DEL and gc must not write the victim (content and mtime
/// compared), and detach and DEL name the entry. Even with the operator's own
/// `--sysfs-root` set to that tree, the symlinked attribute is not followed.
#[test]
fn a_planted_sysfs_root_never_steers_a_write() {
    let net = scratch(1);
    let base = Base::new("snt-hostile-sysfs");
    let victim = Victim::new(base.0.join("victim"));
    let evil = evil_sysfs(&base, &victim.path);
    let state_dir = base.dir("state", 0o700, 0);
    let id = sandbox_net::cni::sandbox_id("ctr", "eth0");
    let entry = Entry::VfioBind {
        device: "eth9".into(),
        pci_address: ADDR.into(),
        original_driver: Some("ixgbe".into()),
        sysfs_root: evil.clone(),
    };
    let planted = state_of(&id, Some((net.pod.path(), net.pod.id())), vec![entry]);
    plant_state(&state_dir, &planted);
    let named = format!("vfio-pci binding of eth9 ({ADDR})");

    let (code, out) = cli_in(&state_dir, &["detach", "--id", &id]);
    victim.assert_untouched("detach");
    assert_ne!(code, 0, "detach must fail: {out}");
    assert!(out.contains(&named), "detach names the entry: {out}");
    assert!(
        out.contains(&format!("recorded under sysfs root {}", evil.display())),
        "detach says why: {out}"
    );
    assert!(state_dir.join(format!("{id}.json")).exists(), "state kept");

    // The operator's own --sysfs-root set to that tree: the symlink is not followed.
    let evil_arg = evil.to_str().expect("utf-8");
    let (code, out) = cli_in(
        &state_dir,
        &["--sysfs-root", evil_arg, "detach", "--id", &id],
    );
    victim.assert_untouched("detach --sysfs-root");
    assert_ne!(
        code, 0,
        "detach through a symlinked attribute must fail: {out}"
    );
    assert!(out.contains("driver_override"), "{out}");

    // CNI DEL of the same sandbox (it has a record, so DEL tears it down).
    let records = Records::open(&state_dir).expect("records");
    let record = Record {
        version: RECORD_VERSION,
        network: "hostile".into(),
        container_id: "ctr".into(),
        ifname: "eth0".into(),
        netns: net.pod.path().display().to_string(),
    };
    records.save(&id, &record).expect("save record");
    let (code, out) = cni("DEL", &state_dir, net.pod.path());
    victim.assert_untouched("CNI DEL");
    assert_ne!(code, 0, "DEL must fail: {out}");
    assert!(out.contains(&named), "DEL names the entry: {out}");

    // gc looks at the state (and may drop it: nothing it journals is in force here).
    let (code, out) = cli_in(&state_dir, &["gc"]);
    victim.assert_untouched("gc");
    assert_eq!(code, 0, "{out}");
    let _ = records.remove(&id);
}

/// (c) A state file that is a symlink to another (valid) state, and a CNI record that is a
/// symlink to another record: refused, naming the file; the symlink and its target stay as
/// they were.
#[test]
fn state_files_and_records_that_are_symlinks_are_refused() {
    let net = scratch(1);
    let base = Base::new("snt-hostile-link");
    let state_dir = base.dir("state", 0o700, 0);
    let elsewhere = base.dir("elsewhere", 0o700, 0);
    let target = plant_state(&elsewhere, &state_of("s", None, Vec::new()));
    let target = Victim::existing(target);
    let link = state_dir.join("s.json");
    symlink(&target.path, &link).expect("symlink state file");
    for args in [
        &["detach", "--id", "s"][..],
        &["status", "--id", "s"],
        &["guest-config", "--id", "s"],
    ] {
        let (code, out) = cli_in(&state_dir, args);
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(out.contains(&link.display().to_string()), "{args:?}: {out}");
        assert!(out.contains("is a symlink"), "{args:?}: {out}");
        target.assert_untouched(args[0]);
        assert!(link.is_symlink(), "{args:?} left the symlink");
    }

    // A CNI record that is a symlink to a record of the same container elsewhere.
    let records = Records::open(&state_dir).expect("records");
    let id = sandbox_net::cni::sandbox_id("ctr", "eth0");
    let record = serde_json::json!({"version": RECORD_VERSION, "network": "hostile",
        "containerID": "ctr", "ifname": "eth0", "netns": net.pod.path()});
    let record_target = elsewhere.join("record.json");
    plant(&record_target, &record.to_string(), 0o600);
    let record_target = Victim::existing(record_target);
    let record_link = records.path(&id);
    symlink(&record_target.path, &record_link).expect("symlink record");
    let err = records.load(&id).err().map(|e| e.to_string());
    assert!(
        err.as_deref().is_some_and(|e| e.contains("is a symlink")),
        "{err:?}"
    );
    let (code, out) = cni("DEL", &state_dir, net.pod.path());
    assert_ne!(code, 0, "DEL: {out}");
    assert!(out.contains(&record_link.display().to_string()), "{out}");
    assert!(out.contains("is a symlink"), "{out}");
    record_target.assert_untouched("CNI DEL");
    assert!(record_link.is_symlink(), "DEL left the symlink");
}

/// (d) A sparse state file of 100 MB is refused at once, from its size, as larger than the
/// limit (the file and the limit named), without reading it.
#[test]
fn a_huge_state_file_is_refused_from_its_size() {
    let base = Base::new("snt-hostile-big");
    let state_dir = base.dir("state", 0o700, 0);
    let path = state_dir.join("big.json");
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .expect("create");
    file.set_len(100 << 20).expect("sparse 100 MB");
    drop(file);
    let allocated = fs::metadata(&path).map(|m| std::os::unix::fs::MetadataExt::blocks(&m));
    println!("sparse state file: 100 MB, {allocated:?} blocks allocated");
    for args in [&["status", "--id", "big"][..], &["detach", "--id", "big"]] {
        let t0 = Instant::now();
        let (code, out) = cli_in(&state_dir, args);
        let took = t0.elapsed();
        println!("{args:?} took {took:?}");
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(out.contains(&path.display().to_string()), "{out}");
        assert!(out.contains("104857600 bytes"), "{out}");
        assert!(
            out.contains(&format!("limit of {STATE_FILE_LIMIT} bytes")),
            "{out}"
        );
        assert!(took < Duration::from_secs(2), "{args:?} took {took:?}");
    }
    // The library refuses it the same way, before reading.
    let t0 = Instant::now();
    let err = StateDir::open(&state_dir)
        .expect("open")
        .load("big")
        .err()
        .map(|e| e.to_string());
    println!("load: {err:?} in {:?}", t0.elapsed());
    assert!(err.is_some_and(|e| e.contains("over the limit")));
    assert_eq!(fs::metadata(&path).expect("stat").len(), 100 << 20);
}

/// (e) A temp file planted as a symlink at the temp path (`.ID.json.tmp` -> victim): a save
/// does not follow it (it is removed and the temp file created anew with O_EXCL), for a
/// state and for a CNI record. An attach writes its state through its lock file and never
/// touches the temp path; the next whole save does.
#[test]
fn a_planted_temp_symlink_is_not_followed_by_a_save() {
    let net = scratch(1);
    let base = Base::new("snt-hostile-tmp");
    let victim = Victim::new(base.0.join("victim"));
    let state_dir = base.dir("state", 0o700, 0);
    symlink(&victim.path, state_dir.join(".t1.json.tmp")).expect("plant temp symlink");
    let mut opts = AttachOptions::new(net.pod_name.clone(), "t1");
    opts.state_dir = state_dir.clone();
    let attached = sandbox_net::attach(&opts);
    victim.assert_untouched("attach (two saves)");
    let a = attached.expect("attach saves through a planted temp symlink");
    assert_eq!(a.endpoints.len(), 1);
    let store = StateDir::open(&state_dir).expect("open");
    let saved = store.load("t1").expect("load").expect("a state");
    assert_eq!(saved.phase, Phase::Attached);
    store.save(&saved).expect("a whole save");
    victim.assert_untouched("a whole save");
    assert!(!state_dir.join(".t1.json.tmp").exists(), "temp file gone");
    sandbox_net::detach(&state_dir, "t1").expect("detach");
    victim.assert_untouched("detach");

    let records = Records::open(&state_dir).expect("records");
    symlink(&victim.path, state_dir.join("cni/.r1.json.tmp")).expect("plant temp symlink");
    let record = Record {
        version: RECORD_VERSION,
        network: "n".into(),
        container_id: "c".into(),
        ifname: "eth0".into(),
        netns: "/run/netns/x".into(),
    };
    records.save("r1", &record).expect("save record");
    victim.assert_untouched("record save");
    assert_eq!(records.load("r1").expect("load"), Some(record));
    records.remove("r1").expect("remove");
}

/// (f) The read-only commands create nothing: `status --state-dir /nonexistent/typo/dir`
/// (and list, guest-config, vmm-args) answer as for an unknown id and leave no directory.
#[test]
fn read_only_commands_create_no_state_dir() {
    let top = PathBuf::from("/").join(unique_name("snt-nonexistent"));
    let typo = top.join("typo/dir");
    // An unknown id is answered as every command answers it (issue #17).
    let unknown = sandbox_net::sandbox::not_attached("x").exit_code();
    for (args, code, says) in [
        (
            &["status", "--id", "x"][..],
            unknown,
            "sandbox x: not attached",
        ),
        (
            &["status", "--id", "x", "--json"][..],
            unknown,
            "not attached",
        ),
        (&["status"][..], 0, "no state dir"),
        (&["guest-config", "--id", "x"][..], unknown, "not attached"),
        (
            &["vmm-args", "--id", "x", "--vmm", "qemu"][..],
            unknown,
            "not attached",
        ),
        (&["gc", "--dry-run"][..], 0, "nothing to collect"),
    ] {
        let (got, out) = cli_in(&typo, args);
        assert_eq!(got, code, "{args:?}: {out}");
        assert!(out.contains(says), "{args:?}: {out}");
        assert!(!top.exists(), "{args:?} created {}", top.display());
    }
    assert!(
        sandbox_net::status(&typo, "x").expect("status").is_none()
            && sandbox_net::list(&typo).expect("list").is_empty()
            && sandbox_net::guest_config(&typo, "x")
                .expect("guest config")
                .is_none()
    );
    assert!(!top.exists());
}

/// (g) `demo --state-dir DIR` keeps its state in DIR: DIR is created by the demo's attach,
/// while the directory of $SANDBOX_NET_STATE_DIR (what the demo used before) and the
/// default one get nothing.
#[test]
fn demo_honours_state_dir() {
    let base = Base::new("snt-hostile-demo");
    let dir = base.0.join("demo-state");
    let env_dir = base.0.join("env-state");
    let child = Command::new(bin())
        .args(["--state-dir", dir.to_str().expect("utf-8"), "demo"])
        .env(sandbox_net::state::STATE_DIR_ENV, &env_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the demo");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait for the demo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(dir.is_dir(), "the demo's state went to --state-dir");
    assert_eq!(listing(&dir), Vec::<String>::new(), "and was cleaned up");
    assert!(!env_dir.exists(), "nothing in $SANDBOX_NET_STATE_DIR");
    let default = Path::new(sandbox_net::state::DEFAULT_STATE_DIR);
    let mine = format!("demo-{pid}.");
    assert!(
        listing(default).iter().all(|n| !n.starts_with(&mine)),
        "nothing of a demo in {}",
        default.display()
    );
}
