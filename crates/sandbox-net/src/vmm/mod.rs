//! What a VMM needs to use an attachment: the command-line arguments (QEMU, Cloud
//! Hypervisor) or API objects (Firecracker) for every endpoint, rendered from the state,
//! and `exec`, which opens the queues itself and hands them to QEMU as inherited fds.
//!
//! Two ways to give a VMM a tap:
//! - **by name**: the VMM opens the persistent tap itself through `/dev/net/tun`, which
//!   finds devices in the netns of the calling thread, so the VMM must run inside the
//!   sandbox netns (`ip netns exec`, `nsenter --net=`, Firecracker's jailer `--netns`);
//! - **by fd**: `sandbox-net exec` opens every queue inside the netns and passes the fds,
//!   so the VMM runs in the caller's netns. A macvtap can only be given this way.

mod cloud_hypervisor;
mod exec;
mod fdmap;
mod firecracker;
mod handoff;
mod qemu;
mod queues;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;

pub use exec::Placed;
#[doc(hidden)]
pub use exec::{ExecPlan, prepare_exec};
pub use firecracker::FirecrackerInterface;
pub use handoff::{EndpointQueues, Handoff, HandoffOptions, handoff};
pub use qemu::netdev_id;
#[doc(hidden)]
pub use queues::open_endpoint_queues;

use crate::endpoint::{Backend, Endpoint};
use crate::ops::Attachment;
use crate::sandbox::{Access, Sandbox};
use crate::state::State;
use crate::{Error, Result};

/// The device that gives the kernel's vhost-net to QEMU.
pub const VHOST_NET: &str = "/dev/vhost-net";
/// The first fd number `exec` places queue fds at (after stdin, stdout and stderr).
pub const FIRST_FD: i32 = 3;

/// The VMMs sandbox-net renders for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Vmm {
    /// QEMU.
    Qemu,
    /// Cloud Hypervisor.
    CloudHypervisor,
    /// Firecracker.
    Firecracker,
}

impl Vmm {
    /// The names `--vmm` takes.
    pub const NAMES: &'static [&'static str] = &["qemu", "cloud-hypervisor", "firecracker"];

    /// The VMM's name, as `--vmm` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Vmm::Qemu => "qemu",
            Vmm::CloudHypervisor => "cloud-hypervisor",
            Vmm::Firecracker => "firecracker",
        }
    }
}

impl fmt::Display for Vmm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Vmm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Vmm> {
        match s {
            "qemu" => Ok(Vmm::Qemu),
            "cloud-hypervisor" => Ok(Vmm::CloudHypervisor),
            "firecracker" => Ok(Vmm::Firecracker),
            other => Err(Error::invalid(
                format!("VMM {other:?}"),
                format!("unknown VMM (known: {})", Vmm::NAMES.join(", ")),
            )),
        }
    }
}

/// The queues the VMM opens for an endpoint (at least one).
fn queues(ep: &Endpoint) -> u32 {
    ep.queues.max(1)
}

/// The MAC of the guest NIC as VMM arguments carry it (empty when there is none).
fn guest_mac(ep: &Endpoint) -> String {
    crate::mac::text_or_empty(ep.mac)
}

/// The fd numbers one endpoint's queues (and vhost-net fds) have in the VMM: chosen by
/// the caller, or by [`fd_layout`] (as `exec` places them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointFds {
    /// The endpoint (interface name in the netns).
    pub endpoint: String,
    /// One fd per queue of the tap or macvtap.
    pub queue_fds: Vec<i32>,
    /// One `/dev/vhost-net` fd per queue (empty without vhost).
    pub vhost_fds: Vec<i32>,
}

/// Consecutive fd numbers from `first` for every endpoint with queues, in order: each
/// one's queue fds, then its vhost fds when `vhost`.
pub fn fd_layout(endpoints: &[Endpoint], vhost: bool, first: i32) -> Vec<EndpointFds> {
    let mut next = first;
    let mut take = |n: u32| -> Vec<i32> {
        let fds: Vec<i32> = (0..n as i32).map(|i| next + i).collect();
        next += n as i32;
        fds
    };
    endpoints
        .iter()
        .filter_map(|ep| {
            ep.fd_queues().map(|queues| EndpointFds {
                endpoint: ep.name.clone(),
                queue_fds: take(queues),
                vhost_fds: if vhost { take(queues) } else { Vec::new() },
            })
        })
        .collect()
}

/// Caller-chosen fd numbers must cover every endpoint with queues, one number per queue
/// (and per vhost fd: none, or as many as queues), and name no other endpoint.
fn check_numbers(endpoints: &[Endpoint], numbers: &[EndpointFds]) -> Result<()> {
    for n in numbers {
        let what = || format!("fd numbers for endpoint {}", n.endpoint);
        let Some(ep) = endpoints.iter().find(|e| e.name == n.endpoint) else {
            return Err(Error::invalid(
                what(),
                "the attachment has no such endpoint",
            ));
        };
        let Some(queues) = ep.fd_queues() else {
            return Err(Error::invalid(
                what(),
                "it has no tap or macvtap: nothing is passed as fds",
            ));
        };
        let fits = n.queue_fds.len() == queues as usize
            && (n.vhost_fds.is_empty() || n.vhost_fds.len() == queues as usize);
        if !fits {
            return Err(Error::invalid(
                what(),
                format!("it has {queues} queue(s): give as many queue fds (and vhost fds, if any)"),
            ));
        }
    }
    let uncovered = endpoints
        .iter()
        .find(|ep| ep.fd_queues().is_some() && !numbers.iter().any(|n| n.endpoint == ep.name));
    if let Some(ep) = uncovered {
        return Err(Error::invalid(
            format!("fd numbers for endpoint {}", ep.name),
            "missing: every tap and macvtap goes by fd once any does",
        ));
    }
    Ok(())
}

/// How to render.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// QEMU: use vhost-net (`vhost=on`).
    pub vhost: bool,
    /// QEMU: render every tap in the fd form `exec` uses (fds from 3 up), even when it
    /// could be opened by name.
    pub fds: bool,
    /// QEMU and Cloud Hypervisor: the fd numbers the caller gives each endpoint's queues
    /// in the VMM (e.g. from [`Handoff::numbered_from`]); every tap and macvtap then goes
    /// by fd. QEMU takes vhost-net fds too (`vhost` is then whether any are given).
    pub fd_numbers: Option<Vec<EndpointFds>>,
}

/// Everything a VMM needs for an attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VmmArgs {
    /// The sandbox id.
    pub id: String,
    /// The VMM rendered for.
    pub vmm: Vmm,
    /// The sandbox netns.
    pub netns: PathBuf,
    /// The VMM opens taps by name, so it must run inside `netns`.
    pub run_in_netns: bool,
    /// The arguments use fds that only `sandbox-net exec` provides.
    pub needs_exec: bool,
    /// QEMU: whether the arguments use vhost-net.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vhost: Option<bool>,
    /// Command-line arguments, one element per argument (QEMU, Cloud Hypervisor).
    pub args: Vec<String>,
    /// Firecracker: the `network-interfaces` entries (config file) or bodies of
    /// `PUT /network-interfaces/{iface_id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_interfaces: Option<Vec<FirecrackerInterface>>,
    /// The fd numbers the arguments refer to (fd form only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fds: Vec<EndpointFds>,
    /// What the user must know to use the arguments, one sentence each.
    pub notes: Vec<String>,
}

/// Whether this machine has vhost-net.
pub fn vhost_net_available() -> bool {
    Path::new(VHOST_NET).exists()
}

/// An exit-2 error about one endpoint that `vmm` can't use.
pub(crate) fn unsupported(vmm: Vmm, ep: &Endpoint, reason: impl Into<String>) -> Error {
    Error::invalid(format!("endpoint {} for {vmm}", ep.name), reason.into())
}

/// An attached sandbox to hand to a VMM ([`vmm_args`], [`prepare_exec`]): exit-2 errors
/// when it is not attached, when its attach never finished, or when another namespace is
/// at its netns's path now (what was rendered or opened would be the new namespace's
/// devices, not the sandbox's).
#[doc(hidden)]
pub fn open_attached(state_dir: &Path, id: &str) -> Result<Sandbox> {
    let sandbox = Sandbox::open(state_dir, id, Access::Read)?;
    sandbox.finished()?;
    sandbox
        .place
        .refuse_replaced(id, "hand its devices to a VMM")?;
    Ok(sandbox)
}

/// Render what `vmm` needs for every endpoint of an attached sandbox, from its state.
#[doc(hidden)]
pub fn vmm_args(state: &State, vmm: Vmm, opts: &RenderOptions) -> Result<VmmArgs> {
    let target = Target {
        id: &state.id,
        netns: &state.netns_path,
        is_static: state.is_static(),
        endpoints: &state.endpoints,
    };
    render_for(target, vmm, opts)
}

/// Render what `vmm` needs for every endpoint of `attachment` (QEMU: `-netdev` and
/// `-device` per endpoint, with ids from the interface names, see [`netdev_id`]; Cloud
/// Hypervisor: `--net`; Firecracker: `network-interfaces` entries with `iface_id` from the
/// interface name). With [`RenderOptions::fd_numbers`] the taps go by the caller's fds.
pub fn render(attachment: &Attachment, vmm: Vmm, opts: &RenderOptions) -> Result<VmmArgs> {
    let netns = PathBuf::from(&attachment.netns);
    let target = Target {
        id: &attachment.id,
        netns: &netns,
        is_static: attachment.netns.is_empty(),
        endpoints: &attachment.endpoints,
    };
    render_for(target, vmm, opts)
}

/// What is rendered for: a state's or an attachment's.
struct Target<'a> {
    id: &'a str,
    netns: &'a Path,
    is_static: bool,
    endpoints: &'a [Endpoint],
}

fn render_for(target: Target<'_>, vmm: Vmm, opts: &RenderOptions) -> Result<VmmArgs> {
    let mut out = VmmArgs {
        id: target.id.to_string(),
        vmm,
        netns: target.netns.to_path_buf(),
        run_in_netns: false,
        needs_exec: false,
        vhost: None,
        args: Vec::new(),
        network_interfaces: None,
        fds: Vec::new(),
        notes: Vec::new(),
    };
    let endpoints = target.endpoints;
    if let Some(numbers) = &opts.fd_numbers {
        if vmm == Vmm::Firecracker {
            return Err(Error::invalid(
                "fd numbers for Firecracker",
                "Firecracker opens its taps by name (run it in the sandbox netns); it takes no fds",
            ));
        }
        check_numbers(endpoints, numbers)?;
    }
    match vmm {
        Vmm::Qemu => qemu::render(endpoints, opts, &mut out)?,
        Vmm::CloudHypervisor => cloud_hypervisor::render(endpoints, opts, &mut out)?,
        Vmm::Firecracker => firecracker::render(endpoints, &mut out)?,
    }
    for ep in endpoints {
        if ep.backend == Backend::None {
            out.notes.push(format!(
                "endpoint {}: model none, nothing to hand to the VMM",
                ep.name
            ));
        }
    }
    if out.run_in_netns && target.is_static {
        out.notes.push(format!(
            "{vmm} opens the tap(s) by name: run it in the network namespace where the taps \
             are (the one `attach --config` ran in)"
        ));
    } else if out.run_in_netns {
        out.notes.push(format!(
            "{vmm} opens the tap(s) by name: run it inside the sandbox netns, e.g. \
             `ip netns exec {} ...` or `nsenter --net={} ...`",
            netns_label(target.netns),
            target.netns.display()
        ));
    }
    Ok(out)
}

/// `NAME` for `/run/netns/NAME`, else the path.
fn netns_label(path: &Path) -> String {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) if dir == Path::new(crate::netns::NETNS_RUN_DIR) => {
            name.to_string_lossy().into_owned()
        }
        _ => path.display().to_string(),
    }
}

/// Quote one argument for a POSIX shell, only when it needs it.
pub fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '-' | '_' | '.' | '/' | ',' | '=' | ':' | '@' | '+' | '%')
        });
    if safe {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tap endpoint (built through serde so that new optional fields need no change).
    pub fn endpoint(name: &str, tap: &str, queues: u32) -> Endpoint {
        serde_json::from_value(serde_json::json!({
            "name": name, "kind": "veth", "ifindex": 2, "tap": tap,
            "mac": "02:77:00:00:00:02", "mtu": 1500, "queues": queues
        }))
        .unwrap()
    }

    /// Neither vhost-net nor the fd form.
    pub const OPTS: &RenderOptions = &RenderOptions {
        vhost: false,
        fds: false,
        fd_numbers: None,
    };

    /// An attached tcfilter state with `endpoints`.
    pub fn state(endpoints: Vec<Endpoint>) -> State {
        serde_json::from_value(serde_json::json!({
            "version": 1, "id": "vm1", "netns": "pod1", "netns_path": "/run/netns/pod1",
            "netns_id": {"dev": 1, "ino": 2}, "model": "tcfilter", "phase": "attached",
            "endpoints": endpoints, "guest": {"interfaces": [], "routes": [], "neighbors": []},
            "journal": []
        }))
        .unwrap()
    }

    /// [`endpoint`] with another backend.
    pub fn with(mut ep: Endpoint, backend: Backend) -> Endpoint {
        ep.backend = backend;
        ep
    }

    #[test]
    fn vmm_names_round_trip() {
        for name in Vmm::NAMES {
            assert_eq!(name.parse::<Vmm>().unwrap().as_str(), *name);
        }
        assert!("kvmtool".parse::<Vmm>().is_err());
    }

    #[test]
    fn layout_gives_consecutive_fds_per_endpoint() {
        let none = endpoint("eth2", "", 1);
        let eps = [
            endpoint("eth0", "tap0_sn", 2),
            none,
            endpoint("eth1", "tap1_sn", 1),
        ];
        let l = fd_layout(&eps, true, FIRST_FD);
        assert_eq!(l.len(), 2, "eth2 has no queues");
        let (a, b) = (&l[0], &l[1]);
        assert_eq!(
            (a.queue_fds.as_slice(), a.vhost_fds.as_slice()),
            (&[3, 4][..], &[5, 6][..])
        );
        assert_eq!(
            (
                b.endpoint.as_str(),
                b.queue_fds.as_slice(),
                b.vhost_fds.as_slice()
            ),
            ("eth1", &[7][..], &[8][..])
        );
        let l = fd_layout(&eps, false, 10);
        assert_eq!(l[1].queue_fds, vec![12]);
    }

    #[test]
    fn caller_numbers_must_cover_every_queue() {
        let s = state(vec![
            endpoint("eth0", "tap0_sn", 2),
            endpoint("eth1", "tap1_sn", 1),
        ]);
        let mut numbers = fd_layout(&s.endpoints, false, 10);
        numbers[1].queue_fds.push(99);
        let opts = RenderOptions {
            fd_numbers: Some(numbers),
            ..RenderOptions::default()
        };
        assert_eq!(vmm_args(&s, Vmm::Qemu, &opts).unwrap_err().exit_code(), 2);
        let opts = RenderOptions {
            fd_numbers: Some(fd_layout(&s.endpoints[..1], false, 10)),
            ..RenderOptions::default()
        };
        let e = vmm_args(&s, Vmm::Qemu, &opts).unwrap_err().to_string();
        assert!(e.contains("eth1") && e.contains("missing"), "{e}");
    }

    #[test]
    fn caller_numbers_render_for_qemu_and_cloud_hypervisor() {
        let s = state(vec![
            endpoint("eth0", "tap0_sn", 2),
            endpoint("eth1", "tap1_sn", 1),
        ]);
        let opts = RenderOptions {
            fd_numbers: Some(fd_layout(&s.endpoints, true, 10)),
            ..RenderOptions::default()
        };
        let a = vmm_args(&s, Vmm::Qemu, &opts).unwrap();
        assert_eq!(
            a.args[1],
            "tap,id=sn-eth0,fds=10:11,vhost=on,vhostfds=12:13"
        );
        assert_eq!(a.args[5], "tap,id=sn-eth1,fd=14,vhost=on,vhostfd=15");
        let opts = RenderOptions {
            fd_numbers: Some(fd_layout(&s.endpoints, false, 10)),
            ..RenderOptions::default()
        };
        let a = vmm_args(&s, Vmm::CloudHypervisor, &opts).unwrap();
        assert_eq!(
            a.args,
            vec![
                "--net",
                "fd=[10,11],mac=02:77:00:00:00:02,num_queues=4,mtu=1500",
                "fd=[12],mac=02:77:00:00:00:02,num_queues=2,mtu=1500",
            ]
        );
        assert!(!a.run_in_netns);
    }

    #[test]
    fn netdev_ids_follow_the_interface_not_its_position() {
        let both = state(vec![
            endpoint("eth0", "tap0_sn", 1),
            endpoint("eth1", "tap1_sn", 1),
        ]);
        let after = state(vec![endpoint("eth1", "tap1_sn", 1)]);
        let a = vmm_args(&both, Vmm::Qemu, OPTS).unwrap();
        let b = vmm_args(&after, Vmm::Qemu, OPTS).unwrap();
        assert_eq!(
            a.args[5], b.args[1],
            "eth1 keeps its netdev after eth0 goes"
        );
        assert!(b.args[1].starts_with("tap,id=sn-eth1,"), "{}", b.args[1]);
        assert_eq!(netdev_id("a_b"), "sn-a_5fb");
        assert_eq!(netdev_id("a@b"), "sn-a_40b");
        assert_ne!(netdev_id("a_40b"), netdev_id("a@b"));
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(
            shell_quote("tap,id=sn0,ifname=tap0_sn"),
            "tap,id=sn0,ifname=tap0_sn"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn netns_labels() {
        assert_eq!(netns_label(Path::new("/run/netns/pod1")), "pod1");
        assert_eq!(netns_label(Path::new("/proc/42/ns/net")), "/proc/42/ns/net");
    }
}
