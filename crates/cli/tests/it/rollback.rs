//! Rollback: force a failure at each attach step, then check that the netns is unchanged
//! (links, addresses, routes, qdiscs, filters) and that no state file remains. Also real
//! (not injected) failures: a tap name or an ingress qdisc that is already taken.

use crate::common::*;
use sandbox_net::journal::Entry;
use sandbox_net::state::StateDir;
use sandbox_net::{AttachOptions, Detached};
use sandbox_net_testkit::scratch::ScratchNet;

fn options(net: &ScratchNet, dir: &TempStateDir, id: &str) -> AttachOptions {
    let mut opts = AttachOptions::new(net.pod_name.clone(), id);
    opts.state_dir = dir.path().to_path_buf();
    opts
}

/// The names in the state directory: state files, temp files and lock files.
fn state_files(dir: &TempStateDir) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.path()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| {
            e.expect("read state dir")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Assert nothing is recorded for `id`: no state, temp or lock file, no status, no listing.
fn assert_no_state(dir: &TempStateDir, id: &str, context: &str) {
    assert_eq!(state_files(dir), Vec::<String>::new(), "{context}");
    assert!(!dir.path().join(format!("{id}.json")).exists(), "{context}");
    assert!(
        sandbox_net::status(dir.path(), id)
            .expect("status")
            .is_none(),
        "{context}"
    );
    assert!(
        sandbox_net::list(dir.path()).expect("list").is_empty(),
        "{context}"
    );
}

/// A normal attach and detach of `id` works and leaves the netns as `before`.
fn attach_detach_works(
    net: &ScratchNet,
    dir: &TempStateDir,
    id: &str,
    context: &str,
) -> Vec<Entry> {
    let a = sandbox_net::attach(&options(net, dir, id))
        .unwrap_or_else(|e| panic!("{context}: attach after the failure: {e}"));
    assert_eq!(a.endpoints.len(), net.links.len(), "{context}");
    let journal = StateDir::open(dir.path())
        .expect("open state dir")
        .load(id)
        .expect("load state")
        .expect("state exists")
        .journal;
    match sandbox_net::detach(dir.path(), id) {
        Ok(Detached::Detached { objects, .. }) => assert_eq!(objects, journal.len(), "{context}"),
        other => panic!("{context}: detach: {other:?}"),
    }
    journal
}

fn fail_at_every_step(veths: u8) {
    let net = scratch(veths);
    let dir = TempStateDir::new();
    let id = format!("rb-steps-{veths}");
    let _cleanup = DetachOnDrop::new(dir.path(), id.clone());
    let before = snapshot(&net.pod_name);
    // The journal of a successful attach: its length is the number of failpoints.
    let journal = attach_detach_works(&net, &dir, &id, "first attach");
    assert_eq!(journal.len(), 5 * usize::from(veths));
    assert_eq!(
        snapshot(&net.pod_name),
        before,
        "after the first attach/detach"
    );
    assert_no_state(&dir, &id, "after the first attach/detach");

    for step in 0..=journal.len() {
        let context = format!("{veths} veth(s), failure injected at step {step}");
        let mut opts = options(&net, &dir, &id);
        opts.fail_at_step = Some(step);
        let err = match sandbox_net::attach(&opts) {
            Ok(a) => panic!("{context}: attach succeeded: {a:?}"),
            Err(e) => e.to_string(),
        };
        println!("{context}: {err}");
        assert!(err.contains("failpoint"), "{context}: {err}");
        assert!(err.contains(&format!("sandbox {id}")), "{context}: {err}");
        match journal.get(step) {
            Some(entry) => assert!(err.contains(&entry.describe()), "{context}: {err}"),
            None => assert!(err.contains("save attached state"), "{context}: {err}"),
        }
        assert_eq!(snapshot(&net.pod_name), before, "{context}");
        assert_no_state(&dir, &id, &context);
        // No lock or state left behind: the same id attaches and detaches normally.
        attach_detach_works(&net, &dir, &id, &context);
        assert_eq!(
            snapshot(&net.pod_name),
            before,
            "{context}: after attach/detach"
        );
        assert_no_state(&dir, &id, &format!("{context}: after attach/detach"));
    }
}

#[test]
fn failure_at_every_step_one_veth() {
    fail_at_every_step(1);
}

#[test]
fn failure_at_every_step_two_veths() {
    fail_at_every_step(2);
}

#[test]
fn failure_at_every_step_multi_queue() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let id = "rb-mq";
    let _cleanup = DetachOnDrop::new(dir.path(), id.to_string());
    let before = snapshot(&net.pod_name);
    for step in 0..=5 {
        let mut opts = options(&net, &dir, id);
        opts.queues = 4;
        opts.fail_at_step = Some(step);
        let err = sandbox_net::attach(&opts).expect_err("injected failure");
        assert!(err.to_string().contains("failpoint"), "{err}");
        assert_eq!(snapshot(&net.pod_name), before, "4 queues, step {step}");
        assert_no_state(&dir, id, &format!("4 queues, step {step}"));
    }
}

fn link_exists(ns: &str, name: &str) -> bool {
    ip_json(ns, &["link", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .any(|l| l["ifname"] == name)
}

fn ingress_qdisc_on(ns: &str, dev: &str) -> bool {
    tc_json(ns, &["qdisc", "show", "dev", dev])
        .as_array()
        .into_iter()
        .flatten()
        .any(|q| q["kind"] == "ingress")
}

#[test]
fn tap_name_taken_fails_and_leaves_the_existing_tap() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let id = "rb-taptaken";
    let _cleanup = DetachOnDrop::new(dir.path(), id.to_string());
    run(
        "ip",
        &[
            "-n",
            &net.pod_name,
            "tuntap",
            "add",
            "dev",
            "tap0_sn",
            "mode",
            "tap",
        ],
    );
    let before = snapshot(&net.pod_name);
    // The name asked for explicitly (as the CNI plugin's tapName does): a tap named
    // automatically takes a free name instead (issue #17, it::cli_taps).
    let mut opts = options(&net, &dir, id);
    opts.tap_names = vec!["tap0_sn".into()];
    let err = sandbox_net::attach(&opts).expect_err("attach must fail: tap0_sn exists");
    // The kernel's EBUSY is a name in use (not a Kernel error that reads like the
    // retryable Busy); the tap carries no owner alias, so no sandbox is named.
    assert!(
        matches!(&err, sandbox_net::Error::NameInUse { name, by: None, .. } if name == "tap0_sn"),
        "{err:?}"
    );
    let err = err.to_string();
    println!("{err}");
    assert!(
        err.contains("tap tap0_sn")
            && err.contains("the name is in use by a device that is not sandbox-net's"),
        "{err}"
    );
    assert_eq!(snapshot(&net.pod_name), before);
    assert!(
        link_exists(&net.pod_name, "tap0_sn"),
        "the existing tap must stay"
    );
    assert_no_state(&dir, id, "tap name taken");
    // The tap that is not ours stays through a detach too.
    assert!(matches!(
        sandbox_net::detach(dir.path(), id),
        Ok(Detached::NotAttached { .. })
    ));
    assert!(link_exists(&net.pod_name, "tap0_sn"));
}

#[test]
fn second_tap_name_taken_rolls_back_the_first_endpoint() {
    let net = scratch(2);
    let dir = TempStateDir::new();
    let id = "rb-tap1taken";
    let _cleanup = DetachOnDrop::new(dir.path(), id.to_string());
    run(
        "ip",
        &[
            "-n",
            &net.pod_name,
            "tuntap",
            "add",
            "dev",
            "tap1_sn",
            "mode",
            "tap",
        ],
    );
    let before = snapshot(&net.pod_name);
    // Names asked for explicitly (a tap named automatically takes a free name).
    let mut opts = options(&net, &dir, id);
    opts.tap_names = vec!["tap0_sn".into(), "tap1_sn".into()];
    let err = sandbox_net::attach(&opts)
        .expect_err("attach must fail: tap1_sn exists")
        .to_string();
    println!("{err}");
    assert!(err.contains("tap tap1_sn"), "{err}");
    // eth0's tap, qdiscs and filters were made, then removed again.
    assert_eq!(snapshot(&net.pod_name), before);
    assert!(!link_exists(&net.pod_name, "tap0_sn"));
    assert!(
        link_exists(&net.pod_name, "tap1_sn"),
        "the existing tap must stay"
    );
    assert_no_state(&dir, id, "second tap name taken");
}

#[test]
fn existing_ingress_qdisc_fails_and_is_kept() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let id = "rb-qdisc";
    let _cleanup = DetachOnDrop::new(dir.path(), id.to_string());
    run(
        "tc",
        &[
            "-n",
            &net.pod_name,
            "qdisc",
            "add",
            "dev",
            "eth0",
            "ingress",
        ],
    );
    let before = snapshot(&net.pod_name);
    let err = sandbox_net::attach(&options(&net, &dir, id))
        .expect_err("attach must fail: eth0 has an ingress qdisc")
        .to_string();
    println!("{err}");
    assert!(err.contains("ingress qdisc on eth0"), "{err}");
    assert!(err.contains("add ingress qdisc"), "{err}");
    // The tap and its ingress qdisc are gone; eth0's ingress qdisc (not ours) is still there.
    assert_eq!(snapshot(&net.pod_name), before);
    assert!(!link_exists(&net.pod_name, "tap0_sn"));
    assert!(
        ingress_qdisc_on(&net.pod_name, "eth0"),
        "eth0's ingress qdisc must stay"
    );
    assert_no_state(&dir, id, "ingress qdisc taken");
}
