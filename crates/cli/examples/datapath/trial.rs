//! One trial: attach, start the consumers and the generator, sample the windows, drain.

use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sandbox_net::Endpoint;
use sandbox_net::netlink::Netlink;
use sandbox_net::vmm::open_endpoint_queues;
use sandbox_net::{AttachOptions, tap};
use sandbox_net_testkit::iproute::try_ip;
use sandbox_net_testkit::scratch::ScratchNet;

use crate::counters::{LinkStats, link_stats, parse_proc_stat, task_cpu_ns};
use crate::frames::{Addresses, Ends, UDP_DST_PORT, build_frames, frame_addresses};
use crate::kernel::{packet_sender, set_int_option, set_vnet_hdr_len, tcx_drop, tcx_error};
use crate::spec::{Consumer, Direction, Join, Plan, Spec, wire_bytes};
use crate::workers::{
    Worker, af_packet_send, guest_read, guest_write, join_all, spawn_worker, udp_receive,
};
use crate::{INTERRUPTED, R, fail};

/// The pod/peer pair every trial of a repetition runs on.
pub struct Env {
    pub net: ScratchNet,
    pub state_dir: PathBuf,
    pub pod_nl: Netlink,
    pub peer_nl: Netlink,
    pub eth0: u32,
    pub peth0: u32,
    pub eth0_mac: [u8; 6],
    pub peth0_mac: [u8; 6],
    pub pod_ip: Ipv4Addr,
    pub peer_ip: Ipv4Addr,
    pub sender_cpu: usize,
    pub receiver_cpu: usize,
    pub ksoftirqd: Vec<PathBuf>,
}

/// What a trial attached (None for the reference), detached on drop.
pub struct Attached {
    pub state_dir: PathBuf,
    pub id: String,
    pub endpoint: Endpoint,
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
pub struct Sample {
    pub at: Instant,
    pub delivered: u64,
    pub sent: u64,
    pub sender_ns: u64,
    pub receiver_ns: u64,
    pub ksoftirqd_ns: u64,
    pub cpus: Vec<(u64, u64)>,
}

/// One measured window.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub pps: f64,
    pub offered_pps: f64,
    pub cpu_ns_per_pkt: f64,
    pub system_ns_per_pkt: f64,
    pub sender_cpu_pct: f64,
    pub receiver_cpu_pct: f64,
    pub others_cpu_pct: f64,
}

pub fn window(a: &Sample, b: &Sample) -> Window {
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
pub fn wait_for_idle(max: Duration) -> f64 {
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

pub fn user_hz() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// A trial's outcome.
#[derive(Debug, Clone)]
pub struct TrialOut {
    pub waited_s: f64,
    pub windows: Vec<Window>,
    pub sent: u64,
    pub delivered: u64,
    pub per_queue: Vec<u64>,
    pub drops: BTreeMap<String, u64>,
}

/// Where the delivered count comes from.
pub enum Delivered {
    Workers,
    Link { pod: bool, index: u32 },
}

pub fn ksoftirqd_tasks() -> Vec<PathBuf> {
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
    pub fn new(prefix: &str, state_dir: &Path, sender_cpu: usize, receiver_cpu: usize) -> R<Env> {
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

    pub fn attach(&self, spec: &Spec, n: usize) -> R<Option<Attached>> {
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
        let attached = Attached {
            state_dir: self.state_dir.clone(),
            id,
            endpoint,
        };
        if spec.join.routed() {
            self.routed_neighbours(&attached.endpoint)?;
        }
        Ok(Some(attached))
    }

    /// The addresses of the frames into the guest and out of it ([`frame_addresses`]): the
    /// guest has the pod's address and the endpoint's recorded MAC; a routed join's guest
    /// sends to the tap's MAC.
    pub fn addresses(&self, join: Join, ep: Option<&Endpoint>) -> R<(Addresses, Addresses)> {
        let guest_mac = match ep {
            Some(e) => *e
                .mac
                .ok_or_else(|| format!("endpoint {} has no MAC", e.name))?
                .as_bytes(),
            None => self.eth0_mac,
        };
        let tap_mac = match ep {
            Some(ep) if join.routed() => Some(
                *ep.backend
                    .device_mac()
                    .ok_or("the l3 endpoint has no tap MAC")?
                    .as_bytes(),
            ),
            _ => None,
        };
        let ends = Ends {
            pod_mac: self.eth0_mac,
            peer_mac: self.peth0_mac,
            pod_ip: self.pod_ip,
            peer_ip: self.peer_ip,
        };
        Ok(frame_addresses(&ends, guest_mac, tap_mac))
    }

    /// Routed (l3): the pod's neighbour entries for both ends, which real ends make by
    /// answering the pod's ARP: the guest's address on the tap, and the peer's on `eth0`.
    /// The bench's readers answer nothing, and the peer's drop program drops ARP too (an
    /// entry nobody confirms fails under the flood, and the pod then drops what it
    /// forwards), so both are made permanent. The guest's goes with the tap on detach; the
    /// peer's stays with the pod, as a resolved gateway would.
    fn routed_neighbours(&self, ep: &Endpoint) -> R<()> {
        let tap = device(ep)?;
        let guest_mac = ep
            .mac
            .ok_or_else(|| format!("endpoint {} has no MAC", ep.name))?
            .to_string();
        let peth0_mac: Vec<String> = self.peth0_mac.iter().map(|b| format!("{b:02x}")).collect();
        let (pod_ip, peer_ip) = (self.pod_ip.to_string(), self.peer_ip.to_string());
        let entries = [
            (pod_ip.as_str(), guest_mac.as_str(), tap),
            (peer_ip.as_str(), &peth0_mac.join(":"), "eth0"),
        ];
        for (ip, mac, dev) in entries {
            let args = [
                "neigh",
                "replace",
                ip,
                "lladdr",
                mac,
                "dev",
                dev,
                "nud",
                "permanent",
            ];
            try_ip(&self.net.pod_name, &args)
                .map_err(|e| format!("the neighbour entry of {ip} on {dev}: {e}"))?;
        }
        Ok(())
    }

    /// The guest's queues, opened as a VMM opens them, with the VMM's header size.
    pub fn open_queues(&self, ep: &Endpoint) -> R<Vec<OwnedFd>> {
        let tap = device(ep)?;
        let fds = self
            .net
            .pod
            .run(|| open_endpoint_queues(ep))?
            .map_err(|e| format!("open the queues of {tap}: {e}"))?;
        for fd in &fds {
            set_vnet_hdr_len(fd).map_err(|e| format!("TUNSETVNETHDRSZ on {tap}: {e}"))?;
        }
        Ok(fds)
    }

    pub fn drops(&mut self, tap: Option<u32>) -> R<BTreeMap<String, u64>> {
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

    pub fn run_trial(&mut self, spec: &Spec, n: usize, plan: &Plan) -> R<TrialOut> {
        let waited_s = if plan.idle_wait.is_zero() {
            0.0
        } else {
            wait_for_idle(plan.idle_wait)
        };
        let attached = self.attach(spec, n)?;
        let ep = attached.as_ref().map(|a| a.endpoint.clone());
        let tap_index = match &ep {
            Some(ep) => {
                let dev = device(ep)?;
                Some(self.net.pod.run(|| tap::ifindex(dev))??)
            }
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
        let (to_guest, from_guest) = self.addresses(spec.join, ep.as_ref())?;
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

    pub fn read_delivered(&mut self, from: &Delivered, receivers: &[Worker]) -> R<u64> {
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

    pub fn sample(
        &mut self,
        from: &Delivered,
        senders: &[Worker],
        receivers: &[Worker],
    ) -> R<Sample> {
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

/// The device (tap or macvtap) the VMM opens for `ep`.
fn device(ep: &Endpoint) -> R<&str> {
    ep.backend
        .device()
        .ok_or_else(|| format!("endpoint {} has no tap or macvtap", ep.name).into())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
