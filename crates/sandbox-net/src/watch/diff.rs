//! What `watch` must do, from a fresh scan of the netns and the sandbox's state: which
//! attached interfaces are gone, which configured interfaces are new (and whether the guest
//! description, `State::guest_now`, says the same as the recorded one). Notifications are
//! never trusted, only this comparison: it is the same whether one event or a thousand were
//! seen, and sandbox-net's own changes (taps, macvtaps taking over addresses) compare as
//! "nothing to do".

use crate::endpoint::{self, Class, Endpoint, EndpointKind};
use crate::scan::Snapshot;
use crate::state::State;

/// A configured interface that is not attached yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInterface {
    pub name: String,
    pub ifindex: u32,
    /// Err: why sandbox-net does not attach it (a kind it does not attach: bridge,
    /// vxlan, ...; a name that is not UTF-8).
    pub kind: Result<EndpointKind, String>,
}

/// What changed between the state and the netns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Attached endpoints whose interface no longer exists.
    pub gone: Vec<Endpoint>,
    /// Configured interfaces to attach, in natural order of names.
    pub new: Vec<NewInterface>,
}

/// The devices sandbox-net made for this sandbox (taps, macvtaps, IFBs): never candidates.
fn ours(state: &State, name: &str) -> bool {
    state
        .endpoints
        .iter()
        .any(|e| e.device() == Some(name) || e.ifb.as_deref() == Some(name))
        || state
            .journal
            .iter()
            .any(|e| e.creates_device() && e.device() == name)
}

/// Compare a scan with the state.
pub fn diff(state: &State, snapshot: &Snapshot) -> Diff {
    // A NIC handed to the VM by VFIO leaves the netns (its driver is unbound): that is the
    // attachment working, not the interface going away.
    let gone = state
        .endpoints
        .iter()
        .filter(|e| e.backend.pci_address().is_none() && snapshot.link(e.ifindex).is_none())
        .cloned()
        .collect();
    let mut new: Vec<NewInterface> = Vec::new();
    for link in &snapshot.links {
        let attached = state
            .endpoints
            .iter()
            .any(|e| e.ifindex == link.index || e.name == link.name);
        let marked = link
            .alias
            .as_deref()
            .is_some_and(|a| crate::names::owner_of(a).is_some());
        let removed_by_user = state.detached_by_user.contains(&link.name);
        if attached || marked || removed_by_user || ours(state, &link.name) {
            continue;
        }
        if !endpoint::is_configured(snapshot, link) {
            continue;
        }
        let kind = match endpoint::classify(link) {
            Class::Loopback => continue,
            Class::Endpoint(kind) => Ok(kind),
            Class::Unsupported(kind) => Err(format!(
                "has addresses but its kind {kind:?} is not supported"
            )),
            Class::NotUtf8 => Err(endpoint::not_utf8(link)),
        };
        new.push(NewInterface {
            name: link.name.clone(),
            ifindex: link.index,
            kind,
        });
    }
    new.sort_by(|a, b| endpoint::natural_cmp(&a.name, &b.name));
    Diff { gone, new }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest;
    use crate::journal::Entry;
    use crate::netlink::addr::Address;
    use crate::netlink::link::Link;
    use crate::netlink::route::{Route, TABLE_MAIN};

    fn link(index: u32, name: &str, kind: Option<&str>) -> Link {
        Link::test(index, name, kind)
    }

    fn addr(ifindex: u32, a: &str) -> Address {
        Address {
            ifindex,
            addr: a.parse().unwrap(),
            prefix_len: 24,
            scope: 0,
            flags: 0,
            broadcast: None,
        }
    }

    /// An attached tcfilter state (built from JSON, so fields added later default).
    fn state(endpoints: Vec<Endpoint>, journal: Vec<Entry>) -> State {
        let mut s: State = serde_json::from_value(serde_json::json!({
            "version": 1, "id": "w", "netns": "pod", "netns_path": "/run/netns/pod",
            "netns_id": {"dev": 1, "ino": 2}, "model": "tcfilter", "phase": "attached",
            "endpoints": [], "guest": {"interfaces": [], "routes": [], "neighbors": []},
            "journal": []
        }))
        .unwrap();
        s.endpoints = endpoints;
        s.journal = journal;
        s
    }

    fn endpoint(l: &Link, tap: &str) -> Endpoint {
        let mut e = Endpoint::new(l, EndpointKind::Veth, 1);
        e.backend = crate::endpoint::Backend::Tap {
            name: tap.into(),
            mac: None,
        };
        e
    }

    #[test]
    fn new_configured_interfaces_but_not_ours_nor_attached() {
        let eth0 = link(2, "eth0", Some("veth"));
        let mut tap0 = link(3, "tap0_sn", Some("tun"));
        tap0.alias = Some("sandbox-net:w".into());
        let eth10 = link(4, "eth10", Some("veth"));
        let eth2 = link(5, "eth2", Some("veth"));
        let bare = link(6, "bare", Some("veth"));
        let br = link(7, "br0", Some("bridge"));
        let mut other = link(8, "mvtap0_sn", Some("macvtap"));
        other.alias = Some("sandbox-net:other".into());
        let snap = Snapshot {
            links: vec![eth0.clone(), tap0, eth10, eth2, bare, br, other],
            addresses: [2, 3, 4, 5, 7, 8]
                .iter()
                .map(|&i| addr(i, &format!("10.0.{i}.2")))
                .collect(),
            ..Snapshot::default()
        };
        let s = state(vec![endpoint(&eth0, "tap0_sn")], vec![]);
        let d = diff(&s, &snap);
        assert!(d.gone.is_empty());
        let names: Vec<(&str, bool)> = d
            .new
            .iter()
            .map(|n| (n.name.as_str(), n.kind.is_ok()))
            .collect();
        assert_eq!(names, vec![("br0", false), ("eth2", true), ("eth10", true)]);
    }

    #[test]
    fn gone_interfaces_except_vfio_ones() {
        let eth0 = link(2, "eth0", Some("veth"));
        let eth1 = link(3, "eth1", Some("veth"));
        let nic = link(4, "ens1", None);
        let mut vfio = Endpoint::new(&nic, EndpointKind::Physical, 1);
        vfio.backend = crate::endpoint::Backend::Vfio {
            pci_address: "0000:03:00.1".into(),
            group: "/dev/vfio/17".into(),
        };
        let s = state(
            vec![endpoint(&eth0, "tap0_sn"), endpoint(&eth1, "tap1_sn"), vfio],
            vec![],
        );
        let snap = Snapshot {
            links: vec![eth0],
            ..Snapshot::default()
        };
        let d = diff(&s, &snap);
        let gone: Vec<&str> = d.gone.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(gone, vec!["eth1"]);
    }

    #[test]
    fn macvtap_takeovers_do_not_change_the_guest() {
        let eth0 = link(2, "eth0", Some("veth"));
        let a = addr(2, "10.0.2.2");
        let route = Route {
            ipv6: false,
            dst: None,
            dst_len: 0,
            gateway: Some("10.0.2.1".parse().unwrap()),
            source: None,
            scope: 0,
            protocol: 3,
            kind: 1,
            table: TABLE_MAIN,
            oif: Some(2),
            priority: None,
            mtu: None,
        };
        let before = Snapshot {
            links: vec![eth0.clone()],
            addresses: vec![a.clone()],
            routes: vec![route.clone()],
            ..Snapshot::default()
        };
        let mut s = state(
            vec![endpoint(&eth0, "mvtap0_sn")],
            vec![
                Entry::RemovedAddress {
                    device: "eth0".into(),
                    ifindex: Some(2),
                    address: a,
                },
                Entry::RemovedRoute {
                    device: "eth0".into(),
                    ifindex: Some(2),
                    route,
                },
                Entry::LinkMac {
                    device: "eth0".into(),
                    ifindex: Some(2),
                    original: crate::mac::MacAddr::new([2, 0, 0, 0, 0, 2]),
                    replacement: crate::mac::MacAddr::new([2, 0, 0, 0, 0, 0x99]),
                },
            ],
        );
        let recorded = guest::describe(&before, &[2]);
        s.guest = Some(recorded.clone());
        let mut after_eth0 = eth0;
        after_eth0.mac = Some(vec![2, 0, 0, 0, 0, 0x99]);
        let after = Snapshot {
            links: vec![after_eth0],
            ..Snapshot::default()
        };
        let now = s.guest_now(&after);
        assert!(guest::same(&now, &recorded), "{now:?} vs {recorded:?}");
        assert!(diff(&s, &after).new.is_empty());
    }

    #[test]
    fn order_of_routes_does_not_matter_but_content_does() {
        let eth0 = link(2, "eth0", Some("veth"));
        let route = |dst: &str| Route {
            ipv6: false,
            dst: Some(dst.parse().unwrap()),
            dst_len: 24,
            gateway: Some("10.0.2.1".parse().unwrap()),
            source: None,
            scope: 0,
            protocol: 3,
            kind: 1,
            table: TABLE_MAIN,
            oif: Some(2),
            priority: None,
            mtu: None,
        };
        let mut snap = Snapshot {
            links: vec![eth0.clone()],
            addresses: vec![addr(2, "10.0.2.2")],
            routes: vec![route("10.1.0.0"), route("10.2.0.0")],
            ..Snapshot::default()
        };
        let s = state(vec![endpoint(&eth0, "tap0_sn")], vec![]);
        let a = s.guest_now(&snap);
        snap.routes.reverse();
        let b = s.guest_now(&snap);
        assert_ne!(a, b);
        assert!(guest::same(&a, &b));
        snap.routes.push(route("10.3.0.0"));
        assert!(!guest::same(&a, &s.guest_now(&snap)));
        let mut c = a.clone();
        c.interfaces[0].mtu = 9000;
        assert!(!guest::same(&a, &c));
    }
}
