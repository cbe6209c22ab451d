//! Neighbour (ARP / NDP) table dump.

use std::net::IpAddr;

use netlink_packet_core::DecodeError;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::neighbour::{NeighbourHeader, NeighbourMessage};

use super::{Netlink, NlError, attr};

/// NUD_* states from <linux/neighbour.h>.
pub mod nud {
    pub const INCOMPLETE: u16 = 0x01;
    pub const REACHABLE: u16 = 0x02;
    pub const STALE: u16 = 0x04;
    pub const DELAY: u16 = 0x08;
    pub const PROBE: u16 = 0x10;
    pub const FAILED: u16 = 0x20;
    pub const NOARP: u16 = 0x40;
    pub const PERMANENT: u16 = 0x80;
}

/// One neighbour entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub ifindex: u32,
    pub ip: IpAddr,
    pub lladdr: Option<Vec<u8>>,
    pub state: u16,
}

/// Dump the IPv4 and IPv6 neighbour tables (one request).
pub fn dump(nl: &mut Netlink) -> Result<Vec<Neighbour>, NlError> {
    nl.dump_with(
        RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
        libc::RTM_NEWNEIGH,
        parse_neighbour_payload,
    )
}

/// NDA_* numbers of the attributes a `Neighbour` keeps (<linux/neighbour.h>).
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// Size of `struct ndmsg`, which precedes the attributes.
const NDMSG_LEN: usize = 12;

/// Decode one RTM_NEWNEIGH payload: the neighbour it describes (None without an IPv4 or
/// IPv6 destination).
pub(crate) fn parse_neighbour_payload(payload: &[u8]) -> Result<Option<Neighbour>, DecodeError> {
    let header = NeighbourHeader::parse(payload)?;
    let mut ip = None;
    let mut lladdr = None;
    for nla in attr::each(payload.get(NDMSG_LEN..).unwrap_or_default()) {
        match nla? {
            (NDA_DST, value) => ip = attr::ip_of(value),
            (NDA_LLADDR, value) => lladdr = Some(value.to_vec()),
            _ => {}
        }
    }
    Ok(ip.map(|ip| Neighbour {
        ifindex: header.ifindex,
        ip,
        lladdr,
        state: u16::from(header.state),
    }))
}
