//! `watch` (issue #9), the CLI as a child process whose stdout lines are read as events:
//! a veth configured in the pod after attach is attached (tap present, traffic flows) and
//! detached when deleted, leaving nothing; a route through an attached interface gives a
//! guest-changed event; an unsupported interface gives one error event; 50 veths made in
//! one burst are all attached, none lost; SIGTERM and the netns's deletion stop it with
//! exit 0. Event-to-attached latency is printed (not asserted).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::common::{assert_replied, check_guest, described, ip, options, serial};
use crate::watch_child::Watch;
use nix::sys::signal::Signal;
use sandbox_net::state::{State, StateDir};
use sandbox_net_testkit::netns;
use serde_json::Value;

/// How long a test waits for an event: generous, the test asserts only that it comes.
const EVENT_WAIT: Duration = Duration::from_secs(10);

fn is(event: &Value, kind: &str, iface: &str) -> bool {
    event["event"] == kind && event["endpoint"]["name"] == iface
}

fn load(dir: &TempStateDir, id: &str) -> State {
    StateDir::open(dir.path())
        .expect("state dir")
        .load(id)
        .expect("load")
        .expect("attached")
}

fn link_names(ns: &str) -> Vec<String> {
    ip_json(ns, &["link", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["ifname"].as_str().map(String::from))
        .collect()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[test]
fn a_new_interface_is_attached_carries_traffic_and_is_detached_when_deleted() {
    let _serial = serial();
    let mut net = scratch(1);
    let pod = net.pod_name.clone();
    let dir = TempStateDir::new();
    let opts = options(&pod, &dir, "w1");
    let (_, attached) = crate::common::attach(&opts);
    let before = snapshot(&pod);
    let mut watch = Watch::start(&dir, "w1");

    // A veth with addresses appears (as a CNI plugin run after the sandbox started makes it).
    let t0 = Instant::now();
    let link = net.add_link(1, 1500, false).expect("add eth1");
    let (at, added) = watch.until("endpoint-added eth1", EVENT_WAIT, |e| {
        is(e, "endpoint-added", "eth1")
    });
    println!(
        "event-to-attached latency (veth created -> endpoint-added line): {}",
        ms(at - t0)
    );
    let tap = added["endpoint"]["tap"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(tap, "tap1_sn", "{added}");
    assert!(link_names(&pod).contains(&tap), "{tap} exists");
    let names: Vec<&str> = added["guest"]["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, vec!["eth0", "eth1"]);
    let state = load(&dir, "w1");
    let ep = state
        .endpoints
        .iter()
        .find(|e| e.name == "eth1")
        .expect("eth1 recorded");
    let peers = [IpAddr::V4(link.peer_v4), IpAddr::V6(link.peer_v6)];
    let reports = check_guest(&net.pod, &net.peer, ep, described(&state.guest), &peers)
        .unwrap_or_else(|e| panic!("dataplane through {tap}: {e}"));
    assert_replied("eth1 (attached by watch)", &reports, 2, 2);

    // The veth is deleted: the endpoint is detached, the tap and its filters go.
    ip(&pod, &["link", "del", "eth1"]);
    let (_, removed) = watch.until("endpoint-removed eth1", EVENT_WAIT, |e| {
        is(e, "endpoint-removed", "eth1")
    });
    assert_eq!(removed["endpoint"]["tap"], "tap1_sn");
    assert!(!link_names(&pod).contains(&tap), "{tap} is gone");
    let state = load(&dir, "w1");
    assert_eq!(state.endpoints.len(), 1);
    for entry in &state.journal {
        assert!(!["eth1", "tap1_sn"].contains(&entry.device()), "{entry:?}");
    }
    let st = sandbox_net::status(dir.path(), "w1")
        .expect("status")
        .expect("attached");
    assert!(!st.drift, "{st:?}");
    // Nothing left: the same links (carrier flags aside: the dataplane check opened and
    // closed tap0_sn's neighbour), addresses, qdiscs and filters as before eth1 came.
    let now = snapshot(&pod);
    assert_eq!(link_names(&pod), vec!["lo", "eth0", "tap0_sn"]);
    assert_eq!(now.links.len(), before.links.len());
    assert_eq!(now.addresses, before.addresses);
    assert_eq!(now.qdiscs, before.qdiscs);
    assert_eq!(now.filters, before.filters);

    // A route through an attached interface: the guest description carries it.
    ip(
        &pod,
        &[
            "route",
            "add",
            "192.168.50.0/24",
            "via",
            "10.77.0.1",
            "dev",
            "eth0",
        ],
    );
    let (_, changed) = watch.until("guest-changed with the route", EVENT_WAIT, |e| {
        e["event"] == "guest-changed"
            && e["guest"]["routes"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["dst"] == "192.168.50.0/24"))
    });
    println!("guest-changed: {}", changed["guest"]["routes"]);
    let guest = sandbox_net::guest_config(dir.path(), "w1")
        .expect("guest-config")
        .expect("attached");
    assert!(
        guest
            .routes
            .iter()
            .any(|r| r.dst == "192.168.50.0/24" && r.device == "eth0")
    );

    // A configured interface of a kind sandbox-net does not attach: one error event.
    ip(&pod, &["link", "add", "br9", "type", "bridge"]);
    ip(&pod, &["addr", "add", "10.99.0.1/24", "dev", "br9"]);
    let (_, error) = watch.until("error about br9", EVENT_WAIT, |e| {
        e["event"] == "error" && e["interface"] == "br9"
    });
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("bridge")),
        "{error}"
    );
    ip(&pod, &["addr", "add", "10.99.1.1/24", "dev", "br9"]);

    // SIGTERM: exit 0, `stopped` last, nothing more about br9.
    let t_stop = Instant::now();
    watch.signal(Signal::SIGTERM);
    let status = watch
        .wait_exit(Duration::from_secs(10))
        .expect("watch exits after SIGTERM");
    println!("SIGTERM to exit: {}", ms(t_stop.elapsed()));
    assert_eq!(status.code(), Some(0));
    let rest = watch.rest();
    assert_eq!(
        rest.last().map(|e| e["event"].clone()),
        Some("stopped".into()),
        "{rest:?}"
    );
    assert_eq!(
        rest.last().map(|e| e["reason"].clone()),
        Some("requested".into())
    );
    let br9_errors = watch
        .seen
        .iter()
        .filter(|(_, e)| e["event"] == "error" && e["interface"] == "br9")
        .count();
    assert_eq!(br9_errors, 1, "br9 is reported once");
    let d = attached.detach();
    println!("{d}");
}

#[test]
fn fifty_interfaces_in_a_burst_are_all_attached() {
    const N: usize = 50;
    let _serial = serial();
    let net = scratch(1);
    let (pod, peer) = (net.pod_name.clone(), net.peer_name.clone());
    let dir = TempStateDir::new();
    let opts = options(&pod, &dir, "w50");
    let (_, attached) = crate::common::attach(&opts);
    let mut watch = Watch::start(&dir, "w50");

    let mut pod_batch = String::new();
    let mut peer_batch = String::new();
    for i in 1..=N {
        pod_batch += &format!("link add vb{i} type veth peer name pb{i} netns {peer}\n");
        pod_batch += &format!("addr add 10.80.{i}.2/24 dev vb{i}\n");
        pod_batch += &format!("link set vb{i} up\n");
        peer_batch += &format!("addr add 10.80.{i}.1/24 dev pb{i}\nlink set pb{i} up\n");
    }
    let files = dir.path().with_extension("batch");
    std::fs::create_dir_all(&files).expect("batch dir");
    let (pod_file, peer_file) = (files.join("pod"), files.join("peer"));
    std::fs::write(&pod_file, pod_batch).expect("write batch");
    std::fs::write(&peer_file, peer_batch).expect("write batch");
    let t0 = Instant::now();
    ip(&pod, &["-batch", pod_file.to_str().unwrap_or_default()]);
    let made = t0.elapsed();
    ip(&peer, &["-batch", peer_file.to_str().unwrap_or_default()]);
    let _ = std::fs::remove_dir_all(&files);

    let mut latencies = Vec::new();
    let mut names = Vec::new();
    while names.len() < N {
        let (at, e) = watch.until("endpoint-added (burst)", Duration::from_secs(60), |e| {
            e["event"] == "endpoint-added"
        });
        latencies.push(at - t0);
        names.push(
            e["endpoint"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), N, "each interface once: {names:?}");
    let expected: Vec<String> = (1..=N).map(|i| format!("vb{i}")).collect();
    for n in &expected {
        assert!(names.contains(n), "{n} attached");
    }
    let state = load(&dir, "w50");
    assert_eq!(state.endpoints.len(), N + 1);
    assert_eq!(described(&state.guest).interfaces.len(), N + 1);
    latencies.sort();
    println!(
        "burst of {N}: ip -batch took {}; event-to-attached first {}, median {}, last {}",
        ms(made),
        ms(latencies[0]),
        ms(latencies[N / 2]),
        ms(latencies[N - 1])
    );
    let taps = link_names(&pod)
        .iter()
        .filter(|n| n.ends_with("_sn"))
        .count();
    assert_eq!(taps, N + 1);

    watch.signal(Signal::SIGTERM);
    let status = watch
        .wait_exit(Duration::from_secs(10))
        .expect("watch exits");
    assert_eq!(status.code(), Some(0));
    watch.rest();
    let added = watch
        .seen
        .iter()
        .filter(|(_, e)| e["event"] == "endpoint-added")
        .count();
    assert_eq!(added, N, "exactly {N} endpoint-added events");
    let mut kinds: Vec<String> = watch
        .seen
        .iter()
        .map(|(_, e)| e["event"].as_str().unwrap_or_default().to_string())
        .collect();
    kinds.dedup();
    println!("burst of {N}: event kinds in order (runs collapsed): {kinds:?}");
    let errors: Vec<&Value> = watch
        .seen
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e["event"] == "error")
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let d = attached.detach();
    println!("{d}");
    let taps = link_names(&pod)
        .iter()
        .filter(|n| n.ends_with("_sn"))
        .count();
    assert_eq!(taps, 0);
}

#[test]
fn the_netns_deletion_stops_watch() {
    let _serial = serial();
    let net = scratch(1);
    let pod = net.pod_name.clone();
    let dir = TempStateDir::new();
    let opts = options(&pod, &dir, "wgone");
    let (_, attached) = crate::common::attach(&opts);
    let mut watch = Watch::start(&dir, "wgone");
    let t0 = Instant::now();
    netns::delete(&pod).expect("delete the pod netns");
    let status = watch
        .wait_exit(Duration::from_secs(10))
        .expect("watch exits when the netns goes");
    println!("netns deleted -> watch exited: {}", ms(t0.elapsed()));
    assert_eq!(status.code(), Some(0));
    let rest = watch.rest();
    let last = rest.last().cloned().unwrap_or_default();
    assert_eq!(
        (&last["event"], &last["reason"]),
        (&"stopped".into(), &"netns-gone".into()),
        "{rest:?}"
    );
    let d = attached.detach();
    assert!(d.to_string().contains("no longer exists"), "{d}");
    drop(net);
}

#[test]
fn watch_refuses_what_it_cannot_watch() {
    let _serial = serial();
    let dir = TempStateDir::new();
    let state_dir = dir.path().to_str().unwrap_or_default();
    let (code, out, err) = cli(&[
        "--state-dir",
        state_dir,
        "watch",
        "--id",
        "nosuch",
        "--json",
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("sandbox nosuch") && err.contains("not attached"),
        "{err}"
    );
    assert!(out.contains("\"event\":\"error\""), "{out}");
    let (code, _, err) = cli(&["--state-dir", state_dir, "watch", "--id", "../x"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_macvtap_taking_over_addresses_does_not_make_watch_react_to_itself() {
    let _serial = serial();
    let net = scratch(1);
    let pod = net.pod_name.clone();
    let dir = TempStateDir::new();
    let mut opts = options(&pod, &dir, "wmv");
    opts.model = sandbox_net::Model::Macvtap;
    let (_, attached) = crate::common::attach(&opts);
    let mut watch = Watch::start(&dir, "wmv");
    // Made with plain `ip` (no waiting for the link to settle: the macvtap takes eth1 over
    // as soon as it has an address).
    let peer = net.peer_name.clone();
    ip(
        &pod,
        &[
            "link", "add", "eth1", "type", "veth", "peer", "name", "peth1", "netns", &peer,
        ],
    );
    ip(
        &pod,
        &["link", "set", "eth1", "address", "02:77:00:00:01:02"],
    );
    ip(&pod, &["addr", "add", "10.77.1.2/24", "dev", "eth1"]);
    ip(&pod, &["link", "set", "eth1", "up"]);
    ip(&peer, &["link", "set", "peth1", "up"]);
    let (_, added) = watch.until("endpoint-added eth1", EVENT_WAIT, |e| {
        is(e, "endpoint-added", "eth1")
    });
    assert_eq!(added["endpoint"]["tap"], "mvtap1_sn", "{added}");
    // The macvtap took eth1's addresses and MAC: the netns changed, the guest did not.
    let addresses = ip_json(&pod, &["addr", "show", "dev", "eth1"]);
    let v4_left = addresses.to_string().contains("10.77.1.2");
    assert!(
        !v4_left,
        "the macvtap model removed eth1's address: {addresses}"
    );
    // Let the notifications of that takeover arrive and be handled: nothing to report.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(watch.terminate(), Some(0));
    let after: Vec<Value> = watch.rest();
    assert_eq!(
        after.len(),
        1,
        "only `stopped` after endpoint-added: {after:?}"
    );
    let state = load(&dir, "wmv");
    let eth1 = described(&state.guest)
        .interfaces
        .iter()
        .find(|i| i.name == "eth1")
        .expect("eth1 in the guest description");
    assert_eq!(
        eth1.mac.map(|m| m.to_string()).as_deref(),
        Some("02:77:00:00:01:02")
    );
    assert!(
        eth1.addresses
            .iter()
            .any(|a| a.address.to_string() == "10.77.1.2")
    );
    let d = attached.detach();
    println!("{d}");
}
