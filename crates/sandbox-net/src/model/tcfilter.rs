//! The tcfilter model: for each endpoint a tap, an ingress qdisc on both, and a match-all
//! u32 filter on each side redirecting every frame to the other's egress.

use crate::journal::Entry;
use crate::mac::MacAddr;
use crate::netlink::link::Link;
use crate::tap::TapOwner;

/// The tap named `tap` with MAC `tap_mac` made for `link` (its MTU).
pub fn tap_entry(link: &Link, tap: &str, tap_mac: MacAddr, queues: u32, owner: TapOwner) -> Entry {
    Entry::Tap {
        name: tap.to_string(),
        ifindex: None,
        queues,
        mtu: link.mtu,
        owner,
        mac: Some(tap_mac),
    }
}

/// The journal (in creation order) that joins `link` to a new tap named `tap` with MAC
/// `tap_mac`.
pub fn entries(
    link: &Link,
    tap: &str,
    tap_mac: MacAddr,
    queues: u32,
    owner: TapOwner,
) -> Vec<Entry> {
    vec![
        tap_entry(link, tap, tap_mac, queues, owner),
        Entry::IngressQdisc {
            device: tap.to_string(),
            ifindex: None,
        },
        Entry::IngressQdisc {
            device: link.name.clone(),
            ifindex: Some(link.index),
        },
        Entry::RedirectFilter {
            device: link.name.clone(),
            ifindex: Some(link.index),
            target: tap.to_string(),
        },
        Entry::RedirectFilter {
            device: tap.to_string(),
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
        let journal = entries(
            &link,
            "tap0_sn",
            MacAddr::new([2, 0, 0, 0, 0, 1]),
            4,
            TapOwner::default(),
        );
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
                ..
            }
        ));
    }
}
