//! Link operations: dump, change MTU/state, delete, and veth creation for scratch networks.

use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{DecodeError, NLM_F_CREATE, NLM_F_EXCL, ParseableParametrized};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVtap, InfoTun, InfoVeth, LinkAttribute, LinkExtentMask, LinkFlags,
    LinkHeader, LinkInfo, LinkMessage, MacVtapMode,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use serde::{Deserialize, Serialize};

use super::{Netlink, NlError, wanted_attributes};

/// What the kernel says about a tun/tap device (IFLA_INFO_DATA of kind "tun").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TunDetails {
    /// true for a tap (IFF_TAP), false for a tun (IFF_TUN).
    pub tap: bool,
    pub pi: bool,
    pub vnet_hdr: bool,
    pub persist: bool,
    pub multi_queue: bool,
    pub num_queues: u32,
}

/// One network interface as read from a link dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// IFLA_INFO_KIND ("veth", "macvlan", "tun", ...); None for devices without one
    /// (physical NICs, loopback).
    pub kind: Option<String>,
    pub mac: Option<Vec<u8>>,
    pub mtu: u32,
    pub tx_queue_len: u32,
    pub flags: u32,
    /// IFLA_LINK: the parent or peer ifindex, when the kernel reports one.
    pub parent: Option<u32>,
    pub tun: Option<TunDetails>,
    pub alias: Option<String>,
    /// IFLA_GROUP (0 is the default group).
    pub group: u32,
}

impl Link {
    pub fn is_loopback(&self) -> bool {
        self.flags & libc::IFF_LOOPBACK as u32 != 0
    }
    pub fn is_up(&self) -> bool {
        self.flags & libc::IFF_UP as u32 != 0
    }
    pub fn is_noarp(&self) -> bool {
        self.flags & libc::IFF_NOARP as u32 != 0
    }
}

fn info_kind_name(kind: &InfoKind) -> String {
    kind.to_string()
}

fn parse_tun(data: &[InfoTun]) -> TunDetails {
    // IFLA_TUN_* attribute numbers from <linux/if_link.h>.
    const TYPE: u16 = 3;
    const PI: u16 = 4;
    const VNET_HDR: u16 = 5;
    const PERSIST: u16 = 6;
    const MULTI_QUEUE: u16 = 7;
    const NUM_QUEUES: u16 = 8;
    let mut out = TunDetails::default();
    for attr in data {
        let InfoTun::Other(nla) = attr else { continue };
        let mut value = vec![0u8; netlink_packet_core::Nla::value_len(nla)];
        netlink_packet_core::Nla::emit_value(nla, &mut value);
        let byte = value.first().copied().unwrap_or(0);
        match netlink_packet_core::Nla::kind(nla) {
            TYPE => out.tap = byte == libc::IFF_TAP as u8,
            PI => out.pi = byte != 0,
            VNET_HDR => out.vnet_hdr = byte != 0,
            PERSIST => out.persist = byte != 0,
            MULTI_QUEUE => out.multi_queue = byte != 0,
            NUM_QUEUES if value.len() >= 4 => {
                out.num_queues = u32::from_ne_bytes([value[0], value[1], value[2], value[3]])
            }
            _ => {}
        }
    }
    out
}

/// IFLA_* numbers of the attributes `parse_link` reads (<linux/if_link.h>).
const WANTED_LINK_ATTRIBUTES: [u16; 8] = [
    1,  // IFLA_ADDRESS
    3,  // IFLA_IFNAME
    4,  // IFLA_MTU
    5,  // IFLA_LINK
    13, // IFLA_TXQLEN
    18, // IFLA_LINKINFO
    20, // IFLA_IFALIAS
    27, // IFLA_GROUP
];
/// Size of `struct ifinfomsg`, which precedes the attributes.
const IFINFOMSG_LEN: usize = 16;

/// Decode one RTM_NEWLINK payload, parsing (with the crate's parsers) only the attributes
/// a `Link` keeps: a dump of many links spends most of its user time otherwise on
/// attributes nobody reads (per-protocol configuration arrays, statistics).
fn parse_link_payload(payload: &[u8]) -> Result<Link, DecodeError> {
    let header = LinkHeader::parse(payload)?;
    let mut attributes = Vec::with_capacity(WANTED_LINK_ATTRIBUTES.len());
    for nla in wanted_attributes(payload, IFINFOMSG_LEN, &WANTED_LINK_ATTRIBUTES) {
        attributes.push(LinkAttribute::parse_with_param(
            &nla?,
            header.interface_family,
        )?);
    }
    Ok(parse_link(&header, attributes))
}

fn parse_link(header: &LinkHeader, attributes: Vec<LinkAttribute>) -> Link {
    let mut link = Link {
        index: header.index,
        name: String::new(),
        kind: None,
        mac: None,
        mtu: 0,
        tx_queue_len: 0,
        flags: header.flags.bits(),
        parent: None,
        tun: None,
        alias: None,
        group: 0,
    };
    for attr in attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Address(a) => link.mac = Some(a),
            LinkAttribute::Mtu(m) => link.mtu = m,
            LinkAttribute::TxQueueLen(q) => link.tx_queue_len = q,
            LinkAttribute::Link(p) => link.parent = Some(p),
            LinkAttribute::IfAlias(a) => link.alias = Some(a),
            LinkAttribute::Group(g) => link.group = g,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(k) => link.kind = Some(info_kind_name(&k)),
                        LinkInfo::Data(InfoData::Tun(t)) => link.tun = Some(parse_tun(&t)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    link
}

/// Dump every link of the socket's netns (one request).
pub fn dump(nl: &mut Netlink) -> Result<Vec<Link>, NlError> {
    let mut req = LinkMessage::default();
    req.header.interface_family = AddressFamily::Unspec;
    // Nothing here reads the counters: leave them out of the dump (less for the kernel to
    // fill and for us to parse).
    req.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    nl.dump_with(
        RouteNetlinkMessage::GetLink(req),
        libc::RTM_NEWLINK,
        |payload| parse_link_payload(payload).map(Some),
    )
}

/// Read one link by index (one request, answered by that link alone); None when the
/// netns has no such link.
pub fn get(nl: &mut Netlink, index: u32) -> Result<Option<Link>, NlError> {
    let mut req = LinkMessage::default();
    req.header.index = index;
    get_one(nl, req)
}

/// Read one link by name (one request, answered by that link alone); None when the netns
/// has no such link.
pub fn get_by_name(nl: &mut Netlink, name: &str) -> Result<Option<Link>, NlError> {
    let mut req = LinkMessage::default();
    req.attributes.push(LinkAttribute::IfName(name.to_string()));
    get_one(nl, req)
}

fn get_one(nl: &mut Netlink, mut req: LinkMessage) -> Result<Option<Link>, NlError> {
    req.header.interface_family = AddressFamily::Unspec;
    req.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    match nl.get_with(
        RouteNetlinkMessage::GetLink(req),
        libc::RTM_NEWLINK,
        parse_link_payload,
    ) {
        Ok(link) => Ok(Some(link)),
        Err(e) if e.errno == libc::ENODEV => Ok(None),
        Err(e) => Err(e),
    }
}

/// Set the UP flag, and optionally the MTU (0: unchanged), the MAC and an owner mark
/// (alias and link group), in one request.
pub fn set_mtu_up(
    nl: &mut Netlink,
    index: u32,
    mtu: u32,
    mac: Option<&[u8]>,
    owner: Option<(&str, u32)>,
) -> Result<(), NlError> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    if mtu > 0 {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = mac {
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    if let Some((alias, group)) = owner {
        msg.attributes
            .push(LinkAttribute::IfAlias(alias.to_string()));
        msg.attributes.push(LinkAttribute::Group(group));
    }
    nl.request(RouteNetlinkMessage::SetLink(msg), 0)
}

/// Delete every link of link group `group` in one request: the kernel unregisters them
/// together and waits for RCU once, instead of once per device.
pub fn delete_group(nl: &mut Netlink, group: u32) -> Result<(), NlError> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::Group(group));
    nl.request(RouteNetlinkMessage::DelLink(msg), 0)
}

/// Set a link's MAC address and MTU.
pub fn set_mac_mtu(nl: &mut Netlink, index: u32, mac: &[u8], mtu: u32) -> Result<(), NlError> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
    msg.attributes.push(LinkAttribute::Mtu(mtu));
    nl.request(RouteNetlinkMessage::SetLink(msg), 0)
}

/// Set a link's MAC address.
pub fn set_mac(nl: &mut Netlink, index: u32, mac: &[u8]) -> Result<(), NlError> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
    nl.request(RouteNetlinkMessage::SetLink(msg), 0)
}

/// What a new macvtap should look like.
#[derive(Debug, Clone)]
pub struct NewMacvtap<'a> {
    pub name: &'a str,
    pub parent: u32,
    pub mac: &'a [u8],
    pub mtu: u32,
    /// None keeps the kernel's default (never copy a 0 from a CNI veth).
    pub tx_queue_len: Option<u32>,
}

/// Create a bridge-mode macvtap on `parent`, up, with the given MAC and MTU.
pub fn create_macvtap(nl: &mut Netlink, new: &NewMacvtap<'_>) -> Result<(), NlError> {
    let mut msg = LinkMessage::default();
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    msg.attributes
        .push(LinkAttribute::IfName(new.name.to_string()));
    msg.attributes.push(LinkAttribute::Link(new.parent));
    msg.attributes
        .push(LinkAttribute::Address(new.mac.to_vec()));
    msg.attributes.push(LinkAttribute::Mtu(new.mtu));
    if let Some(q) = new.tx_queue_len {
        msg.attributes.push(LinkAttribute::TxQueueLen(q));
    }
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::MacVtap),
        LinkInfo::Data(InfoData::MacVtap(vec![InfoMacVtap::Mode(
            MacVtapMode::Bridge,
        )])),
    ]));
    nl.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
}

/// Create an IFB device `name`, up.
pub fn create_ifb(nl: &mut Netlink, name: &str) -> Result<(), NlError> {
    let mut msg = LinkMessage::default();
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    msg.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Ifb)]));
    nl.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
}

/// Bring a link up.
pub fn set_up(nl: &mut Netlink, index: u32) -> Result<(), NlError> {
    set_mtu_up(nl, index, 0, None, None)
}

/// Delete a link by index.
pub fn delete(nl: &mut Netlink, index: u32) -> Result<(), NlError> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    nl.request(RouteNetlinkMessage::DelLink(msg), 0)
}

/// Create a veth pair `name` <-> `peer`, the peer placed in the netns of `peer_netns`.
pub fn create_veth(
    nl: &mut Netlink,
    name: &str,
    peer: &str,
    peer_netns: BorrowedFd<'_>,
) -> Result<(), NlError> {
    let mut peer_msg = LinkMessage::default();
    peer_msg
        .attributes
        .push(LinkAttribute::IfName(peer.to_string()));
    peer_msg
        .attributes
        .push(LinkAttribute::NetNsFd(peer_netns.as_raw_fd()));
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
    ]));
    nl.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{DefaultNla, Emitable};

    #[test]
    fn a_link_payload_keeps_the_wanted_attributes_and_skips_the_rest() {
        let mut msg = LinkMessage::default();
        msg.header.index = 7;
        msg.header.flags = LinkFlags::Up;
        msg.attributes = vec![
            LinkAttribute::IfName("eth0".into()),
            LinkAttribute::Mtu(1400),
            // Not read: skipped without being decoded.
            LinkAttribute::Other(DefaultNla::new(26, vec![0xff; 8])),
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]),
            LinkAttribute::TxQueueLen(0),
            LinkAttribute::Group(42),
            LinkAttribute::IfAlias("sandbox-net:x".into()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)]),
        ];
        let mut bytes = vec![0u8; msg.buffer_len()];
        msg.emit(&mut bytes);
        let link = parse_link_payload(&bytes).expect("parse");
        assert_eq!(link.index, 7);
        assert_eq!(link.name, "eth0");
        assert_eq!(link.mtu, 1400);
        assert_eq!(link.mac, Some(vec![2, 0, 0, 0, 0, 1]));
        assert_eq!(link.group, 42);
        assert_eq!(link.alias.as_deref(), Some("sandbox-net:x"));
        assert_eq!(link.kind.as_deref(), Some("veth"));
        assert!(link.is_up());
        // A truncated message is an error, not a guess.
        assert!(parse_link_payload(&bytes[..10]).is_err());
    }

    #[test]
    fn tun_details_are_decoded() {
        let attrs = vec![
            InfoTun::Other(DefaultNla::new(3, vec![libc::IFF_TAP as u8])),
            InfoTun::Other(DefaultNla::new(5, vec![1])),
            InfoTun::Other(DefaultNla::new(6, vec![1])),
            InfoTun::Other(DefaultNla::new(7, vec![0])),
            InfoTun::Other(DefaultNla::new(8, 4u32.to_ne_bytes().to_vec())),
        ];
        let t = parse_tun(&attrs);
        assert!(t.tap && t.vnet_hdr && t.persist && !t.multi_queue && !t.pi);
        assert_eq!(t.num_queues, 4);
    }
}
