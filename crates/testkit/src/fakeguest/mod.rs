//! A "fake guest": a tiny userspace network stack that plays the VM on a tap
//! fd opened with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`.
//!
//! Every frame read from or written to the tap is prefixed by a 10-byte
//! `struct virtio_net_hdr` ([`VNET_HDR_LEN`]); we write zeros and skip it on
//! read. The tap has no offloads enabled (no `TUNSETOFFLOAD`), so the kernel
//! hands us frames with complete checksums.
//!
//! The guest answers ARP, IPv6 Neighbor Solicitations and ICMP/ICMPv6 echo
//! requests for its own addresses, and can ping a target. Everything else is
//! ignored.

pub mod packet;
pub mod peer;
pub mod tcp;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use packet::{EchoKind, Parsed};

/// Size of `struct virtio_net_hdr` (the tap's default vnet header size).
pub const VNET_HDR_LEN: usize = 10;
/// Read buffer: largest frame a tap without GSO can hand us, plus header.
const READ_BUF_LEN: usize = 65536 + VNET_HDR_LEN;
/// How often to repeat an ARP request / Neighbor Solicitation while resolving.
const RESOLVE_RETRANSMIT: Duration = Duration::from_millis(500);
/// Longest single poll while serving, so `stop` is noticed promptly.
const SERVE_POLL_SLICE: Duration = Duration::from_millis(50);
const DEFAULT_TTL: u8 = 64;
/// Echo request payload (56 bytes like ping(8)).
const PING_PAYLOAD: &[u8; 56] = b"fakeguest-ping-0123456789abcdefghijklmnopqrstuvwxyz01234";

/// Link-layer and IP identity of the fake guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestIdentity {
    pub mac: [u8; 6],
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

/// Counters of what the guest answered / saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeStats {
    /// ICMPv4 + ICMPv6 echo requests answered.
    pub echo_answered: u64,
    /// ARP requests answered.
    pub arp_answered: u64,
    /// Neighbor Solicitations answered.
    pub ndp_answered: u64,
    /// Frames read from the tap (any queue).
    pub frames_received: u64,
    /// Frames read that needed no action (malformed, not for us, MLD, RS...).
    pub frames_ignored: u64,
}

impl ServeStats {
    /// Counters accumulated since `earlier`.
    pub fn since(&self, earlier: &ServeStats) -> ServeStats {
        ServeStats {
            echo_answered: self.echo_answered.saturating_sub(earlier.echo_answered),
            arp_answered: self.arp_answered.saturating_sub(earlier.arp_answered),
            ndp_answered: self.ndp_answered.saturating_sub(earlier.ndp_answered),
            frames_received: self.frames_received.saturating_sub(earlier.frames_received),
            frames_ignored: self.frames_ignored.saturating_sub(earlier.frames_ignored),
        }
    }
}

fn via_note(target: &IpAddr, next_hop: &IpAddr) -> String {
    if target == next_hop {
        String::new()
    } else {
        format!(" (next hop for {target})")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FakeGuestError {
    #[error("resolve {next_hop}: no {what} within {within:?}{}", via_note(.target, .next_hop))]
    ResolveTimeout {
        target: IpAddr,
        next_hop: IpAddr,
        /// "ARP reply" or "neighbor advertisement".
        what: &'static str,
        within: Duration,
    },
    #[error("ping {target}: no echo reply to {count} request(s) within {timeout:?} each")]
    NoReply {
        target: IpAddr,
        count: u32,
        timeout: Duration,
    },
    #[error("ping {target}: guest has no {family} address")]
    NoSourceAddress {
        target: IpAddr,
        family: &'static str,
    },
    #[error("ping {target} via {via}: address families differ")]
    FamilyMismatch { target: IpAddr, via: IpAddr },
    #[error("ping {target}: count must be at least 1")]
    ZeroCount { target: IpAddr },
    #[error("{context}: no tap fds given")]
    NoQueues { context: String },
    #[error("{context}: tap queue {queue} poll reported {revents:?}")]
    QueueError {
        context: String,
        queue: usize,
        revents: PollFlags,
    },
    #[error("{context}: short write ({written} of {len} bytes)")]
    ShortWrite {
        context: String,
        written: usize,
        len: usize,
    },
    #[error("{context}: packet of {len} bytes too large")]
    TooLarge { context: String, len: usize },
    #[error("open tap {name:?}: invalid interface name")]
    InvalidTapName { name: String },
    #[error("{context}: {source}")]
    Sys {
        context: String,
        #[source]
        source: Errno,
    },
}

impl FakeGuestError {
    fn sys(context: impl Into<String>, source: Errno) -> Self {
        FakeGuestError::Sys {
            context: context.into(),
            source,
        }
    }
}

/// Something the ping (or TCP) logic waits for.
#[derive(Debug, Clone)]
enum Event {
    /// A TCP segment for one of the guest's addresses (see [`tcp`]).
    Tcp(tcp::Segment),
    Resolved(IpAddr, [u8; 6]),
    EchoReply {
        src: IpAddr,
        id: u16,
        seq: u16,
        at: Instant,
    },
}

static ECHO_ID_COUNTER: AtomicU16 = AtomicU16::new(0);

/// The fake guest. See the module docs.
pub struct FakeGuest {
    fds: Vec<OwnedFd>,
    identity: GuestIdentity,
    neighbours: HashMap<IpAddr, [u8; 6]>,
    stats: ServeStats,
    rx_per_queue: Vec<u64>,
    buf: Vec<u8>,
    ip_id: u16,
}

impl FakeGuest {
    /// `fds` are tap queues (vnet header enabled); frames are sent on the
    /// first one and read from all of them.
    pub fn new(fds: Vec<OwnedFd>, identity: GuestIdentity) -> Self {
        FakeGuest {
            rx_per_queue: vec![0; fds.len()],
            fds,
            identity,
            neighbours: HashMap::new(),
            stats: ServeStats::default(),
            buf: vec![0; READ_BUF_LEN],
            ip_id: 1,
        }
    }

    pub fn identity(&self) -> &GuestIdentity {
        &self.identity
    }

    /// Cumulative counters since creation.
    pub fn stats(&self) -> ServeStats {
        self.stats
    }

    /// Frames read from each queue (same order as the fds given to `new`).
    pub fn frames_per_queue(&self) -> &[u64] {
        &self.rx_per_queue
    }

    /// Learned neighbour MAC for `ip`, if any.
    pub fn neighbour(&self, ip: &IpAddr) -> Option<[u8; 6]> {
        self.neighbours.get(ip).copied()
    }

    /// Forget all learned neighbours (forces re-resolution on next ping).
    pub fn forget_neighbours(&mut self) {
        self.neighbours.clear();
    }

    /// Ping `target` `count` times, waiting up to `timeout` for each reply
    /// (and up to `timeout` to resolve the next hop). `via` is the next hop
    /// (gateway) whose MAC to use; `None` means the target is on-link.
    /// Returns the RTTs of the replies received; errors if none arrive.
    pub fn ping(
        &mut self,
        target: IpAddr,
        via: Option<IpAddr>,
        count: u32,
        timeout: Duration,
    ) -> Result<Vec<Duration>, FakeGuestError> {
        let next_hop = via.unwrap_or(target);
        if target.is_ipv4() != next_hop.is_ipv4() {
            return Err(FakeGuestError::FamilyMismatch {
                target,
                via: next_hop,
            });
        }
        if count == 0 {
            return Err(FakeGuestError::ZeroCount { target });
        }
        let src = match target {
            IpAddr::V4(_) => self.identity.ipv4.map(IpAddr::V4),
            IpAddr::V6(_) => self.identity.ipv6.map(IpAddr::V6),
        }
        .ok_or(FakeGuestError::NoSourceAddress {
            target,
            family: if target.is_ipv4() { "IPv4" } else { "IPv6" },
        })?;
        let dst_mac = self.resolve(target, next_hop, timeout)?;

        let id = ECHO_ID_COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(std::process::id() as u16);
        let ctx = || format!("ping {target}");
        let mut rtts = Vec::new();
        for n in 1..=count {
            let seq = n as u16; // wraps after 65535 requests; fine for matching
            let frame = self
                .echo_frame(
                    EchoKind::Request,
                    src,
                    target,
                    dst_mac,
                    id,
                    seq,
                    PING_PAYLOAD,
                )
                .ok_or_else(|| FakeGuestError::TooLarge {
                    context: ctx(),
                    len: PING_PAYLOAD.len(),
                })?;
            let sent = Instant::now();
            self.send(&frame, &ctx())?;
            let deadline = sent + timeout;
            let got = self.wait_for(deadline, &ctx(), |ev| match ev {
                Event::EchoReply {
                    src: s,
                    id: i,
                    seq: q,
                    at,
                } if *s == target && *i == id && *q == seq => Some(*at),
                _ => None,
            })?;
            match got {
                Some(at) => {
                    let rtt = at.saturating_duration_since(sent);
                    tracing::debug!(%target, seq, ?rtt, "echo reply");
                    rtts.push(rtt);
                }
                None => tracing::debug!(%target, seq, "echo request timed out"),
            }
        }
        if rtts.is_empty() {
            return Err(FakeGuestError::NoReply {
                target,
                count,
                timeout,
            });
        }
        Ok(rtts)
    }

    /// Answer ARP/NDP/echo until `stop` becomes true or `deadline` passes.
    /// Returns what was answered during this call (see [`Self::stats`] for
    /// the cumulative counters).
    pub fn serve(
        &mut self,
        stop: &AtomicBool,
        deadline: Instant,
    ) -> Result<ServeStats, FakeGuestError> {
        let before = self.stats;
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            self.poll_once((deadline - now).min(SERVE_POLL_SLICE), "serve")?;
        }
        Ok(self.stats.since(&before))
    }

    /// MAC of `next_hop`, from the cache or via ARP / NDP.
    fn resolve(
        &mut self,
        target: IpAddr,
        next_hop: IpAddr,
        timeout: Duration,
    ) -> Result<[u8; 6], FakeGuestError> {
        if let Some(mac) = self.neighbours.get(&next_hop) {
            return Ok(*mac);
        }
        let (request, what) = match next_hop {
            IpAddr::V4(ip) => {
                let ours = self.identity.ipv4.ok_or(FakeGuestError::NoSourceAddress {
                    target,
                    family: "IPv4",
                })?;
                (
                    packet::build_arp_request(self.identity.mac, ours, ip),
                    "ARP reply",
                )
            }
            IpAddr::V6(ip) => {
                let ours = self.identity.ipv6.ok_or(FakeGuestError::NoSourceAddress {
                    target,
                    family: "IPv6",
                })?;
                (
                    packet::build_neighbor_solicitation(self.identity.mac, &ours, &ip),
                    "neighbor advertisement",
                )
            }
        };
        let ctx = format!("resolve {next_hop}");
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            tracing::debug!(%next_hop, "sending {}", if next_hop.is_ipv4() { "ARP request" } else { "neighbor solicitation" });
            self.send(&request, &ctx)?;
            let slice_end = (now + RESOLVE_RETRANSMIT).min(deadline);
            let found = self.wait_for(slice_end, &ctx, |ev| match ev {
                Event::Resolved(ip, mac) if *ip == next_hop => Some(*mac),
                _ => None,
            })?;
            if let Some(mac) = found {
                return Ok(mac);
            }
        }
        Err(FakeGuestError::ResolveTimeout {
            target,
            next_hop,
            what,
            within: timeout,
        })
    }

    /// Process frames until `pick` returns `Some` for an event or `deadline`
    /// passes (then `Ok(None)`).
    fn wait_for<T>(
        &mut self,
        deadline: Instant,
        ctx: &str,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> Result<Option<T>, FakeGuestError> {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let events = self.poll_once(deadline - now, ctx)?;
            if let Some(v) = events.iter().find_map(&mut pick) {
                return Ok(Some(v));
            }
        }
    }

    /// Poll all queues once (up to `timeout`), read one frame from each
    /// readable queue and handle it.
    fn poll_once(&mut self, timeout: Duration, ctx: &str) -> Result<Vec<Event>, FakeGuestError> {
        if self.fds.is_empty() {
            return Err(FakeGuestError::NoQueues {
                context: ctx.into(),
            });
        }
        // Round up so a sub-millisecond remainder doesn't become a busy loop.
        let ms = timeout
            .saturating_add(Duration::from_micros(999))
            .as_millis();
        let poll_timeout =
            PollTimeout::try_from(ms.min(i32::MAX as u128)).unwrap_or(PollTimeout::MAX);
        let mut ready = Vec::with_capacity(self.fds.len());
        {
            let mut pfds: Vec<PollFd> = self
                .fds
                .iter()
                .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
                .collect();
            match nix::poll::poll(&mut pfds, poll_timeout) {
                Ok(0) | Err(Errno::EINTR) => return Ok(Vec::new()),
                Ok(_) => {}
                Err(e) => return Err(FakeGuestError::sys(format!("{ctx}: poll tap queues"), e)),
            }
            for (queue, pfd) in pfds.iter().enumerate() {
                let revents = pfd.revents().unwrap_or(PollFlags::empty());
                if revents.contains(PollFlags::POLLIN) {
                    ready.push(queue);
                } else if revents
                    .intersects(PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL)
                {
                    return Err(FakeGuestError::QueueError {
                        context: ctx.into(),
                        queue,
                        revents,
                    });
                }
            }
        }
        let mut events = Vec::new();
        let mut buf = std::mem::take(&mut self.buf);
        let result = (|| {
            for queue in ready {
                let Some(fd) = self.fds.get(queue) else {
                    continue;
                };
                let n = match nix::unistd::read(fd, &mut buf) {
                    Ok(n) => n,
                    Err(Errno::EAGAIN | Errno::EINTR) => continue,
                    Err(e) => {
                        return Err(FakeGuestError::sys(
                            format!("{ctx}: read tap queue {queue}"),
                            e,
                        ));
                    }
                };
                self.stats.frames_received += 1;
                if let Some(c) = self.rx_per_queue.get_mut(queue) {
                    *c += 1;
                }
                let frame = buf.get(VNET_HDR_LEN..n).unwrap_or(&[]);
                if let Some(ev) = self.handle_frame(frame, ctx)? {
                    events.push(ev);
                }
            }
            Ok(())
        })();
        self.buf = buf;
        result.map(|()| events)
    }

    /// React to one Ethernet frame: answer requests, learn neighbours, and
    /// report events the ping logic may be waiting for.
    fn handle_frame(&mut self, frame: &[u8], ctx: &str) -> Result<Option<Event>, FakeGuestError> {
        let me = self.identity;
        let for_us = packet::parse_ethernet(frame)
            .is_some_and(|eth| eth.dst == me.mac || packet::is_multicast_mac(&eth.dst));
        let parsed = if for_us {
            packet::parse_frame(frame)
        } else {
            None
        };
        if for_us
            && parsed.is_none()
            && let Some(segment) = tcp::parse_frame(frame, &self.addresses())
        {
            return Ok(Some(Event::Tcp(segment)));
        }
        let mut answered = false;
        let mut event = None;
        match parsed {
            Some(Parsed::Arp(arp)) if Some(arp.target_ip) == me.ipv4 => {
                // Learn the sender from any ARP aimed at our address.
                if arp.sender_ip != Ipv4Addr::UNSPECIFIED
                    && !packet::is_multicast_mac(&arp.sender_mac)
                {
                    self.neighbours
                        .insert(IpAddr::V4(arp.sender_ip), arp.sender_mac);
                    event = Some(Event::Resolved(IpAddr::V4(arp.sender_ip), arp.sender_mac));
                }
                if arp.op == packet::ARP_OP_REQUEST {
                    let reply = packet::build_arp_reply(me.mac, arp.target_ip, &arp);
                    tracing::debug!(asker = %arp.sender_ip, "answering ARP request");
                    self.send(&reply, ctx)?;
                    self.stats.arp_answered += 1;
                    answered = true;
                } else {
                    answered = arp.op == packet::ARP_OP_REPLY;
                }
            }
            Some(Parsed::EchoV4 { eth_src, ip, echo }) if Some(ip.dst) == me.ipv4 => {
                match echo.kind {
                    EchoKind::Request => {
                        if let Some(reply) = self.echo_frame(
                            EchoKind::Reply,
                            IpAddr::V4(ip.dst),
                            IpAddr::V4(ip.src),
                            eth_src,
                            echo.id,
                            echo.seq,
                            echo.data,
                        ) {
                            tracing::debug!(src = %ip.src, seq = echo.seq, "answering ICMP echo request");
                            self.send(&reply, ctx)?;
                            self.stats.echo_answered += 1;
                            answered = true;
                        }
                    }
                    EchoKind::Reply => {
                        answered = true;
                        event = Some(Event::EchoReply {
                            src: IpAddr::V4(ip.src),
                            id: echo.id,
                            seq: echo.seq,
                            at: Instant::now(),
                        });
                    }
                }
            }
            Some(Parsed::EchoV6 { eth_src, ip, echo }) if Some(ip.dst) == me.ipv6 => {
                match echo.kind {
                    EchoKind::Request => {
                        if let Some(reply) = self.echo_frame(
                            EchoKind::Reply,
                            IpAddr::V6(ip.dst),
                            IpAddr::V6(ip.src),
                            eth_src,
                            echo.id,
                            echo.seq,
                            echo.data,
                        ) {
                            tracing::debug!(src = %ip.src, seq = echo.seq, "answering ICMPv6 echo request");
                            self.send(&reply, ctx)?;
                            self.stats.echo_answered += 1;
                            answered = true;
                        }
                    }
                    EchoKind::Reply => {
                        answered = true;
                        event = Some(Event::EchoReply {
                            src: IpAddr::V6(ip.src),
                            id: echo.id,
                            seq: echo.seq,
                            at: Instant::now(),
                        });
                    }
                }
            }
            Some(Parsed::NeighborSolicitation { eth_src, ip, ns }) => {
                if let Some(ours) = me.ipv6.filter(|a| *a == ns.target) {
                    let dst_ok =
                        ip.dst == ours || ip.dst == packet::solicited_node_multicast(&ours);
                    if dst_ok {
                        let reply = if ip.src.is_unspecified() {
                            // DAD probe: defend with an unsolicited NA to all-nodes.
                            let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
                            packet::build_neighbor_advertisement(
                                me.mac,
                                &ours,
                                packet::ipv6_multicast_mac(&all_nodes),
                                &all_nodes,
                                false,
                            )
                        } else {
                            let mac = ns.source_lla.unwrap_or(eth_src);
                            if ns.source_lla.is_some() {
                                self.neighbours.insert(IpAddr::V6(ip.src), mac);
                            }
                            packet::build_neighbor_advertisement(me.mac, &ours, mac, &ip.src, true)
                        };
                        tracing::debug!(asker = %ip.src, "answering neighbor solicitation");
                        self.send(&reply, ctx)?;
                        self.stats.ndp_answered += 1;
                        answered = true;
                    }
                }
            }
            Some(Parsed::NeighborAdvertisement { eth_src, na, .. })
                if Some(na.target) != me.ipv6 =>
            {
                let mac = na.target_lla.unwrap_or(eth_src);
                self.neighbours.insert(IpAddr::V6(na.target), mac);
                event = Some(Event::Resolved(IpAddr::V6(na.target), mac));
                answered = true;
            }
            _ => {}
        }
        if !answered {
            self.stats.frames_ignored += 1;
        }
        Ok(event)
    }

    /// Full Ethernet frame carrying an ICMP(v6) echo message.
    #[allow(clippy::too_many_arguments)]
    fn echo_frame(
        &mut self,
        kind: EchoKind,
        src: IpAddr,
        dst: IpAddr,
        dst_mac: [u8; 6],
        id: u16,
        seq: u16,
        data: &[u8],
    ) -> Option<Vec<u8>> {
        let (ethertype, ip) = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let icmp = packet::build_icmpv4_echo(kind, id, seq, data);
                self.ip_id = self.ip_id.wrapping_add(1);
                (
                    packet::ETHERTYPE_IPV4,
                    packet::build_ipv4(s, d, packet::IPPROTO_ICMP, DEFAULT_TTL, self.ip_id, &icmp)?,
                )
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let icmp = packet::build_icmpv6_echo(kind, id, seq, data, Some((&s, &d)));
                (
                    packet::ETHERTYPE_IPV6,
                    packet::build_ipv6(&s, &d, packet::IPPROTO_ICMPV6, DEFAULT_TTL, &icmp)?,
                )
            }
            _ => return None,
        };
        Some(packet::build_ethernet(
            dst_mac,
            self.identity.mac,
            ethertype,
            &ip,
        ))
    }

    /// Write one frame (with a zeroed vnet header) to the first queue.
    fn send(&self, frame: &[u8], ctx: &str) -> Result<(), FakeGuestError> {
        let fd = self.fds.first().ok_or_else(|| FakeGuestError::NoQueues {
            context: ctx.into(),
        })?;
        let mut out = Vec::with_capacity(VNET_HDR_LEN + frame.len());
        out.extend_from_slice(&[0u8; VNET_HDR_LEN]);
        out.extend_from_slice(frame);
        loop {
            match nix::unistd::write(fd, &out) {
                Ok(n) if n == out.len() => return Ok(()),
                Ok(n) => {
                    return Err(FakeGuestError::ShortWrite {
                        context: format!("{ctx}: write tap queue 0"),
                        written: n,
                        len: out.len(),
                    });
                }
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(FakeGuestError::sys(format!("{ctx}: write tap queue 0"), e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_error_message() {
        let e = FakeGuestError::ResolveTimeout {
            target: "10.0.0.1".parse().unwrap(),
            next_hop: "10.0.0.1".parse().unwrap(),
            what: "ARP reply",
            within: Duration::from_secs(2),
        };
        assert_eq!(e.to_string(), "resolve 10.0.0.1: no ARP reply within 2s");
        let e = FakeGuestError::ResolveTimeout {
            target: "192.0.2.9".parse().unwrap(),
            next_hop: "10.0.0.1".parse().unwrap(),
            what: "ARP reply",
            within: Duration::from_millis(1500),
        };
        assert_eq!(
            e.to_string(),
            "resolve 10.0.0.1: no ARP reply within 1.5s (next hop for 192.0.2.9)"
        );
    }

    #[test]
    fn stats_since() {
        let a = ServeStats {
            echo_answered: 5,
            arp_answered: 2,
            ndp_answered: 1,
            frames_received: 10,
            frames_ignored: 2,
        };
        let b = ServeStats {
            echo_answered: 2,
            ..a
        };
        assert_eq!(a.since(&b).echo_answered, 3);
        assert_eq!(b.since(&a).echo_answered, 0);
        assert_eq!(a.since(&a), ServeStats::default());
    }

    #[test]
    fn ping_argument_errors() {
        let mut g = FakeGuest::new(
            Vec::new(),
            GuestIdentity {
                mac: [2, 0, 0, 0, 0, 1],
                ipv4: Some(Ipv4Addr::new(10, 0, 0, 2)),
                ipv6: None,
            },
        );
        let t: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "fd00::1".parse().unwrap();
        let d = Duration::from_millis(10);
        assert!(matches!(
            g.ping(t, Some(v6), 1, d),
            Err(FakeGuestError::FamilyMismatch { .. })
        ));
        assert!(matches!(
            g.ping(v6, None, 1, d),
            Err(FakeGuestError::NoSourceAddress { .. })
        ));
        assert!(matches!(
            g.ping(t, None, 0, d),
            Err(FakeGuestError::ZeroCount { .. })
        ));
        assert!(matches!(
            g.ping(t, None, 1, d),
            Err(FakeGuestError::NoQueues { .. })
        ));
        let stop = AtomicBool::new(false);
        assert!(matches!(
            g.serve(&stop, Instant::now() + d),
            Err(FakeGuestError::NoQueues { .. })
        ));
    }
}
