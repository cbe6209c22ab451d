//! Issue 13, case 5: one tenant breaks gc (and its own sandbox) for everyone. A pod is root
//! in its netns; it can give `lo` and its other links the alias `$'\xff'`, which the
//! netlink crate refused (a non-UTF-8 IFLA_IFALIAS failed every link dump of the netns),
//! and name a link `$'\xc3\x28'` (the kernel takes any bytes but `/`, `:` and whitespace in
//! a name: it allows this one, so the tests use it). Each test makes the pod that hostile,
//! then runs what used to fail (status, CNI ADD/CHECK/DEL, a full-scan attach, detach,
//! watch, gc) and checks that it works, that nothing the tenant made was changed beyond
//! what attach and detach are meant to do, and that what is refused is named.
//!
//! iproute2 is the witness, read as bytes: names and aliases that are not UTF-8 are kept
//! as they are (see `witness`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use crate::watch_child::Watch;
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkMessage};
use netlink_packet_route::neighbour::NeighbourMessage;
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::tc::{TcHandle, TcMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use sandbox_net::netlink::answers::{self, Answer};
use sandbox_net::netns::NetNs;
use sandbox_net::{AttachOptions, GcOptions, GcReport};
use sandbox_net_testkit::scratch::ScratchNet;
use serde_json::{Value, json};

/// The tenant's bytes.
/// How long a watch event may take.
const WAIT: Duration = Duration::from_secs(10);
const ALIAS: &[u8] = b"\xff";
const NAME: &[u8] = b"\xc3\x28";
const NAME_ALIAS: &[u8] = b"\xfe\xfd";
const LABEL: &[u8] = b"eth0:\xff";

// ---------------------------------------------------------------- bytes as text

/// Command output as text: valid UTF-8 as it is, every other byte as the private-use
/// character U+F700 + byte, so the text compares and prints, and turns back into the
/// very bytes (`raw`) to name a device on a command line.
fn text(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push(char::from_u32(0xf700 + u32::from(*b)).unwrap_or('?'));
        }
    }
    out
}

fn raw(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for c in text.chars() {
        match u32::from(c) {
            n @ 0xf700..=0xf7ff => out.push((n - 0xf700) as u8),
            _ => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out
}

/// Run `prog` with byte arguments; its stdout as text. Panics (with stderr) on failure.
fn exec(prog: &str, args: &[&[u8]]) -> String {
    let out = Command::new(prog)
        .args(args.iter().map(|a| OsStr::from_bytes(a)))
        .output()
        .unwrap_or_else(|e| panic!("run {prog}: {e}"));
    let shown: Vec<String> = args.iter().map(|a| text(a)).collect();
    assert!(
        out.status.success(),
        "{prog} {shown:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn ip(ns: &str, args: &[&[u8]]) -> String {
    exec("ip", &[&[b"-n", ns.as_bytes()], args].concat())
}

fn tc(ns: &str, args: &[&[u8]]) -> String {
    exec("tc", &[&[b"-n", ns.as_bytes()], args].concat())
}

fn json_of(out: &str) -> Vec<Value> {
    if out.trim().is_empty() {
        return Vec::new();
    }
    match serde_json::from_str(out) {
        Ok(Value::Array(items)) => items,
        other => panic!("not a JSON array: {other:?}: {out}"),
    }
}

// ---------------------------------------------------------------- the tenant

/// What the tenant does to its own netns: `lo` and `eth0` get the alias `\xff`; a veth
/// pair `hv0` / `\xc3\x28` (unconfigured) whose second end is named and aliased with
/// bytes that are not UTF-8; an address on eth0 labelled `eth0:\xff`; on hv0 an ingress
/// qdisc and a u32 filter matching packets from `\xc3\x28` and redirecting them.
fn make_hostile(pod: &str) {
    ip(pod, &[b"link", b"set", b"dev", b"lo", b"alias", ALIAS]);
    ip(pod, &[b"link", b"set", b"dev", b"eth0", b"alias", ALIAS]);
    ip(
        pod,
        &[
            b"link", b"add", b"hv0", b"type", b"veth", b"peer", b"name", b"hv1",
        ],
    );
    // The kernel takes a name that is not UTF-8 (it refuses only '/', ':' and whitespace).
    ip(pod, &[b"link", b"set", b"dev", b"hv1", b"name", NAME]);
    ip(pod, &[b"link", b"set", b"dev", NAME, b"alias", NAME_ALIAS]);
    ip(
        pod,
        &[
            b"addr",
            b"add",
            b"10.78.0.1/32",
            b"dev",
            b"eth0",
            b"label",
            LABEL,
        ],
    );
    tc(pod, &[b"qdisc", b"add", b"dev", b"hv0", b"ingress"]);
    tc(
        pod,
        &[
            b"filter",
            b"add",
            b"dev",
            b"hv0",
            b"ingress",
            b"prio",
            b"5",
            b"protocol",
            b"ip",
            b"u32",
            b"match",
            b"u32",
            b"0",
            b"0",
            b"indev",
            NAME,
            b"action",
            b"mirred",
            b"egress",
            b"redirect",
            b"dev",
            b"hv0",
        ],
    );
}

/// Everything in the netns an operation could change, as iproute2 reports it (counters,
/// timers and carrier state left out), names, aliases and labels byte for byte.
#[derive(Debug, PartialEq)]
struct Witness {
    links: Vec<String>,
    addresses: Vec<String>,
    routes: Vec<String>,
    qdiscs: Vec<String>,
    filters: Vec<String>,
}

fn witness(ns: &str) -> Witness {
    let mut w = Witness {
        links: Vec::new(),
        addresses: Vec::new(),
        routes: Vec::new(),
        qdiscs: Vec::new(),
        filters: Vec::new(),
    };
    for l in json_of(&ip(ns, &[b"-j", b"-d", b"link", b"show"])) {
        let name = l["ifname"].as_str().unwrap_or_default().to_string();
        let flags: Vec<&str> = l["flags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .filter(|f| !matches!(*f, "NO-CARRIER" | "LOWER_UP" | "M-DOWN"))
            .collect();
        w.links.push(format!(
            "{} {} alias={} mtu={} mac={} group={} flags={} kind={}",
            l["ifindex"],
            l["ifname"],
            l["ifalias"],
            l["mtu"],
            l["address"],
            l["group"],
            flags.join(","),
            l["linkinfo"]["info_kind"]
        ));
        for f in json_of(&tc(
            ns,
            &[b"-j", b"filter", b"show", b"dev", &raw(&name), b"ingress"],
        )) {
            w.filters.push(format!("{}: {f}", l["ifname"]));
        }
    }
    for l in json_of(&ip(ns, &[b"-j", b"addr", b"show"])) {
        for a in l["addr_info"].as_array().into_iter().flatten() {
            w.addresses.push(format!(
                "{} {}/{} label={}",
                l["ifname"], a["local"], a["prefixlen"], a["label"]
            ));
        }
    }
    for family in [&b"-4"[..], b"-6"] {
        for mut r in json_of(&ip(
            ns,
            &[b"-j", family, b"route", b"show", b"table", b"all"],
        )) {
            if let Some(flags) = r["flags"].as_array_mut() {
                flags.retain(|f| f != "linkdown");
            }
            w.routes.push(r.to_string());
        }
    }
    for q in json_of(&tc(ns, &[b"-j", b"qdisc", b"show"])) {
        w.qdiscs
            .push(format!("{} {} {}", q["dev"], q["kind"], q["handle"]));
    }
    w.links.sort();
    w.addresses.sort();
    w.routes.sort();
    w.qdiscs.sort();
    w.filters.sort();
    w
}

/// The tenant's own objects in a witness: what attach and detach must never change
/// (the aliased lo and eth0, the oddly named veth pair, the label, hv0's qdisc and filter).
fn tenants(w: &Witness) -> Vec<String> {
    let hostile = |s: &String| {
        s.chars().any(|c| ('\u{f700}'..='\u{f7ff}').contains(&c)) || s.contains("\"hv0\"")
    };
    let mut out: Vec<String> = w.links.iter().filter(|s| hostile(s)).cloned().collect();
    out.extend(w.addresses.iter().filter(|s| hostile(s)).cloned());
    out.extend(w.filters.iter().filter(|s| hostile(s)).cloned());
    out.extend(w.qdiscs.iter().filter(|q| q.contains("\"hv0\"")).cloned());
    out
}

/// A scratch pod with `n` configured veths (eth0 with the default routes), made hostile.
fn hostile_pod(n: u8) -> ScratchNet {
    let net = scratch(n);
    make_hostile(&net.pod_name);
    settle(&net.pod_name);
    net
}

/// Attach every configured interface of `pod` as sandbox `id` (library call).
fn attach(pod: &str, dir: &TempStateDir, id: &str) {
    let mut opts = AttachOptions::new(pod, id);
    opts.state_dir = dir.path().to_path_buf();
    sandbox_net::attach(&opts).unwrap_or_else(|e| panic!("attach {id}: {e}"));
}

/// The stale states a gc report lists, and whether each was removed.
fn stale_states(report: &GcReport) -> Vec<(&str, bool)> {
    report
        .states
        .iter()
        .map(|s| (s.id.as_str(), s.removed))
        .collect()
}

fn state_arg(dir: &TempStateDir) -> String {
    dir.path().display().to_string()
}

// ---------------------------------------------------------------- the tests

/// `sandbox-net attach` (every configured interface), `status`, `detach` of a sandbox
/// whose pod aliased lo and eth0 with `\xff`, named a link `\xc3\x28` and labelled an
/// address `eth0:\xff`: all succeed, the unconfigured oddly named link is left out, the
/// tenant's objects are untouched throughout, and detach leaves the netns as it was.
#[test]
fn full_scan_attach_status_and_detach_work_in_a_hostile_netns() {
    let net = hostile_pod(2);
    let pod = net.pod_name.clone();
    let dir = TempStateDir::new();
    let id = "hostile-attach";
    let _cleanup = DetachOnDrop::new(dir.path(), id);
    let before = witness(&pod);
    println!("{before:#?}");
    // lo, eth0, the veth pair; the label; hv0's qdisc and its filter (3 lines).
    assert_eq!(tenants(&before).len(), 9, "{before:#?}");

    let state = state_arg(&dir);
    let (code, out, err) = cli(&[
        "--state-dir",
        &state,
        "attach",
        "--netns",
        &pod,
        "--id",
        id,
        "--json",
    ]);
    assert_eq!(code, 0, "attach failed: {err}");
    let attached: Value = serde_json::from_str(&out).expect("attach JSON");
    let names: Vec<&str> = attached["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, vec!["eth0", "eth1"], "{attached:#}");
    // The guest gets the labelled address too: it is eth0's.
    assert!(
        attached["guest"]["interfaces"][0]["addresses"]
            .to_string()
            .contains("10.78.0.1"),
        "{attached:#}"
    );
    settle(&pod);
    let during = witness(&pod);
    assert_eq!(
        tenants(&during),
        tenants(&before),
        "attach changed the tenant's objects"
    );

    let (code, out, err) = cli(&["--state-dir", &state, "status", "--id", id, "--json"]);
    assert_eq!(code, 0, "status failed: {err}");
    let status: Value = serde_json::from_str(&out).expect("status JSON");
    assert_eq!(status["drift"], false, "{status:#}");
    let objects = status["objects"].as_array().cloned().unwrap_or_default();
    assert!(!objects.is_empty(), "{status:#}");
    assert!(objects.iter().all(|o| o["present"] == true), "{status:#}");

    let (code, _, err) = cli(&["--state-dir", &state, "detach", "--id", id]);
    assert_eq!(code, 0, "detach failed: {err}");
    settle(&pod);
    assert_eq!(witness(&pod), before, "detach left the netns changed");
}

/// A configured link whose name is not UTF-8 can be neither recorded nor handed to a VMM:
/// a full-scan attach refuses it by its ifindex and its escaped name (exit 2), and changes
/// nothing.
#[test]
fn a_configured_link_named_with_bytes_that_are_not_utf8_is_refused_by_name() {
    let net = hostile_pod(1);
    let pod = net.pod_name.clone();
    ip(&pod, &[b"addr", b"add", b"10.79.0.2/24", b"dev", NAME]);
    settle(&pod);
    let index = json_of(&ip(&pod, &[b"-j", b"link", b"show", b"dev", NAME]))[0]["ifindex"].clone();
    let before = witness(&pod);
    let dir = TempStateDir::new();
    let id = "hostile-named";
    let _cleanup = DetachOnDrop::new(dir.path(), id);
    let (code, out, err) = cli(&[
        "--state-dir",
        &state_arg(&dir),
        "attach",
        "--netns",
        &pod,
        "--id",
        id,
    ]);
    println!("{out}{err}");
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("interface \\xc3( (not UTF-8)") && err.contains(&format!("ifindex {index}")),
        "the refusal names the link: {err}"
    );
    assert_eq!(witness(&pod), before, "a refused attach changed the netns");
}

/// The CNI plugin as a runtime drives it for eth0. The tenant turns hostile after ADD
/// (lo and eth0 aliased `\xff`, ...): CHECK, which compares every journalled object with
/// the kernel, and DEL still work, and DEL leaves the tenant's objects alone. Then a whole
/// ADD (which reads eth0 by name), CHECK, DEL in the hostile pod leaves it as it was.
#[test]
fn cni_add_check_and_del_work_in_a_hostile_netns() {
    let net = scratch(1);
    let pod = net.pod_name.clone();
    let dir = TempStateDir::new();
    let netns = format!("/run/netns/{pod}");
    let prev = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{ "name": "eth0", "mac": "02:77:00:00:00:02", "sandbox": netns }],
        "ips": [{ "address": "10.77.0.2/24", "gateway": "10.77.0.1", "interface": 0 }],
        "routes": [{ "dst": "0.0.0.0/0", "gw": "10.77.0.1" }]
    });
    let conf = |prev: &Value| {
        json!({
            "cniVersion": "1.0.0", "name": "hostile", "type": "sandbox-net",
            "stateDir": dir.path(), "prevResult": prev
        })
    };
    let plugin = |command: &str, conf: &Value| {
        let env = crate::cni::env(command, "hostile-container", &netns);
        let out = crate::cni::plugin(&env, &conf.to_string());
        assert_eq!(
            out.code, 0,
            "CNI {command} failed: {}{}",
            out.stdout, out.stderr
        );
        out.stdout
    };

    let result: Value = serde_json::from_str(&plugin("ADD", &conf(&prev))).expect("ADD result");
    println!("ADD: {result:#}");
    make_hostile(&pod);
    settle(&pod);
    let hostile = witness(&pod);
    plugin("CHECK", &conf(&result));
    plugin("DEL", &conf(&result));
    settle(&pod);
    let after = witness(&pod);
    assert_eq!(
        tenants(&after),
        tenants(&hostile),
        "DEL changed the tenant's objects"
    );
    assert!(
        !after.links.iter().any(|l| l.contains("tap0_sn"))
            && !after
                .qdiscs
                .iter()
                .any(|q| q.starts_with("\"eth0\" \"ingress\"")),
        "DEL left the attachment behind: {after:#?}"
    );

    // The whole cycle in the hostile pod.
    let result: Value = serde_json::from_str(&plugin("ADD", &conf(&prev))).expect("ADD result");
    settle(&pod);
    assert_eq!(
        tenants(&witness(&pod)),
        tenants(&after),
        "ADD changed the tenant's objects"
    );
    plugin("CHECK", &conf(&result));
    plugin("DEL", &conf(&result));
    settle(&pod);
    assert_eq!(witness(&pod), after, "DEL left the netns changed");
}

/// `watch` over a pod that turns hostile under it: its scans still succeed (a veth
/// configured afterwards is attached), and a configured link named with bytes that are not
/// UTF-8 is one error event naming it; the watch goes on and stops cleanly.
#[test]
fn watch_works_in_a_hostile_netns() {
    let mut net = scratch(1);
    let pod = net.pod_name.clone();
    let dir = TempStateDir::new();
    let id = "hostile-watch";
    let _cleanup = DetachOnDrop::new(dir.path(), id);
    attach(&pod, &dir, id);
    let mut watch = Watch::start(&dir, id);
    // The tenant turns hostile under the watch.
    make_hostile(&pod);

    net.add_link(1, 1500, false).expect("add eth1");
    watch.until("endpoint-added eth1", WAIT, |e| {
        e["event"] == "endpoint-added" && e["endpoint"]["name"] == "eth1"
    });
    // A configured link named with bytes that are not UTF-8.
    ip(
        &pod,
        &[
            b"link",
            b"add",
            b"\xc3\x29",
            b"type",
            b"veth",
            b"peer",
            b"name",
            b"hv3",
        ],
    );
    ip(
        &pod,
        &[b"addr", b"add", b"10.79.1.2/24", b"dev", b"\xc3\x29"],
    );
    let (_, refused) = watch.until("error naming \\xc3)", WAIT, |e| e["event"] == "error");
    assert_eq!(refused["interface"], "\\xc3) (not UTF-8)", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("not UTF-8")),
        "{refused}"
    );
    // The watch goes on: eth1 going away is seen.
    ip(&pod, &[b"link", b"del", b"eth1"]);
    watch.until("endpoint-removed eth1", WAIT, |e| {
        e["event"] == "endpoint-removed" && e["endpoint"]["name"] == "eth1"
    });
    let events = watch.stop();
    let errors: Vec<&Value> = events.iter().filter(|e| e["event"] == "error").collect();
    assert_eq!(errors.len(), 1, "only the refusal is an error: {events:#?}");
    assert_eq!(
        events.last().map(|e| e["event"].clone()),
        Some(json!("stopped")),
        "{events:#?}"
    );
}

/// gc over two sandboxes: one live in a pod that turned hostile once attached (with an
/// orphan tap of ours next to it, and the tenant's filter on hv0), one whose netns is
/// gone. gc collects the stale
/// state and the orphan, reports no problem (nothing failed), keeps the live sandbox
/// (status still clean) and changes nothing else in the hostile pod.
#[test]
fn gc_collects_next_to_a_hostile_netns_and_leaves_it_alone() {
    let dir = TempStateDir::new();
    let gone = scratch(1);
    attach(&gone.pod_name, &dir, "healthy-stale");
    drop(gone);

    let net = scratch(1);
    let pod = net.pod_name.clone();
    let id = "hostile-live";
    let _cleanup = DetachOnDrop::new(dir.path(), id);
    attach(&pod, &dir, id);
    // The tenant turns hostile once attached.
    make_hostile(&pod);
    settle(&pod);
    let attached = witness(&pod);
    // An orphan of ours: a tap carrying the alias of a sandbox that has no state.
    ip(
        &pod,
        &[b"tuntap", b"add", b"dev", b"orphan0", b"mode", b"tap"],
    );
    ip(
        &pod,
        &[
            b"link",
            b"set",
            b"dev",
            b"orphan0",
            b"alias",
            b"sandbox-net:lost",
        ],
    );

    let report = sandbox_net::gc(&GcOptions::new(dir.path())).expect("gc");
    println!("{report}");
    assert!(report.problems.is_empty(), "{report:?}");
    assert_eq!(
        stale_states(&report),
        vec![("healthy-stale", true)],
        "{report:?}"
    );
    let orphans: Vec<(&str, bool)> = report
        .links
        .iter()
        .map(|l| (l.name.as_str(), l.removed))
        .collect();
    assert_eq!(orphans, vec![("orphan0", true)], "{report:?}");
    settle(&pod);
    assert_eq!(
        witness(&pod),
        attached,
        "gc changed the hostile netns beyond the orphan"
    );
    let st = sandbox_net::status(dir.path(), id)
        .expect("status")
        .expect("still attached");
    assert!(!st.drift, "{st:?}");
}

/// One sandbox gc can't handle (its lock file is a directory) is a problem naming it; gc
/// still collects the other sandbox's stale state.
#[test]
fn gc_goes_on_when_one_sandbox_fails() {
    let dir = TempStateDir::new();
    let live = scratch(1);
    attach(&live.pod_name, &dir, "broken-lock");
    let gone = scratch(1);
    attach(&gone.pod_name, &dir, "healthy-stale");
    drop(gone);
    let lock = dir.path().join("broken-lock.lock");
    let _ = std::fs::remove_file(&lock);
    std::fs::create_dir(&lock).expect("a directory where the lock file goes");
    let live_before = snapshot(&live.pod_name);

    let report = sandbox_net::gc(&GcOptions::new(dir.path())).expect("gc goes on");
    println!("{report}");
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert!(
        report.problems[0].starts_with("sandbox broken-lock:"),
        "{report:?}"
    );
    assert_eq!(
        stale_states(&report),
        vec![("healthy-stale", true)],
        "{report:?}"
    );
    assert_eq!(snapshot(&live.pod_name), live_before);

    std::fs::remove_dir(&lock).expect("remove the directory");
    sandbox_net::detach(dir.path(), "broken-lock").expect("detach broken-lock");
}

// ---------------------------------------------------------------- the dumps themselves

/// The datagrams of one dump in `ns`, as the kernel sent them, end to end (each holds
/// whole, aligned messages, so together they are one sequence of messages).
fn raw_dump(ns: &NetNs, request: RouteNetlinkMessage) -> Vec<u8> {
    let mut socket = ns
        .run(|| Socket::new(NETLINK_ROUTE))
        .expect("enter the netns")
        .expect("netlink socket");
    socket.bind_auto().expect("bind");
    socket.connect(&SocketAddr::new(0, 0)).expect("connect");
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(request));
    packet.finalize();
    let mut out = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut out);
    socket.send(&out, 0).expect("send the dump request");
    let mut all = Vec::new();
    loop {
        let mut buf = Vec::with_capacity(64 * 1024);
        let n = socket.recv(&mut buf, 0).expect("receive");
        let datagram = &buf[..n];
        all.extend_from_slice(datagram);
        let mut offset = 0;
        while offset + 16 <= datagram.len() {
            let len = u32::from_ne_bytes(datagram[offset..offset + 4].try_into().expect("4"));
            let kind = u16::from_ne_bytes(datagram[offset + 4..offset + 6].try_into().expect("2"));
            if kind == NLMSG_DONE || kind == NLMSG_ERROR {
                return all;
            }
            offset += (len as usize + 3) & !3;
        }
    }
}

fn tc_request(ifindex: u32, parent: Option<TcHandle>) -> TcMessage {
    let mut req = TcMessage::default();
    req.header.index = ifindex as i32;
    if let Some(parent) = parent {
        req.header.parent = parent;
    }
    req
}

/// The dumps sandbox-net reads, taken live from a hostile pod (attached with rate limits,
/// so there are redirect filters and HTB classes, and with a permanent neighbour), decode
/// without an error, give the tenant's names and aliases as data, and pass the fuzz
/// target's checks. With SANDBOX_NET_WRITE_SEEDS=1 they are written as the target's seeds
/// (`fuzz/corpus/netlink_answers/dump-*`).
#[test]
fn live_dumps_of_a_hostile_netns_decode_and_are_the_fuzz_seeds() {
    let net = hostile_pod(1);
    let pod = net.pod_name.clone();
    ip(
        &pod,
        &[
            b"neigh",
            b"add",
            b"10.77.0.9",
            b"lladdr",
            b"02:00:00:00:00:09",
            b"dev",
            b"eth0",
            b"nud",
            b"permanent",
        ],
    );
    let dir = TempStateDir::new();
    let id = "hostile-dumps";
    let _cleanup = DetachOnDrop::new(dir.path(), id);
    let mut opts = AttachOptions::new(pod.clone(), id);
    opts.state_dir = dir.path().to_path_buf();
    opts.rx_rate = Some("10mbit".parse().expect("rate"));
    opts.tx_rate = Some("20mbit".parse().expect("rate"));
    sandbox_net::attach(&opts).expect("attach");
    let index = |name: &[u8]| -> u32 {
        let links = json_of(&ip(&pod, &[b"-j", b"link", b"show", b"dev", name]));
        links[0]["ifindex"].as_u64().expect("ifindex") as u32
    };
    let (eth0, tap, hv0) = (index(b"eth0"), index(b"tap0_sn"), index(b"hv0"));
    let ingress = Some(TcHandle::from(0xffff_0000u32));
    let mut links = LinkMessage::default();
    links
        .attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    let dumps = [
        ("links", RouteNetlinkMessage::GetLink(links)),
        (
            "addresses",
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        ),
        (
            "routes",
            RouteNetlinkMessage::GetRoute(RouteMessage::default()),
        ),
        (
            "neighbours",
            RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
        ),
        (
            "qdiscs",
            RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()),
        ),
        (
            "filters-eth0",
            RouteNetlinkMessage::GetTrafficFilter(tc_request(eth0, ingress)),
        ),
        (
            "filters-hv0",
            RouteNetlinkMessage::GetTrafficFilter(tc_request(hv0, ingress)),
        ),
        (
            "classes-eth0",
            RouteNetlinkMessage::GetTrafficClass(tc_request(eth0, None)),
        ),
        (
            "classes-tap",
            RouteNetlinkMessage::GetTrafficClass(tc_request(tap, None)),
        ),
    ];
    let write = std::env::var_os("SANDBOX_NET_WRITE_SEEDS").is_some();
    let seeds =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/netlink_answers");
    let mut decoded = Vec::new();
    for (what, request) in dumps {
        let bytes = raw_dump(&net.pod, request);
        crate::checks::netlink_answers(&bytes);
        for answer in answers::decode(&bytes) {
            match answer {
                Ok(a) => decoded.push(a),
                Err(e) => panic!("dump of {what}: {e}"),
            }
        }
        if write {
            std::fs::write(seeds.join(format!("dump-{what}")), &bytes).expect("write a seed");
        }
    }
    let link = |name: &str| {
        decoded.iter().find_map(|a| match a {
            Answer::Link(l) if l.name == name => Some(l.clone()),
            _ => None,
        })
    };
    let odd = link("\\xc3( (not UTF-8)").expect("the oddly named link");
    assert_eq!(odd.alias.as_deref(), Some("\\xfe\\xfd (not UTF-8)"));
    assert_eq!(
        link("lo").and_then(|l| l.alias),
        Some("\\xff (not UTF-8)".into())
    );
    assert_eq!(
        link("eth0").and_then(|l| l.alias),
        Some("\\xff (not UTF-8)".into())
    );
    assert!(decoded.iter().any(
        |a| matches!(a, Answer::Address(Some(x)) if x.addr == std::net::IpAddr::from([10, 78, 0, 1]))
    ));
    assert!(
        decoded
            .iter()
            .any(|a| matches!(a, Answer::Route(Some(r)) if r.dst.is_none() && r.gateway.is_some()))
    );
    assert!(decoded.iter().any(
        |a| matches!(a, Answer::Neighbour(Some(n)) if n.ip == std::net::IpAddr::from([10, 77, 0, 9]))
    ));
    let redirects: Vec<(u32, Option<u32>, u16)> = decoded
        .iter()
        .filter_map(|a| match a {
            Answer::Filter(Some(f)) if f.match_all && f.egress_redirect => {
                Some((f.ifindex, f.target, f.prio))
            }
            _ => None,
        })
        .collect();
    assert_eq!(redirects, vec![(eth0, Some(tap), 1), (hv0, Some(hv0), 5)]);
    let rates: Vec<u64> = decoded
        .iter()
        .filter_map(|a| match a {
            Answer::Class(Some(Some(rate))) => Some(*rate),
            _ => None,
        })
        .collect();
    assert_eq!(
        rates.len(),
        2,
        "the default class of eth0 and of the tap: {rates:?}"
    );
}
