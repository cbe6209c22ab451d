//! The tcfilter model: for each endpoint a tap, an ingress qdisc on both, and a match-all
//! u32 filter on each side redirecting every frame to the other's egress.

use crate::journal::Entry;
use crate::mac::MacAddr;
use crate::netlink::link::Link;
use crate::tap::TapOwner;

/// The tap a tcfilter (or l3) endpoint gets: its name, MAC, queues, queue length and owner.
#[derive(Debug, Clone)]
pub struct NewTap<'a> {
    pub name: &'a str,
    pub mac: MacAddr,
    pub queues: u32,
    pub queue_len: u32,
    pub owner: TapOwner,
}

/// The journal entry of the tap `tap` made for `link` (its MTU).
pub fn tap_entry(link: &Link, tap: &NewTap<'_>) -> Entry {
    Entry::Tap {
        name: tap.name.to_string(),
        ifindex: None,
        queues: tap.queues,
        mtu: link.mtu,
        owner: tap.owner,
        mac: Some(tap.mac),
        tx_queue_len: Some(tap.queue_len),
    }
}

/// The journal (in creation order) that joins `link` to a new tap.
pub fn entries(link: &Link, tap: &NewTap<'_>) -> Vec<Entry> {
    let name = tap.name;
    vec![
        tap_entry(link, tap),
        Entry::IngressQdisc {
            device: name.to_string(),
            ifindex: None,
        },
        Entry::IngressQdisc {
            device: link.name.clone(),
            ifindex: Some(link.index),
        },
        Entry::RedirectFilter {
            device: link.name.clone(),
            ifindex: Some(link.index),
            target: name.to_string(),
        },
        Entry::RedirectFilter {
            device: name.to_string(),
            ifindex: None,
            target: link.name.clone(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tap_then_qdiscs_then_filters() {
        let link = Link {
            mac: Some(vec![2, 0, 0, 0, 0, 9]),
            mtu: 1450,
            tx_queue_len: 0,
            flags: 0,
            ..Link::test(2, "eth0", Some("veth"))
        };
        let tap = NewTap {
            name: "tap0_sn",
            mac: MacAddr::new([2, 0, 0, 0, 0, 1]),
            queues: 4,
            queue_len: 2000,
            owner: TapOwner::default(),
        };
        let journal = entries(&link, &tap);
        let d: Vec<String> = journal.iter().map(Entry::describe).collect();
        assert_eq!(
            d,
            vec![
                "tap tap0_sn",
                "ingress qdisc on tap0_sn",
                "ingress qdisc on eth0",
                "redirect filter eth0 -> tap0_sn",
                "redirect filter tap0_sn -> eth0",
            ]
        );
        assert!(matches!(
            journal[0],
            Entry::Tap {
                mtu: 1450,
                queues: 4,
                tx_queue_len: Some(2000),
                ..
            }
        ));
    }
}
