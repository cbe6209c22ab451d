//! The VMM hand-off at the crate root (`sandbox_net::handoff`): it opens the queues of the
//! taps in the sandbox's netns proven the one attached, refuses a replaced netns with the
//! replaced-netns error kind, and never creates a tap (opening a tap by name that does not
//! exist would create one).

use sandbox_net::error::NetnsProblem;
use sandbox_net::{Error, HandoffOptions, handoff};

use crate::common::*;

fn attach_in(netns: &str, dir: &TempStateDir, id: &str, queues: u32) -> DetachOnDrop {
    let mut opts = options(netns, dir, id);
    opts.queues = queues;
    let (_, guard) = attach(&opts);
    guard
}

#[test]
fn hands_over_every_queue_of_the_tap_proven_ours() {
    let net = scratch(2);
    let dir = TempStateDir::new();
    let _a = attach_in(&net.pod_name, &dir, "ho-ok", 2);
    let before = link_names(&net.pod_name);
    let h = handoff(dir.path(), "ho-ok", HandoffOptions { vhost: true }).expect("handoff");
    assert_eq!(h.endpoints.len(), 2);
    for (ep, tap) in h.endpoints.iter().zip(["tap0_sn", "tap1_sn"]) {
        assert_eq!(ep.device, tap);
        assert_eq!(ep.queues.len(), 2, "{}: one fd per queue", ep.endpoint);
        if h.vhost {
            assert_eq!(ep.vhost.len(), 2);
        } else {
            assert!(ep.vhost.is_empty() && !h.warnings.is_empty(), "{h:?}");
        }
    }
    // Numbers the runtime chooses, e.g. from 10.
    let numbers = h.numbered_from(10);
    assert_eq!(numbers[0].queue_fds, vec![10, 11]);
    assert_eq!(link_names(&net.pod_name), before, "nothing created");
    drop(h);
    assert_eq!(link_names(&net.pod_name), before);
}

#[test]
fn hands_over_a_macvtap_through_its_character_device() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let mut opts = options(&net.pod_name, &dir, "ho-mvt");
    opts.model = sandbox_net::Model::Macvtap;
    opts.queues = 2;
    let (_, _guard) = attach(&opts);
    let before = link_names(&net.pod_name);
    let h = handoff(dir.path(), "ho-mvt", HandoffOptions::default()).expect("handoff");
    assert_eq!(h.endpoints.len(), 1);
    assert_eq!(h.endpoints[0].device, "mvtap0_sn");
    assert_eq!(h.endpoints[0].queues.len(), 2);
    assert_eq!(link_names(&net.pod_name), before, "nothing created");
}

#[test]
fn refuses_a_replaced_netns_with_a_tap_of_the_same_name() {
    let _serial = serial();
    let dir = TempStateDir::new();
    let name = unique_name("snt-ho");
    run("ip", &["netns", "add", &name]);
    let _ns = DeleteOnDrop(name.clone());
    ip(
        &name,
        &["link", "add", "eth0", "type", "veth", "peer", "name", "p0"],
    );
    ip(&name, &["addr", "add", "10.89.0.2/24", "dev", "eth0"]);
    ip(&name, &["link", "set", "eth0", "up"]);
    ip(&name, &["link", "set", "p0", "up"]);
    let _a = attach_in(&name, &dir, "ho-replaced", 1);

    // The pod goes; another comes under the same name, with a tap named as ours.
    run("ip", &["netns", "del", &name]);
    run("ip", &["netns", "add", &name]);
    ip(&name, &["tuntap", "add", "tap0_sn", "mode", "tap"]);
    let before = link_names(&name);

    let e = handoff(dir.path(), "ho-replaced", HandoffOptions::default())
        .expect_err("a replaced netns is refused");
    println!("{e}");
    assert_eq!(e.netns_problem(), Some(NetnsProblem::Replaced), "{e}");
    assert!(
        matches!(&e, Error::NetnsLost { id, .. } if id == "ho-replaced"),
        "{e:?}"
    );
    assert_eq!(
        link_names(&name),
        before,
        "nothing created, nothing removed"
    );
}

#[test]
fn never_creates_a_tap_that_was_removed_behind_its_back() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let _a = attach_in(&net.pod_name, &dir, "ho-gone", 1);
    ip(&net.pod_name, &["link", "del", "tap0_sn"]);
    let before = link_names(&net.pod_name);
    assert!(!before.iter().any(|n| n == "tap0_sn"));

    let e = handoff(dir.path(), "ho-gone", HandoffOptions::default()).expect_err("the tap is gone");
    println!("{e}");
    assert!(e.to_string().contains("tap0_sn"), "{e}");
    assert_eq!(e.exit_code(), 1, "{e}");
    assert_eq!(link_names(&net.pod_name), before, "no tap was created");

    // A tap of the same name that is not ours is refused too, and left as it is.
    ip(&net.pod_name, &["tuntap", "add", "tap0_sn", "mode", "tap"]);
    let before = link_names(&net.pod_name);
    let e =
        handoff(dir.path(), "ho-gone", HandoffOptions::default()).expect_err("the tap is not ours");
    println!("{e}");
    // (at another ifindex than the recorded one: the tap attached is gone)
    assert!(e.to_string().contains("tap0_sn"), "{e}");
    assert_eq!(link_names(&net.pod_name), before, "nothing removed");
}

#[test]
fn an_unknown_id_is_not_attached() {
    let dir = TempStateDir::new();
    let e = handoff(dir.path(), "ho-none", HandoffOptions::default()).expect_err("unknown");
    assert!(
        matches!(&e, Error::NotAttached { id } if id == "ho-none"),
        "{e:?}"
    );
    assert_eq!(e.exit_code(), 3);
}
