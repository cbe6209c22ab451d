//! The operations behind the CLI and the library API: attach, detach, status,
//! guest-config, hotplug of single interfaces, and gc of leftovers.

mod attach;
mod detach;
mod follow;
mod gc;
mod hotplug;
mod ratelimit;
mod reopen;
mod rollback;
mod static_attach;
mod status;

pub use attach::{AttachOptions, Attachment, attach};
#[cfg(feature = "failpoints")]
pub use detach::detach_with_failpoint;
pub use detach::{Detached, detach};
#[cfg(feature = "failpoints")]
pub use follow::follow_addresses_with_failpoint;
pub use follow::{Followed, follow_addresses};
pub use gc::{GcOptions, GcReport, OrphanLink, StaleState, gc};
#[cfg(feature = "failpoints")]
pub use hotplug::add_endpoint_with_failpoint;
pub(crate) use hotplug::add_endpoint_without_waiting;
pub use hotplug::{EndpointChange, add_endpoint, remove_endpoint};
#[cfg(feature = "failpoints")]
pub use ratelimit::set_rate_with_failpoint;
pub use ratelimit::{LimitStatus, RateChange, ifb_name, set_rate};
pub use reopen::{Lost, Reopened, prove_recorded, refuse_replaced, reopen_netns};
pub use static_attach::{StaticOptions, attach_static};
pub use status::{ObjectStatus, Status, list, status};

use crate::guest::GuestConfig;
use crate::netlink::Netlink;
use crate::netns::NetNs;
use crate::scan::{self, Snapshot};
use crate::state::{self, State, StateDir};
use crate::{Error, Result};

/// The four dumps of a scan on a socket in `netns`, with errors naming the netns.
fn scan_in(nl: &mut Netlink, netns: &NetNs) -> Result<Snapshot> {
    let label = format!("netns {}", netns.display());
    scan::scan(nl).map_err(|e| Error::kernel(&label, e.dump, e.error.into_io()))
}

/// The guest description of a sandbox: the one recorded at attach or, when the attach did
/// not take it, what the netns says now (under tcfilter the interfaces keep their
/// addresses, routes and neighbours; this takes the four dumps), if the netns is still the
/// one attached.
pub fn describe_guest(state: &State) -> Result<GuestConfig> {
    if let Some(guest) = &state.guest {
        return Ok(guest.clone());
    }
    let (netns, mut nl) = match reopen_netns(state)? {
        Reopened::Same { netns, nl } => (netns, nl),
        Reopened::Lost(lost) => {
            return Err(Error::invalid(
                format!("sandbox {}", state.id),
                format!(
                    "{}, and the attach did not record the guest description",
                    lost.reason
                ),
            ));
        }
    };
    let snapshot = scan_in(&mut nl, &netns)?;
    Ok(crate::watch::diff::guest_now(state, &snapshot))
}

/// The guest description of an attached sandbox (see [`describe_guest`]).
pub fn guest_config(state_dir: &std::path::Path, id: &str) -> Result<Option<GuestConfig>> {
    state::validate_id(id)?;
    let Some(state) = load_existing(state_dir, id)? else {
        return Ok(None);
    };
    refuse_replaced(&state, "describe its guest")?;
    describe_guest(&state).map(Some)
}

/// A sandbox's state, for the commands that only read: None when the state directory or
/// the state file does not exist (nothing is created).
pub fn load_existing(state_dir: &std::path::Path, id: &str) -> Result<Option<State>> {
    match StateDir::open_existing(state_dir)? {
        Some(store) => store.load(id),
        None => Ok(None),
    }
}
