//! Shared helpers for the integration tests. Every test runs as root in private network
//! namespaces with unique names (see `sandbox_net::scratch`), removed on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sandbox_net::scratch::{ScratchNet, unique_name};
use serde_json::Value;

/// A scratch pod/peer pair with `n` veths (eth0..), eth0 carrying the default routes.
pub fn scratch(n: u8) -> ScratchNet {
    let mut net = ScratchNet::new("snt").expect("create scratch namespaces");
    for i in 0..n {
        net.add_link(i, 1500, i == 0).expect("add veth");
    }
    net
}

/// A private state directory, removed on drop.
pub struct TempStateDir(pub PathBuf);

impl TempStateDir {
    pub fn new() -> TempStateDir {
        let dir = std::env::temp_dir().join(unique_name("snt-state"));
        TempStateDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempStateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run a command, return stdout; panic with stderr on failure.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `ip -n NS -j ARGS...` and parse its JSON.
pub fn ip_json(ns: &str, args: &[&str]) -> Value {
    let mut full = vec!["-n", ns, "-j"];
    full.extend_from_slice(args);
    let text = run("ip", &full);
    if text.trim().is_empty() {
        return Value::Array(vec![]);
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("ip {full:?}: bad JSON {e}: {text}"))
}

/// Run `tc -n NS -j ARGS...` and parse its JSON.
pub fn tc_json(ns: &str, args: &[&str]) -> Value {
    let mut full = vec!["-n", ns, "-j"];
    full.extend_from_slice(args);
    let text = run("tc", &full);
    if text.trim().is_empty() {
        return Value::Array(vec![]);
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("tc {full:?}: bad JSON {e}: {text}"))
}

/// Everything about a netns that an attach could change, as iproute2 reports it, with
/// counters and timers removed so two snapshots compare equal when nothing changed.
#[derive(Debug, PartialEq)]
pub struct NetnsSnapshot {
    pub links: Vec<String>,
    pub addresses: Vec<String>,
    pub routes: Vec<String>,
    pub qdiscs: Vec<String>,
    pub filters: Vec<String>,
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
    let mut s = NetnsSnapshot {
        links,
        addresses,
        routes,
        qdiscs,
        filters,
    };
    s.links.sort();
    s.addresses.sort();
    s.routes.sort();
    s.qdiscs.sort();
    s.filters.sort();
    s
}

/// The path of the release/debug `sandbox-net` binary built for the tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sandbox-net")
}

/// Run the CLI; returns (exit code, stdout, stderr).
pub fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run sandbox-net: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Wait (up to 10 s, then go on regardless) until the kernel has finished configuring the
/// netns by itself, so that snapshots taken before and after a command differ only by what
/// the command did: IPv6 link-local addresses present and none tentative, and every tap
/// that is up past its initial operstate UNKNOWN (the kernel's link watch sets it, up to a
/// second or so after the tap's carrier went off, later under load).
pub fn settle(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
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
