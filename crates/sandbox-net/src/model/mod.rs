//! Interworking models: how an endpoint's traffic is carried to the VM, and the plan (the
//! journal entries) that builds it for each endpoint kind.

pub mod l3;
pub mod macvtap;
pub mod tcfilter;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::endpoint::{Backend, Candidate, Endpoint, EndpointKind, is_link_local_v6};
use crate::journal::{Direction, Entry};
use crate::rate::Rate;
use crate::scan::Snapshot;
use crate::tap::TapOwner;
use crate::{Error, names, physical};

/// The interworking model of an attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    /// A tap per endpoint, joined to it by two tc u32 match-all mirred redirect filters.
    Tcfilter,
    /// A bridge-mode macvtap on each endpoint, taking over its MAC; the endpoint's
    /// addresses and routes are removed while attached and restored on detach.
    Macvtap,
    /// No plumbing: the interfaces are recorded and described to the guest only.
    None,
    /// A tap per endpoint; the pod's own stack routes between them (see [`l3`]).
    L3,
}

impl Model {
    /// The names `--model` takes.
    pub const NAMES: &'static [&'static str] = &["tcfilter", "macvtap", "none", "l3"];

    /// The model's name, as `--model` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Model::Tcfilter => "tcfilter",
            Model::Macvtap => "macvtap",
            Model::None => "none",
            Model::L3 => "l3",
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Model {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "tcfilter" => Ok(Model::Tcfilter),
            "macvtap" => Ok(Model::Macvtap),
            "none" => Ok(Model::None),
            "l3" => Ok(Model::L3),
            other => Err(Error::invalid(
                format!("model {other:?}"),
                format!("unknown model (known: {})", Model::NAMES.join(", ")),
            )),
        }
    }
}

/// What planning an endpoint needs besides the endpoint itself.
#[derive(Debug, Clone)]
pub struct PlanContext<'a> {
    pub model: Model,
    pub snapshot: &'a Snapshot,
    pub queues: u32,
    /// The queue length (`txqueuelen`) of the taps and macvtaps created.
    pub tap_queue_len: u32,
    pub tap_owner: TapOwner,
    /// Where PCI devices are bound and unbound (normally /sys).
    pub sysfs_root: &'a Path,
    /// A sysfs view of the netns's own interfaces (for finding a NIC's PCI device).
    pub net_sysfs_root: &'a Path,
    /// Interfaces with a socket at `DIR/<address>/vhu.sock` are vhost-user endpoints.
    pub vhost_user_dir: Option<&'a Path>,
    /// Rate limits toward (rx) and from (tx) the guest.
    pub rx_rate: Option<Rate>,
    pub tx_rate: Option<Rate>,
}

/// The vhost-user socket of an endpoint, if the configured directory has one for any of
/// its addresses (see [`crate::vhost_user::find`]); Err: why what is there is refused.
fn vhost_user_socket(ctx: &PlanContext<'_>, c: &Candidate) -> Result<Option<PathBuf>, String> {
    let Some(dir) = ctx.vhost_user_dir else {
        return Ok(None);
    };
    for a in ctx.snapshot.addresses_of(c.link.index) {
        if is_link_local_v6(&a.addr) {
            continue;
        }
        if let Some(socket) = crate::vhost_user::find(dir, &a.addr)? {
            return Ok(Some(socket));
        }
    }
    Ok(None)
}

/// Plan one endpoint: the endpoint as reported to the VMM, and the journal entries that
/// build it. `slot` numbers the devices sandbox-net creates (`tap<slot>_sn`, `mvtap<slot>_sn`)
/// unless `device_name` is given. Errors are the reason the endpoint can't be attached.
pub fn plan_endpoint(
    ctx: &PlanContext<'_>,
    c: &Candidate,
    slot: usize,
    device_name: Option<&str>,
) -> Result<(Endpoint, Vec<Entry>), String> {
    let mut endpoint = Endpoint::new(&c.link, c.kind, ctx.queues);
    if let Some(socket) = vhost_user_socket(ctx, c)? {
        endpoint.queues = 1;
        endpoint.backend = Backend::VhostUser { socket };
        return Ok((endpoint, Vec::new()));
    }
    if ctx.model == Model::None {
        endpoint.queues = 0;
        return Ok((endpoint, Vec::new()));
    }
    let limited = ctx.rx_rate.is_some() || ctx.tx_rate.is_some();
    let plumbed = matches!(
        c.kind,
        EndpointKind::Veth | EndpointKind::Macvlan | EndpointKind::Vlan | EndpointKind::Ipvlan
    );
    if limited && !plumbed {
        return Err(format!(
            "rate limits need an endpoint sandbox-net plumbs itself (veth, macvlan, vlan, ipvlan); a {} is handed over as it is",
            c.kind.as_str()
        ));
    }
    let name =
        |default: fn(usize) -> String| device_name.map_or_else(|| default(slot), String::from);
    match (c.kind, ctx.model) {
        (EndpointKind::Tun, _) => Err(
            "is a tun device (layer 3, no Ethernet frames); a VM needs a tap-mode device".into(),
        ),
        (EndpointKind::Tap, _) => {
            // Handed over as it is: the VMM opens the existing tap. A multi-queue tap can
            // only be opened with IFF_MULTI_QUEUE, which a VMM sets when queues > 1: report
            // at least 2 for one, or a VMM following the contract gets EINVAL.
            let multi_queue = c.link.tun.is_some_and(|t| t.multi_queue);
            endpoint.queues = if multi_queue { ctx.queues.max(2) } else { 1 };
            endpoint.backend = Backend::Tap {
                name: c.link.name.clone(),
                mac: endpoint.mac,
            };
            Ok((endpoint, Vec::new()))
        }
        (EndpointKind::Macvtap, _) => {
            // Handed over through its character device.
            let (major, minor) = crate::macvtap::chardev(&c.link.name, c.link.index)
                .map_err(|e| format!("reading its character device: {e}"))?;
            endpoint.backend = Backend::Macvtap {
                name: c.link.name.clone(),
                mac: endpoint.mac,
                chardev: Some(format!("{major}:{minor}")),
            };
            Ok((endpoint, Vec::new()))
        }
        (EndpointKind::Physical, _) => plan_physical(ctx, c, endpoint),
        (EndpointKind::Ipvlan, Model::Macvtap) => Err(
            "an ipvlan can't carry a macvtap (it has no MAC of its own); use model tcfilter".into(),
        ),
        (_, Model::Macvtap) => {
            let device = name(names::macvtap);
            let mut entries = macvtap::entries(ctx.snapshot, &c.link, &device, ctx.tap_queue_len)?;
            let ifb = names::ifb(c.link.index);
            entries.extend(rate_entries(ctx, &c.link.name, &device, Some(&ifb)));
            if ctx.rx_rate.is_some() {
                endpoint.ifb = Some(ifb);
            }
            // The macvtap takes over the interface's MAC; its character device is known
            // once it exists.
            endpoint.backend = Backend::Macvtap {
                name: device,
                mac: endpoint.mac,
                chardev: None,
            };
            Ok((endpoint, entries))
        }
        (_, Model::Tcfilter | Model::None | Model::L3) => {
            let device = name(names::tap);
            let tap_mac = macvtap::random_mac()?;
            let tap = tcfilter::NewTap {
                name: &device,
                mac: tap_mac,
                queues: ctx.queues,
                queue_len: ctx.tap_queue_len,
                owner: ctx.tap_owner,
            };
            let mut entries = if ctx.model == Model::L3 {
                l3::entries(ctx.snapshot, &c.link, tcfilter::tap_entry(&c.link, &tap))?
            } else {
                tcfilter::entries(&c.link, &tap)
            };
            entries.extend(rate_entries(ctx, &c.link.name, &device, None));
            endpoint.backend = Backend::Tap {
                name: device,
                mac: Some(tap_mac),
            };
            Ok((endpoint, entries))
        }
    }
}

/// The rate-limit entries of an endpoint `iface` whose VMM-side device is `vmm_device`.
///
/// tcfilter (`ifb` None): frames toward the guest leave through the tap's egress (rx: HTB
/// on the tap); frames from the guest are redirected to the endpoint's egress (tx: HTB on
/// the endpoint). macvtap (`ifb` Some): frames from the guest leave through the macvtap's
/// egress (tx: HTB on the macvtap); frames toward the guest are handed to the macvtap's
/// queues without passing any egress qdisc, but they do pass its ingress hook, so they are
/// redirected there into a per-endpoint IFB whose egress carries the HTB (rx).
pub fn rate_entries(
    ctx: &PlanContext<'_>,
    iface: &str,
    vmm_device: &str,
    ifb: Option<&str>,
) -> Vec<Entry> {
    let limit = |device: &str, direction, rate| Entry::RateLimit {
        device: device.to_string(),
        ifindex: None,
        direction,
        rate,
    };
    let mut entries = Vec::new();
    match ifb {
        None => {
            if let Some(rate) = ctx.rx_rate {
                entries.push(limit(vmm_device, Direction::Rx, rate));
            }
            if let Some(rate) = ctx.tx_rate {
                entries.push(limit(iface, Direction::Tx, rate));
            }
        }
        Some(ifb) => {
            if let Some(rate) = ctx.tx_rate {
                entries.push(limit(vmm_device, Direction::Tx, rate));
            }
            if let Some(rate) = ctx.rx_rate {
                entries.push(Entry::Ifb {
                    name: ifb.to_string(),
                    ifindex: None,
                });
                entries.push(Entry::IngressQdisc {
                    device: vmm_device.to_string(),
                    ifindex: None,
                });
                entries.push(Entry::RedirectFilter {
                    device: vmm_device.to_string(),
                    ifindex: None,
                    target: ifb.to_string(),
                });
                entries.push(limit(ifb, Direction::Rx, rate));
            }
        }
    }
    entries
}

fn plan_physical(
    ctx: &PlanContext<'_>,
    c: &Candidate,
    mut endpoint: Endpoint,
) -> Result<(Endpoint, Vec<Entry>), String> {
    let nic = physical::detect_in(ctx.net_sysfs_root, ctx.sysfs_root, &c.link.name)
        .map_err(|e| e.to_string())?
        .ok_or("has no link kind and no PCI device behind it; it can't be attached")?;
    let group = nic.iommu_group.as_deref().ok_or_else(|| {
        format!(
            "PCI device {} has no IOMMU group (is the IOMMU on?)",
            nic.pci_address
        )
    })?;
    endpoint.queues = 1;
    endpoint.backend = Backend::Vfio {
        pci_address: nic.pci_address.clone(),
        group: Path::new(physical::VFIO_DEV_DIR).join(group),
    };
    let entry = Entry::VfioBind {
        device: c.link.name.clone(),
        pci_address: nic.pci_address,
        original_driver: nic.driver,
        sysfs_root: ctx.sysfs_root.to_path_buf(),
    };
    Ok((endpoint, vec![entry]))
}

/// Plan `candidates` in order. Devices sandbox-net creates are numbered with the lowest
/// slots whose name (the model's device: `tapN_sn`, or `mvtapN_sn` under the macvtap
/// model) is free in the netns: not used by `existing` endpoints, not a link
/// of the snapshot, and no device of that name in the calling thread's netns (planning
/// runs inside it), so that two sandboxes of one netns (`attach --id a --iface eth0`, then
/// `--id b --iface eth1`) get different taps. `device_names[i]` names candidate i's
/// device. An endpoint that can't be attached is an error naming it.
pub fn plan_all(
    ctx: &PlanContext<'_>,
    candidates: &[Candidate],
    existing: &[Endpoint],
    device_names: &[String],
) -> Result<(Vec<Endpoint>, Vec<Entry>), (String, String)> {
    // The name of slot N is the one device this model creates there: a tap, or under the
    // macvtap model a macvtap (other endpoints of the slot create nothing of ours).
    let slot_name = |slot: usize| match ctx.model {
        Model::Macvtap => names::macvtap(slot),
        _ => names::tap(slot),
    };
    let taken = |slot: usize| {
        let n = slot_name(slot);
        existing.iter().any(|e| e.device() == Some(n.as_str()))
            || ctx.snapshot.links.iter().any(|l| l.name == n)
            // One SIOCGIFINDEX, not a netlink request: the snapshot may hold only the
            // named interfaces.
            || crate::tap::ifindex(&n).is_ok()
    };
    let mut endpoints = Vec::with_capacity(candidates.len());
    let mut journal = Vec::new();
    let mut slot = 0;
    for (i, c) in candidates.iter().enumerate() {
        while taken(slot) {
            slot += 1;
        }
        let (endpoint, entries) =
            plan_endpoint(ctx, c, slot, device_names.get(i).map(String::as_str))
                .map_err(|reason| (c.link.name.clone(), reason))?;
        if !entries.is_empty() {
            slot += 1;
        }
        endpoints.push(endpoint);
        journal.extend(entries);
    }
    Ok((endpoints, journal))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::addr::Address;
    use crate::netlink::link::{Link, TunDetails};

    fn link(index: u32, name: &str, kind: Option<&str>) -> Link {
        Link {
            mtu: 1400,
            ..Link::test(index, name, kind)
        }
    }

    fn snapshot(links: Vec<Link>) -> Snapshot {
        let addresses = links
            .iter()
            .map(|l| Address {
                ifindex: l.index,
                addr: format!("10.0.{}.2", l.index).parse().unwrap(),
                prefix_len: 24,
                scope: 0,
                flags: 0x80,
                broadcast: None,
            })
            .collect();
        Snapshot {
            links,
            addresses,
            ..Snapshot::default()
        }
    }

    fn ctx(snapshot: &Snapshot, model: Model) -> PlanContext<'_> {
        PlanContext {
            model,
            snapshot,
            queues: 3,
            tap_queue_len: crate::tap::DEFAULT_QUEUE_LEN,
            tap_owner: TapOwner::default(),
            sysfs_root: Path::new("/nonexistent"),
            net_sysfs_root: Path::new("/nonexistent"),
            vhost_user_dir: None,
            rx_rate: None,
            tx_rate: None,
        }
    }

    fn candidate(l: &Link) -> Candidate {
        let crate::endpoint::Class::Endpoint(kind) = crate::endpoint::classify(l) else {
            panic!("{l:?} is not an endpoint");
        };
        Candidate {
            link: l.clone(),
            kind,
        }
    }

    fn described(entries: &[Entry]) -> Vec<String> {
        entries.iter().map(Entry::describe).collect()
    }

    #[test]
    fn ipvlan_and_vlan_plan_a_tap_under_tcfilter() {
        for (name, kind) in [("ipv0", "ipvlan"), ("eth0.100", "vlan")] {
            let l = link(4, name, Some(kind));
            let snap = snapshot(vec![l.clone()]);
            let (ep, entries) =
                plan_endpoint(&ctx(&snap, Model::Tcfilter), &candidate(&l), 0, None).unwrap();
            assert_eq!(ep.kind.as_str(), kind);
            assert_eq!((ep.device(), ep.queues, ep.mtu), (Some("tap0_sn"), 3, 1400));
            assert_eq!(
                ep.mac.map(|m| m.to_string()).as_deref(),
                Some("02:00:00:00:00:04")
            );
            assert_eq!(
                described(&entries),
                vec![
                    "tap tap0_sn".to_string(),
                    "ingress qdisc on tap0_sn".into(),
                    format!("ingress qdisc on {name}"),
                    format!("redirect filter {name} -> tap0_sn"),
                    format!("redirect filter tap0_sn -> {name}"),
                ]
            );
        }
    }

    #[test]
    fn ipvlan_is_refused_under_macvtap_but_vlan_is_not() {
        let l = link(4, "ipv0", Some("ipvlan"));
        let snap = snapshot(vec![l.clone()]);
        let err = plan_endpoint(&ctx(&snap, Model::Macvtap), &candidate(&l), 0, None).unwrap_err();
        assert!(err.contains("ipvlan") && err.contains("tcfilter"), "{err}");
        let (iface, _) =
            plan_all(&ctx(&snap, Model::Macvtap), &[candidate(&l)], &[], &[]).unwrap_err();
        assert_eq!(iface, "ipv0");

        let l = link(5, "eth0.100", Some("vlan"));
        let snap = snapshot(vec![l.clone()]);
        let (ep, entries) =
            plan_endpoint(&ctx(&snap, Model::Macvtap), &candidate(&l), 0, None).unwrap();
        assert_eq!(ep.device(), Some("mvtap0_sn"));
        assert_eq!(
            described(&entries),
            vec![
                "address 10.0.5.2/24 of eth0.100",
                "MAC of eth0.100",
                "macvtap mvtap0_sn"
            ]
        );
    }

    #[test]
    fn handed_over_devices_and_model_none() {
        let mut tun = link(6, "tun0", Some("tun"));
        tun.tun = Some(TunDetails::default());
        let mut tap = link(7, "vmtap0", Some("tun"));
        tap.tun = Some(TunDetails {
            tap: true,
            ..TunDetails::default()
        });
        let mut mq = tap.clone();
        mq.index = 8;
        mq.name = "vmtap1".into();
        mq.tun = Some(TunDetails {
            tap: true,
            multi_queue: true,
            ..TunDetails::default()
        });
        let snap = snapshot(vec![tun.clone(), tap.clone(), mq.clone()]);
        for model in [Model::Tcfilter, Model::Macvtap] {
            let c = ctx(&snap, model);
            let err = plan_endpoint(&c, &candidate(&tun), 0, None).unwrap_err();
            assert!(
                err.contains("tun device") && err.contains("layer 3"),
                "{err}"
            );
            let (ep, entries) = plan_endpoint(&c, &candidate(&tap), 0, None).unwrap();
            assert_eq!((ep.device(), ep.queues), (Some("vmtap0"), 1));
            assert!(entries.is_empty());
            let (ep, entries) = plan_endpoint(&c, &candidate(&mq), 0, None).unwrap();
            assert_eq!((ep.device(), ep.queues), (Some("vmtap1"), 3));
            assert!(entries.is_empty());
            // A multi-queue tap needs IFF_MULTI_QUEUE, which a VMM sets for queues > 1.
            let mut one = c.clone();
            one.queues = 1;
            let (ep, _) = plan_endpoint(&one, &candidate(&mq), 0, None).unwrap();
            assert_eq!(ep.queues, 2);
        }
        let veth = link(2, "eth0", Some("veth"));
        let snap = snapshot(vec![veth.clone()]);
        let (ep, entries) =
            plan_endpoint(&ctx(&snap, Model::None), &candidate(&veth), 0, None).unwrap();
        assert_eq!((ep.device(), ep.queues), (None, 0));
        assert!(entries.is_empty());
    }

    #[test]
    fn slots_are_the_lowest_free_and_only_created_devices_take_one() {
        let mut tap = link(7, "vmtap0", Some("tun"));
        tap.tun = Some(TunDetails {
            tap: true,
            ..TunDetails::default()
        });
        let links = vec![
            link(2, "eth1", Some("veth")),
            tap.clone(),
            link(3, "eth3", Some("veth")),
            link(4, "eth4", Some("veth")),
        ];
        let snap = snapshot(links.clone());
        let tap = |name: &str| Backend::Tap {
            name: name.into(),
            mac: None,
        };
        let mut existing = Endpoint::new(&links[0], EndpointKind::Veth, 1);
        existing.backend = tap("tap0_sn");
        let mut existing2 = existing.clone();
        existing2.backend = tap("tap2_sn");
        let candidates: Vec<Candidate> = links.iter().map(candidate).collect();
        let (eps, _) = plan_all(
            &ctx(&snap, Model::Tcfilter),
            &candidates,
            &[existing, existing2],
            &[],
        )
        .unwrap();
        let taps: Vec<&str> = eps.iter().filter_map(Endpoint::device).collect();
        assert_eq!(taps, vec!["tap1_sn", "vmtap0", "tap3_sn", "tap4_sn"]);
    }

    #[test]
    fn unknown_models_are_refused() {
        for name in Model::NAMES {
            assert_eq!(name.parse::<Model>().unwrap().as_str(), *name);
        }
        for bad in ["bogus", "", "TCFILTER", "macvtap "] {
            let err = bad.parse::<Model>().unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }
}
