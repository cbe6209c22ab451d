//! `watch`: follow an attached sandbox's netns live. A configured interface that appears is
//! attached (as `add-endpoint` does), an attached one that disappears is detached (as
//! `remove-endpoint` does), and a change of the addresses, routes or usable neighbours of
//! the attached interfaces gives a new guest description. Every change is reported as a
//! [`WatchEvent`].
//!
//! Notifications (see [`subscription`]) only trigger work: after each batch the netns is
//! scanned again (4 dumps) and compared with the state (see [`diff`]), so events that
//! arrive during an attach, an overrun, or sandbox-net's own changes all end the same way.
//! The tenant can make notifications as fast as it likes: rounds are paced (see [`pace`]),
//! a description over a cap (see [`crate::guest::over_cap`]) is reported, not recorded,
//! and the state is saved only when the description changed.
//! The watch stops when `stop` is set (the CLI sets it on SIGTERM/SIGINT), when
//! the netns is deleted, and when the sandbox is detached.

pub mod diff;
mod liveness;
pub mod pace;
pub mod subscription;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::endpoint::Endpoint;
use crate::guest::{self, GuestConfig};
use crate::netlink::Netlink;
use crate::sandbox::{Access, Sandbox};
use crate::scan::{self, Snapshot};
use crate::state::{Phase, State, StateDir};
use crate::{Error, Result};
use liveness::NetnsFile;
use pace::Pace;
use subscription::{Activity, Subscription};

/// Which sandbox to watch.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The state directory.
    pub state_dir: PathBuf,
    /// The sandbox to watch.
    pub id: String,
    /// The longest wait between two checks of the stop flag and of the netns file.
    pub tick: Duration,
}

impl WatchOptions {
    /// Watch sandbox `id` of `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>, id: impl Into<String>) -> WatchOptions {
        WatchOptions {
            state_dir: state_dir.into(),
            id: id.into(),
            tick: Duration::from_millis(500),
        }
    }
}

/// Why a watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// The stop flag was set (a signal).
    Requested,
    /// The netns file is gone, or names another namespace now.
    NetnsGone,
    /// The sandbox's state is gone (it was detached).
    Detached,
}

/// One change, as `watch --json` prints it (one object per line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum WatchEvent {
    /// An interface was attached; `guest` is the whole new guest description.
    EndpointAdded {
        /// The endpoint attached.
        endpoint: Endpoint,
        /// The whole new guest description.
        guest: GuestConfig,
    },
    /// An attached interface disappeared and was detached.
    EndpointRemoved {
        /// The endpoint detached.
        endpoint: Endpoint,
        /// The whole new guest description.
        guest: GuestConfig,
    },
    /// Addresses, routes or usable neighbours of the attached interfaces changed.
    GuestChanged {
        /// The whole new guest description.
        guest: GuestConfig,
    },
    /// Something could not be done; the watch goes on.
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        /// The interface it is about, if any.
        interface: Option<String>,
        /// What went wrong.
        message: String,
    },
    /// The last event: the watch ended.
    Stopped {
        /// Why.
        reason: StopReason,
    },
}

/// The outcome of one comparison of the netns with the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    Done,
    /// Something was busy (the sandbox's lock, an unfinished operation): try again soon.
    Retry,
    Detached,
}

/// Watch sandbox `opts.id` until `stop` is set, its netns is deleted or it is detached.
/// Every change is passed to `emit`; the last event is `Stopped`. Errors before the watch
/// starts (not attached, a static attachment, netns gone) are returned; later ones are
/// `Error` events, except a failure of the subscription itself.
pub fn watch(
    opts: &WatchOptions,
    stop: &AtomicBool,
    mut emit: impl FnMut(&WatchEvent),
) -> Result<StopReason> {
    let mut sandbox = Sandbox::open(&opts.state_dir, &opts.id, Access::Read)?;
    let (netns, nl) = sandbox.place.netns(&opts.id, "watch")?;
    let state = &sandbox.state;
    let file = NetnsFile {
        path: state.netns_path.clone(),
        id: state.netns_id,
    };
    let mut subscription = Subscription::open(netns)?;
    let mut watcher = Watcher {
        opts,
        store: sandbox.store.clone(),
        netns: netns.display().to_string(),
        refused: Vec::new(),
        stuck: Vec::new(),
        over_cap: false,
        not_followed: None,
        saved: 0,
        known: state.endpoints.clone(),
    };
    tracing::info!(id = %opts.id, netns = %netns.display(), "watching");
    let mut pace = Pace::new(Instant::now());
    let mut rounds: u64 = 0;
    let mut pending = true;
    let mut retry = false;
    let state_file = watcher.store.state_path(&opts.id);
    let mut state_seen = file_identity(&state_file);
    let reason = loop {
        if stop.load(Ordering::SeqCst) {
            break StopReason::Requested;
        }
        if file.gone()? {
            break StopReason::NetnsGone;
        }
        // Another process changed the state (every save puts a new file in place): a
        // round reports what it did even when the netns said nothing (one stat a tick).
        let identity = file_identity(&state_file);
        if identity != state_seen {
            state_seen = identity;
            pending = true;
        }
        if pending {
            let wait = pace.wait(Instant::now());
            if !wait.is_zero() {
                // Whatever arrives meanwhile stays queued, and the round's scan sees it.
                subscription::pause(wait.min(opts.tick))?;
                continue;
            }
            // What is queued now happened before the scan that follows: it is covered.
            subscription.drain(stop)?;
            let started = Instant::now();
            let round = watcher.round(nl, stop, &mut emit);
            pace.ran(started, Instant::now());
            rounds += 1;
            retry = match round {
                Round::Done => false,
                Round::Retry => true,
                Round::Detached => break StopReason::Detached,
            };
        }
        // Changes made during the round (ours included) are queued: the wait returns at
        // once and the next round compares again.
        pending = match subscription.wait(opts.tick, stop)? {
            Activity::Changed(_) | Activity::Overrun => true,
            Activity::Quiet => retry,
        };
    };
    tracing::info!(id = %opts.id, ?reason, rounds, saved = watcher.saved, "watch stopped");
    emit(&WatchEvent::Stopped { reason });
    Ok(reason)
}

/// The device, inode and change time of the file at `path` (None when there is none): a
/// save puts a new file in place, so a change of identity is a change of the state.
fn file_identity(path: &std::path::Path) -> Option<(u64, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.ctime(), m.ctime_nsec()))
}

/// The work of one watch: compare, attach, detach, describe.
struct Watcher<'a> {
    opts: &'a WatchOptions,
    store: StateDir,
    /// The netns as the user named it, for messages.
    netns: String,
    /// Interfaces (ifindex) already reported as impossible to attach: not retried, not
    /// reported again, until they go away.
    refused: Vec<u32>,
    /// Endpoints whose removal failed (reported once): not retried while they are recorded.
    stuck: Vec<String>,
    /// The description is over a cap (reported once, until it is back under).
    over_cap: bool,
    /// Address changes (l3) whose following failed (reported once): not retried while
    /// the netns asks for the same ones.
    not_followed: Option<Vec<crate::model::l3::follow::AddressChange>>,
    /// Descriptions saved.
    saved: u64,
    /// The endpoints as this watch last knew them (the state it read, and its own changes
    /// since): what another process attached or detached meanwhile (another watch,
    /// add-endpoint, remove-endpoint) is reported from the state's change.
    known: Vec<Endpoint>,
}

impl Watcher<'_> {
    fn scan(&self, nl: &mut Netlink) -> Result<Snapshot> {
        scan::scan(nl)
            .map_err(|e| Error::kernel(format!("netns {}", self.netns), e.dump, e.error.into_io()))
    }

    fn error(emit: &mut impl FnMut(&WatchEvent), interface: Option<&str>, e: &Error) {
        tracing::debug!(interface, error = %e, "watch: reporting an error event");
        emit(&WatchEvent::Error {
            interface: interface.map(String::from),
            message: e.to_string(),
        });
    }

    /// Scan, compare with the state, and act on the difference.
    fn round(
        &mut self,
        nl: &mut Netlink,
        stop: &AtomicBool,
        emit: &mut impl FnMut(&WatchEvent),
    ) -> Round {
        let id = self.opts.id.as_str();
        let dir = self.opts.state_dir.as_path();
        let mut snapshot = match self.scan(nl) {
            Ok(s) => s,
            Err(e) => {
                Self::error(emit, None, &e);
                return Round::Retry;
            }
        };
        let state = match self.store.load(id) {
            Ok(Some(s)) => s,
            Ok(None) => return Round::Detached,
            Err(e) => {
                Self::error(emit, None, &e);
                return Round::Retry;
            }
        };
        if state.phase != Phase::Attached {
            // Another operation is under way (or died half-way: detach will report it).
            return Round::Retry;
        }
        self.report_others(&state, &snapshot, emit);
        self.refused.retain(|i| snapshot.link(*i).is_some());
        self.stuck
            .retain(|name| state.endpoints.iter().any(|e| &e.name == name));
        let mut outcome = Round::Done;
        let mut changed = false;
        // l3: the addresses of the attached endpoints that settled, appeared or went.
        let following = state.address_changes(&snapshot);
        if following.is_empty() {
            self.not_followed = None;
        } else if self.not_followed.as_ref() != Some(&following) {
            match crate::ops::follow_addresses(dir, id) {
                Ok(followed) => {
                    self.not_followed = None;
                    if let Some(followed) = followed {
                        changed = true;
                        if let Some(guest) = followed.guest {
                            emit(&WatchEvent::GuestChanged { guest });
                        }
                    }
                }
                Err(Error::Busy { .. }) => outcome = Round::Retry,
                Err(e) => {
                    let interface = match &e {
                        Error::Unsupported { iface, .. } => Some(iface.clone()),
                        _ => None,
                    };
                    self.not_followed = Some(following);
                    Self::error(emit, interface.as_deref(), &e);
                }
            }
        }
        let changes = diff::diff(&state, &snapshot);
        for endpoint in changes.gone {
            if stop.load(Ordering::SeqCst) {
                return Round::Done;
            }
            if self.stuck.contains(&endpoint.name) {
                continue;
            }
            match crate::ops::remove_gone_endpoint(dir, id, &endpoint.name) {
                Ok(change) => {
                    changed = true;
                    self.known.retain(|e| e.name != change.endpoint.name);
                    emit(&WatchEvent::EndpointRemoved {
                        endpoint: change.endpoint,
                        guest: change.guest,
                    });
                }
                Err(Error::Busy { .. }) => outcome = Round::Retry,
                // Another process detached it first: reported from the state's change.
                Err(_) if !self.recorded(&endpoint.name) => outcome = Round::Retry,
                Err(e) => {
                    self.stuck.push(endpoint.name.clone());
                    Self::error(emit, Some(&endpoint.name), &e);
                }
            }
        }
        for new in changes.new {
            if stop.load(Ordering::SeqCst) {
                return Round::Done;
            }
            if self.refused.contains(&new.ifindex) {
                continue;
            }
            let result = match &new.kind {
                Err(reason) => Err(Error::Unsupported {
                    iface: new.name.clone(),
                    netns: self.netns.clone(),
                    reason: reason.clone(),
                }),
                Ok(_) => crate::ops::add_endpoint_without_waiting(dir, id, &new.name),
            };
            match result {
                Ok(change) => {
                    changed = true;
                    self.known.push(change.endpoint.clone());
                    emit(&WatchEvent::EndpointAdded {
                        endpoint: change.endpoint,
                        guest: change.guest,
                    });
                }
                Err(Error::Busy { .. }) => outcome = Round::Retry,
                // Another process attached it first: reported from the state's change.
                Err(_) if self.recorded(&new.name) => outcome = Round::Retry,
                Err(e) => {
                    self.refused.push(new.ifindex);
                    Self::error(emit, Some(&new.name), &e);
                }
            }
        }
        let seen = if changed {
            snapshot = match self.scan(nl) {
                Ok(s) => s,
                Err(e) => {
                    Self::error(emit, None, &e);
                    return Round::Retry;
                }
            };
            None
        } else {
            Some(&state)
        };
        match self.describe(seen, &snapshot, emit) {
            Round::Done => outcome,
            other => other,
        }
    }

    /// Whether the sandbox's state has an endpoint `name` now (false when it can't be
    /// read: the failure at hand is then reported as it is).
    fn recorded(&self, name: &str) -> bool {
        self.store
            .load(&self.opts.id)
            .ok()
            .flatten()
            .is_some_and(|s| s.endpoints.iter().any(|e| e.name == name))
    }

    /// Report what another process attached or detached since this watch last looked
    /// (the state against [`Watcher::known`]), then know the state's endpoints.
    fn report_others(
        &mut self,
        state: &State,
        snapshot: &Snapshot,
        emit: &mut impl FnMut(&WatchEvent),
    ) {
        let same = |a: &Endpoint, b: &Endpoint| a.name == b.name && a.ifindex == b.ifindex;
        let removed: Vec<&Endpoint> = self
            .known
            .iter()
            .filter(|k| !state.endpoints.iter().any(|e| same(e, k)))
            .collect();
        let added: Vec<&Endpoint> = state
            .endpoints
            .iter()
            .filter(|e| !self.known.iter().any(|k| same(e, k)))
            .collect();
        if !removed.is_empty() || !added.is_empty() {
            let guest = state
                .guest
                .clone()
                .unwrap_or_else(|| state.guest_now(snapshot));
            for endpoint in removed {
                emit(&WatchEvent::EndpointRemoved {
                    endpoint: endpoint.clone(),
                    guest: guest.clone(),
                });
            }
            for endpoint in added {
                emit(&WatchEvent::EndpointAdded {
                    endpoint: endpoint.clone(),
                    guest: guest.clone(),
                });
            }
        }
        self.known = state.endpoints.clone();
    }

    /// The description is over a cap: report it once, record nothing.
    fn over_cap(&mut self, reason: String, emit: &mut impl FnMut(&WatchEvent)) -> Round {
        if !self.over_cap {
            self.over_cap = true;
            emit(&WatchEvent::Error {
                interface: None,
                message: format!(
                    "sandbox {}: {reason}; the recorded description is kept as it was until the netns is back under the cap",
                    self.opts.id
                ),
            });
        }
        Round::Done
    }

    /// Record and report the guest description when it changed. `seen`, the state this
    /// round compared with, says without the lock and a second load when nothing did.
    fn describe(
        &mut self,
        seen: Option<&State>,
        snapshot: &Snapshot,
        emit: &mut impl FnMut(&WatchEvent),
    ) -> Round {
        if let Some(state) = seen {
            let guest = state.guest_now(snapshot);
            if let Some(reason) = guest::over_cap(&guest) {
                return self.over_cap(reason, emit);
            }
            if state
                .guest
                .as_ref()
                .is_some_and(|recorded| guest::same(&guest, recorded))
            {
                self.over_cap = false;
                return Round::Done;
            }
        }
        let id = self.opts.id.as_str();
        let mut lock = match self.store.lock(id) {
            Ok(l) => l,
            Err(Error::Busy { .. }) => return Round::Retry,
            Err(e) => {
                Self::error(emit, None, &e);
                return Round::Retry;
            }
        };
        let mut state = match self.store.load(id) {
            Ok(Some(s)) if s.phase == Phase::Attached => s,
            Ok(Some(_)) => return Round::Retry,
            Ok(None) => {
                // Detached meanwhile: leave no lock file behind.
                lock.remove_on_release();
                return Round::Detached;
            }
            Err(e) => {
                Self::error(emit, None, &e);
                return Round::Retry;
            }
        };
        let guest = state.guest_now(snapshot);
        if let Some(reason) = guest::over_cap(&guest) {
            return self.over_cap(reason, emit);
        }
        self.over_cap = false;
        // An attach that did not record the description: the first one seen is the
        // baseline, not a change.
        let baseline = state.guest.is_none();
        if state
            .guest
            .as_ref()
            .is_some_and(|recorded| guest::same(&guest, recorded))
        {
            return Round::Done;
        }
        state.guest = Some(guest.clone());
        if let Err(e) = self.store.save(&state) {
            Self::error(emit, None, &e);
            return Round::Retry;
        }
        self.saved += 1;
        if !baseline {
            emit(&WatchEvent::GuestChanged { guest });
        }
        Round::Done
    }
}
