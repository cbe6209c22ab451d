//! An attached sandbox, opened the one way every operation on it starts: validate the id,
//! open the state directory (and, for a change, take the sandbox's lock), load the state,
//! and say where the sandbox lives — in its netns, reopened and proven the same namespace
//! ([`reopen_netns`]), in the host for a static attachment, or nowhere any more (the netns
//! is gone or replaced). The refusals every operation shares are worded here, once.

mod reopen;

use std::path::Path;

pub use reopen::{Lost, Reopened, prove_recorded, reopen_netns};

use crate::netlink::Netlink;
use crate::netns::NetNs;
use crate::state::{self, Lock, Phase, State, StateDir};
use crate::{Error, Result};

/// How an operation uses the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only: nothing is created (a missing state directory means nothing is
    /// attached), no lock is taken.
    Read,
    /// A change: the state directory is created when missing, and the sandbox's lock is
    /// held (another holder is `Error::Busy`).
    Change,
}

/// Where a sandbox lives.
#[derive(Debug)]
pub enum Place {
    /// In its netns, provably the one attached; with a netlink socket in it.
    Netns { netns: NetNs, nl: Netlink },
    /// In the host: a static attachment (`attach --config`), whose devices are in the
    /// netns the attach ran in; it has no netns of its own.
    Host,
    /// Its netns is gone, or another namespace is at its path now.
    Lost(Lost),
}

impl Place {
    /// Where `state`'s sandbox lives: a static attachment is in the host; otherwise its
    /// netns is reopened and proven the same ([`reopen_netns`]).
    pub fn of(state: &State) -> Result<Place> {
        if state.is_static() {
            return Ok(Place::Host);
        }
        Ok(match reopen_netns(state)? {
            Reopened::Same { netns, nl } => Place::Netns { netns, nl },
            Reopened::Lost(lost) => Place::Lost(lost),
        })
    }

    /// The netns of sandbox `id` and a socket in it, for an operation that works there
    /// (`verb`, as the refusals name it: "hot-plug interfaces"). A static attachment and
    /// a lost netns are refused (exit 2).
    pub fn netns(&mut self, id: &str, verb: &str) -> Result<(&NetNs, &mut Netlink)> {
        match self {
            Place::Netns { netns, nl } => Ok((netns, nl)),
            Place::Host => Err(Error::invalid(
                format!("sandbox {id}"),
                format!("is a static attachment (attach --config): it has no netns to {verb}"),
            )),
            Place::Lost(lost) => Err(lost.refusal(id, verb)),
        }
    }

    /// Refuse `verb` when another namespace is at the path of the sandbox's netns: what it
    /// would read or hand over would be the new namespace's. A netns that is simply gone is
    /// not refused (what was recorded still holds), nor a static attachment.
    pub fn refuse_replaced(&self, id: &str, verb: &str) -> Result<()> {
        match self {
            Place::Lost(lost) if lost.replaced => Err(lost.refusal(id, verb)),
            _ => Ok(()),
        }
    }
}

/// An attached sandbox: its state, where it lives, and (for a change) its lock.
#[derive(Debug)]
pub struct Sandbox {
    pub store: StateDir,
    /// Held for [`Access::Change`]: released (and, once the state is gone, the lock file
    /// removed) when the sandbox is dropped.
    pub lock: Option<Lock>,
    pub state: State,
    pub place: Place,
}

/// The error for an id with nothing attached ([`Error::NotAttached`], exit 3).
pub fn not_attached(id: &str) -> Error {
    Error::not_attached(id)
}

impl Sandbox {
    /// Open sandbox `id` of the state directory `state_dir` (see the module
    /// documentation). `Ok(None)` when nothing is attached under `id`; a change then leaves
    /// no lock file behind, nor the temp file a save killed before its rename may have left
    /// (the first save precedes the first kernel change, so nothing else was made).
    pub fn find(state_dir: &Path, id: &str, access: Access) -> Result<Option<Sandbox>> {
        state::validate_id(id)?;
        let (store, mut lock) = match access {
            Access::Read => match StateDir::open_existing(state_dir)? {
                Some(store) => (store, None),
                None => return Ok(None),
            },
            Access::Change => {
                let store = StateDir::open(state_dir)?;
                let lock = store.lock(id)?;
                (store, Some(lock))
            }
        };
        let Some(state) = store.load(id)? else {
            if let Some(lock) = lock.as_mut() {
                store.remove(id)?;
                lock.remove_on_release();
            }
            return Ok(None);
        };
        let place = Place::of(&state)?;
        Ok(Some(Sandbox {
            store,
            lock,
            state,
            place,
        }))
    }

    /// [`Sandbox::find`], with nothing attached an error ([`Error::NotAttached`], exit 3).
    pub fn open(state_dir: &Path, id: &str, access: Access) -> Result<Sandbox> {
        Sandbox::find(state_dir, id, access)?.ok_or_else(|| not_attached(id))
    }

    /// Refuse a sandbox whose attach never finished (the process died half-way): only
    /// detach may touch it.
    pub fn finished(&self) -> Result<()> {
        if self.state.phase != Phase::Attached {
            return Err(Error::invalid(
                format!("sandbox {}", self.state.id),
                "its attach never finished (crashed?); detach it first",
            ));
        }
        Ok(())
    }

    /// Release the lock with the lock file removed (the state is gone).
    pub fn forget_lock(&mut self) {
        if let Some(lock) = self.lock.as_mut() {
            lock.remove_on_release();
        }
    }
}
