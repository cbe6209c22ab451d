//! gc: find what no state accounts for, and clean it up.
//!
//! Two kinds of leftovers:
//! - **orphan links**: links whose alias marks them as ours (`sandbox-net:<id>`, see
//!   [`crate::names::owner_alias`]) and of a kind we create (tap, macvtap, ifb), that no state of
//!   the state directory journals in that netns. They are looked for in the namespaces
//!   given and in the netns of every state file. Removing one also removes our redirect
//!   filters that point at it from other devices (so their traffic is not black-holed),
//!   and such a device's ingress qdisc when it holds no other filter (sandbox-net only
//!   ever adds an ingress qdisc where there was none).
//! - **stale states**: state files whose netns is gone (or was replaced), or none of whose
//!   journalled objects exists any more.
//!
//! Links without our alias, or of another kind, are never touched. Every sandbox is
//! handled under its lock; a busy one is skipped. A sandbox or a netns that fails (what is
//! in a netns is its tenant's to shape) is a problem of the report, naming it, and gc goes
//! on with the others. A dry run takes no lock and changes nothing.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::journal;
use crate::journal::ownership::OUR_KINDS;
use crate::netlink::link::{self, Link};
use crate::netlink::{Netlink, NlError, tc};
use crate::netns::{NetNs, NsId};
use crate::sandbox::Place;
use crate::state::{self, Lock, State, StateDir};
use crate::{Error, Result};

/// What to collect.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// The state directory.
    pub state_dir: PathBuf,
    /// Namespaces to look for orphan links in, besides those of the state files.
    pub netns: Vec<String>,
    /// Allow the caller's own netns and the host's among `netns`.
    pub allow_host_netns: bool,
    /// Report only; change nothing.
    pub dry_run: bool,
}

impl GcOptions {
    /// Options for collecting in `state_dir`, only the netns of its states looked in.
    pub fn new(state_dir: impl Into<PathBuf>) -> GcOptions {
        GcOptions {
            state_dir: state_dir.into(),
            netns: Vec::new(),
            allow_host_netns: false,
            dry_run: false,
        }
    }
}

/// A link of ours that no state accounts for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrphanLink {
    /// The netns it is in.
    pub netns: String,
    /// Its name.
    pub name: String,
    /// Its link kind.
    pub kind: String,
    /// The sandbox id its alias names.
    pub id: String,
    /// Our redirect filters and ingress qdiscs on other devices that went (or would go)
    /// with it.
    pub also: Vec<String>,
    /// Whether it was removed (false on a dry run or a failure).
    pub removed: bool,
}

/// A state file that accounts for nothing any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleState {
    /// The sandbox id.
    pub id: String,
    /// The netns it records.
    pub netns: String,
    /// Why it is stale.
    pub reason: String,
    /// Whether it was removed (false on a dry run or a failure).
    pub removed: bool,
    /// What lived outside the lost netns and was undone with it (VFIO bindings).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restored: Vec<String>,
}

/// What gc found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct GcReport {
    /// Nothing was removed: what would be is listed.
    pub dry_run: bool,
    /// Our links no state accounts for.
    pub links: Vec<OrphanLink>,
    /// States whose netns or objects are gone.
    pub states: Vec<StaleState>,
    /// Lock files of sandboxes without a state (`ID.lock`), removed (or, in a dry run,
    /// that would be): each only while gc holds it, a regular file of ours.
    pub lock_files: Vec<String>,
    /// Left alone, and why (busy, unreadable state, a malformed alias).
    pub skipped: Vec<String>,
    /// What could not be removed, and the sandboxes and namespaces that could not be
    /// looked at (each named, with why); gc goes on with the others.
    pub problems: Vec<String>,
}

impl std::fmt::Display for GcReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = |removed: bool| {
            if removed {
                "removed"
            } else if self.dry_run {
                "would remove"
            } else {
                "not removed"
            }
        };
        for l in &self.links {
            write!(
                f,
                "{} orphan {} {} of sandbox {} in netns {}",
                verb(l.removed),
                l.kind,
                l.name,
                l.id,
                l.netns
            )?;
            if !l.also.is_empty() {
                write!(f, " (with {})", l.also.join(", "))?;
            }
            writeln!(f)?;
        }
        for s in &self.states {
            writeln!(
                f,
                "{} stale state of sandbox {} (netns {}): {}",
                verb(s.removed),
                s.id,
                s.netns,
                s.reason
            )?;
            for r in &s.restored {
                writeln!(f, "  restored: {r}")?;
            }
        }
        for l in &self.lock_files {
            writeln!(f, "{} stale lock file {l}", verb(!self.dry_run))?;
        }
        for s in &self.skipped {
            writeln!(f, "skipped: {s}")?;
        }
        for p in &self.problems {
            writeln!(f, "problem: {p}")?;
        }
        if self.links.is_empty() && self.states.is_empty() && self.lock_files.is_empty() {
            writeln!(f, "nothing to collect")?;
        }
        Ok(())
    }
}

/// Add a namespace to scan, once (namespaces are compared by identity).
fn add_scan(scans: &mut Vec<NetNs>, netns: NetNs) {
    if !scans.iter().any(|s| s.id() == netns.id()) {
        scans.push(netns);
    }
}

/// Find and (unless a dry run) remove orphan links and stale states.
pub fn gc(opts: &GcOptions) -> Result<GcReport> {
    // Validate every namespace argument first: bad input changes nothing.
    let mut scans = Vec::new();
    for spec in &opts.netns {
        add_scan(&mut scans, NetNs::open(spec, opts.allow_host_netns)?);
    }
    let mut report = GcReport {
        dry_run: opts.dry_run,
        ..GcReport::default()
    };
    let store = if opts.dry_run {
        StateDir::open_existing(&opts.state_dir)?
    } else {
        Some(StateDir::open(&opts.state_dir)?)
    };
    // One sandbox or one netns that fails (what is in a netns is its tenant's to shape)
    // is a problem of the report; gc goes on with the others.
    if let Some(store) = &store {
        for id in store.ids()? {
            match collect_state(store, &id, opts.dry_run, &mut report) {
                Ok(Some(netns)) => add_scan(&mut scans, netns),
                Ok(None) => {}
                Err(e) => report.problems.push(format!("sandbox {id}: {e}")),
            }
        }
        if let Err(e) = collect_locks(store, opts.dry_run, &mut report) {
            report.problems.push(format!("stale lock files: {e}"));
        }
    }
    for scan in &scans {
        match scan.run(|| collect_links(store.as_ref(), scan, opts.dry_run, None)) {
            Ok(Ok(found)) => {
                report.links.extend(found.links);
                report.skipped.extend(found.skipped);
                report.problems.extend(found.problems);
            }
            Ok(Err(e)) | Err(e) => report
                .problems
                .push(format!("orphan links of netns {}: {e}", scan.display())),
        }
    }
    Ok(report)
}

/// Remove the orphan links of sandbox `id` alone in `netns` (ours by alias and kind, and
/// not accounted for by its state, if it has one), as [`gc`] does for every sandbox: for a
/// CNI DEL whose record outlived the state. The report lists the links only.
pub fn collect_orphans_of(state_dir: &Path, netns: &NetNs, id: &str) -> Result<GcReport> {
    let store = StateDir::open(state_dir)?;
    let found = netns.run(|| collect_links(Some(&store), netns, false, Some(id)))??;
    Ok(GcReport {
        links: found.links,
        skipped: found.skipped,
        problems: found.problems,
        ..GcReport::default()
    })
}

/// Remove the lock files of ids that have no state (an operation killed before it
/// removed its own). Each is taken first, as every operation takes it (`O_NOFOLLOW`, a
/// regular file owned by us and writable by nobody else, or it is skipped naming why; a
/// held one is busy and skipped), and removed while held, if there is still no state.
fn collect_locks(store: &StateDir, dry_run: bool, report: &mut GcReport) -> Result<()> {
    for name in store.trusted().names()? {
        let Some(id) = name.strip_suffix(".lock") else {
            continue;
        };
        if crate::state::validate_id(id).is_err() || store.has_state(id)? {
            continue;
        }
        if dry_run {
            report.lock_files.push(name);
            continue;
        }
        let Some(mut lock) = lock_for_change(store, id, &mut report.skipped).unwrap_or_else(|e| {
            report.skipped.push(format!("lock file {name}: {e}"));
            None
        }) else {
            continue;
        };
        if store.has_state(id)? {
            continue;
        }
        lock.remove_on_release();
        drop(lock);
        report.lock_files.push(name);
    }
    Ok(())
}

/// Take a sandbox's lock for a change; None (noted as skipped) when it is busy.
fn lock_for_change(
    store: &StateDir,
    id: &str,
    report_skip: &mut Vec<String>,
) -> Result<Option<Lock>> {
    match store.lock(id) {
        Ok(lock) => Ok(Some(lock)),
        Err(Error::Busy { .. }) => {
            report_skip.push(format!(
                "sandbox {id}: busy (another sandbox-net process holds its lock)"
            ));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Check one state file; remove it when stale. Returns its netns when it still exists.
fn collect_state(
    store: &StateDir,
    id: &str,
    dry_run: bool,
    report: &mut GcReport,
) -> Result<Option<NetNs>> {
    let mut lock = if dry_run {
        None
    } else {
        match lock_for_change(store, id, &mut report.skipped)? {
            Some(lock) => Some(lock),
            None => return Ok(None),
        }
    };
    let state = match store.load(id) {
        Ok(Some(s)) => s,
        Ok(None) => {
            if let Some(lock) = lock.as_mut() {
                lock.remove_on_release();
            }
            return Ok(None);
        }
        Err(e) => {
            report.skipped.push(format!("sandbox {id}: {e}"));
            return Ok(None);
        }
    };
    let place = match Place::of(&state) {
        Ok(place) => place,
        Err(e) => {
            // Its netns is there (same device and inode) but could not be proven the same:
            // leave it for the next gc; the other sandboxes are still collected.
            report.problems.push(format!("sandbox {id}: {e}"));
            return Ok(None);
        }
    };
    let (netns, reason) = match place {
        // A static attachment has no netns to lose; its devices (VFIO bindings) are undone
        // only by detach.
        Place::Host => return Ok(None),
        Place::Lost(lost) => {
            let how = if lost.replaced {
                lost.reason
            } else {
                format!("{} (or is another namespace now)", lost.reason)
            };
            (None, Some(how))
        }
        Place::Netns { netns, mut nl } => {
            let none_left = all_gone(&netns, &mut nl, &state)?;
            let reason = none_left.then(|| {
                format!(
                    "none of its {} journalled objects exists any more",
                    state.journal.len()
                )
            });
            (Some(netns), reason)
        }
    };
    if let Some(reason) = reason {
        let mut restored = Vec::new();
        let removed = match lock.as_mut() {
            Some(lock) => match drop_stale(store, &state, netns.is_none()) {
                Ok(undone) => {
                    restored = undone;
                    lock.remove_on_release();
                    tracing::info!(id, %reason, "gc: removed stale state");
                    true
                }
                Err(e) => {
                    report.problems.push(e.to_string());
                    false
                }
            },
            None => false,
        };
        report.states.push(StaleState {
            id: id.to_string(),
            netns: state.netns_path.display().to_string(),
            reason,
            removed,
            restored,
        });
    } else if state.phase == state::Phase::Attaching {
        report.skipped.push(format!(
            "sandbox {id}: its attach never finished (crashed?); `sandbox-net detach --id {id}` cleans it up"
        ));
    }
    Ok(netns)
}

/// Remove a stale state; when its netns is lost, first undo what lived outside it (VFIO
/// bindings), which did not go with the netns. Returns what was undone.
fn drop_stale(store: &StateDir, state: &State, netns_lost: bool) -> Result<Vec<String>> {
    let mut restored = Vec::new();
    if netns_lost {
        restored = journal::undo_outside(&state.journal).map_err(|e| {
            Error::kernel(
                format!("sandbox {}: {}", state.id, e.entry.describe()),
                "restore",
                e.error,
            )
        })?;
    }
    store.remove(&state.id)?;
    Ok(restored)
}

/// True when the state journals something and none of it is in force (and ours).
fn all_gone(netns: &NetNs, nl: &mut Netlink, state: &State) -> Result<bool> {
    if state.journal.is_empty() {
        return Ok(false);
    }
    let label = format!("netns {}", netns.display());
    // Inside: settings (/proc/sys/net) answer for the reading thread's netns.
    let checked = netns
        .run(|| journal::check(nl, &state.journal, &state.owner()))?
        .map_err(|(step, e)| Error::kernel(&label, step, e.into_io()))?;
    Ok(checked.iter().all(|c| !c.present))
}

#[derive(Default)]
struct Found {
    links: Vec<OrphanLink>,
    skipped: Vec<String>,
    problems: Vec<String>,
}

/// The identity of a netns: device and inode, and its cookie when known.
type Identity = (NsId, Option<u64>);

/// Whether `state` journals a device called `name` in the netns `ns` (the cookies are
/// compared when both are known: device and inode are reused).
fn accounts_for(state: &State, ns: Identity, name: &str) -> bool {
    let same_cookie = match (state.netns_cookie, ns.1) {
        (Some(recorded), Some(now)) => recorded == now,
        _ => true,
    };
    state.netns_id == ns.0
        && same_cookie
        && state
            .journal
            .iter()
            .any(|e| e.creates_device() && e.device() == name)
}

/// A link kind as gc reports it: the kernel's "tun" is a tap (sandbox-net creates taps,
/// never tun devices), the others as the kernel names them.
fn reported_kind(kind: &str) -> &str {
    match kind {
        "tun" => "tap",
        other => other,
    }
}

/// The orphan links of the netns the calling thread is in. Runs inside the netns.
/// Only the links of sandbox `only`, when given.
fn collect_links(
    store: Option<&StateDir>,
    netns: &NetNs,
    dry_run: bool,
    only: Option<&str>,
) -> Result<Found> {
    let label = format!("netns {}", netns.display());
    let mut nl =
        Netlink::open_here().map_err(|e| Error::kernel(&label, "open netlink socket", e))?;
    let cookie = nl
        .netns_cookie()
        .map_err(|e| Error::kernel(&label, "read its cookie (SO_NETNS_COOKIE)", e))?;
    let here = (netns.id(), Some(cookie));
    let links =
        link::dump(&mut nl).map_err(|e| Error::kernel(&label, "dump links", e.into_io()))?;
    let mut found = Found::default();
    for l in &links {
        let Some(id) = l.alias.as_deref().and_then(crate::names::owner_of) else {
            continue;
        };
        if only.is_some_and(|o| o != id) {
            continue;
        }
        let kind = l.kind.clone().unwrap_or_default();
        if !OUR_KINDS.contains(&kind.as_str()) {
            found.skipped.push(format!(
                "{label}: {} carries our alias but is a {kind:?}, a kind sandbox-net never creates; left alone",
                l.name
            ));
            continue;
        }
        if state::validate_id(id).is_err() {
            found.skipped.push(format!(
                "{label}: {} carries an alias with a malformed sandbox id {id:?}; left alone",
                l.name
            ));
            continue;
        }
        // Decide (and remove) under the sandbox's lock, against its current state.
        let mut lock = None;
        if let (Some(store), false) = (store, dry_run) {
            match lock_for_change(store, id, &mut found.skipped) {
                Ok(Some(l)) => lock = Some(l),
                Ok(None) => continue,
                Err(e) => {
                    found
                        .problems
                        .push(format!("{label}: {}: sandbox {id}: {e}", l.name));
                    continue;
                }
            }
        }
        let state = match store.map(|s| s.load(id)).transpose() {
            Ok(s) => s.flatten(),
            Err(e) => {
                found
                    .skipped
                    .push(format!("{label}: {}: sandbox {id}: {e}", l.name));
                continue;
            }
        };
        if state
            .as_ref()
            .is_some_and(|s| accounts_for(s, here, &l.name))
        {
            continue;
        }
        if state.is_none()
            && let Some(lock) = lock.as_mut()
        {
            lock.remove_on_release();
        }
        let mut orphan = OrphanLink {
            netns: netns.display().to_string(),
            name: l.name.clone(),
            kind: reported_kind(&kind).to_string(),
            id: id.to_string(),
            also: Vec::new(),
            removed: false,
        };
        match remove_orphan(&mut nl, &links, l, dry_run, &mut orphan.also) {
            Ok(removed) => orphan.removed = removed,
            Err((step, e)) => found.problems.push(format!(
                "{label}: orphan {} of sandbox {id}: {step}: {}",
                l.name,
                e.into_io()
            )),
        }
        if orphan.removed {
            tracing::info!(netns = %label, link = %l.name, id, "gc: removed orphan link");
        }
        found.links.push(orphan);
    }
    Ok(found)
}

type Step = (&'static str, NlError);

/// Remove (unless `dry_run`) our redirect filters toward `orphan` on other devices, their
/// ingress qdiscs when nothing else is left on them, then the orphan. Lists in `also` what
/// went with it. Returns whether the orphan was removed.
fn remove_orphan(
    nl: &mut Netlink,
    links: &[Link],
    orphan: &Link,
    dry_run: bool,
    also: &mut Vec<String>,
) -> std::result::Result<bool, Step> {
    let qdiscs = tc::dump_qdiscs(nl).map_err(|e| ("dump qdiscs", e))?;
    for other in links.iter().filter(|o| o.index != orphan.index) {
        if !qdiscs
            .iter()
            .any(|q| q.ifindex == other.index && q.kind == "ingress")
        {
            continue;
        }
        let filters = tc::dump_ingress_filters(nl, other.index).map_err(|e| ("dump filters", e))?;
        let at_our_prio: Vec<_> = filters
            .iter()
            .filter(|f| f.prio == tc::REDIRECT_PRIO)
            .collect();
        let ours = |f: &&tc::RedirectFilter| {
            f.match_all && f.egress_redirect && f.target == Some(orphan.index)
        };
        if at_our_prio.is_empty() || !at_our_prio.iter().all(ours) {
            continue;
        }
        also.push(format!("redirect filter {} -> {}", other.name, orphan.name));
        if !dry_run {
            tc::del_redirect(nl, other.index).map_err(|e| ("delete redirect filter", e))?;
        }
        let left = if dry_run {
            filters
                .iter()
                .filter(|f| f.prio != tc::REDIRECT_PRIO)
                .count()
        } else {
            tc::count_ingress_filters(nl, other.index).map_err(|e| ("count filters", e))?
        };
        if left == 0 {
            also.push(format!("ingress qdisc on {}", other.name));
            if !dry_run {
                tc::del_ingress(nl, other.index).map_err(|e| ("delete ingress qdisc", e))?;
            }
        }
    }
    if dry_run {
        return Ok(false);
    }
    match link::delete(nl, orphan.index) {
        Ok(()) => Ok(true),
        // Gone meanwhile: nothing left to remove.
        Err(e) if e.errno == libc::ENODEV => Ok(true),
        Err(e) => Err(("delete link", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Entry;

    #[test]
    fn only_our_kinds_are_collected() {
        for kind in ["tun", "macvtap", "ifb"] {
            assert!(OUR_KINDS.contains(&kind));
        }
        for kind in ["veth", "bridge", "macvlan", "vlan", ""] {
            assert!(!OUR_KINDS.contains(&kind));
        }
    }

    #[test]
    fn a_state_accounts_for_its_devices_in_its_netns_only() {
        let ns = NsId { dev: 4, ino: 99 };
        let journal = vec![
            Entry::Tap {
                name: "tap0_sn".into(),
                ifindex: Some(5),
                queues: 1,
                mtu: 1500,
                owner: Default::default(),
                mac: None,
                tx_queue_len: None,
            },
            Entry::IngressQdisc {
                device: "eth0".into(),
                ifindex: Some(2),
            },
        ];
        let mut state: State = serde_json::from_value(serde_json::json!({
            "version": 1, "id": "s1", "netns": "pod", "netns_path": "/run/netns/pod",
            "netns_id": {"dev": 4, "ino": 99}, "netns_cookie": 7, "model": "tcfilter",
            "phase": "attached", "endpoints": [], "journal": []
        }))
        .expect("a state");
        state.journal = journal;
        let here = (ns, Some(7));
        assert!(accounts_for(&state, here, "tap0_sn"));
        assert!(!accounts_for(&state, here, "tap1_sn"));
        // eth0 is journalled, but not as a device we created.
        assert!(!accounts_for(&state, here, "eth0"));
        let other = NsId { dev: 4, ino: 100 };
        assert!(!accounts_for(&state, (other, Some(7)), "tap0_sn"));
        // The same device and inode (reused by the kernel) with another cookie: another
        // namespace.
        assert!(!accounts_for(&state, (ns, Some(8)), "tap0_sn"));
        // A state written before cookies were recorded: device and inode only.
        state.netns_cookie = None;
        assert!(accounts_for(&state, (ns, Some(8)), "tap0_sn"));
    }
}
