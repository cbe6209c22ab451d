//! `sandbox-net guest-config`: the network description the guest must apply, as JSON, as
//! the kernel's `ip=` parameter, or as a cloud-init network-config document.

use std::net::IpAddr;
use std::path::Path;

use clap::ValueEnum;
use sandbox_net::Error;
use sandbox_net::guest::GuestConfig;
use sandbox_net::guest_formats::{self, Format};
use sandbox_net::ops::load_existing;
use sandbox_net::sandbox::not_attached;

use crate::output::{note, out, outln, print_json};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The sandbox id.
    #[arg(long)]
    id: String,
    /// json: the description and the nameservers (attach --dns); kernel-ip: the kernel
    /// `ip=` parameter (first IPv4 interface; what it can't carry is listed on stderr);
    /// cloud-init: a network-config version 2 document.
    #[arg(long, value_enum, default_value_t = GuestFormat::Json)]
    format: GuestFormat,
    /// Print JSON, as every command's --json does: the same as --format json.
    #[arg(long, conflicts_with = "format")]
    json: bool,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum GuestFormat {
    Json,
    KernelIp,
    CloudInit,
}

/// What `guest-config --format json` prints: the guest description and the nameservers
/// the kernel-ip and cloud-init formats carry too (left out when attach was given none:
/// the object is then the `guest` of `attach --json`).
#[derive(serde::Serialize)]
struct WithNameservers<'a> {
    #[serde(flatten)]
    guest: &'a GuestConfig,
    #[serde(skip_serializing_if = "<[IpAddr]>::is_empty")]
    nameservers: &'a [IpAddr],
}

pub fn run(state_dir: &Path, args: Args) -> Result<(), Error> {
    let id = &args.id;
    let format = match args.format {
        GuestFormat::Json => {
            let guest =
                sandbox_net::guest_config(state_dir, id)?.ok_or_else(|| not_attached(id))?;
            let state = load_existing(state_dir, id)?.ok_or_else(|| not_attached(id))?;
            return print_json(&WithNameservers {
                guest: &guest,
                nameservers: &state.dns,
            });
        }
        GuestFormat::KernelIp => Format::KernelIp,
        GuestFormat::CloudInit => Format::CloudInit,
    };
    // What the format can't carry goes to stderr as notes.
    let rendered = guest_formats::render(state_dir, id, format)?;
    match format {
        Format::CloudInit => out!("{}", rendered.text)?,
        Format::KernelIp => outln!("{}", rendered.text)?,
    }
    for n in &rendered.notes {
        note(n);
    }
    Ok(())
}
