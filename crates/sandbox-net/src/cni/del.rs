//! DEL and GC: detach attachments that CNI made, and drop their records.
//!
//! DEL succeeds as far as it can: it removes what it can prove is ours, and when there is
//! nothing it can do it succeeds and logs (stderr) what it left, so that a pod never stays
//! Terminating on a DEL that can't ever succeed:
//!
//! - no record of the pair (never attached, already deleted, an id the CLI owns, a record
//!   of another pair), no state directory, or one that can't be used: nothing is ours;
//! - a record that can't be read (truncated, of an unknown version): the sandbox id is
//!   the pair's own ([`id::sandbox_id`]), so the attachment under it is ours (under the id
//!   of an earlier build, which two pairs could share, it is left alone); a record file
//!   refused as untrusted (a symlink, another owner) fails DEL, naming it;
//! - a state that can't be read: nothing in the netns can be proven ours; the state file
//!   is left for the operator (`sandbox-net status` names it), the record dropped;
//! - a record without a state (the state file removed, or detached by the CLI): the links
//!   in its netns (CNI_NETNS, else the record's) that carry its alias, and our filters
//!   toward them, are removed as `sandbox-net gc` removes orphans; the record is dropped;
//! - a netns whose recorded path is gone (`/proc/PID/ns/net` of an exited process): it is
//!   looked for by its identity ([`super::relocate`]) and detached there if it lives on;
//!   otherwise what lived outside it (VFIO) is undone and the state dropped.
//!
//! A sandbox another sandbox-net process holds (a CLI command, a `watch` round) is waited
//! for up to `lockTimeout` (10 s), then DEL fails with code 11 naming the lock. A kernel
//! failure while undoing fails DEL (code 5), keeping the state and record for the retry.

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use super::config::{self, AttachmentKey, NetConf};
use super::env::CniEnv;
use super::error::CniError;
use super::record::Records;
use super::{id, relocate, wait};
use crate::netns::NetNs;
use crate::ops;
use crate::state::Lock;

/// Detach the attachment under `sandbox` (the caller holds its record's lock) and drop its
/// record; a sandbox held by another process is waited for until `deadline`. `netns` is
/// where the attachment was made (CNI_NETNS, else the record's), for its orphans when the
/// state is gone.
fn teardown(
    records: &Records,
    state_dir: &Path,
    sandbox: &str,
    netns: Option<&str>,
    deadline: Instant,
) -> Result<(), CniError> {
    let step = |what: &str| format!("DEL {sandbox}: {what}");
    let state_lock = state_dir.join(format!("{sandbox}.lock"));
    match wait::while_busy(deadline, &step("detach"), &state_lock, || {
        relocate::relocate(state_dir, sandbox)
    })? {
        Ok(_) => {}
        // An unreadable state: detach below says so.
        Err(crate::Error::CorruptState { .. }) => {}
        // Only a search: detach decides below, by the recorded path.
        Err(e) => tracing::warn!(id = %sandbox, error = %e,
            "DEL: could not look for its netns beyond the recorded path"),
    }
    match wait::while_busy(deadline, &step("detach"), &state_lock, || {
        ops::detach(state_dir, sandbox)
    })? {
        Ok(ops::Detached::NotAttached { .. }) => collect_orphans(state_dir, sandbox, netns),
        // The state dropped without undoing what was in the netns (gone with it, or another
        // namespace at its path): reported.
        Ok(outcome @ ops::Detached::NetnsGone { .. }) => {
            tracing::warn!(id = %sandbox, %outcome, "CNI detach: its netns is gone")
        }
        Ok(outcome) => tracing::info!(id = %sandbox, %outcome, "CNI detach"),
        Err(crate::Error::CorruptState { path, reason }) => {
            tracing::warn!(id = %sandbox, path = %path.display(), %reason,
                "DEL: the state file can't be read, so nothing in the netns can be proven ours; \
                 left as it is for the operator (sandbox-net status names it), the CNI record dropped");
        }
        Err(e) => return Err(CniError::op(step("detach"), e)),
    }
    records
        .remove(sandbox)
        .map_err(|e| CniError::op(step("remove the CNI record"), e))
}

/// The state of `sandbox` is gone but its record is not (the state file removed by hand, a
/// lost state directory): remove what in its `netns` is provably its own, the links with
/// its alias (and our filters toward them), as `sandbox-net gc` does.
fn collect_orphans(state_dir: &Path, sandbox: &str, netns: Option<&str>) {
    let Some(path) = netns else {
        tracing::info!(id = %sandbox, "DEL: no state and no netns known: only the record dropped");
        return;
    };
    let netns = match NetNs::open_path(path, Path::new(path)) {
        Ok(netns) => netns,
        Err(e) => {
            tracing::info!(id = %sandbox, error = %e, "DEL: no state, and its netns is gone");
            return;
        }
    };
    match ops::collect_orphans_of(state_dir, &netns, sandbox) {
        Ok(report) => {
            for l in &report.links {
                tracing::warn!(id = %sandbox, link = %l.name, netns = %l.netns, also = ?l.also,
                    "DEL: the state was gone; removed a link of ours it left");
            }
            for left in report.skipped.iter().chain(&report.problems) {
                tracing::warn!(id = %sandbox, "DEL: no state; left: {left}");
            }
        }
        Err(e) => tracing::warn!(id = %sandbox, error = %e,
            "DEL: no state; could not look for the links it left"),
    }
}

/// The record of (`container_id`, `ifname`), locked: under its id, else under the id an
/// earlier build gave it, with the netns it records (None when it can't be read). None when
/// there is none of this pair (nothing to do).
fn claim(
    records: &Records,
    container_id: &str,
    ifname: &str,
    deadline: Instant,
) -> Result<Option<(String, Lock, Option<String>)>, CniError> {
    let own = id::sandbox_id(container_id, ifname);
    let legacy = id::legacy_sandbox_id(container_id, ifname);
    for sandbox in [own.clone(), legacy] {
        let step = format!("DEL {sandbox}: lock its CNI record");
        let mut lock = wait::while_busy(deadline, &step, &records.lock_path(&sandbox), || {
            records.lock(&sandbox)
        })?
        .map_err(|e| CniError::op(step, e))?;
        match records.load(&sandbox) {
            Ok(Some(r)) if r.is_for(container_id, ifname) => {
                return Ok(Some((sandbox, lock, Some(r.netns))));
            }
            Ok(Some(r)) => {
                tracing::warn!(id = %sandbox, owner = %r.container_id, ifname = %r.ifname,
                    "DEL: the sandbox id belongs to another attachment; left alone");
            }
            Ok(None) => lock.remove_on_release(),
            // Unreadable (truncated, an unknown version); a file refused as untrusted (a
            // symlink, another owner) is not: DEL fails naming it.
            Err(e @ crate::Error::CorruptState { .. }) if sandbox == own => {
                tracing::warn!(id = %sandbox, error = %e,
                    "DEL: the CNI record can't be read; the sandbox id is this pair's own, so \
                     the attachment under it is ours");
                return Ok(Some((sandbox, lock, None)));
            }
            Err(e @ crate::Error::CorruptState { .. }) => {
                tracing::warn!(id = %sandbox, error = %e,
                    "DEL: a CNI record under the id of an earlier build can't be read, and two \
                     pairs could share that id: left alone");
            }
            Err(e) => {
                return Err(CniError::op(
                    format!("DEL {sandbox}: read its CNI record"),
                    e,
                ));
            }
        }
    }
    Ok(None)
}

/// Run DEL.
pub fn del(env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
    let container_id = env.container_id()?;
    let ifname = env.ifname()?;
    let netns = env.netns_opt()?;
    let sandbox = id::sandbox_id(container_id, ifname);
    let state_dir = match conf.state_dir() {
        Ok(dir) => dir,
        Err(e) => {
            tracing::warn!(id = %sandbox, error = %e,
                "DEL: no usable state directory in the configuration, so nothing was ever \
                 attached under it; nothing to do");
            return Ok(());
        }
    };
    let timeout = conf.lock_timeout().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "DEL: lockTimeout ignored, waiting the default");
        config::DEFAULT_LOCK_TIMEOUT
    });
    let deadline = Instant::now() + timeout;
    let records = match Records::open_existing(&state_dir) {
        Ok(Some(records)) => records,
        Ok(None) => {
            tracing::debug!(id = %sandbox, dir = %state_dir.display(),
                "DEL: no state directory, nothing attached");
            return Ok(());
        }
        Err(e) => {
            tracing::warn!(id = %sandbox, dir = %state_dir.display(), error = %e,
                "DEL: the state directory can't be used, so nothing in it can be proven ours; \
                 left as it is");
            return Ok(());
        }
    };
    let Some((sandbox, mut lock, recorded)) = claim(&records, container_id, ifname, deadline)?
    else {
        tracing::debug!(id = %sandbox, "DEL: nothing attached through CNI");
        return Ok(());
    };
    let netns = netns.or(recorded.as_deref());
    teardown(&records, &state_dir, &sandbox, netns, deadline)?;
    lock.remove_on_release();
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
            // Whose network it is can't be told: not GC's to remove, nor a reason to fail
            // every GC from now on (DEL of its pair removes it).
            Err(e @ crate::Error::CorruptState { .. }) => {
                tracing::warn!(id = %sandbox, error = %e, "GC: an unreadable CNI record; left alone");
                continue;
            }
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
        // No waiting: a busy attachment is left for the next GC.
        match teardown(
            &records,
            &state_dir,
            &sandbox,
            Some(&record.netns),
            Instant::now(),
        ) {
            Ok(()) => lock.remove_on_release(),
            Err(CniError::LockTimeout { .. }) => {}
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
