//! A change to a sandbox's kernel objects as one transaction: the new entries of its
//! journal applied in order and the change recorded, or, when any step fails, the entries
//! applied so far undone (in teardown order, each proven ours, as detach undoes them).
//! Attach, static attach, add-endpoint and set-rate's new limits all go through it.

use crate::endpoint::Backend;
use crate::failpoint::FailAt;
use crate::journal::{self, Entry};
use crate::netlink::Netlink;
use crate::state::{Phase, State, StateDir};
use crate::{Error, Result, macvtap, names};

/// Why a transaction did not go through.
pub(super) struct Failed {
    pub error: Error,
    /// The undo could not remove all it had to (logged): what is left is listed by the
    /// journal, which must be kept for detach.
    pub kept: bool,
}

/// Apply `state.journal[start..]` in order, then `finish` (what completes the change:
/// recording it). When a step fails, undo the entries applied so far and return the
/// failure, naming `object` (what the change is for: "sandbox ID") and the entry.
/// `fail_at` is the test hook's step among the new entries (their number: in `finish`).
pub(super) fn apply(
    nl: &mut Netlink,
    state: &mut State,
    start: usize,
    object: &str,
    fail_at: FailAt,
    finish: impl FnOnce(&mut Netlink, &mut State) -> Result<()>,
) -> std::result::Result<(), Failed> {
    let alias = names::owner_alias(&state.id);
    let total = state.journal.len() - start;
    let outcome = match journal::apply_at(nl, &mut state.journal[start..], &alias, fail_at) {
        Ok(()) => finish(nl, state).map_err(|e| (total, e)),
        Err(e) => {
            let step = match name_taken_by(nl, &e.entry, &e.error) {
                Some(holder) => format!("{} (the name is in use by {holder})", e.step),
                None => e.step.to_string(),
            };
            Err((
                e.applied,
                Error::kernel(format!("{object}: {}", e.entry.describe()), step, e.error),
            ))
        }
    };
    let Err((applied, error)) = outcome else {
        return Ok(());
    };
    tracing::info!(id = %state.id, %error, applied, "undoing what was applied");
    let entries = &state.journal[start..start + applied];
    let kept = match journal::undo(nl, entries, &state.owner()) {
        Ok(_) => false,
        Err(e) => {
            tracing::error!(id = %state.id, object = %e.entry.describe(), error = %e.error,
                "rollback could not remove an object; the state file is kept so detach can retry");
            true
        }
    };
    Err(Failed { error, kept })
}

/// Who holds the name of a device the journal could not create because the name is
/// taken (`EBUSY`, `EEXIST`): "sandbox ID" (its owner alias, data from the netns) or "a
/// device that is not sandbox-net's". None for any other failure, or when it is gone.
fn name_taken_by(nl: &mut Netlink, entry: &Entry, error: &std::io::Error) -> Option<String> {
    let busy = matches!(error.raw_os_error(), Some(libc::EBUSY) | Some(libc::EEXIST));
    let name = match entry {
        Entry::Tap { name, .. } | Entry::Macvtap { name, .. } | Entry::Ifb { name, .. } => name,
        _ => return None,
    };
    if !busy {
        return None;
    }
    let link = crate::netlink::link::get_by_name(nl, name).ok()??;
    Some(match link.alias.as_deref().and_then(names::owner_of) {
        Some(id) => format!("sandbox {id:?}"),
        None => "a device that is not sandbox-net's".into(),
    })
}

/// The `finish` of an attach (or an added endpoint): report the character devices of the
/// new macvtaps (`state.journal[start..]`), then save the state as attached.
pub(super) fn record_attached(
    store: &StateDir,
    start: usize,
    fail_at: FailAt,
) -> impl FnOnce(&mut Netlink, &mut State) -> Result<()> + '_ {
    move |_, state| {
        let total = state.journal.len() - start;
        for entry in &state.journal[start..] {
            let Entry::Macvtap {
                name,
                ifindex: Some(index),
                ..
            } = entry
            else {
                continue;
            };
            let (major, minor) = macvtap::chardev(name, *index).map_err(|e| {
                Error::kernel(format!("macvtap {name}"), "read its character device", e)
            })?;
            let backend = state
                .endpoints
                .iter_mut()
                .map(|ep| &mut ep.backend)
                .find(|b| b.device() == Some(name.as_str()));
            if let Some(Backend::Macvtap { chardev, .. }) = backend {
                *chardev = Some(format!("{major}:{minor}"));
            }
        }
        fail_at.check(
            total,
            &format!("sandbox {}", state.id),
            "save attached state",
        )?;
        state.phase = Phase::Attached;
        store.save(state)
    }
}
