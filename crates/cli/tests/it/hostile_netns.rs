//! Issue 13, cases 1, 2, 4 and 6: nothing is done to what is not provably ours.
//!
//! - A netns deleted and re-created under the same name, with the old device and inode
//!   (the kernel reuses them) and a tenant's eth1 at the old tap's ifindex, is not the old
//!   one: detach, gc, hotplug, set-rate, status, watch, exec and vmm-args refuse it or
//!   report it gone, and nothing in it changes (its cookie differs).
//! - Within one netns, a device at a journalled ifindex that is not ours any more (another
//!   kind, another alias, another name) is left alone by detach and named, in detach's
//!   result and in status.
//! - A VFIO binding is undone (the driver restored) by detach, gc and CNI DEL when the
//!   netns is gone.
//! - A FIFO, a device node or a socket given as the netns is refused at once, without
//!   being opened.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::MutexGuard;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::common::*;
use sandbox_net::cni::record::{RECORD_VERSION, Record, Records};
use sandbox_net::endpoint::EndpointKind;
use sandbox_net::journal::Entry;
use sandbox_net::netlink::Netlink;
use sandbox_net::netns::{NetNs, NsId};
use sandbox_net::ops::RateChange;
use sandbox_net::sandbox::{Access, Sandbox};
use sandbox_net::state::{self, Phase, Settings, State, StateDir};
use sandbox_net::vmm::{self, Vmm};
use sandbox_net::{AttachOptions, Detached, GcOptions, Model, WatchOptions};
use sandbox_net::{Backend, Endpoint, MacAddr};
use sandbox_net_testkit::fake_sysfs::{ADDR, DEV, FakeSysfs};
use sandbox_net_testkit::scratch::{ScratchNet, unique_name};
use serde_json::Value;

/// A netns made with `ip netns add`, deleted on drop.
struct Named(DeleteOnDrop);

impl Named {
    fn add(name: &str) -> Named {
        run("ip", &["netns", "add", name]);
        Named(DeleteOnDrop(name.to_string()))
    }
    fn name(&self) -> &str {
        &self.0.0
    }
    fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", self.name()];
        full.extend_from_slice(args);
        run("ip", &full);
    }
    fn tc(&self, args: &[&str]) {
        let mut full = vec!["-n", self.name()];
        full.extend_from_slice(args);
        run("tc", &full);
    }
}

/// A tenant's ingress filter on `dev` at sandbox-net's priority (1), redirecting to `to`
/// (this kernel has u32 and mirred, not matchall or gact).
fn tenant_filter<'a>(dev: &'a str, to: &'a str) -> Vec<&'a str> {
    vec![
        "filter", "add", "dev", dev, "ingress", "prio", "1", "u32", "match", "u32", "0", "0",
        "action", "mirred", "egress", "redirect", "dev", to,
    ]
}

fn ns_id(name: &str) -> NsId {
    let meta = std::fs::metadata(Path::new("/run/netns").join(name)).expect("stat netns");
    NsId {
        dev: meta.dev(),
        ino: meta.ino(),
    }
}

fn load(dir: &Path, id: &str) -> State {
    StateDir::open(dir)
        .and_then(|s| s.load(id))
        .expect("load state")
        .expect("a state")
}

/// The sandbox as every operation opens it (read only), whatever became of its netns.
fn open(dir: &Path, id: &str) -> Sandbox {
    Sandbox::open(dir, id, Access::Read).expect("open the sandbox")
}

/// The ifindex of the (first) tap a state journals.
fn tap_ifindex(state: &State) -> u32 {
    state
        .journal
        .iter()
        .find_map(|e| match e {
            Entry::Tap { ifindex, .. } => *ifindex,
            _ => None,
        })
        .expect("a tap with its ifindex")
}

fn dir_arg(dir: &TempStateDir) -> String {
    dir.path().display().to_string()
}

/// Run the CLI with a deadline: a command that hangs is killed and the test fails.
fn cli_within(args: &[&str], limit: Duration) -> (i32, String, String) {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sandbox-net");
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sandbox-net {args:?} did not return within {limit:?} (blocked)");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---- case 1: a netns re-created under the same name, with the same device and inode ----

/// The sandbox attached in a netns that was then deleted and re-created under its name by
/// a tenant with eth0 at the old eth0's ifindex, eth1 at the old tap's, an ingress qdisc
/// and a filter on eth0. Holds the serial lock; detaches on drop.
struct Replaced {
    /// First, so that it detaches before the state directory goes.
    _detach: DetachOnDrop,
    dir: TempStateDir,
    id: &'static str,
    ns: Named,
    path: String,
    tap_index: u32,
    /// The new netns as made, before any operation on the sandbox.
    before: NetnsSnapshot,
    _serial: MutexGuard<'static, ()>,
}

fn replaced_netns(id: &'static str) -> Replaced {
    let serial = serial();
    let dir = TempStateDir::new();
    let name = unique_name("snt-hn");
    let ns = Named::add(&name);
    ns.ip(&["link", "set", "lo", "up"]);
    ns.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "p0"]);
    ns.ip(&["addr", "add", "10.88.0.2/24", "dev", "eth0"]);
    ns.ip(&["link", "set", "eth0", "up"]);
    ns.ip(&["link", "set", "p0", "up"]);
    let mut opts = AttachOptions::new(name.clone(), id);
    opts.state_dir = dir.path().to_path_buf();
    sandbox_net::attach(&opts).expect("attach");
    let state = load(dir.path(), id);
    let old = state.netns_id;
    let cookie = state.netns_cookie.expect("attach records the netns cookie");
    let eth0_index = state.endpoints[0].ifindex;
    let tap_index = tap_ifindex(&state);
    println!(
        "attached in {name}: device {} inode {} cookie {cookie}; eth0 {eth0_index}, tap {tap_index}",
        old.dev, old.ino
    );

    // The pod goes; a new one comes under the same name. The kernel frees the old
    // namespace's inode asynchronously and hands it to the next namespace made.
    run("ip", &["netns", "del", &name]);
    let mut same = false;
    for attempt in 0..100 {
        run("ip", &["netns", "add", &name]);
        if ns_id(&name) == old {
            println!("attempt {attempt}: the new {name} has the old device and inode");
            same = true;
            break;
        }
        run("ip", &["netns", "del", &name]);
        std::thread::sleep(Duration::from_millis(20));
    }
    if !same {
        // The kernel gave it another inode this time (another namespace took the old one):
        // make the state say what the kernel would have, the new device and inode.
        run("ip", &["netns", "add", &name]);
        let mut state = load(dir.path(), id);
        state.netns_id = ns_id(&name);
        StateDir::open(dir.path())
            .and_then(|s| s.save(&state))
            .expect("save");
        println!(
            "the kernel did not reuse the inode within 100 tries: the state now records the new one (same-inode case)"
        );
    }
    let (t, e) = (tap_index.to_string(), eth0_index.to_string());
    ns.ip(&["link", "set", "lo", "up"]);
    ns.ip(&[
        "link", "add", "eth1", "index", &t, "type", "veth", "peer", "name", "p1", "index", "900",
    ]);
    ns.ip(&[
        "link", "add", "eth0", "index", &e, "type", "veth", "peer", "name", "p0", "index", "901",
    ]);
    for dev in ["eth0", "eth1", "p0", "p1"] {
        ns.ip(&["link", "set", dev, "up"]);
    }
    ns.tc(&["qdisc", "add", "dev", "eth0", "ingress"]);
    ns.tc(&tenant_filter("eth0", "p0"));
    let new_cookie = NetNs::open_path(&name, &Path::new("/run/netns").join(&name))
        .and_then(|n| Netlink::open_in(&n))
        .and_then(|nl| {
            nl.netns_cookie()
                .map_err(|e| sandbox_net::Error::kernel("netns", "cookie", e))
        })
        .expect("the new netns's cookie");
    assert_eq!(
        ns_id(&name),
        load(dir.path(), id).netns_id,
        "same device and inode"
    );
    assert_ne!(new_cookie, cookie, "a new namespace has a new cookie");
    settle(&name);
    Replaced {
        _detach: DetachOnDrop::new(dir.path(), id),
        path: format!("/run/netns/{name}"),
        before: snapshot(&name),
        dir,
        id,
        ns,
        tap_index,
        _serial: serial,
    }
}

/// The error of a refused operation names the sandbox and the netns, and says why.
fn assert_refusal(what: &str, message: &str, r: &Replaced) {
    println!("{what}: {message}");
    assert!(
        message.contains(r.id)
            && message.contains(&r.path)
            && message.contains("another namespace"),
        "{what}: {message}"
    );
}

#[test]
fn a_recreated_netns_with_the_old_inode_is_refused_by_the_cli_and_detach_touches_nothing() {
    let r = replaced_netns("hn-cli");
    let (name, before) = (r.ns.name(), &r.before);
    let d = dir_arg(&r.dir);
    let base = ["--state-dir", d.as_str()];
    let with =
        |rest: &[&str]| -> Vec<String> { base.iter().chain(rest).map(|s| s.to_string()).collect() };
    let run_cli = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&args)
    };

    let (code, out, err) = run_cli(with(&["status", "--id", r.id, "--json"]));
    // Drift is exit 1 (issue #17: 0 means healthy).
    assert_eq!(code, 1, "status: {out} {err}");
    let st: Value = serde_json::from_str(&out).expect("status JSON");
    assert_eq!(st["drift"], true, "{st}");
    assert_refusal("status", st["problem"].as_str().unwrap_or_default(), &r);
    assert!(
        st.get("objects").is_none(),
        "nothing in the new netns is reported: {st}"
    );

    for (what, args) in [
        (
            "add-endpoint",
            with(&["add-endpoint", "--id", r.id, "--iface", "eth1"]),
        ),
        (
            "remove-endpoint",
            with(&["remove-endpoint", "--id", r.id, "--iface", "eth0"]),
        ),
        (
            "set-rate",
            with(&["set-rate", "--id", r.id, "--rx", "10mbit"]),
        ),
        (
            "vmm-args",
            with(&["vmm-args", "--id", r.id, "--vmm", "qemu"]),
        ),
        (
            "exec",
            with(&["exec", "--id", r.id, "--vmm", "qemu", "--", "/bin/true"]),
        ),
        ("guest-config", with(&["guest-config", "--id", r.id])),
        (
            "guest-config kernel-ip",
            with(&["guest-config", "--id", r.id, "--format", "kernel-ip"]),
        ),
    ] {
        let (code, out, err) = run_cli(args);
        assert_eq!(code, 2, "{what}: stdout {out} stderr {err}");
        assert_refusal(what, &err, &r);
    }
    assert_eq!(
        snapshot(name),
        *before,
        "a refused operation changed the new netns"
    );

    let (code, out, err) = run_cli(with(&["detach", "--id", r.id, "--json"]));
    assert_eq!(code, 0, "detach: {out} {err}");
    let v: Value = serde_json::from_str(&out).expect("detach JSON");
    println!("detach: {v}");
    assert_eq!(v["outcome"], "netns-gone", "{v}");
    assert_eq!(v["replaced"], true, "{v}");
    assert_eq!(v["netns"], r.path.as_str(), "{v}");
    assert_eq!(snapshot(name), *before, "detach changed the new netns");
    let eth1 = ip_json(name, &["link", "show", "eth1"]);
    assert_eq!(
        eth1[0]["ifindex"], r.tap_index,
        "eth1 kept the old tap's ifindex"
    );
    assert!(
        !r.dir.path().join(format!("{}.json", r.id)).exists(),
        "state kept"
    );
}

#[test]
fn a_recreated_netns_with_the_old_inode_is_refused_by_the_library_and_gc_touches_nothing() {
    let r = replaced_netns("hn-lib");
    let (name, before) = (r.ns.name(), &r.before);
    let dir = r.dir.path();
    let err = |what: &str, e: sandbox_net::Error| {
        assert_eq!(e.exit_code(), 2, "{what}: {e}");
        assert_refusal(what, &e.to_string(), &r);
    };

    let st = sandbox_net::status(dir, r.id)
        .expect("status")
        .expect("recorded");
    assert!(st.drift && st.objects.is_none(), "{st:?}");
    assert_refusal("status", st.problem.as_deref().unwrap_or_default(), &r);
    err(
        "add_endpoint",
        sandbox_net::add_endpoint(dir, r.id, "eth1").expect_err("add_endpoint"),
    );
    err(
        "remove_endpoint",
        sandbox_net::remove_endpoint(dir, r.id, "eth0").expect_err("remove_endpoint"),
    );
    let rate = RateChange::Set("10mbit".parse().expect("rate"));
    err(
        "set_rate",
        sandbox_net::set_rate(dir, r.id, None, Some(rate), None).expect_err("set_rate"),
    );
    // vmm-args and exec open the sandbox through open_attached.
    err(
        "open_attached (vmm-args)",
        vmm::open_attached(dir, r.id).expect_err("open_attached"),
    );
    err(
        "guest_config",
        sandbox_net::guest_config(dir, r.id).expect_err("guest_config"),
    );
    err(
        "prepare_exec",
        vmm::prepare_exec(&mut open(dir, r.id), Vmm::Qemu, false).expect_err("prepare_exec"),
    );
    let stop = AtomicBool::new(false);
    let watched = sandbox_net::watch(&WatchOptions::new(dir, r.id), &stop, |_| {});
    let e = watched.expect_err("watch");
    assert!(e.to_string().contains("another namespace"), "{e}");
    assert_eq!(
        snapshot(name),
        *before,
        "a refused operation changed the new netns"
    );

    // gc, also scanning the new netns for orphans: the state is stale, nothing is removed.
    let mut opts = GcOptions::new(dir);
    opts.netns = vec![name.to_string()];
    let report = sandbox_net::gc(&opts).expect("gc");
    println!("{report}");
    assert!(report.links.is_empty(), "{report:?}");
    assert_eq!(report.states.len(), 1, "{report:?}");
    assert!(report.states[0].removed, "{report:?}");
    assert_refusal("gc", &format!("{} {}", r.id, report.states[0].reason), &r);
    assert_eq!(snapshot(name), *before, "gc changed the new netns");
    assert!(!dir.join(format!("{}.json", r.id)).exists(), "state kept");
}

/// A state written before cookies were recorded, in a netns re-created with the same
/// device and inode: the ownership checks still keep detach off the tenant's eth1 (at the
/// old tap's ifindex, but a veth without our alias). (What such a state can't tell apart
/// is an endpoint re-created with the old ifindex, name and kind: the new eth0's ingress
/// qdisc and the filter at sandbox-net's priority go. Only the cookie tells those apart.)
#[test]
fn a_state_without_a_cookie_still_leaves_a_foreign_device_at_the_tap_ifindex_alone() {
    let r = replaced_netns("hn-nocookie");
    let name = r.ns.name();
    let mut state = load(r.dir.path(), r.id);
    state.netns_cookie = None;
    StateDir::open(r.dir.path())
        .and_then(|s| s.save(&state))
        .expect("save");
    assert!(
        !std::fs::read_to_string(r.dir.path().join(format!("{}.json", r.id)))
            .expect("read")
            .contains("netns_cookie")
    );
    let d = sandbox_net::detach(r.dir.path(), r.id).expect("detach");
    println!("{d}");
    let Detached::Detached { left_alone, .. } = &d else {
        panic!("{d:?}");
    };
    let tap = left_alone
        .iter()
        .find(|l| l.object.starts_with("tap "))
        .unwrap_or_else(|| panic!("the tap is reported as left alone: {d:?}"));
    assert!(
        tap.reason.contains("eth1") && tap.reason.contains("veth"),
        "{tap:?}"
    );
    let eth1 = ip_json(name, &["link", "show", "eth1"]);
    assert_eq!(eth1[0]["ifindex"], r.tap_index, "eth1 is still there");
}

// ---- case 2: an ifindex reused within one netns ----

#[test]
fn devices_at_journalled_ifindexes_that_are_not_ours_are_left_alone_and_named() {
    let net = scratch(2);
    let pod = net.pod_name.clone();
    let dir = TempStateDir::new();
    let id = "hn-reuse";
    let _cleanup = DetachOnDrop::new(dir.path(), id);
    let mut opts = AttachOptions::new(pod.clone(), id);
    opts.state_dir = dir.path().to_path_buf();
    opts.interfaces = Some(vec!["eth0".into()]);
    sandbox_net::attach(&opts).expect("attach");
    let state = load(dir.path(), id);
    let eth0 = state.endpoints[0].ifindex.to_string();
    let tap = state.endpoints[0].device().unwrap_or_default().to_string();
    let tap_index = tap_ifindex(&state).to_string();
    let ip = |args: &[&str]| {
        let mut full = vec!["-n", pod.as_str()];
        full.extend_from_slice(args);
        run("ip", &full);
    };
    let tc = |args: &[&str]| {
        let mut full = vec!["-n", pod.as_str()];
        full.extend_from_slice(args);
        run("tc", &full);
    };
    // The tenant deletes our tap and takes its ifindex with a veth of its own, aliased as
    // its own, with its own ingress qdisc and filter.
    ip(&["link", "del", &tap]);
    ip(&[
        "link", "add", "tenant0", "index", &tap_index, "type", "veth", "peer", "name", "tenant0p",
    ]);
    ip(&["link", "set", "tenant0", "alias", "tenant-owned"]);
    // It replaces eth0 by a macvlan of the same name at the same ifindex, with an ingress
    // qdisc and filter of its own.
    ip(&["link", "del", "eth0"]);
    ip(&[
        "link", "add", "eth0", "index", &eth0, "link", "eth1", "type", "macvlan", "mode", "bridge",
    ]);
    for (dev, to) in [
        ("tenant0", "tenant0p"),
        ("tenant0p", "tenant0"),
        ("eth0", "eth1"),
    ] {
        ip(&["link", "set", dev, "up"]);
        tc(&["qdisc", "add", "dev", dev, "ingress"]);
        tc(&tenant_filter(dev, to));
    }
    settle(&pod);
    let before = snapshot(&pod);

    let st = sandbox_net::status(dir.path(), id)
        .expect("status")
        .expect("recorded");
    println!(
        "status: {}",
        serde_json::to_string_pretty(&st).unwrap_or_default()
    );
    assert!(st.drift, "{st:?}");
    let objects = st.objects.clone().expect("objects checked");
    let not_ours: Vec<&str> = objects
        .iter()
        .filter(|o| o.not_ours.is_some())
        .map(|o| o.object.as_str())
        .collect();
    for expected in [
        format!("tap {tap}"),
        format!("ingress qdisc on {tap}"),
        "ingress qdisc on eth0".to_string(),
        format!("redirect filter eth0 -> {tap}"),
    ] {
        assert!(
            not_ours.contains(&expected.as_str()),
            "{expected} not reported: {not_ours:?}"
        );
    }
    assert!(
        objects.iter().all(|o| !o.present),
        "a foreign object reported as ours: {objects:?}"
    );
    let problem = st.problem.clone().unwrap_or_default();
    assert!(problem.contains(&format!("tap {tap}")), "{problem}");

    let (code, out, err) = cli(&[
        "--state-dir",
        &dir_arg(&dir),
        "detach",
        "--id",
        id,
        "--json",
    ]);
    assert_eq!(code, 0, "detach: {out} {err}");
    let v: Value = serde_json::from_str(&out).expect("detach JSON");
    println!("detach: {v}");
    assert_eq!(v["outcome"], "detached", "{v}");
    let left: Vec<(String, String)> = v["left_alone"]
        .as_array()
        .expect("left_alone listed")
        .iter()
        .map(|l| {
            (
                l["object"].as_str().unwrap_or_default().to_string(),
                l["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let reason_of = |object: &str| {
        left.iter()
            .find(|(o, _)| o == object)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("{object} not left alone: {left:?}"))
    };
    let r = reason_of(&format!("tap {tap}"));
    assert!(
        r.contains("tenant0") && r.contains("veth") && r.contains("tenant-owned"),
        "{r}"
    );
    let r = reason_of("ingress qdisc on eth0");
    assert!(r.contains("eth0") && r.contains("macvlan"), "{r}");
    reason_of(&format!("redirect filter eth0 -> {tap}"));
    reason_of(&format!("ingress qdisc on {tap}"));
    assert_eq!(
        snapshot(&pod),
        before,
        "detach changed the tenant's objects"
    );
    assert!(
        !dir.path().join(format!("{id}.json")).exists(),
        "state kept"
    );
    drop(net);
}

#[test]
fn set_rate_does_not_change_a_limit_on_a_device_that_took_the_taps_ifindex() {
    let net = scratch(1);
    let pod = net.pod_name.clone();
    let dir = TempStateDir::new();
    let id = "hn-rate";
    let _cleanup = DetachOnDrop::new(dir.path(), id);
    let mut opts = AttachOptions::new(pod.clone(), id);
    opts.state_dir = dir.path().to_path_buf();
    opts.rx_rate = Some("10mbit".parse().expect("rate"));
    sandbox_net::attach(&opts).expect("attach with an rx limit");
    let state = load(dir.path(), id);
    let tap = state.endpoints[0].device().unwrap_or_default().to_string();
    let tap_index = tap_ifindex(&state).to_string();
    // The tenant deletes our tap and puts a veth of its own at its ifindex, under the
    // tap's name, with an HTB limit of its own where ours was.
    let ip = |args: &[&str]| {
        let mut full = vec!["-n", pod.as_str()];
        full.extend_from_slice(args);
        run("ip", &full);
    };
    let tc = |args: &[&str]| {
        let mut full = vec!["-n", pod.as_str()];
        full.extend_from_slice(args);
        run("tc", &full);
    };
    ip(&["link", "del", &tap]);
    ip(&[
        "link", "add", &tap, "index", &tap_index, "type", "veth", "peer", "name", "tenant0p",
    ]);
    tc(&[
        "qdisc", "add", "dev", &tap, "root", "handle", "1:", "htb", "default", "1",
    ]);
    tc(&[
        "class", "add", "dev", &tap, "parent", "1:", "classid", "1:1", "htb", "rate", "5mbit",
    ]);
    settle(&pod);
    let before = snapshot(&pod);
    // (iproute2 here prints classes as text even with -j.)
    let classes = || run("tc", &["-n", &pod, "-s", "class", "show", "dev", &tap]);
    let classes_before = classes();

    let (code, out, err) = cli(&[
        "--state-dir",
        &dir_arg(&dir),
        "set-rate",
        "--id",
        id,
        "--rx",
        "20mbit",
    ]);
    println!("set-rate -> {code}: {out}{err}");
    assert_eq!(
        code, 2,
        "set-rate changed a foreign device's limit: {out}{err}"
    );
    assert!(
        err.contains(&format!("ifindex {tap_index}")) && err.contains("veth"),
        "the refusal does not name what is there: {err}"
    );
    assert_eq!(
        classes().lines().next(),
        classes_before.lines().next(),
        "the tenant's HTB class changed"
    );
    assert_eq!(snapshot(&pod), before, "set-rate changed the pod");
    drop(net);
}

// ---- case 4: a VFIO binding outlives the netns ----

/// A state for a NIC bound to vfio-pci (against a fake sysfs: no spare NIC here) in a
/// scratch netns, the fake sysfs showing it bound, as an attach leaves them; then the
/// netns is deleted.
struct VfioNetnsGone {
    /// The fake sysfs is this process's sysfs root while the test runs.
    _serial: MutexGuard<'static, ()>,
    fake: FakeSysfs,
    dir: TempStateDir,
    /// The path of the netns that was deleted.
    netns: String,
}

fn vfio_netns_gone(id: &str) -> VfioNetnsGone {
    let serial = serial();
    let fake = FakeSysfs::new().expect("fake sysfs");
    sandbox_net::physical::set_sysfs_root(fake.root());
    let dir = TempStateDir::new();
    let net = ScratchNet::new("snt").expect("scratch");
    let nl = Netlink::open_in(&net.pod).expect("netlink");
    let cookie = nl.netns_cookie().expect("cookie");
    let entry = Entry::VfioBind {
        device: "eth5".into(),
        pci_address: ADDR.into(),
        original_driver: Some("ixgbe".into()),
        sysfs_root: fake.root().to_path_buf(),
    };
    let state = State {
        detached_by_user: Vec::new(),
        version: state::STATE_VERSION,
        id: id.into(),
        netns: net.pod_name.clone(),
        netns_path: net.pod.path().to_path_buf(),
        netns_id: net.pod.id(),
        netns_cookie: Some(cookie),
        model: Model::Tcfilter,
        settings: Settings {
            sysfs_root: fake.root().to_path_buf(),
            ..Settings::default()
        },
        phase: Phase::Attached,
        endpoints: vec![Endpoint {
            name: "eth5".into(),
            kind: EndpointKind::Physical,
            ifindex: 7,
            mac: "90:e2:ba:00:00:07".parse::<MacAddr>().ok(),
            mtu: 1500,
            queues: 1,
            backend: Backend::Vfio {
                pci_address: ADDR.into(),
                group: PathBuf::from("/dev/vfio/17"),
            },
            ifb: None,
        }],
        guest: None,
        journal: vec![entry],
        dns: Vec::new(),
    };
    StateDir::open(dir.path())
        .and_then(|s| s.save(&state))
        .expect("save state");
    fake.kernel_binds("vfio-pci").expect("fake sysfs");
    fake.file(&format!("{DEV}/driver_override"), "vfio-pci")
        .expect("fake sysfs");
    let netns = net.pod.path().display().to_string();
    drop(nl);
    drop(net);
    assert!(!Path::new(&netns).exists());
    VfioNetnsGone {
        _serial: serial,
        fake,
        dir,
        netns,
    }
}

impl Drop for VfioNetnsGone {
    fn drop(&mut self) {
        sandbox_net::physical::set_sysfs_root(sandbox_net::physical::DEFAULT_SYSFS_ROOT);
    }
}

/// What undoing the planted binding reports.
fn restored() -> Vec<String> {
    vec![format!("vfio-pci binding of eth5 ({ADDR})")]
}

/// The driver was given back: unbound from vfio-pci, override cleared, ixgbe bound.
fn assert_restored(fake: &FakeSysfs) {
    assert_eq!(
        fake.read("bus/pci/drivers/vfio-pci/unbind").expect("read"),
        ADDR
    );
    assert_eq!(fake.override_value().expect("read"), "\n");
    assert_eq!(fake.read("bus/pci/drivers/ixgbe/bind").expect("read"), ADDR);
}

#[test]
fn detach_restores_the_driver_of_a_vfio_nic_whose_netns_is_gone() {
    let v = vfio_netns_gone("hn-vfio-detach");
    let d = sandbox_net::detach(v.dir.path(), "hn-vfio-detach").expect("detach");
    println!("{d}");
    assert_eq!(
        d,
        Detached::NetnsGone {
            id: "hn-vfio-detach".into(),
            netns: v.netns.clone(),
            replaced: false,
            restored: restored(),
        }
    );
    assert_restored(&v.fake);
}

#[test]
fn gc_restores_the_driver_of_a_vfio_nic_whose_netns_is_gone() {
    let v = vfio_netns_gone("hn-vfio-gc");
    let report = sandbox_net::gc(&GcOptions::new(v.dir.path())).expect("gc");
    println!("{report}");
    assert_eq!(report.states.len(), 1, "{report:?}");
    assert!(report.states[0].removed, "{report:?}");
    assert_eq!(report.states[0].restored, restored(), "{report:?}");
    assert!(report.problems.is_empty(), "{report:?}");
    assert_restored(&v.fake);
}

#[test]
fn cni_del_restores_the_driver_of_a_vfio_nic_whose_netns_is_gone() {
    let id = sandbox_net::cni::sandbox_id("ctr-vfio", "eth5");
    let v = vfio_netns_gone(&id);
    Records::open(v.dir.path())
        .and_then(|r| {
            r.save(
                &id,
                &Record {
                    version: RECORD_VERSION,
                    network: "vfionet".into(),
                    container_id: "ctr-vfio".into(),
                    ifname: "eth5".into(),
                    netns: v.netns.clone(),
                },
            )
        })
        .expect("save CNI record");
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": "vfionet", "type": "sandbox-net", "stateDir": v.dir.path()
    })
    .to_string();
    let sysfs_root = v.fake.root().display().to_string();
    let env = [
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "ctr-vfio"),
        ("CNI_IFNAME", "eth5"),
        ("CNI_NETNS", v.netns.as_str()),
        (sandbox_net::physical::SYSFS_ROOT_ENV, sysfs_root.as_str()),
    ];
    let out = crate::cni::plugin(&env, &conf);
    assert_eq!(out.code, 0, "DEL: {} {}", out.stdout, out.stderr);
    assert_restored(&v.fake);
    assert!(
        !v.dir.path().join(format!("{id}.json")).exists(),
        "state kept"
    );
}

// ---- case 6: what is not a namespace is never opened ----

/// An inotify instance watching `paths` for opens (an `O_PATH` open is not one).
fn watch_opens(paths: &[&Path]) -> OwnedFd {
    // SAFETY: inotify_init1 takes flags only; the fd it returns is ours.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    assert!(
        fd >= 0,
        "inotify_init1: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh fd nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    for p in paths {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid fd and a NUL-terminated path that outlives the call.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), libc::IN_OPEN) };
        assert!(
            wd >= 0,
            "inotify_add_watch {}: {}",
            p.display(),
            std::io::Error::last_os_error()
        );
    }
    fd
}

/// How many bytes of events the watch holds (0: nothing was opened).
fn pending_events(fd: &OwnedFd) -> usize {
    let mut buf = [0u8; 4096];
    // SAFETY: reads into a buffer we own, at most its length.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        assert_eq!(e.raw_os_error(), Some(libc::EAGAIN), "read inotify: {e}");
        return 0;
    }
    n as usize
}

#[test]
fn a_fifo_a_device_node_or_a_socket_as_netns_is_refused_at_once_without_being_opened() {
    let tmp = TempDir::new("snt-notns");
    let fifo = tmp.join("fifo");
    let device = tmp.join("null");
    let socket = tmp.join("sock");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    // /dev/null's numbers, 1:3.
    nix::sys::stat::mknod(
        &device,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        nix::sys::stat::makedev(1, 3),
    )
    .expect("mknod");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind socket");
    listener.set_nonblocking(true).expect("nonblocking");
    let opens = watch_opens(&[&fifo, &device]);
    let state = TempStateDir::new();
    let d = dir_arg(&state);
    for path in [&fifo, &device, &socket] {
        let p = path.display().to_string();
        let t0 = Instant::now();
        let (code, out, err) = cli_within(
            &[
                "--state-dir",
                &d,
                "attach",
                "--netns",
                &p,
                "--id",
                "hn-notns",
            ],
            Duration::from_secs(10),
        );
        println!(
            "attach --netns {p}: exit {code} in {:?}: {}",
            t0.elapsed(),
            err.trim()
        );
        assert_eq!(code, 2, "attach --netns {p}: stdout {out} stderr {err}");
        assert!(
            err.contains(&p) && err.contains("not a namespace file"),
            "{err}"
        );
        let (code, out, err) = cli_within(
            &["--state-dir", &d, "gc", "--netns", &p],
            Duration::from_secs(10),
        );
        assert_eq!(code, 2, "gc --netns {p}: stdout {out} stderr {err}");
        assert!(err.contains(&p), "{err}");
        // The library, in this process.
        let e = NetNs::open(&p, false).expect_err("refused");
        assert!(e.to_string().contains("not a namespace file"), "{e}");
    }
    assert_eq!(
        pending_events(&opens),
        0,
        "the FIFO or the device node was opened"
    );
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "something connected to the socket"
    );
    assert!(
        !state.path().exists(),
        "a refused attach created the state directory"
    );
    // The caller's own netns is still refused.
    let (code, _, err) = cli_within(
        &[
            "--state-dir",
            &d,
            "attach",
            "--netns",
            "/proc/self/ns/net",
            "--id",
            "hn-own",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("caller's own network namespace"), "{err}");
}
