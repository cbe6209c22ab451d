//! The tcfilter model: for each endpoint a tap, an ingress qdisc on both, and a match-all
//! u32 filter on each side redirecting every frame to the other's egress.

use crate::endpoint::{Candidate, EndpointKind};
use crate::journal::Entry;
use crate::state::Endpoint;
use crate::tap::TapOwner;

/// Endpoint kinds this model can attach.
pub const SUPPORTED: &[EndpointKind] = &[
    EndpointKind::Veth,
    EndpointKind::Macvlan,
    EndpointKind::Vlan,
    EndpointKind::Ipvlan,
];

/// The tap name for the endpoint at position `n`.
pub fn tap_name(n: usize) -> String {
    format!("tap{n}_sn")
}

/// The endpoints and the journal (in creation order) that attach `candidates`.
/// The tap of endpoint `n` is `tap_names[n]` when given, else [`tap_name`]`(n)`.
pub fn plan(
    candidates: &[Candidate],
    queues: u32,
    tap_names: &[String],
    owner: TapOwner,
) -> (Vec<Endpoint>, Vec<Entry>) {
    let mut endpoints = Vec::with_capacity(candidates.len());
    let mut journal = Vec::with_capacity(candidates.len() * 5);
    for (n, c) in candidates.iter().enumerate() {
        let tap = tap_names.get(n).cloned().unwrap_or_else(|| tap_name(n));
        let link = &c.link;
        journal.push(Entry::Tap {
            name: tap.clone(),
            ifindex: None,
            queues,
            mtu: link.mtu,
            owner,
        });
        journal.push(Entry::IngressQdisc {
            device: tap.clone(),
            ifindex: None,
        });
        journal.push(Entry::IngressQdisc {
            device: link.name.clone(),
            ifindex: Some(link.index),
        });
        journal.push(Entry::RedirectFilter {
            device: link.name.clone(),
            ifindex: Some(link.index),
            target: tap.clone(),
        });
        journal.push(Entry::RedirectFilter {
            device: tap.clone(),
            ifindex: None,
            target: link.name.clone(),
        });
        let mut endpoint = Endpoint::new(link, c.kind, queues);
        endpoint.tap = tap;
        endpoints.push(endpoint);
    }
    (endpoints, journal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::link::Link;

    #[test]
    fn plan_creates_tap_then_qdiscs_then_filters() {
        let c = Candidate {
            link: Link {
                index: 2,
                name: "eth0".into(),
                kind: Some("veth".into()),
                mac: Some(vec![2, 0, 0, 0, 0, 9]),
                mtu: 1450,
                tx_queue_len: 0,
                flags: 0,
                parent: None,
                tun: None,
                alias: None,
            },
            kind: EndpointKind::Veth,
        };
        let (eps, journal) = plan(&[c], 4, &[], TapOwner::default());
        assert_eq!(eps[0].tap, "tap0_sn");
        assert_eq!(eps[0].mac, "02:00:00:00:00:09");
        assert_eq!(eps[0].queues, 4);
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
