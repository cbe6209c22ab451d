//! Netns-wide settings are shared by every attachment of a netns: the one that changes a
//! setting records its original value; another one that needs the same setting copies
//! that original from the first one's state (the kernel only shows the changed value), so
//! whichever detaches last puts the original back. An undo leaves a netns-wide setting as
//! it is while a proxy neighbour entry of sandbox-net that is not its own remains in the
//! netns (see `journal::l3`): another attachment still relies on it.

use crate::Result;
use crate::journal::Entry;
use crate::model::{Model, l3};
use crate::netns::NsId;
use crate::state::{State, StateDir};

/// The last step of planning an l3 attach or hotplug, once the state holds the new
/// entries from `start` on: the guest description as the guest sees it behind the taps
/// ([`l3::guest_view`]) and the netns-wide settings settled against the other
/// attachments of the netns ([`settle_for`]). Nothing for other models.
pub(super) fn finish_plan(store: &StateDir, state: &mut State, start: usize) -> Result<()> {
    if state.model != Model::L3 {
        return Ok(());
    }
    state.guest = state
        .guest
        .take()
        .map(|g| l3::guest_view(g, &state.endpoints, &state.journal));
    settle_for(store, state, start)
}

/// The netns of an attachment, as states record it.
#[derive(Debug, Clone, Copy)]
pub struct Netns {
    pub id: NsId,
    pub cookie: Option<u64>,
}

impl Netns {
    fn is(&self, state: &State) -> bool {
        match (self.cookie, state.netns_cookie) {
            (Some(a), Some(b)) => a == b,
            _ => self.id == state.netns_id,
        }
    }
}

/// The netns-wide settings among `entries`.
fn netns_wide(entries: &[Entry]) -> impl Iterator<Item = &Entry> {
    entries.iter().filter(|e| e.netns_wide())
}

fn same_setting(a: &Entry, b: &Entry) -> bool {
    match (a, b) {
        (Entry::Sysctl { knob: x, .. }, Entry::Sysctl { knob: y, .. }) => x == y,
        _ => false,
    }
}

/// Settle the netns-wide settings in `planned` (new entries of sandbox `id`, whose
/// journal so far is `held`): one per setting, none the sandbox already holds; the
/// original copied from another attachment of the same netns that holds the setting;
/// dropped when nothing would change (the value is already the one wanted, and no
/// attachment set it).
pub fn settle(
    store: &StateDir,
    id: &str,
    netns: Netns,
    held: &[Entry],
    planned: &mut Vec<Entry>,
) -> Result<()> {
    if netns_wide(planned).next().is_none() {
        return Ok(());
    }
    let mut others: Vec<State> = Vec::new();
    for other in store.ids()? {
        if other != id
            && let Some(state) = store.load(&other)?
            && netns.is(&state)
        {
            others.push(state);
        }
    }
    let mut kept: Vec<Entry> = Vec::with_capacity(planned.len());
    for mut entry in planned.drain(..) {
        if !entry.netns_wide() {
            kept.push(entry);
            continue;
        }
        let already = netns_wide(held)
            .chain(netns_wide(&kept))
            .any(|h| same_setting(h, &entry));
        if already {
            continue;
        }
        let inherited = others
            .iter()
            .flat_map(|o| netns_wide(&o.journal))
            .find(|o| same_setting(o, &entry));
        match (&mut entry, inherited) {
            (
                Entry::Sysctl { original, .. },
                Some(Entry::Sysctl {
                    original: theirs, ..
                }),
            ) => {
                *original = *theirs;
                kept.push(entry);
            }
            (
                Entry::Sysctl {
                    value, original, ..
                },
                None,
            ) if *original == Some(*value) => {}
            _ => kept.push(entry),
        }
    }
    *planned = kept;
    Ok(())
}

/// [`settle`] the entries of `state.journal` from `start` on (an attach: 0; a hotplug:
/// where the new endpoint's entries begin), against the ones before.
pub fn settle_for(store: &StateDir, state: &mut State, start: usize) -> Result<()> {
    let netns = Netns {
        id: state.netns_id,
        cookie: state.netns_cookie,
    };
    let mut planned = state.journal.split_off(start);
    let settled = settle(store, &state.id, netns, &state.journal, &mut planned);
    state.journal.extend(planned);
    settled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysctl::Knob;

    fn claim(knob: Knob, original: i32) -> Entry {
        Entry::Sysctl {
            device: String::new(),
            ifindex: None,
            knob,
            value: 1,
            original: Some(original),
        }
    }

    fn of_device() -> Entry {
        Entry::Sysctl {
            device: "eth0".into(),
            ifindex: Some(2),
            knob: Knob::Ipv4ProxyArp,
            value: 1,
            original: Some(0),
        }
    }

    #[test]
    fn one_claim_per_setting_and_none_that_changes_nothing() {
        let dir = std::env::temp_dir().join(sandbox_net_testkit::scratch::unique_name("sn-claims"));
        let store = StateDir::open(&dir).unwrap();
        let netns = Netns {
            id: NsId { dev: 1, ino: 2 },
            cookie: Some(3),
        };
        // Two endpoints plan the same setting: one claim is kept.
        let mut planned = vec![
            of_device(),
            claim(Knob::Ipv6ProxyNdp, 0),
            claim(Knob::Ipv6ProxyNdp, 0),
        ];
        settle(&store, "s1", netns, &[], &mut planned).unwrap();
        assert_eq!(planned, vec![of_device(), claim(Knob::Ipv6ProxyNdp, 0)]);
        // The sandbox holds it already (a hotplug): none.
        let held = planned.clone();
        let mut planned = vec![claim(Knob::Ipv6ProxyNdp, 1)];
        settle(&store, "s1", netns, &held, &mut planned).unwrap();
        assert!(planned.is_empty());
        // Already at the value, and no attachment set it (the tenant did): none.
        let mut planned = vec![claim(Knob::Ipv6ProxyNdp, 1), of_device()];
        settle(&store, "s1", netns, &[], &mut planned).unwrap();
        assert_eq!(planned, vec![of_device()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
