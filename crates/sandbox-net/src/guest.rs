//! The description of the network that the guest must configure: its interfaces, routes
//! and neighbours, derived from a scan of the netns ([`describe`]), or from a scan of an
//! attached one as it would be without sandbox-net's own changes ([`now`]).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::endpoint::{Endpoint, is_link_local_v6};
use crate::journal::Entry;
use crate::mac::{self, MacAddr};
use crate::netlink::neigh::nud;
use crate::netlink::route::{PROTO_KERNEL, TABLE_MAIN};
use crate::scan::Snapshot;

/// RTN_UNICAST.
const RTN_UNICAST: u8 = 1;

/// The guest's whole network configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestConfig {
    /// The interfaces, with their addresses.
    pub interfaces: Vec<GuestInterface>,
    /// The routes, by interface.
    pub routes: Vec<GuestRoute>,
    /// The static neighbour entries the guest needs.
    pub neighbors: Vec<GuestNeighbor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// One guest interface: the endpoint as the guest must configure it.
pub struct GuestInterface {
    /// The interface's name in the netns; the guest NIC should get the same name.
    pub name: String,
    /// None (written "") when the interface has no MAC.
    #[serde(with = "mac::or_empty")]
    pub mac: Option<MacAddr>,
    /// Its MTU.
    pub mtu: u32,
    /// Its addresses.
    pub addresses: Vec<GuestAddress>,
    /// The interface resolves no neighbours (ARP off).
    pub noarp: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// An address with its prefix length.
pub struct GuestAddress {
    /// "inet" or "inet6".
    pub family: String,
    /// The address.
    pub address: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// A route the guest must install.
pub struct GuestRoute {
    /// `inet` or `inet6`.
    pub family: String,
    /// "default" or "ADDR/LEN".
    pub dst: String,
    /// The next hop, if any (none: a device route).
    pub gateway: Option<IpAddr>,
    /// The preferred source address, if any.
    pub source: Option<IpAddr>,
    /// "universe", "site", "link", "host" or "nowhere".
    pub scope: String,
    /// The guest interface it goes through.
    pub device: String,
    /// Its MTU, if the route sets one.
    pub mtu: Option<u32>,
    /// The route's metric (priority), when it has one.
    #[serde(default)]
    pub metric: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// A static neighbour entry the guest must install.
pub struct GuestNeighbor {
    /// `inet` or `inet6`.
    pub family: String,
    /// The neighbour's address.
    pub ip: IpAddr,
    /// Its MAC.
    pub mac: MacAddr,
    /// The guest interface it is on.
    pub device: String,
    /// "permanent" or "reachable".
    pub state: String,
}

/// The most routes a sandbox's guest description holds, all interfaces together. A pod's
/// network has a handful (a default route, a gateway's subnet, a few CNI routes); the
/// cap leaves a hundred times that, and keeps a description (~200 bytes of JSON per
/// entry) and the state it is saved in under a few hundred KiB. The tenant chooses what
/// its netns holds, and root saves the description: this is what bounds it.
pub const MAX_ROUTES: usize = 1024;
/// The most neighbours: PERMANENT entries a CNI plugin sets, and resolved gateways. The
/// kernel's own default hard limit for a neighbour table (`gc_thresh3`) is 1024 too.
pub const MAX_NEIGHBORS: usize = 1024;
/// The most addresses, all interfaces together (the kernel sets no limit of its own).
pub const MAX_ADDRESSES: usize = 1024;

/// Why a description is too large to record: the first cap it passes, with the numbers.
/// Nothing is ever cut to fit: a description over a cap is not recorded at all.
pub fn over_cap(config: &GuestConfig) -> Option<String> {
    let addresses = config.interfaces.iter().map(|i| i.addresses.len()).sum();
    [
        ("addresses", addresses, MAX_ADDRESSES),
        ("routes", config.routes.len(), MAX_ROUTES),
        ("neighbours", config.neighbors.len(), MAX_NEIGHBORS),
    ]
    .into_iter()
    .find(|(_, n, cap)| n > cap)
    .map(|(what, n, cap)| {
        format!("the guest description has {n} {what}, over the cap of {cap} {what} per sandbox")
    })
}

fn family(addr: &IpAddr) -> &'static str {
    if addr.is_ipv4() { "inet" } else { "inet6" }
}

fn scope_name(scope: u8) -> String {
    match scope {
        0 => "universe".into(),
        200 => "site".into(),
        253 => "link".into(),
        254 => "host".into(),
        255 => "nowhere".into(),
        other => other.to_string(),
    }
}

/// Describe the guest side of the interfaces `ifindexes` (in that order).
pub fn describe(snapshot: &Snapshot, ifindexes: &[u32]) -> GuestConfig {
    let mut config = GuestConfig::default();
    for &index in ifindexes {
        let Some(link) = snapshot.link(index) else {
            continue;
        };
        config.interfaces.push(GuestInterface {
            name: link.name.clone(),
            mac: link.mac.as_deref().and_then(MacAddr::from_slice),
            mtu: link.mtu,
            addresses: snapshot
                .addresses_of(index)
                .filter(|a| !is_link_local_v6(&a.addr))
                .map(|a| GuestAddress {
                    family: family(&a.addr).into(),
                    address: a.addr,
                    prefix_len: a.prefix_len,
                })
                .collect(),
            noarp: link.is_noarp(),
        });
    }
    let name_of = |index: u32| snapshot.link(index).map(|l| l.name.clone());
    let mut gateways = Vec::new();
    for route in &snapshot.routes {
        let Some(oif) = route.oif.filter(|i| ifindexes.contains(i)) else {
            continue;
        };
        if route.table != TABLE_MAIN || route.protocol == PROTO_KERNEL || route.kind != RTN_UNICAST
        {
            continue;
        }
        let fam = if route.ipv6 { "inet6" } else { "inet" };
        let dst = match route.dst {
            Some(d) if route.dst_len > 0 => format!("{d}/{}", route.dst_len),
            _ => "default".into(),
        };
        if dst == "default"
            && let Some(gw) = route.gateway
        {
            gateways.push((gw, oif));
        }
        config.routes.push(GuestRoute {
            family: fam.into(),
            dst,
            gateway: route.gateway,
            source: route.source,
            scope: scope_name(route.scope),
            device: name_of(oif).unwrap_or_default(),
            mtu: route.mtu,
            metric: route.priority,
        });
    }
    const RESOLVED: u16 = nud::REACHABLE | nud::STALE | nud::DELAY | nud::PROBE;
    for n in &snapshot.neighbours {
        if !ifindexes.contains(&n.ifindex) {
            continue;
        }
        let Some(lladdr) = n.lladdr.as_deref().and_then(MacAddr::from_slice) else {
            continue;
        };
        let state = if n.state & nud::PERMANENT != 0 {
            "permanent"
        } else if n.state & RESOLVED != 0 && gateways.contains(&(n.ip, n.ifindex)) {
            "reachable"
        } else {
            continue;
        };
        config.neighbors.push(GuestNeighbor {
            family: family(&n.ip).into(),
            ip: n.ip,
            mac: lladdr,
            device: name_of(n.ifindex).unwrap_or_default(),
            state: state.into(),
        });
    }
    config
}

/// The netns as it would be without this sandbox's own changes to its endpoints: the
/// addresses and routes a macvtap took over are put back, and the MACs it changed.
fn as_configured(journal: &[Entry], snapshot: &Snapshot) -> Snapshot {
    let mut view = snapshot.clone();
    for entry in journal {
        match entry {
            Entry::RemovedAddress { address, .. }
                if !view
                    .addresses
                    .iter()
                    .any(|a| a.ifindex == address.ifindex && a.addr == address.addr) =>
            {
                view.addresses.push(address.clone());
            }
            Entry::RemovedRoute { route, .. } if !view.routes.contains(route) => {
                view.routes.push(route.clone());
            }
            Entry::LinkMac {
                ifindex: Some(index),
                original,
                ..
            } => {
                if let Some(link) = view.links.iter_mut().find(|l| l.index == *index) {
                    link.mac = Some(original.bytes().to_vec());
                }
            }
            _ => {}
        }
    }
    view
}

/// The guest description of `endpoints` (attached with `journal`) in `snapshot`, as it is
/// now. Endpoints whose interface has left the netns on purpose (VFIO) keep what
/// `recorded` has for them.
pub fn now(
    endpoints: &[Endpoint],
    journal: &[Entry],
    recorded: Option<&GuestConfig>,
    snapshot: &Snapshot,
) -> GuestConfig {
    let view = as_configured(journal, snapshot);
    let live: Vec<u32> = endpoints
        .iter()
        .filter(|e| view.link(e.ifindex).is_some())
        .map(|e| e.ifindex)
        .collect();
    let described = describe(&view, &live);
    let mut out = GuestConfig {
        interfaces: Vec::new(),
        routes: described.routes,
        neighbors: described.neighbors,
    };
    let mut live_interfaces = described.interfaces.into_iter();
    for e in endpoints {
        if live.contains(&e.ifindex) {
            out.interfaces.extend(live_interfaces.next());
            continue;
        }
        let Some(recorded) = recorded else {
            continue;
        };
        out.interfaces.extend(
            recorded
                .interfaces
                .iter()
                .filter(|i| i.name == e.name)
                .cloned(),
        );
        out.routes.extend(
            recorded
                .routes
                .iter()
                .filter(|r| r.device == e.name)
                .cloned(),
        );
        out.neighbors.extend(
            recorded
                .neighbors
                .iter()
                .filter(|n| n.device == e.name)
                .cloned(),
        );
    }
    out
}

/// Two guest descriptions say the same: the same interfaces in the same order, and the
/// same routes and neighbours in any order.
pub fn same(a: &GuestConfig, b: &GuestConfig) -> bool {
    fn sorted<T: serde::Serialize>(items: &[T]) -> Vec<String> {
        let mut keys: Vec<String> = items
            .iter()
            .map(|i| serde_json::to_string(i).unwrap_or_default())
            .collect();
        keys.sort();
        keys
    }
    a.interfaces == b.interfaces
        && sorted(&a.routes) == sorted(&b.routes)
        && sorted(&a.neighbors) == sorted(&b.neighbors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::addr::Address;
    use crate::netlink::link::Link;
    use crate::netlink::neigh::Neighbour;
    use crate::netlink::route::Route;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn route(dst: Option<&str>, len: u8, gw: Option<&str>, proto: u8, oif: u32) -> Route {
        Route {
            ipv6: dst.or(gw).is_some_and(|s| s.contains(':')),
            dst: dst.map(ip),
            dst_len: len,
            gateway: gw.map(ip),
            source: None,
            scope: 0,
            protocol: proto,
            kind: RTN_UNICAST,
            table: TABLE_MAIN,
            oif: Some(oif),
            priority: None,
            mtu: Some(1400),
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            links: vec![Link {
                index: 2,
                name: "eth0".into(),
                kind: Some("veth".into()),
                mac: Some(vec![0x02, 0x42, 0xac, 0x11, 0, 2]),
                mtu: 1450,
                tx_queue_len: 0,
                flags: (libc::IFF_UP | libc::IFF_NOARP) as u32,
                parent: None,
                tun: None,
                alias: None,
                group: 0,
            }],
            addresses: vec![
                Address {
                    ifindex: 2,
                    addr: ip("10.0.0.2"),
                    prefix_len: 24,
                    scope: 0,
                    flags: 0,
                    broadcast: None,
                },
                Address {
                    ifindex: 2,
                    addr: ip("fd00::2"),
                    prefix_len: 64,
                    scope: 0,
                    flags: 0,
                    broadcast: None,
                },
                Address {
                    ifindex: 2,
                    addr: ip("fe80::1"),
                    prefix_len: 64,
                    scope: 253,
                    flags: 0,
                    broadcast: None,
                },
            ],
            routes: vec![
                route(Some("10.0.0.0"), 24, None, PROTO_KERNEL, 2),
                route(None, 0, Some("10.0.0.1"), 3, 2),
                route(None, 0, Some("fd00::1"), 3, 2),
                route(Some("192.168.7.0"), 24, Some("10.0.0.9"), 4, 2),
                route(None, 0, Some("10.9.9.9"), 3, 9),
            ],
            neighbours: vec![
                Neighbour {
                    ifindex: 2,
                    ip: ip("10.0.0.1"),
                    lladdr: Some(vec![2, 0, 0, 0, 0, 1]),
                    state: nud::REACHABLE,
                },
                Neighbour {
                    ifindex: 2,
                    ip: ip("10.0.0.50"),
                    lladdr: Some(vec![2, 0, 0, 0, 0, 0x50]),
                    state: nud::PERMANENT,
                },
                Neighbour {
                    ifindex: 2,
                    ip: ip("10.0.0.51"),
                    lladdr: Some(vec![2, 0, 0, 0, 0, 0x51]),
                    state: nud::REACHABLE,
                },
                Neighbour {
                    ifindex: 2,
                    ip: ip("fd00::1"),
                    lladdr: None,
                    state: nud::INCOMPLETE,
                },
            ],
        }
    }

    #[test]
    fn interfaces_carry_mac_mtu_addresses_and_noarp() {
        let g = describe(&snapshot(), &[2]);
        assert_eq!(g.interfaces.len(), 1);
        let i = &g.interfaces[0];
        assert_eq!(i.mac, Some(MacAddr::new([0x02, 0x42, 0xac, 0x11, 0, 2])));
        assert_eq!(i.mtu, 1450);
        assert!(i.noarp);
        let addrs: Vec<_> = i
            .addresses
            .iter()
            .map(|a| (a.address, a.prefix_len))
            .collect();
        assert_eq!(addrs, vec![(ip("10.0.0.2"), 24), (ip("fd00::2"), 64)]);
    }

    #[test]
    fn kernel_routes_and_other_devices_are_left_out() {
        let g = describe(&snapshot(), &[2]);
        let dsts: Vec<_> = g
            .routes
            .iter()
            .map(|r| (r.family.as_str(), r.dst.as_str()))
            .collect();
        assert_eq!(
            dsts,
            vec![
                ("inet", "default"),
                ("inet6", "default"),
                ("inet", "192.168.7.0/24")
            ]
        );
        assert!(
            g.routes
                .iter()
                .all(|r| r.mtu == Some(1400) && r.device == "eth0")
        );
    }

    #[test]
    fn neighbours_are_permanent_ones_and_the_resolved_gateway() {
        let g = describe(&snapshot(), &[2]);
        let ips: Vec<_> = g
            .neighbors
            .iter()
            .map(|n| (n.ip, n.state.as_str()))
            .collect();
        assert_eq!(
            ips,
            vec![
                (ip("10.0.0.1"), "reachable"),
                (ip("10.0.0.50"), "permanent")
            ]
        );
    }

    #[test]
    fn a_description_over_a_cap_is_named_with_its_numbers() {
        let mut g = describe(&snapshot(), &[2]);
        assert_eq!(over_cap(&g), None);
        let route = g.routes[0].clone();
        g.routes = vec![route; MAX_ROUTES];
        assert_eq!(over_cap(&g), None, "the cap itself fits");
        g.routes.push(g.routes[0].clone());
        assert_eq!(
            over_cap(&g).as_deref(),
            Some("the guest description has 1025 routes, over the cap of 1024 routes per sandbox")
        );
        let address = g.interfaces[0].addresses[0].clone();
        g.interfaces[0].addresses = vec![address; MAX_ADDRESSES + 1];
        assert!(over_cap(&g).is_some_and(|m| m.contains("1025 addresses")));
    }
}
