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

use crate::guest::GuestConfig;
use crate::netlink::Netlink;
use crate::netns::NetNs;
use crate::scan::{self, Snapshot};
use crate::state::{self, State, StateDir};
use crate::{Error, Result};

/// Open the netns recorded in a state, if it still exists and is the same namespace.
fn reopen_netns(state: &State) -> Option<NetNs> {
    match NetNs::open_path(&state.netns, &state.netns_path) {
        Ok(ns) if ns.id() == state.netns_id => Some(ns),
        Ok(_) | Err(_) => None,
    }
}

/// A netlink socket in the netns the calling thread is in (inside `NetNs::run`), and the
/// four dumps of a scan, with errors naming the netns.
fn scan_here(netns: &NetNs) -> Result<(Netlink, Snapshot)> {
    let label = format!("netns {}", netns.display());
    let mut nl =
        Netlink::open_here().map_err(|e| Error::kernel(&label, "open netlink socket", e))?;
    let snapshot =
        scan::scan(&mut nl).map_err(|e| Error::kernel(&label, e.dump, e.error.into_io()))?;
    Ok((nl, snapshot))
}

/// The guest description of a sandbox: the one recorded at attach or, when the attach did
/// not take it, what the netns says now (under tcfilter the interfaces keep their
/// addresses, routes and neighbours; this enters the netns and takes the four dumps).
pub fn describe_guest(state: &State) -> Result<GuestConfig> {
    if let Some(guest) = &state.guest {
        return Ok(guest.clone());
    }
    let netns = reopen_netns(state).ok_or_else(|| {
        Error::invalid(
            format!("sandbox {}", state.id),
            format!(
                "netns {} no longer exists, and the attach did not record the guest description",
                state.netns_path.display()
            ),
        )
    })?;
    netns.run(|| -> Result<GuestConfig> {
        let (_, snapshot) = scan_here(&netns)?;
        Ok(crate::watch::diff::guest_now(state, &snapshot))
    })?
}

/// The guest description of an attached sandbox (see [`describe_guest`]).
pub fn guest_config(state_dir: &std::path::Path, id: &str) -> Result<Option<GuestConfig>> {
    state::validate_id(id)?;
    load_existing(state_dir, id)?
        .map(|s| describe_guest(&s))
        .transpose()
}

/// A sandbox's state, for the commands that only read: None when the state directory or
/// the state file does not exist (nothing is created).
pub fn load_existing(state_dir: &std::path::Path, id: &str) -> Result<Option<State>> {
    match StateDir::open_existing(state_dir)? {
        Some(store) => store.load(id),
        None => Ok(None),
    }
}
