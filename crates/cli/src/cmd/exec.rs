//! `sandbox-net exec`: open every queue inside the sandbox netns, place the fds, and
//! replace this process with the VMM (QEMU) in the caller's netns.

use std::ffi::OsString;
use std::path::Path;

use sandbox_net::Error;
use sandbox_net::vmm::{self, Vmm};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The sandbox id.
    #[arg(long)]
    id: String,
    /// The VMM: only QEMU takes its queues as inherited fds (for Cloud Hypervisor and
    /// Firecracker, use vmm-args).
    #[arg(long, value_enum)]
    vmm: ExecVmm,
    /// Do not use vhost-net.
    #[arg(long)]
    no_vhost: bool,
    /// The VMM command line.
    #[arg(last = true, required = true, value_name = "VMM-COMMAND")]
    command: Vec<OsString>,
}

/// The VMMs `exec` supports (`vmm-args` knows more).
#[derive(Copy, Clone, Debug, clap::ValueEnum)]
pub enum ExecVmm {
    Qemu,
}

impl From<ExecVmm> for Vmm {
    fn from(v: ExecVmm) -> Vmm {
        match v {
            ExecVmm::Qemu => Vmm::Qemu,
        }
    }
}

/// Returns only on failure.
pub fn run(state_dir: &Path, args: Args) -> Error {
    let Some((program, vmm_args)) = args.command.split_first() else {
        return Error::invalid("VMM command", "missing (give it after --)");
    };
    let mut sandbox = match vmm::open_attached(state_dir, &args.id) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let plan = match vmm::prepare_exec(&mut sandbox, Vmm::from(args.vmm), !args.no_vhost) {
        Ok(p) => p,
        Err(e) => return e,
    };
    for w in &plan.warnings {
        eprintln!("sandbox-net: warning: {w}");
    }
    plan.exec(program, vmm_args)
}
