//! Putting the kernel back after a multi-step change to a live attachment failed halfway:
//! reconcile what the journal says now with what it said before.

use crate::journal::{self, Entry};
use crate::netlink::Netlink;
use crate::state::{State, StateDir};

/// Make the kernel match `before` again, `now` being what was changed since: undo the
/// entries only `now` has, re-create those only `before` has (a changed entry is both).
/// Devices re-created get new ifindexes, so when anything was re-created the state is
/// saved again with them. Runs inside the netns; what can't be restored is logged (the
/// caller reports the original failure).
pub(super) fn restore(nl: &mut Netlink, store: &StateDir, before: &State, now: &State) {
    let alias = crate::names::owner_alias(&before.id);
    let added: Vec<Entry> = now
        .journal
        .iter()
        .filter(|e| !before.journal.contains(e))
        .cloned()
        .collect();
    if let Err(e) = journal::undo(nl, &added, &now.owner()) {
        tracing::error!(id = %before.id, object = %e.entry.describe(), error = %e.error,
            "rollback: could not remove a new object");
    }
    let positions: Vec<usize> = (0..before.journal.len())
        .filter(|&i| !now.journal.contains(&before.journal[i]))
        .collect();
    if positions.is_empty() {
        return;
    }
    let mut removed: Vec<Entry> = positions
        .iter()
        .map(|&i| before.journal[i].clone())
        .collect();
    let recreated: Vec<String> = removed
        .iter()
        .filter(|e| e.creates_device())
        .map(|e| e.device().to_string())
        .collect();
    for entry in &mut removed {
        if recreated.iter().any(|d| d == entry.device()) {
            entry.forget_ifindex();
        }
    }
    if let Err(e) = journal::apply(nl, &mut removed, &alias) {
        tracing::error!(id = %before.id, object = %e.entry.describe(), step = e.step, error = %e.error,
            "rollback: could not re-create a removed object");
    }
    let mut restored = before.clone();
    for (i, entry) in positions.into_iter().zip(removed) {
        restored.journal[i] = entry;
    }
    if let Err(e) = store.save(&restored) {
        tracing::error!(id = %before.id, error = %e, "rollback: could not save the restored state");
    }
}
