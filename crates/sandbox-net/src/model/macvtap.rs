//! The macvtap model: a bridge-mode macvtap on the endpoint takes over the endpoint's MAC
//! (the guest uses it); the endpoint gets a random locally administered MAC and loses its
//! addresses and routes while attached, so nothing in the netns conflicts with the guest.
//! Every change is a journal entry, so detach restores the MAC, addresses and routes.

use crate::journal::Entry;
use crate::mac::MacAddr;
use crate::netlink::link::Link;
use crate::netlink::route::{PROTO_KERNEL, TABLE_MAIN};
use crate::scan::Snapshot;

/// RT_TABLE_LOCAL: the kernel's own local/broadcast routes.
const TABLE_LOCAL: u32 = 255;

/// A random MAC for a device (a tap, or the endpoint a macvtap took the MAC of), or
/// why there is none.
pub fn random_mac() -> Result<MacAddr, String> {
    MacAddr::random_local().map_err(|e| format!("getrandom for a new MAC: {e}"))
}

/// The journal (in creation order) that moves `link` behind a macvtap named `name` whose
/// queues hold `queue_len` frames.
pub fn entries(
    snapshot: &Snapshot,
    link: &Link,
    name: &str,
    queue_len: u32,
) -> Result<Vec<Entry>, String> {
    let mac = link
        .mac
        .as_deref()
        .and_then(MacAddr::from_slice)
        .ok_or("has no Ethernet MAC to give to a macvtap")?;
    let mut journal = Vec::new();
    // Routes first (the kernel would flush IPv4 ones with the last address anyway; removing
    // them explicitly keeps the journal exact), then addresses, then the MAC.
    for route in &snapshot.routes {
        if route.oif == Some(link.index)
            && route.table != TABLE_LOCAL
            && !(route.protocol == PROTO_KERNEL && route.table == TABLE_MAIN)
        {
            journal.push(Entry::RemovedRoute {
                device: link.name.clone(),
                ifindex: Some(link.index),
                route: route.clone(),
            });
        }
    }
    for address in snapshot.addresses_of(link.index) {
        journal.push(Entry::RemovedAddress {
            device: link.name.clone(),
            ifindex: Some(link.index),
            address: address.clone(),
        });
    }
    journal.push(Entry::LinkMac {
        device: link.name.clone(),
        ifindex: Some(link.index),
        original: mac,
        replacement: random_mac()?,
    });
    journal.push(Entry::Macvtap {
        name: name.to_string(),
        ifindex: None,
        parent: link.index,
        mac,
        mtu: link.mtu,
        // Never the endpoint's: a CNI veth has txqueuelen 0, and a macvtap needs a queue.
        tx_queue_len: Some(queue_len),
    });
    Ok(journal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::addr::Address;
    use crate::netlink::route::Route;

    #[test]
    fn plan_removes_routes_then_addresses_then_moves_the_mac() {
        let link = Link {
            mac: Some(vec![2, 0, 0, 0, 0, 9]),
            mtu: 1450,
            tx_queue_len: 0,
            flags: 0,
            ..Link::test(2, "eth0", Some("veth"))
        };
        let route = |proto, table, dst: Option<&str>| Route {
            ipv6: false,
            dst: dst.map(|d| d.parse().unwrap()),
            dst_len: if dst.is_some() { 24 } else { 0 },
            gateway: None,
            source: None,
            scope: 0,
            protocol: proto,
            kind: 1,
            table,
            oif: Some(2),
            priority: None,
            mtu: None,
        };
        let snapshot = Snapshot {
            links: vec![link.clone()],
            addresses: vec![Address {
                ifindex: 2,
                addr: "10.0.0.2".parse().unwrap(),
                prefix_len: 24,
                scope: 0,
                flags: 0x80,
                broadcast: None,
            }],
            routes: vec![
                route(PROTO_KERNEL, TABLE_MAIN, Some("10.0.0.0")),
                route(3, TABLE_MAIN, None),
                route(PROTO_KERNEL, TABLE_LOCAL, Some("10.0.0.2")),
            ],
            neighbours: vec![],
        };
        let journal = entries(&snapshot, &link, "mvtap0_sn", 1000).unwrap();
        let d: Vec<String> = journal.iter().map(Entry::describe).collect();
        assert_eq!(
            d,
            vec![
                "route default dev eth0",
                "address 10.0.0.2/24 of eth0",
                "MAC of eth0",
                "macvtap mvtap0_sn",
            ]
        );
        match &journal[3] {
            Entry::Macvtap {
                mac,
                tx_queue_len,
                mtu,
                ..
            } => {
                assert_eq!(mac.to_string(), "02:00:00:00:00:09");
                // The setting, not the veth's 0.
                assert_eq!(*tx_queue_len, Some(1000));
                assert_eq!(*mtu, 1450);
            }
            other => panic!("{other:?}"),
        }
    }
}
