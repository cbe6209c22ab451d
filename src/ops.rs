//! The operations behind the CLI and the library API: attach, detach, status, guest-config.

use std::path::PathBuf;

use serde::Serialize;

use crate::endpoint;
use crate::guest::{self, GuestConfig};
use crate::journal::{self, Entry};
use crate::model::{Model, tcfilter};
use crate::netlink::Netlink;
use crate::netns::NetNs;
use crate::scan;
use crate::state::{self, Endpoint, Phase, State, StateDir};
use crate::tap::{self, TapOwner};
use crate::{Error, Result};

/// What to attach, and how.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// A netns name (under /run/netns) or a path to a netns file.
    pub netns: String,
    pub id: String,
    pub model: Model,
    /// Queues per tap (1 = single queue).
    pub queues: u32,
    /// Allow the caller's own netns and the host netns.
    pub allow_host_netns: bool,
    pub state_dir: PathBuf,
    /// Attach only these interfaces (e.g. a CNI plugin's CNI_IFNAME); None = every
    /// configured interface.
    pub interfaces: Option<Vec<String>>,
    /// Tap names to use instead of `tap<N>_sn`, in endpoint order (CNI's `tapName`).
    pub tap_names: Vec<String>,
    /// Owner and group of the taps, for VMMs that run unprivileged.
    pub tap_owner: TapOwner,
    /// Test hook: fail before journal step N (N = journal length: after every step).
    /// Honoured only when built with the `failpoints` feature.
    pub fail_at_step: Option<usize>,
}

impl AttachOptions {
    pub fn new(netns: impl Into<String>, id: impl Into<String>) -> AttachOptions {
        AttachOptions {
            netns: netns.into(),
            id: id.into(),
            model: Model::Tcfilter,
            queues: 1,
            allow_host_netns: false,
            state_dir: StateDir::resolve(None),
            interfaces: None,
            tap_names: Vec::new(),
            tap_owner: TapOwner::default(),
            fail_at_step: None,
        }
    }
}

/// The result of an attach: what the VMM and the guest need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    pub id: String,
    pub netns: String,
    pub model: Model,
    pub endpoints: Vec<Endpoint>,
    pub guest: GuestConfig,
    /// Netlink requests the attach made (4 scan dumps included).
    pub netlink_requests: u64,
}

impl Attachment {
    fn from_state(s: &State, netlink_requests: u64) -> Attachment {
        Attachment {
            id: s.id.clone(),
            netns: s.netns_path.display().to_string(),
            model: s.model,
            endpoints: s.endpoints.clone(),
            guest: s.guest.clone(),
            netlink_requests,
        }
    }
}

fn check_queues(queues: u32) -> Result<()> {
    if queues == 0 || queues > tap::MAX_QUEUES {
        return Err(Error::invalid(
            format!("queue count {queues}"),
            format!("must be between 1 and {}", tap::MAX_QUEUES),
        ));
    }
    Ok(())
}

/// Attach every configured interface of a netns. On any failure the kernel objects made so
/// far are removed, the state file is removed, and the netns is left as it was.
pub fn attach(opts: &AttachOptions) -> Result<Attachment> {
    state::validate_id(&opts.id)?;
    check_queues(opts.queues)?;
    for name in &opts.tap_names {
        tap::validate_ifname(name).map_err(|r| Error::invalid(format!("tap name {name:?}"), r))?;
    }
    // Validate the netns before touching the state directory: bad input creates nothing.
    let netns = NetNs::open(&opts.netns, opts.allow_host_netns)?;
    let store = StateDir::open(&opts.state_dir)?;
    let mut lock = store.lock(&opts.id)?;
    if store.load(&opts.id)?.is_some() {
        return Err(Error::AlreadyAttached {
            id: opts.id.clone(),
            path: store.state_path(&opts.id),
        });
    }
    let result = netns
        .run(|| attach_inside(opts, &store, &netns))
        .and_then(|r| r);
    // A failed attach that left no state behind (refused, or rolled back) leaves no lock
    // file either: the state directory is as it was.
    if result.is_err() && !store.state_path(&opts.id).exists() {
        lock.remove_on_release();
    }
    result
}

/// The body of attach, on a thread inside the netns.
fn attach_inside(opts: &AttachOptions, store: &StateDir, netns: &NetNs) -> Result<Attachment> {
    let ns_label = format!("netns {}", netns.display());
    let mut nl =
        Netlink::open_here().map_err(|e| Error::kernel(&ns_label, "open netlink socket", e))?;
    let snapshot =
        scan::scan(&mut nl).map_err(|e| Error::kernel(&ns_label, e.dump, e.error.into_io()))?;
    let candidates = endpoint::candidates(&snapshot, opts.interfaces.as_deref()).map_err(|r| {
        Error::Unsupported {
            iface: r.iface,
            netns: netns.display().to_string(),
            reason: r.reason,
        }
    })?;
    if candidates.is_empty() {
        return Err(Error::NothingToAttach {
            netns: netns.display().to_string(),
        });
    }
    for c in &candidates {
        if !tcfilter::SUPPORTED.contains(&c.kind) {
            return Err(Error::Unsupported {
                iface: c.link.name.clone(),
                netns: netns.display().to_string(),
                reason: format!(
                    "a {} endpoint can't be attached with model {}",
                    c.kind.as_str(),
                    opts.model
                ),
            });
        }
    }
    if opts.tap_names.len() > candidates.len() {
        return Err(Error::invalid(
            "tap names",
            format!(
                "{} tap name(s) given for {} interface(s) to attach",
                opts.tap_names.len(),
                candidates.len()
            ),
        ));
    }
    let (endpoints, journal) =
        tcfilter::plan(&candidates, opts.queues, &opts.tap_names, opts.tap_owner);
    let indexes: Vec<u32> = endpoints.iter().map(|e| e.ifindex).collect();
    let mut state = State {
        version: state::STATE_VERSION,
        id: opts.id.clone(),
        netns: opts.netns.clone(),
        netns_path: netns.path().to_path_buf(),
        netns_id: netns.id(),
        model: opts.model,
        phase: Phase::Attaching,
        endpoints,
        guest: guest::describe(&snapshot, &indexes),
        journal,
    };
    // The journal is on disk before the first kernel change.
    store.save(&state)?;
    let alias = journal::owner_alias(&opts.id);
    let fail_at = opts.fail_at_step;
    let applied = journal::apply(&mut nl, &mut state.journal, &alias, fail_at);
    let finished = applied
        .map_err(|e| {
            (
                e.applied,
                Error::kernel(
                    format!("sandbox {}: {}", opts.id, e.entry.describe()),
                    e.step,
                    e.error,
                ),
            )
        })
        .and_then(|()| {
            if cfg!(feature = "failpoints") && fail_at == Some(state.journal.len()) {
                return Err((
                    state.journal.len(),
                    Error::Injected {
                        object: format!("sandbox {}", opts.id),
                        step: "save attached state".into(),
                    },
                ));
            }
            state.phase = Phase::Attached;
            store.save(&state).map_err(|e| (state.journal.len(), e))
        });
    match finished {
        Ok(()) => {
            tracing::info!(id = %opts.id, endpoints = state.endpoints.len(), requests = nl.requests(), "attached");
            Ok(Attachment::from_state(&state, nl.requests()))
        }
        Err((applied, error)) => {
            rollback(&mut nl, store, &state, applied, &error);
            Err(error)
        }
    }
}

/// Undo the first `applied` journal entries after a failed attach and drop the state.
fn rollback(nl: &mut Netlink, store: &StateDir, state: &State, applied: usize, cause: &Error) {
    tracing::info!(id = %state.id, %cause, applied, "attach failed; rolling back");
    if let Err(e) = journal::undo(
        nl,
        &state.journal[..applied],
        &journal::owner_alias(&state.id),
    ) {
        // Keep the state so `detach` can finish the job; report it along with the cause.
        tracing::error!(id = %state.id, object = %e.entry.describe(), error = %e.error,
            "rollback could not remove an object; the state file is kept so detach can retry");
        return;
    }
    if let Err(e) = store.remove(&state.id) {
        tracing::error!(id = %state.id, error = %e, "rollback could not remove the state file");
    }
}

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

/// Open the netns recorded in a state, if it still exists and is the same namespace.
fn reopen_netns(state: &State) -> Option<NetNs> {
    match NetNs::open_path(&state.netns, &state.netns_path) {
        Ok(ns) if ns.id() == state.netns_id => Some(ns),
        Ok(_) => None,
        Err(_) => None,
    }
}

/// Detach a sandbox: undo its journal (filters, then qdiscs, then taps) and drop its state.
pub fn detach(state_dir: &std::path::Path, id: &str) -> Result<Detached> {
    state::validate_id(id)?;
    let store = StateDir::open(state_dir)?;
    let mut lock = store.lock(id)?;
    let Some(state) = store.load(id)? else {
        lock.remove_on_release();
        return Ok(Detached::NotAttached { id: id.to_string() });
    };
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
        journal::undo(&mut nl, &state.journal, &journal::owner_alias(id)).map_err(|e| {
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

/// One journalled object and whether the kernel still has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectStatus {
    pub object: String,
    pub present: bool,
}

/// The status of one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub id: String,
    pub netns: String,
    pub model: Model,
    pub phase: Phase,
    pub endpoints: Vec<Endpoint>,
    /// Per journalled object, whether it exists (only when checked against the kernel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects: Option<Vec<ObjectStatus>>,
    /// True when the kernel no longer matches the journal (or the netns is gone).
    pub drift: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Status of every sandbox in the state dir (no kernel check).
pub fn list(state_dir: &std::path::Path) -> Result<Vec<Status>> {
    let store = StateDir::open(state_dir)?;
    let mut out = Vec::new();
    for id in store.ids()? {
        if let Some(s) = store.load(&id)? {
            out.push(Status {
                id: s.id.clone(),
                netns: s.netns_path.display().to_string(),
                model: s.model,
                phase: s.phase,
                endpoints: s.endpoints.clone(),
                objects: None,
                drift: false,
                problem: None,
            });
        }
    }
    Ok(out)
}

/// Status of one sandbox, checking every journalled object against the kernel.
pub fn status(state_dir: &std::path::Path, id: &str) -> Result<Option<Status>> {
    state::validate_id(id)?;
    let store = StateDir::open(state_dir)?;
    let Some(s) = store.load(id)? else {
        return Ok(None);
    };
    let mut status = Status {
        id: s.id.clone(),
        netns: s.netns_path.display().to_string(),
        model: s.model,
        phase: s.phase,
        endpoints: s.endpoints.clone(),
        objects: None,
        drift: false,
        problem: None,
    };
    let Some(netns) = reopen_netns(&s) else {
        status.drift = true;
        status.problem = Some(format!("netns {} no longer exists", s.netns_path.display()));
        return Ok(Some(status));
    };
    let objects = netns.run(|| check_objects(&netns, &s.journal))??;
    status.drift = objects.iter().any(|o| !o.present) || s.phase != Phase::Attached;
    if s.phase != Phase::Attached {
        status.problem = Some("attach did not finish (crashed?); run detach to clean up".into());
    }
    status.objects = Some(objects);
    Ok(Some(status))
}

fn check_objects(netns: &NetNs, journal: &[Entry]) -> Result<Vec<ObjectStatus>> {
    let ns_label = format!("netns {}", netns.display());
    let mut nl =
        Netlink::open_here().map_err(|e| Error::kernel(&ns_label, "open netlink socket", e))?;
    let in_force = journal::in_force(&mut nl, journal)
        .map_err(|(step, e)| Error::kernel(&ns_label, step, e.into_io()))?;
    Ok(journal
        .iter()
        .zip(in_force)
        .map(|(entry, present)| ObjectStatus {
            object: entry.describe(),
            present,
        })
        .collect())
}

/// The guest description of an attached sandbox.
pub fn guest_config(state_dir: &std::path::Path, id: &str) -> Result<Option<GuestConfig>> {
    state::validate_id(id)?;
    let store = StateDir::open(state_dir)?;
    Ok(store.load(id)?.map(|s| s.guest))
}
