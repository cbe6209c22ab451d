//! `sandbox-net vmm-args`: the arguments (QEMU, Cloud Hypervisor) or network-interfaces
//! entries (Firecracker) that hand every endpoint to a VMM, on stdout so that they can be
//! spliced into a command line; notes on stderr.

use std::path::Path;

use clap::ValueEnum;
use sandbox_net::Error;
use sandbox_net::vmm::{self, RenderOptions, Vmm};

use crate::output::{note, outln, print_json};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The sandbox id.
    #[arg(long)]
    id: String,
    /// The VMM to print arguments (or network-interfaces entries) for.
    #[arg(long, value_enum)]
    vmm: VmmName,
    /// QEMU: vhost=off even when /dev/vhost-net exists.
    #[arg(long)]
    no_vhost: bool,
    /// QEMU: the fd form `exec` uses, for every tap.
    #[arg(long)]
    fds: bool,
    /// Print one JSON object (arguments, fds, notes).
    #[arg(long)]
    json: bool,
}

/// `--vmm` values of `vmm-args`.
#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum VmmName {
    Qemu,
    CloudHypervisor,
    Firecracker,
}

impl From<VmmName> for Vmm {
    fn from(v: VmmName) -> Vmm {
        match v {
            VmmName::Qemu => Vmm::Qemu,
            VmmName::CloudHypervisor => Vmm::CloudHypervisor,
            VmmName::Firecracker => Vmm::Firecracker,
        }
    }
}

pub fn run(state_dir: &Path, args: Args) -> Result<(), Error> {
    let vmm = Vmm::from(args.vmm);
    let want_vhost = !args.no_vhost;
    let state = vmm::open_attached(state_dir, &args.id)?.state;
    let available = vmm::vhost_net_available();
    let vhost = want_vhost && available;
    let opts = RenderOptions {
        vhost,
        fds: args.fds,
        fd_numbers: None,
    };
    let mut rendered = vmm::vmm_args(&state, vmm, &opts)?;
    if vmm == Vmm::Qemu && want_vhost && !available {
        rendered.notes.push(format!(
            "{} is absent on this machine: vhost=off",
            vmm::VHOST_NET
        ));
    }
    if args.json {
        return print_json(&rendered);
    }
    if let Some(ifaces) = &rendered.network_interfaces {
        print_json(ifaces)?;
    } else {
        let line: Vec<String> = rendered.args.iter().map(|a| vmm::shell_quote(a)).collect();
        outln!("{}", line.join(" "))?;
    }
    for n in &rendered.notes {
        note(n);
    }
    Ok(())
}
