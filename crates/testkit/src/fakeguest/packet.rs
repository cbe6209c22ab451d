//! Pure packet building and parsing for the fake guest.
//!
//! Everything here works on byte slices (Ethernet frames *without* the
//! virtio-net header). Parsers return `None` for anything malformed,
//! truncated or uninteresting; they never panic.

use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETH_HLEN: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;
pub const ICMPV6_NEIGHBOR_SOLICITATION: u8 = 135;
pub const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;

pub const ARP_OP_REQUEST: u16 = 1;
pub const ARP_OP_REPLY: u16 = 2;
const ARP_LEN: usize = 28;

pub const NDP_OPT_SOURCE_LLA: u8 = 1;
pub const NDP_OPT_TARGET_LLA: u8 = 2;
/// Flags in the first byte of a Neighbor Advertisement's reserved field.
pub const NA_FLAG_ROUTER: u8 = 0x80;
pub const NA_FLAG_SOLICITED: u8 = 0x40;
pub const NA_FLAG_OVERRIDE: u8 = 0x20;
/// Hop limit that NDP messages must carry (RFC 4861 §7.1).
pub const NDP_HOP_LIMIT: u8 = 255;

const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const ICMP_ECHO_HLEN: usize = 8;
const NDP_BODY_LEN: usize = 24; // type, code, csum, reserved/flags, target

fn get_u16(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn get_array<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}

// ---------------------------------------------------------------- Ethernet

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<'a> {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ethertype: u16,
    pub payload: &'a [u8],
}

pub fn parse_ethernet(frame: &[u8]) -> Option<EthernetFrame<'_>> {
    Some(EthernetFrame {
        dst: get_array(frame, 0)?,
        src: get_array(frame, 6)?,
        ethertype: get_u16(frame, 12)?,
        payload: frame.get(ETH_HLEN..)?,
    })
}

pub fn build_ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_HLEN + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// True for group (multicast or broadcast) MAC addresses.
pub fn is_multicast_mac(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 1
}

// ---------------------------------------------------------------- ARP

/// An Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket {
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
}

impl ArpPacket {
    pub fn to_bytes(&self) -> [u8; ARP_LEN] {
        let mut b = [0u8; ARP_LEN];
        b[0..2].copy_from_slice(&1u16.to_be_bytes()); // htype Ethernet
        b[2..4].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        b[4] = 6;
        b[5] = 4;
        b[6..8].copy_from_slice(&self.op.to_be_bytes());
        b[8..14].copy_from_slice(&self.sender_mac);
        b[14..18].copy_from_slice(&self.sender_ip.octets());
        b[18..24].copy_from_slice(&self.target_mac);
        b[24..28].copy_from_slice(&self.target_ip.octets());
        b
    }
}

/// Parse an ARP payload (after the Ethernet header). Only Ethernet/IPv4 ARP.
pub fn parse_arp(b: &[u8]) -> Option<ArpPacket> {
    if get_u16(b, 0)? != 1 || get_u16(b, 2)? != ETHERTYPE_IPV4 {
        return None;
    }
    if *b.get(4)? != 6 || *b.get(5)? != 4 {
        return None;
    }
    Some(ArpPacket {
        op: get_u16(b, 6)?,
        sender_mac: get_array(b, 8)?,
        sender_ip: Ipv4Addr::from(get_array::<4>(b, 14)?),
        target_mac: get_array(b, 18)?,
        target_ip: Ipv4Addr::from(get_array::<4>(b, 24)?),
    })
}

/// Full Ethernet frame: broadcast ARP request "who has `target_ip`".
pub fn build_arp_request(our_mac: [u8; 6], our_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let arp = ArpPacket {
        op: ARP_OP_REQUEST,
        sender_mac: our_mac,
        sender_ip: our_ip,
        target_mac: [0; 6],
        target_ip,
    };
    build_ethernet(BROADCAST_MAC, our_mac, ETHERTYPE_ARP, &arp.to_bytes())
}

/// Full Ethernet frame: unicast ARP reply to `request`, claiming `our_ip`.
pub fn build_arp_reply(our_mac: [u8; 6], our_ip: Ipv4Addr, request: &ArpPacket) -> Vec<u8> {
    let arp = ArpPacket {
        op: ARP_OP_REPLY,
        sender_mac: our_mac,
        sender_ip: our_ip,
        target_mac: request.sender_mac,
        target_ip: request.sender_ip,
    };
    build_ethernet(request.sender_mac, our_mac, ETHERTYPE_ARP, &arp.to_bytes())
}

// ---------------------------------------------------------------- checksums

/// Add `data` to a running ones'-complement sum (big-endian 16-bit words,
/// odd trailing byte padded with zero).
pub fn checksum_add(mut sum: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(u16::from_be_bytes([*last, 0]));
    }
    sum
}

/// Fold a running sum and return its ones' complement.
pub fn checksum_finish(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // `sum` fits in 16 bits after folding.
    !(sum as u16)
}

/// RFC 1071 Internet checksum of `data`. Over a buffer that already contains
/// a correct checksum this returns 0.
pub fn internet_checksum(data: &[u8]) -> u16 {
    checksum_finish(checksum_add(0, data))
}

/// ICMPv6 checksum (RFC 4443 §2.3) including the IPv6 pseudo-header. The
/// checksum field inside `icmp` must be zero when computing, or the result is
/// 0 when verifying a correct message.
pub fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, icmp: &[u8]) -> u16 {
    let mut sum = checksum_add(0, &src.octets());
    sum = checksum_add(sum, &dst.octets());
    sum = checksum_add(sum, &(icmp.len() as u32).to_be_bytes());
    sum = checksum_add(sum, &[0, 0, 0, IPPROTO_ICMPV6]);
    checksum_finish(checksum_add(sum, icmp))
}

// ---------------------------------------------------------------- IPv4

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    pub payload: &'a [u8],
}

/// Parse an IPv4 packet. Fragments (which we do not reassemble) and packets
/// whose header checksum is wrong are rejected.
pub fn parse_ipv4(b: &[u8]) -> Option<Ipv4Packet<'_>> {
    let vihl = *b.first()?;
    if vihl >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(vihl & 0x0f) * 4;
    let total = usize::from(get_u16(b, 2)?);
    if ihl < IPV4_HLEN || total < ihl || total > b.len() {
        return None;
    }
    let header = b.get(..ihl)?;
    if internet_checksum(header) != 0 {
        return None;
    }
    let frag = get_u16(b, 6)?;
    if frag & 0x3fff != 0 {
        // MF set or non-zero fragment offset.
        return None;
    }
    Some(Ipv4Packet {
        src: Ipv4Addr::from(get_array::<4>(b, 12)?),
        dst: Ipv4Addr::from(get_array::<4>(b, 16)?),
        protocol: *b.get(9)?,
        ttl: *b.get(8)?,
        payload: b.get(ihl..total)?,
    })
}

/// IPv4 packet (20-byte header, DF set) carrying `payload`. Returns `None` if
/// the payload does not fit in an IPv4 packet.
pub fn build_ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    ttl: u8,
    id: u16,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let total = u16::try_from(IPV4_HLEN + payload.len()).ok()?;
    let mut p = Vec::with_capacity(usize::from(total));
    p.push(0x45);
    p.push(0);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&0x4000u16.to_be_bytes()); // DF
    p.push(ttl);
    p.push(protocol);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let csum = internet_checksum(&p);
    p[10..12].copy_from_slice(&csum.to_be_bytes());
    p.extend_from_slice(payload);
    Some(p)
}

// ---------------------------------------------------------------- ICMP echo

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoKind {
    Request,
    Reply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpEcho<'a> {
    pub kind: EchoKind,
    pub id: u16,
    pub seq: u16,
    pub data: &'a [u8],
}

fn parse_echo(b: &[u8], request: u8, reply: u8) -> Option<IcmpEcho<'_>> {
    let kind = match *b.first()? {
        t if t == request => EchoKind::Request,
        t if t == reply => EchoKind::Reply,
        _ => return None,
    };
    if *b.get(1)? != 0 {
        return None;
    }
    Some(IcmpEcho {
        kind,
        id: get_u16(b, 4)?,
        seq: get_u16(b, 6)?,
        data: b.get(ICMP_ECHO_HLEN..)?,
    })
}

fn build_echo(icmp_type: u8, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(ICMP_ECHO_HLEN + data.len());
    m.push(icmp_type);
    m.push(0);
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(data);
    m
}

/// Parse an ICMPv4 echo request/reply, verifying its checksum.
pub fn parse_icmpv4_echo(b: &[u8]) -> Option<IcmpEcho<'_>> {
    if b.len() < ICMP_ECHO_HLEN || internet_checksum(b) != 0 {
        return None;
    }
    parse_echo(b, ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY)
}

/// ICMPv4 echo message with a correct checksum.
pub fn build_icmpv4_echo(kind: EchoKind, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let t = match kind {
        EchoKind::Request => ICMP_ECHO_REQUEST,
        EchoKind::Reply => ICMP_ECHO_REPLY,
    };
    let mut m = build_echo(t, id, seq, data);
    let csum = internet_checksum(&m);
    m[2..4].copy_from_slice(&csum.to_be_bytes());
    m
}

/// Parse an ICMPv6 echo request/reply without checking its checksum (use
/// [`icmpv6_checksum`] when the addresses are known).
pub fn parse_icmpv6_echo(b: &[u8]) -> Option<IcmpEcho<'_>> {
    parse_echo(b, ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY)
}

/// ICMPv6 echo message. With `addrs = Some((src, dst))` the checksum is
/// filled in; with `None` it is left zero (raw ICMPv6 sockets let the kernel
/// fill it).
pub fn build_icmpv6_echo(
    kind: EchoKind,
    id: u16,
    seq: u16,
    data: &[u8],
    addrs: Option<(&Ipv6Addr, &Ipv6Addr)>,
) -> Vec<u8> {
    let t = match kind {
        EchoKind::Request => ICMPV6_ECHO_REQUEST,
        EchoKind::Reply => ICMPV6_ECHO_REPLY,
    };
    let mut m = build_echo(t, id, seq, data);
    if let Some((src, dst)) = addrs {
        let csum = icmpv6_checksum(src, dst, &m);
        m[2..4].copy_from_slice(&csum.to_be_bytes());
    }
    m
}

// ---------------------------------------------------------------- IPv6

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<'a> {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// Next header of the fixed header; extension headers are not walked
    /// (MLD, which uses hop-by-hop, is therefore never seen as ICMPv6).
    pub next_header: u8,
    pub hop_limit: u8,
    pub payload: &'a [u8],
}

pub fn parse_ipv6(b: &[u8]) -> Option<Ipv6Packet<'_>> {
    if *b.first()? >> 4 != 6 {
        return None;
    }
    let plen = usize::from(get_u16(b, 4)?);
    Some(Ipv6Packet {
        src: Ipv6Addr::from(get_array::<16>(b, 8)?),
        dst: Ipv6Addr::from(get_array::<16>(b, 24)?),
        next_header: *b.get(6)?,
        hop_limit: *b.get(7)?,
        payload: b.get(IPV6_HLEN..IPV6_HLEN.checked_add(plen)?)?,
    })
}

/// IPv6 packet carrying `payload`. `None` if the payload is too big.
pub fn build_ipv6(
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
    next_header: u8,
    hop_limit: u8,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let plen = u16::try_from(payload.len()).ok()?;
    let mut p = Vec::with_capacity(IPV6_HLEN + payload.len());
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&plen.to_be_bytes());
    p.push(next_header);
    p.push(hop_limit);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    Some(p)
}

/// Solicited-node multicast address ff02::1:ffXX:XXXX of `addr` (RFC 4291).
pub fn solicited_node_multicast(addr: &Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

/// Ethernet MAC for an IPv6 multicast address: 33:33 + low 32 bits (RFC 2464).
pub fn ipv6_multicast_mac(addr: &Ipv6Addr) -> [u8; 6] {
    let o = addr.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

// ---------------------------------------------------------------- NDP

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborSolicitation {
    pub target: Ipv6Addr,
    pub source_lla: Option<[u8; 6]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborAdvertisement {
    /// NA_FLAG_* bits.
    pub flags: u8,
    pub target: Ipv6Addr,
    pub target_lla: Option<[u8; 6]>,
}

/// Walk NDP options, returning the link-layer address of option `want`.
/// `None` (outer) if the option list is malformed (RFC 4861: zero-length
/// option means discard the packet).
fn ndp_find_lla(mut opts: &[u8], want: u8) -> Option<Option<[u8; 6]>> {
    let mut found = None;
    while !opts.is_empty() {
        let t = *opts.first()?;
        let len = usize::from(*opts.get(1)?) * 8;
        if len == 0 {
            return None;
        }
        let opt = opts.get(..len)?;
        if t == want && found.is_none() {
            found = get_array::<6>(opt, 2);
        }
        opts = opts.get(len..)?;
    }
    Some(found)
}

fn ndp_common(b: &[u8], icmp_type: u8) -> Option<(u8, Ipv6Addr, &[u8])> {
    if b.len() < NDP_BODY_LEN || *b.first()? != icmp_type || *b.get(1)? != 0 {
        return None;
    }
    let target = Ipv6Addr::from(get_array::<16>(b, 8)?);
    if target.is_multicast() {
        return None;
    }
    Some((*b.get(4)?, target, b.get(NDP_BODY_LEN..)?))
}

/// Parse an ICMPv6 Neighbor Solicitation body (checksum not verified here).
pub fn parse_neighbor_solicitation(b: &[u8]) -> Option<NeighborSolicitation> {
    let (_, target, opts) = ndp_common(b, ICMPV6_NEIGHBOR_SOLICITATION)?;
    Some(NeighborSolicitation {
        target,
        source_lla: ndp_find_lla(opts, NDP_OPT_SOURCE_LLA)?,
    })
}

/// Parse an ICMPv6 Neighbor Advertisement body (checksum not verified here).
pub fn parse_neighbor_advertisement(b: &[u8]) -> Option<NeighborAdvertisement> {
    let (flags, target, opts) = ndp_common(b, ICMPV6_NEIGHBOR_ADVERTISEMENT)?;
    Some(NeighborAdvertisement {
        flags,
        target,
        target_lla: ndp_find_lla(opts, NDP_OPT_TARGET_LLA)?,
    })
}

fn ndp_message(icmp_type: u8, flags: u8, target: &Ipv6Addr, opt: u8, mac: [u8; 6]) -> Vec<u8> {
    let mut m = Vec::with_capacity(NDP_BODY_LEN + 8);
    m.extend_from_slice(&[icmp_type, 0, 0, 0, flags, 0, 0, 0]);
    m.extend_from_slice(&target.octets());
    m.extend_from_slice(&[opt, 1]);
    m.extend_from_slice(&mac);
    m
}

fn ndp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
    mut icmp: Vec<u8>,
) -> Vec<u8> {
    let csum = icmpv6_checksum(src, dst, &icmp);
    icmp[2..4].copy_from_slice(&csum.to_be_bytes());
    // NDP messages are 32 bytes: always fit.
    let ip = build_ipv6(src, dst, IPPROTO_ICMPV6, NDP_HOP_LIMIT, &icmp).unwrap_or_default();
    build_ethernet(dst_mac, src_mac, ETHERTYPE_IPV6, &ip)
}

/// Full Ethernet frame: Neighbor Solicitation for `target`, sent to its
/// solicited-node multicast group, with a source link-layer address option.
pub fn build_neighbor_solicitation(
    our_mac: [u8; 6],
    our_ip: &Ipv6Addr,
    target: &Ipv6Addr,
) -> Vec<u8> {
    let dst = solicited_node_multicast(target);
    let icmp = ndp_message(
        ICMPV6_NEIGHBOR_SOLICITATION,
        0,
        target,
        NDP_OPT_SOURCE_LLA,
        our_mac,
    );
    ndp_frame(ipv6_multicast_mac(&dst), our_mac, our_ip, &dst, icmp)
}

/// Full Ethernet frame: Neighbor Advertisement for `our_ip` with a target
/// link-layer address option. `solicited` sets the S flag (O is always set).
pub fn build_neighbor_advertisement(
    our_mac: [u8; 6],
    our_ip: &Ipv6Addr,
    dst_mac: [u8; 6],
    dst_ip: &Ipv6Addr,
    solicited: bool,
) -> Vec<u8> {
    let flags = NA_FLAG_OVERRIDE | if solicited { NA_FLAG_SOLICITED } else { 0 };
    let icmp = ndp_message(
        ICMPV6_NEIGHBOR_ADVERTISEMENT,
        flags,
        our_ip,
        NDP_OPT_TARGET_LLA,
        our_mac,
    );
    ndp_frame(dst_mac, our_mac, our_ip, dst_ip, icmp)
}

// ---------------------------------------------------------------- frames

/// A frame the fake guest may care about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    Arp(ArpPacket),
    EchoV4 {
        eth_src: [u8; 6],
        ip: Ipv4Packet<'a>,
        echo: IcmpEcho<'a>,
    },
    EchoV6 {
        eth_src: [u8; 6],
        ip: Ipv6Packet<'a>,
        echo: IcmpEcho<'a>,
    },
    NeighborSolicitation {
        eth_src: [u8; 6],
        ip: Ipv6Packet<'a>,
        ns: NeighborSolicitation,
    },
    NeighborAdvertisement {
        eth_src: [u8; 6],
        ip: Ipv6Packet<'a>,
        na: NeighborAdvertisement,
    },
}

/// Classify an Ethernet frame. `None` = malformed or not interesting.
/// ICMPv6 checksums are verified; NDP messages must have hop limit 255.
pub fn parse_frame(frame: &[u8]) -> Option<Parsed<'_>> {
    let eth = parse_ethernet(frame)?;
    match eth.ethertype {
        ETHERTYPE_ARP => parse_arp(eth.payload).map(Parsed::Arp),
        ETHERTYPE_IPV4 => {
            let ip = parse_ipv4(eth.payload)?;
            if ip.protocol != IPPROTO_ICMP {
                return None;
            }
            let echo = parse_icmpv4_echo(ip.payload)?;
            Some(Parsed::EchoV4 {
                eth_src: eth.src,
                ip,
                echo,
            })
        }
        ETHERTYPE_IPV6 => {
            let ip = parse_ipv6(eth.payload)?;
            if ip.next_header != IPPROTO_ICMPV6
                || icmpv6_checksum(&ip.src, &ip.dst, ip.payload) != 0
            {
                return None;
            }
            match *ip.payload.first()? {
                ICMPV6_ECHO_REQUEST | ICMPV6_ECHO_REPLY => Some(Parsed::EchoV6 {
                    eth_src: eth.src,
                    ip,
                    echo: parse_icmpv6_echo(ip.payload)?,
                }),
                ICMPV6_NEIGHBOR_SOLICITATION if ip.hop_limit == NDP_HOP_LIMIT => {
                    Some(Parsed::NeighborSolicitation {
                        eth_src: eth.src,
                        ip,
                        ns: parse_neighbor_solicitation(ip.payload)?,
                    })
                }
                ICMPV6_NEIGHBOR_ADVERTISEMENT if ip.hop_limit == NDP_HOP_LIMIT => {
                    Some(Parsed::NeighborAdvertisement {
                        eth_src: eth.src,
                        ip,
                        na: parse_neighbor_advertisement(ip.payload)?,
                    })
                }
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

    /// Every strict prefix of `frame` must parse to None, without panicking.
    fn assert_truncations_rejected(frame: &[u8]) {
        for n in 0..frame.len() {
            assert!(
                parse_frame(&frame[..n]).is_none(),
                "prefix of len {n} parsed"
            );
        }
    }

    #[test]
    fn classic_ipv4_header_checksum() {
        // Wikipedia's example header, checksum field zeroed.
        let mut h: [u8; 20] = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(internet_checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(internet_checksum(&h), 0);
    }

    #[test]
    fn odd_length_checksum() {
        // Odd trailing byte is padded with zero.
        assert_eq!(internet_checksum(&[0x01]), !0x0100);
        assert_eq!(internet_checksum(&[]), 0xffff);
    }

    #[test]
    fn build_ipv4_roundtrip() {
        let src = Ipv4Addr::new(192, 168, 0, 1);
        let dst = Ipv4Addr::new(192, 168, 0, 199);
        let p = build_ipv4(src, dst, 17, 64, 0, &[0u8; 0x73 - 20]).unwrap();
        assert_eq!(&p[10..12], &[0xb8, 0x61]);
        let ip = parse_ipv4(&p).unwrap();
        assert_eq!((ip.src, ip.dst, ip.protocol, ip.ttl), (src, dst, 17, 64));
        assert_eq!(ip.payload.len(), 0x73 - 20);
        // Corrupt checksum -> rejected.
        let mut bad = p.clone();
        bad[11] ^= 1;
        assert!(parse_ipv4(&bad).is_none());
        // Fragment -> rejected.
        let mut frag = build_ipv4(src, dst, 17, 64, 0, &[]).unwrap();
        frag[6] = 0x20; // MF
        frag[10] = 0;
        frag[11] = 0;
        let c = internet_checksum(&frag[..20]);
        frag[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(parse_ipv4(&frag).is_none());
        // Bad IHL / total length.
        let mut short_ihl = p.clone();
        short_ihl[0] = 0x44;
        assert!(parse_ipv4(&short_ihl).is_none());
        for n in 0..p.len() {
            assert!(parse_ipv4(&p[..n]).is_none());
        }
    }

    #[test]
    fn arp_request_reply_roundtrip() {
        let a_ip = Ipv4Addr::new(10, 0, 0, 2);
        let b_ip = Ipv4Addr::new(10, 0, 0, 1);
        let req = build_arp_request(MAC_A, a_ip, b_ip);
        assert_eq!(req.len(), 42);
        let eth = parse_ethernet(&req).unwrap();
        assert_eq!(
            (eth.dst, eth.src, eth.ethertype),
            (BROADCAST_MAC, MAC_A, ETHERTYPE_ARP)
        );
        let Some(Parsed::Arp(arp)) = parse_frame(&req) else {
            panic!("not ARP")
        };
        assert_eq!(arp.op, ARP_OP_REQUEST);
        assert_eq!(
            (arp.sender_mac, arp.sender_ip, arp.target_ip),
            (MAC_A, a_ip, b_ip)
        );

        let rep = build_arp_reply(MAC_B, b_ip, &arp);
        let eth = parse_ethernet(&rep).unwrap();
        assert_eq!((eth.dst, eth.src), (MAC_A, MAC_B));
        let Some(Parsed::Arp(r)) = parse_frame(&rep) else {
            panic!("not ARP")
        };
        assert_eq!(
            r,
            ArpPacket {
                op: ARP_OP_REPLY,
                sender_mac: MAC_B,
                sender_ip: b_ip,
                target_mac: MAC_A,
                target_ip: a_ip
            }
        );
        // Padding to the 60-byte Ethernet minimum is fine.
        let mut padded = rep.clone();
        padded.resize(60, 0);
        assert_eq!(parse_frame(&padded), Some(Parsed::Arp(r)));
        assert_truncations_rejected(&rep);
        // Non-Ethernet/IPv4 ARP is ignored.
        let mut odd = rep.clone();
        odd[ETH_HLEN + 4] = 8;
        assert!(parse_frame(&odd).is_none());
    }

    #[test]
    fn icmpv4_echo_roundtrip() {
        let src = Ipv4Addr::new(10, 0, 0, 2);
        let dst = Ipv4Addr::new(10, 0, 0, 1);
        let icmp = build_icmpv4_echo(EchoKind::Request, 0x1234, 7, b"hello!");
        assert_eq!(internet_checksum(&icmp), 0);
        let ip = build_ipv4(src, dst, IPPROTO_ICMP, 64, 1, &icmp).unwrap();
        let frame = build_ethernet(MAC_B, MAC_A, ETHERTYPE_IPV4, &ip);
        let Some(Parsed::EchoV4 { eth_src, ip, echo }) = parse_frame(&frame) else {
            panic!("not echo")
        };
        assert_eq!(eth_src, MAC_A);
        assert_eq!((ip.src, ip.dst), (src, dst));
        assert_eq!(
            echo,
            IcmpEcho {
                kind: EchoKind::Request,
                id: 0x1234,
                seq: 7,
                data: b"hello!"
            }
        );
        assert_truncations_rejected(&frame);
        // Bad ICMP checksum -> ignored.
        let mut bad = frame.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(parse_frame(&bad).is_none());
    }

    /// ICMPv6 echo reply from fd99::1 to fd99::2 as sent by Linux 6.18
    /// (captured on the integration test's tap; checksum by the kernel).
    const KERNEL_ECHOV6_REPLY: [u8; 64] = [
        0x60, 0x0a, 0x60, 0x1d, 0x00, 0x18, 0x3a, 0x40, //
        0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, //
        0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, //
        0x81, 0x00, 0x13, 0x66, 0x7e, 0x61, 0x00, 0x01, //
        0x66, 0x61, 0x6b, 0x65, 0x67, 0x75, 0x65, 0x73, 0x74, 0x2d, 0x70, 0x69, 0x6e, 0x67, 0x00,
        0x00,
    ];

    #[test]
    fn icmpv6_checksum_of_known_packet() {
        let ip = parse_ipv6(&KERNEL_ECHOV6_REPLY).unwrap();
        assert_eq!(ip.next_header, IPPROTO_ICMPV6);
        assert_eq!(icmpv6_checksum(&ip.src, &ip.dst, ip.payload), 0);
        let mut zeroed = ip.payload.to_vec();
        zeroed[2] = 0;
        zeroed[3] = 0;
        assert_eq!(icmpv6_checksum(&ip.src, &ip.dst, &zeroed), 0x1366);
        // Rebuilding the same message yields the same checksum.
        let echo = parse_icmpv6_echo(ip.payload).unwrap();
        let rebuilt = build_icmpv6_echo(
            echo.kind,
            echo.id,
            echo.seq,
            echo.data,
            Some((&ip.src, &ip.dst)),
        );
        assert_eq!(rebuilt, ip.payload);
    }

    #[test]
    fn icmpv6_echo_roundtrip() {
        let src: Ipv6Addr = "fd00::2".parse().unwrap();
        let dst: Ipv6Addr = "fd00::1".parse().unwrap();
        let icmp = build_icmpv6_echo(EchoKind::Reply, 9, 65535, b"xyz", Some((&src, &dst)));
        assert_eq!(icmpv6_checksum(&src, &dst, &icmp), 0);
        let unsummed = build_icmpv6_echo(EchoKind::Reply, 9, 65535, b"xyz", None);
        assert_eq!(&unsummed[2..4], &[0, 0]);
        let ip = build_ipv6(&src, &dst, IPPROTO_ICMPV6, 64, &icmp).unwrap();
        let frame = build_ethernet(MAC_B, MAC_A, ETHERTYPE_IPV6, &ip);
        let Some(Parsed::EchoV6 { echo, ip, .. }) = parse_frame(&frame) else {
            panic!("not echo")
        };
        assert_eq!((ip.src, ip.dst, ip.hop_limit), (src, dst, 64));
        assert_eq!(
            (echo.kind, echo.id, echo.seq, echo.data),
            (EchoKind::Reply, 9, 65535, &b"xyz"[..])
        );
        assert_truncations_rejected(&frame);
        // Wrong checksum (e.g. other pseudo-header) -> ignored.
        let ip2 = build_ipv6(&src, &"fd00::3".parse().unwrap(), IPPROTO_ICMPV6, 64, &icmp).unwrap();
        assert!(parse_frame(&build_ethernet(MAC_B, MAC_A, ETHERTYPE_IPV6, &ip2)).is_none());
    }

    #[test]
    fn solicited_node_and_mac() {
        let a: Ipv6Addr = "fd99::1234:5678".parse().unwrap();
        let m = solicited_node_multicast(&a);
        assert_eq!(m, "ff02::1:ff34:5678".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ipv6_multicast_mac(&m), [0x33, 0x33, 0xff, 0x34, 0x56, 0x78]);
        let b: Ipv6Addr = "fe80::2".parse().unwrap();
        assert_eq!(
            ipv6_multicast_mac(&solicited_node_multicast(&b)),
            [0x33, 0x33, 0xff, 0, 0, 0x02]
        );
        assert!(is_multicast_mac(&[0x33, 0x33, 0xff, 0, 0, 2]));
        assert!(is_multicast_mac(&BROADCAST_MAC));
        assert!(!is_multicast_mac(&MAC_A));
    }

    #[test]
    fn neighbor_solicitation_construction() {
        let ours: Ipv6Addr = "fd99::2".parse().unwrap();
        let target: Ipv6Addr = "fd99::1".parse().unwrap();
        let f = build_neighbor_solicitation(MAC_A, &ours, &target);
        assert_eq!(f.len(), 14 + 40 + 32);
        let eth = parse_ethernet(&f).unwrap();
        assert_eq!(eth.dst, [0x33, 0x33, 0xff, 0, 0, 1]);
        let Some(Parsed::NeighborSolicitation { ip, ns, eth_src }) = parse_frame(&f) else {
            panic!("not NS")
        };
        assert_eq!(eth_src, MAC_A);
        assert_eq!(ip.dst, "ff02::1:ff00:1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ip.src, ours);
        assert_eq!(ip.hop_limit, 255);
        assert_eq!(
            ns,
            NeighborSolicitation {
                target,
                source_lla: Some(MAC_A)
            }
        );
        assert_truncations_rejected(&f);
    }

    #[test]
    fn neighbor_advertisement_construction() {
        let ours: Ipv6Addr = "fd99::2".parse().unwrap();
        let peer: Ipv6Addr = "fd99::1".parse().unwrap();
        let f = build_neighbor_advertisement(MAC_A, &ours, MAC_B, &peer, true);
        let eth = parse_ethernet(&f).unwrap();
        assert_eq!((eth.dst, eth.src), (MAC_B, MAC_A));
        let Some(Parsed::NeighborAdvertisement { ip, na, .. }) = parse_frame(&f) else {
            panic!("not NA")
        };
        assert_eq!((ip.src, ip.dst, ip.hop_limit), (ours, peer, 255));
        assert_eq!(na.flags, NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE);
        assert_eq!(na.target, ours);
        assert_eq!(na.target_lla, Some(MAC_A));
        let unsol = build_neighbor_advertisement(MAC_A, &ours, MAC_B, &peer, false);
        let Some(Parsed::NeighborAdvertisement { na, .. }) = parse_frame(&unsol) else {
            panic!("not NA")
        };
        assert_eq!(na.flags, NA_FLAG_OVERRIDE);
        assert_truncations_rejected(&f);
    }

    #[test]
    fn ndp_hop_limit_and_bad_options_rejected() {
        let ours: Ipv6Addr = "fd99::2".parse().unwrap();
        let target: Ipv6Addr = "fd99::1".parse().unwrap();
        let f = build_neighbor_solicitation(MAC_A, &ours, &target);
        // Hop limit 64 -> not a valid NDP message.
        let mut hl = f.clone();
        hl[ETH_HLEN + 7] = 64;
        assert!(parse_frame(&hl).is_none());
        // Zero-length option -> discarded (parse only, no checksum involved).
        let ip = parse_ipv6(&f[ETH_HLEN..]).unwrap();
        let mut body = ip.payload.to_vec();
        body[NDP_BODY_LEN + 1] = 0;
        assert!(parse_neighbor_solicitation(&body).is_none());
        // Option running past the end -> discarded.
        body[NDP_BODY_LEN + 1] = 2;
        assert!(parse_neighbor_solicitation(&body).is_none());
        // No options at all -> fine, no LLA.
        let ns = parse_neighbor_solicitation(&body[..NDP_BODY_LEN]).unwrap();
        assert_eq!(ns.source_lla, None);
        // Multicast target -> invalid.
        let mut mc = body[..NDP_BODY_LEN].to_vec();
        mc[8] = 0xff;
        assert!(parse_neighbor_solicitation(&mc).is_none());
    }

    #[test]
    fn garbage_is_ignored() {
        assert!(parse_frame(&[]).is_none());
        assert!(parse_frame(&[0xff; 13]).is_none());
        assert!(parse_frame(&[0xff; 100]).is_none());
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        f.extend_from_slice(&[0x60, 0, 0, 0, 0xff, 0xff, 58, 255]); // huge payload len
        assert!(parse_frame(&f).is_none());
        // Router solicitation (type 133) is ignored.
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let dst: Ipv6Addr = "ff02::2".parse().unwrap();
        let mut rs = vec![133, 0, 0, 0, 0, 0, 0, 0];
        let c = icmpv6_checksum(&src, &dst, &rs);
        rs[2..4].copy_from_slice(&c.to_be_bytes());
        let ip = build_ipv6(&src, &dst, IPPROTO_ICMPV6, 255, &rs).unwrap();
        assert!(parse_frame(&build_ethernet(MAC_B, MAC_A, ETHERTYPE_IPV6, &ip)).is_none());
    }
}
