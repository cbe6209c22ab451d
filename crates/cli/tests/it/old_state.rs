//! State files written by the release before the typed endpoints (`fixtures/state-0.1.0`,
//! see its README): this build reads every one of them, writes the same bytes back, and
//! detaches each against a real netns. The netns is rebuilt as the fixture's topology was
//! (`topology.sh`), the fixture's journal is re-applied there (its objects are made again,
//! at new ifindexes), the file is given the new netns's identity and ifindexes (nothing
//! else of it changes; JSON objects do not order their keys, and the file is re-encoded
//! with them sorted) and `sandbox-net detach` must then leave the netns exactly as it was
//! before the journal was applied.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::common::*;
use sandbox_net::Backend;
use sandbox_net::journal::{self, Entry};
use sandbox_net::netlink::Netlink;
use sandbox_net::physical::VFIO_DRIVER;
use sandbox_net::state::{StateDir, parse_state};
use sandbox_net_testkit::fake_sysfs::FakeSysfs;
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/fixtures/state-0.1.0");
const NETNS_FIXTURES: [&str; 5] = [
    "fx-tcfilter",
    "fx-macvtap",
    "fx-handover",
    "fx-none",
    "fx-l3",
];

fn fixture(id: &str) -> String {
    let path = Path::new(FIXTURES).join(format!("{id}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// What each fixture's endpoints are: (name, backend kind, device, IFB).
fn expected_backends(id: &str) -> Vec<(&'static str, &'static str, Option<&'static str>, bool)> {
    match id {
        "fx-tcfilter" => vec![
            ("eth0", "tap", Some("tap0_sn"), false),
            ("eth1", "vhost-user", None, false),
        ],
        "fx-macvtap" => vec![("eth0", "macvtap", Some("mvtap0_sn"), true)],
        "fx-handover" => vec![
            ("eth0", "tap", Some("tap0_sn"), false),
            ("mvt9", "macvtap", Some("mvt9"), false),
            ("vmtap0", "tap", Some("vmtap0"), false),
        ],
        "fx-none" => vec![("eth0", "none", None, false)],
        "fx-l3" => vec![
            ("eth0", "tap", Some("tap0_sn"), false),
            ("eth1", "tap", Some("tap1_sn"), false),
        ],
        "fx-static" => vec![
            ("eth0", "tap", Some("tap-vm0"), false),
            ("eth1", "vhost-user", None, false),
            ("eth2", "vfio", None, false),
        ],
        other => panic!("no fixture {other}"),
    }
}

#[test]
fn every_old_state_loads_and_is_written_back_byte_for_byte() {
    for id in NETNS_FIXTURES.iter().chain(&["fx-static"]) {
        let text = fixture(id);
        let state = parse_state(Path::new(id), &text).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(state.id, *id);
        let backends: Vec<_> = state
            .endpoints
            .iter()
            .map(|e| {
                let kind = match &e.backend {
                    Backend::Tap { .. } => "tap",
                    Backend::Macvtap { chardev, .. } => {
                        assert!(chardev.is_some(), "{id}: {e:?}");
                        "macvtap"
                    }
                    Backend::Vfio { .. } => "vfio",
                    Backend::VhostUser { .. } => "vhost-user",
                    Backend::None => "none",
                };
                (e.name.as_str(), kind, e.device(), e.ifb.is_some())
            })
            .collect();
        assert_eq!(backends, expected_backends(id), "{id}");
        // Every MAC read as one (an empty one only where a static device gave none).
        let macs = state.endpoints.iter().filter(|e| e.mac.is_some()).count();
        let without = usize::from(*id == "fx-static");
        assert_eq!(macs + without, state.endpoints.len(), "{id}");
        let again = serde_json::to_string_pretty(&state).expect("encode");
        assert_eq!(again, text, "{id}: written back differently");
    }
}

/// `ip -n NS WORDS...`.
fn ip_words(ns: &str, words: &str) {
    ip(ns, &words.split_whitespace().collect::<Vec<_>>());
}

/// Build a fixture's pod as `topology.sh` does.
fn build(net: &ScratchNet, id: &str) {
    let (pod, peer) = (net.pod_name.as_str(), net.peer_name.as_str());
    let veth = |n: u8, default_route: bool| {
        ip_words(
            pod,
            &format!("link add eth{n} type veth peer name peth{n} netns {peer}"),
        );
        ip_words(pod, &format!("link set eth{n} address 02:77:00:00:0{n}:02"));
        ip_words(
            peer,
            &format!("link set peth{n} address 02:77:00:00:0{n}:01"),
        );
        ip_words(pod, &format!("link set eth{n} up"));
        ip_words(peer, &format!("link set peth{n} up"));
        wait_lower_up(pod, &format!("eth{n}"));
        ip_words(pod, &format!("addr add 10.77.{n}.2/24 dev eth{n}"));
        ip_words(pod, &format!("addr add fd77:{n}::2/64 dev eth{n}"));
        ip_words(peer, &format!("addr add 10.77.{n}.1/24 dev peth{n}"));
        ip_words(peer, &format!("addr add fd77:{n}::1/64 dev peth{n}"));
        if default_route {
            ip_words(
                pod,
                &format!("route add default via 10.77.{n}.1 dev eth{n}"),
            );
            ip_words(
                pod,
                &format!("-6 route add default via fd77:{n}::1 dev eth{n}"),
            );
        }
    };
    veth(0, true);
    match id {
        "fx-tcfilter" => {
            veth(1, false);
            ip_words(
                pod,
                "neigh add 10.77.0.50 lladdr 02:77:00:00:00:50 dev eth0 nud permanent",
            );
        }
        "fx-macvtap" => ip_words(
            pod,
            "route add 10.76.0.0/16 via 10.77.0.1 dev eth0 mtu 1400",
        ),
        "fx-handover" => {
            ip_words(pod, "tuntap add dev vmtap0 mode tap multi_queue");
            ip_words(pod, "link set vmtap0 address 02:77:00:01:00:02 up");
            ip_words(pod, "addr add 10.77.13.2/24 dev vmtap0");
            ip_words(pod, "link add link eth0 name mvt9 type macvtap mode bridge");
            ip_words(pod, "link set mvt9 address 02:77:00:02:00:02 up");
            ip_words(pod, "addr add 10.77.23.2/24 dev mvt9");
        }
        "fx-l3" => veth(1, false),
        _ => {}
    }
    settle(pod);
}

/// The ifindex of every link of `ns`, by name.
fn ifindexes(ns: &str) -> Vec<(String, u64)> {
    ip_json(ns, &["link", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| Some((l["ifname"].as_str()?.to_string(), l["ifindex"].as_u64()?)))
        .collect()
}

/// Put `state` (an old state file, as JSON) in the netns `net`: make its journal's objects
/// again there (as the attach that wrote it had made them) and give the file the netns's
/// identity and the ifindexes of now. Nothing else of the file changes.
fn replant(net: &ScratchNet, state: &mut Value) {
    let netns = &net.pod;
    state["netns"] = Value::from(net.pod_name.as_str());
    state["netns_path"] = Value::from(netns.path().to_string_lossy().into_owned());
    state["netns_id"] = serde_json::json!({"dev": netns.id().dev, "ino": netns.id().ino});
    let nl = Netlink::open_in(netns).expect("netlink socket in the pod");
    state["netns_cookie"] = Value::from(nl.netns_cookie().expect("netns cookie"));
    let before = ifindexes(&net.pod_name);
    let index_of = |names: &[(String, u64)], name: &str| {
        names
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, i)| *i)
            .unwrap_or_else(|| panic!("no link {name} in the pod"))
    };
    for ep in state["endpoints"].as_array_mut().into_iter().flatten() {
        let name = ep["name"].as_str().expect("name").to_string();
        ep["ifindex"] = Value::from(index_of(&before, &name));
    }
    // The journal as the attach planned it: objects on the endpoints at their ifindexes
    // now, the devices it made to be made again (found by name).
    let made: Vec<String> = state["journal"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| matches!(e["object"].as_str(), Some("tap" | "macvtap" | "ifb")))
        .filter_map(|e| e["name"].as_str().map(String::from))
        .collect();
    for entry in state["journal"].as_array_mut().into_iter().flatten() {
        let device = entry["device"]
            .as_str()
            .or(entry["name"].as_str())
            .map(String::from);
        let Some(device) = device else { continue };
        // A VFIO binding has no ifindex, a netns-wide setting no device.
        if entry["object"] == "vfio-bind" || device.is_empty() {
            continue;
        }
        if made.contains(&device) {
            entry["ifindex"] = Value::Null;
            continue;
        }
        let index = Value::from(index_of(&before, &device));
        entry["ifindex"] = index.clone();
        if let Some(parent) = entry.get_mut("parent") {
            let eth0 = index_of(&before, "eth0");
            assert_eq!(parent.as_u64(), Some(2), "the fixture's macvtap is on eth0");
            *parent = Value::from(eth0);
        }
        if let Some(address) = entry.get_mut("address") {
            address["ifindex"] = index.clone();
        }
        if let Some(route) = entry.get_mut("route") {
            route["oif"] = index.clone();
        }
        for route in entry
            .get_mut("sourced")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            route["oif"] = index.clone();
        }
    }
    let mut entries: Vec<Entry> =
        serde_json::from_value(state["journal"].clone()).expect("the fixture's journal");
    let id = state["id"].as_str().expect("id").to_string();
    netns
        .run(|| {
            let mut nl = Netlink::open_here().expect("netlink socket");
            journal::apply(&mut nl, &mut entries, &sandbox_net::names::owner_alias(&id))
                .unwrap_or_else(|e| {
                    panic!(
                        "{id}: re-apply {}: {}: {}",
                        e.entry.describe(),
                        e.step,
                        e.error
                    )
                });
        })
        .expect("enter the pod");
    for (value, entry) in state["journal"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .zip(&entries)
    {
        if value["object"] != "vfio-bind" {
            value["ifindex"] = entry.ifindex().map_or(Value::Null, Value::from);
        }
    }
}

/// Write `text` as sandbox `id`'s state file, as a save does (mode 0600).
fn plant(dir: &Path, id: &str, text: &str) -> PathBuf {
    StateDir::open(dir).expect("state dir");
    let path = dir.join(format!("{id}.json"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .expect("create the state file");
    f.write_all(text.as_bytes()).expect("write the state file");
    path
}

#[test]
fn every_old_netns_state_detaches_cleanly() {
    for id in NETNS_FIXTURES {
        let net = ScratchNet::new("snfx").expect("scratch netns");
        build(&net, id);
        let before = settled_snapshot(&net.pod_name);
        let mut state: Value = serde_json::from_str(&fixture(id)).expect("fixture JSON");
        replant(&net, &mut state);
        let journalled = state["journal"].as_array().map_or(0, Vec::len);
        if journalled > 0 {
            assert_ne!(
                snapshot(&net.pod_name),
                before,
                "{id}: the re-applied journal changed nothing"
            );
        }
        let dir = TempStateDir::new();
        let text = serde_json::to_string_pretty(&state).expect("encode");
        plant(dir.path(), id, &text);
        let guard = DetachOnDrop::new(dir.path(), id);
        let state_dir = dir.path().to_string_lossy().into_owned();
        let (code, out, err) = cli(&["--state-dir", &state_dir, "detach", "--id", id, "--json"]);
        assert_eq!(code, 0, "{id}: detach: {err}");
        guard.disarm();
        let outcome: Value = serde_json::from_str(&out).expect("detach JSON");
        assert_eq!(
            outcome,
            serde_json::json!({"outcome": "detached", "id": id, "objects": journalled}),
            "{id}"
        );
        assert_settles_to(&net.pod_name, &before, id);
        assert_eq!(
            listing(dir.path()),
            Vec::<String>::new(),
            "{id}: state left"
        );
    }
}

#[test]
fn an_old_static_state_detaches_restoring_its_pci_device_only() {
    // The host of the static attachment: a scratch netns with its tap (the host's own
    // netns is never touched); the CLI runs in there, as the attach did.
    let net = ScratchNet::new("snfx").expect("scratch netns");
    ip(
        &net.pod_name,
        &["tuntap", "add", "dev", "tap-vm0", "mode", "tap"],
    );
    ip(&net.pod_name, &["link", "set", "tap-vm0", "mtu", "1400"]);
    let before = settled_snapshot(&net.pod_name);
    // The fake kernel has the PCI device on vfio-pci, as the attach left it.
    let sysfs = FakeSysfs::new().expect("fake sysfs");
    sysfs.kernel_binds(VFIO_DRIVER).expect("bind vfio-pci");
    let root = sysfs.root().to_string_lossy().into_owned();
    let mut state: Value = serde_json::from_str(&fixture("fx-static")).expect("fixture JSON");
    state["settings"]["sysfs_root"] = Value::from(root.as_str());
    state["journal"][0]["sysfs_root"] = Value::from(root.as_str());
    let dir = TempStateDir::new();
    plant(
        dir.path(),
        "fx-static",
        &serde_json::to_string_pretty(&state).expect("encode"),
    );
    let state_dir = dir.path().to_string_lossy().into_owned();
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &net.pod_name, bin()])
        .args(["--state-dir", &state_dir, "--sysfs-root", &root])
        .args(["detach", "--id", "fx-static", "--json"])
        .output()
        .expect("run sandbox-net in the netns");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "detach: {err}");
    let outcome: Value = serde_json::from_slice(&out.stdout).expect("detach JSON");
    assert_eq!(
        outcome,
        serde_json::json!({"outcome": "detached", "id": "fx-static", "objects": 1})
    );
    let over = sysfs.override_value().expect("driver_override");
    assert_eq!(over, "\n", "detach cleared driver_override");
    assert_settles_to(&net.pod_name, &before, "the tap is left as it was");
    assert_eq!(listing(dir.path()), Vec::<String>::new(), "state left");
}
