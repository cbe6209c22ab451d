//! HTB (hierarchical token bucket) encoding, by hand: netlink-packet-route has no typed
//! HTB. A rate limit is a root HTB qdisc `1:` whose default class `1:2` (under the root
//! class `1:1`, both at rate = ceil) holds a pfifo leaf with a real queue.
//!
//! Wire structures from <linux/pkt_sched.h>: `tc_htb_glob` (qdisc init), `tc_htb_opt`
//! (class parameters: two `tc_ratespec`s, buffer and cbuffer in scheduler ticks), and the
//! 64-bit rate attributes for rates of 2^32 bytes/s and above.

use std::sync::OnceLock;

use netlink_packet_core::{DecodeError, DefaultNla, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption};

use super::{Netlink, NlError, attr, tc};
use crate::rate::Rate;

const TCA_HTB_PARMS: u16 = 1;
const TCA_HTB_INIT: u16 = 2;
const TCA_HTB_RATE64: u16 = 6;
const TCA_HTB_CEIL64: u16 = 7;
const TC_LINKLAYER_ETHERNET: u8 = 1;
const TC_HTB_PROTOVER: u32 = 3;
/// Packets the leaf queue holds (a CNI veth may have txqueuelen 0: never inherit that).
const LEAF_LIMIT: u32 = 1000;
/// Bytes added to the burst so one full frame always fits.
const BURST_MTU: u64 = 1600;

/// Handles: qdisc `1:`, root class `1:1`, default class `1:2`.
pub const QDISC: TcHandle = TcHandle { major: 1, minor: 0 };
pub const ROOT_CLASS: TcHandle = TcHandle { major: 1, minor: 1 };
pub const DEFAULT_CLASS: TcHandle = TcHandle { major: 1, minor: 2 };
const LEAF: TcHandle = TcHandle { major: 2, minor: 0 };

/// The kernel packet scheduler's clock, from /proc/net/psched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Psched {
    /// Scheduler ticks per microsecond.
    pub ticks_per_usec: f64,
    /// The timer frequency tc uses for default bursts.
    pub hz: u64,
}

/// Parse /proc/net/psched: four hex words t2us, us2t, clock_res, hz.
pub fn parse_psched(text: &str) -> Option<Psched> {
    let words: Vec<u64> = text
        .split_whitespace()
        .map(|w| u64::from_str_radix(w, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    let [t2us, us2t, clock_res, hz] = words[..] else {
        return None;
    };
    if t2us == 0 || us2t == 0 || clock_res == 0 {
        return None;
    }
    // iproute2: tick_in_usec = t2us / us2t * (clock_res / 1e6); hz is the 4th word when
    // clock_res is 1e6 (high resolution timers), else 1000.
    let clock_factor = clock_res as f64 / 1_000_000.0;
    Some(Psched {
        ticks_per_usec: t2us as f64 / us2t as f64 * clock_factor,
        hz: if clock_res == 1_000_000 && hz > 0 {
            hz
        } else {
            1000
        },
    })
}

/// The machine's psched parameters (read once).
pub fn psched() -> std::io::Result<Psched> {
    static PSCHED: OnceLock<Option<Psched>> = OnceLock::new();
    let parsed = PSCHED.get_or_init(|| {
        std::fs::read_to_string("/proc/net/psched")
            .ok()
            .and_then(|t| parse_psched(&t))
    });
    parsed.ok_or_else(|| std::io::Error::other("cannot read or parse /proc/net/psched"))
}

/// A `tc_ratespec` for `bytes_per_sec` (saturated to 32 bits; the 64-bit attribute
/// carries larger rates).
fn ratespec(bytes_per_sec: u64) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[0] = 0; // cell_log
    b[1] = TC_LINKLAYER_ETHERNET; // the kernel computes from the rate; no rate table needed
    // overhead (u16), cell_align (i16), mpu (u16): 0
    let rate32 = u32::try_from(bytes_per_sec).unwrap_or(u32::MAX);
    b[8..12].copy_from_slice(&rate32.to_ne_bytes());
    b
}

/// Burst in bytes as tc chooses it by default (`rate / hz + mtu`), and the time to send it
/// at `rate`, in scheduler ticks.
pub fn buffer_ticks(bytes_per_sec: u64, p: Psched) -> u32 {
    let burst = bytes_per_sec / p.hz.max(1) + BURST_MTU;
    let usec = burst as f64 * 1_000_000.0 / bytes_per_sec.max(1) as f64;
    let ticks = usec * p.ticks_per_usec;
    if ticks >= u32::MAX as f64 {
        u32::MAX
    } else {
        ticks as u32
    }
}

/// `tc_htb_opt` for a class with rate = ceil = `bytes_per_sec`.
pub fn class_opt(bytes_per_sec: u64, p: Psched) -> [u8; 44] {
    let mut b = [0u8; 44];
    let spec = ratespec(bytes_per_sec);
    let ticks = buffer_ticks(bytes_per_sec, p).to_ne_bytes();
    b[0..12].copy_from_slice(&spec); // rate
    b[12..24].copy_from_slice(&spec); // ceil
    b[24..28].copy_from_slice(&ticks); // buffer
    b[28..32].copy_from_slice(&ticks); // cbuffer
    // quantum, level, prio: 0 (the kernel derives the quantum from rate2quantum)
    b
}

/// `tc_htb_glob`: protocol version 3, rate2quantum 10, default class `defcls`.
pub fn qdisc_init(defcls: u32) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[0..4].copy_from_slice(&TC_HTB_PROTOVER.to_ne_bytes());
    b[4..8].copy_from_slice(&10u32.to_ne_bytes());
    b[8..12].copy_from_slice(&defcls.to_ne_bytes());
    b
}

/// The nested TCA_OPTIONS of an HTB class: parameters, plus 64-bit rates when needed.
pub fn class_options(bytes_per_sec: u64, p: Psched) -> Vec<TcOption> {
    let mut opts = vec![TcOption::Other(DefaultNla::new(
        TCA_HTB_PARMS,
        class_opt(bytes_per_sec, p).to_vec(),
    ))];
    if bytes_per_sec > u64::from(u32::MAX) {
        for kind in [TCA_HTB_RATE64, TCA_HTB_CEIL64] {
            opts.push(TcOption::Other(DefaultNla::new(
                kind,
                bytes_per_sec.to_ne_bytes().to_vec(),
            )));
        }
    }
    opts
}

fn message(ifindex: u32, parent: TcHandle, handle: TcHandle, kind: &str) -> TcMessage {
    let mut msg = TcMessage::default();
    msg.header.index = ifindex as i32;
    msg.header.parent = parent;
    msg.header.handle = handle;
    msg.attributes.push(TcAttribute::Kind(kind.into()));
    msg
}

fn class_message(
    ifindex: u32,
    parent: TcHandle,
    handle: TcHandle,
    rate: Rate,
    p: Psched,
) -> TcMessage {
    let mut msg = message(ifindex, parent, handle, "htb");
    msg.attributes
        .push(TcAttribute::Options(class_options(rate.bytes_per_sec(), p)));
    msg
}

/// Install the limit on `ifindex`'s egress: root HTB `1:`, classes `1:1` and `1:2` at
/// `rate`, and a pfifo leaf under `1:2` (4 requests). All or nothing: if a later request
/// fails, the qdisc made by the first is removed again. Fails (EEXIST) if the device
/// already has a root qdisc of its own.
pub fn add_limit(nl: &mut Netlink, ifindex: u32, rate: Rate) -> Result<(), NlError> {
    let p = psched().map_err(io_nl)?;
    let mut qdisc = message(ifindex, TcHandle::ROOT, QDISC, "htb");
    qdisc
        .attributes
        .push(TcAttribute::Options(vec![TcOption::Other(
            DefaultNla::new(
                TCA_HTB_INIT,
                qdisc_init(u32::from(DEFAULT_CLASS.minor)).to_vec(),
            ),
        )]));
    let excl = NLM_F_CREATE | NLM_F_EXCL;
    nl.request(RouteNetlinkMessage::NewQueueDiscipline(qdisc), excl)?;
    let rest = (|| {
        for (parent, handle) in [(QDISC, ROOT_CLASS), (ROOT_CLASS, DEFAULT_CLASS)] {
            let class = class_message(ifindex, parent, handle, rate, p);
            nl.request(RouteNetlinkMessage::NewTrafficClass(class), excl)?;
        }
        let mut leaf = message(ifindex, DEFAULT_CLASS, LEAF, "pfifo");
        // pfifo's options are a bare struct tc_fifo_qopt { u32 limit }, not attributes.
        leaf.attributes.push(TcAttribute::Other(DefaultNla::new(
            2, // TCA_OPTIONS
            LEAF_LIMIT.to_ne_bytes().to_vec(),
        )));
        nl.request(RouteNetlinkMessage::NewQueueDiscipline(leaf), excl)
    })();
    if let Err(e) = rest {
        if let Err(cleanup) = del_limit(nl, ifindex) {
            tracing::error!(
                ifindex,
                errno = cleanup.errno,
                "could not remove a half-made HTB qdisc"
            );
        }
        return Err(e);
    }
    Ok(())
}

/// Change the rate of an installed limit in place, without interrupting traffic.
pub fn change_limit(nl: &mut Netlink, ifindex: u32, rate: Rate) -> Result<(), NlError> {
    let p = psched().map_err(io_nl)?;
    for (parent, handle) in [(QDISC, ROOT_CLASS), (ROOT_CLASS, DEFAULT_CLASS)] {
        let class = class_message(ifindex, parent, handle, rate, p);
        nl.request(RouteNetlinkMessage::NewTrafficClass(class), 0)?;
    }
    Ok(())
}

/// Remove the limit: delete the root HTB qdisc (its classes and leaf go with it).
pub fn del_limit(nl: &mut Netlink, ifindex: u32) -> Result<(), NlError> {
    let msg = message(ifindex, TcHandle::ROOT, QDISC, "htb");
    nl.request(RouteNetlinkMessage::DelQueueDiscipline(msg), 0)
}

fn io_nl(e: std::io::Error) -> NlError {
    NlError {
        errno: libc::EIO,
        message: Some(e.to_string()),
    }
}

/// The rate (bytes/s) of the default class `1:2` on `ifindex`, read back from the kernel.
pub fn read_limit(nl: &mut Netlink, ifindex: u32) -> Result<Option<u64>, NlError> {
    let mut req = TcMessage::default();
    req.header.index = ifindex as i32;
    let rates = nl.dump_with(
        RouteNetlinkMessage::GetTrafficClass(req),
        libc::RTM_NEWTCLASS,
        |payload| parse_class_payload(payload, ifindex),
    )?;
    Ok(rates.into_iter().next().flatten())
}

/// Decode one RTM_NEWTCLASS payload: for the default class `1:2` on `ifindex`, Some(its
/// rate, when it reports one); None for any other class. A class's options are read as
/// HTB's only once its kind says it is HTB.
pub(crate) fn parse_class_payload(
    payload: &[u8],
    ifindex: u32,
) -> Result<Option<Option<u64>>, DecodeError> {
    let (header, kind, options) = tc::parse_tc_payload(payload)?;
    if header.index as u32 != ifindex || header.handle != DEFAULT_CLASS {
        return Ok(None);
    }
    let mut rate32 = None;
    let mut rate64 = None;
    for nla in attr::each(options.filter(|_| kind == "htb").unwrap_or_default()) {
        let (kind, v) = nla?;
        match kind {
            TCA_HTB_PARMS => rate32 = attr::u32_at(v, 8).map(u64::from),
            TCA_HTB_RATE64 if v.len() >= 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&v[..8]);
                rate64 = Some(u64::from_ne_bytes(b));
            }
            _ => {}
        }
    }
    Ok(Some(rate64.or(rate32)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HERE: &str = "000003e8 00000040 000f4240 3b9aca00\n";

    #[test]
    fn psched_is_parsed_like_iproute2() {
        let p = parse_psched(HERE).unwrap();
        assert!((p.ticks_per_usec - 15.625).abs() < 1e-9);
        assert_eq!(p.hz, 1_000_000_000);
        assert_eq!(parse_psched("garbage"), None);
        assert_eq!(parse_psched("1 2 3"), None);
    }

    #[test]
    fn glob_is_version_3_with_the_default_class() {
        let g = qdisc_init(2);
        assert_eq!(u32::from_ne_bytes([g[0], g[1], g[2], g[3]]), 3);
        assert_eq!(u32::from_ne_bytes([g[4], g[5], g[6], g[7]]), 10);
        assert_eq!(u32::from_ne_bytes([g[8], g[9], g[10], g[11]]), 2);
    }

    #[test]
    fn class_parameters_carry_rate_ceil_and_buffers_in_ticks() {
        let p = parse_psched(HERE).unwrap();
        // 20 mbit = 2.5 MB/s; burst = 2_500_000 / 1e9 + 1600 = 1600 bytes; 640 us at that
        // rate = 10_000 ticks of 1/15.625 us.
        let o = class_opt(2_500_000, p);
        let word = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
        assert_eq!(word(8), 2_500_000); // rate.rate
        assert_eq!(word(20), 2_500_000); // ceil.rate
        assert_eq!(o[1], TC_LINKLAYER_ETHERNET);
        assert_eq!(word(24), 10_000); // buffer
        assert_eq!(word(28), 10_000); // cbuffer
    }

    #[test]
    fn rates_of_2_pow_32_bytes_and_above_use_the_64_bit_attributes() {
        let p = parse_psched(HERE).unwrap();
        // 40 gbit = 5e9 bytes/s > u32::MAX.
        let opts = class_options(5_000_000_000, p);
        assert_eq!(opts.len(), 3);
        let o = class_opt(5_000_000_000, p);
        assert_eq!(u32::from_ne_bytes([o[8], o[9], o[10], o[11]]), u32::MAX);
        assert_eq!(class_options(125_000_000, p).len(), 1);
        assert_eq!(class_options(u64::from(u32::MAX), p).len(), 1);
    }
}
