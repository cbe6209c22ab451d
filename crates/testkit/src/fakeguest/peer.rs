//! Host-side pinger: raw ICMP/ICMPv6 socket in the calling thread's netns.
//!
//! The socket is bound to the network namespace of the thread that creates
//! it, so callers `setns()` a thread into the peer namespace first.

use std::net::{IpAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrIn6,
    SockaddrStorage,
};

use super::FakeGuestError;
use super::packet::{self, EchoKind};

const PAYLOAD: &[u8; 56] = b"fakeguest-peer-ping-0123456789abcdefghijklmnopqrstuvwxyz";

static PEER_ID_COUNTER: AtomicU16 = AtomicU16::new(0x4000);

/// Send `count` ICMP (or ICMPv6) echo requests to `target` with a raw socket
/// created in the calling thread's netns, waiting up to `timeout` for each
/// reply. Returns the RTTs of the replies (matched by id + seq + source);
/// errors if none arrive.
pub fn ping_from_current_netns(
    target: IpAddr,
    count: u32,
    timeout: Duration,
) -> Result<Vec<Duration>, FakeGuestError> {
    if count == 0 {
        return Err(FakeGuestError::ZeroCount { target });
    }
    let ctx = format!("peer ping {target}");
    let (family, proto) = match target {
        IpAddr::V4(_) => (AddressFamily::Inet, SockProtocol::Icmp),
        IpAddr::V6(_) => (AddressFamily::Inet6, SockProtocol::IcmpV6),
    };
    let sock: OwnedFd =
        nix::sys::socket::socket(family, SockType::Raw, SockFlag::SOCK_CLOEXEC, proto)
            .map_err(|e| FakeGuestError::sys(format!("{ctx}: create raw socket"), e))?;
    let id = PEER_ID_COUNTER
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_add(std::process::id() as u16);

    let mut rtts = Vec::new();
    let mut buf = vec![0u8; 65536];
    for n in 1..=count {
        let seq = n as u16;
        let sent = match target {
            IpAddr::V4(t) => {
                let msg = packet::build_icmpv4_echo(EchoKind::Request, id, seq, PAYLOAD);
                send_to(
                    &sock,
                    &msg,
                    &SockaddrIn::from(SocketAddrV4::new(t, 0)),
                    &ctx,
                )?
            }
            IpAddr::V6(t) => {
                // Raw ICMPv6 sockets: the kernel fills in the checksum.
                let msg = packet::build_icmpv6_echo(EchoKind::Request, id, seq, PAYLOAD, None);
                send_to(
                    &sock,
                    &msg,
                    &SockaddrIn6::from(SocketAddrV6::new(t, 0, 0, 0)),
                    &ctx,
                )?
            }
        };
        let deadline = sent + timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                tracing::debug!(%target, seq, "peer echo request timed out");
                break;
            }
            let ms = (deadline - now)
                .saturating_add(Duration::from_micros(999))
                .as_millis();
            let pt = PollTimeout::try_from(ms.min(i32::MAX as u128)).unwrap_or(PollTimeout::MAX);
            let mut pfds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
            match nix::poll::poll(&mut pfds, pt) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(FakeGuestError::sys(format!("{ctx}: poll raw socket"), e)),
            }
            let (len, from) =
                match nix::sys::socket::recvfrom::<SockaddrStorage>(sock.as_raw_fd(), &mut buf) {
                    Ok(r) => r,
                    Err(Errno::EAGAIN | Errno::EINTR) => continue,
                    Err(e) => {
                        return Err(FakeGuestError::sys(
                            format!("{ctx}: recvfrom raw socket"),
                            e,
                        ));
                    }
                };
            let at = Instant::now();
            let data = buf.get(..len).unwrap_or(&[]);
            if is_our_reply(target, data, from.as_ref(), id, seq) {
                let rtt = at.saturating_duration_since(sent);
                tracing::debug!(%target, seq, ?rtt, "peer echo reply");
                rtts.push(rtt);
                break;
            }
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

fn send_to(
    sock: &OwnedFd,
    msg: &[u8],
    addr: &dyn nix::sys::socket::SockaddrLike,
    ctx: &str,
) -> Result<Instant, FakeGuestError> {
    loop {
        let now = Instant::now();
        match nix::sys::socket::sendto(sock.as_raw_fd(), msg, addr, MsgFlags::empty()) {
            Ok(n) if n == msg.len() => return Ok(now),
            Ok(n) => {
                return Err(FakeGuestError::ShortWrite {
                    context: format!("{ctx}: sendto"),
                    written: n,
                    len: msg.len(),
                });
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(FakeGuestError::sys(format!("{ctx}: sendto"), e)),
        }
    }
}

/// Does a datagram read from the raw socket carry the reply we wait for?
/// IPv4 raw sockets deliver the IP header; IPv6 ones only the ICMPv6 message.
fn is_our_reply(
    target: IpAddr,
    data: &[u8],
    from: Option<&SockaddrStorage>,
    id: u16,
    seq: u16,
) -> bool {
    let echo = match target {
        IpAddr::V4(t) => match packet::parse_ipv4(data) {
            Some(ip) if ip.src == t && ip.protocol == packet::IPPROTO_ICMP => {
                packet::parse_icmpv4_echo(ip.payload)
            }
            _ => None,
        },
        IpAddr::V6(t) => {
            let src = from.and_then(|f| f.as_sockaddr_in6()).map(|s| s.ip());
            if src == Some(t) {
                packet::parse_icmpv6_echo(data)
            } else {
                None
            }
        }
    };
    echo.is_some_and(|e| e.kind == EchoKind::Reply && e.id == id && e.seq == seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn reply_matching_v4() {
        let t = Ipv4Addr::new(10, 0, 0, 2);
        let icmp = packet::build_icmpv4_echo(EchoKind::Reply, 7, 3, b"abc");
        let ip = packet::build_ipv4(t, Ipv4Addr::new(10, 0, 0, 1), 1, 64, 0, &icmp).unwrap();
        assert!(is_our_reply(IpAddr::V4(t), &ip, None, 7, 3));
        assert!(!is_our_reply(IpAddr::V4(t), &ip, None, 7, 4));
        assert!(!is_our_reply(IpAddr::V4(t), &ip, None, 8, 3));
        assert!(!is_our_reply(
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)),
            &ip,
            None,
            7,
            3
        ));
        for n in 0..ip.len() {
            assert!(!is_our_reply(IpAddr::V4(t), &ip[..n], None, 7, 3));
        }
        let req = packet::build_icmpv4_echo(EchoKind::Request, 7, 3, b"abc");
        let ip = packet::build_ipv4(t, Ipv4Addr::new(10, 0, 0, 1), 1, 64, 0, &req).unwrap();
        assert!(!is_our_reply(IpAddr::V4(t), &ip, None, 7, 3));
    }

    #[test]
    fn reply_matching_v6() {
        let t: Ipv6Addr = "fd00::2".parse().unwrap();
        let from = SockaddrStorage::from(SocketAddrV6::new(t, 0, 0, 0));
        let other = SockaddrStorage::from(SocketAddrV6::new("fd00::3".parse().unwrap(), 0, 0, 0));
        let msg = packet::build_icmpv6_echo(EchoKind::Reply, 7, 3, b"abc", None);
        assert!(is_our_reply(IpAddr::V6(t), &msg, Some(&from), 7, 3));
        assert!(!is_our_reply(IpAddr::V6(t), &msg, Some(&other), 7, 3));
        assert!(!is_our_reply(IpAddr::V6(t), &msg, None, 7, 3));
        for n in 0..8 {
            assert!(!is_our_reply(IpAddr::V6(t), &msg[..n], Some(&from), 7, 3));
        }
    }
}
