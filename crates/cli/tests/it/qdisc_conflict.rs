//! An ingress or clsact qdisc someone else put on the endpoint (with a filter of theirs on
//! it): attach fails with a message that says so, rolls back, and leaves their qdisc and
//! filter exactly as they were. (EBUSY retries are unit-tested in `netlink::tc`.)

use crate::common::*;
use crate::common::{DetachOnDrop, assert_settles_to, listing, our_links, settled_snapshot};

fn tc(ns: &str, args: &[&str]) {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    run("tc", &full);
}

fn existing_qdisc_is_refused_and_kept(kind: &str, parent: &str) {
    let net = scratch(1);
    let pod = net.pod_name.clone();
    let dir = TempStateDir::new();
    let id = format!("qd-{kind}");
    let _cleanup = DetachOnDrop::new(dir.path(), id.clone());
    tc(&pod, &["qdisc", "add", "dev", "eth0", kind]);
    // A filter of theirs, which a rollback must not take away.
    tc(
        &pod,
        &[
            "filter", "add", "dev", "eth0", "parent", parent, "prio", "7", "protocol", "ip", "u32",
            "match", "u32", "0", "0", "flowid", "1:1",
        ],
    );
    let before = settled_snapshot(&pod);
    assert!(
        before.filters.iter().any(|f| f.starts_with("eth0:")),
        "{before:?}"
    );
    let state_dir = dir.path().display().to_string();
    let (code, out, err) = cli(&[
        "--state-dir",
        &state_dir,
        "attach",
        "--netns",
        &pod,
        "--id",
        &id,
    ]);
    println!("{kind}: exit {code}: {}", err.trim_end());
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(
            "an ingress (or clsact) qdisc already exists on eth0; sandbox-net does not share it"
        ),
        "{err}"
    );
    assert!(
        err.contains("add ingress qdisc"),
        "the step is named: {err}"
    );
    assert_settles_to(&pod, &before, &format!("after the refused attach ({kind})"));
    assert_eq!(our_links(&pod), Vec::<String>::new());
    assert_eq!(listing(dir.path()), Vec::<String>::new());
}

#[test]
fn an_existing_ingress_qdisc_is_refused_and_kept() {
    existing_qdisc_is_refused_and_kept("ingress", "ffff:");
}

#[test]
fn an_existing_clsact_qdisc_is_refused_and_kept() {
    existing_qdisc_is_refused_and_kept("clsact", "ffff:fff2");
}
