//! Status: what is attached, and whether the kernel still matches the journal.

use serde::Serialize;

use super::ratelimit::LimitStatus;
use super::reopen_netns;
use crate::journal::{self, Entry};
use crate::model::Model;
use crate::netlink::Netlink;
use crate::netns::NetNs;
use crate::state::{self, Endpoint, Phase, StateDir};
use crate::{Error, Result};

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
    let Some(netns) = reopen_netns(&s) else {
        status.drift = true;
        status.problem = Some(format!("netns {} no longer exists", s.netns_path.display()));
        return Ok(Some(status));
    };
    let (objects, limits) = netns.run(|| -> Result<_> {
        let objects = check_objects(&netns, &s.journal)?;
        let label = format!("netns {}", netns.display());
        let mut nl =
            Netlink::open_here().map_err(|e| Error::kernel(&label, "open netlink socket", e))?;
        Ok((objects, super::ratelimit::read_limits(&mut nl, &s)?))
    })??;
    status.limits = Some(limits);
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
