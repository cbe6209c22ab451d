//! Reopening the netns a state records, and proving it is the same namespace. The device
//! and inode of an nsfs file are reused by the kernel as soon as the namespace is freed
//! (`ip netns del a; ip netns add a` often gives the new `a` the old inode), so they are
//! compared together with the netns cookie (`SO_NETNS_COOKIE`, never reused within a
//! boot), read from the netlink socket every caller opens in there anyway. Every operation
//! that goes back to a recorded netns (detach, gc, status, hotplug, set-rate, the guest
//! description, watch, CNI DEL and CHECK, vmm-args and exec) goes through
//! [`reopen_netns`], most of them by way of [`super::Sandbox::open`].

use crate::error::NetnsProblem;
use crate::netlink::Netlink;
use crate::netns::NetNs;
use crate::state::State;
use crate::{Error, Result};

/// What became of the netns a state records.
pub enum Reopened {
    /// It is still there, provably the same namespace; with a netlink socket inside it.
    Same { netns: NetNs, nl: Netlink },
    /// It is gone: nothing, or another namespace, is at its path now.
    Lost(Lost),
}

/// Why the recorded netns is not there any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// Another namespace is at the path (re-created under the same name, or a reused
    /// PID): nothing in it may be touched.
    pub replaced: bool,
    /// One sentence naming the path (and, when replaced, how it was told apart).
    pub reason: String,
}

impl Lost {
    /// The refusal of an operation that needs the sandbox's netns, naming the sandbox and
    /// the netns.
    pub fn refusal(&self, id: &str, operation: &str) -> Error {
        Error::NetnsLost {
            id: id.to_string(),
            problem: if self.replaced {
                NetnsProblem::Replaced
            } else {
                NetnsProblem::NotFound
            },
            reason: format!("{}; refusing to {operation}; detach it", self.reason),
        }
    }
}

/// Reopen the netns `state` records (by path) and prove it is the same namespace.
/// Errors only when the namespace is provably the recorded one by device and inode but
/// its socket can't be opened or its cookie read.
pub fn reopen_netns(state: &State) -> Result<Reopened> {
    match NetNs::open_path(&state.netns, &state.netns_path) {
        Ok(netns) => prove_recorded(state, netns),
        Err(e) => {
            tracing::debug!(id = %state.id, error = %e, "the recorded netns can't be opened");
            Ok(Reopened::Lost(Lost {
                replaced: false,
                reason: format!("netns {} no longer exists", state.netns_path.display()),
            }))
        }
    }
}

/// Whether the open `netns` is the one `state` records: device and inode, then the cookie
/// (when the state has one; older states fall back to device and inode, and undo's own
/// ownership checks).
pub fn prove_recorded(state: &State, netns: NetNs) -> Result<Reopened> {
    let path = netns.path().display().to_string();
    let replaced = |how: String| {
        Ok(Reopened::Lost(Lost {
            replaced: true,
            reason: format!(
                "netns {path} no longer exists: another namespace is at that path now ({how})"
            ),
        }))
    };
    let (now, then) = (netns.id(), state.netns_id);
    if now != then {
        return replaced(format!(
            "device {} inode {}, where sandbox {} was attached in device {} inode {}",
            now.dev, now.ino, state.id, then.dev, then.ino
        ));
    }
    let nl = Netlink::open_in(&netns)?;
    if let Some(recorded) = state.netns_cookie {
        let cookie = nl.netns_cookie().map_err(|e| {
            Error::kernel(
                format!("netns {}", netns.display()),
                "read its cookie (SO_NETNS_COOKIE)",
                e,
            )
        })?;
        if cookie != recorded {
            return replaced(format!(
                "the same device {} and inode {}, which the kernel reuses, but netns cookie \
                 {cookie} where sandbox {} was attached in cookie {recorded}",
                now.dev, now.ino, state.id
            ));
        }
    }
    Ok(Reopened::Same { netns, nl })
}
