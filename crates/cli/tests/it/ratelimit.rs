//! Rate limiting (issue #4): read-back of HTB rates, accuracy with real traffic through the
//! tap, live changes, several endpoints and sandboxes, and bad rates.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use sandbox_net::ops::RateChange;
use sandbox_net::rate::Rate;
use sandbox_net::{AttachOptions, Attachment, Model};
use sandbox_net_testkit::fakeguest::packet;
use sandbox_net_testkit::scratch::ScratchNet;

const WARMUP: Duration = Duration::from_millis(700);
const WINDOW: Duration = Duration::from_secs(3);
const PAYLOAD: usize = 1400;
/// Ethernet + IPv4 + UDP headers: what HTB counts on top of the UDP payload.
const HEADERS: usize = 14 + 20 + 8;

fn rate(s: &str) -> Rate {
    s.parse().expect("rate")
}

fn attach(
    net: &ScratchNet,
    dir: &TempStateDir,
    id: &str,
    model: Model,
    rx: Option<&str>,
    tx: Option<&str>,
) -> Attachment {
    let mut opts = AttachOptions::new(net.pod_name.clone(), id);
    opts.state_dir = dir.path().to_path_buf();
    opts.model = model;
    opts.rx_rate = rx.map(rate);
    opts.tx_rate = tx.map(rate);
    sandbox_net::attach(&opts).expect("attach")
}

/// The VMM side of the endpoint, opened in the pod netns.
fn open_vmm_side(net: &ScratchNet, a: &Attachment) -> Vec<OwnedFd> {
    let ep = &a.endpoints[0];
    net.pod
        .run(|| while_busy(|| sandbox_net::vmm::open_endpoint_queues(ep)))
        .expect("enter pod")
        .expect("open queues")
}

fn guest_ip(a: &Attachment) -> Ipv4Addr {
    a.guest
        .as_ref()
        .expect("the attach described the guest")
        .interfaces[0]
        .addresses
        .iter()
        .find_map(|x| match x.address {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .expect("guest IPv4")
}

fn mbit(bytes: u64, secs: f64) -> f64 {
    bytes as f64 * 8.0 / secs / 1e6
}

/// Traffic toward the guest: the peer floods UDP at the guest; the fake guest reads the
/// tap (or macvtap) and counts Ethernet bytes. Returns Mbit/s.
fn measure_rx(net: &ScratchNet, a: &Attachment) -> f64 {
    let link = &net.links[0];
    let ip = guest_ip(a);
    let mac = &sandbox_net::mac::text_or_empty(a.endpoints[0].mac);
    // The peer needs no ARP answer from the guest to send.
    run(
        "ip",
        &[
            "-n",
            &net.peer_name,
            "neigh",
            "replace",
            &ip.to_string(),
            "lladdr",
            mac,
            "dev",
            &link.peer_name,
            "nud",
            "permanent",
        ],
    );
    let fds = open_vmm_side(net, a);
    let sock = net
        .peer
        .run(|| UdpSocket::bind((link.peer_v4, 0)))
        .expect("enter peer")
        .expect("bind");
    sock.set_nonblocking(true).expect("nonblocking");
    let stop = AtomicBool::new(false);
    let counted = std::thread::scope(|s| {
        s.spawn(|| {
            let buf = [0x5au8; PAYLOAD];
            while !stop.load(Ordering::Relaxed) {
                let _ = sock.send_to(&buf, (ip, 9999));
            }
        });
        let counted = count_frames(&fds, |frame| {
            packet::parse_ethernet(frame).is_some_and(|e| e.ethertype == packet::ETHERTYPE_IPV4)
        });
        stop.store(true, Ordering::Relaxed);
        counted
    });
    mbit(counted, WINDOW.as_secs_f64())
}

/// Read frames from every queue for WARMUP + WINDOW; return the Ethernet bytes of the
/// frames `keep` accepts that arrived inside the window.
fn count_frames(fds: &[OwnedFd], keep: impl Fn(&[u8]) -> bool) -> u64 {
    let start = Instant::now();
    let mut buf = vec![0u8; 65536];
    let mut bytes = 0u64;
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        let now = start.elapsed();
        if now >= WARMUP + WINDOW {
            return bytes;
        }
        // SAFETY: pfds is a valid array of pollfd for the duration of the call.
        unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 20) };
        for fd in fds {
            loop {
                // SAFETY: reading into a buffer we own, of the given length.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 10 {
                    break;
                }
                let frame = &buf[10..n as usize];
                if start.elapsed() >= WARMUP && keep(frame) {
                    bytes += frame.len() as u64;
                }
            }
        }
    }
}

/// Traffic from the guest: the fake guest writes UDP frames to the peer as fast as it can;
/// the peer counts what arrives (with headers). Returns Mbit/s.
fn measure_tx(net: &ScratchNet, a: &Attachment) -> f64 {
    let link = &net.links[0];
    let ip = guest_ip(a);
    let guest_mac = a.endpoints[0].mac.expect("mac").bytes();
    let peer_mac = [0x02, 0x77, 0, 0, 0, 1];
    let fds = open_vmm_side(net, a);
    let sock = net
        .peer
        .run(|| UdpSocket::bind((link.peer_v4, 9998)))
        .expect("enter peer")
        .expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let mut udp = Vec::with_capacity(8 + PAYLOAD);
    udp.extend_from_slice(&40000u16.to_be_bytes());
    udp.extend_from_slice(&9998u16.to_be_bytes());
    udp.extend_from_slice(&((8 + PAYLOAD) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]); // no checksum (allowed for UDP over IPv4)
    udp.extend_from_slice(&[0xa5; PAYLOAD]);
    let ipv4 = packet::build_ipv4(ip, link.peer_v4, 17, 64, 1, &udp).expect("ipv4");
    let mut frame = vec![0u8; 10];
    frame.extend(packet::build_ethernet(
        peer_mac,
        guest_mac,
        packet::ETHERTYPE_IPV4,
        &ipv4,
    ));
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let fd = fds[0].as_raw_fd();
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: writing a buffer we own to an open tap fd.
                let n = unsafe { libc::write(fd, frame.as_ptr().cast(), frame.len()) };
                if n < 0 {
                    std::thread::yield_now();
                }
            }
        });
        let start = Instant::now();
        let mut buf = [0u8; 2048];
        let mut bytes = 0u64;
        while start.elapsed() < WARMUP + WINDOW {
            if let Ok(n) = sock.recv(&mut buf)
                && start.elapsed() >= WARMUP
            {
                bytes += (n + HEADERS) as u64;
            }
        }
        stop.store(true, Ordering::Relaxed);
        mbit(bytes, WINDOW.as_secs_f64())
    })
}

fn assert_within_10_percent(what: &str, measured: f64, expected: f64) {
    println!(
        "{what}: measured {measured:.2} Mbit/s, limit {expected:.2} Mbit/s ({:+.1}%)",
        (measured / expected - 1.0) * 100.0
    );
    assert!(
        (measured - expected).abs() <= expected * 0.10,
        "{what}: {measured:.2} Mbit/s is not within 10% of {expected} Mbit/s"
    );
}

#[test]
fn tc_reports_exactly_the_rates_asked_for() {
    for text in ["500kbit", "20mbit", "1gbit", "40gbit"] {
        let net = scratch(1);
        let dir = TempStateDir::new();
        attach(
            &net,
            &dir,
            "rl-read",
            Model::Tcfilter,
            Some(text),
            Some(text),
        );
        let shown = tc_rate_name(text);
        for dev in ["tap0_sn", "eth0"] {
            let out = run("tc", &["-n", &net.pod_name, "class", "show", "dev", dev]);
            println!("{text} on {dev}:\n{out}");
            for class in ["1:1", "1:2"] {
                let line = out
                    .lines()
                    .find(|l| l.contains(&format!("htb {class} ")))
                    .unwrap_or_else(|| panic!("no class {class} on {dev}: {out}"));
                assert!(
                    line.contains(&format!("rate {shown} ceil {shown}")),
                    "{dev} {class}: {line}"
                );
            }
        }
        let status = sandbox_net::status(dir.path(), "rl-read")
            .expect("status")
            .expect("attached");
        assert!(!status.drift, "{status:?}");
        sandbox_net::detach(dir.path(), "rl-read").expect("detach");
        let qdiscs = run("tc", &["-n", &net.pod_name, "qdisc", "show"]);
        assert!(!qdiscs.contains("htb"), "{qdiscs}");
    }
}

/// How tc prints a rate: 500kbit -> 500Kbit, 20mbit -> 20Mbit, 40gbit -> 40Gbit.
fn tc_rate_name(text: &str) -> String {
    let (n, unit) = text.split_at(
        text.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len()),
    );
    let unit = match unit {
        "kbit" => "Kbit",
        "mbit" => "Mbit",
        "gbit" => "Gbit",
        other => other,
    };
    format!("{n}{unit}")
}

#[test]
fn limits_hold_with_real_traffic_and_change_live() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let a = attach(
        &net,
        &dir,
        "rl-acc",
        Model::Tcfilter,
        Some("20mbit"),
        Some("20mbit"),
    );
    assert_within_10_percent("tcfilter rx", measure_rx(&net, &a), 20.0);
    assert_within_10_percent("tcfilter tx", measure_tx(&net, &a), 20.0);
    // A live change: the new rate is what traffic gets.
    let limits = sandbox_net::set_rate(
        dir.path(),
        "rl-acc",
        None,
        Some(RateChange::Set(rate("5mbit"))),
        None,
    )
    .expect("set-rate");
    assert!(
        limits.iter().any(|l| l.kernel_bps == Some(5_000_000)),
        "{limits:?}"
    );
    assert_within_10_percent(
        "tcfilter rx after set-rate 5mbit",
        measure_rx(&net, &a),
        5.0,
    );
    // Removing the limit restores full speed (far above the old limit).
    sandbox_net::set_rate(
        dir.path(),
        "rl-acc",
        None,
        Some(RateChange::Remove),
        Some(RateChange::Remove),
    )
    .expect("remove");
    let free = measure_rx(&net, &a);
    println!("rx without a limit: {free:.1} Mbit/s");
    assert!(free > 40.0, "without a limit rx is only {free:.1} Mbit/s");
    sandbox_net::detach(dir.path(), "rl-acc").expect("detach");
}

#[test]
fn macvtap_limits_hold_with_real_traffic() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let before = snapshot(&net.pod_name);
    let a = attach(
        &net,
        &dir,
        "rl-mvt",
        Model::Macvtap,
        Some("20mbit"),
        Some("20mbit"),
    );
    assert_within_10_percent("macvtap rx (through the IFB)", measure_rx(&net, &a), 20.0);
    assert_within_10_percent("macvtap tx", measure_tx(&net, &a), 20.0);
    sandbox_net::detach(dir.path(), "rl-mvt").expect("detach");
    assert_eq!(snapshot(&net.pod_name), before);
}

#[test]
fn two_endpoints_and_two_sandboxes_are_limited_without_collisions() {
    let net_a = scratch(2);
    let net_b = scratch(1);
    let dir = TempStateDir::new();
    let before_a = snapshot(&net_a.pod_name);
    let before_b = snapshot(&net_b.pod_name);
    attach(
        &net_a,
        &dir,
        "rl-a",
        Model::Macvtap,
        Some("10mbit"),
        Some("3mbit"),
    );
    attach(
        &net_b,
        &dir,
        "rl-b",
        Model::Macvtap,
        Some("7mbit"),
        Some("2mbit"),
    );
    for (ns, id) in [(&net_a.pod_name, "rl-a"), (&net_b.pod_name, "rl-b")] {
        let status = sandbox_net::status(dir.path(), id)
            .expect("status")
            .expect("attached");
        assert!(!status.drift, "{status:?}");
        println!("{id}: {}", run("ip", &["-n", ns, "-br", "link"]));
    }
    let links = run("ip", &["-n", &net_a.pod_name, "-br", "link"]);
    assert_eq!(links.matches("ifb").count(), 2, "{links}");
    sandbox_net::detach(dir.path(), "rl-a").expect("detach a");
    sandbox_net::detach(dir.path(), "rl-b").expect("detach b");
    assert_eq!(snapshot(&net_a.pod_name), before_a);
    assert_eq!(snapshot(&net_b.pod_name), before_b);
}

#[test]
fn bad_rates_exit_2_and_change_nothing() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    std::fs::create_dir_all(dir.path()).expect("state dir");
    let before = snapshot(&net.pod_name);
    let state = dir.path().to_string_lossy().into_owned();
    for bad in ["0", "-1", "fast", "99999999999999999999tbit", ""] {
        for flag in ["--rx-rate", "--tx-rate"] {
            let (code, _, err) = cli(&[
                "--state-dir",
                &state,
                "attach",
                "--netns",
                &net.pod_name,
                "--id",
                "rl-bad",
                flag,
                bad,
            ]);
            println!("{flag} {bad:?}: exit {code}: {}", err.trim());
            assert_eq!(code, 2, "{flag} {bad}: {err}");
            assert!(err.contains("rate"), "{err}");
        }
    }
    assert_eq!(snapshot(&net.pod_name), before);
    assert_eq!(
        std::fs::read_dir(dir.path())
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
    // set-rate with a bad rate on a live attachment changes nothing either.
    let (code, _, err) = cli(&[
        "--state-dir",
        &state,
        "attach",
        "--netns",
        &net.pod_name,
        "--id",
        "rl-bad",
        "--rx-rate",
        "1mbit",
    ]);
    assert_eq!(code, 0, "{err}");
    let classes = run(
        "tc",
        &["-n", &net.pod_name, "class", "show", "dev", "tap0_sn"],
    );
    let (code, _, err) = cli(&[
        "--state-dir",
        &state,
        "set-rate",
        "--id",
        "rl-bad",
        "--rx",
        "fast",
    ]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        run(
            "tc",
            &["-n", &net.pod_name, "class", "show", "dev", "tap0_sn"]
        ),
        classes
    );
    let (code, _, err) = cli(&["--state-dir", &state, "detach", "--id", "rl-bad"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(snapshot(&net.pod_name), before);
}
