//! Endpoints: what an interface in the netns is (its kind, and the classification of a
//! scanned netns into the endpoints to attach), and an attached endpoint with what the VMM
//! gets for it (its [`Backend`]).

mod record;

use std::cmp::Ordering;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::mac::MacAddr;
use crate::netlink::attr;
use crate::netlink::link::Link;
use crate::scan::Snapshot;

/// One attached interface, and what the VMM needs to use it. Written (state files, JSON
/// output) as one flat object, as it always was: `tap` (empty when there is none), `mac`,
/// and `tap_mac`, `chardev`, `pci_address`, `vfio_group`, `vhost_user_socket`, `ifb` when
/// they apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "record::Record", try_from = "record::Record")]
pub struct Endpoint {
    /// The interface in the netns (or the device's name in a static configuration).
    pub name: String,
    /// What the interface is (veth, macvlan, a NIC, ...).
    pub kind: EndpointKind,
    /// Its ifindex in the netns when attached (the kernel reuses ifindexes: a name and kind check goes with it).
    pub ifindex: u32,
    /// The MAC the guest NIC must use (None: the interface has none, or a static device
    /// was given none).
    pub mac: Option<MacAddr>,
    /// The MTU the guest NIC must use.
    pub mtu: u32,
    /// The queue pairs of its tap or macvtap (1: single queue).
    pub queues: u32,
    /// What the VMM gets for it.
    pub backend: Backend,
    /// The IFB that shapes traffic toward the guest (macvtap model with an rx limit).
    pub ifb: Option<String>,
}

/// What the VMM gets for an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A persistent tap, opened by name (or by fd through `exec`): one sandbox-net made,
    /// or one handed over as it is. `mac` is the tap's own (a CNI result lists it; None
    /// for a static attachment's tap).
    Tap {
        /// The tap's name.
        name: String,
        /// The tap's own MAC, when known.
        mac: Option<MacAddr>,
    },
    /// A macvtap, whose queues are opened through its character device ("MAJOR:MINOR",
    /// known once it exists: a macvtap of an attach that never finished reads back as a
    /// tap).
    Macvtap {
        /// The macvtap's name.
        name: String,
        /// The macvtap's own MAC, when known.
        mac: Option<MacAddr>,
        /// Its character device, "MAJOR:MINOR".
        chardev: Option<String>,
    },
    /// A physical NIC bound to vfio-pci: its PCI address and the VFIO group device the VMM
    /// opens.
    Vfio {
        /// The NIC's PCI address (`0000:03:00.0`).
        pci_address: String,
        /// The VFIO group device (`/dev/vfio/12`).
        group: PathBuf,
    },
    /// A vhost-user socket the VMM connects to.
    VhostUser {
        /// The socket's path.
        socket: PathBuf,
    },
    /// Nothing (model none): the interface is only described to the guest.
    None,
}

impl Backend {
    /// The network device the VMM opens: a tap or a macvtap.
    pub fn device(&self) -> Option<&str> {
        match self {
            Backend::Tap { name, .. } | Backend::Macvtap { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The MAC of the device the VMM opens (a tap's or a macvtap's).
    pub fn device_mac(&self) -> Option<MacAddr> {
        match self {
            Backend::Tap { mac, .. } | Backend::Macvtap { mac, .. } => *mac,
            _ => None,
        }
    }

    /// The vhost-user socket, for a vhost-user endpoint.
    pub fn vhost_user_socket(&self) -> Option<&Path> {
        match self {
            Backend::VhostUser { socket } => Some(socket),
            _ => None,
        }
    }

    /// The PCI address, for a NIC given to the VM.
    pub fn pci_address(&self) -> Option<&str> {
        match self {
            Backend::Vfio { pci_address, .. } => Some(pci_address),
            _ => None,
        }
    }
}

impl Refused {
    /// The error for this refusal in netns `netns`: [`crate::Error::InterfaceNotFound`]
    /// for an interface that is not there, [`crate::Error::Unsupported`] otherwise.
    pub fn into_error(self, netns: &str) -> crate::Error {
        if self.reason == NO_SUCH_INTERFACE {
            return crate::Error::InterfaceNotFound {
                iface: self.iface,
                within: format!("in netns {netns}"),
                reason: self.reason,
            };
        }
        crate::Error::Unsupported {
            iface: self.iface,
            netns: netns.to_string(),
            reason: self.reason,
        }
    }
}

impl Endpoint {
    /// An endpoint for `link` with nothing for the VMM yet.
    pub fn new(link: &Link, kind: EndpointKind, queues: u32) -> Endpoint {
        Endpoint {
            name: link.name.clone(),
            kind,
            ifindex: link.index,
            mac: link.mac.as_deref().and_then(MacAddr::from_slice),
            mtu: link.mtu,
            queues,
            backend: Backend::None,
            ifb: None,
        }
    }

    /// The network device the VMM opens (a tap or a macvtap), if any.
    pub fn device(&self) -> Option<&str> {
        self.backend.device()
    }

    /// The devices this endpoint's journal entries live on.
    pub fn owns(&self, device: &str) -> bool {
        device == self.name || self.device() == Some(device) || self.ifb.as_deref() == Some(device)
    }

    /// The queue count when the VMM gets queue fds (`exec`): taps and macvtaps.
    pub fn fd_queues(&self) -> Option<u32> {
        self.device().map(|_| self.queues.max(1))
    }
}

/// What an interface in the netns is, as far as attaching it to a VM goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    /// A veth (what most CNI plugins give a pod).
    Veth,
    /// A macvlan.
    Macvlan,
    /// A macvtap the pod had.
    Macvtap,
    /// An ipvlan (refused on kernels without it).
    Ipvlan,
    /// A VLAN device.
    Vlan,
    /// An existing tun/tap device in tap mode.
    Tap,
    /// An existing tun/tap device in tun (layer 3) mode.
    Tun,
    /// A device without a link kind that is not loopback: a NIC.
    Physical,
    /// A vhost-user socket listed in a static configuration (no interface behind it).
    #[serde(rename = "vhost-user")]
    VhostUser,
}

impl EndpointKind {
    /// The kind as state files and JSON output write it (`veth`, `vhost-user`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::Veth => "veth",
            EndpointKind::Macvlan => "macvlan",
            EndpointKind::Macvtap => "macvtap",
            EndpointKind::Ipvlan => "ipvlan",
            EndpointKind::Vlan => "vlan",
            EndpointKind::Tap => "tap",
            EndpointKind::Tun => "tun",
            EndpointKind::Physical => "physical",
            EndpointKind::VhostUser => "vhost-user",
        }
    }
}

/// The outcome of classifying one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    Endpoint(EndpointKind),
    Loopback,
    /// A kind sandbox-net does not attach (bridge, vxlan, ...), with the kernel's name for it.
    Unsupported(String),
    /// A name that is not UTF-8 (a tenant may set one): such a link is never attached,
    /// since its name could be neither recorded nor handed to a VMM (see
    /// [`crate::netlink::attr::text`]).
    NotUtf8,
}

/// Classify one link from its kind and flags.
pub fn classify(link: &Link) -> Class {
    if link.is_loopback() {
        return Class::Loopback;
    }
    if attr::is_not_utf8(&link.name) {
        return Class::NotUtf8;
    }
    match link.kind.as_deref() {
        Some("veth") => Class::Endpoint(EndpointKind::Veth),
        Some("macvlan") => Class::Endpoint(EndpointKind::Macvlan),
        Some("macvtap") => Class::Endpoint(EndpointKind::Macvtap),
        Some("ipvlan") => Class::Endpoint(EndpointKind::Ipvlan),
        Some("vlan") => Class::Endpoint(EndpointKind::Vlan),
        Some("tun") => match link.tun {
            Some(t) if !t.tap => Class::Endpoint(EndpointKind::Tun),
            _ => Class::Endpoint(EndpointKind::Tap),
        },
        None => Class::Endpoint(EndpointKind::Physical),
        Some(other) => Class::Unsupported(other.to_string()),
    }
}

/// A configured interface found in the netns, to be attached.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub link: Link,
    pub kind: EndpointKind,
}

/// A link is configured when it has an address other than an IPv6 link-local one (which
/// the kernel gives every interface by itself).
pub fn is_configured(snapshot: &Snapshot, link: &Link) -> bool {
    snapshot
        .addresses_of(link.index)
        .any(|a| !is_link_local_v6(&a.addr))
}

pub fn is_link_local_v6(addr: &IpAddr) -> bool {
    matches!(addr, IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80)
}

/// The reason [`Refused`] gives for a named interface that is not in the netns.
pub const NO_SUCH_INTERFACE: &str = "no such interface";

/// Why a configured interface was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub iface: String,
    pub reason: String,
}

/// The configured, non-loopback links of the snapshot as endpoints, in a stable order
/// (natural order of names: eth2 before eth10). An unsupported configured interface is
/// an error naming it and its kind.
///
/// With `only`, just those interfaces are considered; each must exist and be configured.
pub fn candidates(snapshot: &Snapshot, only: Option<&[String]>) -> Result<Vec<Candidate>, Refused> {
    if let Some(names) = only {
        for name in names {
            match snapshot.links.iter().find(|l| &l.name == name) {
                None => {
                    return Err(Refused {
                        iface: name.clone(),
                        reason: NO_SUCH_INTERFACE.into(),
                    });
                }
                Some(l) if !is_configured(snapshot, l) => {
                    return Err(Refused {
                        iface: name.clone(),
                        reason: "has no address to hand to the guest".into(),
                    });
                }
                Some(_) => {}
            }
        }
    }
    let mut out = Vec::new();
    for link in &snapshot.links {
        if !is_configured(snapshot, link) || (only.is_none() && made_by_us(link)) {
            continue;
        }
        if only.is_some_and(|names| !names.contains(&link.name)) {
            continue;
        }
        match classify(link) {
            Class::Loopback => {}
            Class::Endpoint(kind) => out.push(Candidate {
                link: link.clone(),
                kind,
            }),
            Class::Unsupported(kind) => {
                return Err(Refused {
                    iface: link.name.clone(),
                    reason: format!("has addresses but its kind {kind:?} {UNSUPPORTED}"),
                });
            }
            Class::NotUtf8 => {
                return Err(Refused {
                    iface: link.name.clone(),
                    reason: not_utf8(link),
                });
            }
        }
    }
    out.sort_by(|a, b| natural_cmp(&a.link.name, &b.link.name));
    Ok(out)
}

/// A device sandbox-net made (it carries an owner alias): never an endpoint of another
/// attach (an l3 tap has addresses of its own).
fn made_by_us(link: &Link) -> bool {
    link.alias
        .as_deref()
        .is_some_and(|a| crate::names::owner_of(a).is_some())
}

/// Why a link whose name is not UTF-8 is not attached.
pub fn not_utf8(link: &Link) -> String {
    format!(
        "(ifindex {}) has addresses but a name that is not UTF-8, which sandbox-net can neither record nor hand to a VMM",
        link.index
    )
}

const UNSUPPORTED: &str =
    "is not supported (supported: veth, macvlan, macvtap, ipvlan, vlan, tap, physical)";

/// The named interfaces as endpoints, whether they have addresses or not (for an attach
/// that does not describe the guest: the caller chose the interfaces), in natural order.
/// `snapshot` needs only the links.
pub fn named(snapshot: &Snapshot, names: &[String]) -> Result<Vec<Candidate>, Refused> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let refuse = |reason: String| Refused {
            iface: name.clone(),
            reason,
        };
        let Some(link) = snapshot.links.iter().find(|l| &l.name == name) else {
            return Err(refuse(NO_SUCH_INTERFACE.into()));
        };
        if out.iter().any(|c: &Candidate| c.link.index == link.index) {
            continue; // named twice
        }
        match classify(link) {
            Class::Loopback => return Err(refuse("is the loopback".into())),
            Class::Endpoint(kind) => out.push(Candidate {
                link: link.clone(),
                kind,
            }),
            Class::Unsupported(kind) => {
                return Err(refuse(format!(
                    "has the kind {kind:?}, which {UNSUPPORTED}"
                )));
            }
            Class::NotUtf8 => return Err(refuse(not_utf8(link))),
        }
    }
    out.sort_by(|a, b| natural_cmp(&a.link.name, &b.link.name));
    Ok(out)
}

/// Compare names so that embedded numbers sort by value: eth2 < eth10.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    fn split(s: &str) -> (&str, Option<u64>) {
        let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (head, tail) = s.split_at(s.len() - digits);
        (head, tail.parse().ok())
    }
    let (ha, na) = split(a);
    let (hb, nb) = split(b);
    ha.cmp(hb).then(na.cmp(&nb)).then(a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::addr::Address;
    use crate::netlink::link::TunDetails;

    fn link(index: u32, name: &str, kind: Option<&str>) -> Link {
        Link::test(index, name, kind)
    }

    fn addr(ifindex: u32, a: &str, p: u8) -> Address {
        Address {
            ifindex,
            addr: a.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            prefix_len: p,
            scope: 0,
            flags: 0,
            broadcast: None,
        }
    }

    #[test]
    fn kinds_are_classified() {
        assert_eq!(
            classify(&link(2, "eth0", Some("veth"))),
            Class::Endpoint(EndpointKind::Veth)
        );
        assert_eq!(
            classify(&link(2, "m", Some("macvlan"))),
            Class::Endpoint(EndpointKind::Macvlan)
        );
        assert_eq!(
            classify(&link(2, "m", Some("macvtap"))),
            Class::Endpoint(EndpointKind::Macvtap)
        );
        assert_eq!(
            classify(&link(2, "i", Some("ipvlan"))),
            Class::Endpoint(EndpointKind::Ipvlan)
        );
        assert_eq!(
            classify(&link(2, "v", Some("vlan"))),
            Class::Endpoint(EndpointKind::Vlan)
        );
        assert_eq!(
            classify(&link(2, "p", None)),
            Class::Endpoint(EndpointKind::Physical)
        );
        assert_eq!(
            classify(&link(2, "b", Some("bridge"))),
            Class::Unsupported("bridge".into())
        );
        let mut tun = link(3, "tun0", Some("tun"));
        tun.tun = Some(TunDetails::default());
        assert_eq!(classify(&tun), Class::Endpoint(EndpointKind::Tun));
        tun.tun = Some(TunDetails {
            tap: true,
            ..TunDetails::default()
        });
        assert_eq!(classify(&tun), Class::Endpoint(EndpointKind::Tap));
        let mut lo = link(1, "lo", None);
        lo.flags |= libc::IFF_LOOPBACK as u32;
        assert_eq!(classify(&lo), Class::Loopback);
    }

    #[test]
    fn only_configured_links_become_candidates_in_natural_order() {
        let snapshot = Snapshot {
            links: vec![
                link(5, "eth10", Some("veth")),
                link(4, "eth2", Some("veth")),
                link(6, "bare", Some("veth")),
                link(7, "ll", Some("veth")),
            ],
            addresses: vec![
                addr(5, "10.0.10.2", 24),
                addr(4, "fd00::2", 64),
                addr(7, "fe80::1", 64),
            ],
            ..Snapshot::default()
        };
        let names: Vec<_> = candidates(&snapshot, None)
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.link.name)
            .collect();
        assert_eq!(names, vec!["eth2", "eth10"]);
    }

    #[test]
    fn an_unsupported_configured_link_is_named() {
        let snapshot = Snapshot {
            links: vec![link(3, "vx0", Some("vxlan"))],
            addresses: vec![addr(3, "10.1.0.1", 24)],
            ..Snapshot::default()
        };
        let err = candidates(&snapshot, None).err();
        assert_eq!(err.as_ref().map(|e| e.iface.as_str()), Some("vx0"));
        assert!(err.is_some_and(|e| e.reason.contains("vxlan")));
    }

    #[test]
    fn named_links_need_no_address_and_each_refusal_names_the_interface() {
        let mut lo = link(1, "lo", None);
        lo.flags |= libc::IFF_LOOPBACK as u32;
        let snapshot = Snapshot {
            links: vec![
                lo,
                link(5, "eth10", Some("veth")),
                link(4, "eth2", Some("veth")),
                link(3, "vx0", Some("vxlan")),
            ],
            ..Snapshot::default()
        };
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let got: Vec<_> = named(&snapshot, &names(&["eth10", "eth2", "eth10"]))
            .unwrap_or_default()
            .into_iter()
            .map(|c| (c.link.name, c.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                ("eth2".to_string(), EndpointKind::Veth),
                ("eth10".to_string(), EndpointKind::Veth)
            ]
        );
        for (name, why) in [("eth9", "no such"), ("lo", "loopback"), ("vx0", "vxlan")] {
            let err = named(&snapshot, &names(&["eth2", name])).err();
            assert_eq!(err.as_ref().map(|e| e.iface.as_str()), Some(name));
            assert!(err.is_some_and(|e| e.reason.contains(why)), "{name}");
        }
    }
}
