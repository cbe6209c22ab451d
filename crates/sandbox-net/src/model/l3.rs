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
//! Which addresses, and when. Taking an address's local route out of table local is
//! acting on the kernel's own object, so an address is routed only once the kernel is done
//! with it ([`Settling`]): an IPv6 address shows in a dump while it is still tentative
//! (duplicate address detection, a second or two by default) and, even with `nodad`, a
//! moment before the kernel adds its local route; plan it then and there is no local route
//! to remove, the kernel adds one a moment later and the pod keeps answering for the
//! address itself. So an IPv6 address is routed once it is neither tentative nor
//! optimistic and its local route is there; one that failed detection (another host has
//! it) never is. Three ways were weighed: plan a removal applied once the route exists
//! (a journal entry whose apply waits on the kernel, for a time nobody bounds), wait in
//! attach (a bounded wait can't be enough for every address: a link that is down keeps
//! its addresses tentative), or leave the address out until it settles. It is the last,
//! with a short wait in front: attach and add-endpoint wait up to [`SETTLE_WAIT`] for an
//! endpoint's IPv6 addresses to settle (nothing when they have, the usual case; an address
//! on a link that is not running is not waited for), and what has not settled by then is
//! left out, of the journal and of the guest description alike (the guest is told exactly
//! the addresses that are routed to it: [`guest_view`] keeps those with a host route in
//! the journal, and no IPv6 route without an IPv6 address). `watch` routes it once it
//! settles.
//!
//! Following the addresses ([`follow`]). The set of routed addresses is not fixed at
//! attach: under `watch`, an address that settles or is added on an attached endpoint is
//! routed (its proxy neighbour entry, host route and removed local route appended to the
//! journal, and with the endpoint's first IPv6 address the IPv6 plumbing of steps 1 to 3),
//! and one that goes has its entries undone and dropped from the journal; the tap is never
//! touched (the VMM holds its queues). It is journalled like add-endpoint (new entries
//! written before the first change, rolled back on failure, every device proven ours). An
//! address that goes takes what was left of its local route along, so that entry is
//! dropped without an undo: putting the route back would leave a local route for an
//! address the pod no longer has. An IPv4 secondary address added while its primary is
//! routed gets no local route from the kernel (its preferred source, the primary, is not
//! local any more); its entry records the route the kernel would have given it, which
//! the undo puts back once the primary's is back (the undo puts the local routes of IPv4
//! secondaries after those of primaries, for the same reason).
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

pub mod follow;
mod guest;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::endpoint::{Backend, Endpoint, EndpointKind, is_link_local_v6};
use crate::journal::Entry;
use crate::mac::MacAddr;
use crate::netlink::Netlink;
use crate::netlink::addr::Address;
use crate::netlink::link::Link;
use crate::netlink::pneigh::PROTOCOL;
use crate::netlink::route::{Route, TABLE_MAIN};
use crate::scan::{self, ScanError, Snapshot};
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
/// RT_SCOPE_LINK, RT_SCOPE_HOST.
const SCOPE_LINK: u8 = 253;
const SCOPE_HOST: u8 = 254;
/// RTPROT_KERNEL.
const PROTO_KERNEL: u8 = 2;
/// IFA_F_SECONDARY (IPv4), IFA_F_NODAD, IFA_F_OPTIMISTIC, IFA_F_DADFAILED, IFA_F_TENTATIVE.
const IFA_F_SECONDARY: u32 = 0x01;
const IFA_F_NODAD: u32 = 0x02;
const IFA_F_OPTIMISTIC: u32 = 0x04;
const IFA_F_DADFAILED: u32 = 0x08;
const IFA_F_TENTATIVE: u32 = 0x40;

/// How long attach and add-endpoint wait for an endpoint's IPv6 addresses to settle
/// (see [`Settling`]): the kernel's duplicate address detection takes up to 1 s of
/// random delay, then `dad_transmits` × `retrans_time` (1 × 1 s) by default.
pub const SETTLE_WAIT: Duration = Duration::from_secs(3);

/// Whether an address of an endpoint can be routed to the guest now. Routing an address
/// takes its local route out of table local, so the kernel must be done with it: an IPv6
/// address shows in a dump before duplicate address detection is over and before the
/// kernel adds its local route (a moment later with `nodad`, a second or two later
/// without). An IPv4 address gets its local route at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settling {
    /// IPv4; IPv6 past duplicate address detection, with its local route in table local.
    Settled,
    /// IPv6 in duplicate address detection (tentative, optimistic included; on a link
    /// that is down it stays so until the link is up), or past it without its local route
    /// yet (or any more: the tenant removed it).
    Pending,
    /// IPv6 that failed duplicate address detection: another host has it. Never routed.
    Failed,
}

/// The local route (table local) of `addr` on the device at `ifindex`.
fn local_route(snapshot: &Snapshot, ifindex: u32, addr: IpAddr) -> Option<&Route> {
    snapshot.routes.iter().find(|r| {
        r.table == TABLE_LOCAL
            && r.kind == RTN_LOCAL
            && r.oif == Some(ifindex)
            && r.dst == Some(addr)
    })
}

/// Where address `a` of the device at `ifindex` stands (see [`Settling`]).
pub fn settling(snapshot: &Snapshot, ifindex: u32, a: &Address) -> Settling {
    if a.addr.is_ipv4() {
        Settling::Settled
    } else if a.flags & IFA_F_DADFAILED != 0 {
        Settling::Failed
    } else if a.flags & (IFA_F_TENTATIVE | IFA_F_OPTIMISTIC) != 0 {
        Settling::Pending
    } else if local_route(snapshot, ifindex, a.addr).is_some() {
        Settling::Settled
    } else {
        Settling::Pending
    }
}

/// The addresses of `link` the l3 model routes to the guest now: every one but IPv6
/// link-local ones, once settled.
fn routable<'a>(snapshot: &'a Snapshot, link: &Link) -> Vec<&'a Address> {
    snapshot
        .addresses_of(link.index)
        .filter(|a| !is_link_local_v6(&a.addr))
        .filter(|a| settling(snapshot, link.index, a) == Settling::Settled)
        .collect()
}

/// Whether the endpoint at `ifindex` has an IPv6 address that may still settle: one
/// pending on a link that is up and running (on one that is not, it stays tentative).
fn may_settle(snapshot: &Snapshot, ifindex: u32) -> bool {
    let running = (libc::IFF_UP | libc::IFF_RUNNING) as u32;
    snapshot
        .link(ifindex)
        .is_some_and(|l| l.flags & running == running)
        && snapshot
            .addresses_of(ifindex)
            .filter(|a| !is_link_local_v6(&a.addr))
            .any(|a| settling(snapshot, ifindex, a) == Settling::Pending)
}

/// For attach and add-endpoint under l3: while an endpoint at `ifindexes` has an IPv6
/// address that may still settle, scan again every 20 ms (4 dumps), for up to `wait`;
/// returns the last scan. Nothing is read again when every address has settled. What
/// has not settled by then is not routed (see [`entries`]); `watch` routes it once it
/// has.
pub fn await_settled(
    nl: &mut Netlink,
    mut snapshot: Snapshot,
    ifindexes: &[u32],
    wait: Duration,
) -> Result<Snapshot, ScanError> {
    let deadline = Instant::now() + wait;
    while ifindexes.iter().any(|&i| may_settle(&snapshot, i)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        snapshot = scan::scan(nl)?;
    }
    Ok(snapshot)
}

/// The tap and its MAC of an endpoint the l3 model routes: one of a kind sandbox-net
/// plumbs, given a tap of its own (the others are handed over as they are).
pub fn routed_tap(e: &Endpoint) -> Option<(&str, MacAddr)> {
    let plumbed = matches!(
        e.kind,
        EndpointKind::Veth | EndpointKind::Macvlan | EndpointKind::Vlan | EndpointKind::Ipvlan
    );
    match &e.backend {
        Backend::Tap {
            name,
            mac: Some(mac),
        } if plumbed => Some((name, *mac)),
        _ => None,
    }
}

/// The endpoints the l3 model routes (see [`routed_tap`]).
pub fn is_routed(e: &Endpoint) -> bool {
    routed_tap(e).is_some()
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

/// A netns-wide setting, with its value now as the original (`ops::claims::settle` decides
/// whether it stays in the journal).
fn netns_setting(knob: Knob, value: i32) -> Result<Entry, String> {
    let original =
        sysctl::read(knob, None).map_err(|e| format!("reading {}: {e}", knob.name(None)))?;
    Ok(Entry::Sysctl {
        device: String::new(),
        ifindex: None,
        knob,
        value,
        original: Some(original),
    })
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

/// The address a host route of the l3 model (see [`host_route`]) routes, if it is one.
fn host_route_of(route: &Route) -> Option<IpAddr> {
    let dst = route.dst?;
    let full = if dst.is_ipv6() { 128 } else { 32 };
    (route.protocol == PROTOCOL && route.table == TABLE_MAIN && route.dst_len == full)
        .then_some(dst)
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

/// The l3 plumbing of endpoint `link` routed through the tap `tap`: everything after the
/// tap itself.
struct Routing<'a> {
    snapshot: &'a Snapshot,
    link: &'a Link,
    tap: &'a str,
    /// The tap's ifindex when it exists already (an attached endpoint's addresses
    /// followed); None while it is only planned.
    tap_index: Option<u32>,
    force_forwarding: bool,
    /// The addresses of the endpoint whose local routes the journal removed already.
    cut: Vec<IpAddr>,
}

impl Routing<'_> {
    /// A setting of the tap, which goes with it.
    fn tap_setting(&self, knob: Knob, value: i32) -> Entry {
        Entry::Sysctl {
            device: self.tap.to_string(),
            ifindex: self.tap_index,
            knob,
            value,
            original: None,
        }
    }

    fn tap_address(&self, addr: IpAddr) -> Entry {
        Entry::AddedAddress {
            device: self.tap.to_string(),
            ifindex: self.tap_index,
            address: tap_address(addr),
        }
    }

    /// The entries that route `addresses` (settled ones), in the order of the module doc,
    /// with the plumbing each family needs once per endpoint: IPv4's when `ipv4`, IPv6's
    /// when `ipv6` is Some (whether the tap has IPv6 disabled).
    fn plan(
        &self,
        addresses: &[&Address],
        ipv4: bool,
        ipv6: Option<bool>,
    ) -> Result<Vec<Entry>, String> {
        let mut journal = Vec::new();
        if ipv4 {
            journal.extend([
                self.tap_setting(Knob::Ipv4Forwarding, 1),
                self.tap_setting(Knob::Ipv4ProxyArp, 1),
                self.tap_setting(Knob::Ipv4AcceptLocal, 1),
                self.tap_setting(Knob::Ipv4RpFilter, 1),
                self.tap_setting(Knob::Ipv4AcceptRedirects, 0),
                self.tap_setting(Knob::Ipv4ProxyDelay, 0),
            ]);
        }
        if let Some(disabled) = ipv6 {
            // The tap needs IPv6 on to carry the endpoint's IPv6 addresses.
            if disabled {
                journal.push(self.tap_setting(Knob::Ipv6DisableIpv6, 0));
            }
            journal.push(self.tap_setting(Knob::Ipv6AcceptRa, 0));
            journal.push(self.tap_setting(Knob::Ipv6AcceptRedirects, 0));
            journal.push(self.tap_setting(Knob::Ipv6UseOifAddrsOnly, 1));
            if self.force_forwarding {
                journal.push(self.tap_setting(Knob::Ipv6ForceForwarding, 1));
            }
        }
        if ipv4 {
            journal.push(self.tap_address(IpAddr::V4(GATEWAY_V4)));
        }
        if ipv6.is_some() {
            journal.push(self.tap_address(IpAddr::V6(GATEWAY_V6)));
        }
        let link = self.link;
        if ipv4 {
            journal.push(endpoint_setting(link, Knob::Ipv4Forwarding, 1)?);
            journal.push(endpoint_setting(link, Knob::Ipv4ProxyArp, 1)?);
            journal.push(endpoint_setting(link, Knob::Ipv4ProxyDelay, 0)?);
        }
        if ipv6.is_some() {
            journal.push(if self.force_forwarding {
                endpoint_setting(link, Knob::Ipv6ForceForwarding, 1)?
            } else {
                netns_setting(Knob::Ipv6Forwarding, 1)?
            });
        }
        let v6: Vec<IpAddr> = addresses
            .iter()
            .map(|a| a.addr)
            .filter(IpAddr::is_ipv6)
            .collect();
        for &ip in &v6 {
            journal.push(Entry::ProxyNeighbour {
                device: link.name.clone(),
                ifindex: Some(link.index),
                ip,
            });
        }
        if !v6.is_empty() {
            journal.push(netns_setting(Knob::Ipv6ProxyNdp, 1)?);
        }
        for a in addresses {
            journal.push(Entry::AddedRoute {
                device: self.tap.to_string(),
                ifindex: self.tap_index,
                route: host_route(a.addr),
            });
        }
        journal.extend(addresses.iter().filter_map(|a| self.removed_local_route(a)));
        Ok(journal)
    }

    /// The cut-over of address `a`: its local route removed (nothing when it has none,
    /// but see [`Routing::withheld_local_route`]).
    fn removed_local_route(&self, a: &Address) -> Option<Entry> {
        let link = self.link;
        let local = local_route(self.snapshot, link.index, a.addr)
            .cloned()
            .or_else(|| self.withheld_local_route(a))?;
        // The endpoint's routes whose preferred source is this IPv6 address: the kernel
        // strips it when the address goes (see the module doc), the undo puts it back.
        let sourced = self
            .snapshot
            .routes
            .iter()
            .filter(|r| a.addr.is_ipv6() && r.source == Some(a.addr))
            .filter(|r| r.oif == Some(link.index) && r.table != TABLE_LOCAL)
            .cloned()
            .collect();
        Some(Entry::RemovedLocalRoute {
            device: link.name.clone(),
            ifindex: Some(link.index),
            address: a.clone(),
            route: local,
            sourced,
        })
    }

    /// The local route the kernel would have given `a`, an IPv4 secondary address, when it
    /// gave none because the l3 model removed its primary's: the kernel makes it with the
    /// primary as preferred source, which is not local any more, so it refuses it. Its
    /// entry removes nothing (the route is not there) and its undo puts the route back
    /// after the primary's (see `journal`'s undo order), as the kernel would have had it.
    fn withheld_local_route(&self, a: &Address) -> Option<Route> {
        let IpAddr::V4(v4) = a.addr else {
            return None;
        };
        let mask = u32::MAX
            .checked_shl(32 - u32::from(a.prefix_len.min(32)))
            .unwrap_or(0);
        let primary = self.snapshot.addresses_of(self.link.index).find(|p| {
            matches!(p.addr, IpAddr::V4(p4) if u32::from(p4) & mask == u32::from(v4) & mask)
                && p.prefix_len == a.prefix_len
                && p.flags & IFA_F_SECONDARY == 0
        })?;
        let withheld = a.flags & IFA_F_SECONDARY != 0 && self.cut.contains(&primary.addr);
        withheld.then_some(Route {
            ipv6: false,
            dst: Some(a.addr),
            dst_len: 32,
            gateway: None,
            source: Some(primary.addr),
            scope: SCOPE_HOST,
            protocol: PROTO_KERNEL,
            kind: RTN_LOCAL,
            table: TABLE_LOCAL,
            oif: Some(self.link.index),
            priority: None,
            mtu: None,
        })
    }
}

/// The journal (in creation order) that routes `link`'s settled addresses to a new tap
/// (made by `tap_entry`). An address that has not settled (see [`Settling`]) is left out,
/// and so is the IPv6 plumbing while no IPv6 address is routed: `watch` adds them once it
/// settles (see [`follow`]).
pub fn entries(snapshot: &Snapshot, link: &Link, tap_entry: Entry) -> Result<Vec<Entry>, String> {
    for a in snapshot
        .addresses_of(link.index)
        .filter(|a| !is_link_local_v6(&a.addr))
    {
        match settling(snapshot, link.index, a) {
            Settling::Settled => {}
            Settling::Pending => tracing::info!(interface = %link.name, address = %a.addr,
                "not routed to the guest yet: it has not settled (duplicate address detection, or no local route); watch routes it once it has"),
            Settling::Failed => tracing::warn!(interface = %link.name, address = %a.addr,
                "not routed to the guest: it failed duplicate address detection (another host has it)"),
        }
    }
    let addresses = routable(snapshot, link);
    let ipv6 = if addresses.iter().any(|a| a.addr.is_ipv6()) {
        // A new device starts with the netns's default.
        let disabled = sysctl::read_default(Knob::Ipv6DisableIpv6)
            .map_err(|e| format!("reading net.ipv6.conf.default.disable_ipv6: {e}"))?;
        Some(disabled != 0)
    } else {
        None
    };
    let tap = tap_entry.device().to_string();
    let routing = Routing {
        snapshot,
        link,
        tap: &tap,
        tap_index: None,
        force_forwarding: has_force_forwarding(),
        cut: Vec::new(),
    };
    let mut journal = vec![tap_entry];
    journal.extend(routing.plan(&addresses, true, ipv6)?);
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
