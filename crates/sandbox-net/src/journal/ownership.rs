//! Proof that a journalled object is still ours, before undo touches it.
//!
//! An ifindex is reused as soon as it is free, and the tenant is root in its netns: the
//! device at a recorded ifindex may be anyone's by the time undo runs. So, against one link
//! dump taken for the whole undo:
//! - a device we created (tap, macvtap, IFB) is ours when the link at its recorded ifindex
//!   is of the kind we create and carries our owner alias; an entry whose creation was
//!   journalled but never confirmed (no ifindex) is looked up by name, and may also have no
//!   alias yet (it is set right after creation);
//! - an object on an endpoint (qdisc, filter, rate limit, MAC, address, route, proxy
//!   neighbour, setting) is touched only while the endpoint is the one recorded: same
//!   ifindex, name and kind; a setting is also left alone when its value is neither the
//!   one set nor the original (someone else changed it: `journal::l3::refine`);
//! - a netns-wide setting lives on no device: the netns is proven by `ops::reopen`.
//!
//! What fails is left alone and reported ([`LeftAlone`]).

use serde::Serialize;

use super::Entry;
use crate::endpoint::{self, Class, Endpoint};
use crate::netlink::link::Link;

/// The link kinds sandbox-net creates.
pub const OUR_KINDS: &[&str] = &["tun", "macvtap", "ifb"];

/// Whose objects an undo may touch: the sandbox's owner alias, and the endpoints its
/// entries live on as they were recorded.
#[derive(Debug, Clone)]
pub struct Owner<'a> {
    pub alias: String,
    pub endpoints: &'a [Endpoint],
}

/// A journalled object that undo did not touch because it is not provably ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeftAlone {
    /// The object as journalled ("ingress qdisc on eth0", "tap tap0_sn").
    pub object: String,
    /// What is there instead, naming it.
    pub reason: String,
}

/// Whether undo may touch the device an entry lives on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Ours, at this ifindex.
    Ours(u32),
    /// Nothing is there any more: nothing to undo.
    Gone,
    /// Something else is there; the reason names it.
    NotOurs(String),
}

/// The link kind an entry that creates a device creates.
fn created_kind(entry: &Entry) -> Option<&'static str> {
    match entry {
        Entry::Tap { .. } => Some("tun"),
        Entry::Macvtap { .. } => Some("macvtap"),
        Entry::Ifb { .. } => Some("ifb"),
        _ => None,
    }
}

fn describe_link(link: &Link) -> String {
    let kind = link.kind.as_deref().unwrap_or("no kind");
    match &link.alias {
        Some(alias) => format!("{} ({kind}, alias {alias:?})", link.name),
        None => format!("{} ({kind}, no alias)", link.name),
    }
}

/// Decide for `entry` (not a VFIO binding: those live outside the netns), one of
/// `entries` (the journal, or the part of it being undone), against `links` (one dump).
pub fn verdict(entry: &Entry, entries: &[Entry], links: &[Link], owner: &Owner) -> Verdict {
    // A setting of the whole netns lives on no device: the netns itself was proven ours
    // (`ops::reopen`); whether its value is still ours is `journal::l3::refine`'s to say.
    if entry.netns_wide() {
        return Verdict::Ours(0);
    }
    let device = entry.device();
    let found = match entry.ifindex() {
        Some(index) => links.iter().find(|l| l.index == index),
        None => links.iter().find(|l| l.name == device),
    };
    let Some(link) = found else {
        return Verdict::Gone;
    };
    if let Some(ep) = owner.endpoints.iter().find(|e| e.name == device) {
        let same = link.index == ep.ifindex
            && link.name == ep.name
            && endpoint::classify(link) == Class::Endpoint(ep.kind);
        return if same {
            Verdict::Ours(link.index)
        } else {
            Verdict::NotOurs(format!(
                "ifindex {} is {} now, not the {} {} (ifindex {}) that was attached",
                link.index,
                describe_link(link),
                ep.kind.as_str(),
                ep.name,
                ep.ifindex
            ))
        };
    }
    // A device we created: of the kind its creating entry made (any of ours when that
    // entry is not among those given), carrying our alias.
    let kind = entries
        .iter()
        .find(|e| e.creates_device() && e.device() == device)
        .and_then(created_kind);
    let kind_ok = match (kind, link.kind.as_deref()) {
        (Some("tun"), Some("tun")) => link.tun.is_none_or(|t| t.tap),
        (Some(want), Some(have)) => want == have,
        (None, Some(have)) => OUR_KINDS.contains(&have),
        (_, None) => false,
    };
    let unconfirmed = entry.ifindex().is_none();
    let alias_ok = match link.alias.as_deref() {
        Some(alias) => alias == owner.alias,
        None => unconfirmed,
    };
    if kind_ok && alias_ok {
        return Verdict::Ours(link.index);
    }
    let at = if unconfirmed {
        format!("the device named {device}")
    } else {
        format!("ifindex {}", link.index)
    };
    Verdict::NotOurs(format!(
        "{at} is {} now, not the {} {device} sandbox-net created (alias {:?})",
        describe_link(link),
        kind.unwrap_or("device"),
        owner.alias
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::EndpointKind;

    fn link(index: u32, name: &str, kind: Option<&str>, alias: Option<&str>) -> Link {
        Link {
            mac: None,
            flags: 0,
            alias: alias.map(String::from),
            ..Link::test(index, name, kind)
        }
    }

    fn tap(ifindex: Option<u32>) -> Entry {
        Entry::Tap {
            name: "tap0_sn".into(),
            ifindex,
            queues: 1,
            mtu: 1500,
            owner: Default::default(),
            mac: None,
            tx_queue_len: None,
        }
    }

    fn eth0() -> Endpoint {
        Endpoint::new(&link(2, "eth0", Some("veth"), None), EndpointKind::Veth, 1)
    }

    #[test]
    fn a_device_is_ours_only_with_our_kind_and_alias() {
        let endpoints = [eth0()];
        let owner = Owner {
            alias: "sandbox-net:s1".into(),
            endpoints: &endpoints,
        };
        let entries = [tap(Some(5))];
        let at = |l: Link| verdict(&entries[0], &entries, &[l], &owner);
        assert_eq!(
            at(link(5, "renamed", Some("tun"), Some("sandbox-net:s1"))),
            Verdict::Ours(5)
        );
        for foreign in [
            link(5, "eth1", Some("veth"), None),
            link(5, "tap0_sn", Some("veth"), Some("sandbox-net:s1")),
            link(5, "tap0_sn", Some("tun"), None),
            link(5, "tap0_sn", Some("tun"), Some("sandbox-net:s2")),
        ] {
            let v = at(foreign.clone());
            assert!(
                matches!(&v, Verdict::NotOurs(r) if r.contains(&foreign.name) && r.contains("ifindex 5")),
                "{foreign:?}: {v:?}"
            );
        }
        assert_eq!(at(link(6, "tap0_sn", Some("tun"), None)), Verdict::Gone);
        // Unconfirmed: by name, and no alias yet is fine.
        let unconfirmed = [tap(None)];
        assert_eq!(
            verdict(
                &unconfirmed[0],
                &unconfirmed,
                &[link(9, "tap0_sn", Some("tun"), None)],
                &owner
            ),
            Verdict::Ours(9)
        );
    }

    #[test]
    fn an_endpoint_object_needs_the_recorded_endpoint() {
        let endpoints = [eth0()];
        let owner = Owner {
            alias: "sandbox-net:s1".into(),
            endpoints: &endpoints,
        };
        let qdisc = Entry::IngressQdisc {
            device: "eth0".into(),
            ifindex: Some(2),
        };
        let entries = [qdisc.clone()];
        let at = |l: Link| verdict(&qdisc, &entries, &[l], &owner);
        assert_eq!(at(link(2, "eth0", Some("veth"), None)), Verdict::Ours(2));
        for foreign in [
            link(2, "eth9", Some("veth"), None),
            link(2, "eth0", Some("macvlan"), None),
        ] {
            assert!(matches!(at(foreign), Verdict::NotOurs(r) if r.contains("not the veth eth0")),);
        }
    }
}
