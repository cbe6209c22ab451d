//! Running the VMM with the queue fds in place: `sandbox-net exec` (open every queue of
//! every tap and macvtap through the [`handoff`](super::handoff()), place the fds from 3
//! up, append the matching QEMU arguments, and exec QEMU in the caller's netns), and the
//! same for a runtime that spawns its VMM as a child with fd numbers of its own
//! ([`Placed`], from [`Handoff::place`]).

use std::ffi::{OsStr, OsString};
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use super::fdmap::FdMap;
use super::handoff::{Handoff, HandoffOptions, handoff_in};
use super::{EndpointFds, FIRST_FD, RenderOptions, Vmm};
use crate::sandbox::Sandbox;
use crate::{Error, Result};

/// Fds waiting to be placed at chosen numbers in a program about to be spawned or
/// exec'd. They stay open as long as this lives: keep it until the spawn or exec.
#[derive(Debug)]
pub struct Placed {
    map: FdMap,
}

impl Placed {
    /// Place the fds in `cmd`'s child at their numbers (close-on-exec cleared on those
    /// only), for [`Command::spawn`] or [`CommandExt::exec`].
    pub fn install(&self, cmd: &mut Command) {
        self.map.install(cmd);
    }

    /// The fd numbers the program gets.
    pub fn targets(&self) -> Vec<RawFd> {
        self.map.targets()
    }
}

impl Handoff {
    /// Consecutive fd numbers from `first`, per endpoint its queues then its vhost-net fds,
    /// for [`RenderOptions::fd_numbers`] and [`Handoff::place`].
    pub fn numbered_from(&self, first: RawFd) -> Vec<EndpointFds> {
        let mut next = first;
        let mut take = |n: usize| -> Vec<RawFd> {
            let fds = (next..next + n as RawFd).collect();
            next += n as RawFd;
            fds
        };
        self.endpoints
            .iter()
            .map(|ep| EndpointFds {
                endpoint: ep.endpoint.clone(),
                queue_fds: take(ep.queues.len()),
                vhost_fds: take(ep.vhost.len()),
            })
            .collect()
    }

    /// Give every fd its number in the VMM: `numbers` names, per endpoint, one number per
    /// queue and one per vhost-net fd (as [`Handoff::numbered_from`] does, or chosen by the
    /// caller). Fds not numbered are closed.
    pub fn place(self, numbers: &[EndpointFds]) -> Result<Placed> {
        let mut pairs = Vec::new();
        for ep in self.endpoints {
            let what = || format!("fd numbers for endpoint {}", ep.endpoint);
            let Some(n) = numbers.iter().find(|n| n.endpoint == ep.endpoint) else {
                return Err(Error::invalid(what(), "missing"));
            };
            if n.queue_fds.len() != ep.queues.len() || n.vhost_fds.len() != ep.vhost.len() {
                return Err(Error::invalid(
                    what(),
                    format!(
                        "{} queue fd(s) and {} vhost fd(s) were opened; give as many numbers",
                        ep.queues.len(),
                        ep.vhost.len()
                    ),
                ));
            }
            pairs.extend(ep.queues.into_iter().zip(n.queue_fds.iter().copied()));
            pairs.extend(ep.vhost.into_iter().zip(n.vhost_fds.iter().copied()));
        }
        let map = FdMap::at(pairs)
            .map_err(|e| Error::kernel(format!("sandbox {}", self.id), "place the queue fds", e))?;
        Ok(Placed { map })
    }
}

/// Everything opened and rendered, ready to exec or spawn.
#[derive(Debug)]
pub struct ExecPlan {
    /// The arguments appended to the VMM command (`-netdev ... -device ...`).
    pub args: Vec<String>,
    /// Whether the VMM gets vhost-net fds.
    pub vhost: bool,
    /// Problems that did not stop the exec (no vhost-net), one sentence each.
    pub warnings: Vec<String>,
    fds: Placed,
}

/// Open every queue in the sandbox's netns (the [`handoff`](super::handoff())) and render
/// the QEMU arguments for fds from 3 up. Only QEMU takes fds this way.
pub fn prepare_exec(sandbox: &mut Sandbox, vmm: Vmm, want_vhost: bool) -> Result<ExecPlan> {
    if vmm != Vmm::Qemu {
        return Err(Error::invalid(
            format!("--vmm {vmm}"),
            "exec passes queue fds to QEMU only; for other VMMs use vmm-args and run the VMM \
             inside the sandbox netns",
        ));
    }
    let handoff = handoff_in(sandbox, HandoffOptions { vhost: want_vhost })?;
    let numbers = handoff.numbered_from(FIRST_FD);
    let opts = RenderOptions {
        fd_numbers: Some(numbers.clone()),
        ..RenderOptions::default()
    };
    let rendered = super::vmm_args(&sandbox.state, Vmm::Qemu, &opts)?;
    let (vhost, warnings) = (handoff.vhost, handoff.warnings.clone());
    for ep in &handoff.endpoints {
        tracing::debug!(endpoint = %ep.endpoint, queues = ep.queues.len(), vhost, "opened");
    }
    let fds = handoff.place(&numbers)?;
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
        self.fds.targets().len()
    }

    fn command(&self, how: &'static str, program: &OsStr, args: &[OsString]) -> Command {
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
            "{how}"
        );
        cmd
    }

    /// Replace this process with `program args... <self.args>`, the fds in place. Returns
    /// only on failure.
    pub fn exec(self, program: &OsStr, args: &[OsString]) -> Error {
        let error = self.command("exec", program, args).exec();
        Error::kernel(format!("VMM {}", program.to_string_lossy()), "exec", error)
    }

    /// Start `program args... <self.args>` as a child with the fds in place; this
    /// process's copies are closed once it has started.
    pub fn spawn(self, program: &OsStr, args: &[OsString]) -> Result<Child> {
        self.command("spawn", program, args)
            .spawn()
            .map_err(|e| Error::kernel(format!("VMM {}", program.to_string_lossy()), "spawn", e))
    }
}
