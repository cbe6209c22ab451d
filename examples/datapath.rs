//! The datapath benchmark behind the datapath section of `scripts/bench.sh` (issue 15): how
//! many packets a second each model carries between a VM's queues and the peer, at what
//! loss and CPU cost, against a reference (the pod's veth with no tap: the ceiling). Run as
//! root:
//!
//! ```text
//! cargo run --release --example datapath -- run --smoke|--full [--report target/bench/report.json]
//! ```
//!
//! Everything runs in one pod/peer pair of scratch namespaces (`ScratchNet`, eth0 <->
//! peth0, removed on exit). Each model is attached with the library (`sandbox_net::attach`)
//! and its queues opened the way a VMM opens them, through the library
//! (`dataplane::open_endpoint_queues`: non-blocking fds, vnet header on; the header size set
//! to 12 bytes as Firecracker does, no offloads), one thread per queue doing one `read()` or
//! `write()` per frame, as Firecracker does. The peer side sends with `sendmmsg` on an
//! AF_PACKET socket (`PACKET_QDISC_BYPASS`, 64 frames a call) from the peer netns, or counts
//! what arrives at peth0 behind a drop program (tcx ingress, `TC_ACT_SHOT`), or receives
//! with a UDP socket (`recvmmsg`). The generator runs pinned to one CPU, the consumer(s) to
//! another. Frames are IPv4/UDP (checksum 0) over 64 flows (source ports), so a multi-queue
//! tap spreads them over its queues by flow hash.
//!
//! A trial: consumers start, the generator starts, a warm-up, then W windows of T seconds,
//! each sampled (packets delivered and offered, CPU time of our threads and of the
//! ksoftirqd threads, /proc/stat), then the generator stops and the consumers drain until
//! idle. Loss is over the whole trial (1 - delivered / sent). Rows aggregate the windows of
//! every repetition (median, min, max). The report is merged into `report.json` under
//! `datapath` and `datapath_queue_len`, and printed next to the setup ratios of the same run.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use netlink_packet_core::{DecodeError, Parseable};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use serde_json::{Value, json};

use sandbox_net::fakeguest::packet::{ETHERTYPE_IPV4, build_ethernet, build_ipv4};
use sandbox_net::netlink::Netlink;
use sandbox_net::scratch::ScratchNet;
use sandbox_net::state::Endpoint;
use sandbox_net::{AttachOptions, Model, dataplane, tap};

type R<T> = Result<T, Box<dyn std::error::Error>>;

fn fail<T>(msg: impl Into<String>) -> R<T> {
    Err(msg.into().into())
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

// ------------------------------------------------------------------ what is measured

/// How the pod's interface reaches the guest's queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Join {
    /// No tap: frames counted (and dropped) at the pod's veth, or sent from it. The ceiling.
    Reference,
    /// A model attached by the library.
    Model(Model),
}

/// The joins measured, in table order. A new model is measured by adding it here (the l3
/// model: `Join::Model(Model::L3)`); the trial code only needs its endpoint to be a tap or
/// a macvtap whose queues `dataplane::open_endpoint_queues` opens.
const JOINS: &[Join] = &[
    Join::Reference,
    Join::Model(Model::Tcfilter),
    Join::Model(Model::Macvtap),
];

impl Join {
    fn name(self) -> &'static str {
        match self {
            Join::Reference => "reference",
            Join::Model(m) => m.as_str(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Peer -> pod veth -> join -> the guest's queue(s).
    ToGuest,
    /// The guest's queue(s) -> join -> pod veth -> peer.
    FromGuest,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::ToGuest => "to_guest",
            Direction::FromGuest => "from_guest",
        }
    }
}

/// What consumes frames at the peer (from_guest); to_guest frames are consumed by the guest's
/// readers (or, for the reference, counted and dropped at the pod's veth).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Consumer {
    /// Counted (rx_packets) and dropped at the receiving veth's tc ingress.
    Drop,
    /// The guest's reader threads.
    Guest,
    /// A UDP socket in the peer netns (the peer's IP/UDP receive runs on the sending CPU).
    UdpSocket,
}

impl Consumer {
    fn name(self) -> &'static str {
        match self {
            Consumer::Drop => "drop",
            Consumer::Guest => "guest",
            Consumer::UdpSocket => "udp_socket",
        }
    }
}

/// One kind of trial (a row of the report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Spec {
    join: Join,
    direction: Direction,
    /// 64: the minimum Ethernet frame (60 bytes on the veth; the 4-byte FCS is not carried).
    /// 1500: an MTU-sized IPv4 packet (a 1514-byte frame).
    frame_bytes: u32,
    queues: u32,
    consumer: Consumer,
    /// The tap's queue length; None for the reference.
    txqueuelen: Option<u32>,
}

impl Spec {
    fn consumer_for(join: Join, direction: Direction) -> Consumer {
        match (join, direction) {
            (Join::Model(_), Direction::ToGuest) => Consumer::Guest,
            _ => Consumer::Drop,
        }
    }
}

/// Bytes carried on the veth for a nominal frame size.
fn wire_bytes(frame_bytes: u32) -> usize {
    match frame_bytes {
        64 => 60,
        n => 14 + n as usize,
    }
}

#[derive(Debug, Clone)]
struct Plan {
    /// Before each trial, wait (at most this long) until other processes leave the CPUs
    /// idle: the machine is shared, and a busy CPU steals from the generator or the reader.
    idle_wait: Duration,
    /// The peer's generator keeps the default send buffer (see `UNPACED_SNDBUF`).
    paced: bool,
    reps: usize,
    windows: usize,
    window: Duration,
    warmup: Duration,
    drain_idle: Duration,
    sizes: Vec<u32>,
    queue_lens: Vec<u32>,
}

impl Plan {
    fn smoke() -> Plan {
        Plan {
            idle_wait: Duration::ZERO,
            paced: false,
            reps: 1,
            windows: 2,
            window: Duration::from_millis(60),
            warmup: Duration::from_millis(40),
            drain_idle: Duration::from_millis(30),
            sizes: vec![64, 1500],
            queue_lens: vec![500, 8000],
        }
    }

    fn full() -> Plan {
        Plan {
            idle_wait: Duration::from_secs(20),
            paced: false,
            reps: 2,
            windows: 5,
            window: Duration::from_secs(1),
            warmup: Duration::from_millis(500),
            drain_idle: Duration::from_millis(200),
            sizes: vec![64, 1500],
            queue_lens: vec![500, 1000, 2000, 4000, 8000],
        }
    }

    /// The main rows: every join, both directions, every size, one queue; the UDP-socket
    /// consumer out of the guest at 64 bytes; two queues for every model at 64 bytes.
    fn main_specs(&self) -> Vec<Spec> {
        let mut specs = Vec::new();
        let qlen = |join: Join| matches!(join, Join::Model(_)).then_some(tap::DEFAULT_QUEUE_LEN);
        for &join in JOINS {
            for direction in [Direction::ToGuest, Direction::FromGuest] {
                for &frame_bytes in &self.sizes {
                    specs.push(Spec {
                        join,
                        direction,
                        frame_bytes,
                        queues: 1,
                        consumer: Spec::consumer_for(join, direction),
                        txqueuelen: qlen(join),
                    });
                }
            }
            specs.push(Spec {
                join,
                direction: Direction::FromGuest,
                frame_bytes: 64,
                queues: 1,
                consumer: Consumer::UdpSocket,
                txqueuelen: qlen(join),
            });
            if let Join::Model(_) = join {
                for direction in [Direction::ToGuest, Direction::FromGuest] {
                    specs.push(Spec {
                        join,
                        direction,
                        frame_bytes: 64,
                        queues: 2,
                        consumer: Spec::consumer_for(join, direction),
                        txqueuelen: qlen(join),
                    });
                }
            }
        }
        specs
    }

    /// Loss against the tap's queue length: into the guest at 64 bytes, every model.
    fn queue_len_specs(&self) -> Vec<Spec> {
        let mut specs = Vec::new();
        for &join in JOINS {
            if join == Join::Reference {
                continue;
            }
            for &len in &self.queue_lens {
                specs.push(Spec {
                    join,
                    direction: Direction::ToGuest,
                    frame_bytes: 64,
                    queues: 1,
                    consumer: Consumer::Guest,
                    txqueuelen: Some(len),
                });
            }
        }
        specs
    }
}

// ------------------------------------------------------------------ frames

const UDP_DST_PORT: u16 = 9000;
const UDP_SRC_PORT_BASE: u16 = 10000;
/// Distinct flows (UDP source ports): a multi-queue tap picks a queue by flow hash.
const FLOWS: u16 = 64;
/// The vnet header a VMM puts before every frame (`virtio_net_hdr_v1`, 12 bytes).
const VNET_HDR_LEN: usize = 12;
/// Frames per `sendmmsg` / `recvmmsg` call.
const BATCH: usize = 64;

/// The addresses of the frames of one direction.
#[derive(Debug, Clone, Copy)]
struct Addresses {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
}

/// One IPv4/UDP frame per flow, `wire` bytes long (60 at least), UDP checksum 0.
fn build_frames(a: &Addresses, wire: usize) -> R<Vec<Vec<u8>>> {
    if !(60..=1514).contains(&wire) {
        return fail(format!("frame of {wire} bytes: must be from 60 to 1514"));
    }
    let payload = wire - 14 - 20 - 8;
    (0..FLOWS)
        .map(|flow| {
            let src_port = UDP_SRC_PORT_BASE + flow;
            let mut udp = Vec::with_capacity(8 + payload);
            udp.extend_from_slice(&src_port.to_be_bytes());
            udp.extend_from_slice(&UDP_DST_PORT.to_be_bytes());
            udp.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
            udp.extend_from_slice(&[0, 0]);
            udp.resize(8 + payload, 0xab);
            let ip = build_ipv4(a.src_ip, a.dst_ip, libc::IPPROTO_UDP as u8, 64, flow, &udp)
                .ok_or("UDP payload does not fit an IPv4 packet")?;
            Ok(build_ethernet(a.dst_mac, a.src_mac, ETHERTYPE_IPV4, &ip))
        })
        .collect()
}

/// Whether a frame is one of ours (IPv4, UDP, our destination port): a reader counts only
/// these, not the IPv6 or ARP frames the pod's stack sends on its own.
fn is_ours(frame: &[u8]) -> bool {
    frame.len() >= 42
        && frame[12..14] == ETHERTYPE_IPV4.to_be_bytes()
        && frame[23] == libc::IPPROTO_UDP as u8
        && frame[36..38] == UDP_DST_PORT.to_be_bytes()
}

// ------------------------------------------------------------------ counters

/// The CPU time (ns) a task has run, from `/proc/.../schedstat` (its first field). Without
/// IRQ time accounting (this kernel: tick based) it includes the softirqs run in its context.
fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

fn task_cpu_ns(path: &Path) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|t| parse_schedstat(&t))
        .unwrap_or(0)
}

/// Per-CPU (busy, total) jiffies from `/proc/stat`: busy = user + nice + system + irq +
/// softirq; total adds idle, iowait and steal.
fn parse_proc_stat(text: &str) -> Vec<(u64, u64)> {
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
struct LinkStats {
    rx_packets: u64,
    tx_packets: u64,
    rx_dropped: u64,
    tx_dropped: u64,
}

/// Decode an `RTM_NEWLINK` answer's 64-bit statistics.
fn parse_link_stats(payload: &[u8]) -> Result<LinkStats, DecodeError> {
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

fn link_stats(nl: &mut Netlink, index: u32) -> R<LinkStats> {
    let mut req = LinkMessage::default();
    req.header.index = index;
    nl.get_with(
        RouteNetlinkMessage::GetLink(req),
        libc::RTM_NEWLINK,
        parse_link_stats,
    )
    .map_err(|e| format!("link stats of ifindex {index}: {}", e.into_io()).into())
}

// ------------------------------------------------------------------ kernel pieces

/// `BPF_PROG_LOAD` attributes (the head of `union bpf_attr` this command reads).
#[repr(C)]
#[derive(Default)]
struct BpfProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `BPF_LINK_CREATE` attributes for a tcx link.
#[repr(C)]
#[derive(Default)]
struct BpfLinkCreate {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    relative_fd: u32,
    _pad: u32,
    expected_revision: u64,
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_INGRESS: u32 = 46;

fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a #[repr(C)] prefix of `union bpf_attr` for `cmd`, zeroed where
    // unused, and lives for the call; the kernel reads at most size_of::<T>() bytes.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a successful BPF_PROG_LOAD / BPF_LINK_CREATE returns a new fd we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Drop every frame at `ifindex`'s ingress (tcx link: `r0 = TC_ACT_SHOT; exit`), counted by
/// the device's rx_packets before it. Call inside the device's netns; the drop lasts as
/// long as the returned link fd.
fn tcx_drop(ifindex: u32) -> io::Result<OwnedFd> {
    // mov64 r0, 2 (TC_ACT_SHOT); exit
    let insns: [u64; 2] = [
        u64::from_le_bytes([0xb7, 0, 0, 0, 2, 0, 0, 0]),
        u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
    ];
    let license = b"GPL\0";
    let mut load = BpfProgLoad {
        prog_type: BPF_PROG_TYPE_SCHED_CLS,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..BpfProgLoad::default()
    };
    load.prog_name[..7].copy_from_slice(b"dp_drop");
    let prog = sys_bpf(BPF_PROG_LOAD, &mut load)?;
    let mut link = BpfLinkCreate {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_TCX_INGRESS,
        ..BpfLinkCreate::default()
    };
    sys_bpf(BPF_LINK_CREATE, &mut link)
}

fn tcx_error(e: io::Error) -> String {
    format!("the drop program at the counting veth's tcx ingress (bpf(2); Linux 6.6 or later): {e}")
}

/// `_IOW('T', 216, int)`
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;

/// Set the vnet header size a VMM uses (12 bytes, `virtio_net_hdr_v1`, as Firecracker).
fn set_vnet_hdr_len(fd: &OwnedFd) -> io::Result<()> {
    let len: libc::c_int = VNET_HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads an int through the pointer, which outlives the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETVNETHDRSZ, &len as *const libc::c_int) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

const PACKET_QDISC_BYPASS: libc::c_int = 20;

/// The send buffer of an unpaced generator. A frame a socket sent stays charged to its send
/// buffer until the kernel orphans or frees it: tun orphans frames as it queues them, but
/// the veth -> macvlan -> macvtap path keeps them charged until the guest reads them, so
/// with the default buffer (212 KiB, about 128 small frames unread) the generator would
/// wait for the guest and a macvtap queue could never overflow. Traffic from a NIC or a
/// remote host is not paced that way; 64 MiB lets every queue overflow first.
const UNPACED_SNDBUF: i32 = 64 << 20;

/// An AF_PACKET socket bound to `ifindex` for sending only (protocol 0: it receives
/// nothing), bypassing the qdisc, unpaced unless `paced`. Call inside the device's netns.
fn packet_sender(ifindex: u32, paced: bool) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    set_int_option(fd.as_raw_fd(), libc::SOL_PACKET, PACKET_QDISC_BYPASS, 1)?;
    if !paced {
        set_int_option(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            UNPACED_SNDBUF,
        )?;
    }
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: bind reads a sockaddr_ll of the given size that outlives the call.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn pin_to(cpu: usize) -> io::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).map_err(io::Error::from)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(io::Error::from)
}

fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

// ------------------------------------------------------------------ workers

/// What every worker thread shares with the coordinator.
struct Worker {
    tid: Arc<AtomicU64>,
    count: Arc<AtomicU64>,
    handle: JoinHandle<io::Result<()>>,
}

/// Spawn `work` pinned to `cpu`; it publishes its tid and counts into `count`.
fn spawn_worker(
    name: &str,
    cpu: usize,
    work: impl FnOnce(&AtomicU64) -> io::Result<()> + Send + 'static,
) -> R<Worker> {
    let tid = Arc::new(AtomicU64::new(0));
    let count = Arc::new(AtomicU64::new(0));
    let (t, c) = (tid.clone(), count.clone());
    let handle = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            pin_to(cpu)?;
            t.store(gettid() as u64, Ordering::SeqCst);
            work(&c)
        })?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while tid.load(Ordering::SeqCst) == 0 {
        if handle.is_finished() || Instant::now() > deadline {
            return match handle.join() {
                Ok(Err(e)) => fail(format!("{name}: {e}")),
                _ => fail(format!("{name} did not start")),
            };
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(Worker { tid, count, handle })
}

/// Join the workers (already told to stop); their final counts. Failures go to `errors`.
fn join_all(workers: Vec<Worker>, what: &str, errors: &mut Vec<String>) -> Vec<u64> {
    workers
        .into_iter()
        .map(|w| {
            match w.handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(format!("{what}: {e}")),
                Err(_) => errors.push(format!("{what} panicked")),
            }
            w.count.load(Ordering::SeqCst)
        })
        .collect()
}

fn would_block(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOBUFS))
}

/// Blast `frames` with sendmmsg until `stop`.
fn af_packet_send(
    fd: OwnedFd,
    frames: Vec<Vec<u8>>,
    stop: Arc<AtomicBool>,
    count: &AtomicU64,
) -> io::Result<()> {
    let mut iovs: Vec<libc::iovec> = (0..BATCH)
        .map(|i| {
            let f = &frames[i % frames.len()];
            libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            }
        })
        .collect();
    // SAFETY: mmsghdr is plain data; all-zero is valid (no name, no control).
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `msgs` points at BATCH iovecs over `frames`, all alive for the call.
        let n = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if would_block(&e) || e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        sent += n as u64;
        count.store(sent, Ordering::Relaxed);
    }
    Ok(())
}

/// The guest's writer: one `write()` per frame (vnet header + frame) on one queue.
fn guest_write(
    fd: OwnedFd,
    frames: Vec<Vec<u8>>,
    stop: Arc<AtomicBool>,
    count: &AtomicU64,
) -> io::Result<()> {
    let bufs: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut b = vec![0u8; VNET_HDR_LEN];
            b.extend_from_slice(f);
            b
        })
        .collect();
    let mut sent = 0u64;
    let mut pfd = [libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    }];
    while !stop.load(Ordering::Relaxed) {
        for b in &bufs {
            // SAFETY: writes from a buffer that outlives the call.
            let n = unsafe { libc::write(fd.as_raw_fd(), b.as_ptr().cast(), b.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if !would_block(&e) {
                    return Err(e);
                }
                // SAFETY: polls one pollfd we own.
                unsafe { libc::poll(pfd.as_mut_ptr(), 1, 10) };
                continue;
            }
            sent += 1;
        }
        count.store(sent, Ordering::Relaxed);
    }
    Ok(())
}

/// The guest's reader: one `read()` per frame until the queue is empty, then `poll()`.
fn guest_read(fd: OwnedFd, stop: Arc<AtomicBool>, count: &AtomicU64) -> io::Result<()> {
    let mut buf = vec![0u8; 65536 + VNET_HDR_LEN];
    let mut pfd = [libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    let mut got = 0u64;
    loop {
        let mut empty = false;
        for _ in 0..32 {
            // SAFETY: reads into a buffer we own, at most its length.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if would_block(&e) {
                    empty = true;
                    break;
                }
                return Err(e);
            }
            let n = n as usize;
            if n > VNET_HDR_LEN && is_ours(&buf[VNET_HDR_LEN..n]) {
                got += 1;
            }
        }
        count.store(got, Ordering::Relaxed);
        if empty {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            // SAFETY: polls one pollfd we own.
            unsafe { libc::poll(pfd.as_mut_ptr(), 1, 50) };
        }
    }
}

/// A UDP receiver (recvmmsg, 64 a call) until `stop`.
fn udp_receive(sock: UdpSocket, stop: Arc<AtomicBool>, count: &AtomicU64) -> io::Result<()> {
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut bufs = vec![[0u8; 2048]; BATCH];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain data; all-zero is valid.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut got = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `msgs` points at BATCH iovecs over `bufs`, all alive for the call.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if would_block(&e) || e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        got += n as u64;
        count.store(got, Ordering::Relaxed);
    }
    Ok(())
}

/// setsockopt of an int option.
fn set_int_option(fd: RawFd, level: libc::c_int, name: libc::c_int, value: i32) -> io::Result<()> {
    // SAFETY: setsockopt reads an int from a pointer that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

// ------------------------------------------------------------------ one trial

/// The pod/peer pair every trial of a repetition runs on.
struct Env {
    net: ScratchNet,
    state_dir: PathBuf,
    pod_nl: Netlink,
    peer_nl: Netlink,
    eth0: u32,
    peth0: u32,
    eth0_mac: [u8; 6],
    peth0_mac: [u8; 6],
    pod_ip: Ipv4Addr,
    peer_ip: Ipv4Addr,
    sender_cpu: usize,
    receiver_cpu: usize,
    ksoftirqd: Vec<PathBuf>,
}

/// What a trial attached (None for the reference), detached on drop.
struct Attached {
    state_dir: PathBuf,
    id: String,
    endpoint: Endpoint,
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Err(e) = sandbox_net::detach(&self.state_dir, &self.id) {
            eprintln!("datapath: detach {}: {e}", self.id);
        }
    }
}

/// One sample of every counter.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    delivered: u64,
    sent: u64,
    sender_ns: u64,
    receiver_ns: u64,
    ksoftirqd_ns: u64,
    cpus: Vec<(u64, u64)>,
}

/// One measured window.
#[derive(Debug, Clone, Copy)]
struct Window {
    pps: f64,
    offered_pps: f64,
    cpu_ns_per_pkt: f64,
    system_ns_per_pkt: f64,
    sender_cpu_pct: f64,
    receiver_cpu_pct: f64,
    others_cpu_pct: f64,
}

fn window(a: &Sample, b: &Sample) -> Window {
    let secs = (b.at - a.at).as_secs_f64().max(1e-9);
    let delivered = b.delivered.saturating_sub(a.delivered) as f64;
    let sender = b.sender_ns.saturating_sub(a.sender_ns) as f64;
    let receiver = b.receiver_ns.saturating_sub(a.receiver_ns) as f64;
    let softirq = b.ksoftirqd_ns.saturating_sub(a.ksoftirqd_ns) as f64;
    let ours = sender + receiver + softirq;
    let jiffy_ns = 1e9 / user_hz();
    let busy_ns: f64 = a
        .cpus
        .iter()
        .zip(&b.cpus)
        .map(|(x, y)| y.0.saturating_sub(x.0) as f64 * jiffy_ns)
        .sum();
    let ncpu = a.cpus.len().max(1) as f64;
    let per = |ns: f64| {
        if delivered > 0.0 {
            ns / delivered
        } else {
            f64::NAN
        }
    };
    Window {
        pps: delivered / secs,
        offered_pps: b.sent.saturating_sub(a.sent) as f64 / secs,
        cpu_ns_per_pkt: per(ours),
        system_ns_per_pkt: per(busy_ns),
        sender_cpu_pct: 100.0 * sender / (secs * 1e9),
        receiver_cpu_pct: 100.0 * receiver / (secs * 1e9),
        others_cpu_pct: (100.0 * (busy_ns - ours) / (secs * 1e9 * ncpu)).max(0.0),
    }
}

/// Wait until the CPUs were at most 10 % busy over half a second, or `max` passed; the
/// seconds waited.
fn wait_for_idle(max: Duration) -> f64 {
    let started = Instant::now();
    let read = || parse_proc_stat(&fs::read_to_string("/proc/stat").unwrap_or_default());
    while started.elapsed() < max && !INTERRUPTED.load(Ordering::SeqCst) {
        let a = read();
        std::thread::sleep(Duration::from_millis(500));
        let b = read();
        let (busy, total) = a.iter().zip(&b).fold((0, 0), |(bu, to), (x, y)| {
            (bu + y.0.saturating_sub(x.0), to + y.1.saturating_sub(x.1))
        });
        if total > 0 && busy * 10 <= total {
            break;
        }
    }
    started.elapsed().as_secs_f64()
}

fn user_hz() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// A trial's outcome.
#[derive(Debug, Clone)]
struct TrialOut {
    waited_s: f64,
    windows: Vec<Window>,
    sent: u64,
    delivered: u64,
    per_queue: Vec<u64>,
    drops: BTreeMap<String, u64>,
}

/// Where the delivered count comes from.
enum Delivered {
    Workers,
    Link { pod: bool, index: u32 },
}

fn ksoftirqd_tasks() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let p = e.path();
            let is_pid = e
                .file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
            if is_pid
                && fs::read_to_string(p.join("comm")).is_ok_and(|c| c.starts_with("ksoftirqd/"))
            {
                out.push(p.join("schedstat"));
            }
        }
    }
    out
}

impl Env {
    fn new(prefix: &str, state_dir: &Path, sender_cpu: usize, receiver_cpu: usize) -> R<Env> {
        let mut net = ScratchNet::new(prefix)?;
        let link = net.add_link(0, 1500, true)?;
        let pod_nl = Netlink::open_in(&net.pod)?;
        let peer_nl = Netlink::open_in(&net.peer)?;
        let eth0 = net.pod.run(|| tap::ifindex(&link.name))??;
        let peth0 = net.peer.run(|| tap::ifindex(&link.peer_name))??;
        Ok(Env {
            eth0,
            peth0,
            eth0_mac: link.mac,
            peth0_mac: [0x02, 0x77, 0, 0, 0, 1],
            pod_ip: link.pod_v4,
            peer_ip: link.peer_v4,
            net,
            state_dir: state_dir.to_path_buf(),
            pod_nl,
            peer_nl,
            sender_cpu,
            receiver_cpu,
            ksoftirqd: ksoftirqd_tasks(),
        })
    }

    fn attach(&self, spec: &Spec, n: usize) -> R<Option<Attached>> {
        let Join::Model(model) = spec.join else {
            return Ok(None);
        };
        let id = format!("dp{n}");
        let mut opts = AttachOptions::new(self.net.pod_name.clone(), id.clone());
        opts.model = model;
        opts.queues = spec.queues;
        opts.tap_queue_len = spec.txqueuelen.unwrap_or(tap::DEFAULT_QUEUE_LEN);
        opts.state_dir = self.state_dir.clone();
        opts.interfaces = Some(vec!["eth0".into()]);
        let a = sandbox_net::attach(&opts)?;
        let endpoint = a
            .endpoints
            .into_iter()
            .next()
            .ok_or("the attach returned no endpoint")?;
        Ok(Some(Attached {
            state_dir: self.state_dir.clone(),
            id,
            endpoint,
        }))
    }

    /// The guest's queues, opened as a VMM opens them, with the VMM's header size.
    fn open_queues(&self, ep: &Endpoint) -> R<Vec<OwnedFd>> {
        let fds = self
            .net
            .pod
            .run(|| dataplane::open_endpoint_queues(ep))?
            .map_err(|e| format!("open the queues of {}: {e}", ep.tap))?;
        for fd in &fds {
            set_vnet_hdr_len(fd).map_err(|e| format!("TUNSETVNETHDRSZ on {}: {e}", ep.tap))?;
        }
        Ok(fds)
    }

    fn drops(&mut self, tap: Option<u32>) -> R<BTreeMap<String, u64>> {
        let mut m = BTreeMap::new();
        let mut put = |name: &str, s: LinkStats| {
            m.insert(format!("{name}_rx_dropped"), s.rx_dropped);
            m.insert(format!("{name}_tx_dropped"), s.tx_dropped);
        };
        put("pod_eth0", link_stats(&mut self.pod_nl, self.eth0)?);
        put("peer_peth0", link_stats(&mut self.peer_nl, self.peth0)?);
        if let Some(index) = tap {
            put("tap", link_stats(&mut self.pod_nl, index)?);
        }
        Ok(m)
    }

    fn run_trial(&mut self, spec: &Spec, n: usize, plan: &Plan) -> R<TrialOut> {
        let waited_s = if plan.idle_wait.is_zero() {
            0.0
        } else {
            wait_for_idle(plan.idle_wait)
        };
        let attached = self.attach(spec, n)?;
        let ep = attached.as_ref().map(|a| a.endpoint.clone());
        let tap_index = match &ep {
            Some(ep) => Some(self.net.pod.run(|| tap::ifindex(&ep.tap))??),
            None => None,
        };
        let wire = wire_bytes(spec.frame_bytes);
        let stop_send = Arc::new(AtomicBool::new(false));
        let stop_recv = Arc::new(AtomicBool::new(false));
        let (scpu, rcpu) = (self.sender_cpu, self.receiver_cpu);

        // The consumer side first, so nothing is sent before it is there.
        let mut receivers = Vec::new();
        let mut _drop_link = None;
        let delivered_from = match (spec.direction, spec.consumer, &ep) {
            (Direction::ToGuest, Consumer::Guest, Some(ep)) => {
                for (q, fd) in self.open_queues(ep)?.into_iter().enumerate() {
                    let stop = stop_recv.clone();
                    receivers.push(spawn_worker(&format!("reader{q}"), rcpu, move |c| {
                        guest_read(fd, stop, c)
                    })?);
                }
                Delivered::Workers
            }
            (Direction::ToGuest, Consumer::Drop, None) => {
                let index = self.eth0;
                _drop_link = Some(self.net.pod.run(|| tcx_drop(index))?.map_err(tcx_error)?);
                Delivered::Link {
                    pod: true,
                    index: self.eth0,
                }
            }
            (Direction::FromGuest, Consumer::Drop, _) => {
                let index = self.peth0;
                _drop_link = Some(self.net.peer.run(|| tcx_drop(index))?.map_err(tcx_error)?);
                Delivered::Link {
                    pod: false,
                    index: self.peth0,
                }
            }
            (Direction::FromGuest, Consumer::UdpSocket, _) => {
                let addr = (self.peer_ip, UDP_DST_PORT);
                let sock = self.net.peer.run(|| UdpSocket::bind(addr))??;
                set_int_option(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    8 << 20,
                )?;
                let stop = stop_recv.clone();
                receivers.push(spawn_worker("udp", rcpu, move |c| {
                    udp_receive(sock, stop, c)
                })?);
                Delivered::Workers
            }
            _ => return fail(format!("no such trial: {spec:?}")),
        };

        // Then the generator.
        let to_guest = Addresses {
            src_mac: self.peth0_mac,
            dst_mac: ep.as_ref().map_or(Ok(self.eth0_mac), |e| mac_of(&e.mac))?,
            src_ip: self.peer_ip,
            dst_ip: self.pod_ip,
        };
        let from_guest = Addresses {
            src_mac: ep.as_ref().map_or(Ok(self.eth0_mac), |e| mac_of(&e.mac))?,
            dst_mac: self.peth0_mac,
            src_ip: self.pod_ip,
            dst_ip: self.peer_ip,
        };
        let drops_before = self.drops(tap_index)?;
        let before = self.read_delivered(&delivered_from, &receivers)?;
        let mut senders = Vec::new();
        match (spec.direction, &ep) {
            (Direction::ToGuest, _) => {
                let frames = build_frames(&to_guest, wire)?;
                let index = self.peth0;
                let fd = self.net.peer.run(|| packet_sender(index, plan.paced))??;
                let stop = stop_send.clone();
                senders.push(spawn_worker("sender", scpu, move |c| {
                    af_packet_send(fd, frames, stop, c)
                })?);
            }
            (Direction::FromGuest, None) => {
                let frames = build_frames(&from_guest, wire)?;
                let index = self.eth0;
                let fd = self.net.pod.run(|| packet_sender(index, plan.paced))??;
                let stop = stop_send.clone();
                senders.push(spawn_worker("sender", scpu, move |c| {
                    af_packet_send(fd, frames, stop, c)
                })?);
            }
            (Direction::FromGuest, Some(ep)) => {
                let frames = build_frames(&from_guest, wire)?;
                for (q, fd) in self.open_queues(ep)?.into_iter().enumerate() {
                    let stop = stop_send.clone();
                    let frames = frames.clone();
                    senders.push(spawn_worker(&format!("writer{q}"), scpu, move |c| {
                        guest_write(fd, frames, stop, c)
                    })?);
                }
            }
        }

        // Warm up, then the windows.
        let result = (|| -> R<Vec<Sample>> {
            std::thread::sleep(plan.warmup);
            let mut samples = vec![self.sample(&delivered_from, &senders, &receivers)?];
            let start = samples[0].at;
            for w in 1..=plan.windows {
                if INTERRUPTED.load(Ordering::SeqCst) {
                    return fail("interrupted");
                }
                let due = start + plan.window * w as u32;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                samples.push(self.sample(&delivered_from, &senders, &receivers)?);
            }
            Ok(samples)
        })();
        stop_send.store(true, Ordering::SeqCst);
        let mut errors = Vec::new();
        let sent: u64 = join_all(senders, "sender", &mut errors).iter().sum();
        // Drain: the consumers go on until nothing arrives for a while.
        let mut last = self.read_delivered(&delivered_from, &receivers)?;
        let mut quiet_since = Instant::now();
        let give_up = Instant::now() + Duration::from_secs(3);
        while quiet_since.elapsed() < plan.drain_idle && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(10));
            let now = self.read_delivered(&delivered_from, &receivers)?;
            if now != last {
                last = now;
                quiet_since = Instant::now();
            }
        }
        stop_recv.store(true, Ordering::SeqCst);
        let per_queue = join_all(receivers, "receiver", &mut errors);
        if let Delivered::Workers = delivered_from {
            last = per_queue.iter().sum();
        }
        let samples = result?;
        if !errors.is_empty() {
            return fail(errors.join("; "));
        }
        let drops_after = self.drops(tap_index)?;
        let drops = drops_after
            .iter()
            .filter_map(|(k, v)| {
                let d = v.saturating_sub(*drops_before.get(k).unwrap_or(&0));
                (d > 0).then(|| (k.clone(), d))
            })
            .collect();
        drop(attached);
        Ok(TrialOut {
            waited_s,
            windows: samples.windows(2).map(|s| window(&s[0], &s[1])).collect(),
            sent,
            delivered: last.saturating_sub(before),
            per_queue,
            drops,
        })
    }

    fn read_delivered(&mut self, from: &Delivered, receivers: &[Worker]) -> R<u64> {
        Ok(match from {
            Delivered::Workers => receivers
                .iter()
                .map(|w| w.count.load(Ordering::Relaxed))
                .sum(),
            Delivered::Link { pod, index } => {
                let nl = if *pod {
                    &mut self.pod_nl
                } else {
                    &mut self.peer_nl
                };
                link_stats(nl, *index)?.rx_packets
            }
        })
    }

    fn sample(&mut self, from: &Delivered, senders: &[Worker], receivers: &[Worker]) -> R<Sample> {
        let cpu = |ws: &[Worker]| -> u64 {
            ws.iter()
                .map(|w| {
                    let tid = w.tid.load(Ordering::Relaxed);
                    task_cpu_ns(Path::new(&format!("/proc/self/task/{tid}/schedstat")))
                })
                .sum()
        };
        let delivered = self.read_delivered(from, receivers)?;
        Ok(Sample {
            at: Instant::now(),
            delivered,
            sent: senders
                .iter()
                .map(|w| w.count.load(Ordering::Relaxed))
                .sum(),
            sender_ns: cpu(senders),
            receiver_ns: cpu(receivers),
            ksoftirqd_ns: self.ksoftirqd.iter().map(|p| task_cpu_ns(p)).sum(),
            cpus: parse_proc_stat(&fs::read_to_string("/proc/stat").unwrap_or_default()),
        })
    }
}

fn mac_of(text: &str) -> R<[u8; 6]> {
    sandbox_net::guest::parse_mac(text).ok_or_else(|| format!("{text:?} is not a MAC").into())
}

// ------------------------------------------------------------------ rows

fn median(v: &[f64]) -> Option<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

fn round(v: f64, digits: i32) -> f64 {
    let k = 10f64.powi(digits);
    (v * k).round() / k
}

/// One report row from every trial of a spec.
fn row(spec: &Spec, trials: &[TrialOut], env_cpus: (usize, usize)) -> Value {
    let all: Vec<Window> = trials.iter().flat_map(|t| t.windows.clone()).collect();
    let pick = |f: fn(&Window) -> f64| all.iter().map(f).collect::<Vec<f64>>();
    let pps = pick(|w| w.pps);
    let losses: Vec<f64> = trials
        .iter()
        .map(|t| {
            if t.sent == 0 {
                f64::NAN
            } else {
                (1.0 - t.delivered as f64 / t.sent as f64).max(0.0)
            }
        })
        .collect();
    let mut drops: BTreeMap<String, u64> = BTreeMap::new();
    for t in trials {
        for (k, v) in &t.drops {
            *drops.entry(k.clone()).or_default() += v;
        }
    }
    let mut per_queue = vec![0u64; trials.first().map_or(0, |t| t.per_queue.len())];
    for t in trials {
        for (q, v) in t.per_queue.iter().enumerate() {
            if let Some(slot) = per_queue.get_mut(q) {
                *slot += v;
            }
        }
    }
    let total: u64 = per_queue.iter().sum();
    let share: Vec<f64> = per_queue
        .iter()
        .map(|v| round(*v as f64 / total.max(1) as f64, 3))
        .collect();
    let m = |v: Vec<f64>, d: i32| median(&v).map(|x| round(x, d));
    let min = pps.iter().copied().fold(f64::INFINITY, f64::min);
    let max = pps.iter().copied().fold(0.0, f64::max);
    json!({
        "model": spec.join.name(),
        "direction": spec.direction.name(),
        "frame_bytes": spec.frame_bytes,
        "wire_bytes": wire_bytes(spec.frame_bytes),
        "queues": spec.queues,
        "consumer": spec.consumer.name(),
        "txqueuelen": spec.txqueuelen,
        "pps": m(pps, 0),
        "pps_min": if min.is_finite() { Some(round(min, 0)) } else { None },
        "pps_max": round(max, 0),
        "windows": all.len(),
        "offered_pps": m(pick(|w| w.offered_pps), 0),
        "loss": m(losses.clone(), 6),
        "loss_max": losses.iter().copied().filter(|x| x.is_finite()).fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x)))).map(|x| round(x, 6)),
        "sent": trials.iter().map(|t| t.sent).sum::<u64>(),
        "delivered": trials.iter().map(|t| t.delivered).sum::<u64>(),
        "drops": drops,
        "cpu_ns_per_pkt": m(pick(|w| w.cpu_ns_per_pkt), 0),
        "system_busy_ns_per_pkt": m(pick(|w| w.system_ns_per_pkt), 0),
        "sender_cpu_pct": m(pick(|w| w.sender_cpu_pct), 1),
        "receiver_cpu_pct": m(pick(|w| w.receiver_cpu_pct), 1),
        "others_cpu_pct": m(pick(|w| w.others_cpu_pct), 1),
        "sender_cpu": env_cpus.0,
        "receiver_cpu": env_cpus.1,
        "queue_share": share,
        "trials": trials.len(),
        // Per trial, to tell a loss from a busy machine: its loss and the median share of
        // the CPUs other processes took during its windows.
        "trial_loss": losses.iter().map(|l| round(*l, 6)).collect::<Vec<f64>>(),
        "trial_others_cpu_pct": trials
            .iter()
            .map(|t| {
                let others: Vec<f64> = t.windows.iter().map(|w| w.others_cpu_pct).collect();
                median(&others).map(|x| round(x, 1))
            })
            .collect::<Vec<Option<f64>>>(),
        "idle_wait_s": round(trials.iter().map(|t| t.waited_s).sum::<f64>(), 1),
    })
}

/// `ratio_to_reference`: the row's pps over the reference row of the same direction, frame
/// size and consumer (the guest's readers compare with the drop at the pod's veth).
fn add_ratios(rows: &mut [Value], reference: &[Value]) {
    for r in rows.iter_mut() {
        let consumer = match r["consumer"].as_str() {
            Some("guest") => "drop",
            Some(c) => c,
            None => continue,
        }
        .to_string();
        let base = reference.iter().find(|x| {
            x["model"] == "reference"
                && x["direction"] == r["direction"]
                && x["frame_bytes"] == r["frame_bytes"]
                && x["consumer"] == consumer.as_str()
        });
        let ratio = match (r["pps"].as_f64(), base.and_then(|b| b["pps"].as_f64())) {
            (Some(p), Some(b)) if b > 0.0 => Some(round(p / b, 3)),
            _ => None,
        };
        r["ratio_to_reference"] = json!(ratio);
    }
}

// ------------------------------------------------------------------ run

#[derive(Parser, Debug)]
#[command(about = "the datapath benchmark (issue 15): pps, loss, CPU per packet per model")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    Run(RunArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// A few short windows of every row kind (CI).
    #[arg(long, conflicts_with = "full")]
    smoke: bool,
    /// The measurement (the default).
    #[arg(long)]
    full: bool,
    /// Repetitions (each on a fresh pod/peer pair).
    #[arg(long)]
    reps: Option<usize>,
    /// Windows per trial.
    #[arg(long)]
    windows: Option<usize>,
    /// Seconds per window.
    #[arg(long)]
    window_secs: Option<f64>,
    #[arg(long, default_value_t = 0)]
    sender_cpu: usize,
    #[arg(long, default_value_t = 1)]
    receiver_cpu: usize,
    /// Namespace name prefix (scripts/bench.sh removes what carries it on exit).
    #[arg(long, default_value = "sndp")]
    prefix: String,
    /// State directory for the attachments (created; removed at the end when empty).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Keep the generator's default send buffer: a local socket paced by the frames it has
    /// in flight (see `UNPACED_SNDBUF`). For comparison only.
    #[arg(long)]
    paced: bool,
    /// Run only the main rows (`main`) or only the queue length rows (`queue-len`).
    #[arg(long, value_parser = ["all", "main", "queue-len"], default_value = "all")]
    section: String,
    /// The report to merge the rows into (created if missing).
    #[arg(long, default_value = "target/bench/report.json")]
    report: PathBuf,
}

fn run(a: &RunArgs) -> R<()> {
    let mut plan = if a.smoke { Plan::smoke() } else { Plan::full() };
    if let Some(r) = a.reps {
        plan.reps = r.max(1);
    }
    if let Some(w) = a.windows {
        plan.windows = w.max(1);
    }
    plan.paced = a.paced;
    if let Some(s) = a.window_secs {
        plan.window = Duration::from_secs_f64(s.max(0.01));
    }
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (scpu, rcpu) = if a.sender_cpu.max(a.receiver_cpu) < ncpu {
        (a.sender_cpu, a.receiver_cpu)
    } else {
        (0, ncpu.saturating_sub(1))
    };
    let state_dir = a.state_dir.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "/dev/shm/sandbox-net-datapath-{}",
            std::process::id()
        ))
    });
    let main_specs = if a.section == "queue-len" {
        Vec::new()
    } else {
        plan.main_specs()
    };
    let qlen_specs = if a.section == "main" {
        Vec::new()
    } else {
        plan.queue_len_specs()
    };
    let load_start = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let started = Instant::now();
    eprintln!(
        "== datapath: {} + {} trials x {} rep(s), {} x {:.2} s windows, sender CPU {scpu}, receiver CPU {rcpu}",
        main_specs.len(),
        qlen_specs.len(),
        plan.reps,
        plan.windows,
        plan.window.as_secs_f64()
    );
    // Trials of one spec, in the order first run.
    let mut results: Vec<(Spec, Vec<TrialOut>)> = Vec::new();
    let mut n = 0;
    for rep in 0..plan.reps {
        let mut env = Env::new(&a.prefix, &state_dir, scpu, rcpu)?;
        for spec in main_specs.iter().chain(&qlen_specs) {
            let at = match results.iter().position(|(s, _)| s == spec) {
                Some(at) => at,
                None => {
                    results.push((*spec, Vec::new()));
                    results.len() - 1
                }
            };
            if results[at].1.len() > rep {
                continue; // the default queue length is both a main row and a sweep point
            }
            n += 1;
            let out = env
                .run_trial(spec, n, &plan)
                .map_err(|e| format!("{spec:?}: {e}"))?;
            results[at].1.push(out);
        }
    }
    let trials_of = |spec: &Spec| results.iter().find(|(s, _)| s == spec).map(|(_, t)| t);
    let _ = fs::remove_dir(&state_dir);
    let cpus = (scpu, rcpu);
    let mut rows: Vec<Value> = main_specs
        .iter()
        .filter_map(|s| trials_of(s).map(|t| row(s, t, cpus)))
        .collect();
    let reference = rows.clone();
    add_ratios(&mut rows, &reference);
    let mut sweep: Vec<Value> = qlen_specs
        .iter()
        .filter_map(|s| trials_of(s).map(|t| row(s, t, cpus)))
        .collect();
    add_ratios(&mut sweep, &reference);

    let mut report: Value = fs::read_to_string(&a.report)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({}));
    if !report.is_object() {
        report = json!({});
    }
    report["datapath"] = json!(rows);
    report["datapath_queue_len"] = json!(sweep);
    report["datapath_method"] = json!({
        "mode": if a.smoke { "smoke" } else { "full" },
        "reps": plan.reps, "windows_per_trial": plan.windows,
        "window_s": plan.window.as_secs_f64(), "warmup_s": plan.warmup.as_secs_f64(),
        "sender_cpu": scpu, "receiver_cpu": rcpu, "flows": FLOWS,
        "generator_sndbuf": if plan.paced { json!("default (paced)") } else { json!(UNPACED_SNDBUF) },
        "loadavg_start": load_start.trim(),
        "loadavg_end": fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "elapsed_s": round(started.elapsed().as_secs_f64(), 1),
        "pps": "delivered packets per second: median over every window of every repetition (pps_min, pps_max: the spread)",
        "loss": "1 - delivered / sent over a whole trial (warm-up and drain included), median over repetitions",
        "cpu_ns_per_pkt": "CPU time of the generator and consumer threads plus the ksoftirqd threads (schedstat; softirqs run in a thread's context count as its time on this tick-accounted kernel) per delivered packet, median over windows",
        "system_busy_ns_per_pkt": "busy time of every CPU from /proc/stat per delivered packet (includes other processes: others_cpu_pct)",
        "guest": "queues opened through the library (dataplane::open_endpoint_queues, non-blocking, vnet header), TUNSETVNETHDRSZ 12, no offloads, one read()/write() per frame per queue thread",
        "peer": "AF_PACKET + PACKET_QDISC_BYPASS sendmmsg x64 on the peer veth, 64 MiB send buffer (unpaced: a macvtap keeps sent frames charged to the sender until the guest reads them); consumer drop = tcx ingress TC_ACT_SHOT after rx_packets; udp_socket = recvmmsg x64, 8 MiB rcvbuf",
        "reference": "no tap: to_guest frames counted and dropped at the pod's eth0; from_guest sent by AF_PACKET on the pod's eth0",
    });
    if let Some(d) = a.report.parent() {
        fs::create_dir_all(d)?;
    }
    fs::write(&a.report, serde_json::to_string_pretty(&report)? + "\n")?;
    let md = markdown(&report);
    fs::write(a.report.with_file_name("datapath.md"), &md)?;
    print_tables(&report);
    println!(
        "datapath report: {} (and {}), {:.0} s",
        a.report.display(),
        a.report.with_file_name("datapath.md").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

// ------------------------------------------------------------------ output

fn kpps(v: &Value) -> String {
    v.as_f64()
        .map_or("-".into(), |x| format!("{:.0}k", x / 1000.0))
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or("-".into(), |x| format!("{:.3}%", x * 100.0))
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64().map_or("-".into(), |x| format!("{x:.digits$}"))
}

fn drops_text(r: &Value) -> String {
    let d: Vec<String> = r["drops"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if d.is_empty() {
        "-".into()
    } else {
        d.join(", ")
    }
}

fn row_cells(r: &Value) -> Vec<String> {
    vec![
        r["model"].as_str().unwrap_or_default().to_string(),
        r["direction"].as_str().unwrap_or_default().to_string(),
        r["frame_bytes"].to_string(),
        r["queues"].to_string(),
        r["consumer"].as_str().unwrap_or_default().to_string(),
        r["txqueuelen"]
            .as_u64()
            .map_or("-".into(), |q| q.to_string()),
        format!(
            "{} ({}-{})",
            kpps(&r["pps"]),
            kpps(&r["pps_min"]),
            kpps(&r["pps_max"])
        ),
        pct(&r["loss"]),
        num(&r["cpu_ns_per_pkt"], 0),
        num(&r["ratio_to_reference"], 2),
        format!(
            "{}/{}",
            num(&r["sender_cpu_pct"], 0),
            num(&r["receiver_cpu_pct"], 0)
        ),
        num(&r["others_cpu_pct"], 0),
    ]
}

const HEADERS: [&str; 12] = [
    "model",
    "direction",
    "frame",
    "q",
    "consumer",
    "txqlen",
    "pps median (min-max)",
    "loss",
    "cpu ns/pkt",
    "x ref",
    "cpu% snd/rcv",
    "others%",
];

fn print_tables(report: &Value) {
    if let Some(ratios) = report["ratios"].as_array() {
        println!();
        println!("setup ratios of this run (medians):");
        for r in ratios {
            let met = match r["met"].as_bool() {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "n/a",
            };
            println!(
                "  {:<64} {:>8} {:>8}  {met}",
                r["name"].as_str().unwrap_or_default(),
                num(&r["value"], 3),
                r["target"].as_f64().map_or("-".into(), |t| t.to_string())
            );
        }
    }
    let m = &report["datapath_method"];
    println!();
    println!(
        "datapath: {} rep(s) x {} windows of {} s; sender CPU {}, receiver CPU {}; generator send buffer {}; load {} -> {}",
        m["reps"],
        m["windows_per_trial"],
        m["window_s"],
        m["sender_cpu"],
        m["receiver_cpu"],
        m["generator_sndbuf"],
        m["loadavg_start"].as_str().unwrap_or_default(),
        m["loadavg_end"].as_str().unwrap_or_default()
    );
    let widths = [10, 10, 5, 2, 10, 6, 24, 8, 10, 6, 12, 7];
    let line = |cells: &[String]| {
        let s: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", s.join(" ").trim_end());
    };
    for (title, key) in [
        ("datapath", "datapath"),
        (
            "loss against the tap queue length (txqueuelen)",
            "datapath_queue_len",
        ),
    ] {
        println!();
        println!("{title}:");
        line(&HEADERS.map(String::from));
        for r in report[key].as_array().into_iter().flatten() {
            line(&row_cells(r));
            let d = drops_text(r);
            let share = r["queue_share"].as_array().filter(|s| s.len() > 1);
            if d != "-" || share.is_some() {
                println!(
                    "    drops: {d}{}",
                    share.map_or(String::new(), |s| format!(
                        "; queue share {}",
                        Value::Array(s.clone())
                    ))
                );
            }
        }
    }
}

/// The datapath tables as Markdown (for docs/BENCHMARKS.md).
fn markdown(report: &Value) -> String {
    let mut m = String::new();
    for (title, key) in [
        ("datapath", "datapath"),
        ("tap queue length", "datapath_queue_len"),
    ] {
        m += &format!("\n| {title}: {} | drops |\n", HEADERS.join(" | "));
        m += &format!("|{}\n", "---|".repeat(HEADERS.len() + 1));
        for r in report[key].as_array().into_iter().flatten() {
            m += &format!("| {} | {} |\n", row_cells(r).join(" | "), drops_text(r));
        }
    }
    m
}

fn main() {
    let cli = Cli::parse();
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    let result = match &cli.cmd {
        Cmd::Run(a) => run(a),
    };
    if let Err(e) = result {
        eprintln!("datapath: error: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;
    use netlink_packet_route::link::Stats64;
    use sandbox_net::fakeguest::packet::{internet_checksum, parse_ethernet, parse_ipv4};

    fn addresses() -> Addresses {
        Addresses {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(10, 77, 0, 1),
            dst_ip: Ipv4Addr::new(10, 77, 0, 2),
        }
    }

    #[test]
    fn frames_have_the_wire_size_a_valid_header_and_one_flow_each() {
        for (nominal, wire) in [(64, 60), (1500, 1514)] {
            assert_eq!(wire_bytes(nominal), wire);
            let frames = build_frames(&addresses(), wire).unwrap();
            assert_eq!(frames.len(), FLOWS as usize);
            let mut ports = std::collections::BTreeSet::new();
            for f in &frames {
                assert_eq!(f.len(), wire);
                assert!(is_ours(f));
                let eth = parse_ethernet(f).unwrap();
                assert_eq!((eth.dst, eth.src), ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]));
                let ip = parse_ipv4(eth.payload).expect("a valid IPv4 header");
                assert_eq!(internet_checksum(&eth.payload[..20]), 0);
                assert_eq!(ip.protocol, 17);
                assert_eq!(ip.payload.len(), wire - 34);
                assert_eq!(&ip.payload[2..4], &UDP_DST_PORT.to_be_bytes());
                assert_eq!(
                    u16::from_be_bytes([ip.payload[4], ip.payload[5]]) as usize,
                    wire - 34
                );
                ports.insert([ip.payload[0], ip.payload[1]]);
            }
            assert_eq!(ports.len(), FLOWS as usize, "every frame its own flow");
        }
        assert!(build_frames(&addresses(), 59).is_err());
        assert!(build_frames(&addresses(), 1515).is_err());
    }

    #[test]
    fn only_our_udp_frames_count() {
        let f = build_frames(&addresses(), 60).unwrap().remove(0);
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let mut other_port = f.clone();
        other_port[37] ^= 1;
        let mut tcp = f.clone();
        tcp[23] = 6;
        for bad in [&arp, &other_port, &tcp, &f[..41].to_vec()] {
            assert!(!is_ours(bad));
        }
    }

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

    #[test]
    fn windows_turn_counters_into_rates_and_costs() {
        let t0 = Instant::now();
        let a = Sample {
            at: t0,
            delivered: 1000,
            sent: 1000,
            sender_ns: 0,
            receiver_ns: 0,
            ksoftirqd_ns: 0,
            cpus: vec![(0, 0), (0, 0)],
        };
        let b = Sample {
            at: t0 + Duration::from_secs(2),
            delivered: 1_001_000,
            sent: 1_101_000,
            sender_ns: 2_000_000_000,
            receiver_ns: 1_000_000_000,
            ksoftirqd_ns: 0,
            cpus: vec![(200, 200), (150, 200)],
        };
        let w = window(&a, &b);
        assert_eq!(w.pps, 500_000.0);
        assert_eq!(w.offered_pps, 550_000.0);
        assert_eq!(w.cpu_ns_per_pkt, 3000.0);
        assert_eq!((w.sender_cpu_pct, w.receiver_cpu_pct), (100.0, 50.0));
        // 350 busy jiffies of 1/USER_HZ s, of which our 3 s are 300 at 100 Hz.
        if user_hz() == 100.0 {
            assert_eq!(w.system_ns_per_pkt, 3500.0);
            assert_eq!(w.others_cpu_pct, 12.5);
        }
    }

    #[test]
    fn every_model_row_kind_is_planned_and_compared_with_the_reference() {
        let plan = Plan::smoke();
        let specs = plan.main_specs();
        for &join in JOINS {
            for d in [Direction::ToGuest, Direction::FromGuest] {
                assert!(specs.iter().any(|s| s.join == join && s.direction == d));
            }
            assert!(
                specs
                    .iter()
                    .any(|s| s.join == join && s.consumer == Consumer::UdpSocket)
            );
        }
        assert!(specs.iter().any(|s| s.queues == 2));
        assert!(!plan.queue_len_specs().is_empty());
        let mk = |model: &str, consumer: &str, pps: f64| json!({"model": model, "direction": "to_guest", "frame_bytes": 64, "consumer": consumer, "pps": pps});
        let reference = vec![mk("reference", "drop", 800_000.0)];
        let mut rows = vec![
            mk("tcfilter", "guest", 400_000.0),
            mk("tcfilter", "udp_socket", 1.0),
        ];
        add_ratios(&mut rows, &reference);
        assert_eq!(rows[0]["ratio_to_reference"], 0.5);
        assert!(
            rows[1]["ratio_to_reference"].is_null(),
            "no reference row to compare with"
        );
        assert_eq!(median(&[3.0, 1.0, 2.0, f64::NAN]), Some(2.0));
        assert_eq!(median(&[]), None);
    }
}
