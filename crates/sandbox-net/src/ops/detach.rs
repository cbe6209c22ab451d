//! Detach: undo a sandbox's journal and drop its state.

use serde::Serialize;

use crate::failpoint::FailAt;
use crate::journal;
use crate::journal::ownership::LeftAlone;
use crate::sandbox::{Access, Place, Sandbox};
use crate::{Error, Result};

/// What detach did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum Detached {
    /// Every journalled object that was still ours was removed.
    Detached {
        /// The sandbox id.
        id: String,
        /// How many journalled objects were undone (or found gone already).
        objects: usize,
        /// Journalled objects whose place is taken by something not ours: not touched.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        left_alone: Vec<LeftAlone>,
    },
    /// Nothing was attached under this id.
    NotAttached {
        /// The sandbox id.
        id: String,
    },
    /// The netns no longer exists; the state was dropped.
    NetnsGone {
        /// The sandbox id.
        id: String,
        /// The path of the netns that is gone.
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
    let Some(mut sandbox) = Sandbox::find(state_dir, id, Access::Change)? else {
        return Ok(Detached::NotAttached { id: id.to_string() });
    };
    let state = &sandbox.state;
    let outcome = match &mut sandbox.place {
        Place::Host => {
            super::static_attach::undo_static(state)?;
            Detached::Detached {
                id: id.to_string(),
                objects: state.journal.len(),
                left_alone: Vec::new(),
            }
        }
        Place::Lost(lost) => {
            // What lived in the netns went with it (or is not ours, in a new one); what
            // lives outside it (VFIO bindings) is still owed.
            let restored = journal::undo_outside(&state.journal).map_err(|e| undo_error(id, e))?;
            Detached::NetnsGone {
                id: id.to_string(),
                netns: state.netns_path.display().to_string(),
                replaced: lost.replaced,
                restored,
            }
        }
        Place::Netns { netns, nl } => {
            let undone = netns.run(|| {
                journal::undo_at(nl, &state.journal, &state.owner(), fail_at)
                    .map_err(|e| undo_error(id, e))
            })??;
            Detached::Detached {
                id: id.to_string(),
                objects: state.journal.len() - undone.left_alone.len(),
                left_alone: undone.left_alone,
            }
        }
    };
    sandbox.store.remove(id)?;
    sandbox.forget_lock();
    Ok(outcome)
}

fn undo_error(id: &str, e: journal::UndoError) -> Error {
    Error::kernel(
        format!("sandbox {id}: {}", e.entry.describe()),
        "remove",
        e.error,
    )
}
