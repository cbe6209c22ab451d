//! The undo journal: every kernel object sandbox-net creates, in creation order.
//!
//! The journal is persisted (as part of the sandbox's state) before the first kernel change,
//! listing everything the attach will create. Undoing it is the one teardown mechanism:
//! rollback after a failure, detach, and recovery after a crash all call [`undo`]. Undo
//! treats an object that is already gone as undone, so it can run any number of times.

use serde::{Deserialize, Serialize};

use crate::netlink::{Netlink, NlError, link, tc};
use crate::tap;

/// The alias sandbox-net gives the links it creates: it marks them as ours.
pub fn owner_alias(id: &str) -> String {
    format!("sandbox-net:{id}")
}

/// One kernel object created by sandbox-net. `ifindex` is filled in once known; an entry
/// without one is resolved by name inside the netns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename_all = "kebab-case")]
pub enum Entry {
    /// A persistent tap, created with `queues` queues and the endpoint's MTU.
    Tap {
        name: String,
        ifindex: Option<u32>,
        queues: u32,
        mtu: u32,
        #[serde(default)]
        owner: tap::TapOwner,
    },
    /// An ingress qdisc on a device.
    IngressQdisc {
        device: String,
        ifindex: Option<u32>,
    },
    /// The match-all redirect filter on `device`'s ingress toward `target`.
    RedirectFilter {
        device: String,
        ifindex: Option<u32>,
        target: String,
    },
}

impl Entry {
    /// The device the entry lives on.
    pub fn device(&self) -> &str {
        match self {
            Entry::Tap { name, .. } => name,
            Entry::IngressQdisc { device, .. } | Entry::RedirectFilter { device, .. } => device,
        }
    }

    pub fn ifindex(&self) -> Option<u32> {
        match self {
            Entry::Tap { ifindex, .. }
            | Entry::IngressQdisc { ifindex, .. }
            | Entry::RedirectFilter { ifindex, .. } => *ifindex,
        }
    }

    /// Teardown phase: filters first, then qdiscs, then devices, so the kernel never
    /// redirects into a device that is going away.
    fn phase(&self) -> u8 {
        match self {
            Entry::RedirectFilter { .. } => 0,
            Entry::IngressQdisc { .. } => 1,
            Entry::Tap { .. } => 2,
        }
    }

    /// A short description for messages: "redirect filter on eth0 -> tap0_sn".
    pub fn describe(&self) -> String {
        match self {
            Entry::Tap { name, .. } => format!("tap {name}"),
            Entry::IngressQdisc { device, .. } => format!("ingress qdisc on {device}"),
            Entry::RedirectFilter { device, target, .. } => {
                format!("redirect filter {device} -> {target}")
            }
        }
    }
}

/// Why applying the journal stopped.
#[derive(Debug)]
pub struct ApplyError {
    /// How many entries were applied before the failure.
    pub applied: usize,
    pub entry: Entry,
    pub step: &'static str,
    pub error: std::io::Error,
}

fn nl_io(e: NlError) -> std::io::Error {
    e.into_io()
}

fn apply_one(
    nl: &mut Netlink,
    entry: &mut Entry,
    alias: &str,
    known: &[(String, u32)],
) -> Result<(), (&'static str, std::io::Error)> {
    let index_of = |name: &str| -> Result<u32, (&'static str, std::io::Error)> {
        match known.iter().find(|(n, _)| n == name) {
            Some((_, i)) => Ok(*i),
            None => tap::ifindex(name).map_err(|e| ("look up ifindex", e)),
        }
    };
    match entry {
        Entry::Tap {
            name,
            ifindex,
            queues,
            mtu,
            owner,
        } => {
            tap::create_persistent(name, *queues, *owner).map_err(|e| ("create tap", e))?;
            let index = tap::ifindex(name).map_err(|e| ("look up tap ifindex", e))?;
            *ifindex = Some(index);
            link::set_mtu_up(nl, index, *mtu, Some(alias))
                .map_err(|e| ("set tap mtu and up", nl_io(e)))?;
        }
        Entry::IngressQdisc { device, ifindex } => {
            let index = match ifindex {
                Some(i) => *i,
                None => index_of(device)?,
            };
            *ifindex = Some(index);
            tc::add_ingress(nl, index).map_err(|e| ("add ingress qdisc", nl_io(e)))?;
        }
        Entry::RedirectFilter {
            device,
            ifindex,
            target,
        } => {
            let index = match ifindex {
                Some(i) => *i,
                None => index_of(device)?,
            };
            *ifindex = Some(index);
            let to = index_of(target)?;
            tc::add_redirect(nl, index, to).map_err(|e| ("add redirect filter", nl_io(e)))?;
        }
    }
    Ok(())
}

/// Create every object of `entries`, in order, filling in ifindexes as they become known.
/// Runs inside the netns. `fail_at` injects a failure before entry N (a test hook,
/// honoured only with the `failpoints` feature). On failure nothing is undone here: the
/// caller undoes `entries[..applied]`.
pub fn apply(
    nl: &mut Netlink,
    entries: &mut [Entry],
    alias: &str,
    fail_at: Option<usize>,
) -> Result<(), ApplyError> {
    let mut known: Vec<(String, u32)> = Vec::new();
    for (i, entry) in entries.iter_mut().enumerate() {
        if cfg!(feature = "failpoints") && fail_at == Some(i) {
            return Err(ApplyError {
                applied: i,
                entry: entry.clone(),
                step: "failpoint",
                error: std::io::Error::other("injected failure (failpoint)"),
            });
        }
        if let Err((step, error)) = apply_one(nl, entry, alias, &known) {
            // A tap that was created but not fully set up exists: count it, so it is undone.
            let created = matches!(
                entry,
                Entry::Tap {
                    ifindex: Some(_),
                    ..
                }
            );
            return Err(ApplyError {
                applied: if created { i + 1 } else { i },
                entry: entry.clone(),
                step,
                error,
            });
        }
        if let Entry::Tap {
            name,
            ifindex: Some(index),
            ..
        } = entry
        {
            known.push((name.clone(), *index));
        }
    }
    Ok(())
}

/// Why undoing one entry failed.
#[derive(Debug)]
pub struct UndoError {
    pub entry: Entry,
    pub error: NlError,
}

fn gone(errno: i32) -> bool {
    // ENODEV / ENOENT: the device or object no longer exists; EINVAL: the kernel's answer
    // to deleting an ingress qdisc that is not there.
    matches!(errno, libc::ENODEV | libc::ENOENT | libc::EINVAL)
}

/// The ifindex to undo `entry` on, or None when its device is gone (nothing to undo).
/// A tap whose creation was journalled but never confirmed (the process died in between)
/// is looked up by name, and deleted only if it is ours: a tun device whose alias is ours,
/// or that has no alias yet (the alias is set right after creation).
fn resolve(nl: &mut Netlink, entry: &Entry, alias: &str) -> Result<Option<u32>, NlError> {
    if let Some(index) = entry.ifindex() {
        return Ok(Some(index));
    }
    let Ok(index) = tap::ifindex(entry.device()) else {
        return Ok(None);
    };
    if let Entry::Tap { .. } = entry {
        let ours = link::get(nl, index)?.is_some_and(|l| {
            l.kind.as_deref() == Some("tun") && l.alias.as_deref().is_none_or(|a| a == alias)
        });
        if !ours {
            tracing::warn!(
                device = entry.device(),
                "a device of that name exists but is not ours; leaving it"
            );
            return Ok(None);
        }
    }
    Ok(Some(index))
}

fn undo_one(nl: &mut Netlink, entry: &Entry, alias: &str) -> Result<(), NlError> {
    let Some(index) = resolve(nl, entry, alias)? else {
        return Ok(());
    };
    let result = match entry {
        Entry::RedirectFilter { .. } => tc::del_redirect(nl, index),
        Entry::IngressQdisc { .. } => tc::del_ingress(nl, index),
        Entry::Tap { .. } => link::delete(nl, index),
    };
    match result {
        Err(e) if gone(e.errno) => Ok(()),
        other => other,
    }
}

/// Undo `entries` (a journal, in creation order): in reverse, grouped so that every filter
/// goes before every qdisc and every qdisc before every device. Runs inside the netns.
/// Keeps going after a failure and reports the first one.
/// `alias` is the sandbox's owner alias (see [`owner_alias`]).
pub fn undo(nl: &mut Netlink, entries: &[Entry], alias: &str) -> Result<(), UndoError> {
    let mut order: Vec<&Entry> = entries.iter().rev().collect();
    order.sort_by_key(|e| e.phase());
    let mut first_error = None;
    for entry in order {
        if let Err(error) = undo_one(nl, entry, alias) {
            tracing::warn!(object = %entry.describe(), %error.errno, "undo failed");
            first_error.get_or_insert(UndoError {
                entry: entry.clone(),
                error,
            });
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_put_filters_before_qdiscs_before_devices() {
        let entries = [
            Entry::Tap {
                name: "tap0".into(),
                ifindex: Some(5),
                queues: 1,
                mtu: 1500,
                owner: tap::TapOwner::default(),
            },
            Entry::IngressQdisc {
                device: "tap0".into(),
                ifindex: Some(5),
            },
            Entry::IngressQdisc {
                device: "eth0".into(),
                ifindex: Some(2),
            },
            Entry::RedirectFilter {
                device: "eth0".into(),
                ifindex: Some(2),
                target: "tap0".into(),
            },
            Entry::RedirectFilter {
                device: "tap0".into(),
                ifindex: Some(5),
                target: "eth0".into(),
            },
            Entry::Tap {
                name: "tap1".into(),
                ifindex: Some(7),
                queues: 1,
                mtu: 1500,
                owner: tap::TapOwner::default(),
            },
        ];
        let mut order: Vec<&Entry> = entries.iter().rev().collect();
        order.sort_by_key(|e| e.phase());
        let described: Vec<String> = order.iter().map(|e| e.describe()).collect();
        assert_eq!(
            described,
            vec![
                "redirect filter tap0 -> eth0",
                "redirect filter eth0 -> tap0",
                "ingress qdisc on eth0",
                "ingress qdisc on tap0",
                "tap tap1",
                "tap tap0",
            ]
        );
    }

    #[test]
    fn entries_round_trip_through_json() {
        let e = Entry::RedirectFilter {
            device: "eth0".into(),
            ifindex: None,
            target: "tap0".into(),
        };
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.contains("\"object\":\"redirect-filter\""));
        let back: Entry = serde_json::from_str(&text).unwrap();
        assert_eq!(back, e);
    }
}
