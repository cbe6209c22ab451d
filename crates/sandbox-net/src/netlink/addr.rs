//! Address operations: dump and add.

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{DecodeError, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeader, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use serde::{Deserialize, Serialize};

use super::{Netlink, NlError, attr};

/// One address as read from an address dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub scope: u8,
    /// IFA_FLAGS (IFA_F_*): permanent, nodad, noprefixroute, ...
    #[serde(default)]
    pub flags: u32,
    #[serde(default)]
    pub broadcast: Option<Ipv4Addr>,
}

/// Dump every IPv4 and IPv6 address of the netns (one request).
pub fn dump(nl: &mut Netlink) -> Result<Vec<Address>, NlError> {
    nl.dump_with(
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        libc::RTM_NEWADDR,
        parse_address_payload,
    )
}

/// IFA_* numbers of the attributes an `Address` keeps (<linux/if_addr.h>); the label
/// (IFA_LABEL, any bytes a tenant likes) is not one of them.
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const IFA_FLAGS: u16 = 8;
/// Size of `struct ifaddrmsg`, which precedes the attributes.
const IFADDRMSG_LEN: usize = 8;

/// Decode one RTM_NEWADDR payload: the address it describes (None without one).
pub(crate) fn parse_address_payload(payload: &[u8]) -> Result<Option<Address>, DecodeError> {
    let header = AddressHeader::parse(payload)?;
    // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS
    // otherwise. Prefer IFA_LOCAL when present, as iproute2 does.
    let mut local = None;
    let mut address = None;
    let mut flags = u32::from(header.flags.bits());
    let mut broadcast = None;
    for nla in attr::each(payload.get(IFADDRMSG_LEN..).unwrap_or_default()) {
        let (kind, value) = nla?;
        match kind {
            IFA_LOCAL => local = attr::ip_of(value),
            IFA_ADDRESS => address = attr::ip_of(value),
            IFA_FLAGS => flags = attr::u32_of(value).unwrap_or(flags),
            IFA_BROADCAST => {
                broadcast = match attr::ip_of(value) {
                    Some(IpAddr::V4(b)) => Some(b),
                    _ => None,
                }
            }
            _ => {}
        }
    }
    Ok(local.or(address).map(|addr| Address {
        ifindex: header.index,
        addr,
        prefix_len: header.prefix_len,
        scope: u8::from(header.scope),
        flags,
        broadcast,
    }))
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

fn message_for(ifindex: u32, addr: IpAddr, prefix_len: u8) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.index = ifindex;
    msg.header.prefix_len = prefix_len;
    msg.header.family = match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.attributes.push(AddressAttribute::Local(addr));
    if addr.is_ipv4() {
        msg.attributes.push(AddressAttribute::Address(addr));
    }
    msg
}

/// Remove an address from an interface.
pub fn delete(nl: &mut Netlink, ifindex: u32, addr: IpAddr, prefix_len: u8) -> Result<(), NlError> {
    nl.request(
        RouteNetlinkMessage::DelAddress(message_for(ifindex, addr, prefix_len)),
        0,
    )
}

/// Re-add an address exactly as a dump reported it: scope, flags, broadcast.
pub fn restore(nl: &mut Netlink, ifindex: u32, a: &Address) -> Result<(), NlError> {
    let mut msg = message_for(ifindex, a.addr, a.prefix_len);
    msg.header.scope = AddressScope::from(a.scope);
    // Kernel-managed state bits are not ours to set.
    const SETTABLE: u32 = libc::IFA_F_NODAD
        | libc::IFA_F_HOMEADDRESS
        | libc::IFA_F_MANAGETEMPADDR
        | libc::IFA_F_NOPREFIXROUTE
        | libc::IFA_F_MCAUTOJOIN;
    msg.attributes
        .push(AddressAttribute::Flags(AddressFlags::from_bits_retain(
            a.flags & SETTABLE,
        )));
    if let Some(b) = a.broadcast {
        msg.attributes.push(AddressAttribute::Broadcast(b));
    }
    nl.request(
        RouteNetlinkMessage::NewAddress(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}
