//! Traffic control: the ingress qdisc and the u32 match-all filter with a mirred
//! egress redirect that the tcfilter model is made of, plus dumps to read them back.

use netlink_packet_core::{DecodeError, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionGeneric, TcActionMirrorOption, TcActionOption,
    TcActionType, TcAttribute, TcFilterU32Option, TcHandle, TcHeader, TcMessage, TcMirror,
    TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};

use std::time::Duration;

use super::{Netlink, NlError, attr};

/// The handle of an ingress qdisc: `ffff:`.
const INGRESS_HANDLE: TcHandle = TcHandle {
    major: 0xffff,
    minor: 0,
};
/// ETH_P_ALL in network byte order, as tc filter headers carry it.
const ETH_P_ALL_BE: u32 = (libc::ETH_P_ALL as u16).to_be() as u32;

/// The priority of the redirect filters sandbox-net installs.
pub const REDIRECT_PRIO: u16 = 1;

fn filter_info(prio: u16) -> u32 {
    (u32::from(prio) << 16) | ETH_P_ALL_BE
}

fn ingress_msg(ifindex: u32) -> TcMessage {
    let mut msg = TcMessage::default();
    msg.header.index = ifindex as i32;
    msg.header.parent = TcHandle::INGRESS;
    msg.header.handle = INGRESS_HANDLE;
    msg.attributes.push(TcAttribute::Kind("ingress".into()));
    msg
}

/// The waits between tries when the kernel answers an ingress qdisc add with EBUSY (it
/// does while the device is being reconfigured): 6 tries, at most 31 ms of waiting.
pub const BUSY_BACKOFF: [Duration; 5] = [
    Duration::from_millis(1),
    Duration::from_millis(2),
    Duration::from_millis(4),
    Duration::from_millis(8),
    Duration::from_millis(16),
];

/// Run `op`, trying again after each wait of `backoff` while it fails with EBUSY. When it
/// is still busy after the last wait, the error says how many tries and how long.
pub fn retry_busy<T>(
    backoff: &[Duration],
    mut op: impl FnMut() -> Result<T, NlError>,
) -> Result<T, NlError> {
    let mut waits = backoff.iter();
    let mut tries = 0u32;
    loop {
        tries += 1;
        match op() {
            Err(e) if e.errno == libc::EBUSY => match waits.next() {
                Some(wait) => {
                    tracing::debug!(
                        tries,
                        wait_ms = wait.as_millis() as u64,
                        "kernel busy; retrying"
                    );
                    std::thread::sleep(*wait);
                }
                None => {
                    let waited: Duration = backoff.iter().sum();
                    let kernel = e.message.map(|m| format!(": {m}")).unwrap_or_default();
                    return Err(NlError {
                        errno: libc::EBUSY,
                        message: Some(format!(
                            "still busy after {tries} tries and {} ms of backoff{kernel}",
                            waited.as_millis()
                        )),
                    });
                }
            },
            other => return other,
        }
    }
}

/// Add an ingress qdisc; fails with EEXIST when the device already has one (or a clsact).
/// EBUSY is retried with [`BUSY_BACKOFF`].
pub fn add_ingress(nl: &mut Netlink, ifindex: u32) -> Result<(), NlError> {
    retry_busy(&BUSY_BACKOFF, || {
        nl.request(
            RouteNetlinkMessage::NewQueueDiscipline(ingress_msg(ifindex)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    })
}

/// Delete the ingress qdisc of a device (and with it every ingress filter).
pub fn del_ingress(nl: &mut Netlink, ifindex: u32) -> Result<(), NlError> {
    nl.request(
        RouteNetlinkMessage::DelQueueDiscipline(ingress_msg(ifindex)),
        0,
    )
}

/// The message for a u32 match-all filter on `from`'s ingress that redirects every frame
/// to the egress of `to`.
fn redirect_msg(from: u32, to: u32) -> TcMessage {
    let mut msg = TcMessage::default();
    msg.header.index = from as i32;
    msg.header.parent = INGRESS_HANDLE;
    msg.header.info = filter_info(REDIRECT_PRIO);
    msg.attributes.push(TcAttribute::Kind("u32".into()));
    let mut key = TcU32Key::default();
    key.mask = 0;
    key.val = 0;
    let mut selector = TcU32Selector::default();
    selector.flags = TcU32SelectorFlags::Terminal;
    selector.nkeys = 1;
    selector.keys = vec![key];
    let mut generic = TcActionGeneric::default();
    generic.action = TcActionType::Stolen;
    let mut mirror = TcMirror::default();
    mirror.generic = generic;
    mirror.eaction = TcMirrorActionType::EgressRedir;
    mirror.ifindex = to;
    let mut action = TcAction::default();
    action.tab = 1;
    action.attributes = vec![
        TcActionAttribute::Kind("mirred".into()),
        TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
            mirror,
        ))]),
    ];
    msg.attributes.push(TcAttribute::Options(vec![
        TcOption::U32(TcFilterU32Option::Selector(selector)),
        TcOption::U32(TcFilterU32Option::Action(vec![action])),
    ]));
    msg
}

/// Add the match-all redirect filter `from` ingress -> `to` egress.
pub fn add_redirect(nl: &mut Netlink, from: u32, to: u32) -> Result<(), NlError> {
    nl.request(
        RouteNetlinkMessage::NewTrafficFilter(redirect_msg(from, to)),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// Delete the redirect filter(s) sandbox-net installed on `from`'s ingress.
pub fn del_redirect(nl: &mut Netlink, from: u32) -> Result<(), NlError> {
    let mut msg = TcMessage::default();
    msg.header.index = from as i32;
    msg.header.parent = INGRESS_HANDLE;
    msg.header.info = filter_info(REDIRECT_PRIO);
    nl.request(RouteNetlinkMessage::DelTrafficFilter(msg), 0)
}

/// A dump request for the filters on `ifindex`'s ingress.
fn ingress_filters_request(ifindex: u32) -> RouteNetlinkMessage {
    let mut req = TcMessage::default();
    req.header.index = ifindex as i32;
    req.header.parent = INGRESS_HANDLE;
    RouteNetlinkMessage::GetTrafficFilter(req)
}

/// How many filters `ifindex`'s ingress holds, of any kind (one request). The answers are
/// counted, not decoded: a filter that would not decode still counts.
pub fn count_ingress_filters(nl: &mut Netlink, ifindex: u32) -> Result<usize, NlError> {
    let found = nl.dump_with(
        ingress_filters_request(ifindex),
        libc::RTM_NEWTFILTER,
        |_| Ok(Some(())),
    )?;
    Ok(found.len())
}

/// A qdisc as read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qdisc {
    pub ifindex: u32,
    pub kind: String,
    pub parent: u32,
    pub handle: u32,
}

/// TCA_* numbers (<linux/rtnetlink.h>).
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
/// Size of `struct tcmsg`, which precedes the attributes.
pub(crate) const TCMSG_LEN: usize = 20;

/// The header and the kind of a tc answer (qdisc, class or filter), and its TCA_OPTIONS.
pub(crate) fn parse_tc_payload(
    payload: &[u8],
) -> Result<(TcHeader, String, Option<&[u8]>), DecodeError> {
    let header = TcHeader::parse(payload)?;
    let mut kind = String::new();
    let mut options = None;
    for nla in attr::each(payload.get(TCMSG_LEN..).unwrap_or_default()) {
        match nla? {
            (TCA_KIND, value) => kind = attr::text(value),
            (TCA_OPTIONS, value) => options = Some(value),
            _ => {}
        }
    }
    Ok((header, kind, options))
}

/// Decode one RTM_NEWQDISC payload.
pub(crate) fn parse_qdisc_payload(payload: &[u8]) -> Result<Qdisc, DecodeError> {
    let (header, kind, _) = parse_tc_payload(payload)?;
    Ok(Qdisc {
        ifindex: header.index as u32,
        kind,
        parent: u32::from(header.parent),
        handle: u32::from(header.handle),
    })
}

/// Dump every qdisc of the netns (one request).
pub fn dump_qdiscs(nl: &mut Netlink) -> Result<Vec<Qdisc>, NlError> {
    nl.dump_with(
        RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()),
        libc::RTM_NEWQDISC,
        |payload| parse_qdisc_payload(payload).map(Some),
    )
}

/// A filter with a mirred action, as read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectFilter {
    pub ifindex: u32,
    pub prio: u16,
    /// Protocol in host byte order (ETH_P_ALL = 3 for a match-all).
    pub protocol: u16,
    pub kind: String,
    /// The match-all selector: one key with mask 0.
    pub match_all: bool,
    /// The mirred target and whether it is an egress redirect.
    pub target: Option<u32>,
    pub egress_redirect: bool,
}

/// TCA_U32_* inside a u32 filter's TCA_OPTIONS (<linux/pkt_cls.h>).
const TCA_U32_SEL: u16 = 5;
const TCA_U32_ACT: u16 = 7;
/// TCA_ACT_* inside each action.
const TCA_ACT_KIND: u16 = 1;
const TCA_ACT_OPTIONS: u16 = 2;
/// TCA_MIRRED_PARMS inside a mirred action's options (<linux/tc_act/tc_mirred.h>).
const TCA_MIRRED_PARMS: u16 = 2;
/// TCA_EGRESS_REDIR, `tc_mirred.eaction` of an egress redirect.
const TCA_EGRESS_REDIR: u32 = 1;
/// `struct tc_u32_sel` up to its keys, and one `struct tc_u32_key`.
const U32_SEL_LEN: usize = 16;
const U32_KEY_LEN: usize = 16;

/// Decode one RTM_NEWTFILTER payload; None for an answer without a u32 selector (the hash
/// table a u32 filter lives in). Only the header can fail: options that do not decode
/// make a filter that is kept but matches nothing of ours (not match-all, no target), so
/// it is never taken for one of ours nor overlooked as "nothing else there".
pub(crate) fn parse_filter_payload(payload: &[u8]) -> Result<Option<RedirectFilter>, DecodeError> {
    let header = TcHeader::parse(payload)?;
    let mut filter = RedirectFilter {
        ifindex: header.index as u32,
        prio: (header.info >> 16) as u16,
        protocol: u16::from_be((header.info & 0xffff) as u16),
        kind: String::new(),
        match_all: false,
        target: None,
        egress_redirect: false,
    };
    let has_selector = match parse_tc_payload(payload) {
        Ok((_, kind, options)) => {
            filter.kind = kind;
            match options.filter(|_| filter.kind == "u32") {
                Some(options) => read_u32_options(options, &mut filter).unwrap_or_else(|_| {
                    filter.match_all = false;
                    filter.target = None;
                    filter.egress_redirect = false;
                    true
                }),
                None => false,
            }
        }
        Err(_) => true,
    };
    Ok(has_selector.then_some(filter))
}

/// A u32 filter's selector and mirred action; whether it has a selector.
fn read_u32_options(options: &[u8], filter: &mut RedirectFilter) -> Result<bool, DecodeError> {
    let mut has_selector = false;
    for nla in attr::each(options) {
        match nla? {
            (TCA_U32_SEL, sel) => {
                has_selector = true;
                let nkeys = usize::from(sel.get(2).copied().unwrap_or(0));
                let keys = sel.get(U32_SEL_LEN..).unwrap_or_default();
                let masks: Vec<u32> = keys
                    .chunks_exact(U32_KEY_LEN)
                    .take(nkeys)
                    .filter_map(|key| attr::u32_at(key, 0))
                    .collect();
                filter.match_all =
                    nkeys > 0 && masks.len() == nkeys && masks.iter().all(|m| *m == 0);
            }
            (TCA_U32_ACT, actions) => read_mirred(actions, filter)?,
            _ => {}
        }
    }
    Ok(has_selector)
}

/// The target of a mirred action among `actions` (TCA_U32_ACT).
fn read_mirred(actions: &[u8], filter: &mut RedirectFilter) -> Result<(), DecodeError> {
    for action in attr::each(actions) {
        let (_, action) = action?;
        let mut kind = String::new();
        let mut options = None;
        for nla in attr::each(action) {
            match nla? {
                (TCA_ACT_KIND, value) => kind = attr::text(value),
                (TCA_ACT_OPTIONS, value) => options = Some(value),
                _ => {}
            }
        }
        let Some(options) = options.filter(|_| kind == "mirred") else {
            continue;
        };
        for nla in attr::each(options) {
            if let (TCA_MIRRED_PARMS, parms) = nla? {
                // struct tc_mirred: tc_gen (5 x 32 bits), eaction, ifindex.
                filter.egress_redirect = attr::u32_at(parms, 20) == Some(TCA_EGRESS_REDIR);
                filter.target = attr::u32_at(parms, 24);
            }
        }
    }
    Ok(())
}

/// Dump the filters on `ifindex`'s ingress that carry a selector (one request).
pub fn dump_ingress_filters(
    nl: &mut Netlink,
    ifindex: u32,
) -> Result<Vec<RedirectFilter>, NlError> {
    nl.dump_with(
        ingress_filters_request(ifindex),
        libc::RTM_NEWTFILTER,
        parse_filter_payload,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    #[test]
    fn filter_info_carries_prio_and_eth_p_all_in_network_order() {
        // ETH_P_ALL = 0x0003; on the wire (big endian) it reads 0x0300 on little-endian hosts.
        assert_eq!(filter_info(1) >> 16, 1);
        assert_eq!(u16::from_be((filter_info(1) & 0xffff) as u16), 3);
    }

    fn busy() -> NlError {
        NlError {
            errno: libc::EBUSY,
            message: None,
        }
    }

    #[test]
    fn ebusy_is_retried_until_it_clears() {
        let backoff = [Duration::ZERO; 5];
        let mut calls = 0;
        let r = retry_busy(&backoff, || {
            calls += 1;
            if calls < 4 { Err(busy()) } else { Ok(calls) }
        });
        assert_eq!(r.ok(), Some(4));
        assert_eq!(calls, 4);
    }

    #[test]
    fn ebusy_gives_up_after_the_last_wait_and_says_so() {
        let mut calls = 0;
        let r: Result<(), NlError> = retry_busy(&BUSY_BACKOFF.map(|_| Duration::ZERO), || {
            calls += 1;
            Err(busy())
        });
        assert_eq!(calls, 6, "one try, then one after each of 5 waits");
        let e = r.err().map(|e| (e.errno, e.message));
        assert_eq!(
            e,
            Some((
                libc::EBUSY,
                Some("still busy after 6 tries and 0 ms of backoff".to_string())
            ))
        );
        let text = retry_busy::<()>(
            &[Duration::from_millis(1), Duration::from_millis(2)],
            || Err(busy()),
        )
        .err()
        .map(|e| e.into_io().to_string());
        assert!(
            text.as_deref()
                .is_some_and(|t| t.contains("still busy after 3 tries and 3 ms of backoff")),
            "{text:?}"
        );
        assert_eq!(
            BUSY_BACKOFF.iter().sum::<Duration>(),
            Duration::from_millis(31)
        );
    }

    #[test]
    fn other_errors_are_not_retried() {
        let mut calls = 0;
        let r: Result<(), NlError> = retry_busy(&BUSY_BACKOFF, || {
            calls += 1;
            Err(NlError {
                errno: libc::EEXIST,
                message: None,
            })
        });
        assert_eq!(calls, 1);
        assert_eq!(r.err().map(|e| e.errno), Some(libc::EEXIST));
    }

    #[test]
    fn redirect_message_encodes() {
        let msg = redirect_msg(2, 7);
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        // tcmsg header (20 bytes) then attributes; the kind "u32" must be present.
        assert!(buf.windows(4).any(|w| w == b"u32\0"));
        assert!(buf.windows(7).any(|w| w == b"mirred\0"));
    }

    #[test]
    fn our_redirect_filter_decodes_as_match_all_to_its_target() {
        let msg = redirect_msg(2, 7);
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        let f = parse_filter_payload(&buf)
            .expect("decode")
            .expect("a selector");
        assert_eq!((f.ifindex, f.prio, f.protocol), (2, REDIRECT_PRIO, 3));
        assert_eq!(f.kind, "u32");
        assert!(f.match_all && f.egress_redirect);
        assert_eq!(f.target, Some(7));
    }

    #[test]
    fn a_filter_whose_options_do_not_decode_is_kept_as_not_ours() {
        let mut msg = redirect_msg(2, 7);
        // Options that are not attributes at all (a length running past the end).
        msg.attributes = vec![
            TcAttribute::Kind("u32".into()),
            TcAttribute::Other(netlink_packet_core::DefaultNla::new(
                TCA_OPTIONS,
                vec![200, 0, 5, 0, 1],
            )),
        ];
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        let f = parse_filter_payload(&buf).expect("decode").expect("kept");
        assert!(!f.match_all && !f.egress_redirect && f.target.is_none());
        // A kind that is not UTF-8 is data.
        msg.attributes = vec![TcAttribute::Other(netlink_packet_core::DefaultNla::new(
            TCA_KIND,
            b"\xff\0".to_vec(),
        ))];
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        let q = parse_qdisc_payload(&buf).expect("decode");
        assert_eq!(q.kind, "\\xff (not UTF-8)");
        // Only a header cut short is an error.
        assert!(parse_filter_payload(&buf[..TCMSG_LEN - 1]).is_err());
    }
}
