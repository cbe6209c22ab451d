//! Interworking models: how an endpoint's traffic is carried to the VM, and the plan (the
//! journal entries) that builds it for each endpoint kind.

pub mod macvtap;
pub mod tcfilter;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::endpoint::{Candidate, EndpointKind, is_link_local_v6};
use crate::journal::{Direction, Entry};
use crate::rate::Rate;
use crate::scan::Snapshot;
use crate::state::Endpoint;
use crate::tap::TapOwner;
use crate::{Error, physical};

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
}

impl Model {
    pub const NAMES: &'static [&'static str] = &["tcfilter", "macvtap", "none"];

    pub fn as_str(self) -> &'static str {
        match self {
            Model::Tcfilter => "tcfilter",
            Model::Macvtap => "macvtap",
            Model::None => "none",
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
/// its addresses.
fn vhost_user_socket(ctx: &PlanContext<'_>, c: &Candidate) -> Option<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let dir = ctx.vhost_user_dir?;
    ctx.snapshot
        .addresses_of(c.link.index)
        .filter(|a| !is_link_local_v6(&a.addr))
        .map(|a| dir.join(a.addr.to_string()).join("vhu.sock"))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket()))
}

/// Plan one endpoint: the endpoint as reported to the VMM, and the journal entries that
/// build it. `slot` numbers the devices sandbox-net creates (tap<slot>_sn, mvtap<slot>_sn)
/// unless `device_name` is given. Errors are the reason the endpoint can't be attached.
pub fn plan_endpoint(
    ctx: &PlanContext<'_>,
    c: &Candidate,
    slot: usize,
    device_name: Option<&str>,
) -> Result<(Endpoint, Vec<Entry>), String> {
    let mut endpoint = Endpoint::new(&c.link, c.kind, ctx.queues);
    if let Some(socket) = vhost_user_socket(ctx, c) {
        endpoint.queues = 1;
        endpoint.vhost_user_socket = Some(socket);
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
        |prefix: &str| device_name.map_or_else(|| format!("{prefix}{slot}_sn"), String::from);
    match (c.kind, ctx.model) {
        (EndpointKind::Tun, _) => Err(
            "is a tun device (layer 3, no Ethernet frames); a VM needs a tap-mode device".into(),
        ),
        (EndpointKind::Tap, _) => {
            // Handed over as it is: the VMM opens the existing tap.
            let multi_queue = c.link.tun.is_some_and(|t| t.multi_queue);
            endpoint.queues = if multi_queue { ctx.queues } else { 1 };
            endpoint.tap = c.link.name.clone();
            Ok((endpoint, Vec::new()))
        }
        (EndpointKind::Macvtap, _) => {
            // Handed over through its character device.
            endpoint.tap = c.link.name.clone();
            let (major, minor) = crate::macvtap::chardev(&c.link.name, c.link.index)
                .map_err(|e| format!("reading its character device: {e}"))?;
            endpoint.chardev = Some(format!("{major}:{minor}"));
            Ok((endpoint, Vec::new()))
        }
        (EndpointKind::Physical, _) => plan_physical(ctx, c, endpoint),
        (EndpointKind::Ipvlan, Model::Macvtap) => Err(
            "an ipvlan can't carry a macvtap (it has no MAC of its own); use model tcfilter".into(),
        ),
        (_, Model::Macvtap) => {
            let device = name("mvtap");
            endpoint.tap = device.clone();
            let mut entries = macvtap::entries(ctx.snapshot, &c.link, &device)?;
            let ifb = crate::ops::ifb_name(c.link.index);
            entries.extend(rate_entries(ctx, &c.link.name, &device, Some(&ifb)));
            if ctx.rx_rate.is_some() {
                endpoint.ifb = Some(ifb);
            }
            Ok((endpoint, entries))
        }
        (_, Model::Tcfilter | Model::None) => {
            let device = name("tap");
            endpoint.tap = device.clone();
            let mut entries = tcfilter::entries(&c.link, &device, ctx.queues, ctx.tap_owner);
            entries.extend(rate_entries(ctx, &c.link.name, &device, None));
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
    endpoint.pci_address = Some(nic.pci_address.clone());
    endpoint.vfio_group = Some(Path::new(physical::VFIO_DEV_DIR).join(group));
    let entry = Entry::VfioBind {
        device: c.link.name.clone(),
        pci_address: nic.pci_address,
        original_driver: nic.driver,
        sysfs_root: ctx.sysfs_root.to_path_buf(),
    };
    Ok((endpoint, vec![entry]))
}

/// Plan `candidates` in order. Devices sandbox-net creates are numbered with the lowest
/// slots not used by `existing` endpoints; `device_names[i]` names candidate i's device.
/// An endpoint that can't be attached is an error naming it.
pub fn plan_all(
    ctx: &PlanContext<'_>,
    candidates: &[Candidate],
    existing: &[Endpoint],
    device_names: &[String],
) -> Result<(Vec<Endpoint>, Vec<Entry>), (String, String)> {
    let taken = |slot: usize| {
        existing
            .iter()
            .any(|e| e.tap == format!("tap{slot}_sn") || e.tap == format!("mvtap{slot}_sn"))
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
