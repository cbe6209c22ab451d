//! What a netns holds as iproute2 (`ip -j`, `tc -j`) reports it, the independent witness
//! of what sandbox-net built: snapshots to compare before and after an operation, taken or
//! compared once the kernel's own asynchronous work (link watch, IPv6 addresses and local
//! routes) has settled.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::iproute::{ip_json, tc_json};

/// How long the kernel gets to finish its own asynchronous work (IPv6 local routes of a
/// restored address, link watch) before a snapshot comparison fails.
const SETTLE: Duration = Duration::from_secs(10);

/// Everything about a netns that an attach could change, as iproute2 reports it, with
/// counters and timers removed so two snapshots compare equal when nothing changed.
#[derive(Debug, PartialEq)]
pub struct NetnsSnapshot {
    pub links: Vec<String>,
    pub addresses: Vec<String>,
    pub routes: Vec<String>,
    pub qdiscs: Vec<String>,
    pub filters: Vec<String>,
    /// Every per-device and netns-wide setting under /proc/sys/net/{ipv4,ipv6}/{conf,neigh}.
    pub sysctls: Vec<String>,
    /// Proxy neighbour entries (`ip neigh show proxy`).
    pub proxies: Vec<String>,
}

/// Every readable file under /proc/sys/net/{ipv4,ipv6}/{conf,neigh}/*/ of `ns`, as
/// "ipv4/conf/eth0/proxy_arp=0", read from a thread inside the netns (/proc/sys/net
/// answers for the reader's netns).
pub fn sysctls(ns: &str) -> Vec<String> {
    let netns = sandbox_net::netns::NetNs::open(ns, false).expect("open netns for its sysctls");
    let mut out = netns
        .run(|| {
            let mut out = Vec::new();
            for section in ["ipv4/conf", "ipv4/neigh", "ipv6/conf", "ipv6/neigh"] {
                let base = Path::new("/proc/sys/net").join(section);
                let Ok(dirs) = std::fs::read_dir(&base) else {
                    continue;
                };
                for dir in dirs.flatten() {
                    let Ok(files) = std::fs::read_dir(dir.path()) else {
                        continue;
                    };
                    for file in files.flatten() {
                        // Unreadable ones (stable_secret before it is set) are left out.
                        if let Ok(value) = std::fs::read_to_string(file.path()) {
                            out.push(format!(
                                "{section}/{}/{}={}",
                                dir.file_name().to_string_lossy(),
                                file.file_name().to_string_lossy(),
                                value.trim()
                            ));
                        }
                    }
                }
            }
            out
        })
        .expect("enter the netns");
    out.sort();
    out
}

pub fn snapshot(ns: &str) -> NetnsSnapshot {
    let links_json = ip_json(ns, &["-d", "link", "show"]);
    let mut links = Vec::new();
    let mut filters = Vec::new();
    for l in links_json.as_array().into_iter().flatten() {
        let name = l["ifname"].as_str().unwrap_or_default().to_string();
        // Carrier state settles asynchronously (a new tap turns NO-CARRIER up to seconds
        // later under load); no operation here changes it on purpose, so leave it out.
        let flags: Vec<&str> = l["flags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .filter(|f| !matches!(*f, "NO-CARRIER" | "LOWER_UP"))
            .collect();
        links.push(format!(
            "{} {} mtu={} mac={} flags={} kind={}",
            l["ifindex"],
            name,
            l["mtu"],
            l["address"],
            flags.join(","),
            l["linkinfo"]["info_kind"]
        ));
        for f in tc_json(ns, &["filter", "show", "dev", &name, "ingress"])
            .as_array()
            .into_iter()
            .flatten()
        {
            filters.push(format!("{name}: {f}"));
        }
    }
    let addresses = ip_json(ns, &["addr", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| {
            let name = l["ifname"].as_str().unwrap_or_default().to_string();
            l["addr_info"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |a| format!("{name} {}/{}", a["local"], a["prefixlen"]))
        })
        .collect();
    let mut routes: Vec<String> = Vec::new();
    for fam in ["-4", "-6"] {
        for mut r in ip_json(ns, &[fam, "route", "show", "table", "all"])
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            // "linkdown" mirrors the device's carrier, which the kernel's link watch
            // updates asynchronously (and which the link lines above leave out too).
            if let Some(flags) = r["flags"].as_array_mut() {
                flags.retain(|f| f != "linkdown");
            }
            routes.push(r.to_string());
        }
    }
    let qdiscs = tc_json(ns, &["qdisc", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .map(|q| format!("{} {} {}", q["dev"], q["kind"], q["handle"]))
        .collect();
    let proxies = ip_json(ns, &["neigh", "show", "proxy"])
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p.to_string())
        .collect();
    let mut s = NetnsSnapshot {
        links,
        addresses,
        routes,
        qdiscs,
        filters,
        sysctls: sysctls(ns),
        proxies,
    };
    s.links.sort();
    s.addresses.sort();
    s.routes.sort();
    s.qdiscs.sort();
    s.filters.sort();
    s.proxies.sort();
    s
}

/// Wait (up to 10 s, then go on regardless) until the kernel has finished configuring the
/// netns by itself, so that snapshots taken before and after a command differ only by what
/// the command did: IPv6 link-local addresses present and none tentative, and every tap
/// that is up past its initial operstate UNKNOWN (the kernel's link watch sets it, up to a
/// second or so after the tap's carrier went off, later under load).
pub fn settle(ns: &str) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let links = ip_json(ns, &["addr", "show"]);
        let addresses_settled = links.as_array().into_iter().flatten().all(|l| {
            let flags = l["flags"].to_string();
            let addrs = l["addr_info"].as_array().cloned().unwrap_or_default();
            let none_tentative = addrs.iter().all(|a| a["tentative"] != Value::Bool(true));
            let needs_ll = flags.contains("\"UP\"")
                && flags.contains("\"LOWER_UP\"")
                && !flags.contains("\"LOOPBACK\"");
            let has_ll = addrs
                .iter()
                .any(|a| a["local"].as_str().is_some_and(|s| s.starts_with("fe80:")));
            none_tentative && (!needs_ll || has_ll)
        });
        let links = ip_json(ns, &["-d", "link", "show"]);
        let taps_settled = links.as_array().into_iter().flatten().all(|l| {
            l["linkinfo"]["info_kind"] != "tun"
                || !l["flags"].to_string().contains("\"UP\"")
                || l["operstate"] != "UNKNOWN"
        });
        if (addresses_settled && taps_settled) || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A snapshot taken once two in a row agree (the kernel has finished configuring the
/// netns by itself), or after 10 s regardless.
pub fn settled_snapshot(ns: &str) -> NetnsSnapshot {
    let deadline = Instant::now() + SETTLE;
    let mut last = snapshot(ns);
    loop {
        std::thread::sleep(Duration::from_millis(30));
        let now = snapshot(ns);
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// Assert that `ns` comes to equal `expected`: compared at once, then again while the
/// kernel's asynchronous work settles (up to 10 s); on failure the diff names `what`.
pub fn assert_settles_to(ns: &str, expected: &NetnsSnapshot, what: &str) {
    assert_settles_to_by(ns, expected, what, |s| s);
}

/// A snapshot without ifindexes: for comparisons across a device that was re-created
/// (same name, kind, MAC, MTU, qdiscs; a new ifindex).
pub fn without_ifindexes(mut s: NetnsSnapshot) -> NetnsSnapshot {
    for line in &mut s.links {
        if let Some((_, rest)) = line.split_once(' ') {
            *line = rest.to_string();
        }
    }
    s.links.sort();
    s
}

/// [`assert_settles_to`], comparing `normalize`d snapshots.
pub fn assert_settles_to_by(
    ns: &str,
    expected: &NetnsSnapshot,
    what: &str,
    normalize: fn(NetnsSnapshot) -> NetnsSnapshot,
) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let now = normalize(snapshot(ns));
        if &now == expected {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: the netns differs from its snapshot\n{}",
                diff(expected, &now)
            );
        }
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// The lines only in `a` (-) or only in `b` (+), per section.
pub fn diff(a: &NetnsSnapshot, b: &NetnsSnapshot) -> String {
    let mut out = String::new();
    for (name, x, y) in [
        ("links", &a.links, &b.links),
        ("addresses", &a.addresses, &b.addresses),
        ("routes", &a.routes, &b.routes),
        ("qdiscs", &a.qdiscs, &b.qdiscs),
        ("filters", &a.filters, &b.filters),
        ("sysctls", &a.sysctls, &b.sysctls),
        ("proxy neighbours", &a.proxies, &b.proxies),
    ] {
        for line in x.iter().filter(|l| !y.contains(l)) {
            out.push_str(&format!("  - {name}: {line}\n"));
        }
        for line in y.iter().filter(|l| !x.contains(l)) {
            out.push_str(&format!("  + {name}: {line}\n"));
        }
    }
    out
}

/// The names in a directory, sorted (empty when it does not exist).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The taps, macvtaps and IFBs sandbox-net made in `ns` (names ending in `_sn`).
pub fn our_links(ns: &str) -> Vec<String> {
    let mut names: Vec<String> = ip_json(ns, &["link", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["ifname"].as_str().map(String::from))
        .filter(|n| n.ends_with("_sn"))
        .collect();
    names.sort();
    names
}
