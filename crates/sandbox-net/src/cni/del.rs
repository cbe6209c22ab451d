//! DEL and GC: detach attachments that CNI made, and drop their records.
//!
//! DEL is idempotent: no record (never attached, already deleted, or an id that belongs to
//! a CLI attachment), a netns that is gone, or a record of another (container, interface)
//! pair that maps to the same id all succeed without touching anything that isn't ours.

use std::collections::HashSet;
use std::path::Path;

use super::config::{AttachmentKey, NetConf};
use super::env::CniEnv;
use super::error::CniError;
use super::id;
use super::record::Records;
use crate::ops;

/// Detach the attachment under `sandbox` and drop its record; the caller holds its lock.
fn teardown(records: &Records, state_dir: &Path, sandbox: &str) -> crate::Result<()> {
    let outcome = ops::detach(state_dir, sandbox)?;
    tracing::info!(id = %sandbox, %outcome, "CNI detach");
    records.remove(sandbox)
}

/// Run DEL.
pub fn del(env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
    let container_id = env.container_id()?;
    let ifname = env.ifname()?;
    env.netns_opt()?;
    let state_dir = conf.state_dir()?;
    let sandbox = id::sandbox_id(container_id, ifname);
    let step = |what: &str| format!("DEL {sandbox}: {what}");
    let records = Records::open(&state_dir)
        .map_err(|e| CniError::op(step("open the CNI record directory"), e))?;
    let mut lock = records
        .lock(&sandbox)
        .map_err(|e| CniError::op(step("lock"), e))?;
    let record = records
        .load(&sandbox)
        .map_err(|e| CniError::op(step("read the CNI record"), e))?;
    match record {
        None => {
            tracing::debug!(id = %sandbox, "DEL: nothing attached through CNI");
            lock.remove_on_release();
        }
        Some(r) if !r.is_for(container_id, ifname) => {
            tracing::warn!(id = %sandbox, owner = %r.container_id, ifname = %r.ifname,
                "DEL: the sandbox id belongs to another attachment; left alone");
        }
        Some(_) => {
            teardown(&records, &state_dir, &sandbox)
                .map_err(|e| CniError::op(step("detach"), e))?;
            lock.remove_on_release();
        }
    }
    Ok(())
}

/// Run GC: detach every CNI attachment of this network that the runtime did not list.
/// Attachments busy with another command are left for the next GC.
pub fn gc(conf: &NetConf) -> Result<(), CniError> {
    let valid: HashSet<AttachmentKey> = conf.valid_attachments()?.into_iter().collect();
    let state_dir = conf.state_dir()?;
    let records = Records::open(&state_dir)
        .map_err(|e| CniError::op("GC: open the CNI record directory", e))?;
    let ids = records
        .ids()
        .map_err(|e| CniError::op("GC: list the CNI records", e))?;
    let mut failures = Vec::new();
    for sandbox in ids {
        let mut lock = match records.lock(&sandbox) {
            Ok(l) => l,
            Err(crate::Error::Busy { .. }) => continue,
            Err(e) => {
                failures.push(format!("{sandbox}: lock: {e}"));
                continue;
            }
        };
        let record = match records.load(&sandbox) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                failures.push(format!("{sandbox}: {e}"));
                continue;
            }
        };
        let key = AttachmentKey {
            container_id: record.container_id.clone(),
            ifname: record.ifname.clone(),
        };
        if record.network != conf.name || valid.contains(&key) {
            continue;
        }
        tracing::info!(id = %sandbox, container_id = %key.container_id, ifname = %key.ifname,
            "GC: removing a stale attachment");
        match teardown(&records, &state_dir, &sandbox) {
            Ok(()) => lock.remove_on_release(),
            Err(e) => failures.push(format!("{sandbox}: {e}")),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CniError::GcFailed {
            network: conf.name.clone(),
            failures,
        })
    }
}
