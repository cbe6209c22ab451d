//! `vmm-args`, `exec` and `guest-config --format kernel-ip|cloud-init` against real
//! attachments: QEMU accepts the arguments (it is started paused inside the netns), `exec`
//! puts the tap queues at fds 3.. and appends the matching arguments, the guest formats
//! carry the attachment, and what can't be done exits 2 with the reason. The booting
//! guest is in tests/e2e_qemu.rs.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use sandbox_net_testkit::scratch::ScratchNet;
use serde_json::Value;

const QEMU: &str = "qemu-system-x86_64";

/// Kills and reaps a child on drop.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sn(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut full = vec!["--state-dir", dir.to_str().expect("utf-8 state dir")];
    full.extend_from_slice(args);
    cli(&full)
}

/// `sandbox-net attach` of `net`'s pod as `id`, with `extra` arguments; detached on drop.
fn attach(net: &ScratchNet, dir: &TempStateDir, id: &str, extra: &[&str]) -> DetachOnDrop {
    let mut args = vec!["attach", "--netns", &net.pod_name, "--id", id];
    args.extend_from_slice(extra);
    let (code, _, err) = sn(dir.path(), &args);
    assert_eq!(code, 0, "attach {extra:?}: {err}");
    DetachOnDrop::new(dir.path(), id)
}

/// Start QEMU paused (`-S`) with `net_args`, inside `netns` when given; it must still run
/// after a while (a bad option or a tap it can't open makes it exit at once).
fn qemu_accepts(netns: Option<&str>, net_args: &[String]) {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}")).arg(QEMU);
            c
        }
        None => Command::new(QEMU),
    };
    cmd.args([
        "-S",
        "-display",
        "none",
        "-nodefaults",
        "-accel",
        "tcg",
        "-m",
        "64",
        "-monitor",
        "none",
    ])
    .args(net_args)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {QEMU} (install qemu-system-x86): {e}"));
    let mut qemu = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < deadline {
        if let Some(status) = qemu.0.try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut e) = qemu.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("QEMU refused {net_args:?}: {status}: {err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("bad JSON {e}: {text}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

#[test]
fn vmm_args_per_vmm_and_qemu_accepts_them() {
    for queues in [1u32, 4] {
        let net = scratch(1);
        let dir = TempStateDir::new();
        let id = format!("va-{queues}");
        let q = queues.to_string();
        let _a = attach(&net, &dir, &id, &["--queues", &q]);

        let (code, out, err) = sn(
            dir.path(),
            &["vmm-args", "--id", &id, "--vmm", "qemu", "--json"],
        );
        assert_eq!(code, 0, "{err}");
        let v = json(&out);
        assert_eq!(v["run_in_netns"], true);
        let args = strings(&v["args"]);
        let vhost = if Path::new("/dev/vhost-net").exists() {
            "on"
        } else {
            "off"
        };
        let mut netdev = "tap,id=sn-eth0,ifname=tap0_sn,script=no,downscript=no".to_string();
        let mut device =
            "virtio-net-pci,netdev=sn-eth0,id=sn-eth0-nic,mac=02:77:00:00:00:02,host_mtu=1500"
                .to_string();
        if queues > 1 {
            netdev.push_str(&format!(",queues={queues}"));
            device.push_str(&format!(",mq=on,vectors={}", 2 * queues + 2));
        }
        netdev.push_str(&format!(",vhost={vhost}"));
        assert_eq!(
            args,
            vec!["-netdev".to_string(), netdev, "-device".into(), device]
        );
        // The text form is the same arguments, for $(...) in a shell.
        let (code, text, notes) = sn(dir.path(), &["vmm-args", "--id", &id, "--vmm", "qemu"]);
        assert_eq!(code, 0);
        assert_eq!(text.trim(), args.join(" "));
        assert!(
            notes.contains(&format!("ip netns exec {}", net.pod_name)),
            "{notes}"
        );
        qemu_accepts(Some(&net.pod_name), &args);

        let (code, out, err) = sn(
            dir.path(),
            &[
                "vmm-args",
                "--id",
                &id,
                "--vmm",
                "cloud-hypervisor",
                "--json",
            ],
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            strings(&json(&out)["args"]),
            vec![
                "--net".to_string(),
                format!(
                    "tap=tap0_sn,mac=02:77:00:00:00:02,num_queues={},mtu=1500",
                    2 * queues
                )
            ]
        );

        let (code, out, err) = sn(
            dir.path(),
            &["vmm-args", "--id", &id, "--vmm", "firecracker"],
        );
        if queues == 1 {
            assert_eq!(code, 0, "{err}");
            assert_eq!(
                json(&out),
                serde_json::json!([{"iface_id": "eth0", "host_dev_name": "tap0_sn",
                                    "guest_mac": "02:77:00:00:00:02"}])
            );
            assert!(err.contains("inside the sandbox netns"), "{err}");
        } else {
            assert_eq!(code, 2, "firecracker has one queue pair: {out}");
            assert!(err.contains("--queues 1"), "{err}");
        }
    }
}

#[test]
fn exec_puts_the_queues_at_fd_3_and_appends_the_arguments() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let _a = attach(&net, &dir, "ex-2", &["--queues", "2"]);
    let vhost = Path::new("/dev/vhost-net").exists();
    // The "VMM" prints what it inherited: tun fds attached to the tap, then its arguments.
    // (No command substitution: its pipe would show up among the shell's fds.)
    let script = r#"for fd in 3 4 5 6 7; do
        echo "fd$fd"; readlink /proc/$$/fd/$fd 2>/dev/null || echo none
    done
    grep -h '^iff:' /proc/$$/fdinfo/3 /proc/$$/fdinfo/4
    echo "ARGS $*""#;
    let (code, out, err) = sn(
        dir.path(),
        &[
            "exec", "--id", "ex-2", "--vmm", "qemu", "--", "/bin/sh", "-c", script, "sh",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let target = |fd: usize| lines[2 * (fd - 3) + 1];
    assert_eq!(
        (target(3), target(4)),
        ("/dev/net/tun", "/dev/net/tun"),
        "{out}"
    );
    assert_eq!(&lines[10..12], ["iff:\ttap0_sn", "iff:\ttap0_sn"], "{out}");
    if vhost {
        assert_eq!(
            (target(5), target(6)),
            ("/dev/vhost-net", "/dev/vhost-net"),
            "{out}"
        );
        assert_eq!(target(7), "none", "{out}");
        assert!(out.contains("ARGS -netdev tap,id=sn-eth0,fds=3:4,vhost=on,vhostfds=5:6 -device"));
    } else {
        assert_eq!(
            (target(5), target(6), target(7)),
            ("none", "none", "none"),
            "{out}"
        );
        assert!(
            out.contains(
                "ARGS -netdev tap,id=sn-eth0,fds=3:4,vhost=off -device \
                 virtio-net-pci,netdev=sn-eth0,id=sn-eth0-nic,mac=02:77:00:00:00:02,host_mtu=1500,mq=on,vectors=6"
            ),
            "{out}"
        );
        assert_eq!(
            err.matches("warning").count(),
            1,
            "exactly one warning about vhost-net: {err}"
        );
        assert!(err.contains("/dev/vhost-net"), "{err}");
    }
    // --no-vhost: no vhost fds, no warning.
    let (code, out, err) = sn(
        dir.path(),
        &[
            "exec",
            "--id",
            "ex-2",
            "--vmm",
            "qemu",
            "--no-vhost",
            "--",
            "/bin/sh",
            "-c",
            script,
            "sh",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("fds=3:4,vhost=off"), "{out}");
    assert!(!err.contains("warning"), "{err}");
    // vmm-args --fds --no-vhost shows the same arguments exec appends.
    let (code, text, _) = sn(
        dir.path(),
        &[
            "vmm-args",
            "--id",
            "ex-2",
            "--vmm",
            "qemu",
            "--fds",
            "--no-vhost",
        ],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("ARGS {}", text.trim())),
        "{out}\n{text}"
    );
}

#[test]
fn exec_runs_qemu_on_the_fds_in_the_callers_netns() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let _a = attach(&net, &dir, "ex-q", &["--queues", "2"]);
    let mut cmd = Command::new(bin());
    cmd.args(["--state-dir", dir.path().to_str().expect("utf-8")])
        .args(["exec", "--id", "ex-q", "--vmm", "qemu", "--", QEMU])
        .args([
            "-S",
            "-display",
            "none",
            "-nodefaults",
            "-accel",
            "tcg",
            "-m",
            "64",
            "-monitor",
            "none",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut qemu = KillOnDrop(cmd.spawn().expect("spawn sandbox-net exec"));
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        qemu.0.try_wait().expect("wait").is_none(),
        "QEMU exited: it refused the fds or the arguments"
    );
    // The process is QEMU itself (exec replaced sandbox-net), in our netns, holding the
    // tap: a second exec finds the queues in use.
    let pid = qemu.0.id();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm");
    assert!(comm.starts_with("qemu-system"), "{comm}");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("netns"),
        std::fs::read_link("/proc/self/ns/net").expect("own netns")
    );
    let held = std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .expect("fdinfo")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter(|info| info.contains("iff:\ttap0_sn"))
        .count();
    assert_eq!(held, 2, "QEMU holds both queues of tap0_sn");
}

#[test]
fn exec_refusals_and_failures_name_the_problem() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let _a = attach(&net, &dir, "ex-1", &[]);
    let (code, _, err) = sn(
        dir.path(),
        &["exec", "--id", "ex-1", "--vmm", "firecracker", "--", "true"],
    );
    // exec offers only QEMU: any other VMM is bad usage (issue #17).
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("[possible values: qemu]"), "{err}");
    let (code, _, err) = sn(
        dir.path(),
        &["exec", "--id", "nope", "--vmm", "qemu", "--", "true"],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("sandbox nope: not attached"), "{err}");
    let (code, _, err) = sn(
        dir.path(),
        &[
            "exec",
            "--id",
            "ex-1",
            "--vmm",
            "qemu",
            "--no-vhost",
            "--",
            "/nonexistent/vmm",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("VMM /nonexistent/vmm: exec"), "{err}");
    // A single-queue tap held by a running VMM can't be opened again.
    let mut holder = Command::new(bin());
    holder
        .args(["--state-dir", dir.path().to_str().expect("utf-8")])
        .args(["exec", "--id", "ex-1", "--vmm", "qemu", "--no-vhost", "--"])
        // The appended QEMU arguments land in "$@" of the shell, not in sleep's.
        .args(["/bin/sh", "-c", "exec sleep 30", "sh"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let holder = KillOnDrop(holder.spawn().expect("spawn holder"));
    let comm = format!("/proc/{}/comm", holder.0.id());
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&comm).map_or(true, |c| c.trim() != "sleep") {
        assert!(Instant::now() < deadline, "the holder never became `sleep`");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, _, err) = sn(
        dir.path(),
        &[
            "exec",
            "--id",
            "ex-1",
            "--vmm",
            "qemu",
            "--no-vhost",
            "--",
            "true",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("busy") && err.contains("tap0_sn"), "{err}");
}

#[test]
fn guest_config_kernel_ip_and_cloud_init() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let _a = attach(
        &net,
        &dir,
        "gc-1",
        &["--dns", "10.77.0.53", "--dns", "fd77::53"],
    );
    let (code, out, err) = sn(
        dir.path(),
        &["guest-config", "--id", "gc-1", "--format", "kernel-ip"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "ip=10.77.0.2::10.77.0.1:255.255.255.0::eth0:off:10.77.0.53\n"
    );
    for left_out in [
        "fd77::2/64",
        "inet6 default via fd77::1",
        "nameserver fd77::53",
    ] {
        assert!(err.contains(left_out), "note for {left_out}: {err}");
    }

    let (code, out, err) = sn(
        dir.path(),
        &["guest-config", "--id", "gc-1", "--format", "cloud-init"],
    );
    assert_eq!(code, 0, "{err}");
    // The kernel gives every IPv6 route a metric (1024 here); IPv4 default routes have none.
    let v6_metric = ip_json(&net.pod_name, &["-6", "route", "show", "default"])[0]["metric"]
        .as_u64()
        .expect("IPv6 default route metric");
    let expected = format!(
        r#"version: 2
ethernets:
  eth0:
    match:
      macaddress: "02:77:00:00:00:02"
    set-name: "eth0"
    mtu: 1500
    addresses:
      - "10.77.0.2/24"
      - "fd77::2/64"
    routes:
      - to: "0.0.0.0/0"
        via: "10.77.0.1"
      - to: "::/0"
        via: "fd77::1"
        metric: {v6_metric}
    nameservers:
      addresses:
        - "10.77.0.53"
        - "fd77::53"
"#
    );
    assert_eq!(out, expected);

    let (code, _, err) = sn(
        dir.path(),
        &["guest-config", "--id", "nope", "--format", "cloud-init"],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("sandbox nope: not attached"), "{err}");
}

#[test]
fn kernel_ip_refuses_an_ipv6_only_attachment() {
    let net = scratch(1);
    run(
        "ip",
        &[
            "-n",
            &net.pod_name,
            "addr",
            "del",
            "10.77.0.2/24",
            "dev",
            "eth0",
        ],
    );
    let dir = TempStateDir::new();
    let _a = attach(&net, &dir, "gc-6", &[]);
    let (code, out, err) = sn(
        dir.path(),
        &["guest-config", "--id", "gc-6", "--format", "kernel-ip"],
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        err.contains("IPv6-only") && err.contains("cloud-init"),
        "{err}"
    );
    let (code, out, _) = sn(
        dir.path(),
        &["guest-config", "--id", "gc-6", "--format", "cloud-init"],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("\"fd77::2/64\"") && !out.contains("10.77.0.2"),
        "{out}"
    );
}

#[test]
fn a_failed_run_leaves_no_netns_attachment_or_process() {
    let dir = TempStateDir::new();
    let mut seen = None;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let net = scratch(1);
        let _a = attach(&net, &dir, "fail-1", &[]);
        let (_, out, _) = sn(
            dir.path(),
            &["vmm-args", "--id", "fail-1", "--vmm", "qemu", "--json"],
        );
        let args = strings(&json(&out)["args"]);
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", net.pod_name))
            .arg(QEMU)
            .args([
                "-S",
                "-display",
                "none",
                "-nodefaults",
                "-accel",
                "tcg",
                "-m",
                "64",
            ])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn QEMU");
        let _qemu = KillOnDrop(child);
        seen = Some((net.pod_name.clone(), _qemu.0.id()));
        std::thread::sleep(Duration::from_millis(300));
        panic!("injected test failure");
    }));
    assert!(outcome.is_err());
    let (pod, pid) = seen.expect("the run got as far as QEMU");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "QEMU {pid} is gone"
    );
    assert!(
        !Path::new(&format!("/run/netns/{pod}")).exists(),
        "netns {pod} is gone"
    );
    let (code, _, err) = sn(dir.path(), &["status", "--id", "fail-1"]);
    assert_eq!(code, 3);
    assert!(err.contains("sandbox fail-1: not attached"), "{err}");
}
