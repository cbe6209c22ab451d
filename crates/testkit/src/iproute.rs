//! Helpers shared by the models, endpoints and hotplug tests (issue #3): an attach guard
//! that detaches on drop, the dataplane check of one endpoint against given peer addresses,
//! `ip` wrappers scoped to one netns, and waits for asynchronous link state.
#![allow(dead_code)]

pub mod watch_child;

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sandbox_net::dataplane::{self, PingReport};
use sandbox_net::netns::NetNs;
use sandbox_net::state::Endpoint;
use sandbox_net::{AttachOptions, Attachment, Detached};

use crate::common::{TempStateDir, ip_json, snapshot};

/// Pings per direction and address.
pub const COUNT: u32 = 3;

/// The tests of one file run one at a time: while another test thread forks `ip` or `tc`,
/// the child holds copies of this process's tap fds until exec, so a single-queue tap the
/// fake guest just closed can still be busy.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Detaches the sandbox on drop (also when the test panics), unless already detached.
pub struct Attached<'a> {
    pub dir: &'a Path,
    pub id: String,
    armed: bool,
}

impl<'a> Attached<'a> {
    /// Guard an attachment made some other way (the CLI).
    pub fn guard(dir: &'a Path, id: &str) -> Attached<'a> {
        Attached {
            dir,
            id: id.to_string(),
            armed: true,
        }
    }

    /// Stop guarding (the test detaches some other way, or hands over to another guard).
    pub fn disarm(mut self) {
        self.armed = false;
    }

    pub fn detach(mut self) -> Detached {
        self.armed = false;
        sandbox_net::detach(self.dir, &self.id).expect("detach")
    }
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = sandbox_net::detach(self.dir, &self.id);
        }
    }
}

/// Options for attaching `netns` as `id` with a private state dir.
pub fn options(netns: &str, dir: &TempStateDir, id: &str) -> AttachOptions {
    let mut opts = AttachOptions::new(netns, id);
    opts.state_dir = dir.path().to_path_buf();
    opts
}

/// Attach with `opts`, guarded.
pub fn attach<'a>(opts: &AttachOptions, dir: &'a TempStateDir) -> (Attachment, Attached<'a>) {
    let a = sandbox_net::attach(opts).unwrap_or_else(|e| panic!("attach {}: {e}", opts.id));
    (a, Attached::guard(dir.path(), &opts.id))
}

/// The guest description of an attach that took it (the default).
pub fn described(
    guest: &Option<sandbox_net::guest::GuestConfig>,
) -> &sandbox_net::guest::GuestConfig {
    guest.as_ref().expect("the attach described the guest")
}

/// The dataplane check of `ep` (guest identity from `guest`'s description of it): the fake
/// guest pings `peer_ips`, the peer pings the guest's first IPv4 and IPv6 addresses.
pub fn check(
    pod: &NetNs,
    peer: &NetNs,
    ep: &Endpoint,
    guest: &sandbox_net::guest::GuestConfig,
    peer_ips: &[IpAddr],
) -> sandbox_net::Result<Vec<PingReport>> {
    let iface = guest
        .interfaces
        .iter()
        .find(|g| g.name == ep.name)
        .unwrap_or_else(|| panic!("no guest interface for {}", ep.name));
    let id = dataplane::identity(ep, iface).expect("identity");
    dataplane::check(pod, peer, ep, id, peer_ips, COUNT)
}

/// Assert that every exchange got every reply: `n_peer` guest -> peer exchanges and one
/// peer -> guest exchange per guest address family (`n_guest`).
pub fn assert_replied(what: &str, reports: &[PingReport], n_peer: usize, n_guest: usize) {
    for r in reports {
        let rtts: Vec<String> = r
            .rtts
            .iter()
            .map(|d| format!("{:.3} ms", d.as_secs_f64() * 1e3))
            .collect();
        println!("{what}: {:<28} rtt {}", r.direction, rtts.join(", "));
    }
    let count = |prefix: &str| {
        reports
            .iter()
            .filter(|r| r.direction.starts_with(prefix))
            .count()
    };
    assert_eq!(count("guest -> "), n_peer, "{what}: {reports:?}");
    assert_eq!(count("peer -> "), n_guest, "{what}: {reports:?}");
    for r in reports {
        assert_eq!(r.rtts.len(), COUNT as usize, "{what}: {}", r.direction);
    }
}

/// Run `ip -n NS ARGS...` (never without -n); panic with stderr on failure.
pub fn ip(ns: &str, args: &[&str]) {
    if let Err(e) = try_ip(ns, args) {
        panic!("ip -n {ns} {}: {e}", args.join(" "));
    }
}

/// Run `ip -n NS ARGS...`; Err(stderr) on failure.
pub fn try_ip(ns: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .map_err(|e| format!("run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Run `ip netns exec NS CMD ARGS...` (a fresh sysfs of NS is mounted for the command);
/// returns stdout, panics on failure.
pub fn netns_exec(ns: &str, cmd: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .output()
        .unwrap_or_else(|e| panic!("ip netns exec: {e}"));
    assert!(
        out.status.success(),
        "ip netns exec {ns} {cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip -d link show dev NAME` in `ns`, as JSON.
pub fn link(ns: &str, name: &str) -> serde_json::Value {
    ip_json(ns, &["-d", "link", "show", "dev", name])[0].clone()
}

/// Wait (up to 10 s) until `cond` holds; panic naming `what` otherwise. Waits for state the
/// kernel settles asynchronously; never asserts on how long it took.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until link `name` in `ns` has its carrier (LOWER_UP) and is operationally up.
pub fn wait_lower_up(ns: &str, name: &str) {
    wait_for(&format!("{name} in {ns} to get a carrier"), || {
        let l = link(ns, name);
        l["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "LOWER_UP"))
    });
}

/// The pod's snapshot, taken once the links' state has settled: waits until two snapshots
/// in a row agree, then returns the last.
pub fn settled_snapshot(ns: &str) -> crate::common::NetnsSnapshot {
    let mut last = snapshot(ns);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = snapshot(ns);
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// Wait until `ns`'s snapshot equals `expected` (link state such as a carrier going away
/// settles asynchronously), then assert equality (with the diff on failure).
pub fn assert_snapshot_eq(ns: &str, expected: &crate::common::NetnsSnapshot, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = snapshot(ns);
        if &now == expected {
            return;
        }
        if Instant::now() > deadline {
            assert_eq!(&now, expected, "{what}: the netns differs");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True when an ingress qdisc or any ingress filter exists in `ns`.
pub fn has_tc_objects(ns: &str) -> bool {
    let snap = snapshot(ns);
    !snap.filters.is_empty() || snap.qdiscs.iter().any(|q| q.contains("ingress"))
}

/// The link names of `ns`, in ifindex order.
pub fn link_names(ns: &str) -> Vec<String> {
    ip_json(ns, &["link", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| l["ifname"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The addresses (ADDR/LEN) of `dev` in `ns`, link-local ones included.
pub fn addresses(ns: &str, dev: &str) -> Vec<String> {
    let mut out: Vec<String> = ip_json(ns, &["addr", "show", "dev", dev])
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            format!(
                "{}/{}",
                a["local"].as_str().unwrap_or_default(),
                a["prefixlen"]
            )
        })
        .collect();
    out.sort();
    out
}

/// The default routes of `ns` (both families), as "FAMILY via GW dev DEV".
pub fn default_routes(ns: &str) -> Vec<String> {
    let mut out = Vec::new();
    for fam in ["-4", "-6"] {
        for r in ip_json(ns, &[fam, "route", "show", "default"])
            .as_array()
            .into_iter()
            .flatten()
        {
            out.push(format!(
                "{fam} via {} dev {}",
                r["gateway"].as_str().unwrap_or("-"),
                r["dev"].as_str().unwrap_or("-")
            ));
        }
    }
    out
}

/// The addresses of `dev` in `ns` with every attribute iproute2 shows (family, scope,
/// flags such as noprefixroute or nodad, broadcast...) except the lifetimes, sorted.
pub fn address_details(ns: &str, dev: &str) -> Vec<String> {
    let mut out: Vec<String> = ip_json(ns, &["addr", "show", "dev", dev])
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .map(|mut a| {
            if let Some(o) = a.as_object_mut() {
                o.remove("valid_life_time");
                o.remove("preferred_life_time");
            }
            a.to_string()
        })
        .collect();
    out.sort();
    out
}

/// A temp directory, removed on drop (also when the test panics).
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join(sandbox_net::scratch::unique_name(prefix));
        std::fs::create_dir_all(&p).expect("mkdir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
