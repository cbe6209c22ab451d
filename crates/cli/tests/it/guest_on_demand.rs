//! Attach without taking the guest description (`AttachOptions::describe_guest` off, as the
//! CNI plugin attaches): a named interface costs one link request and the 5 changes (6 in
//! all), every configured interface the link and address dumps and the changes (7); the
//! description `guest-config` then reads from the netns equals the one an attach records;
//! traffic flows; a named interface without addresses is attached; bad names change
//! nothing; under macvtap the description is still taken (the addresses leave eth0);
//! hotplug reports the description read from the netns; the CLI's `attach --no-guest`.

use crate::common::*;
use sandbox_net::Model;
use sandbox_net::state::StateDir;
use sandbox_net_testkit::scratch::ScratchNet;

fn state_json(dir: &TempStateDir, id: &str) -> serde_json::Value {
    let path = StateDir::open(dir.path())
        .expect("state dir")
        .state_path(id);
    state_value(&path)
}

/// A pod with eth0 configured and eth1 without any address.
fn eth0_and_bare_eth1() -> ScratchNet {
    let mut net = scratch(1);
    net.add_link(1, 1500, false).expect("second veth");
    run("ip", &["-n", &net.pod_name, "addr", "flush", "dev", "eth1"]);
    net
}

#[test]
fn a_named_interface_takes_six_requests_and_the_guest_is_read_when_asked() {
    let _serial = serial();
    let net = scratch(1);
    let pod = net.pod_name.as_str();
    let dir = TempStateDir::new();
    let before = settled_snapshot(pod);

    // The reference: an attach that records the description (the default).
    let (recorded, guard) = attach(&options(pod, &dir, "god-full"));
    assert_eq!(recorded.netlink_requests, 9, "4 dumps + 5 changes");
    let recorded_guest = described(&recorded.guest).clone();
    guard.detach();
    assert_settles_to(pod, &before, "after the describing attach");

    let mut opts = options(pod, &dir, "god-named");
    opts.describe_guest = false;
    opts.interfaces = Some(vec!["eth0".into()]);
    let (a, guard) = attach(&opts);
    println!("requests: {}", a.netlink_requests);
    assert_eq!(a.netlink_requests, 6, "1 link request + 5 changes");
    assert_eq!(a.guest, None);
    assert_eq!(a.endpoints.len(), 1);
    assert!(
        state_json(&dir, "god-named").get("guest").is_none(),
        "no description in the state file"
    );
    let live = sandbox_net::guest_config(dir.path(), "god-named")
        .expect("guest-config")
        .expect("attached");
    assert_eq!(live, recorded_guest, "the description read from the netns");
    let peers = [
        std::net::IpAddr::V4(net.links[0].peer_v4),
        std::net::IpAddr::V6(net.links[0].peer_v6),
    ];
    let reports =
        check_guest(&net.pod, &net.peer, &a.endpoints[0], &live, &peers).expect("dataplane");
    assert_replied("eth0", &reports, peers.len(), peers.len());

    // The CLI renders the description it reads from the netns.
    let dir_arg = dir.path().display().to_string();
    let (code, out, err) = crate::common::cli(&[
        "--state-dir",
        &dir_arg,
        "guest-config",
        "--id",
        "god-named",
        "--format",
        "kernel-ip",
    ]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("10."), "{out}");

    let status = sandbox_net::status(dir.path(), "god-named")
        .expect("status")
        .expect("attached");
    assert!(!status.drift, "{status:?}");
    guard.detach();
    assert_settles_to(pod, &before, "after detach");
}

#[test]
fn every_configured_interface_takes_the_link_and_address_dumps() {
    let _serial = serial();
    // eth1 has no address: not configured, not attached.
    let net = eth0_and_bare_eth1();
    let pod = net.pod_name.as_str();
    let dir = TempStateDir::new();
    let before = settled_snapshot(pod);
    let mut opts = options(pod, &dir, "god-all");
    opts.describe_guest = false;
    let (a, guard) = attach(&opts);
    assert_eq!(a.netlink_requests, 7, "2 dumps + 5 changes");
    let names: Vec<&str> = a.endpoints.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, vec!["eth0"]);
    let live = sandbox_net::guest_config(dir.path(), "god-all")
        .expect("guest-config")
        .expect("attached");
    let guest_names: Vec<&str> = live.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(guest_names, vec!["eth0"]);
    assert!(!live.routes.is_empty(), "{live:?}");
    guard.detach();
    assert_settles_to(pod, &before, "after detach");
}

#[test]
fn a_named_interface_without_addresses_is_attached_and_bad_names_change_nothing() {
    let _serial = serial();
    let net = eth0_and_bare_eth1();
    let pod = net.pod_name.as_str();
    let dir = TempStateDir::new();
    let before = settled_snapshot(pod);

    for (name, why) in [("eth7", "no such interface"), ("lo", "loopback")] {
        let mut opts = options(pod, &dir, "god-bad");
        opts.describe_guest = false;
        opts.interfaces = Some(vec![name.into()]);
        let err = sandbox_net::attach(&opts).expect_err(name).to_string();
        println!("{name}: {err}");
        assert!(err.contains(name) && err.contains(why), "{err}");
        assert_settles_to(pod, &before, name);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("state dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(
            left.is_empty(),
            "state dir after a refused attach: {left:?}"
        );
    }

    let mut opts = options(pod, &dir, "god-bare");
    opts.describe_guest = false;
    opts.interfaces = Some(vec!["eth1".into()]);
    let (a, guard) = attach(&opts);
    assert_eq!(a.netlink_requests, 6);
    assert_eq!(a.endpoints[0].name, "eth1");
    let live = sandbox_net::guest_config(dir.path(), "god-bare")
        .expect("guest-config")
        .expect("attached");
    assert_eq!(live.interfaces.len(), 1);
    assert!(live.interfaces[0].addresses.is_empty(), "{live:?}");
    guard.detach();
    assert_settles_to(pod, &before, "after detach");
}

#[test]
fn under_macvtap_the_description_is_taken_anyway() {
    let _serial = serial();
    let net = scratch(1);
    let pod = net.pod_name.as_str();
    let dir = TempStateDir::new();
    let before = settled_snapshot(pod);
    let mut opts = options(pod, &dir, "god-mvt");
    opts.describe_guest = false;
    opts.model = Model::Macvtap;
    let (a, guard) = attach(&opts);
    let g = described(&a.guest);
    assert_eq!(g.interfaces.len(), 1);
    assert!(!g.interfaces[0].addresses.is_empty(), "{g:?}");
    assert_eq!(
        sandbox_net::guest_config(dir.path(), "god-mvt").expect("guest-config"),
        a.guest.clone()
    );
    guard.detach();
    assert_settles_to(pod, &before, "after detach");
}

#[test]
fn the_cli_attaches_without_the_guest_description() {
    let _serial = serial();
    let net = scratch(1);
    let pod = net.pod_name.as_str();
    let dir = TempStateDir::new();
    let dir_arg = dir.path().display().to_string();
    let before = settled_snapshot(pod);
    let (code, out, err) = crate::common::cli(&[
        "--state-dir",
        &dir_arg,
        "attach",
        "--netns",
        pod,
        "--id",
        "god-cli",
        "--iface",
        "eth0",
        "--no-guest",
        "--json",
    ]);
    let _guard = DetachOnDrop::new(dir.path(), "god-cli");
    assert_eq!(code, 0, "{out} {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("attach JSON");
    assert!(v.get("guest").is_none(), "{v}");
    assert_eq!(v["netlink_requests"], 6, "{v}");
    let (code, out, err) =
        crate::common::cli(&["--state-dir", &dir_arg, "guest-config", "--id", "god-cli"]);
    assert_eq!(code, 0, "{out} {err}");
    let g: serde_json::Value = serde_json::from_str(&out).expect("guest JSON");
    assert_eq!(g["interfaces"][0]["name"], "eth0", "{g}");
    let (code, out, err) =
        crate::common::cli(&["--state-dir", &dir_arg, "detach", "--id", "god-cli"]);
    assert_eq!(code, 0, "{out} {err}");
    assert_settles_to(pod, &before, "after detach");
}

#[test]
fn hotplug_reports_the_description_read_from_the_netns() {
    let _serial = serial();
    let net = scratch(2);
    let pod = net.pod_name.as_str();
    let dir = TempStateDir::new();
    let before = settled_snapshot(pod);
    let mut opts = options(pod, &dir, "god-hot");
    opts.describe_guest = false;
    opts.interfaces = Some(vec!["eth0".into()]);
    let (_a, guard) = attach(&opts);
    let names = |g: &sandbox_net::guest::GuestConfig| -> Vec<String> {
        g.interfaces.iter().map(|i| i.name.clone()).collect()
    };
    let added = sandbox_net::add_endpoint(dir.path(), "god-hot", "eth1").expect("add eth1");
    assert_eq!(names(&added.guest), vec!["eth0", "eth1"]);
    assert_eq!(
        added.guest.interfaces[1].addresses.len(),
        2,
        "{:?}",
        added.guest
    );
    let removed = sandbox_net::remove_endpoint(dir.path(), "god-hot", "eth1").expect("remove eth1");
    assert_eq!(names(&removed.guest), vec!["eth0"]);
    assert!(removed.guest.routes.iter().all(|r| r.device != "eth1"));
    guard.detach();
    assert_settles_to(pod, &before, "after detach");
}
