//! The undo journal: every kernel object sandbox-net creates, in creation order.
//!
//! The journal is persisted (as part of the sandbox's state) before the first kernel change,
//! listing everything the attach will create. Undoing it is the one teardown mechanism:
//! rollback after a failure, detach, and recovery after a crash all call [`undo`]. Undo
//! treats an object that is already gone as undone, so it can run any number of times.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod ownership;

use crate::failpoint::FailAt;
use crate::mac::MacAddr;
use crate::names::owner_group;
use crate::netlink::addr::{self, Address};
use crate::netlink::route::{self, Route};
use crate::netlink::{Netlink, NlError, htb, link, tc};
use crate::rate::Rate;
use crate::sysctl::Knob;
use crate::{physical, tap};
use ownership::{LeftAlone, Owner, Verdict};

mod l3;

/// Which traffic a rate limit applies to, seen from the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Toward the guest.
    Rx,
    /// From the guest.
    Tx,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Rx => "rx",
            Direction::Tx => "tx",
        }
    }
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
        /// The MAC it is given (chosen when planned, so nothing has to read it back); None
        /// in states written before it was recorded: the kernel's random one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<MacAddr>,
        /// Its queue length (`txqueuelen`, set in the same request as the MTU); None in
        /// states written before it was recorded: the kernel's default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tx_queue_len: Option<u32>,
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
    /// A bridge-mode macvtap on the endpoint `parent`, carrying the endpoint's MAC.
    Macvtap {
        name: String,
        ifindex: Option<u32>,
        parent: u32,
        mac: MacAddr,
        mtu: u32,
        tx_queue_len: Option<u32>,
    },
    /// The MAC of `device` changed from `original` to `replacement`.
    LinkMac {
        device: String,
        ifindex: Option<u32>,
        original: MacAddr,
        replacement: MacAddr,
    },
    /// An address removed from `device` (restored exactly on undo).
    RemovedAddress {
        device: String,
        ifindex: Option<u32>,
        address: Address,
    },
    /// A route through `device` removed (restored exactly on undo).
    RemovedRoute {
        device: String,
        ifindex: Option<u32>,
        route: Route,
    },
    /// An IFB device (for shaping traffic that arrives on a device's ingress).
    Ifb { name: String, ifindex: Option<u32> },
    /// An HTB rate limit on `device`'s egress.
    RateLimit {
        device: String,
        ifindex: Option<u32>,
        direction: Direction,
        rate: Rate,
    },
    /// A network setting of the netns (`/proc/sys/net/...`) set to `value`: of `device`,
    /// or netns-wide (`conf/all`) when `device` is empty. `original` is written back on
    /// undo; None for a setting of a device sandbox-net creates (it goes with the device).
    Sysctl {
        device: String,
        ifindex: Option<u32>,
        knob: Knob,
        value: i32,
        original: Option<i32>,
    },
    /// An address added to `device` (removed on undo).
    AddedAddress {
        device: String,
        ifindex: Option<u32>,
        address: Address,
    },
    /// A route through `device` added (removed on undo).
    AddedRoute {
        device: String,
        ifindex: Option<u32>,
        route: Route,
    },
    /// A proxy neighbour entry for `ip` on `device` (removed on undo).
    ProxyNeighbour {
        device: String,
        ifindex: Option<u32>,
        ip: std::net::IpAddr,
    },
    /// The local route (table local) of `device`'s `address` removed: the address is
    /// routed on instead of delivered. Undo puts it back: the IPv4 route as recorded; for
    /// IPv6, whose local route the kernel ties to the address, the address is removed and
    /// added back, and the endpoint's routes in `sourced` get their preferred source back.
    RemovedLocalRoute {
        device: String,
        ifindex: Option<u32>,
        address: Address,
        route: Route,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sourced: Vec<Route>,
    },
    /// The PCI device of NIC `device` moved from `original_driver` to vfio-pci.
    VfioBind {
        device: String,
        pci_address: String,
        original_driver: Option<String>,
        /// The process's sysfs root when planned; only compared (see [`vfio_root`]).
        sysfs_root: PathBuf,
    },
}

/// `$then` with `$ifindex` bound to the `ifindex` field of an entry that has one (every
/// kind but a VFIO binding), else `$else`: the one list of them.
macro_rules! with_ifindex {
    ($entry:expr, $ifindex:ident => $then:expr, else $else:expr) => {
        match $entry {
            Entry::Tap { $ifindex, .. }
            | Entry::Macvtap { $ifindex, .. }
            | Entry::Ifb { $ifindex, .. }
            | Entry::RateLimit { $ifindex, .. }
            | Entry::IngressQdisc { $ifindex, .. }
            | Entry::RedirectFilter { $ifindex, .. }
            | Entry::LinkMac { $ifindex, .. }
            | Entry::RemovedAddress { $ifindex, .. }
            | Entry::RemovedRoute { $ifindex, .. }
            | Entry::Sysctl { $ifindex, .. }
            | Entry::AddedAddress { $ifindex, .. }
            | Entry::AddedRoute { $ifindex, .. }
            | Entry::ProxyNeighbour { $ifindex, .. }
            | Entry::RemovedLocalRoute { $ifindex, .. } => $then,
            Entry::VfioBind { .. } => $else,
        }
    };
}

impl Entry {
    /// The device the entry lives on.
    pub fn device(&self) -> &str {
        match self {
            Entry::Tap { name, .. } | Entry::Macvtap { name, .. } | Entry::Ifb { name, .. } => name,
            Entry::RateLimit { device, .. }
            | Entry::IngressQdisc { device, .. }
            | Entry::RedirectFilter { device, .. }
            | Entry::LinkMac { device, .. }
            | Entry::RemovedAddress { device, .. }
            | Entry::RemovedRoute { device, .. }
            | Entry::Sysctl { device, .. }
            | Entry::AddedAddress { device, .. }
            | Entry::AddedRoute { device, .. }
            | Entry::ProxyNeighbour { device, .. }
            | Entry::RemovedLocalRoute { device, .. }
            | Entry::VfioBind { device, .. } => device,
        }
    }

    /// The ifindex of the device the entry lives on, once known.
    pub fn ifindex(&self) -> Option<u32> {
        with_ifindex!(self, ifindex => *ifindex, else None)
    }

    /// Forget the entry's ifindex, so that it is resolved by name again (its device is
    /// made again).
    pub fn forget_ifindex(&mut self) {
        with_ifindex!(self, ifindex => *ifindex = None, else ())
    }

    /// True for the devices sandbox-net creates (deleted on undo).
    pub fn creates_device(&self) -> bool {
        matches!(
            self,
            Entry::Tap { .. } | Entry::Macvtap { .. } | Entry::Ifb { .. }
        )
    }

    /// True for a setting of the whole netns (on no device).
    pub fn netns_wide(&self) -> bool {
        matches!(self, Entry::Sysctl { device, .. } if device.is_empty())
    }

    /// Teardown phase: filters first, then qdiscs, then devices, so the kernel never
    /// redirects into a device that is going away.
    /// Restorations of the endpoint (MAC, addresses, routes) come last, once the devices
    /// that took them over are gone.
    fn phase(&self) -> u8 {
        match self {
            Entry::RedirectFilter { .. } => 0,
            Entry::IngressQdisc { .. }
            | Entry::RateLimit { .. }
            | Entry::AddedAddress { .. }
            | Entry::AddedRoute { .. }
            | Entry::ProxyNeighbour { .. } => 1,
            Entry::Tap { .. }
            | Entry::Macvtap { .. }
            | Entry::Ifb { .. }
            | Entry::VfioBind { .. } => 2,
            // A device's setting goes before the device; the endpoint's and the netns's
            // are restorations (the netns-wide ones once every proxy entry is gone).
            Entry::Sysctl { original: None, .. } => 1,
            // An IPv4 secondary address's local route has the primary as preferred
            // source: the kernel takes it back only once the primary's is back.
            Entry::RemovedLocalRoute { address, .. }
                if address.addr.is_ipv4() && address.flags & libc::IFA_F_SECONDARY != 0 =>
            {
                4
            }
            Entry::LinkMac { .. }
            | Entry::RemovedAddress { .. }
            | Entry::RemovedRoute { .. }
            | Entry::Sysctl { .. }
            | Entry::RemovedLocalRoute { .. } => 3,
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
            Entry::Macvtap { name, .. } => format!("macvtap {name}"),
            Entry::Ifb { name, .. } => format!("ifb {name}"),
            Entry::RateLimit {
                device,
                direction,
                rate,
                ..
            } => format!("{} limit {rate} on {device}", direction.as_str()),
            Entry::LinkMac { device, .. } => format!("MAC of {device}"),
            Entry::RemovedAddress {
                device, address, ..
            } => {
                format!(
                    "address {}/{} of {device}",
                    address.addr, address.prefix_len
                )
            }
            Entry::RemovedRoute { device, route, .. } => describe_route(route, device),
            Entry::AddedRoute { device, route, .. } => {
                format!("added {}", describe_route(route, device))
            }
            Entry::Sysctl { device, knob, .. } => {
                format!(
                    "sysctl {}",
                    knob.name(Some(device.as_str()).filter(|d| !d.is_empty()))
                )
            }
            Entry::AddedAddress {
                device, address, ..
            } => format!(
                "added address {}/{} on {device}",
                address.addr, address.prefix_len
            ),
            Entry::ProxyNeighbour { device, ip, .. } => format!("proxy neighbour {ip} on {device}"),
            Entry::RemovedLocalRoute {
                device, address, ..
            } => format!("local route of {} on {device}", address.addr),
            Entry::VfioBind {
                device,
                pci_address,
                ..
            } => {
                format!("vfio-pci binding of {device} ({pci_address})")
            }
        }
    }
}

/// "route DST via GW dev DEVICE".
fn describe_route(route: &Route, device: &str) -> String {
    let dst = match route.dst {
        Some(d) => format!("{d}/{}", route.dst_len),
        None if route.ipv6 => "default (IPv6)".into(),
        None => "default".into(),
    };
    match route.gateway {
        Some(gw) => format!("route {dst} via {gw} dev {device}"),
        None => format!("route {dst} dev {device}"),
    }
}

/// Why applying the journal stopped.
#[derive(Debug)]
pub struct ApplyError {
    /// How many entries were applied before the failure.
    pub applied: usize,
    pub entry: Box<Entry>,
    pub step: &'static str,
    pub error: std::io::Error,
}

fn nl_io(e: NlError) -> io::Error {
    e.into_io()
}

type StepError = (&'static str, io::Error);

/// An ingress qdisc add refused because the device has one (ingress or clsact, which
/// share the slot) is someone else's: say so; it is never shared, deleted or reused.
fn ingress_error(device: &str, e: NlError) -> io::Error {
    if e.errno == libc::EEXIST {
        return io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "an ingress (or clsact) qdisc already exists on {device}; sandbox-net does not share it"
            ),
        );
    }
    nl_io(e)
}

/// Apply one entry. A device's ifindex is recorded only once it carries our alias (the
/// mark undo proves ownership by); `made` is set as soon as it exists, so a failure after
/// its creation still counts it for the rollback (which then finds it by name).
fn apply_one(
    nl: &mut Netlink,
    entry: &mut Entry,
    alias: &str,
    known: &[(String, u32)],
    made: &mut bool,
) -> Result<(), StepError> {
    let index_of = |name: &str| -> Result<u32, StepError> {
        match known.iter().find(|(n, _)| n == name) {
            Some((_, i)) => Ok(*i),
            None => tap::ifindex_via(nl.as_fd(), name).map_err(|e| ("look up ifindex", e)),
        }
    };
    let resolved = |ifindex: &mut Option<u32>, device: &str| -> Result<u32, StepError> {
        let index = match ifindex {
            Some(i) => *i,
            None => index_of(device)?,
        };
        *ifindex = Some(index);
        Ok(index)
    };
    match entry {
        Entry::Tap {
            name,
            ifindex,
            queues,
            mtu,
            owner,
            mac,
            tx_queue_len,
        } => {
            tap::create_persistent(name, *queues, *owner).map_err(|e| ("create tap", e))?;
            *made = true;
            let index =
                tap::ifindex_via(nl.as_fd(), name).map_err(|e| ("look up tap ifindex", e))?;
            let owner = Some((alias, owner_group(alias)));
            let mac = mac.as_ref().map(|m| &m.as_bytes()[..]);
            link::set_mtu_up(nl, index, *mtu, mac, owner, *tx_queue_len)
                .map_err(|e| ("set tap mac, mtu, queue length and up", nl_io(e)))?;
            *ifindex = Some(index);
        }
        Entry::IngressQdisc { device, ifindex } => {
            let index = resolved(ifindex, device)?;
            tc::add_ingress(nl, index)
                .map_err(|e| ("add ingress qdisc", ingress_error(device, e)))?;
        }
        Entry::RedirectFilter {
            device,
            ifindex,
            target,
        } => {
            let index = resolved(ifindex, device)?;
            let to = index_of(target)?;
            tc::add_redirect(nl, index, to).map_err(|e| ("add redirect filter", nl_io(e)))?;
        }
        Entry::Macvtap {
            name,
            ifindex,
            parent,
            mac,
            mtu,
            tx_queue_len,
        } => {
            let new = link::NewMacvtap {
                name,
                parent: *parent,
                mac: mac.as_bytes(),
                mtu: *mtu,
                tx_queue_len: *tx_queue_len,
            };
            link::create_macvtap(nl, &new).map_err(|e| ("create macvtap", nl_io(e)))?;
            *made = true;
            let index = tap::ifindex(name).map_err(|e| ("look up macvtap ifindex", e))?;
            link::set_mtu_up(nl, index, 0, None, Some((alias, owner_group(alias))), None)
                .map_err(|e| ("set macvtap alias", nl_io(e)))?;
            *ifindex = Some(index);
        }
        Entry::Ifb { name, ifindex } => {
            link::create_ifb(nl, name).map_err(|e| ("create ifb", nl_io(e)))?;
            *made = true;
            let index = tap::ifindex(name).map_err(|e| ("look up ifb ifindex", e))?;
            link::set_mtu_up(nl, index, 0, None, Some((alias, owner_group(alias))), None)
                .map_err(|e| ("set ifb alias", nl_io(e)))?;
            *ifindex = Some(index);
        }
        Entry::RateLimit {
            device,
            ifindex,
            rate,
            ..
        } => {
            let index = resolved(ifindex, device)?;
            htb::add_limit(nl, index, *rate).map_err(|e| ("add HTB rate limit", nl_io(e)))?;
        }
        Entry::LinkMac {
            device,
            ifindex,
            replacement,
            ..
        } => {
            let index = resolved(ifindex, device)?;
            link::set_mac(nl, index, replacement.as_bytes()).map_err(|e| ("set MAC", nl_io(e)))?;
        }
        Entry::RemovedAddress {
            device,
            ifindex,
            address,
        } => {
            let index = resolved(ifindex, device)?;
            addr::delete(nl, index, address.addr, address.prefix_len)
                .map_err(|e| ("remove address", nl_io(e)))?;
        }
        Entry::RemovedRoute {
            device,
            ifindex,
            route,
        } => {
            let index = resolved(ifindex, device)?;
            route::delete(nl, route, index).map_err(|e| ("remove route", nl_io(e)))?;
        }
        Entry::Sysctl {
            device, ifindex, ..
        } if !device.is_empty() => {
            let index = resolved(ifindex, device)?;
            l3::apply(nl, entry, Some(index))?;
        }
        Entry::Sysctl { .. } => l3::apply(nl, entry, None)?,
        Entry::AddedAddress {
            device, ifindex, ..
        }
        | Entry::AddedRoute {
            device, ifindex, ..
        }
        | Entry::ProxyNeighbour {
            device, ifindex, ..
        }
        | Entry::RemovedLocalRoute {
            device, ifindex, ..
        } => {
            let index = resolved(ifindex, device)?;
            l3::apply(nl, entry, Some(index))?;
        }
        Entry::VfioBind {
            device,
            pci_address,
            sysfs_root,
            ..
        } => {
            let root = vfio_root(sysfs_root).map_err(|e| ("bind to vfio-pci", e))?;
            let object = format!("interface {device}");
            let writes = physical::plan_bind(&root, pci_address)
                .and_then(|w| physical::apply(&object, &w))
                .and_then(|()| physical::verify_bound(&root, pci_address, physical::VFIO_DRIVER));
            writes.map_err(|e| ("bind to vfio-pci", io::Error::other(e.to_string())))?;
        }
    }
    Ok(())
}

/// Create every object of `entries`, in order, filling in ifindexes as they become known.
/// Runs inside the netns. On failure nothing is undone here: the caller undoes
/// `entries[..applied]`.
pub fn apply(nl: &mut Netlink, entries: &mut [Entry], alias: &str) -> Result<(), ApplyError> {
    apply_at(nl, entries, alias, FailAt::NEVER)
}

/// [`apply`], with an injected failure before the entry `fail_at` names (a test hook: the
/// `failpoints` feature).
pub(crate) fn apply_at(
    nl: &mut Netlink,
    entries: &mut [Entry],
    alias: &str,
    fail_at: FailAt,
) -> Result<(), ApplyError> {
    let mut known: Vec<(String, u32)> = Vec::new();
    for (i, entry) in entries.iter_mut().enumerate() {
        if fail_at.hits(i) {
            return Err(ApplyError {
                applied: i,
                entry: Box::new(entry.clone()),
                step: "failpoint",
                error: std::io::Error::other("injected failure (failpoint)"),
            });
        }
        let mut made = false;
        if let Err((step, error)) = apply_one(nl, entry, alias, &known, &mut made) {
            // A tap that was created but not fully set up exists: count it, so it is undone
            // (found by name: its ifindex is recorded only once it carries our alias).
            // So is a VFIO binding that failed half-way (driver_override written, the
            // driver unbound): its undo restores whatever state it finds.
            let created = made || matches!(entry, Entry::VfioBind { .. });
            return Err(ApplyError {
                applied: if created { i + 1 } else { i },
                entry: Box::new(entry.clone()),
                step,
                error,
            });
        }
        // Devices created here and endpoint devices the plan already knows (from the scan)
        // are not looked up again.
        if let Some(index) = entry.ifindex()
            && !known.iter().any(|(n, _)| n == entry.device())
        {
            known.push((entry.device().to_string(), index));
        }
    }
    Ok(())
}

/// Why undoing one entry failed.
#[derive(Debug)]
pub struct UndoError {
    pub entry: Box<Entry>,
    pub error: io::Error,
}

fn gone(errno: i32) -> bool {
    // ENODEV / ENOENT / ESRCH: the device or object no longer exists; EINVAL: the kernel's
    // answer to deleting an ingress qdisc that is not there; EEXIST: a restored address or
    // route is already back.
    matches!(
        errno,
        libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EINVAL | libc::EEXIST
    )
}

/// The sysfs root to act on a VFIO entry under: this process's ([`physical::sysfs_root`]),
/// never a path read back from a state file. An entry recorded under another root (a
/// planted state, or one written by a process with another `--sysfs-root`) is refused:
/// nothing is written anywhere for it.
pub fn vfio_root(recorded: &Path) -> io::Result<PathBuf> {
    let root = physical::sysfs_root();
    if recorded != root {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "recorded under sysfs root {}, not this process's {}; refusing to write there",
                recorded.display(),
                root.display()
            ),
        ));
    }
    Ok(root)
}

/// Undo a VFIO binding: put the PCI device back on its original driver (host sysfs; no
/// netns involved).
fn undo_vfio(entry: &Entry) -> io::Result<()> {
    let Entry::VfioBind {
        pci_address,
        original_driver,
        sysfs_root,
        ..
    } = entry
    else {
        return Ok(());
    };
    let root = vfio_root(sysfs_root)?;
    physical::restore_driver(&root, pci_address, original_driver.as_deref())
        .map_err(|e| io::Error::other(e.to_string()))
}

/// Undo one entry on the device at `index`, proven ours (see [`ownership::verdict`]).
fn undo_one(nl: &mut Netlink, entry: &Entry, index: u32) -> io::Result<()> {
    let result = match entry {
        Entry::RedirectFilter { .. } => tc::del_redirect(nl, index),
        Entry::IngressQdisc { .. } => tc::del_ingress(nl, index),
        Entry::Tap { .. } | Entry::Macvtap { .. } | Entry::Ifb { .. } => link::delete(nl, index),
        Entry::RateLimit { .. } => htb::del_limit(nl, index),
        Entry::LinkMac { original, .. } => link::set_mac(nl, index, original.as_bytes()),
        Entry::RemovedAddress { address, .. } => addr::restore(nl, index, address),
        Entry::RemovedRoute { route, .. } => route::restore(nl, route, index),
        Entry::Sysctl { .. }
        | Entry::AddedAddress { .. }
        | Entry::AddedRoute { .. }
        | Entry::ProxyNeighbour { .. }
        | Entry::RemovedLocalRoute { .. } => return l3::undo(nl, entry, index),
        Entry::VfioBind { .. } => return undo_vfio(entry),
    };
    match result {
        Err(e) if gone(e.errno) => Ok(()),
        other => other.map_err(nl_io),
    }
}

/// For each entry, whether the change it records is in force in the kernel now: the
/// device, qdisc or filter exists; the MAC is the replacement; the address or route is
/// still removed; the PCI device is bound to vfio-pci. Runs inside the netns. Costs one
/// link, qdisc, address and route dump, plus one filter dump per filtered device.
pub fn in_force(nl: &mut Netlink, entries: &[Entry]) -> Result<Vec<bool>, (String, NlError)> {
    let links = link::dump(nl).map_err(|e| ("dump links".to_string(), e))?;
    in_force_among(nl, entries, &links)
}

/// One journalled object as `status` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// In force, and still ours.
    pub present: bool,
    /// Why the object at its place is not ours (see [`ownership::verdict`]).
    pub not_ours: Option<String>,
}

/// [`in_force`], with the ownership proof undo would make: an object in force on a device
/// that is not provably ours any more is reported as not ours, not as present. Costs the
/// same requests as [`in_force`]. Runs inside the netns (settings are read there).
pub fn check(
    nl: &mut Netlink,
    entries: &[Entry],
    owner: &Owner,
) -> Result<Vec<Checked>, (String, NlError)> {
    let links = link::dump(nl).map_err(|e| ("dump links".to_string(), e))?;
    let in_force = in_force_among(nl, entries, &links)?;
    Ok(entries
        .iter()
        .zip(in_force)
        .map(|(entry, present)| {
            if matches!(entry, Entry::VfioBind { .. }) {
                return Checked {
                    present,
                    not_ours: None,
                };
            }
            match ownership::verdict(entry, entries, &links, owner) {
                Verdict::Ours(_) => Checked {
                    present,
                    not_ours: None,
                },
                Verdict::Gone => Checked {
                    present: false,
                    not_ours: None,
                },
                Verdict::NotOurs(reason) => Checked {
                    present: false,
                    not_ours: Some(reason),
                },
            }
        })
        .collect())
}

fn in_force_among(
    nl: &mut Netlink,
    entries: &[Entry],
    links: &[link::Link],
) -> Result<Vec<bool>, (String, NlError)> {
    let step = |what: &str| {
        let what = what.to_string();
        move |e| (what, e)
    };
    let qdiscs = tc::dump_qdiscs(nl).map_err(step("dump qdiscs"))?;
    let addresses = addr::dump(nl).map_err(step("dump addresses"))?;
    let routes = route::dump(nl).map_err(step("dump routes"))?;
    // Only a journal with proxy neighbour entries (the l3 model's) pays for their dump.
    let proxies = if entries
        .iter()
        .any(|e| matches!(e, Entry::ProxyNeighbour { .. }))
    {
        crate::netlink::pneigh::dump(nl).map_err(step("dump proxy neighbours"))?
    } else {
        Vec::new()
    };
    let by_name = |name: &str| links.iter().find(|l| l.name == name);
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let link = by_name(entry.device()).filter(|l| entry.ifindex().is_none_or(|i| i == l.index));
        let present = match (entry, link) {
            (Entry::VfioBind { pci_address, .. }, _) => {
                physical::current_driver(&physical::sysfs_root(), pci_address)
                    .is_ok_and(|d| d.as_deref() == Some(physical::VFIO_DRIVER))
            }
            (
                Entry::Sysctl { .. }
                | Entry::AddedAddress { .. }
                | Entry::AddedRoute { .. }
                | Entry::ProxyNeighbour { .. }
                | Entry::RemovedLocalRoute { .. },
                link,
            ) => l3::in_force(entry, link, &addresses, &routes, &proxies),
            (_, None) => false,
            (Entry::Tap { .. }, Some(l)) => l.tun.is_some_and(|t| t.tap),
            (Entry::Macvtap { .. }, Some(l)) => l.kind.as_deref() == Some("macvtap"),
            (Entry::Ifb { .. }, Some(l)) => l.kind.as_deref() == Some("ifb"),
            (Entry::RateLimit { rate, .. }, Some(l)) => {
                htb::read_limit(nl, l.index)
                    .map_err(step(&format!("dump classes of {}", l.name)))?
                    == Some(rate.bytes_per_sec())
            }
            (Entry::IngressQdisc { .. }, Some(l)) => qdiscs
                .iter()
                .any(|q| q.ifindex == l.index && q.kind == "ingress"),
            (Entry::RedirectFilter { target, .. }, Some(l)) => {
                let target_index = by_name(target).map(|t| t.index);
                let filters = tc::dump_ingress_filters(nl, l.index)
                    .map_err(step(&format!("dump filters of {}", l.name)))?;
                filters.iter().any(|f| {
                    f.egress_redirect && f.match_all && Some(f.target) == Some(target_index)
                })
            }
            (Entry::LinkMac { replacement, .. }, Some(l)) => {
                l.mac.as_deref().and_then(MacAddr::from_slice) == Some(*replacement)
            }
            (Entry::RemovedAddress { address, .. }, Some(l)) => !addresses
                .iter()
                .any(|a| a.ifindex == l.index && a.addr == address.addr),
            (Entry::RemovedRoute { route, .. }, Some(l)) => !routes.iter().any(|r| {
                r.oif == Some(l.index)
                    && r.dst == route.dst
                    && r.dst_len == route.dst_len
                    && r.gateway == route.gateway
                    && r.table == route.table
            }),
        };
        out.push(present);
    }
    Ok(out)
}

/// Delete `devices` (the devices of the undo proven ours, with their ifindex) with one
/// request, when the sandbox's link group holds exactly them, all carrying its alias.
/// Returns the ifindexes deleted; empty when it did not apply (fewer than two devices,
/// another device in the group), in which case they are deleted one by one. `links` is
/// the undo's one dump.
fn delete_devices_together(
    nl: &mut Netlink,
    devices: &[u32],
    links: &[link::Link],
    alias: &str,
) -> Vec<u32> {
    if devices.len() < 2 {
        return Vec::new();
    }
    let group = owner_group(alias);
    let members: Vec<&link::Link> = links.iter().filter(|l| l.group == group).collect();
    let exact = members.len() == devices.len()
        && members
            .iter()
            .all(|l| l.alias.as_deref() == Some(alias) && devices.contains(&l.index));
    if !exact {
        return Vec::new();
    }
    match link::delete_group(nl, group) {
        Ok(()) => devices.to_vec(),
        Err(e) => {
            tracing::debug!(
                errno = e.errno,
                "group delete failed; deleting devices one by one"
            );
            Vec::new()
        }
    }
}

/// What an undo did not touch, because it was not provably ours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Undone {
    pub left_alone: Vec<LeftAlone>,
}

/// Undo `entries` (a journal, in creation order): in reverse, grouped so that every filter
/// goes before every qdisc and every qdisc before every device. Runs inside the netns.
/// Before anything is touched, one link dump proves each object ours or not (see
/// [`ownership::verdict`]); what is not is left alone and returned, named. Keeps going
/// after a failure and reports the first one.
pub fn undo(nl: &mut Netlink, entries: &[Entry], owner: &Owner) -> Result<Undone, UndoError> {
    undo_at(nl, entries, owner, FailAt::NEVER)
}

/// [`undo`], stopping with an injected failure before the `fail_at`-th entry in teardown
/// order (a test hook: the `failpoints` feature): what a process killed halfway through a
/// detach leaves.
#[cfg(feature = "failpoints")]
pub fn undo_with_failpoint(
    nl: &mut Netlink,
    entries: &[Entry],
    owner: &Owner,
    fail_at: Option<usize>,
) -> Result<Undone, UndoError> {
    undo_at(nl, entries, owner, FailAt::before(fail_at))
}

/// [`undo`], stopping before the entry `fail_at` names.
pub(crate) fn undo_at(
    nl: &mut Netlink,
    entries: &[Entry],
    owner: &Owner,
    fail_at: FailAt,
) -> Result<Undone, UndoError> {
    let mut order: Vec<&Entry> = entries.iter().rev().collect();
    order.sort_by_key(|e| e.phase());
    let links = match order.iter().find(|e| !matches!(e, Entry::VfioBind { .. })) {
        None => Vec::new(),
        Some(first) => link::dump(nl).map_err(|e| {
            let e = e.into_io();
            UndoError {
                entry: Box::new((*first).clone()),
                error: io::Error::new(e.kind(), format!("dump links to prove what is ours: {e}")),
            }
        })?,
    };
    let mut verdicts: Vec<Option<Verdict>> = order
        .iter()
        .map(|e| {
            (!matches!(e, Entry::VfioBind { .. }))
                .then(|| ownership::verdict(e, entries, &links, owner))
        })
        .collect();
    l3::refine(nl, &order, &mut verdicts)?;
    let ours_devices: Vec<u32> = order
        .iter()
        .zip(&verdicts)
        .filter_map(|(e, v)| match v {
            Some(Verdict::Ours(index)) if e.creates_device() => Some(*index),
            _ => None,
        })
        .collect();
    let mut grouped: Option<Vec<u32>> = None;
    let mut undone = Undone::default();
    let mut failures = FirstFailure::default();
    for (i, (entry, verdict)) in order.into_iter().zip(verdicts).enumerate() {
        if fail_at.hits(i) {
            return Err(UndoError {
                entry: Box::new(entry.clone()),
                error: io::Error::other("injected failure (failpoint)"),
            });
        }
        let result = match verdict {
            None => undo_vfio(entry),
            Some(Verdict::Gone) => Ok(()),
            Some(Verdict::NotOurs(reason)) => {
                tracing::warn!(object = %entry.describe(), %reason, "not ours any more; left alone");
                undone.left_alone.push(LeftAlone {
                    object: entry.describe(),
                    reason,
                });
                Ok(())
            }
            Some(Verdict::Ours(index)) => {
                // The first device to go takes the others with it when they are exactly
                // the sandbox's link group (filters and qdiscs are already gone by then).
                if entry.creates_device() && !fail_at.is_set() && grouped.is_none() {
                    grouped = Some(delete_devices_together(
                        nl,
                        &ours_devices,
                        &links,
                        &owner.alias,
                    ));
                }
                if entry.creates_device() && grouped.as_ref().is_some_and(|g| g.contains(&index)) {
                    Ok(())
                } else {
                    undo_one(nl, entry, index)
                }
            }
        };
        failures.note(entry, result);
    }
    failures.or(undone)
}

/// Undo only what lives outside the netns (VFIO bindings, in host sysfs), in reverse: what
/// is still owed when the netns is gone or replaced (its own objects went with it, and
/// nothing in a new one may be touched). Returns what was undone; keeps going after a
/// failure and reports the first one.
pub fn undo_outside(entries: &[Entry]) -> Result<Vec<String>, UndoError> {
    let mut restored = Vec::new();
    let mut failures = FirstFailure::default();
    for entry in entries
        .iter()
        .rev()
        .filter(|e| matches!(e, Entry::VfioBind { .. }))
    {
        if failures.note(entry, undo_vfio(entry)) {
            restored.push(entry.describe());
        }
    }
    failures.or(restored)
}

/// The first failure of an undo that keeps going after one; each is logged.
#[derive(Default)]
struct FirstFailure(Option<UndoError>);

impl FirstFailure {
    /// Note how undoing `entry` went; true when it went well.
    fn note(&mut self, entry: &Entry, result: io::Result<()>) -> bool {
        let Err(error) = result else {
            return true;
        };
        tracing::warn!(object = %entry.describe(), %error, "undo failed");
        self.0.get_or_insert(UndoError {
            entry: Box::new(entry.clone()),
            error,
        });
        false
    }

    /// The first failure, else `value`.
    fn or<T>(self, value: T) -> Result<T, UndoError> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vfio_entry_is_acted_on_only_under_the_process_sysfs_root() {
        let own = physical::sysfs_root();
        assert_eq!(vfio_root(&own).ok(), Some(own.clone()));
        let planted = Path::new("/tmp/planted-sysfs");
        let err = vfio_root(planted).map_err(|e| e.to_string());
        let err = err.err().unwrap_or_default();
        assert!(
            err.contains("recorded under sysfs root /tmp/planted-sysfs")
                && err.contains(&format!("not this process's {}", own.display())),
            "{err}"
        );
    }

    #[test]
    fn phases_put_filters_before_qdiscs_before_devices() {
        let entries = [
            Entry::Tap {
                name: "tap0".into(),
                ifindex: Some(5),
                queues: 1,
                mtu: 1500,
                owner: tap::TapOwner::default(),
                mac: None,
                tx_queue_len: None,
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
                mac: None,
                tx_queue_len: None,
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
