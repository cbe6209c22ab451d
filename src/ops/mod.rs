//! The operations behind the CLI and the library API: attach, detach, status,
//! guest-config, hotplug of single interfaces, and gc of leftovers.

mod attach;
mod detach;
mod gc;
mod hotplug;
mod ratelimit;
mod rollback;
mod static_attach;
mod status;

pub use attach::{AttachOptions, Attachment, attach};
#[cfg(feature = "failpoints")]
pub use detach::detach_with_failpoint;
pub use detach::{Detached, detach};
pub use gc::{GcOptions, GcReport, OrphanLink, StaleState, gc};
#[cfg(feature = "failpoints")]
pub use hotplug::add_endpoint_with_failpoint;
pub use hotplug::{EndpointChange, add_endpoint, remove_endpoint};
#[cfg(feature = "failpoints")]
pub use ratelimit::set_rate_with_failpoint;
pub use ratelimit::{LimitStatus, RateChange, ifb_name, set_rate};
pub use static_attach::{StaticOptions, attach_static};
pub use status::{ObjectStatus, Status, list, status};

use crate::Result;
use crate::guest::GuestConfig;
use crate::netns::NetNs;
use crate::state::{self, State, StateDir};

/// Open the netns recorded in a state, if it still exists and is the same namespace.
fn reopen_netns(state: &State) -> Option<NetNs> {
    match NetNs::open_path(&state.netns, &state.netns_path) {
        Ok(ns) if ns.id() == state.netns_id => Some(ns),
        Ok(_) | Err(_) => None,
    }
}

/// The guest description of an attached sandbox.
pub fn guest_config(state_dir: &std::path::Path, id: &str) -> Result<Option<GuestConfig>> {
    state::validate_id(id)?;
    let store = StateDir::open(state_dir)?;
    Ok(store.load(id)?.map(|s| s.guest))
}
