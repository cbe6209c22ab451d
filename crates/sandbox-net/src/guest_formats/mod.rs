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
use crate::state::{self, Phase, State};
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

/// Load the state of an attached sandbox: exit-2 errors when it is not attached, when
/// its attach never finished, or when another namespace is at its netns's path now (what
/// was rendered or opened would be the new namespace's devices, not the sandbox's).
pub fn load_attached(state_dir: &Path, id: &str) -> Result<State> {
    state::validate_id(id)?;
    let Some(state) = crate::ops::load_existing(state_dir, id)? else {
        return Err(Error::invalid(format!("sandbox {id}"), "not attached"));
    };
    if state.phase != Phase::Attached {
        return Err(Error::invalid(
            format!("sandbox {id}"),
            "its attach did not finish (crashed?); run detach to clean up",
        ));
    }
    crate::ops::refuse_replaced(&state, "hand its devices to a VMM or describe its guest")?;
    Ok(state)
}
