//! A cloud-init network-config, version 2 (the netplan schema): one `ethernets` entry per
//! attached interface, matched by MAC and renamed to the interface's name, with its
//! addresses, MTU, routes (metric and MTU included) and the nameservers.

use std::net::IpAddr;

use super::yaml::{self, Node};
use super::{GuestNetwork, Rendered};
use crate::guest::GuestRoute;

fn route_node(r: &GuestRoute) -> Node {
    let to = match (r.dst.as_str(), r.family.as_str()) {
        ("default", "inet6") => "::/0".to_string(),
        ("default", _) => "0.0.0.0/0".to_string(),
        (dst, _) => dst.to_string(),
    };
    let mut entries = vec![("to".to_string(), Node::Str(to))];
    if let Some(gw) = r.gateway {
        entries.push(("via".into(), Node::Str(gw.to_string())));
    }
    if let Some(src) = r.source {
        entries.push(("from".into(), Node::Str(src.to_string())));
    }
    if r.gateway.is_none() && r.scope == "link" {
        entries.push(("scope".into(), Node::str("link")));
    }
    if let Some(metric) = r.metric {
        entries.push(("metric".into(), Node::Int(u64::from(metric))));
    }
    if let Some(mtu) = r.mtu {
        entries.push(("mtu".into(), Node::Int(u64::from(mtu))));
    }
    Node::Map(entries)
}

/// Render the network-config document. The nameservers go on the interface that holds the
/// default route (else the first one); permanent neighbour entries have no v2 equivalent
/// and are reported in the notes.
pub fn cloud_init(net: GuestNetwork<'_>) -> Rendered {
    let guest = net.guest;
    let dns_iface = guest
        .routes
        .iter()
        .find(|r| r.dst == "default")
        .map(|r| r.device.as_str())
        .or_else(|| guest.interfaces.first().map(|i| i.name.as_str()));
    let mut notes = Vec::new();
    let mut ethernets = Vec::new();
    for iface in &guest.interfaces {
        let mut e = vec![
            (
                "match".to_string(),
                Node::Map(vec![(
                    "macaddress".into(),
                    Node::str(crate::mac::text_or_empty(iface.mac)),
                )]),
            ),
            ("set-name".into(), Node::str(&iface.name)),
            ("mtu".into(), Node::Int(u64::from(iface.mtu))),
        ];
        let addresses: Vec<Node> = iface
            .addresses
            .iter()
            .map(|a| Node::Str(format!("{}/{}", a.address, a.prefix_len)))
            .collect();
        if !addresses.is_empty() {
            e.push(("addresses".into(), Node::List(addresses)));
        }
        let routes: Vec<Node> = guest
            .routes
            .iter()
            .filter(|r| r.device == iface.name)
            .map(route_node)
            .collect();
        if !routes.is_empty() {
            e.push(("routes".into(), Node::List(routes)));
        }
        if dns_iface == Some(iface.name.as_str()) && !net.dns.is_empty() {
            let servers = net.dns.iter().map(|d: &IpAddr| Node::Str(d.to_string()));
            e.push((
                "nameservers".into(),
                Node::Map(vec![("addresses".into(), Node::List(servers.collect()))]),
            ));
        }
        if iface.noarp {
            notes.push(format!(
                "{} is NOARP in the netns (the guest must not need ARP on it)",
                iface.name
            ));
        }
        ethernets.push((iface.name.clone(), Node::Map(e)));
    }
    for n in guest.neighbors.iter().filter(|n| n.state == "permanent") {
        notes.push(format!(
            "not in network-config: permanent neighbour {} lladdr {} dev {}",
            n.ip, n.mac, n.device
        ));
    }
    let doc = Node::Map(vec![
        ("version".into(), Node::Int(2)),
        ("ethernets".into(), Node::Map(ethernets)),
    ]);
    Rendered {
        text: yaml::to_string(&doc),
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::{GuestAddress, GuestConfig, GuestInterface, GuestNeighbor};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn route(family: &str, dst: &str, gw: Option<&str>, metric: Option<u32>) -> GuestRoute {
        GuestRoute {
            family: family.into(),
            dst: dst.into(),
            gateway: gw.map(ip),
            source: None,
            scope: if gw.is_some() { "universe" } else { "link" }.into(),
            device: "eth0".into(),
            mtu: None,
            metric,
        }
    }

    #[test]
    fn dual_stack_document() {
        let mut extra = route("inet", "192.168.7.0/24", Some("10.77.0.9"), Some(50));
        extra.mtu = Some(1400);
        let g = GuestConfig {
            interfaces: vec![GuestInterface {
                name: "eth0".into(),
                mac: "52:54:00:12:34:56".parse().ok(),
                mtu: 1450,
                addresses: vec![
                    GuestAddress {
                        family: "inet".into(),
                        address: ip("10.77.0.2"),
                        prefix_len: 24,
                    },
                    GuestAddress {
                        family: "inet6".into(),
                        address: ip("fd77::2"),
                        prefix_len: 64,
                    },
                ],
                noarp: false,
            }],
            routes: vec![
                route("inet", "default", Some("10.77.0.1"), None),
                route("inet6", "default", Some("fd77::1"), Some(1024)),
                extra,
                route("inet", "172.16.0.0/12", None, None),
            ],
            neighbors: vec![GuestNeighbor {
                family: "inet".into(),
                ip: ip("10.77.0.50"),
                mac: "02:00:00:00:00:50".parse().unwrap(),
                device: "eth0".into(),
                state: "permanent".into(),
            }],
        };
        let dns = [ip("10.77.0.53"), ip("fd77::53")];
        let r = cloud_init(GuestNetwork {
            guest: &g,
            dns: &dns,
        });
        let expected = r#"version: 2
ethernets:
  eth0:
    match:
      macaddress: "52:54:00:12:34:56"
    set-name: "eth0"
    mtu: 1450
    addresses:
      - "10.77.0.2/24"
      - "fd77::2/64"
    routes:
      - to: "0.0.0.0/0"
        via: "10.77.0.1"
      - to: "::/0"
        via: "fd77::1"
        metric: 1024
      - to: "192.168.7.0/24"
        via: "10.77.0.9"
        metric: 50
        mtu: 1400
      - to: "172.16.0.0/12"
        scope: "link"
    nameservers:
      addresses:
        - "10.77.0.53"
        - "fd77::53"
"#;
        assert_eq!(r.text, expected);
        assert_eq!(r.notes.len(), 1);
        assert!(r.notes[0].contains("10.77.0.50"));
    }

    #[test]
    fn no_interfaces_is_an_empty_document() {
        let g = GuestConfig::default();
        let r = cloud_init(GuestNetwork {
            guest: &g,
            dns: &[],
        });
        assert_eq!(r.text, "version: 2\nethernets: {}\n");
    }
}
