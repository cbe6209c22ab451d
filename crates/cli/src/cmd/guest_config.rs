//! `sandbox-net guest-config`: the network description the guest must apply, as JSON, as
//! the kernel's `ip=` parameter, or as a cloud-init network-config document.

use std::path::Path;

use clap::ValueEnum;
use sandbox_net::Error;
use sandbox_net::guest_formats::{self, GuestNetwork};

use crate::output::{note, print_json};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long)]
    id: String,
    /// json: the description; kernel-ip: the kernel `ip=` parameter (first IPv4
    /// interface; what it can't carry is listed on stderr); cloud-init: a
    /// network-config version 2 document.
    #[arg(long, value_enum, default_value_t = GuestFormat::Json)]
    format: GuestFormat,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum GuestFormat {
    Json,
    KernelIp,
    CloudInit,
}

pub fn run(state_dir: &Path, args: Args) -> Result<(), Error> {
    let id = &args.id;
    let Some(guest) = sandbox_net::guest_config(state_dir, id)? else {
        return Err(Error::invalid(format!("sandbox {id}"), "not attached"));
    };
    match args.format {
        GuestFormat::Json => print_json(&guest),
        GuestFormat::KernelIp => render(state_dir, id, false),
        GuestFormat::CloudInit => render(state_dir, id, true),
    }
}

/// `--format kernel-ip` (cloud_init false) or `--format cloud-init`; what the format
/// can't carry goes to stderr as notes.
fn render(state_dir: &Path, id: &str, cloud_init: bool) -> Result<(), Error> {
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
