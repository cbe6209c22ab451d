//! Several interfaces and hotplug (issue #3): three veths attached in a deterministic order
//! with a stable guest description; a fourth hot-added and one removed while the others keep
//! passing traffic, with state, journal and status kept right; the lowest free tap slot
//! reused; an empty attachment after removing every endpoint; the CLI's `add-endpoint` and
//! `remove-endpoint --json`; and hotplug under the macvtap model.

use std::net::IpAddr;

use crate::common::*;
use sandbox_net::state::{State, StateDir};
use sandbox_net::{Attachment, Detached, Model};
use sandbox_net_testkit::scratch::ScratchNet;
use serde_json::Value;

fn peer_ips(net: &ScratchNet, name: &str) -> [IpAddr; 2] {
    let l = net
        .links
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no scratch link {name}"));
    [IpAddr::V4(l.peer_v4), IpAddr::V6(l.peer_v6)]
}

fn load(dir: &TempStateDir, id: &str) -> State {
    StateDir::open(dir.path())
        .expect("state dir")
        .load(id)
        .expect("load")
        .expect("state exists")
}

/// (name, tap) of every endpoint recorded for `id`.
fn recorded(dir: &TempStateDir, id: &str) -> Vec<(String, String)> {
    load(dir, id)
        .endpoints
        .iter()
        .map(|e| (e.name.clone(), e.device().unwrap_or_default().to_string()))
        .collect()
}

fn pairs(names: &[(&str, &str)]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The status of `id` has no drift, every journalled object is present, and none of them
/// is about `gone` (interface or tap names).
fn assert_status_clean(dir: &TempStateDir, id: &str, gone: &[&str]) {
    let st = sandbox_net::status(dir.path(), id)
        .expect("status")
        .expect("attached");
    assert!(!st.drift, "{st:?}");
    for o in st.objects.iter().flatten() {
        assert!(o.present, "{o:?}");
        for g in gone {
            let words: Vec<&str> = o.object.split([' ', '(', ')']).collect();
            assert!(!words.contains(g), "{g} still journalled: {}", o.object);
        }
    }
    let state = load(dir, id);
    for entry in &state.journal {
        assert!(!gone.contains(&entry.device()), "{entry:?}");
    }
}

/// The dataplane check of the attached endpoint `name` (endpoint and guest from the state).
fn check_endpoint(net: &ScratchNet, dir: &TempStateDir, id: &str, name: &str) {
    let state = load(dir, id);
    let ep = state
        .endpoints
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("{name} is not attached"));
    let reports = check_guest(
        &net.pod,
        &net.peer,
        ep,
        described(&state.guest),
        &peer_ips(net, name),
    )
    .unwrap_or_else(|e| panic!("dataplane of {name}: {e}"));
    let tap = ep.device().unwrap_or_default();
    assert_replied(&format!("{name} ({tap})"), &reports, 2, 2);
}

fn guest_names(a: &sandbox_net::guest::GuestConfig) -> Vec<&str> {
    a.interfaces.iter().map(|i| i.name.as_str()).collect()
}

/// What a tap of ours looks like in the netns: it exists, with an ingress qdisc and a
/// redirect filter on it and on its endpoint.
fn assert_plumbed(ns: &str, iface: &str, tap: &str) {
    assert!(link_names(ns).contains(&tap.to_string()), "{tap} exists");
    for (dev, target) in [(iface, tap), (tap, iface)] {
        let filters = tc_json(ns, &["filter", "show", "dev", dev, "ingress"]);
        assert!(
            filters.to_string().contains(target),
            "{dev} -> {target}: {filters}"
        );
    }
}

fn assert_unplumbed(ns: &str, iface: &str, tap: &str) {
    assert!(!link_names(ns).contains(&tap.to_string()), "{tap} is gone");
    let qdiscs = tc_json(ns, &["qdisc", "show", "dev", iface]);
    assert!(
        !qdiscs.to_string().contains("ingress"),
        "{iface} has no ingress qdisc left: {qdiscs}"
    );
    assert_eq!(
        tc_json(ns, &["filter", "show", "dev", iface, "ingress"]),
        Value::Array(vec![])
    );
}

/// `base` plus every line of `other` that mentions `dev` (links, addresses, routes, qdiscs
/// and filters of that device).
fn with_lines_of(base: &NetnsSnapshot, other: &NetnsSnapshot, dev: &str) -> NetnsSnapshot {
    let merge = |a: &[String], b: &[String]| {
        let mut out: Vec<String> = a
            .iter()
            .cloned()
            .chain(b.iter().filter(|l| l.contains(dev)).cloned())
            .collect();
        out.sort();
        out
    };
    NetnsSnapshot {
        links: merge(&base.links, &other.links),
        addresses: merge(&base.addresses, &other.addresses),
        routes: merge(&base.routes, &other.routes),
        qdiscs: merge(&base.qdiscs, &other.qdiscs),
        filters: merge(&base.filters, &other.filters),
        sysctls: merge(&base.sysctls, &other.sysctls),
        proxies: merge(&base.proxies, &other.proxies),
    }
}

#[test]
fn three_interfaces_then_hotplug() {
    let _serial = serial();
    let mut net = scratch(3);
    let pod = net.pod_name.clone();
    let pod = pod.as_str();
    let dir = TempStateDir::new();
    let before = settled_snapshot(pod);
    let id = "hot-1";
    let opts = options(pod, &dir, id);

    // Two attaches of the same netns: same endpoints, same guest description, in order.
    let mut seen: Vec<Attachment> = Vec::new();
    for round in 0..2 {
        let (a, guard) = attach(&opts);
        let eps: Vec<(&str, &str)> = a
            .endpoints
            .iter()
            .map(|e| (e.name.as_str(), e.device().unwrap_or_default()))
            .collect();
        println!("attach {round}: {eps:?}");
        assert_eq!(
            eps,
            vec![
                ("eth0", "tap0_sn"),
                ("eth1", "tap1_sn"),
                ("eth2", "tap2_sn")
            ]
        );
        assert_eq!(
            guest_names(described(&a.guest)),
            vec!["eth0", "eth1", "eth2"]
        );
        if let Some(first) = seen.first() {
            assert_eq!(a.guest, first.guest, "stable guest description");
            // A new tap gets a new random MAC each attach; everything else is stable.
            let without_tap_mac = |eps: &[sandbox_net::Endpoint]| {
                let mut eps = eps.to_vec();
                eps.iter_mut().for_each(|e| {
                    if let sandbox_net::Backend::Tap { mac, .. } = &mut e.backend {
                        *mac = None;
                    }
                });
                eps
            };
            assert_eq!(
                without_tap_mac(&a.endpoints),
                without_tap_mac(&first.endpoints)
            );
        }
        if round == 0 {
            assert!(matches!(
                guard.detach(),
                Detached::Detached { objects: 15, .. }
            ));
            assert_settles_to(pod, &before, "after the first detach");
        } else {
            guard.disarm();
        }
        seen.push(a);
    }
    // From here on the sandbox is detached on drop by this guard.
    let guard = DetachOnDrop::new(dir.path(), id);
    for name in ["eth0", "eth1", "eth2"] {
        check_endpoint(&net, &dir, id, name);
    }

    // Hotplug a fourth veth.
    net.add_link(3, 1500, false).expect("add eth3");
    // The netns as it was before the attach, plus eth3 as it is now (not attached yet).
    let before4 = with_lines_of(&before, &settled_snapshot(pod), "eth3");
    let change = sandbox_net::add_endpoint(dir.path(), id, "eth3").expect("add eth3");
    println!(
        "added: {}",
        serde_json::to_string(&change.endpoint).unwrap_or_default()
    );
    assert_eq!(
        (
            change.endpoint.name.as_str(),
            change.endpoint.device().unwrap_or_default()
        ),
        ("eth3", "tap3_sn")
    );
    assert_eq!(
        guest_names(&change.guest),
        vec!["eth0", "eth1", "eth2", "eth3"]
    );
    assert_eq!(load(&dir, id).guest.as_ref(), Some(&change.guest));
    assert_plumbed(pod, "eth3", "tap3_sn");
    assert_status_clean(&dir, id, &[]);
    check_endpoint(&net, &dir, id, "eth3");
    // Adding it again is refused (exit 2), and changes nothing.
    let e = sandbox_net::add_endpoint(dir.path(), id, "eth3").expect_err("already attached");
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains("already attached"), "{e}");

    // Remove eth1: its tap, qdiscs and filters go; the others stay and pass traffic.
    let change = sandbox_net::remove_endpoint(dir.path(), id, "eth1").expect("remove eth1");
    assert_eq!(
        (
            change.endpoint.name.as_str(),
            change.endpoint.device().unwrap_or_default()
        ),
        ("eth1", "tap1_sn")
    );
    assert_eq!(guest_names(&change.guest), vec!["eth0", "eth2", "eth3"]);
    assert!(change.guest.routes.iter().all(|r| r.device != "eth1"));
    assert!(change.guest.neighbors.iter().all(|n| n.device != "eth1"));
    assert_unplumbed(pod, "eth1", "tap1_sn");
    for (iface, tap) in [
        ("eth0", "tap0_sn"),
        ("eth2", "tap2_sn"),
        ("eth3", "tap3_sn"),
    ] {
        assert_plumbed(pod, iface, tap);
    }
    assert_eq!(
        recorded(&dir, id),
        pairs(&[
            ("eth0", "tap0_sn"),
            ("eth2", "tap2_sn"),
            ("eth3", "tap3_sn")
        ])
    );
    assert_status_clean(&dir, id, &["eth1", "tap1_sn"]);
    assert_eq!(load(&dir, id).journal.len(), 15);
    for name in ["eth0", "eth2", "eth3"] {
        check_endpoint(&net, &dir, id, name);
    }
    let e = sandbox_net::remove_endpoint(dir.path(), id, "eth1").expect_err("not attached");
    assert_eq!(e.exit_code(), 2, "{e}");

    // Add eth1 back: the lowest free slot, tap1_sn again; appended to the guest description.
    let change = sandbox_net::add_endpoint(dir.path(), id, "eth1").expect("add eth1 back");
    assert_eq!(change.endpoint.device(), Some("tap1_sn"));
    assert_eq!(
        guest_names(&change.guest),
        vec!["eth0", "eth2", "eth3", "eth1"]
    );
    assert_plumbed(pod, "eth1", "tap1_sn");
    assert_status_clean(&dir, id, &[]);
    check_endpoint(&net, &dir, id, "eth1");

    // Remove every endpoint, one by one: an empty attachment, not an error.
    for name in ["eth0", "eth1", "eth2", "eth3"] {
        let change = sandbox_net::remove_endpoint(dir.path(), id, name)
            .unwrap_or_else(|e| panic!("remove {name}: {e}"));
        assert_eq!(change.endpoint.name, name);
        assert!(!guest_names(&change.guest).contains(&name));
        assert_status_clean(&dir, id, &[name]);
    }
    let st = sandbox_net::status(dir.path(), id)
        .expect("status")
        .expect("still attached");
    assert!(st.endpoints.is_empty() && !st.drift, "{st:?}");
    assert_eq!(st.objects, Some(vec![]));
    assert_eq!(
        sandbox_net::guest_config(dir.path(), id).expect("guest-config"),
        Some(Default::default())
    );
    assert_settles_to(pod, &before4, "empty attachment");
    assert_eq!(
        guard.detach(),
        Detached::Detached {
            id: id.into(),
            objects: 0,
            left_alone: vec![],
        }
    );
    assert_settles_to(pod, &before4, "after detach");
}

/// Run the CLI with a state dir; (code, parsed stdout or Null, stderr).
fn cli_json(dir: &TempStateDir, args: &[&str]) -> (i32, Value, String) {
    let mut full = vec!["--state-dir", dir.path().to_str().expect("utf-8")];
    full.extend_from_slice(args);
    let (code, out, err) = cli(&full);
    (code, serde_json::from_str(&out).unwrap_or(Value::Null), err)
}

fn json_names(v: &Value, key: &str) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|x| x[key].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn hotplug_through_the_cli() {
    let _serial = serial();
    let net = scratch(2);
    let pod = net.pod_name.as_str();
    let dir = TempStateDir::new();
    let before = settled_snapshot(pod);
    let id = "hot-cli";
    let (code, a, err) = cli_json(
        &dir,
        &[
            "attach", "--netns", pod, "--id", id, "--iface", "eth0", "--json",
        ],
    );
    let guard = DetachOnDrop::new(dir.path(), id);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_names(&a["endpoints"], "name"), vec!["eth0"]);

    let (code, added, err) = cli_json(
        &dir,
        &["add-endpoint", "--id", id, "--iface", "eth1", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    println!("add-endpoint --json: {added}");
    assert_eq!(added["id"], id);
    let ep = &added["endpoint"];
    assert_eq!(
        (ep["name"].as_str(), ep["tap"].as_str()),
        (Some("eth1"), Some("tap1_sn"))
    );
    assert_eq!(ep["kind"], "veth");
    assert_eq!(
        ep["mac"],
        sandbox_net::MacAddr::new(net.links[1].mac).to_string()
    );
    assert_eq!(
        (ep["mtu"].as_u64(), ep["queues"].as_u64()),
        (Some(1500), Some(1))
    );
    assert_eq!(
        json_names(&added["guest"]["interfaces"], "name"),
        vec!["eth0", "eth1"]
    );
    let (_, g, _) = cli_json(&dir, &["guest-config", "--id", id]);
    assert_eq!(
        g, added["guest"],
        "guest-config is the new guest description"
    );
    let (_, st, _) = cli_json(&dir, &["status", "--id", id, "--json"]);
    assert_eq!(st["drift"], false, "{st}");
    assert_eq!(
        json_names(&st["endpoints"], "tap"),
        vec!["tap0_sn", "tap1_sn"]
    );
    check_endpoint(&net, &dir, id, "eth1");

    // Bad hotplug requests: exit 2, naming the interface; an unknown sandbox exits 3
    // (the one rule of docs/cli.md). Removing an interface that is not attached succeeds
    // (it/exit_codes.rs), where it used to exit 2.
    for (args, code_wanted, needle) in [
        (
            vec!["add-endpoint", "--id", id, "--iface", "eth1"],
            2,
            "already attached",
        ),
        (
            vec!["add-endpoint", "--id", id, "--iface", "eth9"],
            2,
            "eth9",
        ),
        (
            vec!["add-endpoint", "--id", "nosuch", "--iface", "eth1"],
            3,
            "sandbox nosuch: not attached",
        ),
    ] {
        let (code, _, err) = cli_json(&dir, &args);
        println!("{args:?}: exit {code}: {}", err.trim());
        assert_eq!(code, code_wanted, "{args:?}: {err}");
        assert!(err.contains(needle), "{needle:?} in {err}");
    }

    let (code, removed, err) = cli_json(
        &dir,
        &["remove-endpoint", "--id", id, "--iface", "eth0", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    println!("remove-endpoint --json: {removed}");
    assert_eq!(removed["endpoint"]["name"], "eth0");
    assert_eq!(removed["endpoint"]["tap"], "tap0_sn");
    assert_eq!(
        json_names(&removed["guest"]["interfaces"], "name"),
        vec!["eth1"]
    );
    assert_unplumbed(pod, "eth0", "tap0_sn");
    check_endpoint(&net, &dir, id, "eth1");

    let (code, removed, err) = cli_json(
        &dir,
        &["remove-endpoint", "--id", id, "--iface", "eth1", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(removed["guest"]["interfaces"], Value::Array(vec![]));
    let (code, st, err) = cli_json(&dir, &["status", "--id", id, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        (&st["endpoints"], &st["drift"]),
        (&Value::Array(vec![]), &Value::Bool(false))
    );
    assert_settles_to(pod, &before, "empty attachment");
    guard.disarm();
    let (code, d, err) = cli_json(&dir, &["detach", "--id", id, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        d,
        serde_json::json!({"outcome": "detached", "id": id, "objects": 0})
    );
    assert_settles_to(pod, &before, "after detach");
}

#[test]
fn hotplug_under_the_macvtap_model() {
    let _serial = serial();
    let net = scratch(2);
    let pod = net.pod_name.as_str();
    let dir = TempStateDir::new();
    let before = settled_snapshot(pod);
    let eth1_mac = link(pod, "eth1")["address"]
        .as_str()
        .expect("mac")
        .to_string();
    let eth1_addrs = address_details(pod, "eth1");
    let id = "hot-mvt";
    let mut opts = options(pod, &dir, id);
    opts.model = Model::Macvtap;
    opts.queues = 2;
    opts.interfaces = Some(vec!["eth0".into()]);
    let (a, guard) = attach(&opts);
    assert_eq!(a.endpoints[0].device(), Some("mvtap0_sn"));

    let change = sandbox_net::add_endpoint(dir.path(), id, "eth1").expect("add eth1");
    println!(
        "added: {}",
        serde_json::to_string(&change.endpoint).unwrap_or_default()
    );
    let ep = &change.endpoint;
    assert_eq!(
        (
            ep.device().unwrap_or_default(),
            ep.queues,
            ep.mac.map(|m| m.to_string())
        ),
        ("mvtap1_sn", 2, Some(eth1_mac.clone()))
    );
    assert!(
        matches!(
            ep.backend,
            sandbox_net::Backend::Macvtap {
                chardev: Some(_),
                ..
            }
        ),
        "{ep:?}"
    );
    // The guest description of eth1 was taken before its addresses were removed.
    let g1 = &change.guest.interfaces[1];
    assert_eq!((g1.name.as_str(), g1.addresses.len()), ("eth1", 2));
    assert_ne!(link(pod, "eth1")["address"], eth1_mac.as_str());
    assert_eq!(addresses(pod, "eth1"), Vec::<String>::new());
    assert_eq!(link(pod, "mvtap1_sn")["address"], eth1_mac.as_str());
    assert_status_clean(&dir, id, &[]);
    check_endpoint(&net, &dir, id, "eth0");
    check_endpoint(&net, &dir, id, "eth1");

    let change = sandbox_net::remove_endpoint(dir.path(), id, "eth1").expect("remove eth1");
    assert_eq!(change.endpoint.device(), Some("mvtap1_sn"));
    assert_eq!(guest_names(&change.guest), vec!["eth0"]);
    assert!(!link_names(pod).contains(&"mvtap1_sn".to_string()));
    assert_eq!(link(pod, "eth1")["address"], eth1_mac.as_str());
    assert_eq!(address_details(pod, "eth1"), eth1_addrs);
    assert_status_clean(&dir, id, &["eth1", "mvtap1_sn"]);
    // eth0 is still behind its macvtap and passes traffic.
    assert_eq!(addresses(pod, "eth0"), Vec::<String>::new());
    check_endpoint(&net, &dir, id, "eth0");

    assert!(matches!(guard.detach(), Detached::Detached { .. }));
    assert_settles_to(pod, &before, "after detach");
}

/// A hotplug that fails halfway (an ingress qdisc that is not ours already sits on the new
/// interface) is rolled back: the new tap is gone, the foreign qdisc stays, and the state,
/// journal and dataplane of the attachment are as before.
#[test]
fn a_failed_hotplug_leaves_the_attachment_as_it_was() {
    let _serial = serial();
    let net = scratch(2);
    let pod = net.pod_name.as_str();
    let dir = TempStateDir::new();
    let id = "hot-fail";
    let mut opts = options(pod, &dir, id);
    opts.interfaces = Some(vec!["eth0".into()]);
    let (_, guard) = attach(&opts);
    ip_tc(pod, &["qdisc", "add", "dev", "eth1", "ingress"]);
    let state_before = load(&dir, id);
    let snap_before = settled_snapshot(pod);
    let e = sandbox_net::add_endpoint(dir.path(), id, "eth1").expect_err("qdisc taken");
    println!("{e}");
    assert!(e.to_string().contains("ingress qdisc on eth1"), "{e}");
    assert_eq!(load(&dir, id), state_before, "state and journal unchanged");
    assert_settles_to(pod, &snap_before, "after the failed hotplug");
    assert_status_clean(&dir, id, &["eth1", "tap1_sn"]);
    check_endpoint(&net, &dir, id, "eth0");
    assert!(matches!(
        guard.detach(),
        Detached::Detached { objects: 5, .. }
    ));
    // The qdisc that was not ours is still there.
    let qdiscs = tc_json(pod, &["qdisc", "show", "dev", "eth1"]);
    assert!(qdiscs.to_string().contains("ingress"), "{qdiscs}");
}

/// Run `tc -n NS ARGS...`; panic on failure.
fn ip_tc(ns: &str, args: &[&str]) {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    run("tc", &full);
}
