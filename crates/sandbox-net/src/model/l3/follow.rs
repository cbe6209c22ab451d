//! Following the addresses of attached endpoints (what `watch` does under l3): an attach
//! routes the addresses an endpoint has then, once settled (see [`super::Settling`]); a
//! pod's addresses settle, appear and go afterwards. [`changes`] compares a sandbox's
//! journal with a scan: an address of a routed endpoint that has settled and is not routed
//! yet is to be routed; a routed one that is gone (or back with another prefix length,
//! which is another address to the kernel) is to be no longer. [`plan`] turns them into
//! journal work: the entries to append (the new address's proxy neighbour entry, host
//! route and removed local route, and the endpoint's IPv6 plumbing with its first IPv6
//! address), and the entries of an address that went: to undo (its proxy neighbour entry
//! and host route, which outlive it) or just to forget (its removed local route: the
//! address took what was left of it along, and putting the route back would leave a
//! local route for an address the pod no longer has).
//!
//! An address stays routed while it is on the endpoint, whatever its flags (it is not
//! taken back because the kernel runs duplicate address detection on it again). The IPv6
//! plumbing of an endpoint (the tap's IPv6 settings and [`super::GATEWAY_V6`], the
//! endpoint's IPv6 forwarding) and the netns-wide settings stay until the endpoint is
//! detached, as `remove-endpoint` leaves the netns-wide ones to detach. The tap itself is
//! never touched: the VMM holds its queues.

use std::net::IpAddr;

use super::guest::routed_through;
use super::{GATEWAY_V6, Routing, Settling, has_force_forwarding, host_route_of, routed_tap};
use crate::endpoint::{self, Class, Endpoint, is_link_local_v6};
use crate::journal::Entry;
use crate::netlink::addr::Address;
use crate::netlink::link::Link;
use crate::scan::Snapshot;
use crate::sysctl::{self, Knob, On};

/// An address of an attached endpoint that starts or stops being routed to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressChange {
    /// The endpoint, by its recorded name.
    pub endpoint: String,
    pub address: IpAddr,
    pub prefix_len: u8,
    /// True: routed from now on; false: gone from the endpoint, no longer routed.
    pub routed: bool,
}

impl AddressChange {
    /// "fd77::9/64 on eth0 routed" or "... no longer routed".
    pub fn describe(&self) -> String {
        let what = if self.routed {
            "routed"
        } else {
            "no longer routed"
        };
        format!(
            "{}/{} on {} {what}",
            self.address, self.prefix_len, self.endpoint
        )
    }
}

/// The journal work of following: positions in the journal of the entries to undo and of
/// those to drop without undoing, and the entries to append, in creation order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub undo: Vec<usize>,
    pub forget: Vec<usize>,
    pub add: Vec<Entry>,
}

/// The link of endpoint `e` in `snapshot`, while it is the one recorded: same ifindex,
/// name and kind (the ownership proof undo makes; a renamed or replaced endpoint is
/// `status` drift, not followed).
fn live<'a>(e: &Endpoint, snapshot: &'a Snapshot) -> Option<&'a Link> {
    snapshot
        .link(e.ifindex)
        .filter(|l| l.name == e.name && endpoint::classify(l) == Class::Endpoint(e.kind))
}

/// The address whose local route `journal` removed on `device` for `ip`.
fn cut_over<'a>(journal: &'a [Entry], device: &str, ip: IpAddr) -> Option<&'a Address> {
    journal.iter().find_map(|e| match e {
        Entry::RemovedLocalRoute {
            device: d, address, ..
        } if d == device && address.addr == ip => Some(address),
        _ => None,
    })
}

/// What following the addresses of `endpoints` (attached under l3 with `journal`) would
/// change, comparing the journal with `snapshot` (`State::address_changes` asks only for
/// an l3 attachment). Reads nothing: `watch` calls it on every pass.
pub fn changes(
    endpoints: &[Endpoint],
    journal: &[Entry],
    snapshot: &Snapshot,
) -> Vec<AddressChange> {
    let mut out = Vec::new();
    for e in endpoints {
        let Some((tap, _)) = routed_tap(e) else {
            continue;
        };
        let Some(link) = live(e, snapshot) else {
            continue;
        };
        let present: Vec<&Address> = snapshot
            .addresses_of(link.index)
            .filter(|a| !is_link_local_v6(&a.addr))
            .collect();
        let mut kept: Vec<IpAddr> = Vec::new();
        for ip in routed_through(journal, tap) {
            let cut = cut_over(journal, &e.name, ip);
            let here = present
                .iter()
                .any(|a| a.addr == ip && cut.is_none_or(|c| c.prefix_len == a.prefix_len));
            if here {
                kept.push(ip);
            } else {
                out.push(AddressChange {
                    endpoint: e.name.clone(),
                    address: ip,
                    prefix_len: cut.map_or(if ip.is_ipv6() { 128 } else { 32 }, |c| c.prefix_len),
                    routed: false,
                });
            }
        }
        for a in present {
            let planned = kept.contains(&a.addr)
                || out
                    .iter()
                    .any(|c| c.routed && c.endpoint == e.name && c.address == a.addr);
            if !planned && super::settling(snapshot, link.index, a) == Settling::Settled {
                out.push(AddressChange {
                    endpoint: e.name.clone(),
                    address: a.addr,
                    prefix_len: a.prefix_len,
                    routed: true,
                });
            }
        }
    }
    out
}

/// Whether `a` and `b` are entries for the same kernel object (whatever their values).
fn same_object(a: &Entry, b: &Entry) -> bool {
    match (a, b) {
        (
            Entry::Sysctl {
                device: d1,
                knob: k1,
                ..
            },
            Entry::Sysctl {
                device: d2,
                knob: k2,
                ..
            },
        ) => d1 == d2 && k1 == k2,
        (
            Entry::AddedAddress {
                device: d1,
                address: a1,
                ..
            },
            Entry::AddedAddress {
                device: d2,
                address: a2,
                ..
            },
        ) => d1 == d2 && a1.addr == a2.addr,
        (
            Entry::AddedRoute {
                device: d1,
                route: r1,
                ..
            },
            Entry::AddedRoute {
                device: d2,
                route: r2,
                ..
            },
        ) => d1 == d2 && r1.dst == r2.dst && r1.dst_len == r2.dst_len && r1.table == r2.table,
        (
            Entry::ProxyNeighbour {
                device: d1, ip: i1, ..
            },
            Entry::ProxyNeighbour {
                device: d2, ip: i2, ..
            },
        ) => d1 == d2 && i1 == i2,
        (
            Entry::RemovedLocalRoute {
                device: d1,
                address: a1,
                ..
            },
            Entry::RemovedLocalRoute {
                device: d2,
                address: a2,
                ..
            },
        ) => d1 == d2 && a1.addr == a2.addr,
        _ => false,
    }
}

/// The ifindex `journal` recorded for the tap `tap` (None: its creation was never
/// confirmed).
fn tap_index(journal: &[Entry], tap: &str) -> Option<u32> {
    journal.iter().find_map(|e| match e {
        Entry::Tap { name, ifindex, .. } if name == tap => *ifindex,
        _ => None,
    })
}

/// The journal work for `changes` (from [`changes`] on the same endpoints, journal and
/// snapshot). Reads the settings it records the original of, so it runs inside the
/// netns. Err: the endpoint and why its addresses can't be followed.
pub fn plan(
    endpoints: &[Endpoint],
    journal: &[Entry],
    snapshot: &Snapshot,
    changes: &[AddressChange],
) -> Result<Plan, (String, String)> {
    let mut plan = Plan::default();
    for e in endpoints {
        let mine: Vec<&AddressChange> = changes.iter().filter(|c| c.endpoint == e.name).collect();
        let Some((tap, _)) = routed_tap(e).filter(|_| !mine.is_empty()) else {
            continue;
        };
        for c in mine.iter().filter(|c| !c.routed) {
            for (i, entry) in journal.iter().enumerate() {
                match entry {
                    Entry::ProxyNeighbour { device, ip, .. }
                        if *device == e.name && *ip == c.address =>
                    {
                        plan.undo.push(i);
                    }
                    Entry::AddedRoute { device, route, .. }
                        if device == tap && host_route_of(route) == Some(c.address) =>
                    {
                        plan.undo.push(i);
                    }
                    Entry::RemovedLocalRoute {
                        device, address, ..
                    } if *device == e.name && address.addr == c.address => plan.forget.push(i),
                    _ => {}
                }
            }
        }
        let refuse = |reason: &str| (e.name.clone(), reason.to_string());
        let Some(link) = live(e, snapshot) else {
            return Err(refuse("is not the interface that was attached any more"));
        };
        let added: Vec<&Address> = mine
            .iter()
            .filter(|c| c.routed)
            .filter_map(|c| {
                snapshot
                    .addresses_of(link.index)
                    .find(|a| a.addr == c.address && a.prefix_len == c.prefix_len)
            })
            .collect();
        if added.is_empty() {
            continue;
        }
        let Some(tap_index) = tap_index(journal, tap) else {
            return Err(refuse(&format!(
                "its tap {tap} was never confirmed created"
            )));
        };
        let remaining: Vec<&Entry> = journal
            .iter()
            .enumerate()
            .filter(|(i, _)| !plan.undo.contains(i) && !plan.forget.contains(i))
            .map(|(_, x)| x)
            .collect();
        let has_ipv6 = remaining.iter().any(|x| {
            matches!(x, Entry::AddedAddress { device, address, .. }
                if device == tap && address.addr == IpAddr::V6(GATEWAY_V6))
        });
        let ipv6 = if added.iter().any(|a| a.addr.is_ipv6()) && !has_ipv6 {
            let at = On {
                name: tap,
                ifindex: tap_index,
            };
            let disabled = sysctl::read(Knob::Ipv6DisableIpv6, Some(at)).map_err(|err| {
                refuse(&format!(
                    "reading {}: {err}",
                    Knob::Ipv6DisableIpv6.name(Some(tap))
                ))
            })?;
            Some(disabled != 0)
        } else {
            None
        };
        let cut = remaining
            .iter()
            .filter_map(|x| match x {
                Entry::RemovedLocalRoute {
                    device, address, ..
                } if *device == e.name => Some(address.addr),
                _ => None,
            })
            .collect();
        let routing = Routing {
            snapshot,
            link,
            tap,
            tap_index: Some(tap_index),
            force_forwarding: has_force_forwarding(),
            cut,
        };
        let planned = routing
            .plan(&added, false, ipv6)
            .map_err(|reason| (e.name.clone(), reason))?;
        // What the journal holds already (plumbing the endpoint has) is not planned again;
        // netns-wide settings are settled later against every attachment of the netns.
        plan.add.extend(
            planned
                .into_iter()
                .filter(|x| x.netns_wide() || !remaining.iter().any(|held| same_object(held, x))),
        );
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::netlink::route::Route;
    use crate::state::State;

    fn link(index: u32, name: &str) -> Link {
        Link {
            flags: (libc::IFF_UP | libc::IFF_RUNNING) as u32,
            ..Link::test(index, name, Some("veth"))
        }
    }

    fn address(ifindex: u32, a: &str, prefix_len: u8, flags: u32) -> Address {
        Address {
            ifindex,
            addr: a.parse().unwrap(),
            prefix_len,
            scope: 0,
            flags,
            broadcast: None,
        }
    }

    fn local(ifindex: u32, a: &str) -> Route {
        let dst: IpAddr = a.parse().unwrap();
        Route {
            ipv6: dst.is_ipv6(),
            dst: Some(dst),
            dst_len: if dst.is_ipv6() { 128 } else { 32 },
            gateway: None,
            source: None,
            scope: 254,
            protocol: 2,
            kind: super::super::RTN_LOCAL,
            table: super::super::TABLE_LOCAL,
            oif: Some(ifindex),
            priority: None,
            mtu: None,
        }
    }

    /// An attached l3 state: eth0 (ifindex 2) routed through tap0_sn, with a host route
    /// and a removed local route for each of `routed`.
    fn state(routed: &[(&str, u8)]) -> State {
        let mut s: State = serde_json::from_value(serde_json::json!({
            "version": 1, "id": "f", "netns": "pod", "netns_path": "/run/netns/pod",
            "netns_id": {"dev": 1, "ino": 2}, "model": "l3", "phase": "attached",
            "endpoints": [], "journal": []
        }))
        .unwrap();
        let mut e = Endpoint::new(&link(2, "eth0"), crate::endpoint::EndpointKind::Veth, 1);
        e.backend = crate::endpoint::Backend::Tap {
            name: "tap0_sn".into(),
            mac: "02:aa:00:00:00:01".parse().ok(),
        };
        s.endpoints = vec![e];
        for (a, len) in routed {
            let ip: IpAddr = a.parse().unwrap();
            s.journal.push(Entry::AddedRoute {
                device: "tap0_sn".into(),
                ifindex: Some(5),
                route: super::super::host_route(ip),
            });
            s.journal.push(Entry::RemovedLocalRoute {
                device: "eth0".into(),
                ifindex: Some(2),
                address: address(2, a, *len, 0),
                route: local(2, a),
                sourced: Vec::new(),
            });
        }
        s
    }

    fn described(changes: &[AddressChange]) -> Vec<String> {
        changes.iter().map(AddressChange::describe).collect()
    }

    #[test]
    fn settled_addresses_are_routed_and_gone_ones_no_longer() {
        let s = state(&[("10.0.0.2", 24), ("fd00::2", 64)]);
        let snapshot = Snapshot {
            links: vec![link(2, "eth0")],
            addresses: vec![
                address(2, "10.0.0.2", 24, 0),
                // Back with another prefix length: another address.
                address(2, "fd00::2", 80, 0),
                address(2, "10.0.0.9", 24, 0),
                // Settled: not tentative, its local route is there.
                address(2, "fd00::9", 64, 0),
                // Tentative, past DAD but without its local route yet, failed: not yet.
                address(2, "fd00::a", 64, IFA_TENTATIVE),
                address(2, "fd00::b", 64, 0),
                address(2, "fd00::c", 64, IFA_TENTATIVE | IFA_DADFAILED),
                address(2, "fe80::5", 64, 0),
            ],
            routes: vec![
                local(2, "10.0.0.9"),
                local(2, "fd00::9"),
                local(2, "fd00::2"),
                local(2, "fe80::5"),
            ],
            ..Snapshot::default()
        };
        assert_eq!(
            described(&changes(&s.endpoints, &s.journal, &snapshot)),
            vec![
                "fd00::2/64 on eth0 no longer routed",
                "fd00::2/80 on eth0 routed",
                "10.0.0.9/24 on eth0 routed",
                "fd00::9/64 on eth0 routed",
            ]
        );
        // A renamed endpoint is not followed.
        let mut renamed = snapshot.clone();
        renamed.links[0].name = "eth9".into();
        assert!(changes(&s.endpoints, &s.journal, &renamed).is_empty());
        // Another model: nothing.
        let mut tcfilter = s.clone();
        tcfilter.model = Model::Tcfilter;
        assert!(tcfilter.address_changes(&snapshot).is_empty());
    }

    const IFA_TENTATIVE: u32 = super::super::IFA_F_TENTATIVE;
    const IFA_DADFAILED: u32 = super::super::IFA_F_DADFAILED;

    #[test]
    fn a_gone_address_has_its_entries_undone_and_its_local_route_forgotten() {
        let mut s = state(&[("10.0.0.2", 24), ("10.0.0.9", 24)]);
        s.journal.push(Entry::ProxyNeighbour {
            device: "eth0".into(),
            ifindex: Some(2),
            ip: "10.0.0.9".parse().unwrap(),
        });
        let snapshot = Snapshot {
            links: vec![link(2, "eth0")],
            addresses: vec![address(2, "10.0.0.2", 24, 0)],
            ..Snapshot::default()
        };
        let c = changes(&s.endpoints, &s.journal, &snapshot);
        assert_eq!(described(&c), vec!["10.0.0.9/24 on eth0 no longer routed"]);
        let p = plan(&s.endpoints, &s.journal, &snapshot, &c).unwrap();
        assert_eq!(
            p,
            Plan {
                undo: vec![2, 4],
                forget: vec![3],
                add: Vec::new()
            }
        );
    }
}
