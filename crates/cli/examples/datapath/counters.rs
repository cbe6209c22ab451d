//! Where the counters come from: schedstat, /proc/stat, a link's 64-bit statistics.

use std::fs;
use std::path::Path;

use netlink_packet_core::{DecodeError, Parseable};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use sandbox_net::netlink::Netlink;

use crate::R;

/// The CPU time (ns) a task has run, from `/proc/.../schedstat` (its first field). Without
/// IRQ time accounting (this kernel: tick based) it includes the softirqs run in its context.
pub fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

pub fn task_cpu_ns(path: &Path) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|t| parse_schedstat(&t))
        .unwrap_or(0)
}

/// Per-CPU (busy, total) jiffies from `/proc/stat`: busy = user + nice + system + irq +
/// softirq; total adds idle, iowait and steal.
pub fn parse_proc_stat(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .take(8)
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            let at = |i: usize| v.get(i).copied().unwrap_or(0);
            let busy = at(0) + at(1) + at(2) + at(5) + at(6);
            (busy, busy + at(3) + at(4) + at(7))
        })
        .collect()
}

/// The counters of a link that tell where frames went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

/// Decode an `RTM_NEWLINK` answer's 64-bit statistics.
pub fn parse_link_stats(payload: &[u8]) -> Result<LinkStats, DecodeError> {
    let msg = LinkMessage::parse(payload)?;
    for attr in msg.attributes {
        if let LinkAttribute::Stats64(s) = attr {
            return Ok(LinkStats {
                rx_packets: s.rx_packets,
                tx_packets: s.tx_packets,
                rx_dropped: s.rx_dropped,
                tx_dropped: s.tx_dropped,
            });
        }
    }
    Err(DecodeError::from("the link answer carries no IFLA_STATS64"))
}

pub fn link_stats(nl: &mut Netlink, index: u32) -> R<LinkStats> {
    let mut req = LinkMessage::default();
    req.header.index = index;
    nl.get_with(
        RouteNetlinkMessage::GetLink(req),
        libc::RTM_NEWLINK,
        parse_link_stats,
    )
    .map_err(|e| format!("link stats of ifindex {index}: {}", e.into_io()).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;
    use netlink_packet_route::link::Stats64;

    #[test]
    fn proc_counters_parse() {
        assert_eq!(
            parse_schedstat("34040703401 89180699348 73795\n"),
            Some(34040703401)
        );
        assert_eq!(parse_schedstat(""), None);
        let stat = "cpu  10 1 5 100 2 0 3 4 0 0\ncpu0 4 0 2 50 1 0 1 2 0 0\ncpu1 6 1 3 50 1 0 2 2 0 0\nintr 1 2\n";
        // busy = user + nice + system + irq + softirq; total adds idle, iowait, steal.
        assert_eq!(parse_proc_stat(stat), vec![(7, 60), (12, 65)]);
    }

    #[test]
    fn link_stats_come_from_ifla_stats64() {
        let mut stats = Stats64::default();
        stats.rx_packets = 11;
        stats.tx_packets = 22;
        stats.rx_dropped = 3;
        stats.tx_dropped = 4;
        let mut msg = LinkMessage::default();
        msg.header.index = 3;
        msg.attributes = vec![
            LinkAttribute::IfName("tap0".into()),
            LinkAttribute::Stats64(stats),
        ];
        let mut bytes = vec![0u8; msg.buffer_len()];
        msg.emit(&mut bytes);
        assert_eq!(
            parse_link_stats(&bytes).unwrap(),
            LinkStats {
                rx_packets: 11,
                tx_packets: 22,
                rx_dropped: 3,
                tx_dropped: 4
            }
        );
        msg.attributes.truncate(1);
        let mut bytes = vec![0u8; msg.buffer_len()];
        msg.emit(&mut bytes);
        assert!(parse_link_stats(&bytes).is_err());
    }
}
