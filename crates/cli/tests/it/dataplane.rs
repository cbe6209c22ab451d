//! Dataplane, for queues 1 and 4: a fake guest opens the persisted tap by name as a VMM
//! would (same flags) and exchanges ARP/NDP and ICMP echo with the peer in both directions.
//! It must fail when the filters are missing (negative controls).

use std::net::IpAddr;

use crate::common::*;
use sandbox_net::{Attachment, Detached};
use sandbox_net_testkit::dataplane::{self, PingReport};
use sandbox_net_testkit::scratch::ScratchNet;

/// Attach `net`'s pod as `id` with `queues` per tap, guarded.
fn attach(
    net: &ScratchNet,
    dir: &TempStateDir,
    id: &str,
    queues: u32,
) -> (Attachment, DetachOnDrop) {
    let mut opts = options(&net.pod_name, dir, id);
    opts.queues = queues;
    crate::common::attach(&opts)
}

/// Run the dataplane check for endpoint `i` of `a` (the scratch link of the same name),
/// the guest pinging `peer_ips`.
fn check(
    net: &ScratchNet,
    a: &Attachment,
    i: usize,
    peer_ips: &[IpAddr],
) -> sandbox_net::Result<Vec<PingReport>> {
    let ep = &a.endpoints[i];
    let iface = a
        .guest
        .as_ref()
        .expect("the attach described the guest")
        .interfaces
        .iter()
        .find(|g| g.name == ep.name)
        .unwrap_or_else(|| panic!("no guest interface for {}", ep.name));
    let link = net
        .links
        .iter()
        .find(|l| l.name == ep.name)
        .unwrap_or_else(|| panic!("no scratch link {}", ep.name));
    let id = dataplane::identity(ep, iface).expect("identity");
    assert_eq!(id.ipv4, Some(link.pod_v4), "{}: guest IPv4", ep.name);
    assert_eq!(id.ipv6, Some(link.pod_v6), "{}: guest IPv6", ep.name);
    assert_eq!(id.mac, link.mac, "{}: guest MAC is the veth's", ep.name);
    dataplane::check(&net.pod, &net.peer, ep, id, peer_ips, COUNT)
}

fn peer_ips(net: &ScratchNet, i: usize) -> [IpAddr; 2] {
    [
        IpAddr::V4(net.links[i].peer_v4),
        IpAddr::V6(net.links[i].peer_v6),
    ]
}

/// Packets the redirect filter on `dev`'s ingress has redirected so far.
fn redirected_packets(ns: &str, dev: &str) -> u64 {
    let filters = tc_json(ns, &["-s", "filter", "show", "dev", dev, "ingress"]);
    let mut total = 0;
    for f in filters.as_array().into_iter().flatten() {
        for act in f["options"]["actions"].as_array().into_iter().flatten() {
            if act["kind"] == "mirred" {
                total += act["stats"]["packets"].as_u64().unwrap_or(0);
            }
        }
    }
    total
}

fn tap_info(ns: &str, tap: &str) -> serde_json::Value {
    ip_json(ns, &["-d", "link", "show", "dev", tap])[0]["linkinfo"]["info_data"].clone()
}

fn dataplane_round_trip(queues: u32) {
    let _serial = serial();
    let net = scratch(1);
    let dir = TempStateDir::new();
    let before = snapshot(&net.pod_name);
    let id = format!("dp-q{queues}");
    let (a, guard) = attach(&net, &dir, &id, queues);
    assert_eq!(a.endpoints.len(), 1);
    let ep = &a.endpoints[0];
    assert_eq!(
        (ep.name.as_str(), ep.device().unwrap_or_default()),
        ("eth0", "tap0_sn")
    );
    assert_eq!(ep.queues, queues);
    let info = tap_info(&net.pod_name, "tap0_sn");
    println!("tap0_sn: {info}");
    assert_eq!(info["type"], "tap", "{info}");
    assert_eq!(info["pi"], false, "{info}");
    assert_eq!(info["vnet_hdr"], true, "{info}");
    assert_eq!(info["persist"], true, "{info}");
    assert_eq!(info["multi_queue"], queues > 1, "{info}");

    let (eth_before, tap_before) = (
        redirected_packets(&net.pod_name, "eth0"),
        redirected_packets(&net.pod_name, "tap0_sn"),
    );
    let reports = check(&net, &a, 0, &peer_ips(&net, 0)).expect("dataplane check");
    assert_replied(&format!("queues {queues}"), &reports, 2, 2);
    // Both redirect filters carried the frames: every request and reply crossed them.
    let eth_moved = redirected_packets(&net.pod_name, "eth0") - eth_before;
    let tap_moved = redirected_packets(&net.pod_name, "tap0_sn") - tap_before;
    println!("redirected: eth0 -> tap {eth_moved} packets, tap -> eth0 {tap_moved} packets");
    assert!(
        eth_moved >= 4 * u64::from(COUNT),
        "eth0 -> tap0_sn redirected {eth_moved}"
    );
    assert!(
        tap_moved >= 4 * u64::from(COUNT),
        "tap0_sn -> eth0 redirected {tap_moved}"
    );

    // The tap is still usable after the fake guest closed its queues (it is persistent):
    // a second VMM session works as well.
    let again = check(&net, &a, 0, &peer_ips(&net, 0)).expect("dataplane check, second session");
    assert_replied(&format!("queues {queues}, again"), &again, 2, 2);

    assert!(matches!(guard.detach(), Detached::Detached { .. }));
    assert_eq!(snapshot(&net.pod_name), before);
}

#[test]
fn dataplane_single_queue() {
    dataplane_round_trip(1);
}

#[test]
fn dataplane_four_queues() {
    dataplane_round_trip(4);
}

#[test]
fn dataplane_fails_without_the_redirect_filters() {
    let _serial = serial();
    for queues in [1, 4] {
        let net = scratch(1);
        let dir = TempStateDir::new();
        let before = snapshot(&net.pod_name);
        let (a, guard) = attach(&net, &dir, "dp-nofilters", queues);
        run(
            "tc",
            &[
                "-n",
                &net.pod_name,
                "filter",
                "del",
                "dev",
                "eth0",
                "ingress",
            ],
        );
        run(
            "tc",
            &[
                "-n",
                &net.pod_name,
                "filter",
                "del",
                "dev",
                "tap0_sn",
                "ingress",
            ],
        );
        let e = check(&net, &a, 0, &peer_ips(&net, 0))
            .expect_err("the check must fail without the filters");
        println!("queues {queues}, no filters: {e}");
        assert!(e.to_string().contains("resolve"), "{e}");
        // Peer -> guest alone must fail too: the pod netns itself answers, not the guest.
        let e = check(&net, &a, 0, &[]).expect_err("peer -> guest must fail without the filters");
        println!("queues {queues}, no filters, peer -> guest: {e}");
        assert!(e.to_string().contains("fake guest answered only 0"), "{e}");
        assert!(matches!(guard.detach(), Detached::Detached { .. }));
        assert_eq!(snapshot(&net.pod_name), before);
    }
}

#[test]
fn dataplane_fails_without_the_eth0_to_tap_filter() {
    let _serial = serial();
    let net = scratch(1);
    let dir = TempStateDir::new();
    let before = snapshot(&net.pod_name);
    let (a, guard) = attach(&net, &dir, "dp-half", 1);
    // Works first, so what follows is caused by the missing filter alone.
    let reports = check(&net, &a, 0, &peer_ips(&net, 0)).expect("dataplane check");
    assert_replied("before removing the filter", &reports, 2, 2);
    run(
        "tc",
        &[
            "-n",
            &net.pod_name,
            "filter",
            "del",
            "dev",
            "eth0",
            "ingress",
        ],
    );
    // Guest -> peer: the requests go out, but the ARP/NDP replies can't come back.
    for ip in peer_ips(&net, 0) {
        let e = check(&net, &a, 0, &[ip]).expect_err("guest -> peer must fail");
        println!("guest -> {ip} without eth0 -> tap: {e}");
        assert!(e.to_string().contains("resolve"), "{e}");
    }
    // Peer -> guest: the requests never reach the guest (the pod netns answers them).
    let e = check(&net, &a, 0, &[]).expect_err("peer -> guest must fail");
    println!("peer -> guest without eth0 -> tap: {e}");
    assert!(e.to_string().contains("fake guest answered only 0"), "{e}");
    // The status reports the missing filter as drift.
    let st = sandbox_net::status(dir.path(), "dp-half")
        .expect("status")
        .expect("attached");
    assert!(st.drift, "{st:?}");
    let missing: Vec<&str> = st
        .objects
        .iter()
        .flatten()
        .filter(|o| !o.present)
        .map(|o| o.object.as_str())
        .collect();
    assert_eq!(missing, vec!["redirect filter eth0 -> tap0_sn"]);
    // Detach copes with the missing filter and leaves the netns as it was.
    assert!(matches!(guard.detach(), Detached::Detached { .. }));
    assert_eq!(snapshot(&net.pod_name), before);
}

#[test]
fn dataplane_three_veths() {
    let _serial = serial();
    let net = scratch(3);
    let dir = TempStateDir::new();
    let before = snapshot(&net.pod_name);
    let (a, guard) = attach(&net, &dir, "dp-three", 1);
    let pairs: Vec<(&str, &str)> = a
        .endpoints
        .iter()
        .map(|e| (e.name.as_str(), e.device().unwrap_or_default()))
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("eth0", "tap0_sn"),
            ("eth1", "tap1_sn"),
            ("eth2", "tap2_sn")
        ]
    );
    for i in 0..3 {
        let reports = check(&net, &a, i, &peer_ips(&net, i)).expect("dataplane check");
        assert_replied(&format!("eth{i}"), &reports, 2, 2);
    }
    assert!(matches!(
        guard.detach(),
        Detached::Detached { objects: 15, .. }
    ));
    assert_eq!(snapshot(&net.pod_name), before);
}
