//! The l3 model (`--model l3`), on the real kernel, through a fake guest on the tap: the
//! pod's own stack carries the guest's traffic, so a REDIRECT in the pod catches the
//! guest's connections (and does not under tcfilter), a FORWARD rule filters them, and two
//! dual-stack endpoints carry traffic both ways; a failure at every journalled step, a
//! SIGKILL mid-attach, hotplug, watch, status, set-rate, gc and two attachments sharing
//! one netns all leave the netns as it was, settings and proxy neighbours included.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::watch_child::Watch;
use sandbox_net::Endpoint;
use sandbox_net::journal::Entry;
use sandbox_net::model::l3;
use sandbox_net::netns::NetNs;
use sandbox_net::ops::{
    RateChange, add_endpoint_with_failpoint, detach_with_failpoint,
    follow_addresses_with_failpoint, set_rate_with_failpoint,
};
use sandbox_net::state::{Phase, State, StateDir};
use sandbox_net::sysctl::Knob;
use sandbox_net::{AttachOptions, Attachment, Detached, Model};
use sandbox_net_testkit::dataplane;
use sandbox_net_testkit::fakeguest::tcp::TcpOutcome;
use sandbox_net_testkit::fakeguest::{FakeGuest, GuestIdentity};

/// More steps than any operation here has: a loop that reaches it has not terminated.
const MAX_STEPS: usize = 128;
const TCP_WAIT: Duration = Duration::from_secs(3);

/// A scratch pod with `veths` veths, its name, a private state dir, and its settled
/// snapshot.
fn setup(veths: u8) -> (ScratchNet, String, TempStateDir, NetnsSnapshot) {
    let net = scratch(veths);
    let pod = net.pod_name.clone();
    let dir = TempStateDir::new();
    let pristine = settled_snapshot(&pod);
    (net, pod, dir, pristine)
}

fn options(net: &ScratchNet, dir: &TempStateDir, id: &str, model: Model) -> AttachOptions {
    let mut opts = AttachOptions::new(net.pod_name.clone(), id);
    opts.state_dir = dir.path().to_path_buf();
    opts.model = model;
    opts
}

fn load(dir: &TempStateDir, id: &str) -> State {
    StateDir::open(dir.path())
        .expect("open state dir")
        .load(id)
        .expect("load state")
        .expect("state exists")
}

/// The attachment as its state records it now (after hotplug or watch changed it).
fn recorded(state: &State) -> Attachment {
    Attachment {
        id: state.id.clone(),
        netns: state.netns.clone(),
        model: state.model,
        endpoints: state.endpoints.clone(),
        guest: state.guest.clone(),
        netlink_requests: 0,
    }
}

fn described(state: &State) -> Vec<String> {
    state.journal.iter().map(Entry::describe).collect()
}

/// The next hop the guest uses under `model`.
fn via(model: Model) -> impl Fn(IpAddr) -> Option<IpAddr> {
    move |target| match model {
        Model::L3 => l3::next_hop(target),
        _ => None,
    }
}

/// A fake guest on endpoint `ep`'s tap, with the identity the guest description gives it.
fn guest(net: &ScratchNet, a: &Attachment, ep: &Endpoint) -> FakeGuest {
    let iface = a
        .guest
        .as_ref()
        .expect("described")
        .interfaces
        .iter()
        .find(|i| i.name == ep.name)
        .expect("guest interface");
    let id = dataplane::identity(ep, iface).expect("identity");
    let fds = net
        .pod
        .run(|| while_busy(|| sandbox_net::vmm::open_endpoint_queues(ep)))
        .expect("enter pod")
        .expect("open the tap's queues");
    FakeGuest::new(fds, id)
}

/// `iptables`/`ip6tables` in `ns`.
fn tables(ns: &str, family: &str, args: &[&str]) -> String {
    let mut cmd = vec![family];
    cmd.extend_from_slice(args);
    netns_exec(ns, &cmd)
}

/// A TCP listener in a netns that sends `banner` to each client and closes, recording
/// who connected. Stopped on drop.
struct Server {
    stop: Arc<AtomicBool>,
    peers: Arc<Mutex<Vec<IpAddr>>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(ns: &NetNs, port: u16, banner: &'static str) -> Server {
        let listener = ns
            .run(|| TcpListener::bind(("::", port)))
            .expect("enter netns")
            .unwrap_or_else(|e| panic!("listen on port {port} in {}: {e}", ns.display()));
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let (s, p) = (stop.clone(), peers.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, from)) => {
                        p.lock().expect("peers").push(plain(from));
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.write_all(banner.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            stop,
            peers,
            thread: Some(thread),
        }
    }

    fn peers(&self) -> Vec<IpAddr> {
        self.peers.lock().expect("peers").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The address a client connected from (an IPv4 one, not its IPv6-mapped form).
fn plain(from: SocketAddr) -> IpAddr {
    match from.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn data(text: &str) -> TcpOutcome {
    TcpOutcome::Data(text.as_bytes().to_vec())
}

/// What the guest's connections to the peer's port 80 reached, under `model`, with a
/// REDIRECT of TCP port 80 to port 15001 in the pod (both families), a listener there
/// ("pod") and one on the peer's port 80 ("peer"). The netns comes back to its snapshot.
fn redirect_case(model: Model) -> (Vec<TcpOutcome>, Vec<IpAddr>, Vec<IpAddr>, Vec<IpAddr>) {
    let net = scratch(1);
    let pod = net.pod_name.clone();
    let dir = TempStateDir::new();
    for family in ["iptables", "ip6tables"] {
        let redirect = [
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-p",
            "tcp",
            "--dport",
            "80",
        ];
        let mut args = redirect.to_vec();
        args.extend_from_slice(&["-j", "REDIRECT", "--to-ports", "15001"]);
        tables(&pod, family, &args);
    }
    let pristine = settled_snapshot(&pod);
    let in_pod = Server::start(&net.pod, 15001, "pod");
    let at_peer = Server::start(&net.peer, 80, "peer");
    let (a, attached) = attach(&options(&net, &dir, "redirect", model));
    let link = &net.links[0];
    let mut g = guest(&net, &a, &a.endpoints[0]);
    let targets = [IpAddr::V4(link.peer_v4), IpAddr::V6(link.peer_v6)];
    let outcomes = targets
        .iter()
        .map(|&t| {
            g.tcp_read(t, 80, via(model)(t), TCP_WAIT)
                .unwrap_or_else(|e| panic!("{model}: tcp to {t}: {e}"))
        })
        .collect();
    drop(g);
    attached.detach();
    assert_settles_to(&pod, &pristine, &format!("{model}: after detach"));
    let guest_ips = vec![IpAddr::V4(link.pod_v4), IpAddr::V6(link.pod_v6)];
    (outcomes, in_pod.peers(), at_peer.peers(), guest_ips)
}

/// Issue 16, first case: the pod redirects TCP port 80 to its own listener on 15001. Under
/// l3 the guest's connections to the peer's port 80 land on that listener (IPv4 and IPv6),
/// from the guest's own addresses; under tcfilter the guest's frames never enter the pod's
/// stack, and the same connections reach the peer.
#[test]
fn a_redirect_in_the_pod_catches_the_guest_under_l3_and_not_under_tcfilter() {
    let _serial = serial();
    let (outcomes, in_pod, at_peer, guest_ips) = redirect_case(Model::L3);
    println!("l3: {outcomes:?}; pod listener saw {in_pod:?}; peer saw {at_peer:?}");
    assert_eq!(outcomes, vec![data("pod"), data("pod")]);
    assert_eq!(
        in_pod, guest_ips,
        "the pod's listener sees the guest's addresses"
    );
    assert!(at_peer.is_empty(), "the peer saw {at_peer:?}");

    let (outcomes, in_pod, at_peer, guest_ips) = redirect_case(Model::Tcfilter);
    println!("tcfilter: {outcomes:?}; pod listener saw {in_pod:?}; peer saw {at_peer:?}");
    assert_eq!(outcomes, vec![data("peer"), data("peer")]);
    assert!(in_pod.is_empty(), "the pod's listener saw {in_pod:?}");
    assert_eq!(at_peer, guest_ips);
}

/// The packet count of the first rule of `chain` (`iptables -L -v -x`).
fn rule_packets(ns: &str, family: &str, chain: &str) -> u64 {
    let text = tables(ns, family, &["-L", chain, "-v", "-x", "-n"]);
    text.lines()
        .nth(2)
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rule in {family} {chain}: {text}"))
}

/// Issue 16, second case: a FORWARD drop rule in the pod blocks the guest's connections to
/// the peer's port 81 (IPv4 and IPv6, the rule counts them) while port 80 and pings pass.
#[test]
fn a_forward_rule_in_the_pod_blocks_one_flow_of_the_guest_and_not_the_others() {
    let _serial = serial();
    let net = scratch(1);
    let pod = net.pod_name.clone();
    let dir = TempStateDir::new();
    for family in ["iptables", "ip6tables"] {
        let rule = ["-A", "FORWARD", "-p", "tcp", "--dport", "81", "-j", "DROP"];
        tables(&pod, family, &rule);
    }
    let pristine = settled_snapshot(&pod);
    let _p80 = Server::start(&net.peer, 80, "peer80");
    let p81 = Server::start(&net.peer, 81, "peer81");
    let (a, attached) = attach(&options(&net, &dir, "forward", Model::L3));
    let link = &net.links[0];
    let mut g = guest(&net, &a, &a.endpoints[0]);
    for t in [IpAddr::V4(link.peer_v4), IpAddr::V6(link.peer_v6)] {
        let blocked = g
            .tcp_read(t, 81, l3::next_hop(t), Duration::from_secs(2))
            .expect("tcp 81");
        assert_eq!(blocked, TcpOutcome::NoAnswer, "port 81 of {t}");
        let passed = g
            .tcp_read(t, 80, l3::next_hop(t), TCP_WAIT)
            .expect("tcp 80");
        assert_eq!(passed, data("peer80"), "port 80 of {t}");
        let rtts = g
            .ping(t, l3::next_hop(t), COUNT, Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("ping {t}: {e}"));
        assert_eq!(rtts.len(), COUNT as usize, "ping {t}");
    }
    drop(g);
    assert!(
        p81.peers().is_empty(),
        "port 81 was reached: {:?}",
        p81.peers()
    );
    for family in ["iptables", "ip6tables"] {
        let dropped = rule_packets(&pod, family, "FORWARD");
        println!("{family}: the FORWARD drop rule counted {dropped} packets");
        assert!(dropped > 0, "{family}: the pod's FORWARD rule saw nothing");
    }
    attached.detach();
    assert_settles_to(&pod, &pristine, "after detach");
}

/// The two-way dual-stack ping check of endpoint `i` (the scratch link of that name):
/// the guest pings the peer's IPv4 and IPv6 addresses, the peer pings the guest's, and
/// every reply the peer gets comes from the fake guest, none from the pod itself.
fn two_way(net: &ScratchNet, a: &Attachment, ep: &Endpoint) {
    let link = net
        .links
        .iter()
        .find(|l| l.name == ep.name)
        .expect("scratch link");
    let iface = a
        .guest
        .as_ref()
        .expect("described")
        .interfaces
        .iter()
        .find(|i| i.name == ep.name)
        .expect("guest interface");
    let id = dataplane::identity(ep, iface).expect("identity");
    assert_eq!(
        (id.ipv4, id.ipv6),
        (Some(link.pod_v4), Some(link.pod_v6)),
        "{}: the guest keeps the pod's addresses",
        ep.name
    );
    let peers = [IpAddr::V4(link.peer_v4), IpAddr::V6(link.peer_v6)];
    let reports = dataplane::check_via(&net.pod, &net.peer, ep, id, &peers, COUNT, l3::next_hop)
        .unwrap_or_else(|e| panic!("{}: {e}", ep.name));
    assert_replied(&ep.name, &reports, 2, 2);
}

/// The pod's MAC for `ip` as the peer learnt it on `dev`.
fn peer_neighbour(net: &ScratchNet, dev: &str, ip: IpAddr) -> String {
    ip_json(&net.peer_name, &["neigh", "show", "dev", dev])
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["dst"] == ip.to_string())
        .map(|n| n["lladdr"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// Issue 16, third case: two dual-stack endpoints both pass traffic both ways, the guest
/// keeping the pod's addresses; the peer still sees each pod address at its endpoint's
/// MAC; the guest is told IPv6 goes through fe80::1; detach restores everything, the
/// settings and proxy neighbours included, and no setting of this process's own netns
/// changed (every one is written from inside the pod).
#[test]
fn two_dual_stack_endpoints_carry_traffic_both_ways() {
    let _serial = serial();
    let (net, pod, dir, pristine) = setup(2);
    let own = |knob: &str| std::fs::read_to_string(format!("/proc/sys/net/{knob}")).ok();
    let own_before = (
        own("ipv6/conf/all/proxy_ndp"),
        own("ipv4/conf/all/forwarding"),
    );
    let (a, attached) = attach(&options(&net, &dir, "two", Model::L3));
    assert_eq!(a.model, Model::L3);
    let guest_config = a.guest.clone().expect("described");
    for (ep, link) in a.endpoints.iter().zip(&net.links) {
        assert_eq!(
            ep.device().map(String::from),
            Some(format!("tap{}_sn", &ep.name[3..]))
        );
        two_way(&net, &a, ep);
        let mac = sandbox_net::MacAddr::new(link.mac).to_string();
        assert_eq!(
            peer_neighbour(&net, &link.peer_name, IpAddr::V4(link.pod_v4)),
            mac
        );
        assert_eq!(
            peer_neighbour(&net, &link.peer_name, IpAddr::V6(link.pod_v6)),
            mac
        );
        let iface = guest_config
            .interfaces
            .iter()
            .find(|i| i.name == ep.name)
            .expect("described");
        let prefixes: Vec<String> = iface
            .addresses
            .iter()
            .map(|g| format!("{}/{}", g.address, g.prefix_len))
            .collect();
        assert_eq!(
            prefixes,
            vec![
                format!("{}/24", link.pod_v4),
                format!("{}/128", link.pod_v6)
            ]
        );
    }
    let v6_routes: Vec<String> = guest_config
        .routes
        .iter()
        .filter(|r| r.family == "inet6")
        .map(|r| format!("{} via {:?} dev {}", r.dst, r.gateway, r.device))
        .collect();
    assert_eq!(
        v6_routes,
        vec![
            "default via Some(fe80::1) dev eth0",
            "fd77::/64 via Some(fe80::1) dev eth0",
            "fd77:1::/64 via Some(fe80::1) dev eth1",
        ]
    );
    let st = sandbox_net::status(dir.path(), "two")
        .expect("status")
        .expect("attached");
    assert!(!st.drift, "{st:?}");
    match attached.detach() {
        Detached::Detached {
            objects,
            left_alone,
            ..
        } => {
            assert!(left_alone.is_empty(), "{left_alone:?}");
            assert_eq!(objects, load_len(&st));
        }
        other => panic!("{other:?}"),
    }
    assert_settles_to(&pod, &pristine, "after detach");
    let own_after = (
        own("ipv6/conf/all/proxy_ndp"),
        own("ipv4/conf/all/forwarding"),
    );
    assert_eq!(
        own_before, own_after,
        "a setting of the test's own netns changed"
    );
}

fn load_len(st: &sandbox_net::ops::Status) -> usize {
    st.objects.as_ref().map_or(0, Vec::len)
}

/// A failure injected before every step of an l3 attach (two dual-stack endpoints, rate
/// limits) rolls back to the snapshot and leaves no state; the attach that gets past every
/// step then detaches to the snapshot.
#[test]
fn an_attach_failing_at_every_step_leaves_the_netns_as_it_was() {
    let _serial = serial();
    let (net, pod, dir, pristine) = setup(2);
    let mut opts = options(&net, &dir, "fp-attach", Model::L3);
    opts.rx_rate = Some("20mbit".parse().expect("rate"));
    opts.tx_rate = Some("10mbit".parse().expect("rate"));
    let _cleanup = DetachOnDrop::new(dir.path(), opts.id.clone());
    let mut steps = 0;
    for step in 0..MAX_STEPS {
        opts.fail_at_step = Some(step);
        match sandbox_net::attach(&opts) {
            Ok(_) => {
                steps = step;
                break;
            }
            Err(e) => {
                let context = format!("l3 attach, failure at step {step}: {e}");
                assert!(e.to_string().contains("failpoint"), "{context}");
                assert_settles_to(&pod, &pristine, &context);
                assert_eq!(listing(dir.path()), Vec::<String>::new(), "{context}");
            }
        }
    }
    let journal = load(&dir, "fp-attach").journal;
    println!(
        "l3 attach: {steps} failpoints ({} journal entries)",
        journal.len()
    );
    assert_eq!(steps, journal.len() + 1);
    for kind in [
        "sysctl net.ipv4.conf.eth0.proxy_arp",
        "sysctl net.ipv6.conf.all.proxy_ndp",
        "proxy neighbour fd77:1::2 on eth1",
        "added address fe80::1/64 on tap1_sn",
        "added route fd77::2/128 dev tap0_sn",
        "local route of 10.77.1.2 on eth1",
        "local route of fd77::2 on eth0",
    ] {
        assert!(
            journal.iter().any(|e| e.describe() == kind),
            "{kind} not in {:?}",
            journal.iter().map(Entry::describe).collect::<Vec<_>>()
        );
    }
    sandbox_net::detach(dir.path(), "fp-attach").expect("detach");
    assert_settles_to(&pod, &pristine, "after detach");
}

/// add-endpoint under l3 fails at every step without changing the netns or the state; a
/// detach stopped before every step keeps the state and the next detach finishes it.
#[test]
fn hotplug_and_detach_failing_at_every_step() {
    let _serial = serial();
    let (net, pod, dir, pristine) = setup(2);
    let mut opts = options(&net, &dir, "fp-hot", Model::L3);
    opts.interfaces = Some(vec!["eth0".into()]);
    let _cleanup = DetachOnDrop::new(dir.path(), opts.id.clone());
    sandbox_net::attach(&opts).expect("attach eth0");
    let before = settled_snapshot(&pod);
    let state_before = load(&dir, "fp-hot");
    let mut steps = 0;
    for step in 0..MAX_STEPS {
        match add_endpoint_with_failpoint(dir.path(), "fp-hot", "eth1", Some(step)) {
            Ok(_) => {
                steps = step;
                break;
            }
            Err(e) => {
                let context = format!("add-endpoint eth1, failure at step {step}: {e}");
                assert!(e.to_string().contains("failpoint"), "{context}");
                assert_settles_to(&pod, &before, &context);
                assert_eq!(load(&dir, "fp-hot"), state_before, "{context}");
            }
        }
    }
    let added = load(&dir, "fp-hot").journal.len() - state_before.journal.len();
    println!("l3 add-endpoint: {steps} failpoints ({added} new entries)");
    assert_eq!(steps, added + 1);
    // The second endpoint shares the netns-wide setting the first one holds.
    let claims = load(&dir, "fp-hot")
        .journal
        .iter()
        .filter(|e| e.netns_wide())
        .count();
    assert_eq!(claims, 1);
    sandbox_net::detach(dir.path(), "fp-hot").expect("detach");
    assert_settles_to(&pod, &pristine, "after detach");

    let state_dir = dir.path().display().to_string();
    opts.interfaces = None;
    let mut steps = 0;
    for step in 0..MAX_STEPS {
        sandbox_net::attach(&opts).expect("attach");
        match detach_with_failpoint(dir.path(), "fp-hot", Some(step)) {
            Ok(_) => {
                steps = step;
                assert_settles_to(&pod, &pristine, "detach without failure");
                break;
            }
            Err(e) => {
                let context = format!("detach, stopped at step {step}: {e}");
                let st = sandbox_net::status(dir.path(), "fp-hot")
                    .expect("status")
                    .expect("still attached");
                assert_eq!(st.drift, step > 0, "{context}: {st:?}");
                let (code, out, err) =
                    cli(&["--state-dir", &state_dir, "detach", "--id", "fp-hot"]);
                assert_eq!(code, 0, "{context}: {out}{err}");
                assert_settles_to(&pod, &pristine, &context);
            }
        }
    }
    println!("l3 detach: {steps} failpoints, each finished by the next detach");
    assert!(steps >= 30, "only {steps} steps");
}

/// set-rate on an l3 attachment: limits added, changed and removed, each failing at every
/// step rolls back; traffic still flows; detach restores the snapshot.
#[test]
fn set_rate_under_l3() {
    let _serial = serial();
    let (net, pod, dir, pristine) = setup(1);
    let (a, attached) = attach(&options(&net, &dir, "rate", Model::L3));
    let set = |t: &str| RateChange::Set(t.parse().expect("rate"));
    for (phase, rx, tx) in [
        ("add", set("20mbit"), set("10mbit")),
        ("change", set("30mbit"), set("15mbit")),
    ] {
        let before = settled_snapshot(&pod);
        let journal = described(&load(&dir, "rate"));
        let mut steps = 0;
        for step in 0..MAX_STEPS {
            match set_rate_with_failpoint(dir.path(), "rate", None, Some(rx), Some(tx), Some(step))
            {
                Ok(limits) => {
                    steps = step;
                    println!("{phase}: {limits:?}");
                    let devices: Vec<&str> = limits.iter().map(|l| l.device.as_str()).collect();
                    assert_eq!(
                        devices,
                        vec!["tap0_sn", "eth0"],
                        "rx on the tap, tx on eth0"
                    );
                    assert!(limits.iter().all(|l| l.kernel_bps == l.rate_bps));
                    break;
                }
                Err(e) => {
                    let context = format!("set-rate {phase}, failure at step {step}: {e}");
                    assert!(e.to_string().contains("failpoint"), "{context}");
                    assert_settles_to(&pod, &before, &context);
                    assert_eq!(described(&load(&dir, "rate")), journal, "{context}");
                }
            }
        }
        assert!(steps >= 2, "{phase}: {steps} steps");
    }
    two_way(&net, &a, &a.endpoints[0]);
    sandbox_net::set_rate(
        dir.path(),
        "rate",
        None,
        Some(RateChange::Remove),
        Some(RateChange::Remove),
    )
    .expect("remove limits");
    attached.detach();
    assert_settles_to(&pod, &pristine, "after detach");
}

/// add-endpoint and remove-endpoint under l3: the hot-plugged endpoint carries traffic
/// both ways, and removing it puts back exactly what it changed.
#[test]
fn hotplug_under_l3() {
    let _serial = serial();
    let (net, pod, dir, pristine) = setup(2);
    let mut opts = options(&net, &dir, "hot", Model::L3);
    opts.interfaces = Some(vec!["eth0".into()]);
    let (_, attached) = attach(&opts);
    let one = settled_snapshot(&pod);
    let change = sandbox_net::add_endpoint(dir.path(), "hot", "eth1").expect("add eth1");
    assert_eq!(change.endpoint.device(), Some("tap1_sn"));
    let eth1 = change
        .guest
        .interfaces
        .iter()
        .find(|i| i.name == "eth1")
        .expect("eth1 described");
    assert_eq!(eth1.addresses[1].prefix_len, 128, "{eth1:?}");
    let a = Attachment {
        id: "hot".into(),
        netns: pod.clone(),
        model: Model::L3,
        endpoints: vec![change.endpoint.clone()],
        guest: Some(change.guest.clone()),
        netlink_requests: 0,
    };
    two_way(&net, &a, &change.endpoint);
    sandbox_net::remove_endpoint(dir.path(), "hot", "eth1").expect("remove eth1");
    assert_settles_to(&pod, &one, "after remove-endpoint");
    attached.detach();
    assert_settles_to(&pod, &pristine, "after detach");
}

/// watch under l3: a veth configured after the attach is attached (routed, traffic both
/// ways) and, once deleted, detached; the watch reports no change of the guest for its own
/// doing; the netns ends as it was.
#[test]
fn watch_under_l3() {
    let _serial = serial();
    let mut net = scratch(1);
    let pod = net.pod_name.clone();
    let dir = TempStateDir::new();
    let pristine = settled_snapshot(&pod);
    let (_, attached) = attach(&options(&net, &dir, "w", Model::L3));
    let mut watch = Watch::start(&dir, "w");
    let link = net.add_link(1, 1500, false).expect("add eth1");
    let (_, added) = watch.until("endpoint-added eth1", Duration::from_secs(10), |e| {
        e["event"] == "endpoint-added" && e["endpoint"]["name"] == "eth1"
    });
    assert_eq!(added["endpoint"]["tap"], "tap1_sn", "{added}");
    // The watch may attach eth1 before its IPv6 address is there or has settled: that
    // address is routed (and described) once it has.
    let both = [IpAddr::V4(link.pod_v4), IpAddr::V6(link.pod_v6)];
    if !describes(&added, "eth1", &both) {
        watch.until("eth1 routed dual-stack", Duration::from_secs(10), |e| {
            e["event"] == "guest-changed" && describes(e, "eth1", &both)
        });
    }
    let state = load(&dir, "w");
    let a = recorded(&state);
    let ep = state
        .endpoints
        .iter()
        .find(|e| e.name == "eth1")
        .expect("eth1");
    two_way(&net, &a, ep);
    ip(&pod, &["link", "del", "eth1"]);
    watch.until("endpoint-removed eth1", Duration::from_secs(10), |e| {
        e["event"] == "endpoint-removed" && e["endpoint"]["name"] == "eth1"
    });
    assert_eq!(watch.terminate(), Some(0));
    let events: Vec<String> = watch
        .seen
        .iter()
        .map(|(_, e)| e["event"].to_string())
        .collect();
    println!("watch events: {events:?}");
    assert!(
        !events.iter().any(|e| e.contains("error")),
        "watch reported an error: {events:?}"
    );
    attached.detach();
    assert_settles_to(&pod, &pristine, "after detach");
}

/// Whether a watch event's guest description gives interface `iface` every one of `ips`.
fn describes(event: &serde_json::Value, iface: &str, ips: &[IpAddr]) -> bool {
    event["guest"]["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["name"] == iface)
        .any(|i| {
            let given: Vec<String> = i["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["address"].as_str().map(String::from))
                .collect();
            ips.iter().all(|ip| given.contains(&ip.to_string()))
        })
}

/// The fake guest on endpoint `ep` with the addresses `v4` and `v6` pings the peer's
/// addresses (IPv6 through the gateway), and the peer pings those addresses, each reply
/// from the fake guest.
fn two_way_as(net: &ScratchNet, ep: &Endpoint, v4: &str, v6: &str) {
    let link = net
        .links
        .iter()
        .find(|l| l.name == ep.name)
        .expect("scratch link");
    let id = GuestIdentity {
        mac: ep.mac.expect("endpoint MAC").bytes(),
        ipv4: Some(v4.parse().expect("IPv4")),
        ipv6: Some(v6.parse().expect("IPv6")),
    };
    let peers = [IpAddr::V4(link.peer_v4), IpAddr::V6(link.peer_v6)];
    let reports = dataplane::check_via(&net.pod, &net.peer, ep, id, &peers, COUNT, l3::next_hop)
        .unwrap_or_else(|e| panic!("{} as {v4} and {v6}: {e}", ep.name));
    assert_replied(&ep.name, &reports, 2, 2);
}

/// `ip` in `ns`, adding (`add`) or deleting (`del`) `address` on `dev`; IPv6 ones without
/// duplicate address detection unless `dad`.
fn address(ns: &str, verb: &str, address: &str, dev: &str, dad: bool) {
    let mut args = vec!["addr", verb, address, "dev", dev];
    if verb == "add" && address.contains(':') && !dad {
        args.push("nodad");
    }
    ip(ns, &args);
}

/// Watch under l3 follows the addresses of an attached endpoint: an IPv4 and an IPv6
/// address added to eth0 are routed to the guest (described in a `guest-changed` event,
/// reachable both ways from the fake guest that has them); once deleted, what routed them
/// is undone exactly (the netns and the journal as they were before they came).
#[test]
fn watch_follows_addresses_added_to_and_removed_from_an_l3_endpoint() {
    let _serial = serial();
    let (net, pod, dir, pristine) = setup(1);
    let (a, attached) = attach(&options(&net, &dir, "follow", Model::L3));
    // Once a guest has opened the tap, it has a carrier and its own link-local address.
    two_way(&net, &a, &a.endpoints[0]);
    let before = settled_snapshot(&pod);
    let journal_before = described(&load(&dir, "follow"));
    let mut watch = Watch::start(&dir, "follow");
    address(&pod, "add", "10.77.0.9/24", "eth0", false);
    address(&pod, "add", "fd77::9/64", "eth0", false);
    let new: [IpAddr; 2] = [
        "10.77.0.9".parse().expect("ip"),
        "fd77::9".parse().expect("ip"),
    ];
    watch.until("the new addresses routed", Duration::from_secs(10), |e| {
        e["event"] == "guest-changed" && describes(e, "eth0", &new)
    });
    let journal = described(&load(&dir, "follow"));
    for entry in [
        "proxy neighbour fd77::9 on eth0",
        "added route 10.77.0.9/32 dev tap0_sn",
        "added route fd77::9/128 dev tap0_sn",
        "local route of 10.77.0.9 on eth0",
        "local route of fd77::9 on eth0",
    ] {
        assert!(journal.contains(&entry.to_string()), "{entry}: {journal:?}");
    }
    assert_eq!(journal.len(), journal_before.len() + 5, "{journal:?}");
    two_way_as(&net, &a.endpoints[0], "10.77.0.9", "fd77::9");
    address(&pod, "del", "10.77.0.9/24", "eth0", false);
    address(&pod, "del", "fd77::9/64", "eth0", false);
    let old: [IpAddr; 2] = [
        IpAddr::V4(net.links[0].pod_v4),
        IpAddr::V6(net.links[0].pod_v6),
    ];
    watch.until(
        "the addresses no longer routed",
        Duration::from_secs(10),
        |e| {
            e["event"] == "guest-changed"
                && describes(e, "eth0", &old)
                && !describes(e, "eth0", &new[..1])
                && !describes(e, "eth0", &new[1..])
        },
    );
    assert_settles_to(&pod, &before, "after the addresses went");
    assert_eq!(described(&load(&dir, "follow")), journal_before);
    assert_eq!(watch.terminate(), Some(0));
    let events: Vec<String> = watch
        .seen
        .iter()
        .map(|(_, e)| e["event"].to_string())
        .collect();
    assert!(
        !events.iter().any(|e| e.contains("error")),
        "watch reported an error: {:?}",
        watch.seen
    );
    attached.detach();
    assert_settles_to(&pod, &pristine, "after detach");
}

/// Delete `addr` from eth0 and add it back with duplicate address detection (`transmits`
/// probes; the scratch pod turns it off netns-wide, so it is turned on for eth0 until the
/// test puts it back): it is tentative when this returns.
fn readd_with_dad(net: &ScratchNet, addr: &str, transmits: &str) {
    let pod = &net.pod_name;
    write_in(&net.pod, "ipv6/conf/eth0/accept_dad", "1");
    write_in(&net.pod, "ipv6/conf/eth0/dad_transmits", transmits);
    address(pod, "del", addr, "eth0", false);
    address(pod, "add", addr, "eth0", true);
    let ip = addr.split('/').next().unwrap_or_default();
    let tentative = ip_json(pod, &["addr", "show", "dev", "eth0"])
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .any(|a| a["local"] == ip && a["tentative"] == serde_json::Value::Bool(true));
    assert!(tentative, "{addr} is not tentative");
}

/// An endpoint whose IPv6 address is in duplicate address detection (added without
/// nodad right before the attach): the attach waits for it, and routes it.
#[test]
fn an_l3_attach_waits_for_a_tentative_ipv6_address() {
    let _serial = serial();
    let (net, pod, dir, pristine) = setup(1);
    readd_with_dad(&net, "fd77::2/64", "1");
    let started = Instant::now();
    let (a, attached) = attach(&options(&net, &dir, "dad", Model::L3));
    println!("attach took {:?}", started.elapsed());
    write_in(&net.pod, "ipv6/conf/eth0/accept_dad", "0");
    let journal = described(&load(&dir, "dad"));
    assert!(
        journal.contains(&"local route of fd77::2 on eth0".to_string()),
        "{journal:?}"
    );
    two_way(&net, &a, &a.endpoints[0]);
    attached.detach();
    // The address is put back as it was (with duplicate address detection).
    assert_settles_to(&pod, &pristine, "after detach");
}

/// An endpoint whose IPv6 address is still in duplicate address detection after the
/// attach's wait (4 probes, 4 s and more): the attach routes (and describes) its IPv4
/// address only; the watch routes the IPv6 one once it has settled, and the guest reaches
/// it both ways.
#[test]
fn an_ipv6_address_tentative_past_the_attach_is_routed_by_watch_once_settled() {
    let _serial = serial();
    let (net, pod, dir, pristine) = setup(1);
    readd_with_dad(&net, "fd77::2/64", "4");
    let added = Instant::now();
    let (a, attached) = attach(&options(&net, &dir, "late", Model::L3));
    let state = load(&dir, "late");
    let journal = described(&state);
    assert!(
        !journal
            .iter()
            .any(|e| e.contains("fd77::2") || e.contains("ipv6")),
        "the tentative address was acted on: {journal:?}"
    );
    let guest = a.guest.clone().expect("described");
    let given: Vec<IpAddr> = guest.interfaces[0]
        .addresses
        .iter()
        .map(|g| g.address)
        .collect();
    assert_eq!(given, vec![IpAddr::V4(net.links[0].pod_v4)]);
    assert!(guest.routes.iter().all(|r| r.family == "inet"), "{guest:?}");
    let mut watch = Watch::start(&dir, "late");
    let v6 = [IpAddr::V6(net.links[0].pod_v6)];
    let (at, _) = watch.until("fd77::2 routed", Duration::from_secs(15), |e| {
        e["event"] == "guest-changed" && describes(e, "eth0", &v6)
    });
    println!("fd77::2 routed {:?} after it was added", at - added);
    let state = load(&dir, "late");
    two_way(&net, &recorded(&state), &state.endpoints[0]);
    assert_eq!(watch.terminate(), Some(0));
    write_in(&net.pod, "ipv6/conf/eth0/dad_transmits", "1");
    write_in(&net.pod, "ipv6/conf/eth0/accept_dad", "0");
    attached.detach();
    assert_settles_to(&pod, &pristine, "after detach");
}

/// Following addresses (`ops::follow_addresses`, what watch runs) fails at every step:
/// routing an IPv4 and an IPv6 address added to eth0 rolls back to the netns and the
/// state as they were; stopping the undo of those addresses' entries (once deleted) at
/// every step leaves what the next follow finishes, back to the netns and journal of
/// before they came.
#[test]
fn following_addresses_failing_at_every_step() {
    let _serial = serial();
    let (net, pod, dir, pristine) = setup(1);
    let (_, attached) = attach(&options(&net, &dir, "fp-follow", Model::L3));
    let attached_snapshot = settled_snapshot(&pod);
    let journal_attached = load(&dir, "fp-follow").journal;
    let add = || {
        address(&pod, "add", "10.77.0.9/24", "eth0", false);
        address(&pod, "add", "fd77::9/64", "eth0", false);
    };
    add();
    let before = settled_snapshot(&pod);
    let state_before = load(&dir, "fp-follow");
    let mut steps = 0;
    for step in 0..MAX_STEPS {
        match follow_addresses_with_failpoint(dir.path(), "fp-follow", Some(step)) {
            Ok(followed) => {
                let followed = followed.expect("addresses to follow");
                assert_eq!(followed.changes.len(), 2, "{followed:?}");
                assert!(followed.changes.iter().all(|c| c.routed), "{followed:?}");
                steps = step;
                break;
            }
            Err(e) => {
                let context = format!("following, failure at step {step}: {e}");
                assert!(e.to_string().contains("failpoint"), "{context}");
                assert_settles_to(&pod, &before, &context);
                assert_eq!(load(&dir, "fp-follow"), state_before, "{context}");
            }
        }
    }
    let added = load(&dir, "fp-follow").journal.len() - journal_attached.len();
    println!("following two new addresses: {steps} failpoints ({added} new entries)");
    assert_eq!(added, 5);
    assert_eq!(steps, added + 1);
    let routed = settled_snapshot(&pod);
    let journal_routed = load(&dir, "fp-follow").journal;
    let remove = || {
        address(&pod, "del", "10.77.0.9/24", "eth0", false);
        address(&pod, "del", "fd77::9/64", "eth0", false);
    };
    remove();
    let mut steps = 0;
    for step in 0..MAX_STEPS {
        match follow_addresses_with_failpoint(dir.path(), "fp-follow", Some(step)) {
            Ok(followed) => {
                let followed = followed.expect("addresses that went");
                assert!(followed.changes.iter().all(|c| !c.routed), "{followed:?}");
                steps = step;
                break;
            }
            Err(e) => {
                let context = format!("following, stopped at step {step}: {e}");
                assert!(e.to_string().contains("failpoint"), "{context}");
                sandbox_net::ops::follow_addresses(dir.path(), "fp-follow")
                    .unwrap_or_else(|e| panic!("{context}: the next follow: {e}"));
                assert_settles_to(&pod, &attached_snapshot, &context);
                assert_eq!(
                    load(&dir, "fp-follow").journal,
                    journal_attached,
                    "{context}"
                );
                // Back to the addresses routed, for the next step.
                add();
                sandbox_net::ops::follow_addresses(dir.path(), "fp-follow")
                    .expect("follow")
                    .expect("routed again");
                assert_settles_to(&pod, &routed, &context);
                assert_eq!(load(&dir, "fp-follow").journal, journal_routed, "{context}");
                remove();
            }
        }
    }
    println!("following two addresses that went: {steps} failpoints");
    assert!(steps >= 3, "only {steps} steps");
    assert_settles_to(&pod, &attached_snapshot, "after the addresses went");
    assert_eq!(load(&dir, "fp-follow").journal, journal_attached);
    attached.detach();
    assert_settles_to(&pod, &pristine, "after detach");
}

fn sysctl_in(ns: &NetNs, knob: &str) -> String {
    let path = format!("/proc/sys/net/{knob}");
    ns.run(|| std::fs::read_to_string(&path))
        .expect("enter")
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
        .trim()
        .to_string()
}

fn write_in(ns: &NetNs, knob: &str, value: &str) {
    let path = format!("/proc/sys/net/{knob}");
    ns.run(|| std::fs::write(&path, value))
        .expect("enter")
        .unwrap_or_else(|e| panic!("write {path}: {e}"));
}

/// The tenant works against the attachment: it puts back a local route (the pod answers
/// for its address again), changes a setting sandbox-net made to a third value, and moves
/// the endpoint's name to another device. status reports each as drift; detach leaves the
/// changed setting and the renamed endpoint's settings alone, naming them, and never
/// writes a setting of the device that took the endpoint's name.
#[test]
fn status_drift_and_a_hostile_tenant_under_l3() {
    let _serial = serial();
    let net = scratch(1);
    let pod = net.pod_name.clone();
    let dir = TempStateDir::new();
    let (_, attached) = attach(&options(&net, &dir, "hostile", Model::L3));
    let status = || {
        sandbox_net::status(dir.path(), "hostile")
            .expect("status")
            .expect("attached")
    };
    let missing = |st: &sandbox_net::ops::Status| -> Vec<String> {
        st.objects
            .iter()
            .flatten()
            .filter(|o| !o.present)
            .map(|o| o.object.clone())
            .collect()
    };
    assert!(!status().drift);
    ip(
        &pod,
        &[
            "route",
            "add",
            "local",
            "10.77.0.2",
            "dev",
            "eth0",
            "table",
            "local",
            "proto",
            "kernel",
            "scope",
            "host",
            "src",
            "10.77.0.2",
        ],
    );
    write_in(&net.pod, "ipv4/neigh/eth0/proxy_delay", "50");
    let st = status();
    assert!(st.drift);
    assert_eq!(
        missing(&st),
        vec![
            "sysctl net.ipv4.neigh.eth0.proxy_delay".to_string(),
            "local route of 10.77.0.2 on eth0".into()
        ]
    );
    // The endpoint is renamed and a new device takes its name.
    ip(&pod, &["link", "set", "eth0", "down"]);
    ip(&pod, &["link", "set", "eth0", "name", "eth9"]);
    ip(
        &pod,
        &["link", "add", "eth0", "type", "veth", "peer", "name", "x0"],
    );
    let decoy_before =
        ["ipv4/conf/eth0/proxy_arp", "ipv4/conf/eth0/forwarding"].map(|k| sysctl_in(&net.pod, k));
    let st = status();
    assert!(
        st.problem
            .as_deref()
            .is_some_and(|p| p.contains("proxy_arp")),
        "{st:?}"
    );
    let Detached::Detached { left_alone, .. } = attached.detach() else {
        panic!("not detached");
    };
    let alone: Vec<String> = left_alone
        .iter()
        .map(|l| format!("{}: {}", l.object, l.reason))
        .collect();
    println!("left alone: {alone:#?}");
    assert!(
        alone.iter().any(
            |l| l.starts_with("sysctl net.ipv4.conf.eth0.proxy_arp: ifindex") && l.contains("eth9")
        ),
        "{alone:?}"
    );
    let decoy_after =
        ["ipv4/conf/eth0/proxy_arp", "ipv4/conf/eth0/forwarding"].map(|k| sysctl_in(&net.pod, k));
    assert_eq!(
        decoy_before, decoy_after,
        "the new eth0's settings were written"
    );
    assert_eq!(
        sysctl_in(&net.pod, "ipv4/conf/eth9/proxy_arp"),
        "1",
        "left alone"
    );
    assert_eq!(sysctl_in(&net.pod, "ipv4/neigh/eth9/proxy_delay"), "50");
}

/// A setting changed to a third value is left alone by detach, and named.
#[test]
fn a_setting_someone_else_changed_is_left_alone() {
    let _serial = serial();
    let (net, pod, dir, pristine) = setup(1);
    let (_, attached) = attach(&options(&net, &dir, "third", Model::L3));
    write_in(&net.pod, "ipv4/neigh/eth0/proxy_delay", "50");
    let Detached::Detached { left_alone, .. } = attached.detach() else {
        panic!("not detached");
    };
    assert_eq!(left_alone.len(), 1, "{left_alone:?}");
    assert_eq!(
        left_alone[0].object,
        "sysctl net.ipv4.neigh.eth0.proxy_delay"
    );
    assert!(
        left_alone[0]
            .reason
            .contains("is 50 now, not the 0 sandbox-net set (it was 80)"),
        "{left_alone:?}"
    );
    assert_eq!(sysctl_in(&net.pod, "ipv4/neigh/eth0/proxy_delay"), "50");
    write_in(&net.pod, "ipv4/neigh/eth0/proxy_delay", "80");
    assert_settles_to(&pod, &pristine, "after detach and the tenant's own undo");
}

/// Two attachments of one netns (eth0 and eth1, as two CNI ADDs make them) share the
/// netns-wide proxy_ndp: the second copies the first one's original; whichever detaches
/// first leaves it on for the other, whose IPv6 keeps working; the last one puts it back.
#[test]
fn two_attachments_of_one_netns_share_the_netns_wide_setting() {
    let _serial = serial();
    let (net, pod, dir, pristine) = setup(2);
    let original = sysctl_in(&net.pod, "ipv6/conf/all/proxy_ndp");
    let mut first = options(&net, &dir, "share-a", Model::L3);
    first.interfaces = Some(vec!["eth0".into()]);
    first.tap_names = vec!["tap_eth0".into()];
    let (_, a_guard) = attach(&first);
    let mut second = options(&net, &dir, "share-b", Model::L3);
    second.interfaces = Some(vec!["eth1".into()]);
    second.tap_names = vec!["tap_eth1".into()];
    let (b, b_guard) = attach(&second);
    let claim = |id: &str| -> Vec<Option<i32>> {
        load(&dir, id)
            .journal
            .iter()
            .filter_map(|e| match e {
                Entry::Sysctl {
                    knob: Knob::Ipv6ProxyNdp,
                    original,
                    ..
                } => Some(*original),
                _ => None,
            })
            .collect()
    };
    let want: Vec<Option<i32>> = vec![Some(original.parse().expect("integer"))];
    assert_eq!(claim("share-a"), want);
    assert_eq!(claim("share-b"), want, "copied from share-a");
    a_guard.detach();
    assert_eq!(
        sysctl_in(&net.pod, "ipv6/conf/all/proxy_ndp"),
        "1",
        "kept for share-b"
    );
    two_way(&net, &b, &b.endpoints[0]);
    b_guard.detach();
    assert_settles_to(&pod, &pristine, "after both detached");
}

/// On a kernel without per-device IPv6 `force_forwarding` (pretended), IPv6 routing is the
/// netns-wide `conf.all.forwarding`, journalled like proxy_ndp; traffic flows and detach
/// restores everything.
#[test]
fn without_force_forwarding_ipv6_forwarding_is_netns_wide() {
    let _serial = serial();
    let (net, pod, dir, pristine) = setup(1);
    l3::pretend_old_kernel_for_tests(true);
    let attached = sandbox_net::attach(&options(&net, &dir, "old", Model::L3));
    l3::pretend_old_kernel_for_tests(false);
    let a = attached.expect("attach");
    let guard = DetachOnDrop::new(dir.path(), "old");
    let journal = described(&load(&dir, "old"));
    assert!(
        journal.contains(&"sysctl net.ipv6.conf.all.forwarding".to_string()),
        "{journal:?}"
    );
    assert!(
        !journal.iter().any(|d| d.contains("force_forwarding")),
        "{journal:?}"
    );
    two_way(&net, &a, &a.endpoints[0]);
    guard.detach();
    assert_settles_to(&pod, &pristine, "after detach");
}

/// gc under l3: a tap whose state was lost is an orphan, removed with the routes through
/// it.
#[test]
fn gc_under_l3() {
    let _serial = serial();
    let net = scratch(1);
    let pod = net.pod_name.clone();
    let dir = TempStateDir::new();
    let (_, attached) = attach(&options(&net, &dir, "gc1", Model::L3));
    attached.disarm();
    std::fs::remove_file(dir.path().join("gc1.json")).expect("lose the state");
    let mut opts = sandbox_net::GcOptions::new(dir.path());
    opts.netns = vec![pod.clone()];
    let report = sandbox_net::gc(&opts).expect("gc");
    println!("{report:?}");
    assert_eq!(report.links.len(), 1, "{report:?}");
    assert_eq!(report.links[0].name, "tap0_sn");
    assert!(report.links[0].removed);
    assert!(our_links(&pod).is_empty());
    // The routes through the tap went with it.
    let routes = ip_json(&pod, &["route", "show", "table", "all"]).to_string();
    assert!(!routes.contains("tap0_sn"), "{routes}");
}

/// The CNI plugin with `"model": "l3"`: ADD routes CNI_IFNAME, CHECK passes, DEL restores.
#[test]
fn cni_with_model_l3() {
    let _serial = serial();
    let (_net, pod, dir, pristine) = setup(1);
    let mut conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "l3net",
        "type": "sandbox-net",
        "model": "l3",
        "stateDir": dir.path(),
        "prevResult": {
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": format!("/run/netns/{pod}")}],
            "ips": [{"address": "10.77.0.2/24", "interface": 0},
                    {"address": "fd77::2/64", "interface": 0}]
        }
    });
    let netns = format!("/run/netns/{pod}");
    let run = |command: &str, conf: &serde_json::Value| {
        let env = crate::cni::env(command, "ctr-l3", &netns);
        let out = crate::cni::plugin(&env, &conf.to_string());
        let text = format!("{}{}", out.stdout, out.stderr);
        assert_eq!(out.code, 0, "{command}: {text}");
        text
    };
    let added = run("ADD", &conf);
    assert!(added.contains("tap_eth0"), "{added}");
    // CHECK and DEL get ADD's result as prevResult, as libcni passes it.
    conf["prevResult"] = serde_json::from_str(&added).expect("ADD printed its result");
    let id = sandbox_net::cni::sandbox_id("ctr-l3", "eth0");
    let st = sandbox_net::status(dir.path(), &id)
        .expect("status")
        .expect("attached");
    assert_eq!(st.model, Model::L3);
    assert!(!st.drift, "{st:?}");
    run("CHECK", &conf);
    run("DEL", &conf);
    assert_settles_to(&pod, &pristine, "after DEL");
}

/// SplitMix64, for the kill delays (the seed is printed).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n.max(1)
    }
}

/// The CLI attach (l3, two dual-stack veths) SIGKILLed at random moments: the next detach
/// exits 0 and the netns comes back to its snapshot, settings and proxy neighbours
/// included, with nothing left in the state directory.
#[test]
fn sigkill_during_an_l3_attach_then_detach_restores_the_netns() {
    let _serial = serial();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let net = scratch(2);
    let pod = net.pod_name.clone();
    let dir = TempStateDir::new();
    let state_dir = dir.path().display().to_string();
    let _cleanup = DetachOnDrop::new(dir.path(), "kill");
    let pristine = settled_snapshot(&pod);
    let attach_cmd = || {
        let mut cmd = Command::new(bin());
        cmd.args([
            "--state-dir",
            &state_dir,
            "attach",
            "--netns",
            &pod,
            "--id",
            "kill",
        ])
        .args(["--model", "l3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        cmd
    };
    // When the journal is on disk and when the CLI is done (the kernel changes are in
    // between): half the kills land anywhere, half from the journal write on.
    let state_file = dir.path().join("kill.json");
    let start = Instant::now();
    let mut child = attach_cmd().spawn().expect("calibration attach");
    let mut journal = None;
    let status = loop {
        if journal.is_none() && state_file.exists() {
            journal = Some(start.elapsed().as_micros() as u64);
        }
        if let Some(status) = child.try_wait().expect("poll") {
            break status;
        }
        std::thread::sleep(Duration::from_micros(50));
    };
    let took = start.elapsed().as_micros() as u64;
    let journal = journal.unwrap_or(0).min(took);
    assert!(status.success());
    let (code, out, err) = cli(&["--state-dir", &state_dir, "detach", "--id", "kill"]);
    assert_eq!(code, 0, "{out}{err}");
    let mut mid = 0;
    for trial in 0..32 {
        let from = if trial % 4 == 0 { 0 } else { journal };
        let delay = Duration::from_micros(from + rng.below(took - from + 1));
        let mut child = attach_cmd().spawn().expect("spawn attach");
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().expect("wait");
        let context = format!(
            "trial {trial}, kill after {} us ({status})",
            delay.as_micros()
        );
        let state = StateDir::open(dir.path())
            .expect("dir")
            .load("kill")
            .expect("load");
        if state.as_ref().is_some_and(|s| s.phase == Phase::Attaching) {
            mid += 1;
        }
        let (code, out, err) = cli(&["--state-dir", &state_dir, "detach", "--id", "kill"]);
        assert_eq!(code, 0, "{context}: {out}{err}");
        assert_settles_to(&pod, &pristine, &context);
        assert_eq!(listing(dir.path()), Vec::<String>::new(), "{context}");
    }
    println!("32 kills (journal on disk at {journal} us, CLI done at {took} us), {mid} mid-attach");
}

/// An IPv6 route through the endpoint with a pod address as its preferred source: the
/// undo takes the address off and puts it back (its local route is the kernel's own), and
/// gives the route its source back, which the kernel strips when the address goes.
#[test]
fn an_ipv6_route_keeps_its_preferred_source_across_attach_and_detach() {
    let _serial = serial();
    let net = scratch(1);
    let pod = net.pod_name.clone();
    let dir = TempStateDir::new();
    ip(
        &pod,
        &[
            "-6",
            "route",
            "add",
            "fd88::/64",
            "via",
            "fd77::1",
            "dev",
            "eth0",
            "src",
            "fd77::2",
        ],
    );
    let pristine = settled_snapshot(&pod);
    assert!(
        pristine
            .routes
            .iter()
            .any(|r| r.contains("fd88::") && r.contains("prefsrc")),
        "{:?}",
        pristine.routes
    );
    let (_, attached) = attach(&options(&net, &dir, "src", Model::L3));
    let journal = load(&dir, "src").journal;
    let sourced = journal.iter().find_map(|e| match e {
        Entry::RemovedLocalRoute { sourced, .. } if !sourced.is_empty() => Some(sourced.len()),
        _ => None,
    });
    assert_eq!(sourced, Some(1), "{journal:?}");
    attached.detach();
    assert_settles_to(&pod, &pristine, "after detach");
}

/// A pod with a secondary IPv4 address (its local route names the primary as preferred
/// source): detach puts that local route back after the primary's, which the kernel needs
/// (before, it refused it and the netns lost it). A secondary address added while
/// attached gets no local route from the kernel (the primary's is gone): watch routes it,
/// and detach gives it the local route the kernel would have.
#[test]
fn secondary_ipv4_addresses_keep_their_local_routes() {
    let _serial = serial();
    let net = scratch(1);
    let pod = net.pod_name.clone();
    let dir = TempStateDir::new();
    address(&pod, "add", "10.77.0.9/24", "eth0", false);
    let pristine = settled_snapshot(&pod);
    let (_, attached) = attach(&options(&net, &dir, "second", Model::L3));
    let journal = described(&load(&dir, "second"));
    assert!(
        journal.contains(&"local route of 10.77.0.9 on eth0".to_string()),
        "{journal:?}"
    );
    attached.detach();
    assert_settles_to(&pod, &pristine, "after detach");

    let (a, attached) = attach(&options(&net, &dir, "second", Model::L3));
    let mut watch = Watch::start(&dir, "second");
    address(&pod, "add", "10.77.0.10/24", "eth0", false);
    let new = ["10.77.0.10".parse().expect("ip")];
    watch.until("10.77.0.10 routed", Duration::from_secs(10), |e| {
        e["event"] == "guest-changed" && describes(e, "eth0", &new)
    });
    two_way_as(&net, &a.endpoints[0], "10.77.0.10", "fd77::2");
    assert_eq!(watch.terminate(), Some(0));
    attached.detach();
    let local = ip_json(&pod, &["route", "show", "table", "local", "10.77.0.10"]).to_string();
    assert!(
        local.contains("\"prefsrc\":\"10.77.0.2\""),
        "no local route for 10.77.0.10 as the kernel makes it: {local}"
    );
    address(&pod, "del", "10.77.0.10/24", "eth0", false);
    assert_settles_to(&pod, &pristine, "after detach and the tenant's delete");
}

/// The tenant plants a proxy neighbour entry for an address, then adds the address to an
/// attached l3 endpoint: following it fails at that step (the entry is the tenant's, never
/// shared), is rolled back (the netns and the journal as they were, the tenant's entry
/// untouched) and reported once, naming the object; the watch goes on.
#[test]
fn watch_does_not_share_a_tenants_proxy_entry_and_rolls_back() {
    let _serial = serial();
    let (net, pod, dir, pristine) = setup(1);
    let (_, attached) = attach(&options(&net, &dir, "planted", Model::L3));
    let journal_before = described(&load(&dir, "planted"));
    let mut watch = Watch::start(&dir, "planted");
    ip(
        &pod,
        &["-6", "neigh", "add", "proxy", "fd77::9", "dev", "eth0"],
    );
    address(&pod, "add", "fd77::9/64", "eth0", false);
    let (_, error) = watch.until("error", Duration::from_secs(10), |e| e["event"] == "error");
    let message = error["message"].as_str().unwrap_or_default().to_string();
    println!("{message}");
    assert!(
        message.contains("proxy neighbour fd77::9 on eth0")
            && message.contains("sandbox-net does not share it"),
        "{message}"
    );
    let expected = settled_snapshot(&pod);
    assert!(
        expected.proxies.iter().any(|p| p.contains("fd77::9")),
        "the tenant's entry is gone: {:?}",
        expected.proxies
    );
    assert!(
        expected
            .routes
            .iter()
            .any(|r| r.contains("\"local\"") && r.contains("fd77::9")),
        "{:?}",
        expected.routes
    );
    assert_eq!(described(&load(&dir, "planted")), journal_before);
    // Reported once: nothing more while the same addresses are to be followed.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(watch.terminate(), Some(0));
    let errors = watch
        .seen
        .iter()
        .filter(|(_, e)| e["event"] == "error")
        .count();
    assert_eq!(errors, 1, "{:?}", watch.seen);
    assert_settles_to(&pod, &expected, "after the watch");
    address(&pod, "del", "fd77::9/64", "eth0", false);
    ip(
        &pod,
        &["-6", "neigh", "del", "proxy", "fd77::9", "dev", "eth0"],
    );
    attached.detach();
    assert_settles_to(&pod, &pristine, "after detach");
}
