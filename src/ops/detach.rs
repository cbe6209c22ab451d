//! Detach: undo a sandbox's journal and drop its state.

use serde::Serialize;

use super::reopen_netns;
use crate::journal;
use crate::netlink::Netlink;
use crate::state::{self, StateDir};
use crate::{Error, Result};

/// What detach did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum Detached {
    /// Every journalled object was removed.
    Detached { id: String, objects: usize },
    /// Nothing was attached under this id.
    NotAttached { id: String },
    /// The netns no longer exists; the state was dropped.
    NetnsGone { id: String, netns: String },
}

impl std::fmt::Display for Detached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Detached::Detached { id, objects } => {
                write!(
                    f,
                    "sandbox {id}: detached ({objects} kernel objects removed)"
                )
            }
            Detached::NotAttached { id } => write!(f, "sandbox {id}: nothing was attached"),
            Detached::NetnsGone { id, netns } => write!(
                f,
                "sandbox {id}: netns {netns} no longer exists; its objects went with it, state removed"
            ),
        }
    }
}

/// Detach a sandbox: undo its journal (filters, then qdiscs, then taps) and drop its state.
pub fn detach(state_dir: &std::path::Path, id: &str) -> Result<Detached> {
    detach_with_failpoint(state_dir, id, None)
}

/// [`detach`], stopping with an injected failure before the `fail_at`-th object in
/// teardown order (a test hook, honoured only with the `failpoints` feature). The state is
/// kept, so a later detach finishes the job.
pub fn detach_with_failpoint(
    state_dir: &std::path::Path,
    id: &str,
    fail_at: Option<usize>,
) -> Result<Detached> {
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
        });
    }
    let Some(netns) = reopen_netns(&state) else {
        store.remove(id)?;
        lock.remove_on_release();
        return Ok(Detached::NetnsGone {
            id: id.to_string(),
            netns: state.netns_path.display().to_string(),
        });
    };
    netns.run(|| -> Result<()> {
        let ns_label = format!("netns {}", netns.display());
        let mut nl =
            Netlink::open_here().map_err(|e| Error::kernel(&ns_label, "open netlink socket", e))?;
        let alias = journal::owner_alias(id);
        journal::undo_with_failpoint(&mut nl, &state.journal, &alias, fail_at).map_err(|e| {
            Error::kernel(
                format!("sandbox {id}: {}", e.entry.describe()),
                "remove",
                e.error,
            )
        })
    })??;
    store.remove(id)?;
    lock.remove_on_release();
    Ok(Detached::Detached {
        id: id.to_string(),
        objects: state.journal.len(),
    })
}
