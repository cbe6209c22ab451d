//! A minimal TCP client for the fake guest: connect, read what the server sends until it
//! closes, reset. Enough to tell which listener a connection reached (a server that
//! sends its name and closes) and whether a connection is let through at all.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use super::packet;
use super::{DEFAULT_TTL, Event, FakeGuest, FakeGuestError};

pub const IPPROTO_TCP: u8 = 6;
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;
const TCP_HLEN: usize = 20;
/// How often a SYN is sent again while no answer comes.
const SYN_RETRANSMIT: Duration = Duration::from_millis(500);
/// The largest amount of data kept from one connection.
const MAX_DATA: usize = 64 * 1024;

static PORT_COUNTER: AtomicU16 = AtomicU16::new(0);

/// One TCP segment addressed to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub src: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub payload: Vec<u8>,
}

/// How a connection went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpOutcome {
    /// Connected; what the server sent before it closed (or the time ran out).
    Data(Vec<u8>),
    /// The connection was refused (a reset answered the SYN).
    Refused,
    /// Nothing answered the SYN in time (dropped on the way).
    NoAnswer,
}

fn get_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// The TCP checksum over the pseudo-header of `src` -> `dst` and `segment`.
fn checksum(src: IpAddr, dst: IpAddr, segment: &[u8]) -> u16 {
    let mut sum = 0;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            sum = packet::checksum_add(sum, &s.octets());
            sum = packet::checksum_add(sum, &d.octets());
            sum = packet::checksum_add(sum, &[0, IPPROTO_TCP]);
            sum = packet::checksum_add(sum, &(segment.len() as u16).to_be_bytes());
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            sum = packet::checksum_add(sum, &v6(s));
            sum = packet::checksum_add(sum, &v6(d));
            sum = packet::checksum_add(sum, &(segment.len() as u32).to_be_bytes());
            sum = packet::checksum_add(sum, &[0, 0, 0, IPPROTO_TCP]);
        }
    }
    packet::checksum_finish(packet::checksum_add(sum, segment))
}

/// A TCP segment (no options, window 65535) with its checksum.
#[allow(clippy::too_many_arguments)]
pub fn build_segment(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut s = Vec::with_capacity(TCP_HLEN + payload.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&seq.to_be_bytes());
    s.extend_from_slice(&ack.to_be_bytes());
    s.push((TCP_HLEN as u8 / 4) << 4);
    s.push(flags);
    s.extend_from_slice(&u16::MAX.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 0]);
    s.extend_from_slice(payload);
    let sum = checksum(src, dst, &s);
    s[16..18].copy_from_slice(&sum.to_be_bytes());
    s
}

/// Parse a TCP segment from `src` to `dst`, checking its checksum.
pub fn parse_segment(src: IpAddr, dst: IpAddr, b: &[u8]) -> Option<Segment> {
    let offset = usize::from(*b.get(12)? >> 4) * 4;
    if offset < TCP_HLEN || b.len() < offset || checksum(src, dst, b) != 0 {
        return None;
    }
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    Some(Segment {
        src,
        sport: get_u16(b, 0)?,
        dport: get_u16(b, 2)?,
        seq: word(4)?,
        ack: word(8)?,
        flags: *b.get(13)?,
        payload: b.get(offset..)?.to_vec(),
    })
}

/// The TCP segment an Ethernet frame carries to `ours` (an address of the guest).
pub fn parse_frame(frame: &[u8], ours: &[IpAddr]) -> Option<Segment> {
    let eth = packet::parse_ethernet(frame)?;
    let (src, dst, payload) = match eth.ethertype {
        packet::ETHERTYPE_IPV4 => {
            let ip = packet::parse_ipv4(eth.payload)?;
            (ip.protocol == IPPROTO_TCP).then_some(())?;
            (IpAddr::V4(ip.src), IpAddr::V4(ip.dst), ip.payload)
        }
        packet::ETHERTYPE_IPV6 => {
            let ip = packet::parse_ipv6(eth.payload)?;
            (ip.next_header == IPPROTO_TCP).then_some(())?;
            (IpAddr::V6(ip.src), IpAddr::V6(ip.dst), ip.payload)
        }
        _ => return None,
    };
    ours.contains(&dst).then_some(())?;
    parse_segment(src, dst, payload)
}

impl FakeGuest {
    /// The guest's addresses.
    pub(super) fn addresses(&self) -> Vec<IpAddr> {
        self.identity
            .ipv4
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.identity.ipv6.map(IpAddr::V6))
            .collect()
    }

    /// Send one TCP segment to `dst` through the next hop whose MAC is `mac`.
    #[allow(clippy::too_many_arguments)]
    fn send_segment(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        mac: [u8; 6],
        ports: (u16, u16),
        seq: u32,
        ack: u32,
        flags: u8,
        ctx: &str,
    ) -> Result<(), FakeGuestError> {
        let segment = build_segment(src, dst, ports.0, ports.1, seq, ack, flags, &[]);
        let (ethertype, ip) = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                self.ip_id = self.ip_id.wrapping_add(1);
                let ip = packet::build_ipv4(s, d, IPPROTO_TCP, DEFAULT_TTL, self.ip_id, &segment);
                (packet::ETHERTYPE_IPV4, ip)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let ip = packet::build_ipv6(&s, &d, IPPROTO_TCP, DEFAULT_TTL, &segment);
                (packet::ETHERTYPE_IPV6, ip)
            }
            _ => {
                return Err(FakeGuestError::FamilyMismatch {
                    target: dst,
                    via: src,
                });
            }
        };
        let ip = ip.ok_or_else(|| FakeGuestError::TooLarge {
            context: ctx.into(),
            len: segment.len(),
        })?;
        let frame = packet::build_ethernet(mac, self.identity.mac, ethertype, &ip);
        self.send(&frame, ctx)
    }

    /// Connect to `dst`:`port` (through the gateway `via`, or on-link), read what the
    /// server sends until it closes, then reset the connection. The SYN is sent again
    /// every 0.5 s; `timeout` bounds the whole exchange (resolving the next hop included).
    pub fn tcp_read(
        &mut self,
        dst: IpAddr,
        port: u16,
        via: Option<IpAddr>,
        timeout: Duration,
    ) -> Result<TcpOutcome, FakeGuestError> {
        let ctx = format!("tcp {dst} port {port}");
        let src = match dst {
            IpAddr::V4(_) => self.identity.ipv4.map(IpAddr::V4),
            IpAddr::V6(_) => self.identity.ipv6.map(IpAddr::V6),
        }
        .ok_or(FakeGuestError::NoSourceAddress {
            target: dst,
            family: if dst.is_ipv4() { "IPv4" } else { "IPv6" },
        })?;
        let next_hop = via.unwrap_or(dst);
        if next_hop.is_ipv4() != dst.is_ipv4() {
            return Err(FakeGuestError::FamilyMismatch {
                target: dst,
                via: next_hop,
            });
        }
        let deadline = Instant::now() + timeout;
        let mac = self.resolve(dst, next_hop, timeout)?;
        let sport = 40000 + PORT_COUNTER.fetch_add(1, Ordering::Relaxed) % 20000;
        let iss = (std::process::id() << 16) ^ u32::from(sport);
        let from_server = move |s: &Segment| s.src == dst && s.sport == port && s.dport == sport;
        // Handshake.
        let irs = loop {
            if Instant::now() >= deadline {
                return Ok(TcpOutcome::NoAnswer);
            }
            self.send_segment(src, dst, mac, (sport, port), iss, 0, SYN, &ctx)?;
            let until = (Instant::now() + SYN_RETRANSMIT).min(deadline);
            let answer = self.wait_for(until, &ctx, |ev| match ev {
                Event::Tcp(s) if from_server(s) => Some(s.clone()),
                _ => None,
            })?;
            match answer {
                Some(s) if s.flags & RST != 0 => return Ok(TcpOutcome::Refused),
                Some(s) if s.flags & (SYN | ACK) == SYN | ACK && s.ack == iss.wrapping_add(1) => {
                    break s.seq;
                }
                _ => {}
            }
        };
        let snd = iss.wrapping_add(1);
        let mut rcv = irs.wrapping_add(1);
        self.send_segment(src, dst, mac, (sport, port), snd, rcv, ACK, &ctx)?;
        // Data until the server's FIN (or a reset, or the deadline).
        let mut data = Vec::new();
        loop {
            let got = self.wait_for(deadline, &ctx, |ev| match ev {
                Event::Tcp(s) if from_server(s) => Some(s.clone()),
                _ => None,
            })?;
            let Some(s) = got else {
                break;
            };
            if s.flags & RST != 0 {
                break;
            }
            if s.seq == rcv {
                let room = MAX_DATA.saturating_sub(data.len());
                data.extend_from_slice(&s.payload[..s.payload.len().min(room)]);
                rcv = rcv.wrapping_add(s.payload.len() as u32);
                if s.flags & FIN != 0 {
                    rcv = rcv.wrapping_add(1);
                }
            }
            self.send_segment(src, dst, mac, (sport, port), snd, rcv, ACK, &ctx)?;
            if s.flags & FIN != 0 {
                break;
            }
        }
        self.send_segment(src, dst, mac, (sport, port), snd, rcv, RST | ACK, &ctx)?;
        Ok(TcpOutcome::Data(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip_with_their_checksum() {
        for (src, dst, other) in [
            ("10.0.0.2", "10.0.0.1", "10.0.0.3"),
            ("fd00::2", "fd00::1", "fd00::3"),
        ] {
            let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
            let other: IpAddr = other.parse().unwrap();
            let b = build_segment(src, dst, 40001, 80, 7, 9, 0x08 | ACK, b"hello");
            let s = parse_segment(src, dst, &b).expect("parses");
            assert_eq!(
                (s.sport, s.dport, s.seq, s.ack, s.flags),
                (40001, 80, 7, 9, 0x08 | ACK)
            );
            assert_eq!(s.payload, b"hello");
            // Another pseudo-header (or a flipped bit) fails the checksum.
            assert!(parse_segment(src, other, &b).is_none());
            let mut bad = b.clone();
            bad[20] ^= 1;
            assert!(parse_segment(src, dst, &bad).is_none());
            for n in 0..b.len() {
                assert!(parse_segment(src, dst, &b[..n]).is_none(), "{n}");
            }
        }
    }

    #[test]
    fn a_frame_for_someone_else_is_not_ours() {
        let (src, dst): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
            unreachable!()
        };
        let seg = build_segment(src, dst, 80, 40001, 1, 2, ACK, b"x");
        let ip = packet::build_ipv4(s, d, IPPROTO_TCP, 64, 1, &seg).unwrap();
        let frame = packet::build_ethernet([2; 6], [4; 6], packet::ETHERTYPE_IPV4, &ip);
        assert!(parse_frame(&frame, &[dst]).is_some());
        assert!(parse_frame(&frame, &[src]).is_none());
    }
}
