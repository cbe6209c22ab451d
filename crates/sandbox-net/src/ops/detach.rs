//! Detach: undo a sandbox's journal and drop its state.

use serde::Serialize;

use super::reopen::{Reopened, reopen_netns};
use crate::failpoint::FailAt;
use crate::journal;
use crate::journal::ownership::LeftAlone;
use crate::state::{self, StateDir};
use crate::{Error, Result};

/// What detach did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum Detached {
    /// Every journalled object that was still ours was removed.
    Detached {
        id: String,
        /// How many journalled objects were undone (or found gone already).
        objects: usize,
        /// Journalled objects whose place is taken by something not ours: not touched.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        left_alone: Vec<LeftAlone>,
    },
    /// Nothing was attached under this id.
    NotAttached { id: String },
    /// The netns no longer exists; the state was dropped.
    NetnsGone {
        id: String,
        netns: String,
        /// Another namespace is at its path now (re-created under the same name): nothing
        /// in it was touched.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        replaced: bool,
        /// What lived outside the netns and was undone (VFIO bindings).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        restored: Vec<String>,
    },
}

impl std::fmt::Display for Detached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Detached::Detached {
                id,
                objects,
                left_alone,
            } => {
                write!(
                    f,
                    "sandbox {id}: detached ({objects} kernel objects removed)"
                )?;
                for l in left_alone {
                    write!(f, "\n  left alone: {}: {}", l.object, l.reason)?;
                }
                Ok(())
            }
            Detached::NotAttached { id } => write!(f, "sandbox {id}: nothing was attached"),
            Detached::NetnsGone {
                id,
                netns,
                replaced,
                restored,
            } => {
                write!(f, "sandbox {id}: netns {netns} no longer exists")?;
                if *replaced {
                    write!(
                        f,
                        " (another namespace is at that path now; nothing in it was touched)"
                    )?;
                }
                write!(f, "; its objects went with it, state removed")?;
                for r in restored {
                    write!(f, "\n  restored: {r}")?;
                }
                Ok(())
            }
        }
    }
}

/// Detach a sandbox: undo its journal (filters, then qdiscs, then taps) and drop its state.
pub fn detach(state_dir: &std::path::Path, id: &str) -> Result<Detached> {
    detach_at(state_dir, id, FailAt::NEVER)
}

/// [`detach`], stopping with an injected failure before the `fail_at`-th object in
/// teardown order (a test hook: the `failpoints` feature). The state is kept, so a later
/// detach finishes the job.
#[cfg(feature = "failpoints")]
pub fn detach_with_failpoint(
    state_dir: &std::path::Path,
    id: &str,
    fail_at: Option<usize>,
) -> Result<Detached> {
    detach_at(state_dir, id, FailAt::before(fail_at))
}

fn detach_at(state_dir: &std::path::Path, id: &str, fail_at: FailAt) -> Result<Detached> {
    state::validate_id(id)?;
    let store = StateDir::open(state_dir)?;
    let mut lock = store.lock(id)?;
    let Some(state) = store.load(id)? else {
        // A save killed before its rename may have left a temp file (and no kernel change:
        // the first save precedes the first change).
        store.remove(id)?;
        lock.remove_on_release();
        return Ok(Detached::NotAttached { id: id.to_string() });
    };
    if state.is_static() {
        super::static_attach::undo_static(&state)?;
        store.remove(id)?;
        lock.remove_on_release();
        return Ok(Detached::Detached {
            id: id.to_string(),
            objects: state.journal.len(),
            left_alone: Vec::new(),
        });
    }
    let (netns, mut nl) = match reopen_netns(&state)? {
        Reopened::Same { netns, nl } => (netns, nl),
        Reopened::Lost(lost) => {
            // What lived in the netns went with it (or is not ours, in a new one); what
            // lives outside it (VFIO bindings) is still owed.
            let restored = journal::undo_outside(&state.journal).map_err(|e| undo_error(id, e))?;
            store.remove(id)?;
            lock.remove_on_release();
            return Ok(Detached::NetnsGone {
                id: id.to_string(),
                netns: state.netns_path.display().to_string(),
                replaced: lost.replaced,
                restored,
            });
        }
    };
    let undone = netns.run(|| {
        journal::undo_at(&mut nl, &state.journal, &state.owner(), fail_at)
            .map_err(|e| undo_error(id, e))
    })??;
    store.remove(id)?;
    lock.remove_on_release();
    Ok(Detached::Detached {
        id: id.to_string(),
        objects: state.journal.len() - undone.left_alone.len(),
        left_alone: undone.left_alone,
    })
}

fn undo_error(id: &str, e: journal::UndoError) -> Error {
    Error::kernel(
        format!("sandbox {id}: {}", e.entry.describe()),
        "remove",
        e.error,
    )
}
