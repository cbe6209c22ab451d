//! Static attachments (issue #9): `attach --config FILE` with a host tap (made inside a
//! scratch netns, which plays the host: the host's own netns is never touched) and a
//! vhost-user socket attaches, renders guest-config and vmm-args, reports status, and
//! detaches without touching the devices; a VFIO entry binds and restores a PCI device
//! of a fake sysfs tree; malformed files are refused naming the field, changing nothing.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use crate::common::*;
use sandbox_net::state::StateDir;
use sandbox_net::{StaticOptions, attach_static};
use sandbox_net_testkit::fake_sysfs::{ADDR, DEV, FakeSysfs};
use serde_json::{Value, json};

/// A scratch netns with a host-style tap `tap-vm0` (MTU 1400) and a vhost-user socket.
struct Host {
    net: ScratchNet,
    files: TempDir,
    socket: PathBuf,
    _listener: UnixListener,
}

fn host() -> Host {
    let net = ScratchNet::new("snst").expect("scratch netns");
    ip(
        &net.pod_name,
        &["tuntap", "add", "dev", "tap-vm0", "mode", "tap"],
    );
    ip(&net.pod_name, &["link", "set", "tap-vm0", "mtu", "1400"]);
    let files = TempDir::new("snst-files");
    let socket = files.join("vhu.sock");
    let listener = UnixListener::bind(&socket).expect("bind the vhost-user socket");
    Host {
        net,
        files,
        socket,
        _listener: listener,
    }
}

fn config(socket: &Path) -> Value {
    json!({
        "version": 1,
        "devices": [
            {"name": "eth0", "kind": "tap", "tap": "tap-vm0", "mac": "02:00:0a:00:00:02",
             "addresses": ["10.0.0.2/24", {"family": "inet6", "address": "fd00::2", "prefix_len": 64}]},
            {"name": "eth1", "kind": "vhost-user", "socket": socket, "mac": "02:00:0a:01:00:02",
             "mtu": 9000, "queues": 2, "addresses": ["10.1.0.2/24"]}
        ],
        "routes": [
            {"dst": "default", "gateway": "10.0.0.1", "device": "eth0"},
            {"dst": "default", "gateway": "fd00::1", "device": "eth0"},
            {"dst": "10.2.0.0/16", "gateway": "10.1.0.1", "device": "eth1", "mtu": 8950}
        ],
        "neighbors": [{"ip": "10.0.0.1", "mac": "02:00:0a:00:00:01", "device": "eth0"}]
    })
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write config");
}

/// Run the CLI inside `ns` (as a runtime whose devices live there would).
fn cli_in(ns: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, bin()])
        .args(args)
        .output()
        .expect("run sandbox-net in the netns");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("bad JSON {e}: {text}"))
}

#[test]
fn a_host_tap_and_a_vhost_user_socket_attach_render_and_detach() {
    let _serial = serial();
    let h = host();
    let dir = TempStateDir::new();
    let state_dir = dir.path().to_str().expect("utf-8 path");
    let file = h.files.join("static.json");
    write(&file, &config(&h.socket).to_string());
    let before = snapshot(&h.net.pod_name);

    let file_arg = file.to_str().expect("utf-8 path");
    let (code, out, err) = cli_in(
        &h.net.pod_name,
        &[
            "--state-dir",
            state_dir,
            "attach",
            "--config",
            file_arg,
            "--id",
            "st1",
            "--json",
        ],
    );
    assert_eq!(code, 0, "attach --config: {err}");
    let guard = DetachOnDrop::new(dir.path(), "st1");
    let a = json_of(&out);
    println!("attach --config: {a}");
    assert_eq!(a["netns"], "");
    assert_eq!(a["model"], "none");
    let eps = a["endpoints"].as_array().expect("endpoints");
    assert_eq!(eps.len(), 2);
    assert_eq!(
        (&eps[0]["name"], &eps[0]["kind"], &eps[0]["tap"]),
        (&json!("eth0"), &json!("tap"), &json!("tap-vm0"))
    );
    assert_eq!(
        (&eps[0]["mtu"], &eps[0]["queues"]),
        (&json!(1400), &json!(1))
    );
    assert_eq!(eps[0]["mac"], "02:00:0a:00:00:02");
    assert_eq!(
        (
            &eps[1]["kind"],
            &eps[1]["vhost_user_socket"],
            &eps[1]["queues"]
        ),
        (&json!("vhost-user"), &json!(h.socket), &json!(2))
    );
    // Nothing was created or changed: the tap is handed over as it is.
    assert_eq!(snapshot(&h.net.pod_name), before);

    // guest-config: the description of the file, from anywhere (no netns is opened).
    let (code, out, err) = cli(&["--state-dir", state_dir, "guest-config", "--id", "st1"]);
    assert_eq!(code, 0, "{err}");
    let g = json_of(&out);
    let names: Vec<&str> = g["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, vec!["eth0", "eth1"]);
    assert_eq!(g["interfaces"][0]["mtu"], 1400);
    assert_eq!(g["interfaces"][1]["mtu"], 9000);
    assert_eq!(g["interfaces"][0]["addresses"][1]["address"], "fd00::2");
    assert_eq!(g["routes"].as_array().map(Vec::len), Some(3));
    assert_eq!(g["routes"][2]["scope"], "universe");
    assert_eq!(g["routes"][2]["mtu"], 8950);
    assert_eq!(g["neighbors"][0]["state"], "permanent");

    // vmm-args renders both devices.
    let (code, out, err) = cli(&[
        "--state-dir",
        state_dir,
        "vmm-args",
        "--id",
        "st1",
        "--vmm",
        "qemu",
        "--json",
    ]);
    assert_eq!(code, 0, "vmm-args: {err}");
    let v = json_of(&out);
    println!("vmm-args: {v}");
    let args = v["args"].to_string();
    assert!(args.contains("tap-vm0"), "{args}");
    assert!(
        args.contains(h.socket.to_str().unwrap_or_default()),
        "{args}"
    );
    assert!(args.contains("02:00:0a:01:00:02"), "{args}");

    // status from the netns where the tap is: every device present, no drift.
    let (code, out, err) = cli_in(
        &h.net.pod_name,
        &["--state-dir", state_dir, "status", "--id", "st1", "--json"],
    );
    assert_eq!(code, 0, "status: {err}");
    let s = json_of(&out);
    assert_eq!(s["drift"], false, "{s}");
    let objects = s["objects"].as_array().cloned().unwrap_or_default();
    assert_eq!(objects.len(), 2, "{s}");
    assert!(objects.iter().all(|o| o["present"] == true), "{s}");

    // Hotplug and set-rate need a netns: refused, naming why.
    let (code, _, err) = cli(&[
        "--state-dir",
        state_dir,
        "add-endpoint",
        "--id",
        "st1",
        "--iface",
        "eth9",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("static attachment"), "{err}");
    let (code, _, err) = cli(&["--state-dir", state_dir, "watch", "--id", "st1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no netns to watch"), "{err}");
    // The same tap can't be attached twice.
    let (code, _, err) = cli_in(
        &h.net.pod_name,
        &[
            "--state-dir",
            state_dir,
            "attach",
            "--config",
            file_arg,
            "--id",
            "st2",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("devices[0].tap") && err.contains("st1"),
        "{err}"
    );
    assert!(!dir.path().join("st2.json").exists());

    // The socket vanishing is drift.
    std::fs::rename(&h.socket, h.files.join("moved.sock")).expect("move socket");
    let st = sandbox_net::status(dir.path(), "st1")
        .expect("status")
        .expect("attached");
    assert!(st.drift, "{st:?}");
    std::fs::rename(h.files.join("moved.sock"), &h.socket).expect("move socket back");

    // detach: nothing to undo, the devices stay where they were.
    guard.disarm();
    let (code, out, err) = cli(&["--state-dir", state_dir, "detach", "--id", "st1", "--json"]);
    assert_eq!(code, 0, "detach: {err}");
    assert_eq!(json_of(&out)["outcome"], "detached");
    assert!(!dir.path().join("st1.json").exists());
    assert_eq!(snapshot(&h.net.pod_name), before);
    assert!(h.socket.exists());
}

#[test]
fn malformed_files_are_refused_naming_the_field_and_nothing_changes() {
    let _serial = serial();
    let h = host();
    let dir = TempStateDir::new();
    let state_dir = dir.path().to_str().expect("utf-8 path");
    let good = config(&h.socket);
    let mut cases: Vec<(&str, String, &str)> = vec![(
        "bad JSON",
        "{\"version\": 1, \"devices\": [".into(),
        "not valid JSON",
    )];
    let mut bad_mac = good.clone();
    bad_mac["devices"][1]["mac"] = json!("zz");
    cases.push((
        "bad MAC",
        bad_mac.to_string(),
        "devices[1].mac: \"zz\" is not a MAC",
    ));
    let mut missing = good.clone();
    if let Some(d) = missing["devices"][0].as_object_mut() {
        d.remove("tap");
    }
    cases.push((
        "missing field",
        missing.to_string(),
        "devices[0].tap: missing",
    ));
    let mut kind = good.clone();
    kind["devices"][1]["kind"] = json!("macvlan");
    cases.push((
        "unknown kind",
        kind.to_string(),
        "devices[1].kind: \"macvlan\" is not a device kind",
    ));
    let mut dup = good.clone();
    dup["devices"][1]["name"] = json!("eth0");
    cases.push((
        "duplicate name",
        dup.to_string(),
        "devices[1].name: \"eth0\" is already used by devices[0]",
    ));
    let mut no_tap = good.clone();
    no_tap["devices"][0]["tap"] = json!("tap-nosuch");
    cases.push((
        "absent tap",
        no_tap.to_string(),
        "devices[0].tap: no device \"tap-nosuch\"",
    ));
    let mut not_tap = good.clone();
    not_tap["devices"][0]["tap"] = json!("lo");
    cases.push(("not a tap", not_tap.to_string(), "devices[0].tap: lo is a"));
    let mut no_socket = good.clone();
    no_socket["devices"][1]["socket"] = json!(h.files.join("nosuch.sock"));
    cases.push(("absent socket", no_socket.to_string(), "devices[1].socket:"));
    let mut big_mtu = good.clone();
    big_mtu["devices"][0]["mtu"] = json!(1500);
    cases.push((
        "MTU above the tap's",
        big_mtu.to_string(),
        "devices[0].mtu: 1500 is more than tap tap-vm0's MTU 1400",
    ));
    let mut bad_route = good.clone();
    bad_route["routes"][0]["device"] = json!("eth7");
    cases.push((
        "route through no device",
        bad_route.to_string(),
        "routes[0].device: \"eth7\" names no device",
    ));
    let mut queues = good.clone();
    queues["devices"][0]["queues"] = json!(4);
    cases.push((
        "queues of a single-queue tap",
        queues.to_string(),
        "devices[0].queues: 4, but tap tap-vm0 is single-queue",
    ));

    let before = snapshot(&h.net.pod_name);
    for (what, text, expected) in cases {
        let file = h.files.join("bad.json");
        write(&file, &text);
        let (code, out, err) = cli_in(
            &h.net.pod_name,
            &[
                "--state-dir",
                state_dir,
                "attach",
                "--config",
                file.to_str().unwrap_or_default(),
                "--id",
                "bad1",
            ],
        );
        println!("{what}: {}", err.trim());
        assert_eq!(code, 2, "{what}: exit code; stderr {err}");
        assert!(out.is_empty(), "{what}: {out}");
        assert!(
            err.contains(expected),
            "{what}: expected {expected:?} in {err:?}"
        );
        assert!(
            !dir.path().join("bad1.json").exists(),
            "{what}: a state was written"
        );
        assert!(
            !dir.path().join("bad1.lock").exists(),
            "{what}: a lock file was left"
        );
    }
    assert_eq!(snapshot(&h.net.pod_name), before);
    // --config and --netns exclude each other.
    let (code, _, err) = cli(&[
        "--state-dir",
        state_dir,
        "attach",
        "--config",
        "/x.json",
        "--netns",
        "pod",
        "--id",
        "x",
    ]);
    assert_eq!(code, 2, "{err}");
}

/// The test kit's fake sysfs, its PCI NIC (`ADDR`, IOMMU group 17) bound to `driver`.
fn fake_sysfs(driver: &str) -> FakeSysfs {
    let sysfs = FakeSysfs::new().expect("fake sysfs");
    sysfs.kernel_binds(driver).expect("bind the fake NIC");
    sysfs
}

fn vfio_config(files: &TempDir) -> PathBuf {
    let path = files.join("vfio.json");
    let text = json!({
        "version": 1,
        "devices": [{"name": "eth0", "kind": "vfio", "pci_address": ADDR,
                     "mac": "02:00:0b:00:00:02", "addresses": ["10.5.0.2/24"]}],
        "routes": [{"dst": "default", "gateway": "10.5.0.1", "device": "eth0"}]
    });
    write(&path, &text.to_string());
    path
}

#[test]
fn a_vfio_entry_journals_the_binding_and_detach_restores_it() {
    let _serial = serial();
    let net = ScratchNet::new("snsv").expect("scratch netns");
    let files = TempDir::new("snsv-files");
    let dir = TempStateDir::new();

    // Already bound to vfio-pci (the fake kernel does not rebind by itself): the attach
    // journals the binding, detach restores the driver it found.
    let sysfs = fake_sysfs("vfio-pci");
    let mut opts = StaticOptions::new(vfio_config(&files), "sv1");
    opts.state_dir = dir.path().to_path_buf();
    sandbox_net::physical::set_sysfs_root(sysfs.root());
    let a = net
        .pod
        .run(|| attach_static(&opts))
        .expect("enter netns")
        .expect("static attach of a vfio device");
    let guard = DetachOnDrop::new(dir.path(), "sv1");
    let ep = &a.endpoints[0];
    assert_eq!(ep.kind.as_str(), "physical");
    assert_eq!(
        ep.backend,
        sandbox_net::Backend::Vfio {
            pci_address: ADDR.into(),
            group: "/dev/vfio/17".into()
        }
    );
    assert_eq!(
        described(&a.guest).routes[0].gateway,
        Some("10.5.0.1".parse().expect("ip"))
    );
    let state = StateDir::open(dir.path())
        .expect("state dir")
        .load("sv1")
        .expect("load")
        .expect("state");
    assert!(state.is_static());
    let journal = serde_json::to_value(&state.journal).expect("json");
    assert_eq!(journal[0]["object"], "vfio-bind", "{journal}");
    assert_eq!(journal[0]["original_driver"], "vfio-pci", "{journal}");
    let st = sandbox_net::status(dir.path(), "sv1")
        .expect("status")
        .expect("attached");
    assert!(!st.drift, "{st:?}");
    guard.disarm();
    let d = sandbox_net::detach(dir.path(), "sv1").expect("detach");
    assert_eq!(
        d.to_string(),
        "sandbox sv1: detached (1 kernel objects removed)"
    );
    let over = std::fs::read_to_string(sysfs.path(&format!("{DEV}/driver_override")))
        .expect("driver_override");
    assert_eq!(over, "\n", "detach cleared driver_override");

    // Bound to ixgbe: the bind is written, the fake kernel does not rebind, verification
    // fails and the attach rolls back: no state, driver_override cleared again.
    let sysfs = fake_sysfs("ixgbe");
    sandbox_net::physical::set_sysfs_root(sysfs.root());
    opts.id = "sv2".into();
    let err = net
        .pod
        .run(|| attach_static(&opts))
        .expect("enter netns")
        .expect_err("verification fails on a fake tree");
    println!("vfio bind on a fake tree: {err}");
    assert!(err.to_string().contains("vfio-pci"), "{err}");
    assert!(!dir.path().join("sv2.json").exists());
    let probe = std::fs::read_to_string(sysfs.path("bus/pci/drivers_probe")).expect("probe");
    assert_eq!(probe, ADDR, "the bind was attempted");
    let over = std::fs::read_to_string(sysfs.path(&format!("{DEV}/driver_override")))
        .expect("driver_override");
    assert_eq!(over, "\n", "rollback cleared driver_override");

    // A PCI address with no device is refused before anything is written.
    let sysfs = fake_sysfs("ixgbe");
    sandbox_net::physical::set_sysfs_root(sysfs.root());
    let text = std::fs::read_to_string(&opts.config)
        .expect("read")
        .replace(ADDR, "0000:04:00.0");
    write(&opts.config, &text);
    let err = net
        .pod
        .run(|| attach_static(&opts))
        .expect("enter netns")
        .expect_err("no such device");
    assert!(
        err.to_string()
            .contains("devices[0].pci_address: no PCI device"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(sysfs.path("bus/pci/drivers_probe")).expect("probe"),
        ""
    );
    sandbox_net::physical::set_sysfs_root(sandbox_net::physical::DEFAULT_SYSFS_ROOT);
}
