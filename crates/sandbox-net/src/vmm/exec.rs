//! `sandbox-net exec`: open every queue of every tap and macvtap inside the sandbox netns
//! (and one `/dev/vhost-net` per queue when available), place the fds at known numbers,
//! append the matching QEMU arguments, and exec the VMM in the caller's netns.

use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use super::fdmap::FdMap;
use super::{FIRST_FD, VHOST_NET, Vmm, VmmArgs, fd_layout, open_endpoint_queues, qemu};
use crate::sandbox::Sandbox;
use crate::{Error, Result};

/// Everything opened and rendered, ready to exec.
#[derive(Debug)]
pub struct ExecPlan {
    /// The arguments appended to the VMM command (`-netdev ... -device ...`).
    pub args: Vec<String>,
    /// Whether the VMM gets vhost-net fds.
    pub vhost: bool,
    /// Problems that did not stop the exec (no vhost-net), one sentence each.
    pub warnings: Vec<String>,
    fds: FdMap,
}

fn open_vhost(count: u32) -> io::Result<Vec<OwnedFd>> {
    (0..count)
        .map(|_| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(VHOST_NET)
                .map(OwnedFd::from)
        })
        .collect()
}

/// Open every queue in the sandbox's netns and render the arguments. Only QEMU takes fds
/// this way.
pub fn prepare_exec(sandbox: &mut Sandbox, vmm: Vmm, want_vhost: bool) -> Result<ExecPlan> {
    if vmm != Vmm::Qemu {
        return Err(Error::invalid(
            format!("--vmm {vmm}"),
            "exec passes queue fds to QEMU only; for other VMMs use vmm-args and run the VMM \
             inside the sandbox netns",
        ));
    }
    let state = &sandbox.state;
    let (netns, _) = sandbox.place.netns(&state.id, "open its queues")?;
    let opened = netns.run(|| {
        state
            .endpoints
            .iter()
            .map(|ep| match ep.fd_queues() {
                Some(_) => open_endpoint_queues(ep).map(Some).map_err(|e| (ep, e)),
                None => Ok(None),
            })
            .collect::<std::result::Result<Vec<_>, _>>()
    })?;
    let queue_fds = opened.map_err(|(ep, e)| {
        let step = if e.raw_os_error() == Some(libc::EBUSY) {
            "open its queues (busy: is a VMM already using it?)"
        } else {
            "open its queues"
        };
        Error::kernel(
            format!(
                "{} {} (endpoint {}) in netns {}",
                ep.kind.as_str(),
                ep.device().unwrap_or_default(),
                ep.name,
                netns.display()
            ),
            step,
            e,
        )
    })?;
    let total_queues: u32 = state.endpoints.iter().filter_map(|ep| ep.fd_queues()).sum();
    let mut warnings = Vec::new();
    let mut vhost_fds = Vec::new();
    let mut vhost = false;
    if want_vhost && total_queues > 0 {
        match open_vhost(total_queues) {
            Ok(fds) => {
                vhost_fds = fds;
                vhost = true;
            }
            Err(e) => warnings.push(format!(
                "{VHOST_NET}: {e}; QEMU runs without vhost-net (vhost=off)"
            )),
        }
    }
    // Order the fds as `fd_layout` numbers them: per endpoint, queues then vhost.
    let mut ordered = Vec::new();
    let mut vhost_iter = vhost_fds.into_iter();
    for (ep, fds) in state.endpoints.iter().zip(queue_fds) {
        let Some(fds) = fds else { continue };
        let queues = fds.len();
        ordered.extend(fds);
        if vhost {
            ordered.extend(vhost_iter.by_ref().take(queues));
        }
        tracing::debug!(endpoint = %ep.name, queues, vhost, "opened");
    }
    let fds = FdMap::new(ordered, FIRST_FD)
        .map_err(|e| Error::kernel(format!("sandbox {}", state.id), "place the queue fds", e))?;
    let layout = fd_layout(&state.endpoints, vhost);
    let mut rendered = VmmArgs {
        id: state.id.clone(),
        vmm,
        netns: state.netns_path.clone(),
        run_in_netns: false,
        needs_exec: true,
        vhost: Some(vhost),
        args: Vec::new(),
        network_interfaces: None,
        fds: Vec::new(),
        notes: Vec::new(),
    };
    qemu::render_with(state, vhost, Some(&layout), &mut rendered);
    Ok(ExecPlan {
        args: rendered.args,
        vhost,
        warnings,
        fds,
    })
}

impl ExecPlan {
    /// How many fds the VMM inherits.
    pub fn fd_count(&self) -> usize {
        self.fds.len()
    }

    /// Replace this process with `program args... <self.args>`, the fds in place. Returns
    /// only on failure.
    pub fn exec(self, program: &OsStr, args: &[OsString]) -> Error {
        let mut cmd = Command::new(program);
        cmd.args(args).args(&self.args);
        self.fds.install(&mut cmd);
        tracing::info!(
            command = %std::iter::once(program.to_string_lossy().into_owned())
                .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
                .chain(self.args.iter().cloned())
                .map(|a| super::shell_quote(&a))
                .collect::<Vec<_>>()
                .join(" "),
            fds = ?self.fds.targets(),
            "exec"
        );
        let error = cmd.exec();
        Error::kernel(format!("VMM {}", program.to_string_lossy()), "exec", error)
    }
}
