//! End to end: a real VM (QEMU under TCG, a Debian cloud kernel, a busybox initramfs built
//! by scripts/e2e-assets.sh) gets its network from sandbox-net, configures it from
//! `guest-config --format kernel-ip`, pings the peer, and is pinged by the peer. Cases:
//! tcfilter with one queue (QEMU opens the tap by name, inside the pod netns, with the
//! arguments `vmm-args` printed), tcfilter with two queues through `sandbox-net exec`
//! (fd passing; QEMU in the caller's netns), macvtap through `exec`, and a negative
//! control whose filters are deleted before the boot: its guest must not reach the peer.
//!
//! Needs root, qemu-system-x86, busybox-static and cpio (scripts/test.sh installs them).
//! Every netns, attachment and QEMU process is removed on success, failure or timeout.
//!
//! A test binary of its own, outside `it`: each case boots a VM under TCG within a
//! timeout, so the cases run after the other tests, not next to them.

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use sandbox_net_testkit::fakeguest::peer;
use sandbox_net_testkit::prelude::*;
use serde_json::Value;

/// The boot, pings included, must be over by then.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const MARKER: &str = "SANDBOX-NET-E2E: ";
const QEMU: &str = "qemu-system-x86_64";
const DNS: &str = "10.77.0.53";

struct Assets {
    kernel: PathBuf,
    initramfs: PathBuf,
}

/// Build (once per test binary; the kernel package is cached under the target dir) the
/// guest kernel and initramfs.
fn assets() -> &'static Assets {
    static ASSETS: OnceLock<Assets> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-assets");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/e2e-assets.sh");
        let started = Instant::now();
        let out = Command::new(&script)
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed:\n{}{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "e2e assets ready in {:.1} s: {}",
            started.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
        Assets {
            kernel: dir.join("vmlinuz"),
            initramfs: dir.join("initramfs.cpio.gz"),
        }
    })
}

/// The `sandbox-net` binary cargo built for these tests.
fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sandbox-net")
}

/// A running VMM: killed and reaped on drop; its stdout lines arrive on a channel, its
/// stderr is collected by a thread.
struct Vm {
    child: Child,
    lines: Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    console: Vec<String>,
    started: Instant,
}

impl Vm {
    fn spawn(mut cmd: Command) -> Vm {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                buf.clear();
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Vm {
            child,
            lines,
            stderr: Some(stderr),
            console: Vec::new(),
            started: Instant::now(),
        }
    }

    /// The console so far (for failure messages).
    fn transcript(&self) -> String {
        self.console.join("\n")
    }

    /// Wait for a marker line starting with `prefix` (after "SANDBOX-NET-E2E: "); None when
    /// the VM ended or printed the `stop` marker first. Panics on timeout.
    fn wait_marker(&mut self, prefix: &str, stop: &[&str]) -> Option<String> {
        loop {
            let left = BOOT_TIMEOUT.saturating_sub(self.started.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.console.push(line.clone());
                    if let Some(at) = line.find(MARKER) {
                        let marker = &line[at + MARKER.len()..];
                        if marker.starts_with(prefix) {
                            return Some(marker.to_string());
                        }
                        if stop.iter().any(|s| marker.starts_with(s)) {
                            return None;
                        }
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no {prefix:?} marker after {} s; console:\n{}",
                    BOOT_TIMEOUT.as_secs(),
                    self.transcript()
                ),
            }
        }
    }

    /// Wait for the VMM to exit (the guest powers off); returns its status and stderr.
    fn wait_exit(&mut self) -> (ExitStatus, String) {
        while let Ok(line) = self
            .lines
            .recv_timeout(BOOT_TIMEOUT.saturating_sub(self.started.elapsed()))
        {
            self.console.push(line);
        }
        let deadline = self.started + BOOT_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the VMM") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the VMM did not exit within {} s; console:\n{}",
                BOOT_TIMEOUT.as_secs(),
                self.transcript()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (status, stderr)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How QEMU gets the network.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Launch {
    /// `nsenter --net=<pod> qemu ... $(sandbox-net vmm-args --vmm qemu)`: QEMU opens the
    /// tap by name.
    ByName,
    /// `sandbox-net exec --vmm qemu -- qemu ...`: fds passed, QEMU in our netns.
    Exec,
}

struct Case {
    id: &'static str,
    model: &'static str,
    queues: u32,
    launch: Launch,
    /// Delete the redirect filters before the boot (negative control).
    remove_filters: bool,
}

fn sn(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut full = vec!["--state-dir", dir.to_str().expect("utf-8 state dir")];
    full.extend_from_slice(args);
    run_bin(bin(), &full)
}

/// The QEMU command line without the network.
fn qemu_base(kernel_ip: &str, peer: Ipv4Addr, smp: u32) -> Vec<String> {
    let a = assets();
    [
        "-accel",
        "tcg",
        "-m",
        "256",
        "-smp",
        &smp.to_string(),
        "-nographic",
        "-no-reboot",
        "-kernel",
        a.kernel.to_str().expect("utf-8 path"),
        "-initrd",
        a.initramfs.to_str().expect("utf-8 path"),
        "-append",
        &format!("console=ttyS0 quiet panic=-1 {kernel_ip} sn_peer={peer}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Run one case: attach, boot, ping both ways, check the markers. Returns the console.
fn run(case: &Case) -> String {
    let started = Instant::now();
    let net: ScratchNet = scratch(1);
    let link = net.links[0].clone();
    let state = TempStateDir::new();
    let dir = state.path();
    let queues = case.queues.to_string();
    let (code, out, err) = sn(
        dir,
        &[
            "attach",
            "--netns",
            &net.pod_name,
            "--id",
            case.id,
            "--model",
            case.model,
            "--queues",
            &queues,
            "--dns",
            DNS,
            "--json",
        ],
    );
    assert_eq!(code, 0, "attach: {err}");
    // Detaches (CLI-independent, through the library) on drop.
    let _attached = DetachOnDrop::new(dir, case.id);
    let attachment: Value = serde_json::from_str(&out).expect("attach JSON");
    let ep = &attachment["endpoints"][0];
    let mac = ep["mac"].as_str().expect("mac").to_string();

    let (code, kernel_ip, err) = sn(
        dir,
        &["guest-config", "--id", case.id, "--format", "kernel-ip"],
    );
    assert_eq!(code, 0, "guest-config: {err}");
    let kernel_ip = kernel_ip.trim().to_string();
    assert_eq!(
        kernel_ip,
        format!(
            "ip={}::{}:255.255.255.0::{}:off:{DNS}",
            link.pod_v4, link.peer_v4, link.name
        )
    );

    if case.remove_filters {
        let tap = ep["tap"].as_str().expect("tap");
        for dev in [link.name.as_str(), tap] {
            run_cmd(
                "tc",
                &["-n", &net.pod_name, "filter", "del", "dev", dev, "ingress"],
            );
        }
    }

    let base = qemu_base(&kernel_ip, link.peer_v4, case.queues.min(2));
    let cmd = match case.launch {
        Launch::ByName => {
            let (code, out, err) = sn(
                dir,
                &["vmm-args", "--id", case.id, "--vmm", "qemu", "--json"],
            );
            assert_eq!(code, 0, "vmm-args: {err}");
            let args: Value = serde_json::from_str(&out).expect("vmm-args JSON");
            assert_eq!(args["run_in_netns"], true, "{out}");
            let mut cmd = Command::new("nsenter");
            cmd.arg(format!("--net=/run/netns/{}", net.pod_name))
                .arg(QEMU)
                .args(&base)
                .args(
                    args["args"]
                        .as_array()
                        .expect("args")
                        .iter()
                        .map(|a| a.as_str().expect("string arg")),
                );
            cmd
        }
        Launch::Exec => {
            let mut cmd = Command::new(bin());
            cmd.args(["--state-dir", dir.to_str().expect("utf-8")])
                .args(["exec", "--id", case.id, "--vmm", "qemu", "--", QEMU])
                .args(&base);
            cmd
        }
    };
    eprintln!("[{}] boot: {cmd:?}", case.id);
    let mut vm = Vm::spawn(cmd);

    let configured = vm.wait_marker("configured ", &[]).unwrap_or_else(|| {
        panic!(
            "[{}] guest never configured its NIC:\n{}",
            case.id,
            vm.transcript()
        )
    });
    assert!(
        configured.contains(&format!("mac {mac}")) && configured.contains(&format!("dns {DNS}")),
        "[{}] {configured}",
        case.id
    );
    let guest_queues = vm.wait_marker("queues ", &[]).unwrap_or_default();
    assert_eq!(
        guest_queues,
        format!("queues {}", case.queues),
        "[{}]",
        case.id
    );
    let ping = vm.wait_marker("ping ", &[]);
    let ping = ping.unwrap_or_else(|| panic!("[{}] no ping marker:\n{}", case.id, vm.transcript()));

    if case.remove_filters {
        assert!(
            ping.starts_with("ping fail"),
            "[{}] negative control: without the filters the guest must not reach the peer, got {ping:?}\n{}",
            case.id,
            vm.transcript()
        );
        let (status, _) = vm.wait_exit();
        assert!(status.success(), "[{}] QEMU: {status}", case.id);
        eprintln!(
            "[{}] negative control ok in {:.1} s",
            case.id,
            started.elapsed().as_secs_f64()
        );
        return vm.transcript();
    }
    assert!(
        ping.starts_with("ping ok"),
        "[{}] the guest could not ping the peer: {ping:?}\n{}",
        case.id,
        vm.transcript()
    );

    // The peer pings the guest; the guest counts the echo requests it answered, so a reply
    // from anything else (the pod netns owns the same address) would not pass.
    let rtts = net
        .peer
        .run(|| peer::ping_from_current_netns(IpAddr::V4(link.pod_v4), 3, Duration::from_secs(3)))
        .expect("enter the peer netns")
        .unwrap_or_else(|e| panic!("[{}] peer -> guest: {e}\n{}", case.id, vm.transcript()));
    assert_eq!(rtts.len(), 3, "[{}] peer -> guest replies", case.id);
    let answered = vm
        .wait_marker("echo requests answered ", &[])
        .unwrap_or_else(|| panic!("[{}] no answered marker:\n{}", case.id, vm.transcript()));
    let n: u32 = answered
        .trim_start_matches("echo requests answered ")
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(n >= 3, "[{}] the guest answered {n} echo requests", case.id);

    let (status, stderr) = vm.wait_exit();
    assert!(status.success(), "[{}] QEMU: {status}\n{stderr}", case.id);
    if case.launch == Launch::Exec && !Path::new("/dev/vhost-net").exists() {
        assert_eq!(
            stderr
                .matches("sandbox-net: warning: /dev/vhost-net")
                .count(),
            1,
            "[{}] exactly one vhost-net warning: {stderr}",
            case.id
        );
    }
    eprintln!(
        "[{}] ok in {:.1} s: guest -> peer ok, peer -> guest rtts {:?}",
        case.id,
        started.elapsed().as_secs_f64(),
        rtts
    );
    vm.transcript()
}

fn run_cmd(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tcfilter_one_queue_qemu_opens_the_tap_by_name() {
    run(&Case {
        id: "e2e-tc1",
        model: "tcfilter",
        queues: 1,
        launch: Launch::ByName,
        remove_filters: false,
    });
}

#[test]
fn tcfilter_two_queues_through_exec_fd_passing() {
    run(&Case {
        id: "e2e-tc2",
        model: "tcfilter",
        queues: 2,
        launch: Launch::Exec,
        remove_filters: false,
    });
}

#[test]
fn macvtap_through_exec() {
    run(&Case {
        id: "e2e-mvt",
        model: "macvtap",
        queues: 1,
        launch: Launch::Exec,
        remove_filters: false,
    });
}

#[test]
fn negative_control_without_filters_the_guest_is_cut_off() {
    let console = run(&Case {
        id: "e2e-neg",
        model: "tcfilter",
        queues: 1,
        launch: Launch::ByName,
        remove_filters: true,
    });
    assert!(!console.contains("SANDBOX-NET-E2E: ping ok"), "{console}");
}
