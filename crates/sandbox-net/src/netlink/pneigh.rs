//! Proxy neighbour entries (`ip neigh add proxy ADDR dev DEV`): the addresses a device
//! answers neighbour solicitations (NDP) for on behalf of another. sandbox-net marks its
//! own with a protocol number ([`PROTOCOL`]), so an undo can tell whether another
//! attachment of the same netns still relies on the netns-wide proxy setting.

use std::net::IpAddr;

use netlink_packet_core::{DecodeError, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourHeader, NeighbourMessage,
};
use netlink_packet_route::route::RouteProtocol;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{Netlink, NlError, attr};

/// The protocol sandbox-net gives the proxy entries and routes it adds (`proto 83` in
/// iproute2's output; unassigned in iproute2's `rt_protos`).
pub const PROTOCOL: u8 = 83;

/// One proxy neighbour entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyEntry {
    pub ifindex: u32,
    pub ip: IpAddr,
    /// NDA_PROTOCOL, when the entry has one.
    pub protocol: Option<u8>,
}

/// NDA_* numbers of the attributes read (<linux/neighbour.h>).
const NDA_DST: u16 = 1;
const NDA_PROTOCOL: u16 = 12;
/// Size of `struct ndmsg`, which precedes the attributes.
const NDMSG_LEN: usize = 12;

/// Whether a neighbour message is a proxy entry's (NTF_PROXY in its header).
pub(crate) fn is_proxy(payload: &[u8]) -> bool {
    payload
        .get(10)
        .is_some_and(|flags| flags & NeighbourFlags::Proxy.bits() != 0)
}

/// Decode one RTM_NEWNEIGH payload of a proxy dump: the entry (None for a message that
/// is not a proxy entry's, or has no address).
pub(crate) fn parse(payload: &[u8]) -> Result<Option<ProxyEntry>, DecodeError> {
    let header = NeighbourHeader::parse(payload)?;
    if !header.flags.contains(NeighbourFlags::Proxy) {
        return Ok(None);
    }
    let mut ip = None;
    let mut protocol = None;
    for nla in attr::each(payload.get(NDMSG_LEN..).unwrap_or_default()) {
        match nla? {
            (NDA_DST, value) => ip = attr::ip_of(value),
            (NDA_PROTOCOL, value) => protocol = attr::u8_of(value),
            _ => {}
        }
    }
    Ok(ip.map(|ip| ProxyEntry {
        ifindex: header.ifindex,
        ip,
        protocol,
    }))
}

fn message(ifindex: u32, ip: IpAddr) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.ifindex = ifindex;
    msg.header.flags = NeighbourFlags::Proxy;
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::from(ip)));
    msg
}

/// Every proxy entry of both families (one request).
pub fn dump(nl: &mut Netlink) -> Result<Vec<ProxyEntry>, NlError> {
    let mut request = NeighbourMessage::default();
    request.header.flags = NeighbourFlags::Proxy;
    nl.dump_with(
        RouteNetlinkMessage::GetNeighbour(request),
        libc::RTM_NEWNEIGH,
        parse,
    )
}

/// Whether `ip` has a proxy entry on `ifindex` (one request).
pub fn exists(nl: &mut Netlink, ifindex: u32, ip: IpAddr) -> Result<bool, NlError> {
    match nl.get_with(
        RouteNetlinkMessage::GetNeighbour(message(ifindex, ip)),
        libc::RTM_NEWNEIGH,
        parse,
    ) {
        Ok(found) => Ok(found.is_some()),
        Err(e) if e.errno == libc::ENOENT => Ok(false),
        Err(e) => Err(e),
    }
}

/// Add a proxy entry for `ip` on `ifindex`, marked with [`PROTOCOL`]. The kernel creates
/// or updates without reporting which: ask [`exists`] first.
pub fn add(nl: &mut Netlink, ifindex: u32, ip: IpAddr) -> Result<(), NlError> {
    let mut msg = message(ifindex, ip);
    msg.attributes
        .push(NeighbourAttribute::Protocol(RouteProtocol::from(PROTOCOL)));
    nl.request(
        RouteNetlinkMessage::NewNeighbour(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// Remove the proxy entry for `ip` on `ifindex` (ENOENT when there is none).
pub fn delete(nl: &mut Netlink, ifindex: u32, ip: IpAddr) -> Result<(), NlError> {
    nl.request(RouteNetlinkMessage::DelNeighbour(message(ifindex, ip)), 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    #[test]
    fn a_proxy_answer_keeps_its_address_and_protocol() {
        let mut msg = message(4, "fd77::2".parse().unwrap());
        msg.attributes
            .push(NeighbourAttribute::Protocol(RouteProtocol::from(PROTOCOL)));
        let mut bytes = vec![0u8; msg.buffer_len()];
        msg.emit(&mut bytes);
        assert!(is_proxy(&bytes));
        let entry = parse(&bytes).unwrap().unwrap();
        assert_eq!(entry.ifindex, 4);
        assert_eq!(entry.ip, "fd77::2".parse::<IpAddr>().unwrap());
        assert_eq!(entry.protocol, Some(PROTOCOL));
        // An ordinary neighbour (no NTF_PROXY) is not a proxy entry.
        msg.header.flags = NeighbourFlags::empty();
        let mut bytes = vec![0u8; msg.buffer_len()];
        msg.emit(&mut bytes);
        assert_eq!(parse(&bytes).unwrap(), None);
        assert!(!is_proxy(&bytes));
        assert!(parse(&bytes[..4]).is_err());
    }
}
