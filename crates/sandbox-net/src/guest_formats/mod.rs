//! The guest's network configuration in the formats a guest without an agent reads: the
//! kernel `ip=` parameter and a cloud-init network-config version 2 document. Both are
//! rendered from a [`GuestConfig`] and the nameservers recorded at attach (`--dns`).
//! Anything a format cannot express is reported as a note, never dropped silently.

mod cloud_init;
mod kernel_ip;
mod yaml;

use std::net::IpAddr;
use std::path::Path;

pub use cloud_init::cloud_init;
pub use kernel_ip::kernel_ip;

use crate::guest::GuestConfig;
use crate::sandbox::{Access, Sandbox};
use crate::{Error, Result};

/// A rendered configuration, and what it leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    /// Parts of the guest configuration the format cannot carry, one sentence each.
    pub notes: Vec<String>,
}

/// What the renderers read: the guest description and the nameservers.
#[derive(Debug, Clone, Copy)]
pub struct GuestNetwork<'a> {
    pub guest: &'a GuestConfig,
    pub dns: &'a [IpAddr],
}

/// A format [`render`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The kernel `ip=` parameter (`kernel_ip`).
    KernelIp,
    /// A cloud-init network-config version 2 document (`cloud_init`).
    CloudInit,
}

/// The guest configuration of attached sandbox `id` in `format`: its guest description
/// (the recorded one, or read from its netns once when the attach took none) and its
/// nameservers. Exit-2 errors when it is not attached, when its attach never finished,
/// when another namespace is at its netns's path now, and when `ip=` can't express it.
pub fn render(state_dir: &Path, id: &str, format: Format) -> Result<Rendered> {
    let mut sandbox = Sandbox::open(state_dir, id, Access::Read)?;
    sandbox.finished()?;
    sandbox.place.refuse_replaced(id, "describe its guest")?;
    let guest = crate::ops::describe_in(&sandbox.state, &mut sandbox.place)?;
    let net = GuestNetwork {
        guest: &guest,
        dns: &sandbox.state.dns,
    };
    match format {
        Format::KernelIp => kernel_ip(net).map_err(|e| match e {
            Error::InvalidInput { reason, .. } => {
                Error::invalid(format!("kernel ip= for sandbox {id}"), reason)
            }
            other => other,
        }),
        Format::CloudInit => Ok(cloud_init(net)),
    }
}
