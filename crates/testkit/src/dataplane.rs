//! Prove an attachment carries traffic: a fake guest on the tap exchanges ARP/NDP and ICMP
//! echo with a peer, in both directions. Used by `sandbox-net demo` and by the tests.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sandbox_net::Endpoint;
use sandbox_net::guest::{GuestConfig, GuestInterface};
use sandbox_net::netns::NetNs;
use sandbox_net::vmm::open_endpoint_queues;
use sandbox_net::{Error, Result};

use crate::fakeguest::{FakeGuest, GuestIdentity, peer};

/// The round-trip times of one ping exchange.
#[derive(Debug, Clone)]
pub struct PingReport {
    /// "guest -> 10.77.0.1" or "peer -> 10.77.0.2".
    pub direction: String,
    pub rtts: Vec<Duration>,
}

/// The fake guest's identity for an endpoint: its MAC and first IPv4 and IPv6 address.
pub fn identity(endpoint: &Endpoint, iface: &GuestInterface) -> Result<GuestIdentity> {
    let mac = endpoint
        .mac
        .ok_or_else(|| Error::invalid(format!("endpoint {} MAC", endpoint.name), "none"))?
        .bytes();
    let ipv4 = iface.addresses.iter().find_map(|a| match a.address {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    });
    let ipv6 = iface.addresses.iter().find_map(|a| match a.address {
        IpAddr::V6(v6) => Some(v6),
        IpAddr::V4(_) => None,
    });
    Ok(GuestIdentity { mac, ipv4, ipv6 })
}

/// How long [`while_busy`] retries.
const BUSY_FOR: Duration = Duration::from_secs(2);

/// Run `open` (an open of a tap's queues) again while it fails with EBUSY, for up to 2 s.
/// A test process spawns children from many threads, and a child holds copies of the
/// parent's fds from fork until exec closes them: a single-queue tap whose fd this process
/// has just closed can stay attached to such a copy for that long.
pub fn while_busy<T>(mut open: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    let deadline = Instant::now() + BUSY_FOR;
    loop {
        match open() {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Open the endpoint's tap in `pod` as a VMM would (all its queues, same flags:
/// [`open_endpoint_queues`], [`while_busy`]), then:
/// the guest pings every `peer_ips` address `count` times, and the `peer` netns pings
/// every guest address while the guest answers. Fails if any exchange gets no reply, or if
/// the peer got replies the fake guest did not send (the pod netns answered itself).
pub fn check(
    pod: &NetNs,
    peer_ns: &NetNs,
    endpoint: &Endpoint,
    id: GuestIdentity,
    peer_ips: &[IpAddr],
    count: u32,
) -> Result<Vec<PingReport>> {
    check_via(pod, peer_ns, endpoint, id, peer_ips, count, |_| None)
}

/// [`check`], the guest sending to each peer address through the gateway `via` gives for
/// it (None: on-link), as a guest behind the l3 model does for IPv6
/// ([`sandbox_net::model::l3::next_hop`]).
pub fn check_via(
    pod: &NetNs,
    peer_ns: &NetNs,
    endpoint: &Endpoint,
    id: GuestIdentity,
    peer_ips: &[IpAddr],
    count: u32,
    via: impl Fn(IpAddr) -> Option<IpAddr>,
) -> Result<Vec<PingReport>> {
    let tap_label = format!(
        "tap {} in netns {}",
        endpoint.device().unwrap_or_default(),
        pod.display()
    );
    let fds = pod
        .run(|| while_busy(|| open_endpoint_queues(endpoint)))?
        .map_err(|e| Error::kernel(&tap_label, "open the VMM side (all queues)", e))?;
    let mut guest = FakeGuest::new(fds, id);
    let timeout = Duration::from_secs(1);
    let mut reports = Vec::new();
    for &target in peer_ips {
        let rtts = guest
            .ping(target, via(target), count, timeout)
            .map_err(|e| {
                Error::kernel(
                    &tap_label,
                    format!("fake guest pings {target}"),
                    std::io::Error::other(e.to_string()),
                )
            })?;
        reports.push(PingReport {
            direction: format!("guest -> {target}"),
            rtts,
        });
    }
    let guest_ips: Vec<IpAddr> = id
        .ipv4
        .map(IpAddr::V4)
        .into_iter()
        .chain(id.ipv6.map(IpAddr::V6))
        .collect();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| -> Result<()> {
        let server = s.spawn(|| guest.serve(&stop, Instant::now() + Duration::from_secs(30)));
        let pinged = (|| -> Result<()> {
            for &target in &guest_ips {
                let rtts = peer_ns
                    .run(|| peer::ping_from_current_netns(target, count, timeout))?
                    .map_err(|e| {
                        Error::kernel(
                            format!("netns {}", peer_ns.display()),
                            format!("ping the fake guest at {target}"),
                            std::io::Error::other(e.to_string()),
                        )
                    })?;
                reports.push(PingReport {
                    direction: format!("peer -> {target}"),
                    rtts,
                });
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        let served = server
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        pinged?;
        let served = served.map_err(|e| {
            Error::kernel(
                &tap_label,
                "fake guest serves",
                std::io::Error::other(e.to_string()),
            )
        })?;
        // Every reply the peer got must come from the fake guest: without the redirect into
        // the tap, the pod netns' own interface (same addresses, same MAC) answers instead.
        let replies: usize = reports
            .iter()
            .filter(|r| r.direction.starts_with("peer -> "))
            .map(|r| r.rtts.len())
            .sum();
        if served.echo_answered < replies as u64 {
            return Err(Error::kernel(
                &tap_label,
                "fake guest serves",
                std::io::Error::other(format!(
                    "the peer got {replies} echo replies but the fake guest answered only {} \
                     requests: something else (the pod netns itself?) answered",
                    served.echo_answered
                )),
            ));
        }
        Ok(())
    })?;
    Ok(reports)
}

/// Pings per direction and address in the tests' checks.
pub const COUNT: u32 = 3;

/// The check of `ep`, its guest identity taken from `guest`'s description of it: the fake
/// guest pings `peer_ips`, the peer pings the guest's first IPv4 and IPv6 addresses,
/// [`COUNT`] times each. Panics when `guest` does not describe `ep`.
pub fn check_guest(
    pod: &NetNs,
    peer: &NetNs,
    ep: &Endpoint,
    guest: &GuestConfig,
    peer_ips: &[IpAddr],
) -> Result<Vec<PingReport>> {
    let iface = guest
        .interfaces
        .iter()
        .find(|g| g.name == ep.name)
        .unwrap_or_else(|| panic!("no guest interface for {}", ep.name));
    let id = identity(ep, iface)?;
    check(pod, peer, ep, id, peer_ips, COUNT)
}

/// Assert that every exchange got every reply: `n_peer` guest -> peer exchanges and one
/// peer -> guest exchange per guest address family (`n_guest`). Prints the round trips.
pub fn assert_replied(what: &str, reports: &[PingReport], n_peer: usize, n_guest: usize) {
    for r in reports {
        let rtts: Vec<String> = r
            .rtts
            .iter()
            .map(|d| format!("{:.3} ms", d.as_secs_f64() * 1e3))
            .collect();
        println!("{what}: {:<28} rtt {}", r.direction, rtts.join(", "));
    }
    let count = |prefix: &str| {
        reports
            .iter()
            .filter(|r| r.direction.starts_with(prefix))
            .count()
    };
    assert_eq!(count("guest -> "), n_peer, "{what}: {reports:?}");
    assert_eq!(count("peer -> "), n_guest, "{what}: {reports:?}");
    assert_eq!(reports.len(), n_peer + n_guest, "{what}: {reports:?}");
    for r in reports {
        assert_eq!(r.rtts.len(), COUNT as usize, "{what}: {}", r.direction);
    }
}
