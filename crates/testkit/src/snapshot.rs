//! Helpers shared by the reliability tests (crash, gc, concurrency, soak, failpoints,
//! kernel busy): snapshots that wait for the kernel's own asynchronous work, and cleanup
//! guards.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{NetnsSnapshot, snapshot};

/// How long the kernel gets to finish its own asynchronous work (IPv6 local routes of a
/// restored address, link watch) before a snapshot comparison fails.
const SETTLE: Duration = Duration::from_secs(10);

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

/// Detaches the sandbox on drop, so a failing test leaves nothing attached.
pub struct DetachOnDrop<'a>(pub &'a Path, pub String);

impl Drop for DetachOnDrop<'_> {
    fn drop(&mut self) {
        if let Err(e) = sandbox_net::detach(self.0, &self.1) {
            eprintln!("cleanup: detach {}: {e}", self.1);
        }
    }
}

/// The taps, macvtaps and IFBs sandbox-net made in `ns` (names ending in `_sn`).
pub fn our_links(ns: &str) -> Vec<String> {
    let mut names: Vec<String> = crate::common::ip_json(ns, &["link", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["ifname"].as_str().map(String::from))
        .filter(|n| n.ends_with("_sn"))
        .collect();
    names.sort();
    names
}
