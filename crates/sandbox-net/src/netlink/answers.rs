//! The kernel answers sandbox-net decodes, as one list: every decoder of a dump or get
//! answer by its message type, what an answer is about (for error messages), and
//! [`decode`], which runs them all over arbitrary bytes exactly as a dump runs them over a
//! datagram (the fuzz target `netlink_answers` and its seeds drive it).

use netlink_packet_core::{NLMSG_DONE, NLMSG_ERROR};

use super::addr::{self, Address};
use super::link::{self, Link};
use super::neigh::{self, Neighbour};
use super::pneigh::{self, ProxyEntry};
use super::route::{self, Route};
use super::tc::{self, Qdisc, RedirectFilter};
use super::{NlError, htb, messages};

/// One decoded answer.
#[derive(Debug)]
pub enum Answer {
    Link(Link),
    /// An address message; None without an address.
    Address(Option<Address>),
    /// A route message; None for a family other than IPv4 and IPv6.
    Route(Option<Route>),
    /// A neighbour message; None without an IPv4 or IPv6 destination.
    Neighbour(Option<Neighbour>),
    /// A proxy neighbour message (NTF_PROXY); None without an address.
    Proxy(Option<ProxyEntry>),
    Qdisc(Qdisc),
    /// A filter message; None for one without a u32 selector.
    Filter(Option<RedirectFilter>),
    /// A class message: for the default HTB class of its own ifindex, its rate.
    Class(Option<Option<u64>>),
    /// NLMSG_DONE or NLMSG_ERROR: the error it ends a dump with, if any.
    End(Option<NlError>),
    /// A message of another type: not read.
    Other(u16),
}

/// What an answer of `message_type` is about, from its header (all but routes start
/// with the family and an ifindex at offset 4), for messages that name the object.
pub fn object(message_type: u16, payload: &[u8]) -> String {
    let what = match message_type {
        libc::RTM_NEWLINK => "link",
        libc::RTM_NEWADDR => "address",
        libc::RTM_NEWROUTE => return "a route".into(),
        libc::RTM_NEWNEIGH => "neighbour",
        libc::RTM_NEWQDISC => "qdisc",
        libc::RTM_NEWTCLASS => "class",
        libc::RTM_NEWTFILTER => "filter",
        other => return format!("message type {other}"),
    };
    match super::attr::u32_at(payload, 4) {
        Some(index) if message_type == libc::RTM_NEWLINK => format!("{what} ifindex {index}"),
        Some(index) => format!("{what} on ifindex {index}"),
        None => format!("{what} (header cut short)"),
    }
}

/// Decode every message of `datagram` with the decoder a dump of its type uses. Each
/// message gives its answer or the decode error (naming the object); a message length
/// that does not fit ends the list with an error, as it ends a dump.
pub fn decode(datagram: &[u8]) -> Vec<Result<Answer, String>> {
    let mut out = Vec::new();
    for message in messages(datagram) {
        let m = match message {
            Ok(m) => m,
            Err(e) => {
                out.push(Err(e.to_string()));
                break;
            }
        };
        let payload = &m.bytes[16..];
        let answer = match m.message_type {
            libc::RTM_NEWLINK => link::parse_link_payload(payload).map(Answer::Link),
            libc::RTM_NEWADDR => addr::parse_address_payload(payload).map(Answer::Address),
            libc::RTM_NEWROUTE => route::parse_route_payload(payload).map(Answer::Route),
            libc::RTM_NEWNEIGH if pneigh::is_proxy(payload) => {
                pneigh::parse(payload).map(Answer::Proxy)
            }
            libc::RTM_NEWNEIGH => neigh::parse_neighbour_payload(payload).map(Answer::Neighbour),
            libc::RTM_NEWQDISC => tc::parse_qdisc_payload(payload).map(Answer::Qdisc),
            libc::RTM_NEWTFILTER => tc::parse_filter_payload(payload).map(Answer::Filter),
            libc::RTM_NEWTCLASS => {
                let ifindex = super::attr::u32_at(payload, 4).unwrap_or(0);
                htb::parse_class_payload(payload, ifindex).map(Answer::Class)
            }
            NLMSG_DONE | NLMSG_ERROR => Ok(Answer::End(super::dump_end_error(
                m.message_type,
                m.flags,
                payload,
            ))),
            other => Ok(Answer::Other(other)),
        };
        out.push(answer.map_err(|e| format!("{}: {e}", object(m.message_type, payload))));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_named_from_the_header() {
        let mut payload = vec![0u8; 16];
        payload[4..8].copy_from_slice(&7u32.to_ne_bytes());
        assert_eq!(object(libc::RTM_NEWLINK, &payload), "link ifindex 7");
        assert_eq!(
            object(libc::RTM_NEWTFILTER, &payload),
            "filter on ifindex 7"
        );
        assert_eq!(object(libc::RTM_NEWROUTE, &payload), "a route");
        assert_eq!(
            object(libc::RTM_NEWADDR, &payload[..3]),
            "address (header cut short)"
        );
    }

    #[test]
    fn garbage_decodes_to_errors_not_panics() {
        assert!(decode(&[]).is_empty());
        // A header whose length is too large.
        let mut bad = vec![0u8; 16];
        bad[0..4].copy_from_slice(&64u32.to_ne_bytes());
        let got = decode(&bad);
        assert_eq!(got.len(), 1);
        assert!(got[0].is_err());
        // A link message with no room for its ifinfomsg.
        let mut short = vec![0u8; 20];
        short[0..4].copy_from_slice(&20u32.to_ne_bytes());
        short[4..6].copy_from_slice(&libc::RTM_NEWLINK.to_ne_bytes());
        let got = decode(&short);
        assert!(
            matches!(&got[..], [Err(e)] if e.contains("link")),
            "{got:?}"
        );
    }
}
