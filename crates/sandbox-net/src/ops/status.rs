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
    /// Whether the kernel still has it.
    pub present: bool,
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

/// Status of every sandbox in the state dir (no kernel check).
pub fn list(state_dir: &std::path::Path) -> Result<Vec<Status>> {
    let mut out = Vec::new();
    let Some(store) = StateDir::open_existing(state_dir)? else {
        return Ok(out);
    };
    for id in store.ids()? {
        if let Some(s) = store.load(&id)? {
            out.push(Status::recorded(&s));
        }
    }
    Ok(out)
}

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
        status.problem = Some("attach did not finish (crashed?); run detach to clean up".into());
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
            not_ours: c.not_ours,
        })
        .collect())
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
                not_ours: None,
            });
        }
    }
    for ep in &state.endpoints {
        match (&ep.backend, ep.device()) {
            (Backend::VhostUser { socket }, _) => out.push(ObjectStatus {
                object: format!("vhost-user socket {} of {}", socket.display(), ep.name),
                present: std::fs::metadata(socket).is_ok_and(|m| m.file_type().is_socket()),
                not_ours: None,
            }),
            (_, Some(name)) if here => out.push(ObjectStatus {
                object: format!("tap {name} of {}", ep.name),
                present: tap::ifindex(name).is_ok_and(|i| i == ep.ifindex),
                not_ours: None,
            }),
            _ => {}
        }
    }
    Ok(out)
}
