//! The l3 model: the pod's own network stack routes between each endpoint and a tap for
//! the guest, so whatever the pod installs in its netns (iptables/nftables REDIRECT or
//! TPROXY of a service mesh, network policy, conntrack, port forwarding) sees the guest's
//! traffic, which tcfilter and macvtap carry past it.
//!
//! The guest keeps the pod's addresses, every IPv4 and IPv6 address of every endpoint,
//! and nothing outside the pod sees a difference: the endpoint keeps its MAC and answers
//! ARP and neighbour solicitations for those addresses itself. Per endpoint (`eth0`, tap
//! `tapN_sn`), in journal order:
//!
//! 1. the tap (as under tcfilter), then settings of the tap, which go with it: IPv4
//!    `forwarding`, `proxy_arp` (the guest resolves every address the pod routes
//!    elsewhere, its gateway included, to the tap), `accept_local` (the guest's source
//!    addresses are addresses of the pod: without it the kernel drops them as martians),
//!    `rp_filter` 1 (the guest can only send from the addresses routed to it),
//!    `accept_redirects` 0 and `neigh.proxy_delay` 0 (answer at once, not up to 0.8 s
//!    later); IPv6 `accept_ra` 0 and `accept_redirects` 0 (the guest can't steer the pod's
//!    routes), `use_oif_addrs_only` 1 (the pod talks to the guest from the tap's own
//!    addresses, not from the guest's, which are still the pod's), `force_forwarding` 1;
//! 2. the tap's addresses: [`GATEWAY_V4`]/32 (what a REDIRECT of the guest's IPv4 traffic
//!    rewrites the destination to: the incoming interface's first address; and the pod's
//!    source toward the guest) and, with IPv6, [`GATEWAY_V6`]/64, the guest's IPv6
//!    gateway;
//! 3. settings of the endpoint, whose originals are restored on undo: IPv4 `forwarding`,
//!    `proxy_arp`, `neigh.proxy_delay` 0; IPv6 `force_forwarding`; a proxy neighbour entry
//!    per IPv6 address, and netns-wide `ipv6.conf.all.proxy_ndp` 1: a unicast neighbour
//!    solicitation (a peer confirming the pod is still there) or advertisement (the
//!    answer to the pod's own solicitation, which carries the pod's address as its
//!    source) is addressed to an address that is now routed on to the guest, and the
//!    kernel's forwarding path hands such a message to the local stack only when that
//!    netns-wide setting and a proxy entry say so (without it the neighbour is declared
//!    failed every few tens of seconds, and the pod can't resolve its own gateway);
//! 4. a host route (/32, /128, protocol 83) per address through the tap;
//! 5. the cut-over: each address's local route (table local) is removed, so the pod's stack
//!    routes its addresses to the guest instead of delivering them to itself.
//!
//! The guest's IPv4 configuration is the pod's, unchanged: the tap answers ARP for
//! everything the pod routes elsewhere, so the pod's own prefix, gateway and routes work
//! (and so does the kernel's `ip=` parameter, which refuses a gateway outside the
//! address's subnet, as a link-local one would be). IPv6 has no proxy NDP for a whole
//! prefix, so the guest gets each address as a /128, and every IPv6 route, and a route
//! for each address's prefix, via [`GATEWAY_V6`]. Its neighbour entries are the tap's
//! MAC for each gateway (see [`guest_view`]).
//!
//! Trade-offs:
//! - The addresses stay on the endpoint (only their local routes go), so the pod's own
//!   processes still have them as source addresses and the pod's ARP and neighbour
//!   solicitations look as before; but a packet *to* a pod address is the guest's. A
//!   process in the pod that must originate traffic from the pod address (a mesh proxy)
//!   gets the answers only through its own policy routing (the connection marks and `ip
//!   rule` a mesh installs for transparent proxying); a plain `bind()` to an IPv4 pod
//!   address needs `IP_FREEBIND` or `IP_TRANSPARENT` (the kernel asks the local table).
//!   Traffic the pod redirects to itself (REDIRECT, TPROXY) works as usual. The pod
//!   reaches the guest from the tap's addresses.
//! - The kernel re-adds an IPv4 address's local route when the endpoint goes down and up
//!   again (`ip link set eth0 down; up`): the pod then answers for that address itself;
//!   `status` reports it as drift. Removing the tap's [`GATEWAY_V4`] flushes the tap's
//!   IPv4 routes (the kernel does that to a device's last IPv4 address): drift too.
//! - An IPv6 address's local route is the kernel's own object, tied to the address;
//!   putting one back by hand would leave it behind when the address goes. So its undo
//!   removes the address and adds it back exactly (the kernel recreates the local and
//!   prefix routes), then puts back the preferred source of the endpoint's routes that
//!   used it (the kernel strips it when the address goes).
//! - `ipv6.conf.all.proxy_ndp` is netns-wide: attachments of one netns share it (the
//!   original value is copied from the state of the attachment that set it, see
//!   `ops::claims`), and it is put back only when no proxy entry of sandbox-net remains.
//!   Kernels without per-device `force_forwarding` (before 6.17) get netns-wide
//!   `ipv6.conf.all.forwarding`, shared the same way; writing it also sets every
//!   device's own IPv6 `forwarding` (the kernel's doing), so those devices stop accepting
//!   router advertisements while attached, and a device's own value set before the attach
//!   is not restored by it.
//! - IPv4 per-device `forwarding` makes the kernel turn LRO off on that device, and it
//!   stays off after the restore.
//! - An IPv6 REDIRECT rewrites the destination to an address of the incoming interface:
//!   the tap has only link-local ones, which kernels since 6.5 (and their stable updates)
//!   accept for a global destination; older ones drop the packet.

mod guest;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::endpoint::is_link_local_v6;
use crate::journal::Entry;
use crate::netlink::addr::Address;
use crate::netlink::link::Link;
use crate::netlink::pneigh::PROTOCOL;
use crate::netlink::route::{Route, TABLE_MAIN};
use crate::scan::Snapshot;
use crate::sysctl::{self, Knob, On};

pub use guest::guest_view;

/// The tap's IPv4 address: from 169.254.0.0/24, which RFC 3927 reserves (no host ever
/// configures it by itself), so it never shadows a gateway the pod uses (Calico pods route
/// through 169.254.1.1).
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 1);
/// The tap's IPv6 address, the guest's IPv6 gateway.
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// The next hop a guest behind the l3 model uses for `target`: [`GATEWAY_V6`] for IPv6;
/// none for IPv4 (the guest keeps the pod's prefix, and the tap answers ARP for it).
pub fn next_hop(target: IpAddr) -> Option<IpAddr> {
    target.is_ipv6().then_some(IpAddr::V6(GATEWAY_V6))
}

/// RT_TABLE_LOCAL.
const TABLE_LOCAL: u32 = 255;
/// RTN_UNICAST, RTN_LOCAL.
const RTN_UNICAST: u8 = 1;
const RTN_LOCAL: u8 = 2;
/// RT_SCOPE_LINK.
const SCOPE_LINK: u8 = 253;
/// IFA_F_NODAD, IFA_F_TENTATIVE.
const IFA_F_NODAD: u32 = 0x02;
const IFA_F_TENTATIVE: u32 = 0x40;

/// A setting of the device `device` (the tap, by name: its ifindex is known once it is
/// made; empty: netns-wide).
fn on(device: &str, knob: Knob, value: i32, original: Option<i32>) -> Entry {
    Entry::Sysctl {
        device: device.to_string(),
        ifindex: None,
        knob,
        value,
        original,
    }
}

/// Settings of the tap, which go with it (nothing to restore).
fn tap_settings(tap: &str, ipv6: bool, force_forwarding: bool) -> Result<Vec<Entry>, String> {
    let mut out = vec![
        on(tap, Knob::Ipv4Forwarding, 1, None),
        on(tap, Knob::Ipv4ProxyArp, 1, None),
        on(tap, Knob::Ipv4AcceptLocal, 1, None),
        on(tap, Knob::Ipv4RpFilter, 1, None),
        on(tap, Knob::Ipv4AcceptRedirects, 0, None),
        on(tap, Knob::Ipv4ProxyDelay, 0, None),
    ];
    if ipv6 {
        // A new device starts with the netns's default: when that disables IPv6, the tap
        // needs it back on to carry the endpoint's IPv6 addresses.
        let disabled = sysctl::read_default(Knob::Ipv6DisableIpv6)
            .map_err(|e| format!("reading net.ipv6.conf.default.disable_ipv6: {e}"))?;
        if disabled != 0 {
            out.push(on(tap, Knob::Ipv6DisableIpv6, 0, None));
        }
        out.push(on(tap, Knob::Ipv6AcceptRa, 0, None));
        out.push(on(tap, Knob::Ipv6AcceptRedirects, 0, None));
        out.push(on(tap, Knob::Ipv6UseOifAddrsOnly, 1, None));
        if force_forwarding {
            out.push(on(tap, Knob::Ipv6ForceForwarding, 1, None));
        }
    }
    Ok(out)
}

/// A setting of the endpoint `link`, with its value now as the original.
fn endpoint_setting(link: &Link, knob: Knob, value: i32) -> Result<Entry, String> {
    let at = On {
        name: &link.name,
        ifindex: link.index,
    };
    let original = sysctl::read(knob, Some(at))
        .map_err(|e| format!("reading {}: {e}", knob.name(Some(&link.name))))?;
    Ok(Entry::Sysctl {
        device: link.name.clone(),
        ifindex: Some(link.index),
        knob,
        value,
        original: Some(original),
    })
}

/// A netns-wide setting, with its value now as the original (`ops::claims::settle`
/// decides whether it stays in the journal).
fn netns_setting(knob: Knob, value: i32) -> Result<Entry, String> {
    let original =
        sysctl::read(knob, None).map_err(|e| format!("reading {}: {e}", knob.name(None)))?;
    Ok(on("", knob, value, Some(original)))
}

/// Whether this kernel routes IPv6 per device (`force_forwarding`, Linux 6.17).
fn has_force_forwarding() -> bool {
    !pretend_old_kernel() && sysctl::exists(Knob::Ipv6ForceForwarding)
}

/// Test hook (the `failpoints` feature): plan as on a kernel without `force_forwarding`.
#[cfg(feature = "failpoints")]
static PRETEND_OLD_KERNEL: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Plan as on a kernel without per-device IPv6 `force_forwarding` (a test hook, honoured
/// only with the `failpoints` feature; process-wide).
#[cfg(feature = "failpoints")]
pub fn pretend_old_kernel_for_tests(on: bool) {
    PRETEND_OLD_KERNEL.store(on, std::sync::atomic::Ordering::SeqCst);
}

fn pretend_old_kernel() -> bool {
    #[cfg(feature = "failpoints")]
    {
        PRETEND_OLD_KERNEL.load(std::sync::atomic::Ordering::SeqCst)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        false
    }
}

fn host_route(addr: IpAddr) -> Route {
    Route {
        ipv6: addr.is_ipv6(),
        dst: Some(addr),
        dst_len: if addr.is_ipv6() { 128 } else { 32 },
        gateway: None,
        source: None,
        scope: if addr.is_ipv6() { 0 } else { SCOPE_LINK },
        protocol: PROTOCOL,
        kind: RTN_UNICAST,
        table: TABLE_MAIN,
        oif: None,
        priority: None,
        mtu: None,
    }
}

fn tap_address(addr: IpAddr) -> Address {
    let (prefix_len, scope, flags) = match addr {
        IpAddr::V4(_) => (32, SCOPE_LINK, 0),
        IpAddr::V6(_) => (64, SCOPE_LINK, IFA_F_NODAD),
    };
    Address {
        ifindex: 0,
        addr,
        prefix_len,
        scope,
        flags,
        broadcast: None,
    }
}

/// The journal (in creation order) that routes `link`'s addresses to a new tap `tap`
/// (made by `tap_entry`).
pub fn entries(snapshot: &Snapshot, link: &Link, tap_entry: Entry) -> Result<Vec<Entry>, String> {
    let tap = tap_entry.device().to_string();
    let addresses: Vec<&Address> = snapshot
        .addresses_of(link.index)
        .filter(|a| !is_link_local_v6(&a.addr))
        .collect();
    if let Some(a) = addresses.iter().find(|a| a.flags & IFA_F_TENTATIVE != 0) {
        return Err(format!(
            "address {}/{} is tentative (duplicate address detection has not finished); attach it once it has",
            a.addr, a.prefix_len
        ));
    }
    let ipv6 = addresses.iter().any(|a| a.addr.is_ipv6());
    let force_forwarding = has_force_forwarding();
    let mut journal = vec![tap_entry];
    journal.extend(tap_settings(&tap, ipv6, force_forwarding)?);
    let tap_address = |addr| Entry::AddedAddress {
        device: tap.clone(),
        ifindex: None,
        address: tap_address(addr),
    };
    journal.push(tap_address(IpAddr::V4(GATEWAY_V4)));
    if ipv6 {
        journal.push(tap_address(IpAddr::V6(GATEWAY_V6)));
    }
    journal.push(endpoint_setting(link, Knob::Ipv4Forwarding, 1)?);
    journal.push(endpoint_setting(link, Knob::Ipv4ProxyArp, 1)?);
    journal.push(endpoint_setting(link, Knob::Ipv4ProxyDelay, 0)?);
    if ipv6 {
        if force_forwarding {
            journal.push(endpoint_setting(link, Knob::Ipv6ForceForwarding, 1)?);
        } else {
            journal.push(netns_setting(Knob::Ipv6Forwarding, 1)?);
        }
        for a in addresses.iter().filter(|a| a.addr.is_ipv6()) {
            journal.push(Entry::ProxyNeighbour {
                device: link.name.clone(),
                ifindex: Some(link.index),
                ip: a.addr,
            });
        }
        journal.push(netns_setting(Knob::Ipv6ProxyNdp, 1)?);
    }
    for a in &addresses {
        journal.push(Entry::AddedRoute {
            device: tap.clone(),
            ifindex: None,
            route: host_route(a.addr),
        });
    }
    for a in &addresses {
        let local = snapshot.routes.iter().find(|r| {
            r.table == TABLE_LOCAL
                && r.kind == RTN_LOCAL
                && r.oif == Some(link.index)
                && r.dst == Some(a.addr)
        });
        let Some(local) = local else {
            continue;
        };
        // The endpoint's routes whose preferred source is this IPv6 address: the kernel
        // strips it when the address goes (see the module doc), the undo puts it back.
        let sourced = snapshot
            .routes
            .iter()
            .filter(|r| a.addr.is_ipv6() && r.source == Some(a.addr))
            .filter(|r| r.oif == Some(link.index) && r.table != TABLE_LOCAL)
            .cloned()
            .collect();
        journal.push(Entry::RemovedLocalRoute {
            device: link.name.clone(),
            ifindex: Some(link.index),
            address: (*a).clone(),
            route: local.clone(),
            sourced,
        });
    }
    Ok(journal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_routes_and_tap_addresses() {
        let r = host_route("10.0.0.2".parse().unwrap());
        assert_eq!(
            (r.dst_len, r.scope, r.protocol, r.ipv6),
            (32, SCOPE_LINK, 83, false)
        );
        let r = host_route("fd00::2".parse().unwrap());
        assert_eq!((r.dst_len, r.scope, r.ipv6), (128, 0, true));
        let a = tap_address(IpAddr::V6(GATEWAY_V6));
        assert_eq!((a.prefix_len, a.flags), (64, IFA_F_NODAD));
        assert!(GATEWAY_V4.is_link_local());
    }
}
