//! The kernel `ip=` parameter (Documentation/admin-guide/nfs/nfsroot.rst):
//! `ip=<client>:<server>:<gateway>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1>`.
//! It configures one interface with one IPv4 address, a default gateway and up to two
//! IPv4 nameservers; everything else is reported in the notes.

use std::net::{IpAddr, Ipv4Addr};

use super::{GuestNetwork, Rendered};
use crate::guest::GuestInterface;
use crate::{Error, Result};

/// The netmask of an IPv4 prefix length (0..=32).
pub(super) fn netmask(prefix_len: u8) -> Ipv4Addr {
    let bits = u32::from(prefix_len.min(32));
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    Ipv4Addr::from(mask)
}

fn first_v4(iface: &GuestInterface) -> Option<(Ipv4Addr, u8)> {
    iface.addresses.iter().find_map(|a| match a.address {
        IpAddr::V4(v4) => Some((v4, a.prefix_len)),
        IpAddr::V6(_) => None,
    })
}

/// Render `ip=...` for the first interface with an IPv4 address. An attachment without any
/// IPv4 address can't be expressed: the error says why.
pub fn kernel_ip(net: GuestNetwork<'_>) -> Result<Rendered> {
    let guest = net.guest;
    let Some((iface, (client, prefix))) = guest
        .interfaces
        .iter()
        .find_map(|i| first_v4(i).map(|a| (i, a)))
    else {
        let why = if guest.interfaces.is_empty() {
            "the attachment has no interface"
        } else {
            "no attached interface has an IPv4 address (IPv6-only?), and the kernel ip= \
             parameter configures IPv4 only; use --format cloud-init"
        };
        return Err(Error::invalid("kernel ip= parameter", why));
    };
    let mut notes = Vec::new();
    let default_v4 = guest
        .routes
        .iter()
        .find(|r| r.family == "inet" && r.dst == "default" && r.device == iface.name);
    let gateway = default_v4.and_then(|r| match r.gateway {
        Some(IpAddr::V4(gw)) => Some(gw),
        _ => None,
    });
    if let Some(r) = default_v4 {
        if gateway.is_none() {
            notes.push(format!(
                "the IPv4 default route on {} has no gateway (a device route)",
                iface.name
            ));
        }
        if let Some(mtu) = r.mtu {
            notes.push(format!("the default route's MTU {mtu}"));
        }
    }
    for a in iface
        .addresses
        .iter()
        .filter(|a| a.address != IpAddr::V4(client))
    {
        notes.push(format!(
            "address {}/{} on {}",
            a.address, a.prefix_len, iface.name
        ));
    }
    for r in guest
        .routes
        .iter()
        .filter(|r| !(r.family == "inet" && r.dst == "default" && r.device == iface.name))
    {
        let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
        notes.push(format!(
            "route {} {}{via} dev {}",
            r.family, r.dst, r.device
        ));
    }
    for other in guest.interfaces.iter().filter(|i| i.name != iface.name) {
        if !other.addresses.is_empty() {
            notes.push(format!(
                "interface {} ({} address(es)): ip= configures one interface",
                other.name,
                other.addresses.len()
            ));
        }
    }
    if iface.mtu != 1500 {
        notes.push(format!(
            "MTU {} on {} (ip= has no MTU; give it through the NIC, e.g. QEMU's host_mtu, \
             or set it in the guest)",
            iface.mtu, iface.name
        ));
    }
    let permanent = guest
        .neighbors
        .iter()
        .filter(|n| n.state == "permanent")
        .count();
    if permanent > 0 {
        notes.push(format!("{permanent} permanent neighbour entr(y/ies)"));
    }
    let v4_dns: Vec<Ipv4Addr> = net
        .dns
        .iter()
        .filter_map(|d| match d {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
        .collect();
    for d in net.dns.iter().filter(|d| d.is_ipv6()) {
        notes.push(format!("nameserver {d} (ip= takes IPv4 nameservers only)"));
    }
    for d in v4_dns.iter().skip(2) {
        notes.push(format!("nameserver {d} (ip= takes two nameservers)"));
    }
    let mut text = format!(
        "ip={client}::{}:{}::{}:off",
        gateway.map(|g| g.to_string()).unwrap_or_default(),
        netmask(prefix),
        iface.name
    );
    for d in v4_dns.iter().take(2) {
        text.push_str(&format!(":{d}"));
    }
    Ok(Rendered {
        text,
        notes: notes
            .into_iter()
            .map(|n| format!("not in ip=: {n}"))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::{GuestAddress, GuestConfig, GuestInterface, GuestRoute};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn addr(s: &str, len: u8) -> GuestAddress {
        let address = ip(s);
        GuestAddress {
            family: if address.is_ipv4() { "inet" } else { "inet6" }.into(),
            address,
            prefix_len: len,
        }
    }

    fn default_route(gw: &str, dev: &str) -> GuestRoute {
        let gateway = ip(gw);
        GuestRoute {
            family: if gateway.is_ipv4() { "inet" } else { "inet6" }.into(),
            dst: "default".into(),
            gateway: Some(gateway),
            source: None,
            scope: "universe".into(),
            device: dev.into(),
            mtu: None,
            metric: None,
        }
    }

    fn iface(name: &str, addresses: Vec<GuestAddress>) -> GuestInterface {
        GuestInterface {
            name: name.into(),
            mac: "02:77:00:00:00:02".parse().ok(),
            mtu: 1500,
            addresses,
            noarp: false,
        }
    }

    fn dual_stack() -> GuestConfig {
        GuestConfig {
            interfaces: vec![iface(
                "eth0",
                vec![addr("10.77.0.2", 24), addr("fd77::2", 64)],
            )],
            routes: vec![
                default_route("10.77.0.1", "eth0"),
                default_route("fd77::1", "eth0"),
            ],
            neighbors: vec![],
        }
    }

    #[test]
    fn netmasks() {
        assert_eq!(netmask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(netmask(8), Ipv4Addr::new(255, 0, 0, 0));
        assert_eq!(netmask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(netmask(27), Ipv4Addr::new(255, 255, 255, 224));
        assert_eq!(netmask(32), Ipv4Addr::new(255, 255, 255, 255));
    }

    #[test]
    fn dual_stack_with_dns() {
        let g = dual_stack();
        let dns = [ip("10.77.0.53"), ip("fd77::53"), ip("1.1.1.1")];
        let r = kernel_ip(GuestNetwork {
            guest: &g,
            dns: &dns,
        })
        .unwrap();
        assert_eq!(
            r.text,
            "ip=10.77.0.2::10.77.0.1:255.255.255.0::eth0:off:10.77.0.53:1.1.1.1"
        );
        let notes = r.notes.join("\n");
        assert!(notes.contains("address fd77::2/64 on eth0"), "{notes}");
        assert!(notes.contains("route inet6 default via fd77::1"), "{notes}");
        assert!(notes.contains("nameserver fd77::53"), "{notes}");
    }

    #[test]
    fn no_gateway_and_no_dns() {
        let g = GuestConfig {
            interfaces: vec![iface("eth1", vec![addr("192.168.5.9", 16)])],
            routes: vec![],
            neighbors: vec![],
        };
        let r = kernel_ip(GuestNetwork {
            guest: &g,
            dns: &[],
        })
        .unwrap();
        assert_eq!(r.text, "ip=192.168.5.9:::255.255.0.0::eth1:off");
        assert!(r.notes.is_empty(), "{:?}", r.notes);
    }

    #[test]
    fn first_interface_with_ipv4_wins_and_others_are_noted() {
        let g = GuestConfig {
            interfaces: vec![
                iface("eth0", vec![addr("fd00::2", 64)]),
                iface("eth1", vec![addr("10.1.0.2", 24)]),
            ],
            routes: vec![default_route("10.1.0.1", "eth1")],
            neighbors: vec![],
        };
        let r = kernel_ip(GuestNetwork {
            guest: &g,
            dns: &[],
        })
        .unwrap();
        assert_eq!(r.text, "ip=10.1.0.2::10.1.0.1:255.255.255.0::eth1:off");
        assert!(r.notes.iter().any(|n| n.contains("interface eth0")));
    }

    #[test]
    fn ipv6_only_is_refused_with_a_reason() {
        let g = GuestConfig {
            interfaces: vec![iface("eth0", vec![addr("fd00::2", 64)])],
            routes: vec![default_route("fd00::1", "eth0")],
            neighbors: vec![],
        };
        let e = kernel_ip(GuestNetwork {
            guest: &g,
            dns: &[],
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("IPv6-only"), "{e}");
        assert!(e.contains("cloud-init"), "{e}");
    }

    #[test]
    fn mtu_is_noted() {
        let mut g = dual_stack();
        g.interfaces[0].mtu = 1450;
        let r = kernel_ip(GuestNetwork {
            guest: &g,
            dns: &[],
        })
        .unwrap();
        assert!(r.notes.iter().any(|n| n.contains("MTU 1450")));
    }
}
