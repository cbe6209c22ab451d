//! Scratch networks for the demo and the tests: a "pod" netns wired like a CNI bridge
//! plugin would wire it (veths with IPv4 and IPv6 addresses and default routes) to a
//! "peer" netns that plays the rest of the network. Namespaces get unique names, are made
//! as iproute2 makes them ([`crate::netns`]) and are deleted on drop, so nothing is left
//! behind even when a test fails.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU32, Ordering};

use sandbox_net::netlink::route::NewRoute;
use sandbox_net::netlink::{Netlink, addr, link, route};
use sandbox_net::netns::NetNs;
use sandbox_net::{Error, Result, tap};

use crate::netns;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique netns name: `PREFIX-PID-N`.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// One veth between the pod and the peer.
#[derive(Debug, Clone)]
pub struct ScratchLink {
    /// Name in the pod netns (`eth<n>`).
    pub name: String,
    /// Name of the other end, in the peer netns.
    pub peer_name: String,
    pub pod_v4: Ipv4Addr,
    pub peer_v4: Ipv4Addr,
    pub pod_v6: Ipv6Addr,
    pub peer_v6: Ipv6Addr,
    pub mac: [u8; 6],
}

/// A pod netns and a peer netns joined by veths.
#[derive(Debug)]
pub struct ScratchNet {
    pub pod_name: String,
    pub peer_name: String,
    pub pod: NetNs,
    pub peer: NetNs,
    pub links: Vec<ScratchLink>,
}

fn k(object: &str, step: &str) -> impl FnOnce(sandbox_net::netlink::NlError) -> Error {
    let object = object.to_string();
    let step = step.to_string();
    move |e| Error::kernel(object, step, e.into_io())
}

impl ScratchNet {
    /// Create the two namespaces (`PREFIX-PID-N-pod` and `...-peer`), with loopback up.
    pub fn new(prefix: &str) -> Result<ScratchNet> {
        let base = unique_name(prefix);
        let pod_name = format!("{base}-pod");
        let peer_name = format!("{base}-peer");
        let pod = netns::create(&pod_name)?;
        let peer = match netns::create(&peer_name) {
            Ok(p) => p,
            Err(e) => {
                let _ = netns::delete(&pod_name);
                return Err(e);
            }
        };
        let net = ScratchNet {
            pod_name,
            peer_name,
            pod,
            peer,
            links: Vec::new(),
        };
        for ns in [&net.pod, &net.peer] {
            let mut nl = Netlink::open_in(ns)?;
            link::set_up(&mut nl, 1).map_err(k(ns.display(), "bring lo up"))?;
            // No duplicate address detection: new links' IPv6 addresses (link-local ones
            // included) are usable at once instead of after a second or two.
            ns.run(|| {
                for scope in ["all", "default"] {
                    let path = format!("/proc/sys/net/ipv6/conf/{scope}/accept_dad");
                    std::fs::write(&path, "0")
                        .map_err(|e| Error::kernel(ns.display(), format!("write {path}"), e))?;
                }
                Ok::<(), Error>(())
            })??;
        }
        Ok(net)
    }

    /// Add veth number `n`: `eth<n>` in the pod with 10.77.n.2/24 and fd77:n::2/64, its peer
    /// `peth<n>` with 10.77.n.1 and fd77:n::1. With `default_route`, the pod gets IPv4 and
    /// IPv6 default routes through the peer.
    pub fn add_link(&mut self, n: u8, mtu: u32, default_route: bool) -> Result<ScratchLink> {
        let name = format!("eth{n}");
        let peer_name = format!("peth{n}");
        let l = ScratchLink {
            pod_v4: Ipv4Addr::new(10, 77, n, 2),
            peer_v4: Ipv4Addr::new(10, 77, n, 1),
            pod_v6: Ipv6Addr::new(0xfd77, u16::from(n), 0, 0, 0, 0, 0, 2),
            peer_v6: Ipv6Addr::new(0xfd77, u16::from(n), 0, 0, 0, 0, 0, 1),
            mac: [0x02, 0x77, 0, 0, n, 2],
            name,
            peer_name,
        };
        let pod_label = format!("netns {} {}", self.pod_name, l.name);
        let peer_label = format!("netns {} {}", self.peer_name, l.peer_name);
        let mut pod_nl = Netlink::open_in(&self.pod)?;
        link::create_veth(&mut pod_nl, &l.name, &l.peer_name, self.peer.as_fd())
            .map_err(k(&pod_label, "create veth"))?;
        let (pod_index, peer_index) = (
            self.pod.run(|| tap::ifindex(&l.name))?,
            self.peer.run(|| tap::ifindex(&l.peer_name))?,
        );
        let pod_index = pod_index.map_err(|e| Error::kernel(&pod_label, "look up", e))?;
        let peer_index = peer_index.map_err(|e| Error::kernel(&peer_label, "look up", e))?;
        link::set_mac_mtu(&mut pod_nl, pod_index, &l.mac, mtu)
            .map_err(k(&pod_label, "set mac and mtu"))?;
        let mut peer_nl = Netlink::open_in(&self.peer)?;
        link::set_mac_mtu(&mut peer_nl, peer_index, &[0x02, 0x77, 0, 0, n, 1], mtu)
            .map_err(k(&peer_label, "set mac and mtu"))?;
        link::set_up(&mut pod_nl, pod_index).map_err(k(&pod_label, "bring up"))?;
        link::set_up(&mut peer_nl, peer_index).map_err(k(&peer_label, "bring up"))?;
        // The kernel turns the carrier on asynchronously (link watch, up to a second later);
        // until then the devices drop what they send. Wait like a CNI plugin settles.
        wait_running(&mut pod_nl, pod_index, &pod_label)?;
        wait_running(&mut peer_nl, peer_index, &peer_label)?;
        // IPv6 gives each link its link-local address a moment after the carrier: wait for
        // it too, so a snapshot taken now stays true.
        wait_link_local(&mut pod_nl, pod_index, &pod_label)?;
        wait_link_local(&mut peer_nl, peer_index, &peer_label)?;
        // Addresses last, once the links are up and settled: whoever watches the netns sees
        // a finished interface appear.
        addr::add(&mut pod_nl, pod_index, IpAddr::V4(l.pod_v4), 24)
            .map_err(k(&pod_label, "add IPv4"))?;
        addr::add(&mut pod_nl, pod_index, IpAddr::V6(l.pod_v6), 64)
            .map_err(k(&pod_label, "add IPv6"))?;
        addr::add(&mut peer_nl, peer_index, IpAddr::V4(l.peer_v4), 24)
            .map_err(k(&peer_label, "add IPv4"))?;
        addr::add(&mut peer_nl, peer_index, IpAddr::V6(l.peer_v6), 64)
            .map_err(k(&peer_label, "add IPv6"))?;
        if default_route {
            for (gw, ipv6) in [
                (IpAddr::V4(l.peer_v4), false),
                (IpAddr::V6(l.peer_v6), true),
            ] {
                route::add(
                    &mut pod_nl,
                    &NewRoute {
                        dst: None,
                        gateway: Some(gw),
                        oif: pod_index,
                        mtu: None,
                        ipv6,
                    },
                )
                .map_err(k(&pod_label, "add default route"))?;
            }
        }
        // An IPv6 address's local route (table local) comes after the address, from the
        // kernel's address work queue, later under load: wait for them so that a snapshot
        // taken now is the one a detach restores (up to 3 s, then go on: a watching l3
        // attachment removes them on purpose).
        wait_local_routes(&self.pod_name, &l.name);
        wait_local_routes(&self.peer_name, &l.peer_name);
        self.links.push(l.clone());
        Ok(l)
    }
}

/// Wait (up to 3 s, then go on regardless) until every IPv6 address of link `dev` in
/// netns `ns` has its local route.
fn wait_local_routes(ns: &str, dev: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let addrs = crate::iproute::ip_json(ns, &["-6", "addr", "show", "dev", dev]);
        let wanted: Vec<String> = addrs
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a["local"].as_str().map(str::to_string))
            .collect();
        let routes = crate::iproute::ip_json(ns, &["-6", "route", "show", "table", "local"]);
        let have: Vec<&str> = routes
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["type"] == "local")
            .filter_map(|r| r["dst"].as_str())
            .collect();
        if wanted.iter().all(|a| have.contains(&a.as_str())) || std::time::Instant::now() > deadline
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Wait (up to 5 s) until a link reports IFF_RUNNING (carrier on, qdisc active).
fn wait_running(nl: &mut Netlink, index: u32, label: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let running = link::get(nl, index)
            .map_err(k(label, "read link state"))?
            .is_some_and(|l| l.flags & libc::IFF_RUNNING as u32 != 0);
        if running {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::kernel(
                label,
                "wait for carrier",
                std::io::Error::new(std::io::ErrorKind::TimedOut, "no carrier after 5 s"),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Wait (up to 5 s) until a link has an IPv6 link-local address.
fn wait_link_local(nl: &mut Netlink, index: u32, label: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let has = addr::dump(nl)
            .map_err(k(label, "read addresses"))?
            .iter()
            .any(|a| a.ifindex == index && sandbox_net::endpoint::is_link_local_v6(&a.addr));
        if has {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::kernel(
                label,
                "wait for an IPv6 link-local address",
                std::io::Error::new(std::io::ErrorKind::TimedOut, "none after 5 s"),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

impl Drop for ScratchNet {
    fn drop(&mut self) {
        for name in [&self.pod_name, &self.peer_name] {
            if let Err(e) = netns::delete(name) {
                tracing::error!(netns = %name, error = %e, "could not delete scratch netns");
            }
        }
    }
}

/// A scratch pod/peer pair (prefix `snt`) with `n` veths (eth0..), eth0 carrying the
/// default routes; panics on failure (for the tests).
pub fn scratch(n: u8) -> ScratchNet {
    let mut net = ScratchNet::new("snt").expect("create scratch namespaces");
    for i in 0..n {
        net.add_link(i, 1500, i == 0).expect("add veth");
    }
    net
}
