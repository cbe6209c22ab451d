//! Soak: attach/detach cycles in one process through the library API, alternating the
//! tcfilter and macvtap models on a 2-veth netns. Open fds (/proc/self/fd), RSS
//! (/proc/self/statm), and the links and qdiscs of the netns must not grow. The figures
//! are printed every 50 cycles.
//!
//! CI runs 200 cycles; `cargo test --test soak -- --ignored` runs the 1000-cycle version
//! (a netdev delete costs the kernel 15-20 ms, so 1000 cycles take minutes).
//!
//! A test binary of its own, outside `it`: it counts the fds and the memory of its own
//! process, which other tests running next to it would change.

use std::time::Instant;

use sandbox_net::netlink::{Netlink, link, tc};
use sandbox_net::{AttachOptions, Detached, Model};
use sandbox_net_testkit::prelude::*;

/// Cycles before the baseline is taken (allocator arenas, lazily opened files).
const WARMUP: usize = 20;
/// RSS may move by allocator noise, not by a leak: a leak of even 1 KiB per cycle would
/// pass this after 1000 cycles only if it were under 1 MiB in all.
const RSS_SLACK_KIB: u64 = 1024;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm resident field");
    // SAFETY: sysconf takes no pointers.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    pages * page / 1024
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    links: usize,
    qdiscs: usize,
}

fn counts(nl: &mut Netlink) -> Counts {
    Counts {
        links: link::dump(nl).expect("dump links").len(),
        qdiscs: tc::dump_qdiscs(nl).expect("dump qdiscs").len(),
    }
}

fn soak(cycles: usize) {
    let net = scratch(2);
    let dir = TempStateDir::new();
    let id = "soak";
    let _cleanup = DetachOnDrop::new(dir.path(), id.to_string());
    let before = settled_snapshot(&net.pod_name);
    let mut nl = Netlink::open_in(&net.pod).expect("netlink socket in the pod");
    let pristine = counts(&mut nl);
    let mut baseline = None;
    let start = Instant::now();
    let mut attached_counts = None;
    println!("cycle  elapsed_ms  fds  rss_kib  links  qdiscs  (after detach)");
    for cycle in 1..=cycles {
        let mut opts = AttachOptions::new(net.pod_name.clone(), id);
        opts.state_dir = dir.path().to_path_buf();
        opts.model = if cycle % 2 == 0 {
            Model::Macvtap
        } else {
            Model::Tcfilter
        };
        let a = sandbox_net::attach(&opts).unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        assert_eq!(a.endpoints.len(), 2, "cycle {cycle}");
        // While attached, the netns holds the same objects every time per model.
        let now = counts(&mut nl);
        let expected = attached_counts.get_or_insert([None, None])[cycle % 2].get_or_insert(now);
        assert_eq!(now, *expected, "cycle {cycle}: attached counts differ");
        match sandbox_net::detach(dir.path(), id) {
            Ok(Detached::Detached { .. }) => {}
            other => panic!("cycle {cycle}: detach: {other:?}"),
        }
        assert_eq!(counts(&mut nl), pristine, "cycle {cycle}: objects left");
        let fds = open_fds();
        let rss = rss_kib();
        if cycle == WARMUP {
            baseline = Some((fds, rss));
        }
        if cycle % 50 == 0 || cycle == WARMUP || cycle == cycles {
            println!(
                "{cycle:>5}  {:>10}  {fds:>3}  {rss:>7}  {:>5}  {:>6}",
                start.elapsed().as_millis(),
                pristine.links,
                pristine.qdiscs
            );
        }
        if let Some((fds0, rss0)) = baseline {
            assert_eq!(fds, fds0, "cycle {cycle}: open fds grew");
            assert!(
                rss <= rss0 + RSS_SLACK_KIB,
                "cycle {cycle}: RSS grew from {rss0} KiB to {rss} KiB"
            );
        }
    }
    let elapsed = start.elapsed();
    let (fds0, rss0) = baseline.expect("more cycles than the warm-up");
    println!(
        "{cycles} cycles in {:.1} s ({:.1} ms per attach+detach); fds {fds0} -> {}; RSS {rss0} -> {} KiB; links {} and qdiscs {} after every detach",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / cycles as f64,
        open_fds(),
        rss_kib(),
        pristine.links,
        pristine.qdiscs
    );
    assert_settles_to(&net.pod_name, &before, "after the soak");
    assert_eq!(listing(dir.path()), Vec::<String>::new());
}

#[test]
fn soak_200_cycles() {
    soak(200);
}

#[test]
#[ignore = "1000 cycles take minutes; run with --ignored"]
fn soak_1000_cycles() {
    soak(1000);
}
