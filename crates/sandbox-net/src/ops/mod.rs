//! The operations behind the CLI and the library API: attach, detach, status,
//! guest-config, hotplug of single interfaces, and gc of leftovers.

mod attach;
mod claims;
mod detach;
mod follow;
mod gc;
mod hotplug;
mod ratelimit;
mod rollback;
mod static_attach;
mod status;
mod transaction;
mod vhost_user;

pub use attach::{AttachOptions, Attachment, attach};
#[cfg(feature = "failpoints")]
pub use detach::detach_with_failpoint;
pub use detach::{Detached, detach};
#[cfg(feature = "failpoints")]
pub use follow::follow_addresses_with_failpoint;
pub use follow::{Followed, follow_addresses};
pub use gc::{GcOptions, GcReport, OrphanLink, StaleState, collect_orphans_of, gc};
#[cfg(feature = "failpoints")]
pub use hotplug::add_endpoint_with_failpoint;
pub use hotplug::{EndpointChange, add_endpoint, remove_endpoint};
pub(crate) use hotplug::{add_endpoint_without_waiting, remove_gone_endpoint};
#[cfg(feature = "failpoints")]
pub use ratelimit::set_rate_with_failpoint;
pub use ratelimit::{LimitStatus, RateChange, set_rate};
pub use static_attach::{StaticOptions, attach_static};
pub use status::{Listed, ObjectStatus, Status, list, status};

/// The ways back into a recorded netns (see [`crate::sandbox`]).
pub use crate::sandbox::{Lost, Reopened, prove_recorded, reopen_netns};

use crate::guest::GuestConfig;
use crate::netlink::Netlink;
use crate::netns::NetNs;
use crate::sandbox::{Access, Place, Sandbox};
use crate::scan::{self, Snapshot};
use crate::state::{State, StateDir};
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
    match &state.guest {
        Some(guest) => Ok(guest.clone()),
        None => describe_in(state, &mut Place::of(state)?),
    }
}

/// [`describe_guest`] of a sandbox that lives in `place` (an opened [`Sandbox`]'s: its
/// netns is read through the socket it was reopened with).
pub(crate) fn describe_in(state: &State, place: &mut Place) -> Result<GuestConfig> {
    if let Some(guest) = &state.guest {
        return Ok(guest.clone());
    }
    let why = match place {
        Place::Netns { netns, nl } => return Ok(state.guest_now(&scan_in(nl, netns)?)),
        Place::Lost(lost) => lost.reason.clone(),
        Place::Host => "it is a static attachment".to_string(),
    };
    Err(Error::invalid(
        format!("sandbox {}", state.id),
        format!("{why}, and the attach did not record the guest description"),
    ))
}

/// The guest description of an attached sandbox (see [`describe_guest`]); None when
/// nothing is attached. Refused when another namespace is at its netns's path.
pub fn guest_config(state_dir: &std::path::Path, id: &str) -> Result<Option<GuestConfig>> {
    let Some(mut sandbox) = Sandbox::find(state_dir, id, Access::Read)? else {
        return Ok(None);
    };
    sandbox.place.refuse_replaced(id, "describe its guest")?;
    describe_in(&sandbox.state, &mut sandbox.place).map(Some)
}

/// A sandbox's state, for the commands that only read: None when the state directory or
/// the state file does not exist (nothing is created).
pub fn load_existing(state_dir: &std::path::Path, id: &str) -> Result<Option<State>> {
    match StateDir::open_existing(state_dir)? {
        Some(store) => store.load(id),
        None => Ok(None),
    }
}
