//! Issue #17, CLI item 10: an interface removed with `remove-endpoint` (it still has its
//! addresses) is not attached again by a watch of its sandbox until an explicit
//! `add-endpoint` (the state records it: `detached_by_user`); two watchers of one sandbox
//! each report the endpoints the other attached or detached (from the state's change), and
//! so do they for add-endpoint/remove-endpoint run by hand.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::watch_child::Watch;

const EVENT_WAIT: Duration = Duration::from_secs(10);

fn is(event: &Value, kind: &str, iface: &str) -> bool {
    event["event"] == kind && event["endpoint"]["name"] == iface
}

fn attached(dir: &TempStateDir, id: &str) -> Vec<String> {
    sandbox_net::status(dir.path(), id)
        .expect("status")
        .expect("attached")
        .endpoints
        .into_iter()
        .map(|e| e.name)
        .collect()
}

fn detached_by_user(dir: &TempStateDir, id: &str) -> Vec<String> {
    sandbox_net::state::StateDir::open(dir.path())
        .expect("state dir")
        .load(id)
        .expect("load")
        .expect("state")
        .detached_by_user
}

#[test]
fn remove_endpoint_is_not_undone_by_watch_until_add_endpoint() {
    let _serial = serial();
    let net = scratch(2);
    let dir = TempStateDir::new();
    let id = unique_name("w-removed");
    let _cleanup = DetachOnDrop::new(dir.path(), id.clone());
    let (code, _, err) = cli_attach(&dir, &net.pod_name, &id, &[]);
    assert_eq!(code, 0, "{err}");
    let mut watch = Watch::start(&dir, &id);

    let (code, _, err) = cli_at(&dir, &["remove-endpoint", "--id", &id, "--iface", "eth1"]);
    assert_eq!(code, 0, "{err}");
    // The watch reports the removal it did not make...
    watch.until("endpoint-removed eth1", EVENT_WAIT, |e| {
        is(e, "endpoint-removed", "eth1")
    });
    assert_eq!(detached_by_user(&dir, &id), ["eth1"]);
    // ...and leaves eth1 alone, addresses and all, through further changes of the netns.
    ip(
        &net.pod_name,
        &["addr", "add", "10.77.1.9/24", "dev", "eth1"],
    );
    ip(&net.pod_name, &["link", "set", "eth0", "mtu", "1400"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(attached(&dir, &id), ["eth0"]);
    assert!(
        !link_names(&net.pod_name).iter().any(|n| n == "tap1_sn"),
        "eth1 was attached again"
    );

    // An explicit add-endpoint attaches it, clears the record, and the watch says so.
    let (code, _, err) = cli_at(&dir, &["add-endpoint", "--id", &id, "--iface", "eth1"]);
    assert_eq!(code, 0, "{err}");
    watch.until("endpoint-added eth1", EVENT_WAIT, |e| {
        is(e, "endpoint-added", "eth1")
    });
    assert!(detached_by_user(&dir, &id).is_empty());
    let events = watch.stop();
    let adds = events
        .iter()
        .filter(|e| is(e, "endpoint-added", "eth1"))
        .count();
    assert_eq!(adds, 1, "{events:#?}");
    assert!(!events.iter().any(|e| e["event"] == "error"), "{events:#?}");
}

#[test]
fn two_watchers_each_report_what_the_other_did() {
    let _serial = serial();
    let mut net = scratch(1);
    let dir = TempStateDir::new();
    let id = unique_name("w-two");
    let _cleanup = DetachOnDrop::new(dir.path(), id.clone());
    let (code, _, err) = cli_attach(&dir, &net.pod_name, &id, &[]);
    assert_eq!(code, 0, "{err}");
    let mut first = Watch::start(&dir, &id);
    let mut second = Watch::start(&dir, &id);

    net.add_link(1, 1500, false).expect("add eth1");
    for w in [&mut first, &mut second] {
        w.until("endpoint-added eth1", EVENT_WAIT, |e| {
            is(e, "endpoint-added", "eth1")
        });
    }
    assert_eq!(attached(&dir, &id), ["eth0", "eth1"]);

    ip(&net.pod_name, &["link", "del", "eth1"]);
    for w in [&mut first, &mut second] {
        w.until("endpoint-removed eth1", EVENT_WAIT, |e| {
            is(e, "endpoint-removed", "eth1")
        });
    }
    assert_eq!(attached(&dir, &id), ["eth0"]);
    // A gone interface is not "detached by the user": one coming back is attached.
    assert!(detached_by_user(&dir, &id).is_empty());
    for w in [first, second] {
        let events = w.stop();
        assert!(
            !events.iter().any(|e| e["event"] == "error"),
            "the loser of a race reports no error: {events:#?}"
        );
    }
}
