//! Status: what is attached, and whether the kernel still matches the journal.

use std::os::unix::fs::FileTypeExt;

use serde::Serialize;

use super::ratelimit::LimitStatus;
use crate::endpoint::{Backend, Endpoint};
use crate::journal::{self, Entry};
use crate::model::Model;
use crate::netlink::Netlink;
use crate::netns::NetNs;
use crate::sandbox::{Access, Place, Sandbox};
use crate::state::{Phase, State, StateDir};
use crate::{Error, Result, physical, tap};

/// One journalled object and whether the kernel still has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectStatus {
    /// The object, as the journal describes it.
    pub object: String,
    /// The journal entry is in force: the object exists, or (a removal: an address, a
    /// route the macvtap model moves to the guest) it is still removed.
    pub present: bool,
    /// What is true of it, in a word: `present` or `missing` for what sandbox-net made,
    /// `removed` or `back` for what it removed by design, `set` or `changed` for a setting
    /// it changed (a MAC, a network setting), `not-ours`.
    pub condition: &'static str,
    /// Its place is taken by something that is not ours (named here): detach leaves it
    /// alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_ours: Option<String>,
}

/// The status of one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The sandbox id.
    pub id: String,
    /// The netns path.
    pub netns: String,
    /// Its model.
    pub model: Model,
    /// `attaching` (an attach that never finished) or `attached`.
    pub phase: Phase,
    /// The attached endpoints.
    pub endpoints: Vec<Endpoint>,
    /// Per journalled object, whether it exists (only when checked against the kernel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects: Option<Vec<ObjectStatus>>,
    /// Per endpoint and direction, the rate limit asked for and the one the kernel reports
    /// (only when checked against the kernel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Vec<LimitStatus>>,
    /// True when the kernel no longer matches the journal (or the netns is gone).
    pub drift: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Why the sandbox can't be checked (its netns is gone or replaced), if so.
    pub problem: Option<String>,
}

impl Status {
    /// What the state says, before any check against the kernel.
    fn recorded(s: &State) -> Status {
        Status {
            id: s.id.clone(),
            netns: s.netns_path.display().to_string(),
            model: s.model,
            phase: s.phase,
            endpoints: s.endpoints.clone(),
            objects: None,
            limits: None,
            drift: false,
            problem: None,
        }
    }
}

/// One entry of [`list`]: a sandbox, or a state file that could not be read (named, so
/// that one bad file does not hide the others).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Listed {
    Sandbox(Status),
    Unreadable {
        id: String,
        state_file: String,
        error: String,
    },
}

impl Listed {
    /// The sandbox id of the entry.
    pub fn id(&self) -> &str {
        match self {
            Listed::Sandbox(s) => &s.id,
            Listed::Unreadable { id, .. } => id,
        }
    }
}

/// Every sandbox of the state dir, with where it lives checked (its netns still there and
/// the same: `drift` and `problem` as [`status`] says them) but not its objects. A state
/// file that can't be read is an [`Listed::Unreadable`] entry naming it; the others are
/// still listed. An empty list when the directory does not exist (nothing is created).
pub fn list(state_dir: &std::path::Path) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    let Some(store) = StateDir::open_existing(state_dir)? else {
        return Ok(out);
    };
    for id in store.ids()? {
        let listed = store.load(&id).and_then(|loaded| match loaded {
            Some(state) => located(&state).map(Some),
            None => Ok(None),
        });
        match listed {
            Ok(Some(status)) => out.push(Listed::Sandbox(status)),
            Ok(None) => {}
            Err(e) => out.push(Listed::Unreadable {
                state_file: store.state_path(&id).display().to_string(),
                id,
                error: e.to_string(),
            }),
        }
    }
    Ok(out)
}

/// What the state says, and whether the sandbox still lives where it was attached.
fn located(state: &State) -> Result<Status> {
    let mut status = Status::recorded(state);
    status.drift = state.phase != Phase::Attached;
    if state.phase != Phase::Attached {
        status.problem = Some(UNFINISHED.into());
    }
    if let Place::Lost(lost) = Place::of(state)? {
        status.drift = true;
        status.problem = Some(lost.reason);
    }
    Ok(status)
}

const UNFINISHED: &str = "attach did not finish (crashed?); run detach to clean up";

/// Status of one sandbox, checking every journalled object against the kernel.
pub fn status(state_dir: &std::path::Path, id: &str) -> Result<Option<Status>> {
    let Some(sandbox) = Sandbox::find(state_dir, id, Access::Read)? else {
        return Ok(None);
    };
    let Sandbox { state, place, .. } = sandbox;
    let mut status = Status::recorded(&state);
    status.drift = state.phase != Phase::Attached;
    let objects = match place {
        Place::Host => static_objects(&state)?,
        Place::Netns { netns, mut nl } => {
            let (objects, limits) = netns.run(|| -> Result<_> {
                let objects = check_objects(&mut nl, &netns, &state)?;
                Ok((objects, super::ratelimit::read_limits(&mut nl, &state)?))
            })??;
            status.limits = Some(limits);
            objects
        }
        Place::Lost(lost) => {
            status.drift = true;
            status.problem = Some(lost.reason);
            return Ok(Some(status));
        }
    };
    status.drift |= objects.iter().any(|o| !o.present);
    let foreign: Vec<&str> = objects
        .iter()
        .filter(|o| o.not_ours.is_some())
        .map(|o| o.object.as_str())
        .collect();
    if state.phase != Phase::Attached {
        status.problem = Some(UNFINISHED.into());
    } else if !foreign.is_empty() {
        status.problem = Some(format!(
            "not ours any more (detach leaves them alone): {}",
            foreign.join(", ")
        ));
    }
    status.objects = Some(objects);
    Ok(Some(status))
}

fn check_objects(nl: &mut Netlink, netns: &NetNs, state: &State) -> Result<Vec<ObjectStatus>> {
    let ns_label = format!("netns {}", netns.display());
    let checked = journal::check(nl, &state.journal, &state.owner())
        .map_err(|(step, e)| Error::kernel(&ns_label, step, e.into_io()))?;
    Ok(state
        .journal
        .iter()
        .zip(checked)
        .map(|(entry, c)| ObjectStatus {
            object: entry.describe(),
            present: c.present,
            condition: condition(entry, c.present, c.not_ours.is_some()),
            not_ours: c.not_ours,
        })
        .collect())
}

/// What is true of a journalled object, in a word (see [`ObjectStatus::condition`]).
fn condition(entry: &Entry, present: bool, not_ours: bool) -> &'static str {
    let removal = matches!(
        entry,
        Entry::RemovedAddress { .. } | Entry::RemovedRoute { .. } | Entry::RemovedLocalRoute { .. }
    );
    let setting = matches!(entry, Entry::LinkMac { .. } | Entry::Sysctl { .. });
    match (not_ours, removal, setting, present) {
        (true, ..) => "not-ours",
        (_, true, _, true) => "removed",
        (_, true, _, false) => "back",
        (_, _, true, true) => "set",
        (_, _, true, false) => "changed",
        (.., true) => "present",
        (.., false) => "missing",
    }
}

/// What a static attachment holds, and whether it is still there: every VFIO binding, every
/// vhost-user socket, and every tap when called from the netns the attach ran in (a tap
/// can't be seen from another).
fn static_objects(state: &State) -> Result<Vec<ObjectStatus>> {
    let here = super::static_attach::own_netns()? == state.netns_id;
    let mut out = Vec::new();
    for entry in &state.journal {
        if let Entry::VfioBind { pci_address, .. } = entry {
            let bound = physical::current_driver(&physical::sysfs_root(), pci_address)
                .is_ok_and(|d| d.as_deref() == Some(physical::VFIO_DRIVER));
            out.push(ObjectStatus {
                object: entry.describe(),
                present: bound,
                condition: condition(entry, bound, false),
                not_ours: None,
            });
        }
    }
    for ep in &state.endpoints {
        match (&ep.backend, ep.device()) {
            (Backend::VhostUser { socket }, _) => out.push(found(
                format!("vhost-user socket {} of {}", socket.display(), ep.name),
                std::fs::metadata(socket).is_ok_and(|m| m.file_type().is_socket()),
            )),
            (_, Some(name)) if here => out.push(found(
                format!("tap {name} of {}", ep.name),
                tap::ifindex(name).is_ok_and(|i| i == ep.ifindex),
            )),
            _ => {}
        }
    }
    Ok(out)
}

/// An object a static attachment uses (it made none of them): there or not.
fn found(object: String, present: bool) -> ObjectStatus {
    ObjectStatus {
        object,
        present,
        condition: if present { "present" } else { "missing" },
        not_ours: None,
    }
}
