//! Route operations: dump and add.

use std::net::IpAddr;

use netlink_packet_core::{DecodeError, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{Netlink, NlError, attr};

/// RT_TABLE_MAIN.
pub const TABLE_MAIN: u32 = 254;
/// RTPROT_KERNEL: routes the kernel made itself (e.g. the prefix route of an address).
pub const PROTO_KERNEL: u8 = 2;

/// One route as read from a route dump.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Route {
    pub ipv6: bool,
    pub dst: Option<IpAddr>,
    pub dst_len: u8,
    pub gateway: Option<IpAddr>,
    pub source: Option<IpAddr>,
    pub scope: u8,
    pub protocol: u8,
    pub kind: u8,
    pub table: u32,
    pub oif: Option<u32>,
    pub priority: Option<u32>,
    pub mtu: Option<u32>,
}

/// RTA_* numbers of the attributes a `Route` keeps (<linux/rtnetlink.h>).
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_PREFSRC: u16 = 7;
const RTA_METRICS: u16 = 8;
const RTA_TABLE: u16 = 15;
/// RTAX_MTU inside RTA_METRICS.
const RTAX_MTU: u16 = 2;
/// Size of `struct rtmsg`, which precedes the attributes.
const RTMSG_LEN: usize = 12;

/// Decode one RTM_NEWROUTE payload, reading only the attributes a `Route` keeps; None for
/// families other than IPv4 and IPv6 (whose attributes are not read at all).
pub(crate) fn parse_route_payload(payload: &[u8]) -> Result<Option<Route>, DecodeError> {
    let header = RouteHeader::parse(payload)?;
    let ipv6 = match header.address_family {
        AddressFamily::Inet => false,
        AddressFamily::Inet6 => true,
        _ => return Ok(None),
    };
    let mut route = Route {
        ipv6,
        dst: None,
        dst_len: header.destination_prefix_length,
        gateway: None,
        source: None,
        scope: u8::from(header.scope),
        protocol: u8::from(header.protocol),
        kind: u8::from(header.kind),
        table: u32::from(header.table),
        oif: None,
        priority: None,
        mtu: None,
    };
    for nla in attr::each(payload.get(RTMSG_LEN..).unwrap_or_default()) {
        let (kind, value) = nla?;
        match kind {
            RTA_DST => route.dst = attr::ip_of(value),
            RTA_GATEWAY => route.gateway = attr::ip_of(value),
            RTA_PREFSRC => route.source = attr::ip_of(value),
            RTA_OIF => route.oif = attr::u32_of(value),
            RTA_PRIORITY => route.priority = attr::u32_of(value),
            RTA_TABLE => route.table = attr::u32_of(value).unwrap_or(route.table),
            RTA_METRICS => {
                for metric in attr::each(value) {
                    if let (RTAX_MTU, mtu) = metric? {
                        route.mtu = attr::u32_of(mtu);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Some(route))
}

/// Dump every IPv4 and IPv6 route of every table (one request).
pub fn dump(nl: &mut Netlink) -> Result<Vec<Route>, NlError> {
    nl.dump_with(
        RouteNetlinkMessage::GetRoute(RouteMessage::default()),
        libc::RTM_NEWROUTE,
        parse_route_payload,
    )
}

/// What a new route should look like.
#[derive(Debug, Clone, Default)]
pub struct NewRoute {
    pub dst: Option<(IpAddr, u8)>,
    pub gateway: Option<IpAddr>,
    pub oif: u32,
    pub mtu: Option<u32>,
    pub ipv6: bool,
}

/// Add a unicast route to the main table (protocol "boot", like `ip route add`).
pub fn add(nl: &mut Netlink, new: &NewRoute) -> Result<(), NlError> {
    let mut msg = RouteMessage::default();
    let header = &mut msg.header;
    header.address_family = if new.ipv6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    header.table = TABLE_MAIN as u8;
    header.protocol = RouteProtocol::Boot;
    header.kind = RouteType::Unicast;
    header.scope = if new.gateway.is_some() {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    if let Some((_, len)) = new.dst {
        header.destination_prefix_length = len;
    }
    if let Some((dst, _)) = new.dst {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst)));
    }
    if let Some(gw) = new.gateway {
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
    }
    msg.attributes.push(RouteAttribute::Oif(new.oif));
    if let Some(mtu) = new.mtu {
        msg.attributes
            .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
    }
    nl.request(
        RouteNetlinkMessage::NewRoute(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// The message that identifies (and, for a restore, recreates) `r` on device `oif`.
fn message_for(r: &Route, oif: u32) -> RouteMessage {
    let mut msg = RouteMessage::default();
    let header = &mut msg.header;
    header.address_family = if r.ipv6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    header.destination_prefix_length = r.dst_len;
    header.table = if r.table < 256 { r.table as u8 } else { 252 };
    header.protocol = RouteProtocol::from(r.protocol);
    header.scope = RouteScope::from(r.scope);
    header.kind = RouteType::from(r.kind);
    if r.table >= 256 {
        msg.attributes.push(RouteAttribute::Table(r.table));
    }
    if let Some(dst) = r.dst {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst)));
    }
    if let Some(gw) = r.gateway {
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
    }
    if let Some(src) = r.source {
        msg.attributes
            .push(RouteAttribute::PrefSource(RouteAddress::from(src)));
    }
    if let Some(p) = r.priority {
        msg.attributes.push(RouteAttribute::Priority(p));
    }
    msg.attributes.push(RouteAttribute::Oif(oif));
    msg
}

/// Delete route `r` (as a dump reported it) from device `oif`.
pub fn delete(nl: &mut Netlink, r: &Route, oif: u32) -> Result<(), NlError> {
    nl.request(RouteNetlinkMessage::DelRoute(message_for(r, oif)), 0)
}

/// Recreate route `r` exactly (protocol, scope, table, metric, MTU) on device `oif`.
pub fn restore(nl: &mut Netlink, r: &Route, oif: u32) -> Result<(), NlError> {
    new_route(nl, r, oif, NLM_F_CREATE | NLM_F_EXCL)
}

/// Put route `r` back exactly as recorded, replacing the route of the same destination,
/// table and metric (the kernel strips a preferred source that stops being an address).
pub fn replace(nl: &mut Netlink, r: &Route, oif: u32) -> Result<(), NlError> {
    new_route(nl, r, oif, NLM_F_CREATE | NLM_F_REPLACE)
}

fn new_route(nl: &mut Netlink, r: &Route, oif: u32, flags: u16) -> Result<(), NlError> {
    let mut msg = message_for(r, oif);
    if let Some(mtu) = r.mtu {
        msg.attributes
            .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
    }
    nl.request(RouteNetlinkMessage::NewRoute(msg), flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;
    use std::net::Ipv4Addr;

    #[test]
    fn a_route_payload_keeps_the_wanted_attributes() {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = 24;
        msg.header.table = 254;
        msg.header.kind = RouteType::Unicast;
        msg.attributes = vec![
            RouteAttribute::Destination(RouteAddress::Inet(Ipv4Addr::new(10, 1, 2, 0))),
            RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(10, 0, 0, 1))),
            RouteAttribute::Oif(3),
            RouteAttribute::Priority(100),
            // RTA_MARK (16) is not read.
            RouteAttribute::Mark(9),
        ];
        let mut bytes = vec![0u8; msg.buffer_len()];
        msg.emit(&mut bytes);
        let route = parse_route_payload(&bytes).expect("parse").expect("IPv4");
        assert!(!route.ipv6);
        assert_eq!(route.dst, Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 0))));
        assert_eq!(route.dst_len, 24);
        assert_eq!(route.gateway, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
        assert_eq!(route.oif, Some(3));
        assert_eq!(route.priority, Some(100));
        assert_eq!(route.table, 254);
        assert!(parse_route_payload(&bytes[..4]).is_err());
    }
}
