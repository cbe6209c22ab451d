//! The benchmark runner behind `scripts/bench.sh` (issue #8). An example, not a binary of
//! the crate: it is never installed. Run it as root:
//!
//! ```text
//! cargo run --release --example bench -- run --smoke|--full [--cli PATH] [--tcbench PATH]
//!     [--nlbench PATH] [--baselines DIR] [--out target/bench/report.json] ...
//! ```
//!
//! `run` orchestrates everything: on identically prepared namespaces it measures sandbox-net
//! (the library in process, and the CLI as a whole process) against the peers in
//! `../shared/baselines` (iproute2 scripts, the Go harness `tcbench`, the C lower bound
//! `nlbench`), interleaved round-robin so that machine drift hits every tool alike, and
//! writes `report.json`. The other subcommands are the library side of it, each run in its
//! own process like the peers (one untimed warm-up, then timed samples), printing JSON:
//!
//! - `lib-cycle`: attach + detach of one netns (library calls timed in process);
//! - `lib-scan`: `sandbox_net::scan::scan` of a netns (the socket opened in the netns);
//! - `lib-teardown`: attach (untimed), then the timed detach of a whole sandbox;
//! - `lib-concurrent`: N fresh netns attached by P worker threads (wall and per sandbox);
//! - `steps`: the attach and detach replayed step by step with the library's public
//!   primitives, each step timed (where the time goes).
//!
//! Every namespace gets a unique name under the `--prefix` and is deleted on drop; a
//! SIGINT/SIGTERM stops the run between samples so the guards run. `scripts/bench.sh`
//! removes whatever carries its prefix on exit as a second line of defence.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use serde_json::{Value, json};

use sandbox_net::netlink::{Netlink, addr, link, route, tc};
use sandbox_net::netns::NetNs;
use sandbox_net::state::StateDir;
use sandbox_net::trusted_dir::TrustedDir;
use sandbox_net::{AttachOptions, attach, detach, scan, tap};
use sandbox_net_testkit::netns;
use sandbox_net_testkit::scratch::ScratchNet;

type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn fail<T>(msg: impl Into<String>) -> R<T> {
    Err(msg.into().into())
}

// ------------------------------------------------------------------ stop on a signal

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

fn check_stop() -> R<()> {
    if STOP.load(Ordering::SeqCst) {
        return fail("interrupted");
    }
    Ok(())
}

// ------------------------------------------------------------------ stats

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[derive(Debug, Clone, Copy)]
struct Stats {
    n: usize,
    median: f64,
    p99: f64,
    min: f64,
    max: f64,
}

/// Median (mean of the two middle values when even) and nearest-rank p99, as the peers'
/// own reports (stats.py, tcbench, nlbench) compute them.
fn stats(v: &[f64]) -> Option<Stats> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    let rank = ((0.99 * n as f64).ceil() as usize).clamp(1, n) - 1;
    Some(Stats {
        n,
        median,
        p99: s[rank],
        min: s[0],
        max: s[n - 1],
    })
}

fn median(v: &[f64]) -> Option<f64> {
    stats(v).map(|s| s.median)
}

// ------------------------------------------------------------------ namespaces

/// A named netns deleted on drop.
struct Ns {
    name: String,
    ns: NetNs,
}

impl Ns {
    fn create(name: String) -> R<Ns> {
        let ns = netns::create(&name)?;
        Ok(Ns { name, ns })
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        if let Err(e) = netns::delete(&self.name) {
            eprintln!("bench: could not delete netns {}: {e}", self.name);
        }
    }
}

static NS_COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str, what: &str) -> String {
    format!(
        "{prefix}-{}-b{}{what}",
        std::process::id(),
        NS_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// `ip -n NS -batch -` with `script` on stdin.
fn ip_batch(ns: &str, script: &str) -> R<()> {
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("ip -batch (is iproute2 installed?): {e}"))?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return fail(format!(
            "ip -n {ns} -batch failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// A pod netns with `k` veths `eth0..` whose peers `p0..` are in a peer netns, all up.
/// `full` configures them like the Go harness's scan netns (tcbench.go
/// configureScanIfaces: IPv4 /24 and IPv6 /64 (nodad), a route via a gateway, a scope-link
/// route, one PERMANENT neighbour, and a default route via eth0); otherwise each ethI only
/// gets an IPv4 /24 (sandbox-net attaches interfaces that have an address).
struct VethNs {
    pod: Ns,
    _peer: Ns,
}

impl VethNs {
    fn new(prefix: &str, k: usize, full: bool) -> R<VethNs> {
        let base = unique(prefix, "");
        let pod = Ns::create(format!("{base}-pod"))?;
        let peer = Ns::create(format!("{base}-peer"))?;
        let mut links = String::from("link set lo up\n");
        let mut peer_up = String::new();
        let mut conf = String::new();
        for i in 0..k {
            let (b, c) = (64 + i / 256, i % 256);
            links += &format!(
                "link add eth{i} mtu 1500 type veth peer name p{i} netns {}\nlink set eth{i} up\n",
                peer.name
            );
            peer_up += &format!("link set p{i} up\n");
            conf += &format!("addr add 10.{b}.{c}.2/24 dev eth{i}\n");
            if full {
                conf += &format!(
                    "addr add fd00:0:0:{i:x}::2/64 dev eth{i} nodad\n\
                     route add 172.{}.{c}.0/24 via 10.{b}.{c}.1 dev eth{i}\n\
                     route add 100.{b}.{c}.0/24 dev eth{i} scope link\n\
                     neigh add 10.{b}.{c}.1 lladdr 02:42:ac:11:{:02x}:{:02x} dev eth{i} nud permanent\n",
                    16 + i / 256,
                    i >> 8,
                    i & 0xff
                );
                if i == 0 {
                    conf += &format!("route add default via 10.{b}.{c}.1 dev eth0\n");
                }
            }
        }
        ip_batch(&pod.name, &links)?;
        ip_batch(&peer.name, &peer_up)?;
        ip_batch(&pod.name, &conf)?;
        let v = VethNs { pod, _peer: peer };
        v.wait_settled(k)?;
        Ok(v)
    }

    /// Wait (max 10 s) until every ethI has its IPv6 link-local address out of DAD, as the
    /// Go harness does, so the netns no longer changes while it is measured.
    fn wait_settled(&self, k: usize) -> R<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut nl = Netlink::open_in(&self.pod.ns)?;
        loop {
            let addrs = addr::dump(&mut nl).map_err(|e| e.into_io())?;
            let ready = addrs
                .iter()
                .filter(|a| match a.addr {
                    IpAddr::V6(v6) => {
                        v6.segments()[0] == 0xfe80
                            && a.ifindex != 1
                            && a.flags & (libc::IFA_F_TENTATIVE | libc::IFA_F_DADFAILED) == 0
                    }
                    IpAddr::V4(_) => false,
                })
                .count();
            if ready >= k {
                return Ok(());
            }
            if Instant::now() > deadline {
                return fail(format!(
                    "netns {}: {ready} of {k} link-local addresses ready after 10 s",
                    self.pod.name
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// ------------------------------------------------------------------ child processes

/// Run a command to completion; its stdout, or an error with its stderr.
fn output(cmd: &mut Command) -> R<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return fail(format!(
            "{:?} {:?} failed ({}): {}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run a command as one timed whole process: wall time in µs (spawn to reap) and the
/// child's peak RSS in KiB (getrusage of the child, via wait4).
fn timed_process(cmd: &mut Command) -> R<(f64, i64)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on our own child; status and ru outlive the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return fail(format!("wait4: {e}"));
        }
    }
    let elapsed = us(t0.elapsed());
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let mut err = String::new();
        if let Some(mut s) = child.stderr.take() {
            let _ = s.read_to_string(&mut err);
        }
        return fail(format!(
            "{:?} {:?} failed (wait status {status}): {}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            err.trim()
        ));
    }
    Ok((elapsed, ru.ru_maxrss))
}

/// The number after `key` in a peer's report line ("median=  1119.9us").
fn field(line: &str, key: &str) -> Option<f64> {
    let rest = line[line.find(key)? + key.len()..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// One summary line of a peer: (n, median, p99).
fn summary(line: &str) -> Option<(usize, f64, f64)> {
    Some((
        field(line, "N=")? as usize,
        field(line, "median=")?,
        field(line, "p99=")?,
    ))
}

fn line_with<'a>(text: &'a str, pat: &str) -> R<&'a str> {
    text.lines()
        .find(|l| l.contains(pat))
        .ok_or_else(|| format!("no line with {pat:?} in:\n{text}").into())
}

// ------------------------------------------------------------------ subcommands

#[derive(Parser)]
#[command(about = "sandbox-net benchmark runner (see scripts/bench.sh)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the whole benchmark and write the report.
    Run(RunArgs),
    /// Attach + detach cycles of one netns (library, timed in process).
    LibCycle(CycleArgs),
    /// Scans of one netns.
    LibScan(ScanArgs),
    /// Whole-sandbox teardowns (attach untimed, detach timed).
    LibTeardown(TeardownArgs),
    /// Fresh netns attached concurrently by worker threads.
    LibConcurrent(ConcurrentArgs),
    /// Attach and detach replayed step by step, each step timed.
    Steps(StepsArgs),
}

#[derive(Args)]
struct CycleArgs {
    #[arg(long)]
    netns: String,
    #[arg(long, default_value_t = 1)]
    queues: u32,
    #[arg(long)]
    state_dir: PathBuf,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    #[arg(short, default_value_t = 1)]
    n: usize,
    /// Attach only this interface, without the guest description (the CNI plugin's path).
    #[arg(long)]
    named: Option<String>,
}

fn lib_cycle(a: &CycleArgs) -> R<Value> {
    let mut samples = Vec::new();
    for i in 0..a.warmup + a.n {
        let id = format!("bench-{}-{i}", std::process::id());
        let mut opts = AttachOptions::new(a.netns.clone(), id.clone());
        opts.queues = a.queues;
        opts.state_dir = a.state_dir.clone();
        if let Some(name) = &a.named {
            opts.interfaces = Some(vec![name.clone()]);
            opts.describe_guest = false;
        }
        let t0 = Instant::now();
        let att = attach(&opts)?;
        let t1 = Instant::now();
        detach(&a.state_dir, &id)?;
        let t2 = Instant::now();
        if att.endpoints.len() != 1 {
            return fail(format!(
                "attached {} endpoints, want 1",
                att.endpoints.len()
            ));
        }
        if i >= a.warmup {
            samples.push(json!({
                "attach_us": us(t1 - t0),
                "detach_us": us(t2 - t1),
                "requests": att.netlink_requests,
            }));
        }
    }
    Ok(json!({ "samples": samples }))
}

#[derive(Args)]
struct ScanArgs {
    #[arg(long)]
    netns: String,
    /// Expected endpoints (configured, non-loopback interfaces).
    #[arg(long)]
    links: usize,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    #[arg(short, default_value_t = 200)]
    n: usize,
}

fn endpoints_in(snap: &scan::Snapshot) -> usize {
    snap.links
        .iter()
        .filter(|l| !l.is_loopback() && snap.addresses_of(l.index).next().is_some())
        .count()
}

fn lib_scan(a: &ScanArgs) -> R<Value> {
    let scan_err = |e: scan::ScanError| format!("{}: {}", e.dump, e.error.into_io());
    // As the Go harness times it: open the netns, a socket in it, the dumps, the filter.
    let mut fresh = Vec::new();
    for i in 0..a.warmup + a.n {
        let t0 = Instant::now();
        let ns = NetNs::open(&a.netns, false)?;
        let mut nl = Netlink::open_in(&ns)?;
        let snap = scan::scan(&mut nl).map_err(scan_err)?;
        let found = endpoints_in(&snap);
        let el = us(t0.elapsed());
        if found != a.links {
            return fail(format!("scan found {found} endpoints, want {}", a.links));
        }
        if i >= a.warmup {
            fresh.push(el);
        }
    }
    // The dumps alone, on a socket opened once (what attach does inside the netns).
    let ns = NetNs::open(&a.netns, false)?;
    let mut nl = Netlink::open_in(&ns)?;
    let mut reused = Vec::new();
    let before = nl.requests();
    for i in 0..a.warmup + a.n {
        let t0 = Instant::now();
        let snap = scan::scan(&mut nl).map_err(scan_err)?;
        let found = endpoints_in(&snap);
        let el = us(t0.elapsed());
        if found != a.links {
            return fail(format!("scan found {found} endpoints, want {}", a.links));
        }
        if i >= a.warmup {
            reused.push(el);
        }
    }
    let per_scan = (nl.requests() - before) as f64 / (a.warmup + a.n) as f64;
    Ok(json!({ "samples": fresh, "dumps_only": reused, "requests_per_scan": per_scan }))
}

#[derive(Args)]
struct TeardownArgs {
    #[arg(long)]
    netns: String,
    #[arg(long)]
    endpoints: usize,
    #[arg(long)]
    state_dir: PathBuf,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    #[arg(short, default_value_t = 20)]
    n: usize,
}

fn lib_teardown(a: &TeardownArgs) -> R<Value> {
    let mut samples = Vec::new();
    let mut requests = 0;
    for i in 0..a.warmup + a.n {
        let id = format!("bench-td-{}-{i}", std::process::id());
        let mut opts = AttachOptions::new(a.netns.clone(), id.clone());
        opts.state_dir = a.state_dir.clone();
        let att = attach(&opts)?;
        if att.endpoints.len() != a.endpoints {
            return fail(format!(
                "attached {} endpoints, want {}",
                att.endpoints.len(),
                a.endpoints
            ));
        }
        requests = att.netlink_requests;
        let t0 = Instant::now();
        detach(&a.state_dir, &id)?;
        if i >= a.warmup {
            samples.push(us(t0.elapsed()));
        }
    }
    Ok(json!({ "samples": samples, "attach_requests": requests }))
}

#[derive(Args)]
struct ConcurrentArgs {
    #[arg(long, default_value_t = 100)]
    count: usize,
    #[arg(long, default_value_t = 8)]
    par: usize,
    #[arg(long)]
    state_dir: PathBuf,
    #[arg(long, default_value = "snbench")]
    prefix: String,
}

/// Run `work(i)` for i in 0..count on `par` threads; (wall µs, per-item µs).
fn phase(count: usize, par: usize, work: impl Fn(usize) -> R<()> + Sync) -> R<(f64, Vec<f64>)> {
    let next = AtomicUsize::new(0);
    let times = Mutex::new(vec![0.0; count]);
    let first_error: Mutex<Option<String>> = Mutex::new(None);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..par {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let t = Instant::now();
                    let r = work(i);
                    let el = us(t.elapsed());
                    times.lock().unwrap()[i] = el;
                    if let Err(e) = r {
                        first_error.lock().unwrap().get_or_insert(e.to_string());
                    }
                }
            });
        }
    });
    let wall = us(t0.elapsed());
    if let Some(e) = first_error.into_inner().unwrap() {
        return fail(e);
    }
    Ok((wall, times.into_inner().unwrap()))
}

fn lib_concurrent(a: &ConcurrentArgs) -> R<Value> {
    // Setup, untimed (as tcbench -fresh): a netns that plays the host, and `count` pod netns
    // each with a veth eth0 (MTU 1500, up; here also an IPv4 address, without which
    // sandbox-net has nothing to attach) whose other end blvI is in the host netns.
    let host = Ns::create(unique(&a.prefix, "-host"))?;
    let mut host_nl = Netlink::open_in(&host.ns)?;
    let nlerr =
        |what: String| move |e: sandbox_net::netlink::NlError| format!("{what}: {}", e.into_io());
    let mut pods = Vec::with_capacity(a.count);
    for i in 0..a.count {
        check_stop()?;
        let pod = Ns::create(unique(&a.prefix, "-c"))?;
        let hname = format!("blv{i}");
        link::create_veth(
            &mut host_nl,
            &hname,
            "eth0",
            std::os::fd::AsFd::as_fd(&pod.ns),
        )
        .map_err(nlerr(format!("create veth {hname}")))?;
        let hidx = host.ns.run(|| tap::ifindex(&hname))??;
        link::set_up(&mut host_nl, hidx).map_err(nlerr(format!("{hname} up")))?;
        let mut nl = Netlink::open_in(&pod.ns)?;
        let idx = pod.ns.run(|| tap::ifindex("eth0"))??;
        let v4 = Ipv4Addr::new(10, 200 + (i / 256) as u8, (i % 256) as u8, 2);
        addr::add(&mut nl, idx, IpAddr::V4(v4), 24).map_err(nlerr(format!("{} addr", pod.name)))?;
        link::set_up(&mut nl, 1).map_err(nlerr("lo up".into()))?;
        link::set_up(&mut nl, idx).map_err(nlerr("eth0 up".into()))?;
        pods.push(pod);
    }
    let id = |i: usize| format!("bench-c-{}-{i}", std::process::id());
    let requests = AtomicUsize::new(0);
    let (attach_wall, attach_each) = phase(a.count, a.par, |i| {
        let mut opts = AttachOptions::new(pods[i].name.clone(), id(i));
        opts.state_dir = a.state_dir.clone();
        let att = attach(&opts)?;
        requests.fetch_add(att.netlink_requests as usize, Ordering::Relaxed);
        Ok(())
    })?;
    let (detach_wall, detach_each) = phase(a.count, a.par, |i| {
        detach(&a.state_dir, &id(i))?;
        Ok(())
    })?;
    Ok(json!({
        "attach_wall_us": attach_wall, "attach": attach_each,
        "detach_wall_us": detach_wall, "detach": detach_each,
        "requests": requests.load(Ordering::Relaxed),
    }))
}

#[derive(Args)]
struct StepsArgs {
    #[arg(long)]
    state_dir_disk: PathBuf,
    #[arg(long)]
    state_dir_tmpfs: PathBuf,
    #[arg(long, default_value = "snbench")]
    prefix: String,
    #[arg(short, default_value_t = 100)]
    n: usize,
}

/// Per-step samples, in first-seen order.
#[derive(Default)]
struct Steps {
    order: Vec<String>,
    samples: BTreeMap<String, Vec<f64>>,
}

impl Steps {
    fn add(&mut self, step: &str, v: f64) {
        if !self.samples.contains_key(step) {
            self.order.push(step.to_string());
        }
        self.samples.entry(step.to_string()).or_default().push(v);
    }

    fn time<T>(&mut self, step: &str, f: impl FnOnce() -> T) -> T {
        let t0 = Instant::now();
        let r = f();
        self.add(step, us(t0.elapsed()));
        r
    }

    fn merge(&mut self, other: Steps) {
        for k in other.order {
            for v in &other.samples[&k] {
                self.add(&k, *v);
            }
        }
    }

    fn to_json(&self) -> Value {
        Value::Array(
            self.order
                .iter()
                .filter_map(|k| {
                    let s = stats(&self.samples[k])?;
                    Some(json!({"step": k, "median_us": s.median, "p99_us": s.p99, "n": s.n}))
                })
                .collect(),
        )
    }
}

/// The MAC the step replay gives its tap (the library chooses a random one per tap).
const TAP_MAC: [u8; 6] = [0x02, 0x5e, 0, 0, 0, 1];

/// What an attach's two state writes do (`StateDir::create`, then `StateDir::save_next`),
/// with the library's own writers: the first record written into the held lock file and
/// linked as the state file, the second appended to it.
fn save_like_state(
    dir: &TrustedDir,
    lock: &mut sandbox_net::state::Lock,
    name: &str,
    first: bool,
    bytes: &[u8],
) -> R<()> {
    let done = if first {
        dir.link_lock_as(lock, name, bytes)?
    } else {
        dir.append_to_lock(lock, name, bytes, u64::MAX)?
    };
    if !done {
        return fail(format!("{name}: the state file is not the lock file"));
    }
    Ok(())
}

fn io_nl(e: sandbox_net::netlink::NlError) -> std::io::Error {
    e.into_io()
}

fn steps(a: &StepsArgs) -> R<Value> {
    let mut net = ScratchNet::new(&a.prefix)?;
    net.add_link(0, 1500, true)?;
    let name = net.pod_name.clone();
    let disk = TrustedDir::create(&a.state_dir_disk, "state directory")?;
    let tmpfs = TrustedDir::create(&a.state_dir_tmpfs, "state directory")?;
    // The size of a real state file, to replay its writes.
    let id = format!("steps-{}", std::process::id());
    let mut opts = AttachOptions::new(name.clone(), id.clone());
    opts.state_dir = a.state_dir_disk.clone();
    let att = attach(&opts)?;
    let requests = att.netlink_requests;
    // The size of one record (the state file holds two after an attach).
    let state = StateDir::open(&a.state_dir_disk)?
        .load(&id)?
        .ok_or("no state after the attach")?;
    let state_bytes = serde_json::to_vec_pretty(&state)?.len() as u64 + 1;
    detach(&a.state_dir_disk, &id)?;
    let json = format!("{id}.json");
    let blob = vec![b' '; state_bytes as usize];
    let alias = format!("sandbox-net:{id}");

    let mut st = Steps::default();
    for i in 0..a.n + 1 {
        check_stop()?;
        let mut s = Steps::default();
        let t_all = Instant::now();
        let ns = s.time(
            "attach: open+check netns (nsfs, NS_GET_NSTYPE, own/host)",
            || NetNs::open(&name, false),
        )?;
        let (store, mut lock) = s.time("attach: state dir open + flock + load", || -> R<_> {
            let store = StateDir::open(&a.state_dir_disk)?;
            let mut lock = store.lock(&id)?;
            store.load(&id)?;
            lock.remove_on_release();
            Ok((store, lock))
        })?;
        let mut tmpfs_lock = tmpfs
            .lock(&format!("{id}.lock"))?
            .ok_or("tmpfs lock busy")?;
        tmpfs_lock.remove_on_release();
        s.time("attach: setns in and back (empty NetNs::run)", || {
            ns.run(|| ())
        })?;
        let inner = ns.run(|| -> R<Steps> {
            let mut s = Steps::default();
            let mut nl = s.time("attach: netlink socket open", Netlink::open_here)?;
            s.time("attach: dump links", || link::dump(&mut nl))
                .map_err(io_nl)?;
            s.time("attach: dump addresses", || addr::dump(&mut nl))
                .map_err(io_nl)?;
            s.time("attach: dump routes", || route::dump(&mut nl))
                .map_err(io_nl)?;
            s.time("attach: dump neighbours", || {
                sandbox_net::netlink::neigh::dump(&mut nl)
            })
            .map_err(io_nl)?;
            s.time(
                "attach: state save #1 (disk: write into the lock file, link)",
                || save_like_state(&disk, &mut lock, &json, true, &blob),
            )?;
            s.time(
                "(alt) state save #1 on tmpfs (write into the lock file, link)",
                || save_like_state(&tmpfs, &mut tmpfs_lock, &json, true, &blob),
            )?;
            s.time(
                "attach: tap create (open tun, TUNSETIFF, TUNSETPERSIST)",
                || tap::create_persistent("tap0_st", 1, Default::default()),
            )?;
            let tapi = s.time(
                "attach: tap ifindex (SIOCGIFINDEX on the netlink socket)",
                || tap::ifindex_via(nl.as_fd(), "tap0_st"),
            )?;
            let veth = tap::ifindex("eth0")?;
            s.time("attach: SETLINK tap mac+mtu+txqueuelen+up+alias", || {
                let qlen = Some(tap::DEFAULT_QUEUE_LEN);
                link::set_mtu_up(&mut nl, tapi, 1500, Some(&TAP_MAC), Some((&alias, 1)), qlen)
            })
            .map_err(io_nl)?;
            s.time("attach: NEWQDISC ingress tap", || {
                tc::add_ingress(&mut nl, tapi)
            })
            .map_err(io_nl)?;
            s.time("attach: NEWQDISC ingress veth", || {
                tc::add_ingress(&mut nl, veth)
            })
            .map_err(io_nl)?;
            s.time("attach: NEWTFILTER veth->tap", || {
                tc::add_redirect(&mut nl, veth, tapi)
            })
            .map_err(io_nl)?;
            s.time("attach: NEWTFILTER tap->veth", || {
                tc::add_redirect(&mut nl, tapi, veth)
            })
            .map_err(io_nl)?;
            s.time("attach: state save #2 (disk: append)", || {
                save_like_state(&disk, &mut lock, &json, false, &blob)
            })?;
            s.time("detach: DELTFILTER tap", || tc::del_redirect(&mut nl, tapi))
                .map_err(io_nl)?;
            s.time("detach: DELTFILTER veth", || {
                tc::del_redirect(&mut nl, veth)
            })
            .map_err(io_nl)?;
            s.time("detach: DELQDISC veth", || tc::del_ingress(&mut nl, veth))
                .map_err(io_nl)?;
            s.time("detach: DELQDISC tap", || tc::del_ingress(&mut nl, tapi))
                .map_err(io_nl)?;
            s.time("detach: DELLINK tap (netdev unregister)", || {
                link::delete(&mut nl, tapi)
            })
            .map_err(io_nl)?;
            Ok(s)
        })??;
        s.merge(inner);
        s.time("detach: state file and lock file remove", || -> R<()> {
            store.remove(&id)?;
            drop(lock);
            Ok(())
        })?;
        s.add("total of the replay (attach+detach)", us(t_all.elapsed()));
        let _ = fs::remove_file(a.state_dir_tmpfs.join(&json));
        drop(tmpfs_lock);
        if i > 0 {
            st.merge(s);
        }
    }

    // Deleting 8 taps: one DELLINK each, against one DELLINK of a link group (one
    // unregister batch, one RCU grace period).
    let reps = (a.n / 10).max(2);
    let mut batch = Steps::default();
    let ns = NetNs::open(&name, false)?;
    for i in 0..reps + 1 {
        check_stop()?;
        let r = ns.run(|| -> R<(f64, f64)> {
            let mut nl = Netlink::open_here()?;
            let mut times = [0.0; 2];
            for (mode, t) in times.iter_mut().enumerate() {
                let mut idx = Vec::new();
                for k in 0..8 {
                    let name = format!("tapg{k}");
                    tap::create_persistent(&name, 1, Default::default())?;
                    let ix = tap::ifindex(&name)?;
                    let mut m = LinkMessage::default();
                    m.header.index = ix;
                    m.attributes.push(LinkAttribute::Group(77));
                    nl.request(RouteNetlinkMessage::SetLink(m), 0)
                        .map_err(io_nl)?;
                    idx.push(ix);
                }
                let t0 = Instant::now();
                if mode == 0 {
                    for ix in idx {
                        link::delete(&mut nl, ix).map_err(io_nl)?;
                    }
                } else {
                    let mut m = LinkMessage::default();
                    m.attributes.push(LinkAttribute::Group(77));
                    nl.request(RouteNetlinkMessage::DelLink(m), 0)
                        .map_err(io_nl)?;
                }
                *t = us(t0.elapsed());
            }
            Ok((times[0], times[1]))
        })??;
        if i > 0 {
            batch.add("delete 8 taps: 8 DELLINK requests", r.0);
            batch.add("delete 8 taps: 1 DELLINK of link group", r.1);
        }
    }
    Ok(json!({
        "steps": st.to_json(),
        "batch_delete": batch.to_json(),
        "state_file_bytes": state_bytes,
        "attach_requests": requests,
    }))
}

// ------------------------------------------------------------------ the run

#[derive(Args)]
struct RunArgs {
    /// Few iterations (CI): every section runs, briefly.
    #[arg(long, conflicts_with = "full")]
    smoke: bool,
    /// The full run (default).
    #[arg(long)]
    full: bool,
    /// The sandbox-net binary measured as a whole process.
    #[arg(long, default_value = "target/release/sandbox-net")]
    cli: PathBuf,
    /// The Go harness (built from ../shared/baselines/gobench); skipped when absent.
    #[arg(long)]
    tcbench: Option<PathBuf>,
    /// The C lower bound (built from ../shared/baselines/lowerbound); skipped when absent.
    #[arg(long)]
    nlbench: Option<PathBuf>,
    /// Where attach_ip.sh and detach_ip.sh are.
    #[arg(long, default_value = "../shared/baselines")]
    baselines: PathBuf,
    /// State directory on the default kind of storage (/run: on disk on this machine).
    #[arg(long)]
    state_disk: PathBuf,
    /// State directory on tmpfs.
    #[arg(long)]
    state_tmpfs: PathBuf,
    /// Every netns of the run starts with this.
    #[arg(long, default_value = "snbench")]
    prefix: String,
    #[arg(long, default_value = "target/bench/report.json")]
    out: PathBuf,
    /// Directory for the profiles (strace, perf stat).
    #[arg(long, default_value = "target/bench")]
    work: PathBuf,
    /// The command line to record in the report.
    #[arg(long, default_value = "")]
    command: String,
    /// Attach/detach samples per tool (default: 200 full, 5 smoke).
    #[arg(long)]
    rounds: Option<usize>,
}

struct Plan {
    rounds: usize,
    scan_blocks: usize,
    scan_n: usize,
    td_blocks: usize,
    td_n: usize,
    conc_rounds: usize,
    conc_count: usize,
    conc_par: usize,
    steps_n: usize,
    rtt_n: usize,
    settle: Duration,
}

/// Report rows.
#[derive(Default)]
struct Report {
    rows: Vec<Value>,
    notes: Vec<String>,
}

impl Report {
    fn row(&mut self, name: &str, tool: &str, s: Option<Stats>, extra: Value) {
        let mut o = json!({
            "name": name, "tool": tool,
            "median_us": s.map(|s| round(s.median)), "p99_us": s.map(|s| round(s.p99)),
            "n": s.map_or(0, |s| s.n),
        });
        if let Some(s) = s.filter(|s| s.min.is_finite()) {
            o["min_us"] = json!(round(s.min));
            o["max_us"] = json!(round(s.max));
        }
        if let (Value::Object(o), Value::Object(e)) = (&mut o, extra) {
            o.extend(e);
        }
        self.rows.push(o);
    }

    fn value(&mut self, name: &str, tool: &str, value: f64, unit: &str, n: usize, extra: Value) {
        let mut o = json!({"name": name, "tool": tool, "median_us": null, "p99_us": null,
                           "n": n, "value": round(value), "unit": unit});
        if let (Value::Object(o), Value::Object(e)) = (&mut o, extra) {
            o.extend(e);
        }
        self.rows.push(o);
    }

    fn median_of(&self, name: &str, tool: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r["name"] == name && r["tool"] == tool)
            .and_then(|r| r["median_us"].as_f64().or(r["value"].as_f64()))
    }
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Values per (measurement, tool), in first-seen order (the order of the table).
struct Keyed<T>(Vec<((String, String), Vec<T>)>);

impl<T> Default for Keyed<T> {
    fn default() -> Self {
        Keyed(Vec::new())
    }
}

impl<T> Keyed<T> {
    fn entry(&mut self, name: &str, tool: &str) -> &mut Vec<T> {
        let i = match self.0.iter().position(|(k, _)| k.0 == name && k.1 == tool) {
            Some(i) => i,
            None => {
                self.0
                    .push(((name.to_string(), tool.to_string()), Vec::new()));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }

    /// Entries grouped by measurement (names in first-seen order), tools in first-seen order.
    fn grouped(&self) -> Vec<&((String, String), Vec<T>)> {
        let mut names: Vec<&str> = Vec::new();
        for ((n, _), _) in &self.0 {
            if !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
        names
            .iter()
            .flat_map(|n| self.0.iter().filter(move |((m, _), _)| m == n))
            .collect()
    }

    fn get(&self, name: &str, tool: &str) -> Option<&Vec<T>> {
        self.0
            .iter()
            .find(|(k, _)| k.0 == name && k.1 == tool)
            .map(|(_, v)| v)
    }
}

/// Samples per tool and measurement.
type Samples = Keyed<f64>;

impl Samples {
    fn push(&mut self, name: &str, tool: &str, v: f64) {
        self.entry(name, tool).push(v);
    }
}

/// One tool in the attach/detach rounds.
struct Case {
    tool: &'static str,
    queues: u32,
    net: ScratchNet,
    kind: CaseKind,
    disabled: Option<String>,
}

enum CaseKind {
    Lib(PathBuf),
    /// The library attaching `eth0` by name without the guest description (CNI ADD's path).
    LibNamed(PathBuf),
    Cli(PathBuf),
    Iproute2,
    Go(&'static str),
    C,
}

/// Block-interleaved sections (scan, teardown, concurrent): per block, each tool reports a
/// median and a p99; a tool's figure is the median over its blocks of each, the same rule
/// for every tool (the Go harness prints only per-run summaries).
type Blocks = Keyed<Block>;

/// One block: (n, median, p99).
type Block = (usize, f64, f64);

impl Blocks {
    fn push(&mut self, name: &str, tool: &str, n: usize, median: f64, p99: f64) {
        self.entry(name, tool).push((n, median, p99));
    }

    fn push_samples(&mut self, name: &str, tool: &str, v: &[f64]) {
        if let Some(s) = stats(v) {
            self.push(name, tool, s.n, s.median, s.p99);
        }
    }

    fn emit(&self, rep: &mut Report, raw: &Samples) {
        for ((name, tool), blocks) in self.grouped() {
            let n: usize = blocks.iter().map(|b| b.0).sum();
            let med = median(&blocks.iter().map(|b| b.1).collect::<Vec<_>>()).unwrap_or(0.0);
            let p99 = median(&blocks.iter().map(|b| b.2).collect::<Vec<_>>()).unwrap_or(0.0);
            let mut extra = json!({"blocks": blocks.len(),
                "stats": "median over blocks of each block's median and p99"});
            if let Some(s) = raw.get(name, tool).and_then(|v| stats(v)) {
                extra["pooled_median_us"] = json!(round(s.median));
                extra["pooled_p99_us"] = json!(round(s.p99));
            }
            rep.row(
                name,
                tool,
                Some(Stats {
                    n,
                    median: med,
                    p99,
                    min: f64::NAN,
                    max: f64::NAN,
                }),
                extra,
            );
        }
    }
}

fn self_exe() -> R<PathBuf> {
    Ok(std::env::current_exe()?)
}

/// Run this program's subcommand in a child process; its JSON answer.
fn child(args: &[String]) -> R<Value> {
    let text = output(Command::new(self_exe()?).args(args))?;
    Ok(serde_json::from_str(&text)?)
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn run(a: &RunArgs) -> R<()> {
    let smoke = a.smoke;
    let p = if smoke {
        Plan {
            rounds: a.rounds.unwrap_or(5),
            scan_blocks: 1,
            scan_n: 5,
            td_blocks: 1,
            td_n: 2,
            conc_rounds: 1,
            conc_count: 16,
            conc_par: 8,
            steps_n: 5,
            rtt_n: 500,
            settle: Duration::from_millis(100),
        }
    } else {
        Plan {
            rounds: a.rounds.unwrap_or(200),
            scan_blocks: 4,
            scan_n: 50,
            td_blocks: 4,
            td_n: 5,
            conc_rounds: 3,
            conc_count: 100,
            conc_par: 8,
            steps_n: 100,
            rtt_n: 10000,
            settle: Duration::from_millis(500),
        }
    };
    fs::create_dir_all(&a.work)?;
    let started = Instant::now();
    let mut rep = Report::default();
    let tcbench = a.tcbench.clone().filter(|p| p.exists());
    let nlbench = a.nlbench.clone().filter(|p| p.exists());
    if tcbench.is_none() {
        rep.notes
            .push("Go harness tcbench not available: Go rows are missing".into());
    }
    if nlbench.is_none() {
        rep.notes
            .push("C lower bound nlbench not available: C rows are missing".into());
    }
    let attach_ip = a.baselines.join("attach_ip.sh");
    let detach_ip = a.baselines.join("detach_ip.sh");
    let have_ip = attach_ip.exists() && detach_ip.exists();
    if !have_ip {
        rep.notes.push(format!(
            "{} not found: iproute2 rows are missing",
            attach_ip.display()
        ));
    }
    let load_start = fs::read_to_string("/proc/loadavg").unwrap_or_default();

    // ---------------------------------------------------------- 1. attach/detach rounds
    eprintln!("== attach/detach, 1 and 4 queues: {} rounds", p.rounds);
    let mut cases = Vec::new();
    let mut add = |tool: &'static str, queues: u32, kind: CaseKind| -> R<()> {
        let mut net = ScratchNet::new(&a.prefix)?;
        net.add_link(0, 1500, true)?;
        cases.push(Case {
            tool,
            queues,
            net,
            kind,
            disabled: None,
        });
        Ok(())
    };
    for q in [1, 4] {
        add("sandbox-net lib", q, CaseKind::Lib(a.state_disk.clone()))?;
        add("sandbox-net CLI", q, CaseKind::Cli(a.state_disk.clone()))?;
        if q == 1 {
            add(
                "sandbox-net lib, state on tmpfs",
                q,
                CaseKind::Lib(a.state_tmpfs.clone()),
            )?;
            add(
                "sandbox-net CLI, state on tmpfs",
                q,
                CaseKind::Cli(a.state_tmpfs.clone()),
            )?;
            add(LIB_NAMED, q, CaseKind::LibNamed(a.state_disk.clone()))?;
            add(
                LIB_NAMED_TMPFS,
                q,
                CaseKind::LibNamed(a.state_tmpfs.clone()),
            )?;
        }
        if have_ip {
            add("iproute2 (attach_ip.sh)", q, CaseKind::Iproute2)?;
        }
        if tcbench.is_some() {
            add("Go kata", q, CaseKind::Go("kata"))?;
            add("Go handle", q, CaseKind::Go("handle"))?;
        }
        if q == 1 && nlbench.is_some() {
            add("C lower bound", q, CaseKind::C)?;
        }
    }
    let mut raw = Samples::default();
    // Process start (no network work: the floor of any whole-process measurement), before
    // the rounds, on the machine found idle: within them every case ran right after the
    // same other case (the order is rotated, not shuffled), so `--version` always came
    // right after a detach, sharing the CPUs with the kernel's deferred cleanup of the
    // devices it removed, and `/bin/true` right after `--version`; after them the scratch
    // netns are being torn down. Here the two run back to back, which goes first
    // alternating.
    let starts: [(&'static str, Vec<String>); 2] = [
        ("sandbox-net --version", vec![s(&a.cli), "--version".into()]),
        ("/bin/true", vec!["/bin/true".into()]),
    ];
    for i in 0..p.rounds * 5 {
        check_stop()?;
        for k in 0..2 {
            let (tool, argv) = &starts[(i + k) % 2];
            let (t, _) = timed_process(Command::new(&argv[0]).args(&argv[1..]))?;
            raw.push("process startup (no work)", tool, t);
        }
    }
    let mut requests = Samples::default();
    let mut rss = Vec::new();
    let mut c_steps = Steps::default();
    for round in 0..p.rounds {
        let k = cases.len();
        for j in 0..k {
            check_stop()?;
            let case = &mut cases[(j + round) % k];
            if case.disabled.is_some() {
                continue;
            }
            let (att, det) = (
                format!("attach q={}", case.queues),
                format!("detach q={}", case.queues),
            );
            let ns = case.net.pod_name.clone();
            let q = case.queues.to_string();
            let r: R<()> = (|| {
                match &case.kind {
                    CaseKind::Lib(dir) | CaseKind::LibNamed(dir) => {
                        let mut args = vec![
                            "lib-cycle".into(),
                            "--netns".into(),
                            ns.clone(),
                            "--queues".into(),
                            q.clone(),
                            "--state-dir".into(),
                            s(dir),
                        ];
                        if matches!(case.kind, CaseKind::LibNamed(_)) {
                            args.extend(["--named".into(), "eth0".into()]);
                        }
                        let v = child(&args)?;
                        for smp in v["samples"].as_array().ok_or("bad lib-cycle output")? {
                            raw.push(&att, case.tool, smp["attach_us"].as_f64().unwrap_or(0.0));
                            raw.push(&det, case.tool, smp["detach_us"].as_f64().unwrap_or(0.0));
                            requests.push(&att, case.tool, smp["requests"].as_f64().unwrap_or(0.0));
                        }
                    }
                    CaseKind::Cli(dir) => {
                        let id = format!("cli-{round}");
                        let (ta, kb) = timed_process(Command::new(&a.cli).args([
                            "attach",
                            "--netns",
                            &ns,
                            "--id",
                            &id,
                            "--queues",
                            &q,
                            "--json",
                            "--state-dir",
                            &s(dir),
                        ]))?;
                        let (td, _) = timed_process(Command::new(&a.cli).args([
                            "detach",
                            "--id",
                            &id,
                            "--state-dir",
                            &s(dir),
                        ]))?;
                        raw.push(&att, case.tool, ta);
                        raw.push(&det, case.tool, td);
                        if case.queues == 1 && !case.tool.contains("tmpfs") {
                            rss.push(kb as f64);
                        }
                    }
                    CaseKind::Iproute2 => {
                        let (ta, _) = timed_process(Command::new(&attach_ip).args([
                            &ns,
                            "eth0",
                            "tap0_kata",
                            &q,
                        ]))?;
                        let (td, _) = timed_process(Command::new(&detach_ip).args([
                            &ns,
                            "eth0",
                            "tap0_kata",
                        ]))?;
                        raw.push(&att, case.tool, ta);
                        raw.push(&det, case.tool, td);
                    }
                    CaseKind::Go(mode) => {
                        let out = output(
                            Command::new(tcbench.as_ref().ok_or("no tcbench")?)
                                .args(["-ns", &ns, "-mode", mode, "-n", "1", "-queues", &q]),
                        )?;
                        let a1 = summary(line_with(&out, "single-ns attach")?).ok_or("parse")?;
                        let d1 = summary(line_with(&out, "single-ns detach")?).ok_or("parse")?;
                        raw.push(&att, case.tool, a1.1);
                        raw.push(&det, case.tool, d1.1);
                    }
                    CaseKind::C => {
                        let out = output(
                            Command::new(nlbench.as_ref().ok_or("no nlbench")?)
                                .args(["attach", &ns, "1"]),
                        )?;
                        let mut mode = "";
                        for line in out.lines() {
                            if line.contains("attach (seq") {
                                mode = "C lower bound";
                            } else if line.contains("attach (batch") {
                                mode = "C lower bound, batched";
                            }
                            let Some((_, med, _)) = summary(line) else {
                                continue;
                            };
                            if line.starts_with("C raw netlink attach") {
                                raw.push(&att, mode, med);
                            } else if line.starts_with("C raw netlink detach") {
                                raw.push(&det, mode, med);
                            } else if let Some(step) = line.trim_start().strip_prefix("step: ") {
                                let step = step.split("  ").next().unwrap_or(step).trim();
                                c_steps.add(&format!("C: {step}"), med);
                            }
                        }
                    }
                }
                Ok(())
            })();
            if let Err(e) = r {
                match case.kind {
                    CaseKind::Lib(_) | CaseKind::LibNamed(_) | CaseKind::Cli(_) => return Err(e),
                    _ => {
                        eprintln!(
                            "bench: {} q={} failed, dropped from the run: {e}",
                            case.tool, case.queues
                        );
                        rep.notes.push(format!(
                            "{} q={}: failed in round {round}: {e}",
                            case.tool, case.queues
                        ));
                        case.disabled = Some(e.to_string());
                    }
                }
            }
        }
        if round % 20 == 19 {
            eprintln!("   round {}/{}", round + 1, p.rounds);
        }
    }
    drop(cases);
    for ((name, tool), v) in raw.grouped() {
        rep.row(
            name,
            tool,
            stats(v),
            json!({"stats": "pooled samples, one per process"}),
        );
    }
    for ((name, tool), v) in requests.grouped() {
        if let Some(st) = stats(v) {
            rep.value(
                &format!("netlink requests per {name} (1 endpoint)"),
                tool,
                st.max,
                "requests",
                st.n,
                json!({}),
            );
        }
    }
    if let Some(st) = stats(&rss) {
        rep.value(
            "CLI peak RSS (attach q=1)",
            "sandbox-net CLI",
            st.max,
            "KiB",
            st.n,
            json!({"median_kib": st.median, "how": "ru_maxrss of the child (wait4)"}),
        );
    }
    if let Ok(m) = fs::metadata(&a.cli) {
        rep.value(
            "release binary size",
            "sandbox-net CLI",
            m.len() as f64,
            "bytes",
            1,
            json!({"path": s(&a.cli)}),
        );
    }

    // ---------------------------------------------------------- 2. scan
    let mut blocks = Blocks::default();
    let mut pooled = Samples::default();
    for links in [1usize, 16, 64] {
        eprintln!(
            "== scan, {links} configured interfaces: {} x {}",
            p.scan_blocks, p.scan_n
        );
        let name = format!("scan links={links}");
        for b in 0..p.scan_blocks {
            let order: [bool; 2] = if b % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for ours in order {
                check_stop()?;
                if ours {
                    let v = VethNs::new(&a.prefix, links, true)?;
                    let r = child(&[
                        "lib-scan".into(),
                        "--netns".into(),
                        v.pod.name.clone(),
                        "--links".into(),
                        links.to_string(),
                        "-n".into(),
                        p.scan_n.to_string(),
                    ])?;
                    drop(v);
                    let fresh = f64s(&r["samples"]);
                    blocks.push_samples(&name, "sandbox-net lib", &fresh);
                    blocks.push_samples(
                        &name,
                        "sandbox-net lib, socket reused (dumps only)",
                        &f64s(&r["dumps_only"]),
                    );
                    for x in fresh {
                        pooled.push(&name, "sandbox-net lib", x);
                    }
                } else if let Some(go) = &tcbench {
                    match output(Command::new(go).args([
                        "-op",
                        "scan",
                        "-links",
                        &links.to_string(),
                        "-n",
                        &p.scan_n.to_string(),
                    ]))
                    .and_then(|o| Ok(summary(line_with(&o, "scan links=")?).ok_or("parse")?))
                    {
                        Ok((n, med, p99)) => blocks.push(&name, "Go kata scan", n, med, p99),
                        Err(e) => rep.notes.push(format!("Go scan links={links}: {e}")),
                    }
                }
                std::thread::sleep(p.settle);
            }
        }
    }

    // ---------------------------------------------------------- 3. teardown
    let mut td_requests = BTreeMap::new();
    for k in [1usize, 8] {
        eprintln!("== teardown, {k} endpoints: {} x {}", p.td_blocks, p.td_n);
        let name = format!("teardown endpoints={k}");
        for b in 0..p.td_blocks {
            let order: [bool; 2] = if b % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for ours in order {
                check_stop()?;
                if ours {
                    let v = VethNs::new(&a.prefix, k, false)?;
                    let r = child(&[
                        "lib-teardown".into(),
                        "--netns".into(),
                        v.pod.name.clone(),
                        "--endpoints".into(),
                        k.to_string(),
                        "--state-dir".into(),
                        s(&a.state_disk),
                        "-n".into(),
                        p.td_n.to_string(),
                    ])?;
                    drop(v);
                    let v = f64s(&r["samples"]);
                    blocks.push_samples(&name, "sandbox-net lib", &v);
                    for x in v {
                        pooled.push(&name, "sandbox-net lib", x);
                    }
                    td_requests.insert(k, r["attach_requests"].as_f64().unwrap_or(0.0));
                } else if let Some(go) = &tcbench {
                    match output(Command::new(go).args([
                        "-op",
                        "teardown-many",
                        "-endpoints",
                        &k.to_string(),
                        "-n",
                        &p.td_n.to_string(),
                    ]))
                    .and_then(|o| Ok(summary(line_with(&o, "teardown-many K=")?).ok_or("parse")?))
                    {
                        Ok((n, med, p99)) => blocks.push(&name, "Go kata", n, med, p99),
                        Err(e) => rep.notes.push(format!("Go teardown-many K={k}: {e}")),
                    }
                }
                std::thread::sleep(p.settle);
            }
        }
    }
    if let Some(r) = td_requests.get(&8) {
        rep.value(
            "netlink requests per attach (8 endpoints)",
            "sandbox-net lib",
            *r,
            "requests",
            1,
            json!({}),
        );
    }

    // ---------------------------------------------------------- 4. concurrent
    eprintln!(
        "== {} sandboxes attached by {} workers: {} rounds",
        p.conc_count, p.conc_par, p.conc_rounds
    );
    let cname = format!("concurrent {}x par {}", p.conc_count, p.conc_par);
    let per_sb = format!("{cname}: attach per sandbox");
    let wall = format!("{cname}: attach wall");
    let dwall = format!("{cname}: detach wall");
    let mut walls = Samples::default();
    let fresh_names: Vec<PathBuf> = (0..p.conc_count)
        .map(|i| PathBuf::from(format!("/run/netns/blp{i}")))
        .collect();
    let go_fresh_ok = tcbench.is_some() && fresh_names.iter().all(|p| !p.exists());
    if tcbench.is_some() && !go_fresh_ok {
        rep.notes.push(
            "Go -fresh skipped: some /run/netns/blpN (the names tcbench -fresh uses) already exist"
                .into(),
        );
    }
    let tools: Vec<(&str, Option<&str>)> = vec![
        ("sandbox-net lib", None),
        ("sandbox-net lib, state on tmpfs", None),
        ("Go kata", Some("kata")),
        ("Go handle", Some("handle")),
    ];
    for round in 0..p.conc_rounds {
        for j in 0..tools.len() {
            check_stop()?;
            let (tool, go_mode) = tools[(j + round) % tools.len()];
            match go_mode {
                None => {
                    let dir = if tool.contains("tmpfs") {
                        &a.state_tmpfs
                    } else {
                        &a.state_disk
                    };
                    let r = child(&[
                        "lib-concurrent".into(),
                        "--count".into(),
                        p.conc_count.to_string(),
                        "--par".into(),
                        p.conc_par.to_string(),
                        "--state-dir".into(),
                        s(dir),
                        "--prefix".into(),
                        a.prefix.clone(),
                    ])?;
                    let each = f64s(&r["attach"]);
                    if let Some(st) = stats(&each) {
                        blocks.push(&per_sb, tool, st.n, st.median, st.p99);
                    }
                    for x in each {
                        pooled.push(&per_sb, tool, x);
                    }
                    walls.push(&wall, tool, r["attach_wall_us"].as_f64().unwrap_or(0.0));
                    walls.push(&dwall, tool, r["detach_wall_us"].as_f64().unwrap_or(0.0));
                }
                Some(mode) => {
                    if !go_fresh_ok {
                        continue;
                    }
                    let go = tcbench.as_ref().ok_or("no tcbench")?;
                    // tcbench -fresh leaves the host ends of its veths in the netns it runs
                    // in: give it a netns that plays the host, never the real one.
                    let host = Ns::create(unique(&a.prefix, "-gohost"))?;
                    let mut nl = Netlink::open_in(&host.ns)?;
                    link::set_up(&mut nl, 1).map_err(io_nl)?;
                    let fd = std::os::fd::AsFd::as_fd(&host.ns).as_raw_fd();
                    let marker = a.work.join("fresh-netns-owned");
                    fs::write(
                        &marker,
                        fresh_names.iter().map(|p| s(p) + "\n").collect::<String>(),
                    )?;
                    let mut cmd = Command::new(go);
                    cmd.args([
                        "-fresh",
                        &p.conc_count.to_string(),
                        "-par",
                        &p.conc_par.to_string(),
                        "-mode",
                        mode,
                    ]);
                    // SAFETY: setns in the child between fork and exec; the fd is open in the
                    // parent for the whole call.
                    unsafe {
                        cmd.pre_exec(move || {
                            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                                return Err(std::io::Error::last_os_error());
                            }
                            Ok(())
                        });
                    }
                    let res = output(&mut cmd);
                    for p in &fresh_names {
                        if p.exists() {
                            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                            let _ = netns::delete(name);
                        }
                    }
                    let _ = fs::remove_file(&marker);
                    drop(host);
                    let parsed = res.and_then(|o| -> R<_> {
                        let at = summary(line_with(&o, "par=")?).ok_or("parse")?;
                        let wl = line_with(&o, "attach wall=")?;
                        Ok((
                            at,
                            field(wl, "attach wall=").ok_or("parse")? * 1000.0,
                            field(wl, "detach wall=").ok_or("parse")? * 1000.0,
                        ))
                    });
                    match parsed {
                        Ok(((n, med, p99), aw, dw)) => {
                            blocks.push(&per_sb, tool, n, med, p99);
                            walls.push(&wall, tool, aw);
                            walls.push(&dwall, tool, dw);
                        }
                        Err(e) => rep.notes.push(format!("Go -fresh {mode}: {e}")),
                    }
                }
            }
            std::thread::sleep(p.settle * 2);
        }
    }
    blocks.emit(&mut rep, &pooled);
    for ((name, tool), v) in walls.grouped() {
        rep.row(
            name,
            tool,
            stats(v),
            json!({"stats": "over rounds (one wall time per round)"}),
        );
    }

    // ---------------------------------------------------------- 5. where the time goes
    eprintln!("== per-step timings ({} replays)", p.steps_n);
    let st = child(&[
        "steps".into(),
        "--state-dir-disk".into(),
        s(&a.state_disk),
        "--state-dir-tmpfs".into(),
        s(&a.state_tmpfs),
        "--prefix".into(),
        a.prefix.clone(),
        "-n".into(),
        p.steps_n.to_string(),
    ])?;
    let mut profile = json!({
        "library_steps": st["steps"], "batch_delete": st["batch_delete"],
        "state_file_bytes": st["state_file_bytes"], "c_lower_bound_steps": c_steps.to_json(),
    });
    if let Some(nlb) = &nlbench {
        let mut net = ScratchNet::new(&a.prefix)?;
        net.add_link(0, 1500, true)?;
        match output(
            Command::new(nlb)
                .args(["rtt", &p.rtt_n.to_string()])
                .env("NLBENCH_NS", &net.pod_name),
        ) {
            Ok(o) => {
                let mut rtt = Vec::new();
                for l in o.lines() {
                    if let Some((n, med, p99)) = summary(l) {
                        let what = l.split("  ").next().unwrap_or(l).trim();
                        rtt.push(json!({"what": what, "n": n, "median_us": med, "p99_us": p99}));
                    }
                }
                profile["netlink_rtt"] = json!(rtt);
            }
            Err(e) => rep.notes.push(format!("nlbench rtt: {e}")),
        }
    }
    profile["cli"] = profile_cli(a)?;
    let ratios = ratios(&rep);
    let machine = machine(a, &load_start);
    let report = json!({
        "mode": if smoke { "smoke" } else { "full" },
        "command": a.command,
        "machine": machine,
        "elapsed_s": round(started.elapsed().as_secs_f64()),
        "measurements": rep.rows,
        "ratios": ratios,
        "profile": profile,
        "notes": rep.notes,
        "method": {
            "attach_detach": "one sample per process per tool per round, tools round-robin (order rotated each round); each library/Go/C process does one untimed warm-up cycle first; CLI and iproute2 are timed as whole processes (spawn to reap). Every tool has its own identically prepared netns pair (ScratchNet: veth eth0, MTU 1500, IPv4+IPv6, default routes).",
            "scan_teardown_concurrent": "blocks alternating between tools; each block prepares a fresh netns (the Go harness makes its own, configured the same way); a tool's median/p99 is the median over its blocks of the block's median/p99",
            "p99": "nearest rank",
        },
    });
    if let Some(d) = a.out.parent() {
        fs::create_dir_all(d)?;
    }
    fs::write(&a.out, serde_json::to_string_pretty(&report)? + "\n")?;
    fs::write(a.out.with_extension("md"), markdown(&report))?;
    print_table(&report);
    println!(
        "report: {} ({:.0} s)",
        a.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One CLI attach and detach under strace (-c and -T) and perf stat, when available.
fn profile_cli(a: &RunArgs) -> R<Value> {
    let mut out = json!({});
    let mut net = ScratchNet::new(&a.prefix)?;
    net.add_link(0, 1500, true)?;
    let ns = net.pod_name.clone();
    for (label, dir) in [("disk", &a.state_disk), ("tmpfs", &a.state_tmpfs)] {
        let dir = s(dir);
        let attach_args = |id: &str| -> Vec<String> {
            [
                "attach",
                "--netns",
                &ns,
                "--id",
                id,
                "--json",
                "--state-dir",
                &dir,
            ]
            .map(String::from)
            .to_vec()
        };
        let detach_args = |id: &str| -> Vec<String> {
            ["detach", "--id", id, "--state-dir", &dir]
                .map(String::from)
                .to_vec()
        };
        let have = |tool: &str| {
            Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if have("strace") {
            for op in ["attach", "detach"] {
                let file_c = a.work.join(format!("strace-c-{op}-{label}.txt"));
                let file_t = a.work.join(format!("strace-T-{op}-{label}.txt"));
                // Two full attach/detach pairs; strace watches `op` in each.
                for (file, flags) in [(&file_c, ["-c", "-f", ""]), (&file_t, ["-f", "-T", "-ttt"])]
                {
                    let mut traced = Command::new("strace");
                    traced
                        .args(flags.iter().filter(|f| !f.is_empty()))
                        .arg("-o")
                        .arg(file)
                        .arg(&a.cli);
                    let mut plain = Command::new(&a.cli);
                    if op == "attach" {
                        output(traced.args(attach_args("prof-s")))?;
                        output(plain.args(detach_args("prof-s")))?;
                    } else {
                        output(plain.args(attach_args("prof-s")))?;
                        output(traced.args(detach_args("prof-s")))?;
                    }
                }
                out[format!("strace_{op}_{label}")] = json!({
                    "summary_file": s(&file_c),
                    "timeline_file": s(&file_t),
                    "by_syscall": strace_by_syscall(&fs::read_to_string(&file_t).unwrap_or_default()),
                });
            }
        }
        if have("perf") {
            for op in ["attach", "detach"] {
                if op == "detach" {
                    output(Command::new(&a.cli).args(attach_args("prof-p")))?;
                }
                let args = if op == "attach" {
                    attach_args("prof-p")
                } else {
                    detach_args("prof-p")
                };
                let o = Command::new("perf")
                    .args([
                        "stat",
                        "-x",
                        ",",
                        "-e",
                        "task-clock,context-switches,page-faults",
                        "--",
                    ])
                    .arg(&a.cli)
                    .args(&args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .output();
                if op == "attach" {
                    output(Command::new(&a.cli).args(detach_args("prof-p")))?;
                }
                if let Ok(o) = o {
                    let text = String::from_utf8_lossy(&o.stderr);
                    let mut m = serde_json::Map::new();
                    for l in text.lines() {
                        let cols: Vec<&str> = l.split(',').collect();
                        if cols.len() > 2
                            && let Ok(v) = cols[0].parse::<f64>()
                        {
                            m.insert(cols[2].to_string(), json!(v));
                        }
                    }
                    out[format!("perf_stat_{op}_{label}")] = Value::Object(m);
                }
            }
        }
    }
    Ok(out)
}

/// From `strace -f -T -ttt`: total time per syscall (and for ioctl/sendto, per request
/// kind), the process's span, and the gaps (time not in syscalls).
fn strace_by_syscall(text: &str) -> Value {
    let mut per: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    let (mut first, mut last) = (f64::MAX, 0.0f64);
    for l in text.lines() {
        let l = l.trim_start();
        let l = match l.strip_prefix(|c: char| c.is_ascii_digit()) {
            // "PID TIMESTAMP call" (with -f and -o, the pid is a bare number)
            Some(_) => l.split_once(' ').map_or(l, |(_, rest)| rest.trim_start()),
            None => l,
        };
        let Some((ts, rest)) = l.split_once(' ') else {
            continue;
        };
        let Ok(ts) = ts.parse::<f64>() else { continue };
        first = first.min(ts);
        last = last.max(ts);
        let Some(open) = rest.find('(') else { continue };
        let mut name = rest[..open].to_string();
        if name.contains(' ') || name.starts_with('<') || name.starts_with('+') {
            continue;
        }
        if name == "ioctl"
            && let Some(req) = rest[open + 1..].split(", ").nth(1)
        {
            name = format!("ioctl {req}");
        }
        let Some(d) = rest
            .rfind('<')
            .and_then(|i| rest[i + 1..].strip_suffix('>'))
        else {
            continue;
        };
        let Ok(d) = d.parse::<f64>() else { continue };
        let e = per.entry(name).or_default();
        e.0 += 1;
        e.1 += d * 1e6;
    }
    let mut v: Vec<_> = per.into_iter().collect();
    v.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
    json!({
        "span_us": if last > first { round((last - first) * 1e6) } else { 0.0 },
        "syscalls": v.iter().take(15).map(|(k, (n, t))| json!({"syscall": k, "calls": n, "total_us": round(*t)})).collect::<Vec<_>>(),
        "note": "durations under strace (inflated); use for the split, not the totals",
    })
}

fn ratio(
    rep: &Report,
    what: &str,
    num: (&str, &str),
    den: (&str, &str),
    target: f64,
    le: bool,
) -> Value {
    let (a, b) = (rep.median_of(num.0, num.1), rep.median_of(den.0, den.1));
    let value = match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    json!({
        "name": what,
        "value": value.map(|v| (v * 1000.0).round() / 1000.0),
        "target": target,
        "met": value.map(|v| if le { v <= target } else { v >= target }),
        "numerator": format!("{} / {}", num.0, num.1),
        "denominator": format!("{} / {}", den.0, den.1),
    })
}

const LIB_NAMED: &str = "sandbox-net lib, named eth0, guest on demand (CNI ADD)";
const LIB_NAMED_TMPFS: &str =
    "sandbox-net lib, named eth0, guest on demand (CNI ADD), state on tmpfs";

/// A ratio of `num` to the sum of `dens`, for context: no target.
fn context_ratio(rep: &Report, what: &str, num: (&str, &str), dens: &[(&str, &str)]) -> Value {
    let a = rep.median_of(num.0, num.1);
    let b: Option<f64> = dens.iter().map(|d| rep.median_of(d.0, d.1)).sum();
    let value = match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some((a / b * 1000.0).round() / 1000.0),
        _ => None,
    };
    let den: Vec<String> = dens.iter().map(|d| format!("{} / {}", d.0, d.1)).collect();
    json!({
        "name": what, "value": value, "target": null, "met": null,
        "numerator": format!("{} / {}", num.0, num.1), "denominator": den.join(" + "),
    })
}

fn ratios(rep: &Report) -> Value {
    let lib = "sandbox-net lib";
    let libt = "sandbox-net lib, state on tmpfs";
    let a1 = "attach q=1";
    let mut v = vec![
        ratio(
            rep,
            "library attach / C lower bound",
            (a1, lib),
            (a1, "C lower bound"),
            1.15,
            true,
        ),
        ratio(
            rep,
            "library attach / C lower bound (state on tmpfs)",
            (a1, libt),
            (a1, "C lower bound"),
            1.15,
            true,
        ),
        ratio(
            rep,
            "library attach / Go kata",
            (a1, lib),
            (a1, "Go kata"),
            0.7,
            true,
        ),
        ratio(
            rep,
            "library attach / Go kata (state on tmpfs)",
            (a1, libt),
            (a1, "Go kata"),
            0.7,
            true,
        ),
        ratio(
            rep,
            "CLI attach / iproute2",
            (a1, "sandbox-net CLI"),
            (a1, "iproute2 (attach_ip.sh)"),
            0.15,
            true,
        ),
        ratio(
            rep,
            "CLI attach / iproute2 (state on tmpfs)",
            (a1, "sandbox-net CLI, state on tmpfs"),
            (a1, "iproute2 (attach_ip.sh)"),
            0.15,
            true,
        ),
        ratio(
            rep,
            "scan 64 / Go scan 64",
            ("scan links=64", lib),
            ("scan links=64", "Go kata scan"),
            0.02,
            true,
        ),
        ratio(
            rep,
            "teardown 8 / teardown 1",
            ("teardown endpoints=8", lib),
            ("teardown endpoints=1", lib),
            2.0,
            true,
        ),
    ];
    let conc = rep
        .rows
        .iter()
        .filter_map(|r| r["name"].as_str())
        .find(|n| n.ends_with(": attach wall"))
        .map(String::from);
    if let Some(c) = conc {
        v.push(ratio(
            rep,
            "concurrent attach wall / Go kata",
            (&c, lib),
            (&c, "Go kata"),
            1.0,
            true,
        ));
        v.push(ratio(
            rep,
            "concurrent attach wall / Go kata (state on tmpfs)",
            (&c, libt),
            (&c, "Go kata"),
            1.0,
            true,
        ));
    }
    for (what, tool) in [
        ("library attach / C lower bound (CNI ADD's path)", LIB_NAMED),
        (
            "library attach / C lower bound (CNI ADD's path, tmpfs)",
            LIB_NAMED_TMPFS,
        ),
    ] {
        v.push(ratio(
            rep,
            what,
            (a1, tool),
            (a1, "C lower bound"),
            1.15,
            true,
        ));
    }
    for (what, tool) in [
        ("library attach / Go kata (CNI ADD's path)", LIB_NAMED),
        (
            "library attach / Go kata (CNI ADD's path, tmpfs)",
            LIB_NAMED_TMPFS,
        ),
    ] {
        v.push(ratio(rep, what, (a1, tool), (a1, "Go kata"), 0.7, true));
    }
    let requests = "netlink requests per attach q=1 (1 endpoint)";
    for (what, tool) in [
        ("netlink requests per single-endpoint attach", lib),
        (
            "netlink requests per single-endpoint attach (CNI ADD's path)",
            LIB_NAMED,
        ),
    ] {
        let req = rep.median_of(requests, tool);
        v.push(json!({
            "name": what,
            "value": req, "target": 6, "met": req.map(|r| r <= 6.0),
            "numerator": "Attachment.netlink_requests", "denominator": null,
        }));
    }
    // Go's kata-mode attach is handed the veth's name and scans nothing; Kata scans the
    // netns separately. sandbox-net's attach includes its scan.
    v.push(context_ratio(
        rep,
        "library attach / (Go kata attach + Go kata scan of 1 link)",
        (a1, libt),
        &[(a1, "Go kata"), ("scan links=1", "Go kata scan")],
    ));
    Value::Array(v)
}

fn machine(a: &RunArgs, load_start: &str) -> Value {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    let uname = nix::sys::utsname::uname().ok();
    let fstype = |p: &Path| -> String {
        match nix::sys::statfs::statfs(p) {
            Ok(s) if s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC => "tmpfs".into(),
            Ok(s) if s.filesystem_type() == nix::sys::statfs::EXT4_SUPER_MAGIC => "ext4".into(),
            Ok(s) => format!("0x{:x}", s.filesystem_type().0),
            Err(e) => format!("? ({e})"),
        }
    };
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "kernel": uname.as_ref().map(|u| u.release().to_string_lossy().into_owned()),
        "loadavg_start": load_start.trim(),
        "loadavg_end": fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "state_dir_disk": {"path": s(&a.state_disk), "fs": fstype(&a.state_disk)},
        "state_dir_tmpfs": {"path": s(&a.state_tmpfs), "fs": fstype(&a.state_tmpfs)},
        "run_fs": fstype(Path::new("/run")),
    })
}

fn print_table(report: &Value) {
    let fmt = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.1}"));
    println!();
    println!(
        "{:<44} {:<46} {:>11} {:>11} {:>5}",
        "measurement", "tool", "median µs", "p99 µs", "n"
    );
    println!("{}", "-".repeat(121));
    let mut last = String::new();
    for r in report["measurements"].as_array().into_iter().flatten() {
        let name = r["name"].as_str().unwrap_or_default();
        let shown = if name == last { "" } else { name };
        last = name.to_string();
        if r["value"].is_null() {
            println!(
                "{:<44} {:<46} {:>11} {:>11} {:>5}",
                shown,
                r["tool"].as_str().unwrap_or_default(),
                fmt(&r["median_us"]),
                fmt(&r["p99_us"]),
                r["n"]
            );
        } else {
            println!(
                "{:<44} {:<46} {:>11} {:<11} {:>5}",
                shown,
                r["tool"].as_str().unwrap_or_default(),
                r["value"]
                    .as_f64()
                    .map_or("-".to_string(), |x| format!("{x}")),
                r["unit"].as_str().unwrap_or_default(),
                r["n"]
            );
        }
    }
    println!();
    println!("{:<52} {:>9} {:>8}  met", "ratio", "value", "target");
    println!("{}", "-".repeat(78));
    for r in report["ratios"].as_array().into_iter().flatten() {
        let met = match r["met"].as_bool() {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "n/a",
        };
        println!(
            "{:<52} {:>9} {:>8}  {met}",
            r["name"].as_str().unwrap_or_default(),
            r["value"]
                .as_f64()
                .map_or("-".into(), |v| format!("{v:.3}")),
            r["target"].as_f64().map_or("-".into(), |t| t.to_string())
        );
    }
    for n in report["notes"].as_array().into_iter().flatten() {
        println!("note: {}", n.as_str().unwrap_or_default());
    }
}

/// The report as Markdown tables (for docs/BENCHMARKS.md).
fn markdown(report: &Value) -> String {
    let num = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.1}"));
    let mut m =
        String::from("| measurement | tool | median µs | p99 µs | n |\n|---|---|---:|---:|---:|\n");
    let mut last = String::new();
    for r in report["measurements"].as_array().into_iter().flatten() {
        let name = r["name"].as_str().unwrap_or_default();
        let shown = if name == last { "" } else { name };
        last = name.to_string();
        let (med, p99) = if r["value"].is_null() {
            (num(&r["median_us"]), num(&r["p99_us"]))
        } else {
            (
                format!(
                    "{} {}",
                    r["value"].as_f64().unwrap_or(0.0),
                    r["unit"].as_str().unwrap_or_default()
                ),
                String::new(),
            )
        };
        m += &format!(
            "| {shown} | {} | {med} | {p99} | {} |\n",
            r["tool"].as_str().unwrap_or_default(),
            r["n"]
        );
    }
    m += "\n| ratio (medians) | value | target | met |\n|---|---:|---:|---|\n";
    for r in report["ratios"].as_array().into_iter().flatten() {
        let met = match r["met"].as_bool() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "n/a",
        };
        m += &format!(
            "| {} | {} | {} | {met} |\n",
            r["name"].as_str().unwrap_or_default(),
            r["value"]
                .as_f64()
                .map_or("-".into(), |v| format!("{v:.3}")),
            r["target"]
                .as_f64()
                .map_or("(context)".into(), |t| format!("≤ {t}"))
        );
    }
    let p = &report["profile"];
    for (title, key) in [
        (
            "library attach/detach replayed step by step",
            "library_steps",
        ),
        ("deleting 8 taps", "batch_delete"),
        (
            "C lower bound, per step (nlbench seq mode)",
            "c_lower_bound_steps",
        ),
    ] {
        m += &format!("\n| {title} | median µs | p99 µs | n |\n|---|---:|---:|---:|\n");
        for s in p[key].as_array().into_iter().flatten() {
            m += &format!(
                "| {} | {} | {} | {} |\n",
                s["step"].as_str().unwrap_or_default(),
                num(&s["median_us"]),
                num(&s["p99_us"]),
                s["n"]
            );
        }
    }
    m += "\n| netlink and setns costs (nlbench rtt) | median µs | p99 µs | n |\n|---|---:|---:|---:|\n";
    for s in p["netlink_rtt"].as_array().into_iter().flatten() {
        m += &format!(
            "| {} | {} | {} | {} |\n",
            s["what"].as_str().unwrap_or_default(),
            num(&s["median_us"]),
            num(&s["p99_us"]),
            s["n"]
        );
    }
    m += "\n| one CLI process | perf stat task-clock ms | context switches | page faults | strace span µs | top syscalls by time under strace (µs) |\n|---|---:|---:|---:|---:|---|\n";
    for op in ["attach", "detach"] {
        for fs in ["disk", "tmpfs"] {
            let perf = &p["cli"][format!("perf_stat_{op}_{fs}")];
            let st = &p["cli"][format!("strace_{op}_{fs}")]["by_syscall"];
            let top: Vec<String> = st["syscalls"]
                .as_array()
                .into_iter()
                .flatten()
                .take(5)
                .map(|x| {
                    format!(
                        "{} {}",
                        x["syscall"].as_str().unwrap_or_default(),
                        num(&x["total_us"])
                    )
                })
                .collect();
            m += &format!(
                "| {op}, state on {fs} | {} | {} | {} | {} | {} |\n",
                num(&perf["task-clock"]),
                num(&perf["context-switches"]),
                num(&perf["page-faults"]),
                num(&st["span_us"]),
                top.join(", ")
            );
        }
    }
    m
}

fn main() {
    let cli = Cli::parse();
    install_signal_handlers();
    let result = match &cli.cmd {
        Cmd::Run(a) => run(a),
        Cmd::LibCycle(a) => lib_cycle(a).map(|v| println!("{v}")),
        Cmd::LibScan(a) => lib_scan(a).map(|v| println!("{v}")),
        Cmd::LibTeardown(a) => lib_teardown(a).map(|v| println!("{v}")),
        Cmd::LibConcurrent(a) => lib_concurrent(a).map(|v| println!("{v}")),
        Cmd::Steps(a) => steps(a).map(|v| println!("{v}")),
    };
    if let Err(e) = result {
        eprintln!("bench: error: {e}");
        std::process::exit(1);
    }
}
