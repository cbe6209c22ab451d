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
//! (`vmm::open_endpoint_queues`: non-blocking fds, vnet header on; the header size set
//! to 12 bytes as Firecracker does, no offloads), one thread per queue doing one `read()` or
//! `write()` per frame, as Firecracker does. The peer side sends with `sendmmsg` on an
//! AF_PACKET socket (`PACKET_QDISC_BYPASS`, 64 frames a call) from the peer netns, or counts
//! what arrives at peth0 behind a drop program (tcx ingress, `TC_ACT_SHOT`), or receives
//! with a UDP socket (`recvmmsg`). The generator runs pinned to one CPU, the consumer(s) to
//! another. Frames are IPv4/UDP (checksum 0) over 64 flows (source ports), so a multi-queue
//! tap spreads them over its queues by flow hash. Under l3 the pod's IP stack routes them:
//! each side addresses its frames to its gateway's MAC (the peer to the pod's `eth0`, the
//! guest to the tap), and the pod's neighbour entries for both ends are made permanent
//! (the bench's ends answer no ARP).
//!
//! A trial: consumers start, the generator starts, a warm-up, then W windows of T seconds,
//! each sampled (packets delivered and offered, CPU time of our threads and of the
//! ksoftirqd threads, /proc/stat), then the generator stops and the consumers drain until
//! idle. Loss is over the whole trial (1 - delivered / sent). Rows aggregate the windows of
//! every repetition (median, min, max). The report is merged into `report.json` under
//! `datapath` and `datapath_queue_len`, and printed next to the setup ratios of the same run.

mod counters;
mod frames;
mod kernel;
mod report;
mod spec;
mod trial;
mod workers;

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use crate::frames::FLOWS;
use crate::kernel::UNPACED_SNDBUF;
use crate::report::{add_ratios, markdown, print_tables, round, row};
use crate::spec::{Plan, Spec};
use crate::trial::{Env, TrialOut};

type R<T> = Result<T, Box<dyn std::error::Error>>;

fn fail<T>(msg: impl Into<String>) -> R<T> {
    Err(msg.into().into())
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

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
    /// Measure only these joins (comma-separated: reference, tcfilter, macvtap, l3); the
    /// reference is always measured.
    #[arg(long, value_name = "LIST")]
    joins: Option<String>,
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
    if let Some(list) = &a.joins {
        plan.joins = spec::Join::parse_list(list)?;
    }
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
        "joins": plan.joins.iter().map(|j| j.name()).collect::<Vec<&str>>(),
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
        "guest": "queues opened through the library (vmm::open_endpoint_queues, non-blocking, vnet header), TUNSETVNETHDRSZ 12, no offloads, one read()/write() per frame per queue thread",
        "peer": "AF_PACKET + PACKET_QDISC_BYPASS sendmmsg x64 on the peer veth, 64 MiB send buffer (unpaced: a macvtap keeps sent frames charged to the sender until the guest reads them); consumer drop = tcx ingress TC_ACT_SHOT after rx_packets; udp_socket = recvmmsg x64, 8 MiB rcvbuf",
        "reference": "no tap: to_guest frames counted and dropped at the pod's eth0; from_guest sent by AF_PACKET on the pod's eth0",
        "l3": "routed by the pod's IP stack: the peer sends to the pod eth0's MAC, the guest to the tap's MAC; the pod's neighbour entries for the guest (on the tap) and the peer (on eth0) are permanent, as answered ARP would make them",
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

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["datapath", "run", "--smoke", "--joins", "l3,tcfilter"])
            .expect("parses");
        let Cmd::Run(a) = cli.cmd;
        assert!(a.smoke && !a.full);
        assert_eq!(a.joins.as_deref(), Some("l3,tcfilter"));
    }
}
