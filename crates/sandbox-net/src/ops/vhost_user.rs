//! A vhost-user socket serves one endpoint: one that another endpoint already holds (of
//! this sandbox or of any state in the state directory, whatever its phase) is refused,
//! naming the sandbox and the interface that hold it. The sockets themselves are found by
//! [`crate::vhost_user::find`].

use std::path::Path;

use crate::endpoint::Endpoint;
use crate::state::{State, StateDir};
use crate::vhost_user::same_socket;
use crate::{Error, Result};

/// Who holds `socket` apart from endpoint `except` of sandbox `state`: (sandbox, interface).
fn holder<'a>(socket: &Path, state: &'a State, except: Option<&str>) -> Option<(&'a str, &'a str)> {
    state
        .endpoints
        .iter()
        .filter(|e| Some(e.name.as_str()) != except)
        .find(|e| {
            e.backend
                .vhost_user_socket()
                .is_some_and(|s| same_socket(s, socket))
        })
        .map(|e| (state.id.as_str(), e.name.as_str()))
}

/// Refuse a vhost-user socket of `new` (endpoints of `state`, saved already) that another
/// endpoint holds: another one of `state`, or one of any other state in `store`. Called
/// after the state naming the new endpoints is saved, so of two attachments that claim a
/// socket at the same time, at least one sees the other.
pub(super) fn refuse_held(
    store: &StateDir,
    state: &State,
    new: &[Endpoint],
    netns: &str,
) -> Result<()> {
    let wanted: Vec<(&str, &Path)> = new
        .iter()
        .filter_map(|e| Some((e.name.as_str(), e.backend.vhost_user_socket()?)))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let mut others = Vec::new();
    for id in store.ids()? {
        if id != state.id
            && let Some(other) = store.load(&id)?
        {
            others.push(other);
        }
    }
    for (iface, socket) in wanted {
        let held = holder(socket, state, Some(iface))
            .or_else(|| others.iter().find_map(|o| holder(socket, o, None)));
        if let Some((id, by)) = held {
            return Err(Error::Unsupported {
                iface: iface.to_string(),
                netns: netns.to_string(),
                reason: format!(
                    "its vhost-user socket {} is already held by sandbox {id} (interface {by}); it is not attached",
                    socket.display()
                ),
            });
        }
    }
    Ok(())
}
