//! A scan reads what `ip -j addr/link/route/neigh` report for the same netns, for 1 and 20
//! interfaces, IPv4 and IPv6, with exactly four netlink dumps; and the guest description
//! built from it keeps the routes and neighbours the guest needs and nothing else.

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::common::{ip, ip_json, scratch};
use sandbox_net::guest;
use sandbox_net::netlink::Netlink;
use sandbox_net::netlink::neigh::nud;
use sandbox_net::netlink::route::TABLE_MAIN;
use sandbox_net::scan::{self, Snapshot};
use sandbox_net_testkit::scratch::ScratchNet;
use serde_json::Value;

/// Wait (up to 10 s, then go on regardless) until the kernel has finished configuring the
/// netns by itself: every up link with a carrier has its IPv6 link-local address, and no
/// address is still tentative. The comparisons below retry anyway if something changes
/// under them; this only makes the first try the usual one.
fn settle(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let links = ip_json(ns, &["addr", "show"]);
        let settled = links.as_array().into_iter().flatten().all(|l| {
            let flags: Vec<&str> = l["flags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let addrs = l["addr_info"].as_array().cloned().unwrap_or_default();
            let none_tentative = addrs.iter().all(|a| a["tentative"] != Value::Bool(true));
            let needs_ll = flags.contains(&"UP")
                && flags.contains(&"LOWER_UP")
                && !flags.contains(&"LOOPBACK");
            let has_ll = addrs
                .iter()
                .any(|a| a["local"].as_str().is_some_and(|s| s.starts_with("fe80:")));
            none_tentative && (!needs_ll || has_ll)
        });
        if settled || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Both sides reduced to the same sorted lines.
#[derive(Debug, Clone, PartialEq, Eq)]
struct View {
    links: Vec<String>,
    addresses: Vec<String>,
    routes: Vec<String>,
    /// As `ip neigh show` lists them (NOARP and NONE entries hidden).
    neighbours: Vec<String>,
    /// As `ip neigh show nud all` lists them.
    all_neighbours: Vec<String>,
}

impl View {
    fn sorted(mut self) -> View {
        for v in [
            &mut self.links,
            &mut self.addresses,
            &mut self.routes,
            &mut self.neighbours,
            &mut self.all_neighbours,
        ] {
            v.sort();
        }
        self
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn ip_of(v: &Value) -> Option<IpAddr> {
    v.as_str().map(|s| {
        s.parse()
            .unwrap_or_else(|e| panic!("bad address {s:?}: {e}"))
    })
}

/// A MAC as "aa:bb:..", or "non-ether" for link-layer addresses that are not 6 bytes.
/// Bytes as iproute2 prints a link-layer address: hex pairs joined by ':'.
fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn mac_text(s: &str) -> String {
    if s.split(':').count() == 6 && s.len() == 17 {
        s.to_string()
    } else {
        "non-ether".into()
    }
}

// Names as iproute2 prints them (`ip -d`), from <linux/rtnetlink.h> and rt_protos.
fn route_type(kind: u8) -> String {
    let names = [
        "unspec",
        "unicast",
        "local",
        "broadcast",
        "anycast",
        "multicast",
        "blackhole",
        "unreachable",
        "prohibit",
        "throw",
        "nat",
        "xresolve",
    ];
    names
        .get(usize::from(kind))
        .map(|s| s.to_string())
        .unwrap_or_else(|| kind.to_string())
}

fn route_protocol(p: u8) -> String {
    match p {
        0 => "unspec".into(),
        1 => "redirect".into(),
        2 => "kernel".into(),
        3 => "boot".into(),
        4 => "static".into(),
        9 => "ra".into(),
        16 => "dhcp".into(),
        other => other.to_string(),
    }
}

fn route_scope(s: u8) -> String {
    match s {
        0 => "global".into(),
        200 => "site".into(),
        253 => "link".into(),
        254 => "host".into(),
        255 => "nowhere".into(),
        other => other.to_string(),
    }
}

fn nud_names(state: u16) -> String {
    let bits = [
        (nud::INCOMPLETE, "INCOMPLETE"),
        (nud::REACHABLE, "REACHABLE"),
        (nud::STALE, "STALE"),
        (nud::DELAY, "DELAY"),
        (nud::PROBE, "PROBE"),
        (nud::FAILED, "FAILED"),
        (nud::NOARP, "NOARP"),
        (nud::PERMANENT, "PERMANENT"),
    ];
    let names: Vec<&str> = bits
        .iter()
        .filter(|(b, _)| state & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        "NONE".into()
    } else {
        names.join("|")
    }
}

fn route_line(
    family: &str,
    kind: String,
    dst: String,
    gateway: Option<IpAddr>,
    dev: Option<&str>,
    fields: [String; 5],
) -> String {
    let [protocol, scope, prefsrc, metric, mtu] = fields;
    format!(
        "{family} {kind} {dst} via={} dev={} proto={protocol} scope={scope} src={prefsrc} metric={metric} mtu={mtu}",
        opt(gateway),
        opt(dev)
    )
}

fn neigh_line(dst: IpAddr, dev: &str, lladdr: Option<String>, state: String) -> String {
    format!("{dst} dev={dev} lladdr={} state={state}", opt(lladdr))
}

/// What iproute2 reports for the netns.
fn iproute_view(ns: &str) -> View {
    let mut view = View {
        links: Vec::new(),
        addresses: Vec::new(),
        routes: Vec::new(),
        neighbours: Vec::new(),
        all_neighbours: Vec::new(),
    };
    for l in ip_json(ns, &["-d", "link", "show"])
        .as_array()
        .into_iter()
        .flatten()
    {
        view.links.push(format!(
            "{} {} mtu={} mac={} kind={}",
            l["ifindex"],
            l["ifname"].as_str().unwrap_or_default(),
            l["mtu"],
            mac_text(l["address"].as_str().unwrap_or_default()),
            l["linkinfo"]["info_kind"].as_str().unwrap_or("-"),
        ));
    }
    for l in ip_json(ns, &["addr", "show"])
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = l["ifname"].as_str().unwrap_or_default();
        for a in l["addr_info"].as_array().into_iter().flatten() {
            let addr = ip_of(&a["local"]).expect("address without local");
            view.addresses
                .push(format!("{name} {addr}/{}", a["prefixlen"]));
        }
    }
    for (family, flag) in [("inet", "-4"), ("inet6", "-6")] {
        for r in ip_json(ns, &["-d", flag, "route", "show"])
            .as_array()
            .into_iter()
            .flatten()
        {
            let dst = r["dst"].as_str().expect("route without dst");
            let dst = match dst.split_once('/') {
                _ if dst == "default" => dst.to_string(),
                Some((a, len)) => format!("{}/{len}", a.parse::<IpAddr>().expect("dst address")),
                None => dst.parse::<IpAddr>().expect("dst address").to_string(),
            };
            let mtu = r["metrics"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|m| m["mtu"].as_u64());
            view.routes.push(route_line(
                family,
                r["type"].as_str().unwrap_or("?").to_string(),
                dst,
                ip_of(&r["gateway"]),
                r["dev"].as_str(),
                [
                    r["protocol"].as_str().unwrap_or("?").to_string(),
                    r["scope"].as_str().unwrap_or("?").to_string(),
                    opt(ip_of(&r["prefsrc"])),
                    opt(r["metric"].as_u64()),
                    opt(mtu),
                ],
            ));
        }
    }
    for (out, args) in [
        (&mut view.neighbours, &["neigh", "show"][..]),
        (
            &mut view.all_neighbours,
            &["neigh", "show", "nud", "all"][..],
        ),
    ] {
        for n in ip_json(ns, args).as_array().into_iter().flatten() {
            let Some(dst) = ip_of(&n["dst"]) else {
                continue;
            };
            let state: Vec<&str> = n["state"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            out.push(neigh_line(
                dst,
                n["dev"].as_str().unwrap_or_default(),
                n["lladdr"].as_str().map(String::from),
                state.join("|"),
            ));
        }
    }
    view.sorted()
}

/// The same view, from a scan.
fn scan_view(s: &Snapshot) -> View {
    let name = |index: u32| {
        s.link(index)
            .map(|l| l.name.clone())
            .unwrap_or_else(|| format!("if{index}"))
    };
    let links = s
        .links
        .iter()
        .map(|l| {
            let mac = l
                .mac
                .as_deref()
                .map(|m| mac_text(&format_mac(m)))
                .unwrap_or_else(|| "-".into());
            format!(
                "{} {} mtu={} mac={mac} kind={}",
                l.index,
                l.name,
                l.mtu,
                l.kind.as_deref().unwrap_or("-")
            )
        })
        .collect();
    let addresses = s
        .addresses
        .iter()
        .map(|a| format!("{} {}/{}", name(a.ifindex), a.addr, a.prefix_len))
        .collect();
    // `ip -4/-6 route show` lists the main table only.
    let routes = s
        .routes
        .iter()
        .filter(|r| r.table == TABLE_MAIN)
        .map(|r| {
            let host_len = if r.ipv6 { 128 } else { 32 };
            // As iproute2 prints it: RTA_DST with its length (none for a host route),
            // "default" without RTA_DST and a zero length.
            let dst = match r.dst {
                Some(d) if r.dst_len == host_len => d.to_string(),
                Some(d) => format!("{d}/{}", r.dst_len),
                None if r.dst_len == 0 => "default".into(),
                None => format!("0/{}", r.dst_len),
            };
            let dev = r.oif.map(name);
            route_line(
                if r.ipv6 { "inet6" } else { "inet" },
                route_type(r.kind),
                dst,
                r.gateway,
                dev.as_deref(),
                [
                    route_protocol(r.protocol),
                    route_scope(r.scope),
                    opt(r.source),
                    opt(r.priority),
                    opt(r.mtu),
                ],
            )
        })
        .collect();
    let line = |n: &sandbox_net::netlink::neigh::Neighbour| {
        neigh_line(
            n.ip,
            &name(n.ifindex),
            n.lladdr.as_deref().map(format_mac),
            nud_names(n.state),
        )
    };
    // `ip neigh show` without `nud` hides NOARP entries and those in no state (NONE).
    let shown = 0xff & !nud::NOARP;
    let neighbours = s
        .neighbours
        .iter()
        .filter(|n| n.state & shown != 0)
        .map(line)
        .collect();
    let all_neighbours = s.neighbours.iter().map(line).collect();
    View {
        links,
        addresses,
        routes,
        neighbours,
        all_neighbours,
    }
    .sorted()
}

/// Scan the pod netns and check that the scan took exactly four dumps and matches
/// iproute2. The kernel may still be finishing IPv6 autoconfiguration (multicast neighbour
/// entries, DAD work): a try during which iproute2's view changed, or during which a dump
/// was interrupted by such a change (and retried, costing a request), is taken again.
fn scan_and_compare(net: &ScratchNet) -> Snapshot {
    let ns = &net.pod_name;
    settle(ns);
    let mut tries = Vec::new();
    for attempt in 1..=10 {
        let before = iproute_view(ns);
        let mut nl = Netlink::open_in(&net.pod).expect("open netlink in the pod netns");
        assert_eq!(nl.requests(), 0, "a fresh socket has sent nothing");
        let snapshot = scan::scan(&mut nl).expect("scan");
        let requests = nl.requests();
        let after = iproute_view(ns);
        assert!(
            requests >= 4,
            "a scan is four dumps, got {requests} requests"
        );
        if before != after || requests != 4 {
            let note = format!(
                "try {attempt}: iproute2 view changed during the scan: {}, requests: {requests}",
                before != after
            );
            eprintln!("{note}; trying again");
            tries.push(note);
            continue;
        }
        let got = scan_view(&snapshot);
        println!(
            "scan of {ns}: {} links, {} addresses, {} main-table routes, {} neighbours (of {} in all states), {requests} requests",
            got.links.len(),
            got.addresses.len(),
            got.routes.len(),
            got.neighbours.len(),
            got.all_neighbours.len()
        );
        assert_eq!(
            got.links, after.links,
            "links: scan (left) vs ip -d link show"
        );
        assert_eq!(
            got.addresses, after.addresses,
            "addresses: scan (left) vs ip addr show"
        );
        assert_eq!(
            got.routes, after.routes,
            "main-table routes: scan (left) vs ip -d -4/-6 route show"
        );
        assert_eq!(
            got.neighbours, after.neighbours,
            "neighbours: scan (left) vs ip neigh show"
        );
        assert_eq!(
            got.all_neighbours, after.all_neighbours,
            "neighbours in every state: scan (left) vs ip neigh show nud all"
        );
        return snapshot;
    }
    panic!(
        "the netns never held still for a scan (or every scan took more than 4 requests): {tries:#?}"
    );
}

/// A pod with `n` veths, plus on eth0 a route with an MTU metric (v4 and v6) and permanent
/// neighbours (v4 and v6), and on the last veth a stale (not permanent) neighbour.
fn pod(n: u8) -> ScratchNet {
    let net = scratch(n);
    let ns = net.pod_name.as_str();
    let last = format!("eth{}", n - 1);
    let stale_ip = format!("10.77.{}.60", n - 1);
    ip(
        ns,
        &[
            "route",
            "add",
            "192.168.50.0/24",
            "via",
            "10.77.0.1",
            "dev",
            "eth0",
            "mtu",
            "1400",
        ],
    );
    ip(
        ns,
        &[
            "-6",
            "route",
            "add",
            "fd99:50::/64",
            "via",
            "fd77::1",
            "dev",
            "eth0",
            "mtu",
            "1300",
        ],
    );
    ip(
        ns,
        &[
            "neigh",
            "add",
            "10.77.0.50",
            "lladdr",
            "02:00:00:00:00:50",
            "nud",
            "permanent",
            "dev",
            "eth0",
        ],
    );
    ip(
        ns,
        &[
            "-6",
            "neigh",
            "add",
            "fd77::50",
            "lladdr",
            "02:00:00:00:00:51",
            "nud",
            "permanent",
            "dev",
            "eth0",
        ],
    );
    ip(
        ns,
        &[
            "neigh",
            "add",
            &stale_ip,
            "lladdr",
            "02:00:00:00:00:60",
            "nud",
            "stale",
            "dev",
            &last,
        ],
    );
    net
}

fn has(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

#[test]
fn scan_of_one_interface_matches_iproute2_in_four_dumps() {
    let net = pod(1);
    let snapshot = scan_and_compare(&net);
    let view = scan_view(&snapshot);
    // The comparison covered what this test put there, in both families.
    assert_eq!(snapshot.links.len(), 2, "lo and eth0");
    for needle in [
        "eth0 10.77.0.2/24",
        "eth0 fd77::2/64",
        "eth0 fe80:",
        "lo 127.0.0.1/8",
        "lo ::1/128",
    ] {
        assert!(
            has(&view.addresses, needle),
            "{needle} in {:#?}",
            view.addresses
        );
    }
    for needle in [
        "inet unicast default via=10.77.0.1 dev=eth0 proto=boot",
        "inet unicast 10.77.0.0/24 via=- dev=eth0 proto=kernel scope=link src=10.77.0.2",
        "inet unicast 192.168.50.0/24 via=10.77.0.1 dev=eth0 proto=boot scope=global src=- metric=- mtu=1400",
        "inet6 unicast default via=fd77::1 dev=eth0 proto=boot",
        "inet6 unicast fd99:50::/64 via=fd77::1 dev=eth0 proto=boot scope=global src=- metric=1024 mtu=1300",
        "inet6 unicast fd77::/64 via=- dev=eth0 proto=kernel",
    ] {
        assert!(has(&view.routes, needle), "{needle} in {:#?}", view.routes);
    }
    for needle in [
        "10.77.0.50 dev=eth0 lladdr=02:00:00:00:00:50 state=PERMANENT",
        "fd77::50 dev=eth0 lladdr=02:00:00:00:00:51 state=PERMANENT",
        "10.77.0.60 dev=eth0 lladdr=02:00:00:00:00:60 state=STALE",
    ] {
        assert!(
            has(&view.neighbours, needle),
            "{needle} in {:#?}",
            view.neighbours
        );
    }
}

#[test]
fn scan_of_twenty_interfaces_matches_iproute2_in_four_dumps() {
    let net = pod(20);
    let snapshot = scan_and_compare(&net);
    let view = scan_view(&snapshot);
    assert_eq!(snapshot.links.len(), 21, "lo and eth0..eth19");
    for i in 0..20 {
        for needle in [
            format!("eth{i} 10.77.{i}.2/24"),
            format!("eth{i} {}/64", Ipv6Addr::new(0xfd77, i, 0, 0, 0, 0, 0, 2)),
            format!("inet unicast 10.77.{i}.0/24 via=- dev=eth{i} proto=kernel"),
            format!(
                "inet6 unicast {}/64 via=- dev=eth{i} proto=kernel",
                Ipv6Addr::new(0xfd77, i, 0, 0, 0, 0, 0, 0)
            ),
        ] {
            assert!(
                has(&view.addresses, &needle) || has(&view.routes, &needle),
                "{needle} missing from the scan"
            );
        }
    }
    assert!(has(
        &view.neighbours,
        "10.77.19.60 dev=eth19 lladdr=02:00:00:00:00:60 state=STALE"
    ));
    // Every veth is a candidate, in natural name order.
    let candidates = sandbox_net::endpoint::candidates(&snapshot, None).expect("candidates");
    let names: Vec<String> = candidates.iter().map(|c| c.link.name.clone()).collect();
    let expected: Vec<String> = (0..20).map(|i| format!("eth{i}")).collect();
    assert_eq!(names, expected);
}

#[test]
fn guest_description_keeps_configured_routes_and_permanent_neighbours() {
    let net = pod(1);
    let snapshot = scan_and_compare(&net);
    let eth0 = snapshot
        .links
        .iter()
        .find(|l| l.name == "eth0")
        .expect("eth0 in the scan");
    let configured: Vec<u32> = sandbox_net::endpoint::candidates(&snapshot, None)
        .expect("candidates")
        .iter()
        .map(|c| c.link.index)
        .collect();
    assert_eq!(
        configured,
        vec![eth0.index],
        "eth0 is the only configured link"
    );
    let g = guest::describe(&snapshot, &configured);
    println!(
        "guest description:\n{}",
        serde_json::to_string_pretty(&g).expect("encode")
    );

    assert_eq!(g.interfaces.len(), 1);
    let i = &g.interfaces[0];
    assert_eq!(
        (
            i.name.as_str(),
            i.mac.map(|m| m.to_string()),
            i.mtu,
            i.noarp
        ),
        ("eth0", Some("02:77:00:00:00:02".to_string()), 1500, false)
    );
    let addrs: Vec<String> = i
        .addresses
        .iter()
        .map(|a| format!("{} {}/{}", a.family, a.address, a.prefix_len))
        .collect();
    assert_eq!(
        addrs,
        vec!["inet 10.77.0.2/24", "inet6 fd77::2/64"],
        "no link-local"
    );

    // Kernel-made (prefix) routes are absent; the others are there, with their MTU.
    let mut routes: Vec<String> = g
        .routes
        .iter()
        .map(|r| {
            format!(
                "{} {} via {} dev {} scope {} mtu {}",
                r.family,
                r.dst,
                opt(r.gateway),
                r.device,
                r.scope,
                opt(r.mtu)
            )
        })
        .collect();
    routes.sort();
    assert_eq!(
        routes,
        vec![
            "inet 192.168.50.0/24 via 10.77.0.1 dev eth0 scope universe mtu 1400",
            "inet default via 10.77.0.1 dev eth0 scope universe mtu -",
            "inet6 default via fd77::1 dev eth0 scope universe mtu -",
            "inet6 fd99:50::/64 via fd77::1 dev eth0 scope universe mtu 1300",
        ]
    );
    let kernel_dsts: Vec<String> = snapshot
        .routes
        .iter()
        .filter(|r| {
            r.protocol == sandbox_net::netlink::route::PROTO_KERNEL && r.table == TABLE_MAIN
        })
        .filter_map(|r| r.dst.map(|d| format!("{d}/{}", r.dst_len)))
        .collect();
    assert!(
        kernel_dsts.contains(&"10.77.0.0/24".to_string()),
        "{kernel_dsts:?}"
    );
    assert!(
        kernel_dsts.contains(&"fd77::/64".to_string()),
        "{kernel_dsts:?}"
    );
    assert!(
        g.routes.iter().all(|r| !kernel_dsts.contains(&r.dst)),
        "a kernel route leaked into the guest description: {:#?}",
        g.routes
    );

    // The permanent neighbours are there; the stale one (not a gateway) is not.
    let mut neighbours: Vec<String> = g
        .neighbors
        .iter()
        .map(|n| format!("{} {} {} {} {}", n.family, n.ip, n.mac, n.device, n.state))
        .collect();
    neighbours.sort();
    assert_eq!(
        neighbours,
        vec![
            "inet 10.77.0.50 02:00:00:00:00:50 eth0 permanent",
            "inet6 fd77::50 02:00:00:00:00:51 eth0 permanent",
        ]
    );
}

#[test]
fn one_link_by_index_or_name_is_one_request_and_a_missing_one_is_none() {
    let net = scratch(2);
    let mut nl = Netlink::open_in(&net.pod).expect("open netlink in the pod netns");
    let all = scan::scan(&mut nl).expect("scan").links;
    let before = nl.requests();
    for l in &all {
        let by_index = sandbox_net::netlink::link::get(&mut nl, l.index).expect("get by index");
        assert_eq!(by_index.as_ref(), Some(l), "by index {}", l.index);
        let by_name = sandbox_net::netlink::link::get_by_name(&mut nl, &l.name).expect("by name");
        assert_eq!(by_name.as_ref(), Some(l), "by name {}", l.name);
    }
    assert_eq!(nl.requests() - before, 2 * all.len() as u64);
    assert_eq!(
        sandbox_net::netlink::link::get(&mut nl, 9999).expect("get"),
        None
    );
    assert_eq!(
        sandbox_net::netlink::link::get_by_name(&mut nl, "nosuch0").expect("get"),
        None
    );
}
