//! Traffic control: the ingress qdisc and the u32 match-all filter with a mirred
//! egress redirect that the tcfilter model is made of, plus dumps to read them back.

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionGeneric, TcActionMirrorOption, TcActionOption,
    TcActionType, TcAttribute, TcFilterU32Option, TcHandle, TcMessage, TcMirror,
    TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};

use std::time::Duration;

use super::{Netlink, NlError};

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

/// How many filters `ifindex`'s ingress holds, of any kind (one request).
pub fn count_ingress_filters(nl: &mut Netlink, ifindex: u32) -> Result<usize, NlError> {
    let mut req = TcMessage::default();
    req.header.index = ifindex as i32;
    req.header.parent = INGRESS_HANDLE;
    let replies = nl.dump(RouteNetlinkMessage::GetTrafficFilter(req))?;
    Ok(replies
        .iter()
        .filter(|r| matches!(r, RouteNetlinkMessage::NewTrafficFilter(_)))
        .count())
}

/// A qdisc as read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qdisc {
    pub ifindex: u32,
    pub kind: String,
    pub parent: u32,
    pub handle: u32,
}

/// Dump every qdisc of the netns (one request).
pub fn dump_qdiscs(nl: &mut Netlink) -> Result<Vec<Qdisc>, NlError> {
    let replies = nl.dump(RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()))?;
    let mut out = Vec::new();
    for reply in replies {
        let RouteNetlinkMessage::NewQueueDiscipline(msg) = reply else {
            continue;
        };
        let kind = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                TcAttribute::Kind(k) => Some(k.clone()),
                _ => None,
            })
            .unwrap_or_default();
        out.push(Qdisc {
            ifindex: msg.header.index as u32,
            kind,
            parent: u32::from(msg.header.parent),
            handle: u32::from(msg.header.handle),
        });
    }
    Ok(out)
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

/// Dump the filters on `ifindex`'s ingress that carry a selector (one request).
pub fn dump_ingress_filters(
    nl: &mut Netlink,
    ifindex: u32,
) -> Result<Vec<RedirectFilter>, NlError> {
    let mut req = TcMessage::default();
    req.header.index = ifindex as i32;
    req.header.parent = INGRESS_HANDLE;
    let replies = nl.dump(RouteNetlinkMessage::GetTrafficFilter(req))?;
    let mut out = Vec::new();
    for reply in replies {
        let RouteNetlinkMessage::NewTrafficFilter(msg) = reply else {
            continue;
        };
        let mut filter = RedirectFilter {
            ifindex: msg.header.index as u32,
            prio: (msg.header.info >> 16) as u16,
            protocol: u16::from_be((msg.header.info & 0xffff) as u16),
            kind: String::new(),
            match_all: false,
            target: None,
            egress_redirect: false,
        };
        let mut has_selector = false;
        for attr in &msg.attributes {
            match attr {
                TcAttribute::Kind(k) => filter.kind = k.clone(),
                TcAttribute::Options(opts) => {
                    for opt in opts {
                        match opt {
                            TcOption::U32(TcFilterU32Option::Selector(sel)) => {
                                has_selector = true;
                                filter.match_all =
                                    !sel.keys.is_empty() && sel.keys.iter().all(|k| k.mask == 0);
                            }
                            TcOption::U32(TcFilterU32Option::Action(actions)) => {
                                read_mirred(actions, &mut filter)
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if has_selector {
            out.push(filter);
        }
    }
    Ok(out)
}

fn read_mirred(actions: &[TcAction], filter: &mut RedirectFilter) {
    for action in actions {
        for attr in &action.attributes {
            let TcActionAttribute::Options(opts) = attr else {
                continue;
            };
            for opt in opts {
                if let TcActionOption::Mirror(TcActionMirrorOption::Parms(m)) = opt {
                    filter.target = Some(m.ifindex);
                    filter.egress_redirect = m.eaction == TcMirrorActionType::EgressRedir;
                }
            }
        }
    }
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
}
