//! DEL succeeds as far as it can (issue 17, CNI item 2): an unreadable record or state, an
//! unusable `stateDir`, a record whose state is gone, and a netns given as
//! `/proc/PID/ns/net` of a process that has exited.

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command};

use serde_json::{Value, json};

use crate::cni::{Outcome, check_nothing_left, plugin};
use crate::cni_bed::{Bed, Pod};
use crate::common::*;

fn truncate(path: &std::path::Path) {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    std::fs::write(path, &text[..text.len() / 2])
        .unwrap_or_else(|e| panic!("truncate {}: {e}", path.display()));
}

fn assert_ok(out: &Outcome) {
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stdout.trim(), "", "{out:#?}");
}

/// A truncated record, then a record of a version this build does not know: DEL detaches
/// anyway (the sandbox id is the pair's own) and leaves nothing.
#[test]
fn del_detaches_behind_an_unreadable_record() {
    let bed = Bed::new("delrec", "1.0.0", json!({}));
    let pod = bed.pod("ctr-delrec", "eth0");
    let id = pod.id();
    for spoil in ["truncated", "unknown version"] {
        let result = bed.add(&pod);
        let record = bed.record_file(&id);
        if spoil == "truncated" {
            truncate(&record);
        } else {
            let mut r: Value =
                serde_json::from_slice(&std::fs::read(&record).expect("record")).expect("JSON");
            r["version"] = 99.into();
            std::fs::write(&record, r.to_string()).expect("write record");
        }
        let out = bed.del(&pod, Some(&result));
        assert_ok(&out);
        assert!(out.stderr.contains("CNI record"), "{spoil}: {out:#?}");
        check_nothing_left(&bed.state, &id, &pod.ns, "tap_eth0");
    }
}

/// A truncated state file: nothing can be proven ours, so DEL succeeds, drops the record
/// and says on stderr which state file it left.
#[test]
fn del_succeeds_and_reports_an_unreadable_state() {
    let bed = Bed::new("delstate", "1.0.0", json!({}));
    let pod = bed.pod("ctr-delstate", "eth0");
    let id = pod.id();
    let result = bed.add(&pod);
    let state = bed.state_file(&id);
    truncate(&state);
    let out = bed.del(&pod, Some(&result));
    assert_ok(&out);
    assert!(
        out.stderr.contains(&state.display().to_string()),
        "{out:#?}"
    );
    assert!(!bed.record_file(&id).exists(), "record kept");
    assert!(
        state.exists(),
        "the unreadable state is the operator's to look at"
    );
    // Again: nothing left to do.
    assert_ok(&bed.del(&pod, Some(&result)));
    std::fs::remove_file(&state).expect("clean up the state");
}

/// A record whose state is gone (the state file removed by hand, the tap still there):
/// DEL removes the tap, which carries the sandbox's alias, with our filter and qdisc on
/// eth0, and drops the record. Then the same after the CLI detached it: the record goes.
#[test]
fn del_cleans_up_after_a_record_whose_state_is_gone() {
    let bed = Bed::new("delgone", "1.0.0", json!({}));
    let pod = bed.pod("ctr-delgone", "eth0");
    let id = pod.id();
    let result = bed.add(&pod);
    std::fs::remove_file(bed.state_file(&id)).expect("remove the state");
    assert!(pod.ns.link("tap_eth0").is_some());
    let out = bed.del(&pod, Some(&result));
    assert_ok(&out);
    assert!(out.stderr.contains("tap_eth0"), "{out:#?}");
    check_nothing_left(&bed.state, &id, &pod.ns, "tap_eth0");
    assert!(pod.ns.link("eth0").is_some(), "only ours is removed");

    let result = bed.add(&pod);
    let dir = bed.state.path().display().to_string();
    let (code, out, err) = cli(&["--state-dir", &dir, "detach", "--id", &id]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(bed.record_file(&id).exists());
    assert_ok(&bed.del(&pod, Some(&result)));
    check_nothing_left(&bed.state, &id, &pod.ns, "tap_eth0");
}

/// An unusable `stateDir` (a file, below a file, writable by others, relative) or a
/// missing one: DEL succeeds, says why on stderr, and creates nothing.
#[test]
fn del_succeeds_with_an_unusable_state_dir() {
    let base = TempStateDir::new();
    std::fs::create_dir_all(base.path()).expect("base");
    let file = base.path().join("file");
    std::fs::write(&file, "x").expect("file");
    let open = base.path().join("open");
    std::fs::create_dir(&open).expect("dir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let missing = base.path().join("missing");
    let env = [
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "ctr-unusable"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", "/run/netns/gone-long-ago"),
    ];
    for dir in [
        json!(file),
        json!(file.join("state")),
        json!(open),
        json!("relative/state"),
        json!(missing),
    ] {
        let conf = json!({"cniVersion": "1.0.0", "name": "n", "type": "sandbox-net",
                          "stateDir": dir});
        let out = plugin(&env, &conf.to_string());
        assert_ok(&out);
        if dir != json!(missing) {
            assert!(out.stderr.contains("state directory"), "{dir}: {out:#?}");
        }
    }
    assert!(!missing.exists(), "DEL made the state directory");
    assert!(!open.join("cni").exists(), "DEL made the record directory");
}

/// A process that holds a netns open: `ip netns exec NS sleep`.
struct Holder(Child);

impl Holder {
    fn in_netns(ns: &str) -> Holder {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "sleep", "600"])
            .spawn()
            .expect("spawn sleep in the pod");
        Holder(child)
    }

    fn unshared() -> Holder {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "600"])
            .spawn()
            .expect("unshare --net sleep");
        Holder(child)
    }

    fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.0.id())
    }

    /// Wait until the process is in another netns than ours, i.e. inside.
    fn settled(self) -> Holder {
        let ino = |path: &str| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(path).map(|m| m.ino()).ok()
        };
        let ours = ino("/proc/self/ns/net");
        for _ in 0..200 {
            let theirs = ino(&self.path());
            if theirs.is_some() && theirs != ours {
                return self;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the holder never entered its netns");
    }

    fn exit(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CNI_NETNS given as `/proc/PID/ns/net`, and that process exited while the netns lives on
/// (its bind mount under /run/netns): DEL finds it by its identity and removes the tap.
/// When nothing holds the netns any more, DEL drops the state and succeeds.
#[test]
fn del_finds_a_netns_whose_proc_path_is_gone() {
    let bed = Bed::new("delproc", "1.0.0", json!({}));
    // The pod's netns is a named one; the runtime passes the path of a process in it.
    let pod_ns = crate::cni::Ns::new("sncni-pod");
    let holder = Holder::in_netns(pod_ns.name()).settled();
    let pod = pod_with_ns(&bed, pod_ns, "ctr-delproc", holder.path());
    let id = pod.id();
    let result = bed.add(&pod);
    assert!(pod.ns.link("tap_eth0").is_some());
    holder.exit();
    assert_ok(&bed.del(&pod, Some(&result)));
    check_nothing_left(&bed.state, &id, &pod.ns, "tap_eth0");

    // A netns only a process held: gone with it, and with it the tap; DEL drops the state.
    let holder = Holder::unshared().settled();
    let lone = pod_in(&bed, "ctr-delproc-lone", holder.path());
    let lone_id = lone.id();
    bed.add(&lone);
    holder.exit();
    let out = bed.del(&lone, None);
    assert_ok(&out);
    assert!(out.stderr.contains("no longer exists"), "{out:#?}");
    assert!(!bed.state_file(&lone_id).exists(), "state kept");
    assert!(!bed.record_file(&lone_id).exists(), "record kept");
}

/// A pod in the named netns `ns` whose CNI_NETNS is `path`.
fn pod_with_ns(bed: &Bed, ns: crate::cni::Ns, container_id: &str, path: String) -> Pod {
    let mut rt = crate::cni::Runtime::new(container_id, &ns);
    rt.netns = path;
    let prev = bed.chain.add_first(&bed.host, &rt, 1).remove(0);
    Pod { ns, rt, prev }
}

/// A pod whose netns is only `path` (a process's): the `Ns` beside it is unused.
fn pod_in(bed: &Bed, container_id: &str, path: String) -> Pod {
    pod_with_ns(bed, crate::cni::Ns::new("sncni-spare"), container_id, path)
}
