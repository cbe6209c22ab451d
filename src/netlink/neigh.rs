//! Neighbour (ARP / NDP) table dump.

use std::net::IpAddr;

use netlink_packet_core::Parseable;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};

use super::{Netlink, NlError};

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
        |payload| NeighbourMessage::parse(payload).map(parse_neighbour),
    )
}

/// The neighbour a dump message describes (None without a destination).
fn parse_neighbour(msg: NeighbourMessage) -> Option<Neighbour> {
    let mut ip = None;
    let mut lladdr = None;
    for attr in msg.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(IpAddr::V4(a)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => ip = Some(IpAddr::V6(a)),
            NeighbourAttribute::LinkLayerAddress(l) => lladdr = Some(l),
            _ => {}
        }
    }
    ip.map(|ip| Neighbour {
        ifindex: msg.header.ifindex,
        ip,
        lladdr,
        state: u16::from(msg.header.state),
    })
}
