//! The CLI side of `vmm-args`, `exec` and `guest-config --format kernel-ip|cloud-init`:
//! printing, with notes and warnings on stderr so that stdout can be spliced into a
//! command line or written to a file.

use std::ffi::OsString;
use std::path::Path;

use clap::ValueEnum;
use sandbox_net::Error;
use sandbox_net::guest_formats::{self, GuestNetwork};
use sandbox_net::vmm::{self, RenderOptions, Vmm};

/// `--vmm` values.
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

fn note(text: &str) {
    eprintln!("sandbox-net: note: {text}");
}

/// `guest-config --format kernel-ip` (cloud_init false) or `--format cloud-init`.
pub fn guest_config(state_dir: &Path, id: &str, cloud_init: bool) -> Result<(), Error> {
    let state = guest_formats::load_attached(state_dir, id)?;
    let guest = sandbox_net::describe_guest(&state)?;
    let net = GuestNetwork {
        guest: &guest,
        dns: &state.dns,
    };
    let rendered = if cloud_init {
        guest_formats::cloud_init(net)
    } else {
        guest_formats::kernel_ip(net)
            .map_err(|why| Error::invalid(format!("kernel ip= for sandbox {id}"), why))?
    };
    if cloud_init {
        print!("{}", rendered.text);
    } else {
        println!("{}", rendered.text);
    }
    for n in &rendered.notes {
        note(n);
    }
    Ok(())
}

/// `vmm-args`.
pub fn vmm_args(
    state_dir: &Path,
    id: &str,
    vmm: Vmm,
    want_vhost: bool,
    fds: bool,
    json: bool,
) -> Result<(), Error> {
    let state = guest_formats::load_attached(state_dir, id)?;
    let available = vmm::vhost_net_available();
    let vhost = want_vhost && available;
    let mut args = vmm::vmm_args(&state, vmm, RenderOptions { vhost, fds })?;
    if vmm == Vmm::Qemu && want_vhost && !available {
        args.notes.push(format!(
            "{} is absent on this machine: vhost=off",
            vmm::VHOST_NET
        ));
    }
    if json {
        let text = serde_json::to_string_pretty(&args)
            .map_err(|e| Error::invalid("output", format!("cannot encode JSON: {e}")))?;
        println!("{text}");
        return Ok(());
    }
    if let Some(ifaces) = &args.network_interfaces {
        let text = serde_json::to_string_pretty(ifaces)
            .map_err(|e| Error::invalid("output", format!("cannot encode JSON: {e}")))?;
        println!("{text}");
    } else {
        let line: Vec<String> = args.args.iter().map(|a| vmm::shell_quote(a)).collect();
        println!("{}", line.join(" "));
    }
    for n in &args.notes {
        note(n);
    }
    Ok(())
}

/// `exec`: returns only on failure.
pub fn exec(state_dir: &Path, id: &str, vmm: Vmm, want_vhost: bool, command: &[OsString]) -> Error {
    let Some((program, args)) = command.split_first() else {
        return Error::invalid("VMM command", "missing (give it after --)");
    };
    let state = match guest_formats::load_attached(state_dir, id) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let plan = match vmm::prepare_exec(&state, vmm, want_vhost) {
        Ok(p) => p,
        Err(e) => return e,
    };
    for w in &plan.warnings {
        eprintln!("sandbox-net: warning: {w}");
    }
    plan.exec(program, args)
}
