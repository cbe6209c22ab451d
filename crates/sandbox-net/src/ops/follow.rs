//! Following the addresses of an l3 attachment's endpoints as they settle, appear and go
//! (what `watch` does; the planning is `model::l3::follow`): the entries of addresses that
//! went are undone and dropped from the journal, then the entries of new ones are
//! journalled and applied, rolled back on failure, as add-endpoint does.

use std::path::Path;

use super::transaction;
use crate::failpoint::FailAt;
use crate::guest::{self, GuestConfig};
use crate::journal::ownership::{self, Verdict};
use crate::journal::{self, Entry};
use crate::model::Model;
use crate::model::l3::follow;
use crate::netlink::Netlink;
use crate::netns::NetNs;
use crate::sandbox::{Access, Sandbox};
use crate::scan::Snapshot;
use crate::state::{Phase, State, StateDir};
use crate::{Error, Result};

/// What following the addresses changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followed {
    pub id: String,
    pub changes: Vec<follow::AddressChange>,
    /// The guest description now, when it changed (recorded in the state).
    pub guest: Option<GuestConfig>,
}

/// Route to the guest the addresses of sandbox `id`'s endpoints that settled or appeared
/// since they were attached, and stop routing those that went (see
/// [`crate::model::l3::follow`]). None when nothing changed, or the model is not l3.
pub fn follow_addresses(state_dir: &Path, id: &str) -> Result<Option<Followed>> {
    follow_at(state_dir, id, FailAt::NEVER)
}

/// [`follow_addresses`] with a test hook: fail before step N, counting the undos of the
/// entries of addresses that went (in teardown order), then the new entries, then the
/// save. Exists only with the `failpoints` feature.
#[cfg(feature = "failpoints")]
pub fn follow_addresses_with_failpoint(
    state_dir: &Path,
    id: &str,
    fail_at: Option<usize>,
) -> Result<Option<Followed>> {
    follow_at(state_dir, id, FailAt::before(fail_at))
}

fn follow_at(state_dir: &Path, id: &str, fail_at: FailAt) -> Result<Option<Followed>> {
    let mut sandbox = Sandbox::open(state_dir, id, Access::Change)?;
    sandbox.finished()?;
    let (netns, nl) = sandbox.place.netns(id, "follow its addresses")?;
    if sandbox.state.model != Model::L3 {
        return Ok(None);
    }
    let (store, state) = (&sandbox.store, sandbox.state);
    netns.run(|| follow_inside(store, state, netns, nl, fail_at))?
}

/// Every entry to add lives on a device that is still the one recorded (the endpoint, or
/// the tap carrying the sandbox's alias), proven against the scan's links.
fn prove(state: &State, snapshot: &Snapshot, entries: &[Entry], netns: &NetNs) -> Result<()> {
    let owner = state.owner();
    for entry in entries.iter().filter(|e| !e.netns_wide()) {
        let reason = match ownership::verdict(entry, &state.journal, &snapshot.links, &owner) {
            Verdict::Ours(index) if entry.ifindex() == Some(index) => continue,
            Verdict::Ours(index) => format!("ifindex {index} is not the one recorded"),
            Verdict::Gone => format!("{} is gone", entry.device()),
            Verdict::NotOurs(reason) => reason,
        };
        return Err(Error::Unsupported {
            iface: entry.device().to_string(),
            netns: netns.display().to_string(),
            reason: format!(
                "{reason}; {} not added, its addresses are not followed",
                entry.describe()
            ),
        });
    }
    Ok(())
}

/// Record the guest description `state` gives now, within the caps (see
/// [`guest::over_cap`]: over one, the recorded one stays and `watch` reports it); the new
/// one when it changed.
fn describe(state: &mut State, snapshot: &Snapshot) -> Option<GuestConfig> {
    let now = state.guest_now(snapshot);
    let same = state
        .guest
        .as_ref()
        .is_some_and(|recorded| guest::same(&now, recorded));
    if same || guest::over_cap(&now).is_some() {
        return None;
    }
    state.guest = Some(now.clone());
    Some(now)
}

fn follow_inside(
    store: &StateDir,
    mut state: State,
    netns: &NetNs,
    nl: &mut Netlink,
    fail_at: FailAt,
) -> Result<Option<Followed>> {
    let snapshot = super::scan_in(nl, netns)?;
    let changes = state.address_changes(&snapshot);
    if changes.is_empty() {
        return Ok(None);
    }
    let refused = |(iface, reason): (String, String)| Error::Unsupported {
        iface,
        netns: netns.display().to_string(),
        reason,
    };
    let plan =
        follow::plan(&state.endpoints, &state.journal, &snapshot, &changes).map_err(refused)?;
    prove(&state, &snapshot, &plan.add, netns)?;
    let id = state.id.clone();
    // The entries of addresses that went: undone, then dropped from the journal.
    let undo: Vec<Entry> = plan
        .undo
        .iter()
        .map(|&i| state.journal[i].clone())
        .collect();
    let undone = journal::undo_at(nl, &undo, &state.owner(), fail_at.within(0, undo.len()))
        .map_err(|e| {
            Error::kernel(
                format!("sandbox {id}: {}", e.entry.describe()),
                "remove",
                e.error,
            )
        })?;
    for left in &undone.left_alone {
        tracing::warn!(id = %id, object = %left.object, reason = %left.reason,
            "an address's entry was not ours any more: left alone and dropped from the journal");
    }
    let mut position = 0;
    state.journal.retain(|_| {
        let dropped = plan.undo.contains(&position) || plan.forget.contains(&position);
        position += 1;
        !dropped
    });
    // What the state is if adding fails: the addresses that went are gone from it (the
    // recorded description stays for `watch` to compare with).
    let before = state.clone();
    let start = state.journal.len();
    state.journal.extend(plan.add);
    super::claims::settle_for(store, &mut state, start)?;
    let guest = describe(&mut state, &snapshot);
    if state.journal.len() > start {
        // The new entries are on disk before the first kernel change.
        state.phase = Phase::Attaching;
        store.save(&state)?;
    }
    let steps = fail_at.within(undo.len(), state.journal.len() - start + 1);
    let finish = transaction::record_attached(store, None, start, steps);
    let object = format!("sandbox {id}");
    match transaction::apply(nl, &mut state, start, &object, steps, finish) {
        Ok(()) => {
            for change in &changes {
                tracing::info!(id = %id, change = %change.describe(), "followed an address");
            }
            Ok(Some(Followed { id, changes, guest }))
        }
        Err(failed) => {
            if !failed.kept {
                store.save(&before)?;
            }
            Err(failed.error)
        }
    }
}
