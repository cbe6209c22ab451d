//! What the guest is told under l3 (see the module doc of [`super`]).

use std::net::IpAddr;

use super::{GATEWAY_V6, host_route_of, routed_tap};
use crate::endpoint::Endpoint;
use crate::guest::{GuestConfig, GuestNeighbor, GuestRoute};
use crate::journal::Entry;

/// The addresses `journal` routes through the tap `tap` (its host routes).
pub(super) fn routed_through<'a>(
    journal: &'a [Entry],
    tap: &'a str,
) -> impl Iterator<Item = IpAddr> + 'a {
    journal.iter().filter_map(move |e| match e {
        Entry::AddedRoute { device, route, .. } if device == tap => host_route_of(route),
        _ => None,
    })
}

/// The network prefix of `addr`/`len`, as "ADDR/LEN".
fn prefix(addr: IpAddr, len: u8) -> String {
    let net = match addr {
        IpAddr::V4(a) => {
            let bits = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            IpAddr::from((u32::from(a) & bits).to_be_bytes())
        }
        IpAddr::V6(a) => {
            let bits = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            IpAddr::from((u128::from(a) & bits).to_be_bytes())
        }
    };
    format!("{net}/{len}")
}

/// The guest description of a pod's network, as the guest sees it behind the l3 model's
/// taps: for each routed endpoint, the addresses `journal` routes to it (an address that
/// has not settled is not, yet); IPv4 as in the pod (the tap answers ARP for whatever
/// the pod routes elsewhere); each IPv6 address as a /128, with every IPv6 route, and a
/// route for each address's prefix, via [`GATEWAY_V6`] (no IPv6 route without an IPv6
/// address); no NOARP; and, as neighbours, the tap's MAC for each IPv4 gateway and for
/// [`GATEWAY_V6`] (the pod's own neighbours are behind the tap, never on the guest's
/// link).
pub fn guest_view(
    mut config: GuestConfig,
    endpoints: &[Endpoint],
    journal: &[Entry],
) -> GuestConfig {
    for e in endpoints {
        let Some((tap, tap_mac)) = routed_tap(e) else {
            continue;
        };
        let Some(iface) = config.interfaces.iter_mut().find(|i| i.name == e.name) else {
            continue;
        };
        let routed: Vec<IpAddr> = routed_through(journal, tap).collect();
        iface.addresses.retain(|a| routed.contains(&a.address));
        iface.noarp = false;
        let mut prefixes = Vec::new();
        for a in iface.addresses.iter_mut().filter(|a| a.address.is_ipv6()) {
            let p = prefix(a.address, a.prefix_len);
            if a.prefix_len < 128 && !prefixes.contains(&p) {
                prefixes.push(p);
            }
            a.prefix_len = 128;
        }
        let ipv6 = iface.addresses.iter().any(|a| a.address.is_ipv6());
        if !ipv6 {
            config
                .routes
                .retain(|r| !(r.device == e.name && r.family == "inet6"));
        }
        let mut gateways_v4 = Vec::new();
        for r in config.routes.iter_mut().filter(|r| r.device == e.name) {
            if r.family == "inet6" {
                r.gateway = Some(IpAddr::V6(GATEWAY_V6));
                r.scope = "universe".into();
            } else if let Some(gw) = r.gateway.filter(|g| !gateways_v4.contains(g)) {
                gateways_v4.push(gw);
            }
        }
        for dst in prefixes {
            if !config
                .routes
                .iter()
                .any(|r| r.device == e.name && r.family == "inet6" && r.dst == dst)
            {
                config.routes.push(GuestRoute {
                    family: "inet6".into(),
                    dst,
                    gateway: Some(IpAddr::V6(GATEWAY_V6)),
                    source: None,
                    scope: "universe".into(),
                    device: e.name.clone(),
                    mtu: None,
                    metric: None,
                });
            }
        }
        config.neighbors.retain(|n| n.device != e.name);
        let ipv6_gateway = ipv6.then_some(IpAddr::V6(GATEWAY_V6));
        for ip in gateways_v4.into_iter().chain(ipv6_gateway) {
            config.neighbors.push(GuestNeighbor {
                family: if ip.is_ipv4() { "inet" } else { "inet6" }.into(),
                ip,
                mac: tap_mac,
                device: e.name.clone(),
                state: "permanent".into(),
            });
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{Backend, EndpointKind};
    use crate::guest::{GuestAddress, GuestInterface};

    fn route(family: &str, dst: &str, gw: Option<&str>, device: &str) -> GuestRoute {
        GuestRoute {
            family: family.into(),
            dst: dst.into(),
            gateway: gw.map(|g| g.parse().unwrap()),
            source: None,
            scope: "universe".into(),
            device: device.into(),
            mtu: Some(1400),
            metric: None,
        }
    }

    #[test]
    fn ipv6_goes_through_the_link_local_gateway_and_ipv4_stays() {
        let address = |a: &str, len| GuestAddress {
            family: if a.contains(':') { "inet6" } else { "inet" }.into(),
            address: a.parse().unwrap(),
            prefix_len: len,
        };
        let config = GuestConfig {
            interfaces: vec![GuestInterface {
                name: "eth0".into(),
                mac: "02:00:00:00:00:02".parse().ok(),
                mtu: 1500,
                addresses: vec![address("10.0.0.2", 24), address("fd00:1::2", 64)],
                noarp: true,
            }],
            routes: vec![
                route("inet", "default", Some("10.0.0.1"), "eth0"),
                route("inet6", "default", Some("fd00:1::1"), "eth0"),
                route("inet6", "fd99::/64", Some("fe80::9"), "eth0"),
            ],
            neighbors: vec![GuestNeighbor {
                family: "inet".into(),
                ip: "10.0.0.1".parse().unwrap(),
                mac: "02:00:00:00:00:01".parse().unwrap(),
                device: "eth0".into(),
                state: "permanent".into(),
            }],
        };
        let mut ep = Endpoint {
            name: "eth0".into(),
            kind: EndpointKind::Veth,
            ifindex: 2,
            mac: "02:00:00:00:00:02".parse().ok(),
            mtu: 1500,
            queues: 1,
            backend: Backend::Tap {
                name: "tap0_sn".into(),
                mac: "02:aa:00:00:00:01".parse().ok(),
            },
            ifb: None,
        };
        let journal: Vec<Entry> = ["10.0.0.2", "fd00:1::2"]
            .iter()
            .map(|a| Entry::AddedRoute {
                device: "tap0_sn".into(),
                ifindex: Some(5),
                route: super::super::host_route(a.parse().unwrap()),
            })
            .collect();
        let view = guest_view(config.clone(), std::slice::from_ref(&ep), &journal);
        let iface = &view.interfaces[0];
        assert!(!iface.noarp);
        assert_eq!(iface.addresses[0], address("10.0.0.2", 24));
        assert_eq!(iface.addresses[1], address("fd00:1::2", 128));
        let described: Vec<String> = view
            .routes
            .iter()
            .map(|r| format!("{} via {:?}", r.dst, r.gateway))
            .collect();
        assert_eq!(
            described,
            vec![
                "default via Some(10.0.0.1)",
                "default via Some(fe80::1)",
                "fd99::/64 via Some(fe80::1)",
                "fd00:1::/64 via Some(fe80::1)",
            ]
        );
        let neighbours: Vec<(String, String)> = view
            .neighbors
            .iter()
            .map(|n| (n.ip.to_string(), n.mac.to_string()))
            .collect();
        assert_eq!(
            neighbours,
            vec![
                ("10.0.0.1".to_string(), "02:aa:00:00:00:01".to_string()),
                ("fe80::1".into(), "02:aa:00:00:00:01".into()),
            ]
        );
        // An address not routed yet (it has not settled) is not described, and without an
        // IPv6 address no IPv6 route is.
        let view = guest_view(config.clone(), std::slice::from_ref(&ep), &journal[..1]);
        assert_eq!(view.interfaces[0].addresses, vec![address("10.0.0.2", 24)]);
        assert!(view.routes.iter().all(|r| r.family == "inet"), "{view:?}");
        assert!(
            view.neighbors.iter().all(|n| n.family == "inet"),
            "{view:?}"
        );
        // An endpoint handed over as it is (a tap) keeps its description.
        ep.kind = EndpointKind::Tap;
        assert_eq!(guest_view(config.clone(), &[ep], &[]), config);
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefix("fd00:1::2".parse().unwrap(), 64), "fd00:1::/64");
        assert_eq!(prefix("10.1.2.3".parse().unwrap(), 16), "10.1.0.0/16");
        assert_eq!(prefix("10.1.2.3".parse().unwrap(), 0), "0.0.0.0/0");
    }
}
