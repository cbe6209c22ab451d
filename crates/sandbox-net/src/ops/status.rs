//! Status: what is attached, and whether the kernel still matches the journal.

use serde::Serialize;

use super::ratelimit::LimitStatus;
use super::reopen::{Reopened, reopen_netns};
use crate::endpoint::Endpoint;
use crate::journal;
use crate::model::Model;
use crate::netlink::Netlink;
use crate::netns::NetNs;
use crate::state::{self, Phase, State, StateDir};
use crate::{Error, Result};

/// One journalled object and whether the kernel still has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectStatus {
    pub object: String,
    pub present: bool,
    /// Its place is taken by something that is not ours (named here): detach leaves it
    /// alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_ours: Option<String>,
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
    /// Per endpoint and direction, the rate limit asked for and the one the kernel reports
    /// (only when checked against the kernel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Vec<LimitStatus>>,
    /// True when the kernel no longer matches the journal (or the netns is gone).
    pub drift: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Status of every sandbox in the state dir (no kernel check).
pub fn list(state_dir: &std::path::Path) -> Result<Vec<Status>> {
    let mut out = Vec::new();
    let Some(store) = StateDir::open_existing(state_dir)? else {
        return Ok(out);
    };
    for id in store.ids()? {
        if let Some(s) = store.load(&id)? {
            out.push(Status {
                id: s.id.clone(),
                netns: s.netns_path.display().to_string(),
                model: s.model,
                phase: s.phase,
                endpoints: s.endpoints.clone(),
                objects: None,
                limits: None,
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
    let Some(s) = super::load_existing(state_dir, id)? else {
        return Ok(None);
    };
    let mut status = Status {
        id: s.id.clone(),
        netns: s.netns_path.display().to_string(),
        model: s.model,
        phase: s.phase,
        endpoints: s.endpoints.clone(),
        objects: None,
        limits: None,
        drift: false,
        problem: None,
    };
    if s.is_static() {
        let objects = super::static_attach::check_objects(&s)?;
        status.drift = objects.iter().any(|o| !o.present) || s.phase != Phase::Attached;
        if s.phase != Phase::Attached {
            status.problem =
                Some("attach did not finish (crashed?); run detach to clean up".into());
        }
        status.objects = Some(objects);
        return Ok(Some(status));
    }
    let (netns, mut nl) = match reopen_netns(&s)? {
        Reopened::Same { netns, nl } => (netns, nl),
        Reopened::Lost(lost) => {
            status.drift = true;
            status.problem = Some(lost.reason);
            return Ok(Some(status));
        }
    };
    let (objects, limits) = netns.run(|| -> Result<_> {
        let objects = check_objects(&mut nl, &netns, &s)?;
        Ok((objects, super::ratelimit::read_limits(&mut nl, &s)?))
    })??;
    status.limits = Some(limits);
    status.drift = objects.iter().any(|o| !o.present) || s.phase != Phase::Attached;
    let foreign: Vec<&str> = objects
        .iter()
        .filter(|o| o.not_ours.is_some())
        .map(|o| o.object.as_str())
        .collect();
    if s.phase != Phase::Attached {
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
