//! set-rate: change, add or remove the rate limits of a live attachment.

use std::path::Path;

use serde::Serialize;

use super::transaction;
use crate::failpoint::FailAt;
use crate::journal::ownership::{self, Verdict};
use crate::journal::{self, Direction, Entry};
use crate::model::{PlanContext, rate_entries};
use crate::netlink::{Netlink, htb};
use crate::rate::Rate;
use crate::sandbox::{Access, Sandbox};
use crate::state::{self, State};
use crate::{Error, Result, tap};

/// What to do with one direction's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateChange {
    /// Set the limit to this rate (added, or changed in place).
    Set(Rate),
    /// Remove the limit.
    Remove,
}

/// One limit after set-rate, read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitStatus {
    /// The endpoint.
    pub endpoint: String,
    /// Toward the guest (rx) or from it (tx).
    pub direction: Direction,
    /// The device the limit sits on (empty when there is none).
    pub device: String,
    /// The rate asked for, in bits per second (None: no limit).
    pub rate_bps: Option<u64>,
    /// The rate the kernel reports, in bits per second.
    pub kernel_bps: Option<u64>,
}

fn is_limit(e: &Entry, direction: Direction) -> bool {
    matches!(e, Entry::RateLimit { direction: d, .. } if *d == direction)
}

/// Change the limits of the sandbox's endpoints (all of them, or `iface` only). All or
/// nothing: on a failure, the changes already made are undone.
pub fn set_rate(
    state_dir: &Path,
    id: &str,
    iface: Option<&str>,
    rx: Option<RateChange>,
    tx: Option<RateChange>,
) -> Result<Vec<LimitStatus>> {
    set_rate_at(state_dir, id, iface, rx, tx, FailAt::NEVER)
}

/// Counts the kernel changes of one set-rate, for the failpoint test hook.
struct Steps {
    fail_at: FailAt,
    done: usize,
}

impl Steps {
    /// Before one change: an injected failure when it is the one to fail at (only with the
    /// `failpoints` feature).
    fn check(&mut self, object: &str, step: &str) -> Result<()> {
        self.fail_at.check(self.done, object, step)?;
        self.done += 1;
        Ok(())
    }

    /// Before `n` journal entries are applied: the failpoint among them, relative to them.
    fn within(&mut self, n: usize) -> FailAt {
        let at = self.fail_at.within(self.done, n);
        self.done += n;
        at
    }
}

/// [`set_rate`] with a test hook: fail before its step N, counting every journal entry it
/// applies and every limit it changes or removes (N = their number: before the state is
/// saved). Exists only with the `failpoints` feature.
#[cfg(feature = "failpoints")]
pub fn set_rate_with_failpoint(
    state_dir: &Path,
    id: &str,
    iface: Option<&str>,
    rx: Option<RateChange>,
    tx: Option<RateChange>,
    fail_at: Option<usize>,
) -> Result<Vec<LimitStatus>> {
    set_rate_at(state_dir, id, iface, rx, tx, FailAt::before(fail_at))
}

fn set_rate_at(
    state_dir: &Path,
    id: &str,
    iface: Option<&str>,
    rx: Option<RateChange>,
    tx: Option<RateChange>,
    fail_at: FailAt,
) -> Result<Vec<LimitStatus>> {
    state::validate_id(id)?;
    if rx.is_none() && tx.is_none() {
        return Err(Error::invalid("set-rate", "give --rx and/or --tx"));
    }
    let mut sandbox = Sandbox::open(state_dir, id, Access::Change)?;
    sandbox.finished()?;
    let state = &mut sandbox.state;
    if let Some(name) = iface
        && !state.endpoints.iter().any(|e| e.name == name)
    {
        return Err(Error::InterfaceNotFound {
            iface: name.to_string(),
            within: format!("of sandbox {id}"),
            reason: "is not attached".into(),
        });
    }
    let (netns, nl) = sandbox.place.netns(id, "change its rate limits")?;
    let store = &sandbox.store;
    let result = netns.run(|| -> Result<Vec<LimitStatus>> {
        let before = state.clone();
        let mut steps = Steps { fail_at, done: 0 };
        let mut change_all = || -> Result<()> {
            for (direction, change) in [(Direction::Rx, rx), (Direction::Tx, tx)] {
                let Some(change) = change else { continue };
                for n in 0..state.endpoints.len() {
                    if iface.is_some_and(|name| state.endpoints[n].name != name) {
                        continue;
                    }
                    change_one(nl, state, n, direction, change, &mut steps)?;
                }
                if iface.is_none() {
                    let rate = match change {
                        RateChange::Set(r) => Some(r),
                        RateChange::Remove => None,
                    };
                    match direction {
                        Direction::Rx => state.settings.rx_rate = rate,
                        Direction::Tx => state.settings.tx_rate = rate,
                    }
                }
            }
            steps.check(&format!("sandbox {id}"), "save the state")?;
            store.save(state)
        };
        if let Err(e) = change_all() {
            tracing::info!(id, error = %e, "set-rate failed; putting the limits back");
            super::rollback::restore(nl, store, &before, state);
            return Err(e);
        }
        read_limits(nl, state)
    })??;
    Ok(result)
}

/// Apply one change to endpoint `n`.
fn change_one(
    nl: &mut Netlink,
    state: &mut State,
    n: usize,
    direction: Direction,
    change: RateChange,
    steps: &mut Steps,
) -> Result<()> {
    let endpoint = state.endpoints[n].clone();
    let object = format!(
        "sandbox {}: {} {} limit",
        state.id,
        endpoint.name,
        direction.as_str()
    );
    let existing = state
        .journal
        .iter()
        .position(|e| endpoint.owns(e.device()) && is_limit(e, direction));
    match (change, existing) {
        (RateChange::Set(rate), Some(i)) => {
            let index = proven_ours(nl, &state.journal[i], state, &object)?;
            steps.check(&object, &format!("change the HTB rate to {rate}"))?;
            htb::change_limit(nl, index, rate)
                .map_err(|e| Error::kernel(&object, "change HTB rate", e.into_io()))?;
            if let Entry::RateLimit { rate: old, .. } = &mut state.journal[i] {
                *old = rate;
            }
        }
        (RateChange::Set(rate), None) => {
            let plumbed = state
                .journal
                .iter()
                .any(|e| e.creates_device() && endpoint.device() == Some(e.device()));
            if !plumbed {
                return Err(Error::invalid(
                    &object,
                    "this endpoint is handed over as it is; it can't be rate limited",
                ));
            }
            let macvtap = state.model == crate::model::Model::Macvtap;
            let ifb = crate::names::ifb(endpoint.ifindex);
            let device = endpoint.device().unwrap_or_default();
            let snapshot = crate::scan::Snapshot::default();
            let settings = state.settings.clone();
            let sysfs_root = crate::physical::sysfs_root();
            let ctx = PlanContext {
                model: state.model,
                snapshot: &snapshot,
                queues: settings.queues,
                tap_queue_len: settings.tap_queue_len,
                tap_owner: settings.tap_owner,
                sysfs_root: &sysfs_root,
                net_sysfs_root: &sysfs_root,
                vhost_user_dir: None,
                rx_rate: (direction == Direction::Rx).then_some(rate),
                tx_rate: (direction == Direction::Tx).then_some(rate),
            };
            let entries = rate_entries(
                &ctx,
                &endpoint.name,
                device,
                macvtap.then_some(ifb.as_str()),
            );
            let fail_at = steps.within(entries.len());
            let start = state.journal.len();
            state.journal.extend(entries);
            let applied = transaction::apply(nl, state, start, &object, fail_at, |_, _| Ok(()));
            if let Err(failed) = applied {
                state.journal.truncate(start);
                return Err(failed.error);
            }
            if macvtap && direction == Direction::Rx {
                state.endpoints[n].ifb = Some(ifb);
            }
        }
        (RateChange::Remove, Some(i)) => {
            let ifb = endpoint.ifb.clone();
            let chain: Vec<usize> = (0..state.journal.len())
                .filter(|&j| {
                    let e = &state.journal[j];
                    j == i
                        || (direction == Direction::Rx
                            && ifb.as_deref().is_some_and(|ifb| {
                                e.device() == ifb
                                    || matches!(e, Entry::RedirectFilter { target, .. } if target == ifb)
                                    || matches!(e, Entry::IngressQdisc { device, .. } if endpoint.device() == Some(device.as_str()))
                            }))
                })
                .collect();
            let removed: Vec<Entry> = chain.iter().map(|&j| state.journal[j].clone()).collect();
            steps.check(&object, "remove the limit")?;
            journal::undo(nl, &removed, &state.owner()).map_err(|e| {
                Error::kernel(&object, format!("remove {}", e.entry.describe()), e.error)
            })?;
            let mut j = 0;
            state.journal.retain(|_| {
                let keep = !chain.contains(&j);
                j += 1;
                keep
            });
            if direction == Direction::Rx {
                state.endpoints[n].ifb = None;
            }
        }
        (RateChange::Remove, None) => {}
    }
    Ok(())
}

/// The ifindex of the device a limit lives on, proven ours (see [`ownership`]):
/// a limit is changed in place only on the device it was put on.
fn proven_ours(nl: &mut Netlink, entry: &Entry, state: &State, object: &str) -> Result<u32> {
    let links = crate::netlink::link::dump(nl)
        .map_err(|e| Error::kernel(object, "dump links", e.into_io()))?;
    match ownership::verdict(entry, &state.journal, &links, &state.owner()) {
        Verdict::Ours(index) => Ok(index),
        Verdict::Gone => Err(Error::kernel(
            object,
            format!("find {}", entry.device()),
            std::io::Error::from_raw_os_error(libc::ENODEV),
        )),
        Verdict::NotOurs(reason) => Err(Error::invalid(
            object,
            format!("{reason}; refusing to change a limit on it"),
        )),
    }
}

/// Every endpoint's limits as the kernel reports them.
pub fn read_limits(nl: &mut Netlink, state: &State) -> Result<Vec<LimitStatus>> {
    let mut out = Vec::new();
    for endpoint in &state.endpoints {
        for direction in [Direction::Rx, Direction::Tx] {
            let entry = state
                .journal
                .iter()
                .find(|e| endpoint.owns(e.device()) && is_limit(e, direction));
            let (device, rate, kernel) = match entry {
                Some(Entry::RateLimit {
                    device,
                    ifindex,
                    rate,
                    ..
                }) => {
                    let index = ifindex.or_else(|| tap::ifindex_via(nl.as_fd(), device).ok());
                    let kernel = match index {
                        Some(i) => htb::read_limit(nl, i).map_err(|e| {
                            Error::kernel(format!("device {device}"), "read HTB class", e.into_io())
                        })?,
                        None => None,
                    };
                    (
                        device.clone(),
                        Some(rate.bits_per_sec()),
                        kernel.map(|b| b * 8),
                    )
                }
                _ => (String::new(), None, None),
            };
            out.push(LimitStatus {
                endpoint: endpoint.name.clone(),
                direction,
                device,
                rate_bps: rate,
                kernel_bps: kernel,
            });
        }
    }
    Ok(out)
}
