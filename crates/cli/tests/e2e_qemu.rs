//! End to end: a real VM (QEMU under TCG, a Debian cloud kernel, a busybox initramfs built
//! by scripts/e2e-assets.sh) gets its network from sandbox-net, configures it from
//! `guest-config --format kernel-ip`, pings the peer, and is pinged by the peer. Then it
//! moves 4 MiB of random data over TCP each way (busybox nc in the guest, a Rust listener
//! and sender in the peer netns, sha256 compared on both sides) with the virtio-net
//! offloads on (checksum and TSO both ways, which the guest must negotiate; the test checks
//! the feature bits and that frames larger than the MTU crossed the tap: into the guest by
//! the tap's counters, out of it by a packet socket on the tap that sees each upload frame
//! whole; a guest that sent no TSO frame gets one more run, as a starved TCG guest may
//! choose not to). Cases run one at a time:
//! tcfilter with one queue (QEMU opens the tap by name, inside the pod netns, with the
//! arguments `vmm-args` printed), tcfilter with two queues through `sandbox-net exec`
//! (fd passing; QEMU in the caller's netns), macvtap through `exec`, l3 by name (the pod's
//! IP stack routes the guest's traffic; the guest also takes its IPv6 address and routes
//! from `guest-config` and pings and is pinged over IPv6), and a negative control whose
//! filters are deleted before the boot: its guest must not reach the peer.
//!
//! Needs root, qemu-system-x86, busybox-static and cpio (scripts/test.sh installs them).
//! Every netns, attachment and QEMU process is removed on success, failure or timeout.
//!
//! A test binary of its own, outside `it`: each case boots a VM under TCG within a
//! timeout, so the cases run after the other tests, not next to them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
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
/// Bytes moved over TCP each way.
const TCP_BYTES: usize = 4 << 20;
/// The peer's port the guest sends to, and the guest's port the peer sends to.
const TCP_UP_PORT: u16 = 7001;
const TCP_DOWN_PORT: u16 = 7002;
/// virtio-net feature bits the guest must negotiate for the offloads (virtio spec 5.1.3):
/// VIRTIO_NET_F_CSUM, _GUEST_CSUM, _GUEST_TSO4, _HOST_TSO4.
const OFFLOAD_BITS: [(usize, &str); 4] = [
    (0, "csum"),
    (1, "guest_csum"),
    (7, "guest_tso4"),
    (11, "host_tso4"),
];

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
    /// Also configure IPv6 in the guest (from `guest-config`) and ping both ways over it.
    ipv6: bool,
}

fn sn(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut full = vec!["--state-dir", dir.to_str().expect("utf-8 state dir")];
    full.extend_from_slice(args);
    run_bin(bin(), &full)
}

/// The QEMU command line without the network. With `tcp`, the guest moves TCP_BYTES each
/// way after the pings. The virtio-net offloads are QEMU's defaults; they are set here
/// explicitly so a changed default can't turn them off unnoticed.
fn qemu_base(kernel_ip: &str, peer: Ipv4Addr, smp: u32, tcp: bool, ipv6: &str) -> Vec<String> {
    let a = assets();
    let tcp_args = if tcp {
        format!(" sn_tcp_bytes={TCP_BYTES} sn_tcp_up={TCP_UP_PORT} sn_tcp_down={TCP_DOWN_PORT}")
    } else {
        String::new()
    };
    let mut args: Vec<String> = [
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
        &format!(
            "console=ttyS0 quiet panic=-1 no_timer_check {kernel_ip} sn_peer={peer}{tcp_args}{ipv6}"
        ),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for prop in [
        "csum",
        "guest_csum",
        "gso",
        "host_tso4",
        "guest_tso4",
        "host_tso6",
        "guest_tso6",
        "mrg_rxbuf",
    ] {
        args.extend(["-global".into(), format!("virtio-net-pci.{prop}=on")]);
    }
    args
}

/// The guest's IPv6 configuration as init arguments (`sn_ip6=ADDR/LEN`,
/// `sn_route6=DST,GATEWAY`, `sn_peer6=PEER`), from the `guest-config` JSON of interface
/// `dev`: its global IPv6 addresses and the IPv6 routes through it.
fn ipv6_args(guest: &Value, dev: &str, peer: Ipv6Addr) -> String {
    let iface = guest["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["name"] == dev)
        .unwrap_or_else(|| panic!("no interface {dev} in {guest}"));
    let mut args = String::new();
    for a in iface["addresses"].as_array().into_iter().flatten() {
        if a["family"] == "inet6" {
            args += &format!(
                " sn_ip6={}/{}",
                a["address"].as_str().expect("address"),
                a["prefix_len"]
            );
        }
    }
    for r in guest["routes"].as_array().into_iter().flatten() {
        if r["family"] == "inet6" && r["device"] == dev {
            let gw = r["gateway"]
                .as_str()
                .unwrap_or_else(|| panic!("IPv6 route without a gateway: {r}"));
            args += &format!(" sn_route6={},{gw}", r["dst"].as_str().expect("dst"));
        }
    }
    assert!(
        args.contains("sn_ip6=") && args.contains("sn_route6="),
        "no IPv6 in {guest}"
    );
    args + &format!(" sn_peer6={peer}")
}

/// The sha256 of `data`, as `sha256sum` prints it.
fn sha256(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("feed sha256sum");
    let out = child.wait_with_output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// (digest, bytes) of a "tcp up|down sha256 HEX bytes N" marker.
fn digest_marker(marker: &str) -> (String, usize) {
    let words: Vec<&str> = marker.split_whitespace().collect();
    match words.as_slice() {
        [_, _, "sha256", hex, "bytes", n] => (hex.to_string(), n.parse().unwrap_or(0)),
        _ => panic!("bad digest marker {marker:?}"),
    }
}

/// Frames and bytes a device counted, as (packets, bytes) received and sent.
fn link_counts(ns: &str, dev: &str) -> [(u64, u64); 2] {
    let l = ip_json(ns, &["-s", "link", "show", "dev", dev]);
    let s = &l[0]["stats64"];
    let pair = |d: &str| {
        (
            s[d]["packets"].as_u64().expect("packets"),
            s[d]["bytes"].as_u64().expect("bytes"),
        )
    };
    [pair("rx"), pair("tx")]
}

/// Accept one connection on `listener` (within the boot timeout) and read it to the end.
fn receive_all(listener: TcpListener) -> std::io::Result<Vec<u8>> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let (mut conn, _) = loop {
        match listener.accept() {
            Ok(c) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(e),
        }
    };
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut data = Vec::with_capacity(TCP_BYTES);
    conn.read_to_end(&mut data)?;
    Ok(data)
}

/// The TCP part of a case (after the pings): guest -> peer on TCP_UP_PORT, then peer ->
/// guest on TCP_DOWN_PORT, digests compared on both sides; the negotiated offloads checked,
/// and frames larger than the MTU seen crossing `vmm_dev` (the tap or macvtap) both ways.
fn tcp_both_ways(
    case: &Case,
    vm: &mut Vm,
    net: &ScratchNet,
    up: std::thread::JoinHandle<std::io::Result<Vec<u8>>>,
    vmm_dev: &str,
) -> Result<(), String> {
    let id = case.id;
    let pod_v4 = net.links[0].pod_v4;
    let started = Instant::now();
    let capture = UploadCapture::start(net, vmm_dev)
        .unwrap_or_else(|e| panic!("[{id}] capture on {vmm_dev}: {e}"));
    let before = link_counts(&net.pod_name, vmm_dev);
    let features = vm
        .wait_marker("features ", &[])
        .unwrap_or_else(|| panic!("[{id}] no features marker:\n{}", vm.transcript()));
    let bits: Vec<char> = features
        .trim_start_matches("features ")
        .trim()
        .chars()
        .collect();
    let on: Vec<&str> = OFFLOAD_BITS
        .iter()
        .filter(|(bit, _)| bits.get(*bit) == Some(&'1'))
        .map(|(_, name)| *name)
        .collect();
    assert_eq!(
        on.len(),
        OFFLOAD_BITS.len(),
        "[{id}] offloads negotiated: {on:?} of {OFFLOAD_BITS:?} ({features})"
    );

    // Guest -> peer.
    let up_marker = vm
        .wait_marker("tcp up sha256 ", &[])
        .unwrap_or_else(|| panic!("[{id}] no upload digest:\n{}", vm.transcript()));
    let (guest_digest, guest_bytes) = digest_marker(&up_marker);
    let sent = vm.wait_marker("tcp up sent ", &[]).unwrap_or_default();
    assert_eq!(sent, "tcp up sent rc 0", "[{id}]\n{}", vm.transcript());
    let received = up
        .join()
        .expect("upload receiver thread")
        .unwrap_or_else(|e| panic!("[{id}] peer receiving the upload: {e}"));
    assert_eq!(
        (guest_bytes, received.len()),
        (TCP_BYTES, TCP_BYTES),
        "[{id}] upload size"
    );
    assert_eq!(sha256(&received), guest_digest, "[{id}] upload digest");
    let uploaded = link_counts(&net.pod_name, vmm_dev);
    let upload_s = started.elapsed().as_secs_f64();
    let (upload_frames, largest_upload) = capture.stop();

    // Peer -> guest.
    vm.wait_marker("tcp listening ", &[])
        .unwrap_or_else(|| panic!("[{id}] the guest never listened:\n{}", vm.transcript()));
    let mut data = vec![0u8; TCP_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut data))
        .expect("random data");
    let addr = SocketAddr::from((pod_v4, TCP_DOWN_PORT));
    net.peer
        .run(|| -> std::io::Result<()> {
            let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
            conn.set_write_timeout(Some(Duration::from_secs(60)))?;
            conn.set_read_timeout(Some(Duration::from_secs(60)))?;
            conn.write_all(&data)?;
            conn.shutdown(Shutdown::Write)?;
            // The guest's nc closes once it has read everything.
            let mut rest = Vec::new();
            conn.read_to_end(&mut rest)?;
            Ok(())
        })
        .expect("enter the peer netns")
        .unwrap_or_else(|e| panic!("[{id}] peer -> guest TCP: {e}\n{}", vm.transcript()));
    let down_marker = vm
        .wait_marker("tcp down sha256 ", &[])
        .unwrap_or_else(|| panic!("[{id}] no download digest:\n{}", vm.transcript()));
    let (digest, bytes) = digest_marker(&down_marker);
    assert_eq!(bytes, TCP_BYTES, "[{id}] download size");
    assert_eq!(digest, sha256(&data), "[{id}] download digest");

    // Segmentation offload crossed the plumbing: the guest's TSO frames arrive on the tap
    // (tun counts what the guest writes as received; a macvtap as sent) and the peer's
    // GSO frames leave through it whole, so the average data frame of each transfer (its
    // phase, without the ACKs going the other way) exceeds a 1514-byte one.
    let after = link_counts(&net.pod_name, vmm_dev);
    let avg = |a: [(u64, u64); 2], b: [(u64, u64); 2], i: usize| {
        let (p, bytes) = (b[i].0 - a[i].0, b[i].1 - a[i].1);
        (p, bytes / p.max(1))
    };
    let (written, read) = if case.model == "macvtap" {
        (1, 0)
    } else {
        (0, 1)
    };
    let from_guest = avg(before, uploaded, written);
    let to_guest = avg(uploaded, after, read);
    eprintln!(
        "[{id}] TCP {TCP_BYTES} B each way in {upload_s:.1} + {:.1} s, digests match; \
         offloads {on:?}; through {vmm_dev}: upload {} frames of {} B on average, download \
         {} frames of {} B",
        started.elapsed().as_secs_f64() - upload_s,
        from_guest.0,
        from_guest.1,
        to_guest.0,
        to_guest.1
    );
    assert!(
        to_guest.1 > 1514,
        "[{id}] no frame larger than the MTU crossed {vmm_dev} to the guest: {to_guest:?} \
         (packets, average bytes)"
    );
    // Whether the guest's TCP builds TSO frames is its own choice (a TCG guest slowed down
    // by a busy host sometimes sends one segment per frame): the caller runs the case once
    // more before calling it a failure. Any one upload frame larger than the MTU proves
    // that segmentation offload crossed.
    eprintln!(
        "[{id}] upload frames seen on {vmm_dev}: {upload_frames}, the largest {largest_upload} B"
    );
    if largest_upload > 1514 {
        Ok(())
    } else {
        Err(format!(
            "[{id}] no upload frame larger than the MTU crossed {vmm_dev} from the guest: \
             {upload_frames} frames, the largest {largest_upload} B ({from_guest:?}: packets, \
             average bytes)"
        ))
    }
}

/// Watches the frames carrying the guest's upload (IPv4 TCP to `TCP_UP_PORT`) as they cross
/// the tap or macvtap, with an `AF_PACKET` socket in the pod netns: how many, and the
/// largest (a segmentation-offload frame is larger than the MTU; the packet socket sees it
/// whole, before any segmentation).
struct UploadCapture {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    reader: std::thread::JoinHandle<(u64, usize)>,
}

impl UploadCapture {
    fn start(net: &ScratchNet, dev: &str) -> std::io::Result<UploadCapture> {
        use std::os::fd::{AsRawFd, OwnedFd};
        let fd = net
            .pod
            .run(|| -> std::io::Result<OwnedFd> {
                let index = sandbox_net::tap::ifindex(dev)?;
                let fd = sandbox_net_testkit::packet::bound(index, libc::ETH_P_ALL as u16)?;
                let tv = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 50_000,
                };
                // SAFETY: setsockopt reads a timeval of the given size that outlives the call.
                let rc = unsafe {
                    libc::setsockopt(
                        fd.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_RCVTIMEO,
                        &tv as *const libc::timeval as *const libc::c_void,
                        std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                    )
                };
                if rc < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(fd)
            })
            .map_err(|e| std::io::Error::other(e.to_string()))??;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let reader = std::thread::spawn(move || {
            let (mut frames, mut largest) = (0u64, 0usize);
            let mut buf = [0u8; 128];
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: recv writes at most buf.len() bytes into the buffer we own;
                // MSG_TRUNC makes it return the frame's real length.
                let n = unsafe {
                    libc::recv(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_TRUNC,
                    )
                };
                let Ok(len) = usize::try_from(n) else {
                    continue;
                };
                if is_upload(&buf[..len.min(buf.len())]) {
                    frames += 1;
                    largest = largest.max(len);
                }
            }
            (frames, largest)
        });
        Ok(UploadCapture { stop, reader })
    }

    /// The upload frames seen and the largest one's length.
    fn stop(self) -> (u64, usize) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.reader.join().expect("capture thread")
    }
}

/// An Ethernet frame of IPv4 TCP to `TCP_UP_PORT`.
fn is_upload(frame: &[u8]) -> bool {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] || frame[23] != 6 {
        return false;
    }
    let tcp = 14 + usize::from(frame[14] & 0x0f) * 4;
    frame.len() >= tcp + 4 && u16::from_be_bytes([frame[tcp + 2], frame[tcp + 3]]) == TCP_UP_PORT
}

/// Run `case` ([`run`]); when the only failure was a guest that sent no TSO frame, run it
/// once more and fail if it again sends none. Returns the console.
fn run_case(case: &Case) -> String {
    // One guest at a time: TCG guests side by side on a small machine starve each other
    // (boots time out, a starved guest's TCP stops building TSO frames).
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (console, upload) = run(case);
    let Err(why) = upload else {
        return console;
    };
    eprintln!("{why}: running the case once more");
    let (console, upload) = run(case);
    if let Err(why) = upload {
        panic!("{why} (twice)");
    }
    console
}

/// Run one case: attach, boot, ping both ways, check the markers. Returns the console, and
/// whether frames larger than the MTU came from the guest (Err naming what crossed).
fn run(case: &Case) -> (String, Result<(), String>) {
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

    let ipv6 = if case.ipv6 {
        let (code, out, err) = sn(dir, &["guest-config", "--id", case.id]);
        assert_eq!(code, 0, "guest-config: {err}");
        let guest: Value = serde_json::from_str(&out).expect("guest-config JSON");
        let args = ipv6_args(&guest, &link.name, link.peer_v6);
        if case.model == "l3" {
            // Behind l3 the guest has each address as a /128 and routes via the tap.
            let gw = sandbox_net::model::l3::GATEWAY_V6;
            assert!(
                args.contains(&format!(" sn_ip6={}/128", link.pod_v6)),
                "{args}"
            );
            assert!(args.contains(&format!("sn_route6=default,{gw}")), "{args}");
        }
        args
    } else {
        String::new()
    };
    let tcp = !case.remove_filters;
    let base = qemu_base(&kernel_ip, link.peer_v4, case.queues.min(2), tcp, &ipv6);
    // The peer listens for the guest's upload before the guest boots.
    let up = tcp.then(|| {
        let listener = net
            .peer
            .run(|| TcpListener::bind((link.peer_v4, TCP_UP_PORT)))
            .expect("enter the peer netns")
            .expect("listen in the peer netns");
        std::thread::spawn(move || receive_all(listener))
    });
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
        return (vm.transcript(), Ok(()));
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
    let rtts6 = case.ipv6.then(|| ping6_both_ways(case, &mut vm, &net));
    let mut upload = Ok(());
    if let Some(up) = up {
        let vmm_dev = ep["tap"].as_str().expect("tap");
        upload = tcp_both_ways(case, &mut vm, &net, up, vmm_dev);
    }

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
        "[{}] ok in {:.1} s: guest -> peer ok, peer -> guest rtts {:?}, over IPv6 {:?}",
        case.id,
        started.elapsed().as_secs_f64(),
        rtts,
        rtts6
    );
    (vm.transcript(), upload)
}

/// The guest pings the peer's IPv6 address, then the peer pings the guest's 3 times; the
/// guest counts the echo requests it answered. Returns the peer's round-trip times.
fn ping6_both_ways(case: &Case, vm: &mut Vm, net: &ScratchNet) -> Vec<Duration> {
    let id = case.id;
    let link = &net.links[0];
    let ping = vm
        .wait_marker("ping6 ", &[])
        .unwrap_or_else(|| panic!("[{id}] no ping6 marker:\n{}", vm.transcript()));
    assert!(
        ping.starts_with("ping6 ok"),
        "[{id}] the guest could not ping the peer over IPv6: {ping:?}\n{}",
        vm.transcript()
    );
    let rtts = net
        .peer
        .run(|| peer::ping_from_current_netns(IpAddr::V6(link.pod_v6), 3, Duration::from_secs(3)))
        .expect("enter the peer netns")
        .unwrap_or_else(|e| panic!("[{id}] peer -> guest over IPv6: {e}\n{}", vm.transcript()));
    assert_eq!(rtts.len(), 3, "[{id}] peer -> guest IPv6 replies");
    let answered = vm
        .wait_marker("echo6 requests answered ", &[])
        .unwrap_or_else(|| panic!("[{id}] no echo6 marker:\n{}", vm.transcript()));
    let n: u32 = answered
        .trim_start_matches("echo6 requests answered ")
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(n >= 3, "[{id}] the guest answered {n} IPv6 echo requests");
    rtts
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
    run_case(&Case {
        id: "e2e-tc1",
        model: "tcfilter",
        queues: 1,
        launch: Launch::ByName,
        remove_filters: false,
        ipv6: false,
    });
}

#[test]
fn tcfilter_two_queues_through_exec_fd_passing() {
    run_case(&Case {
        id: "e2e-tc2",
        model: "tcfilter",
        queues: 2,
        launch: Launch::Exec,
        remove_filters: false,
        ipv6: false,
    });
}

#[test]
fn macvtap_through_exec() {
    run_case(&Case {
        id: "e2e-mvt",
        model: "macvtap",
        queues: 1,
        launch: Launch::Exec,
        remove_filters: false,
        ipv6: false,
    });
}

#[test]
fn l3_qemu_opens_the_tap_by_name_dual_stack() {
    run_case(&Case {
        id: "e2e-l3",
        model: "l3",
        queues: 1,
        launch: Launch::ByName,
        remove_filters: false,
        ipv6: true,
    });
}

#[test]
fn negative_control_without_filters_the_guest_is_cut_off() {
    let console = run_case(&Case {
        id: "e2e-neg",
        model: "tcfilter",
        queues: 1,
        launch: Launch::ByName,
        remove_filters: true,
        ipv6: false,
    });
    assert!(!console.contains("SANDBOX-NET-E2E: ping ok"), "{console}");
}
