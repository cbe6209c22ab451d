//! Address operations: dump and add.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{Netlink, NlError};

/// One address as read from an address dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub scope: u8,
}

/// Dump every IPv4 and IPv6 address of the netns (one request).
pub fn dump(nl: &mut Netlink) -> Result<Vec<Address>, NlError> {
    let replies = nl.dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))?;
    let mut out = Vec::new();
    for reply in replies {
        let RouteNetlinkMessage::NewAddress(msg) = reply else {
            continue;
        };
        // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS
        // otherwise. Prefer IFA_LOCAL when present, as iproute2 does.
        let mut local = None;
        let mut address = None;
        for attr in &msg.attributes {
            match attr {
                AddressAttribute::Local(a) => local = Some(*a),
                AddressAttribute::Address(a) => address = Some(*a),
                _ => {}
            }
        }
        if let Some(addr) = local.or(address) {
            out.push(Address {
                ifindex: msg.header.index,
                addr,
                prefix_len: msg.header.prefix_len,
                scope: u8::from(msg.header.scope),
            });
        }
    }
    Ok(out)
}

/// Add an address to an interface. IPv6 addresses get IFA_F_NODAD so they are usable at once.
pub fn add(nl: &mut Netlink, ifindex: u32, addr: IpAddr, prefix_len: u8) -> Result<(), NlError> {
    let mut msg = AddressMessage::default();
    msg.header.index = ifindex;
    msg.header.prefix_len = prefix_len;
    msg.header.family = match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    if addr.is_ipv6() {
        msg.header.flags = AddressHeaderFlags::Nodad;
    }
    msg.attributes.push(AddressAttribute::Local(addr));
    msg.attributes.push(AddressAttribute::Address(addr));
    nl.request(
        RouteNetlinkMessage::NewAddress(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}
