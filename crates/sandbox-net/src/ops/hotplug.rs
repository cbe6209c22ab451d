//! Hotplug: attach or detach one interface of an existing attachment, under the
//! attachment's model and settings, updating its journal and state.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::attach::plan;
use super::transaction;
use crate::endpoint::{self, Endpoint};
use crate::failpoint::FailAt;
use crate::guest::{self, GuestConfig};
use crate::journal;
use crate::journal::ownership::Owner;
use crate::model::{Model, l3};
use crate::netlink::Netlink;
use crate::netns::NetNs;
use crate::sandbox::{Access, Sandbox};
use crate::scan::{self, Snapshot};
use crate::state::{self, Phase, State, StateDir};
use crate::{Error, Result, tap};

/// The endpoint added or removed, and the guest description after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointChange {
    /// The sandbox id.
    pub id: String,
    /// The endpoint added or removed.
    pub endpoint: Endpoint,
    /// The whole guest description after the change.
    pub guest: GuestConfig,
}

/// What hot-plugging refuses to do outside the sandbox's netns.
const HOTPLUG: &str = "hot-plug interfaces";

/// The sandbox, locked, fully attached, in its netns (see [`Sandbox::open`]).
fn open_attached(state_dir: &Path, id: &str, iface: &str) -> Result<Sandbox> {
    state::validate_id(id)?;
    tap::validate_ifname(iface)
        .map_err(|r| Error::invalid(format!("interface name {iface:?}"), r))?;
    let mut sandbox = Sandbox::open(state_dir, id, Access::Change)?;
    sandbox.finished()?;
    sandbox.place.netns(id, HOTPLUG)?;
    Ok(sandbox)
}

/// Attach one more interface of the sandbox's netns. Under l3 its IPv6 addresses get up
/// to [`l3::SETTLE_WAIT`] to settle (see [`l3::Settling`]).
pub fn add_endpoint(state_dir: &Path, id: &str, iface: &str) -> Result<EndpointChange> {
    add_endpoint_at(state_dir, id, iface, FailAt::NEVER, l3::SETTLE_WAIT)
}

/// [`add_endpoint`] without waiting for addresses to settle: `watch` routes them when
/// they do (see [`l3::follow`]).
pub(crate) fn add_endpoint_without_waiting(
    state_dir: &Path,
    id: &str,
    iface: &str,
) -> Result<EndpointChange> {
    add_endpoint_at(state_dir, id, iface, FailAt::NEVER, Duration::ZERO)
}

/// [`add_endpoint`] with a test hook: fail before step N of the new journal entries (N =
/// their number: before the state is saved). Exists only with the `failpoints` feature.
#[cfg(feature = "failpoints")]
pub fn add_endpoint_with_failpoint(
    state_dir: &Path,
    id: &str,
    iface: &str,
    fail_at: Option<usize>,
) -> Result<EndpointChange> {
    add_endpoint_at(
        state_dir,
        id,
        iface,
        FailAt::before(fail_at),
        l3::SETTLE_WAIT,
    )
}

fn add_endpoint_at(
    state_dir: &Path,
    id: &str,
    iface: &str,
    fail_at: FailAt,
    wait: Duration,
) -> Result<EndpointChange> {
    let mut sandbox = open_attached(state_dir, id, iface)?;
    if sandbox.state.endpoints.iter().any(|e| e.name == iface) {
        return Err(Error::invalid(
            format!("interface {iface} of sandbox {id}"),
            "is already attached",
        ));
    }
    let (netns, nl) = sandbox.place.netns(id, HOTPLUG)?;
    let (store, state) = (&sandbox.store, sandbox.state);
    netns.run(|| add_inside(store, state, netns, nl, iface, fail_at, wait))?
}

fn add_inside(
    store: &StateDir,
    mut state: State,
    netns: &NetNs,
    nl: &mut Netlink,
    iface: &str,
    fail_at: FailAt,
    wait: Duration,
) -> Result<EndpointChange> {
    let mut snapshot = super::scan_in(nl, netns)?;
    let only = [iface.to_string()];
    let candidates =
        endpoint::candidates(&snapshot, Some(&only)).map_err(|r| r.into_error(netns.display()))?;
    if state.model == Model::L3 {
        let indexes: Vec<u32> = candidates.iter().map(|c| c.link.index).collect();
        snapshot = l3::await_settled(nl, snapshot, &indexes, wait).map_err(|e| {
            Error::kernel(
                format!("netns {}", netns.display()),
                e.dump,
                e.error.into_io(),
            )
        })?;
    }
    let (mut endpoints, entries) = plan(
        netns,
        state.model,
        &state.settings,
        &snapshot,
        &candidates,
        &state.endpoints,
        &[],
    )?;
    let endpoint = endpoints
        .pop()
        .ok_or_else(|| Error::invalid(format!("interface {iface}"), "was not planned"))?;
    let before = state.clone();
    // Attached on purpose: watch follows it again (a failure saves `before`, where it is
    // still recorded as detached by the user).
    state.detached_by_user.retain(|name| name != iface);
    // The other endpoints' part of the guest description stays as it was recorded (under
    // macvtap their addresses are no longer in the netns); the new one is added.
    if let Some(recorded) = &mut state.guest {
        let added = guest::describe(&snapshot, &[endpoint.ifindex]);
        recorded.interfaces.extend(added.interfaces);
        recorded.routes.extend(added.routes);
        recorded.neighbors.extend(added.neighbors);
        // Nothing is recorded cut to fit: an endpoint whose description doesn't fit is
        // not attached.
        if let Some(reason) = guest::over_cap(recorded) {
            return Err(Error::Unsupported {
                iface: iface.to_string(),
                netns: netns.display().to_string(),
                reason: format!("with it, {reason}; not attached"),
            });
        }
    }
    state.endpoints.push(endpoint.clone());
    let start = state.journal.len();
    state.journal.extend(entries);
    super::claims::finish_plan(store, &mut state, start)?;
    state.phase = Phase::Attaching;
    store.save(&state)?;
    let refused = super::vhost_user::refuse_held(
        store,
        &state,
        std::slice::from_ref(&endpoint),
        netns.display(),
    );
    if let Err(error) = refused {
        store.save(&before)?;
        return Err(error);
    }
    let finish = transaction::record_attached(store, None, start, fail_at);
    let object = format!("sandbox {}", state.id);
    match transaction::apply(nl, &mut state, start, &object, fail_at, finish) {
        Ok(()) => {
            let endpoint = state
                .endpoints
                .iter()
                .find(|e| e.name == iface)
                .cloned()
                .unwrap_or(endpoint);
            let guest = match &state.guest {
                Some(recorded) => recorded.clone(),
                None => state.guest_now(&snapshot),
            };
            Ok(EndpointChange {
                id: state.id.clone(),
                endpoint,
                guest,
            })
        }
        Err(failed) => {
            if !failed.kept {
                store.save(&before)?;
            }
            Err(failed.error)
        }
    }
}

/// Detach one interface of the sandbox, leaving the others attached. Removing the last
/// one leaves an empty attachment. The interface is recorded as detached by the user
/// (`State::detached_by_user`): `watch` does not attach it again until `add-endpoint`.
pub fn remove_endpoint(state_dir: &Path, id: &str, iface: &str) -> Result<EndpointChange> {
    remove(state_dir, id, iface, true)
}

/// [`remove_endpoint`] of an interface that went away (`watch`): not recorded as
/// detached by the user, so that one coming back under its name is attached again.
pub(crate) fn remove_gone_endpoint(
    state_dir: &Path,
    id: &str,
    iface: &str,
) -> Result<EndpointChange> {
    remove(state_dir, id, iface, false)
}

fn remove(state_dir: &Path, id: &str, iface: &str, by_user: bool) -> Result<EndpointChange> {
    let mut sandbox = open_attached(state_dir, id, iface)?;
    let (netns, nl) = sandbox.place.netns(id, HOTPLUG)?;
    let (store, state) = (&sandbox.store, &mut sandbox.state);
    let position = state
        .endpoints
        .iter()
        .position(|e| e.name == iface)
        .ok_or_else(|| Error::InterfaceNotFound {
            iface: iface.to_string(),
            within: format!("of sandbox {id}"),
            reason: "is not attached".into(),
        })?;
    let endpoint = state.endpoints.remove(position);
    let (owned, kept): (Vec<_>, Vec<_>) = state
        .journal
        .drain(..)
        .partition(|e| endpoint.owns(e.device()));
    let recorded = state.guest.is_some();
    // Without a recorded guest description, the one reported is read after the removal.
    let owner = Owner {
        alias: crate::names::owner_alias(id),
        endpoints: std::slice::from_ref(&endpoint),
    };
    let after = netns.run(|| -> Result<Option<Snapshot>> {
        let ns_label = format!("netns {}", netns.display());
        journal::undo(nl, &owned, &owner).map_err(|e| {
            Error::kernel(
                format!("sandbox {id}: {}", e.entry.describe()),
                "remove",
                e.error,
            )
        })?;
        if recorded {
            return Ok(None);
        }
        let snapshot =
            scan::scan(nl).map_err(|e| Error::kernel(&ns_label, e.dump, e.error.into_io()))?;
        Ok(Some(snapshot))
    })??;
    state.journal = kept;
    if let Some(recorded) = &mut state.guest {
        recorded.interfaces.retain(|i| i.name != iface);
        recorded.routes.retain(|r| r.device != iface);
        recorded.neighbors.retain(|n| n.device != iface);
    }
    if by_user && !state.detached_by_user.iter().any(|n| n == iface) {
        state.detached_by_user.push(iface.to_string());
    }
    store.save(state)?;
    let guest = match after {
        Some(snapshot) => state.guest_now(&snapshot),
        None => state.guest.clone().unwrap_or_default(),
    };
    Ok(EndpointChange {
        id: state.id.clone(),
        endpoint,
        guest,
    })
}
