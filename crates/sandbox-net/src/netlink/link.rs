//! Link operations: dump, change MTU/state, delete, and veth creation for scratch networks.

use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{DecodeError, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVtap, InfoVeth, LinkAttribute, LinkExtentMask, LinkFlags,
    LinkHeader, LinkInfo, LinkMessage, MacVtapMode,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use serde::{Deserialize, Serialize};

use super::{Netlink, NlError, attr};

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

/// What a tun device's IFLA_INFO_DATA says (IFLA_TUN_* from <linux/if_link.h>).
fn parse_tun(data: &[u8]) -> Result<TunDetails, DecodeError> {
    const TYPE: u16 = 3;
    const PI: u16 = 4;
    const VNET_HDR: u16 = 5;
    const PERSIST: u16 = 6;
    const MULTI_QUEUE: u16 = 7;
    const NUM_QUEUES: u16 = 8;
    let mut out = TunDetails::default();
    for nla in attr::each(data) {
        let (kind, value) = nla?;
        let flag = attr::u8_of(value).unwrap_or(0);
        match kind {
            TYPE => out.tap = flag == libc::IFF_TAP as u8,
            PI => out.pi = flag != 0,
            VNET_HDR => out.vnet_hdr = flag != 0,
            PERSIST => out.persist = flag != 0,
            MULTI_QUEUE => out.multi_queue = flag != 0,
            NUM_QUEUES => out.num_queues = attr::u32_of(value).unwrap_or(0),
            _ => {}
        }
    }
    Ok(out)
}

/// IFLA_* numbers of the attributes a `Link` keeps (<linux/if_link.h>).
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_TXQLEN: u16 = 13;
const IFLA_LINKINFO: u16 = 18;
const IFLA_IFALIAS: u16 = 20;
const IFLA_GROUP: u16 = 27;
/// IFLA_INFO_* inside IFLA_LINKINFO.
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
/// Size of `struct ifinfomsg`, which precedes the attributes.
const IFINFOMSG_LEN: usize = 16;

/// Decode one RTM_NEWLINK payload, reading only the attributes a `Link` keeps: a dump of
/// many links would otherwise spend most of its time on attributes nobody reads
/// (per-protocol configuration arrays, statistics). The name and the alias are tenant
/// data: any bytes decode (see [`attr::text`]); only a message the kernel itself got wrong
/// (a truncated header, an attribute length that does not fit) is an error.
pub(crate) fn parse_link_payload(payload: &[u8]) -> Result<Link, DecodeError> {
    let header = LinkHeader::parse(payload)?;
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
    for nla in attr::each(payload.get(IFINFOMSG_LEN..).unwrap_or_default()) {
        let (kind, value) = nla?;
        match kind {
            IFLA_ADDRESS => link.mac = Some(value.to_vec()),
            IFLA_IFNAME => link.name = attr::text(value),
            IFLA_MTU => link.mtu = attr::u32_of(value).unwrap_or(0),
            IFLA_LINK => link.parent = attr::u32_of(value),
            IFLA_TXQLEN => link.tx_queue_len = attr::u32_of(value).unwrap_or(0),
            IFLA_LINKINFO => parse_link_info(value, &mut link)?,
            IFLA_IFALIAS => link.alias = Some(attr::text(value)),
            IFLA_GROUP => link.group = attr::u32_of(value).unwrap_or(0),
            _ => {}
        }
    }
    Ok(link)
}

/// IFLA_LINKINFO: the kind, and for a tun device its details.
fn parse_link_info(info: &[u8], link: &mut Link) -> Result<(), DecodeError> {
    let mut data = None;
    for nla in attr::each(info) {
        match nla? {
            (IFLA_INFO_KIND, value) => link.kind = Some(attr::text(value)),
            (IFLA_INFO_DATA, value) => data = Some(value),
            _ => {}
        }
    }
    if let (Some("tun"), Some(data)) = (link.kind.as_deref(), data) {
        link.tun = Some(parse_tun(data)?);
    }
    Ok(())
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

/// Set the UP flag, and optionally the MTU (0: unchanged), the MAC, an owner mark (alias
/// and link group) and the queue length (`txqueuelen`), in one request.
pub fn set_mtu_up(
    nl: &mut Netlink,
    index: u32,
    mtu: u32,
    mac: Option<&[u8]>,
    owner: Option<(&str, u32)>,
    tx_queue_len: Option<u32>,
) -> Result<(), NlError> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    if mtu > 0 {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(q) = tx_queue_len {
        msg.attributes.push(LinkAttribute::TxQueueLen(q));
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
    set_mtu_up(nl, index, 0, None, None, None)
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
impl Link {
    /// A link for unit tests: up, MTU 1500, queue length 1000, MAC 02:00:00:00:00:<index>.
    pub(crate) fn test(index: u32, name: &str, kind: Option<&str>) -> Link {
        Link {
            index,
            name: name.into(),
            kind: kind.map(String::from),
            mac: Some(vec![2, 0, 0, 0, 0, index as u8]),
            mtu: 1500,
            tx_queue_len: 1000,
            flags: libc::IFF_UP as u32,
            parent: None,
            tun: None,
            alias: None,
            group: 0,
        }
    }
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
        let attrs = [
            DefaultNla::new(3, vec![libc::IFF_TAP as u8]),
            DefaultNla::new(5, vec![1]),
            DefaultNla::new(6, vec![1]),
            DefaultNla::new(7, vec![0]),
            DefaultNla::new(8, 4u32.to_ne_bytes().to_vec()),
        ];
        let mut bytes = vec![0u8; attrs.as_slice().buffer_len()];
        attrs.as_slice().emit(&mut bytes);
        let t = parse_tun(&bytes).expect("parse");
        assert!(t.tap && t.vnet_hdr && t.persist && !t.multi_queue && !t.pi);
        assert_eq!(t.num_queues, 4);
    }

    /// A link message with `name` and `alias` as raw bytes (what a tenant can set).
    fn link_bytes(index: u32, name: &[u8], alias: &[u8]) -> Vec<u8> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes = vec![
            LinkAttribute::Other(DefaultNla::new(IFLA_IFNAME, [name, b"\0"].concat())),
            LinkAttribute::Other(DefaultNla::new(IFLA_IFALIAS, [alias, b"\0"].concat())),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Tun)]),
        ];
        let mut bytes = vec![0u8; msg.buffer_len()];
        msg.emit(&mut bytes);
        bytes
    }

    #[test]
    fn a_name_or_alias_that_is_not_utf8_is_data() {
        let link = parse_link_payload(&link_bytes(4, b"\xc3\x28", b"\xff")).expect("parse");
        assert_eq!(link.index, 4);
        assert_eq!(link.name, "\\xc3( (not UTF-8)");
        assert_eq!(link.alias.as_deref(), Some("\\xff (not UTF-8)"));
        assert_eq!(link.kind.as_deref(), Some("tun"));
        // An alias that is ours but for one byte is not ours.
        let mut alias = crate::names::owner_alias("a").into_bytes();
        alias.push(0xff);
        let link = parse_link_payload(&link_bytes(5, b"tap0_sn", &alias)).expect("parse");
        assert_eq!(link.name, "tap0_sn");
        let id = link.alias.as_deref().and_then(crate::names::owner_of);
        assert!(id.is_some_and(|id| crate::state::validate_id(id).is_err()));
    }
}
