//! Static attachments (`attach --config FILE`): devices that live in no container netns
//! (an existing tap, a vhost-user socket, a PCI device for VFIO) recorded through the same
//! state, journal, status, detach and guest-config paths as a netns attachment.
//!
//! A static state has an empty `netns_path` (see [`State::is_static`]); its `netns_id` is
//! the caller's netns at attach time, where its taps are. Nothing is created: taps and
//! sockets are handed over as they are; only VFIO bindings are journalled (and undone by
//! detach).

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::attach::Attachment;
use super::transaction;
use crate::endpoint::{self, Endpoint, EndpointKind};
use crate::failpoint::FailAt;
use crate::guest::{GuestConfig, GuestInterface};
use crate::journal::{self, Entry};
use crate::model::Model;
use crate::netlink::Netlink;
use crate::netlink::link::{self, Link};
use crate::netns::NsId;
use crate::state::{self, Phase, Settings, State, StateDir};
use crate::static_config::{self, Backend, Device, StaticConfig};
use crate::{Error, Result, physical};

/// What to attach statically, and where to record it.
#[derive(Debug, Clone)]
pub struct StaticOptions {
    /// The static configuration file (its schema: docs/static.md).
    pub config: PathBuf,
    /// The sandbox id.
    pub id: String,
    /// The state directory.
    pub state_dir: PathBuf,
    /// Nameservers for the guest, kept in the state for `guest-config`.
    pub dns: Vec<std::net::IpAddr>,
}

impl StaticOptions {
    /// Options for attaching the static configuration file `config` as sandbox `id`.
    pub fn new(config: impl Into<PathBuf>, id: impl Into<String>) -> StaticOptions {
        StaticOptions {
            config: config.into(),
            id: id.into(),
            state_dir: StateDir::resolve(None),
            dns: Vec::new(),
        }
    }
}

/// The default MTU of a device that does not say, other than a tap (which has its own).
const DEFAULT_MTU: u32 = 1500;

/// The identity of the calling thread's netns (where a static attachment's taps are).
pub(super) fn own_netns() -> Result<NsId> {
    crate::netns::own_id()
        .map_err(|e| Error::kernel("the caller's netns", "stat /proc/thread-self/ns/net", e))
}

/// Attach the devices of a static configuration file. Everything is checked (the file, then
/// that every device exists and is usable) before anything is changed; a failure while
/// binding a VFIO device rolls back what was bound and leaves no state.
pub fn attach_static(opts: &StaticOptions) -> Result<Attachment> {
    state::validate_id(&opts.id)?;
    let config = static_config::load(&opts.config)?;
    let mut nl = Netlink::open_here()
        .map_err(|e| Error::kernel("the caller's netns", "open netlink socket", e))?;
    let (endpoints, journal) = resolve(opts, &config, &mut nl)?;
    let guest = guest_of(&config, &endpoints);
    let here = own_netns()?;
    let store = StateDir::open(&opts.state_dir)?;
    let mut lock = store.lock_to_attach(&opts.id)?;
    if let Err(e) = refuse_claimed(opts, &store, &config) {
        lock.remove_on_release();
        return Err(e);
    }
    let mut state = State {
        detached_by_user: Vec::new(),
        version: state::STATE_VERSION,
        id: opts.id.clone(),
        netns: String::new(),
        netns_path: PathBuf::new(),
        netns_id: here,
        netns_cookie: None,
        model: Model::None,
        settings: Settings::default(),
        phase: Phase::Attaching,
        endpoints,
        guest: Some(guest),
        journal,
        dns: opts.dns.clone(),
    };
    store.create(&mut lock, &state)?;
    let finish = transaction::record_attached(&store, Some(&mut lock), 0, FailAt::NEVER);
    let object = format!("sandbox {}", state.id);
    match transaction::apply(&mut nl, &mut state, 0, &object, FailAt::NEVER, finish) {
        Ok(()) => {
            tracing::info!(id = %opts.id, endpoints = state.endpoints.len(), "attached statically");
            Ok(Attachment::from_state(&state, nl.requests()))
        }
        Err(failed) => {
            if !failed.kept {
                store.remove(&state.id)?;
                lock.remove_on_release();
            }
            Err(failed.error)
        }
    }
}

/// An error about one field of one entry of the file.
fn bad(opts: &StaticOptions, field: String, reason: impl Into<String>) -> Error {
    Error::invalid(
        format!("config {}", opts.config.display()),
        format!("{field}: {}", reason.into()),
    )
}

/// Check every device against this host and build the endpoints and the journal.
fn resolve(
    opts: &StaticOptions,
    config: &StaticConfig,
    nl: &mut Netlink,
) -> Result<(Vec<Endpoint>, Vec<Entry>)> {
    let needs_links = config
        .devices
        .iter()
        .any(|d| matches!(d.backend, Backend::Tap { .. }));
    let links = if needs_links {
        link::dump(nl)
            .map_err(|e| Error::kernel("the caller's netns", "dump links", e.into_io()))?
    } else {
        Vec::new()
    };
    let mut endpoints = Vec::new();
    let mut journal = Vec::new();
    let sysfs_root = physical::sysfs_root();
    for d in &config.devices {
        let mut ep = Endpoint {
            name: d.name.clone(),
            kind: EndpointKind::Tap,
            ifindex: 0,
            mac: d.mac,
            mtu: d.mtu.unwrap_or(DEFAULT_MTU),
            queues: 1,
            backend: endpoint::Backend::None,
            ifb: None,
        };
        match &d.backend {
            Backend::Tap { tap, queues } => {
                let l = host_tap(opts, d, tap, &links)?;
                ep.ifindex = l.index;
                ep.backend = endpoint::Backend::Tap {
                    name: tap.clone(),
                    mac: None,
                };
                ep.mtu = d.mtu.unwrap_or(l.mtu);
                ep.queues = tap_queues(opts, d, &l, *queues)?;
            }
            Backend::VhostUser { socket, queues } => {
                check_socket(opts, d, socket)?;
                ep.kind = EndpointKind::VhostUser;
                ep.queues = *queues;
                ep.backend = endpoint::Backend::VhostUser {
                    socket: socket.clone(),
                };
            }
            Backend::Vfio { pci_address } => {
                let (group, driver) = pci_device(opts, d, &sysfs_root, pci_address)?;
                ep.kind = EndpointKind::Physical;
                ep.backend = endpoint::Backend::Vfio {
                    pci_address: pci_address.clone(),
                    group: Path::new(physical::VFIO_DEV_DIR).join(group),
                };
                journal.push(Entry::VfioBind {
                    device: d.name.clone(),
                    pci_address: pci_address.clone(),
                    original_driver: driver,
                    sysfs_root: sysfs_root.clone(),
                });
            }
        }
        endpoints.push(ep);
    }
    Ok((endpoints, journal))
}

/// The tap `name` must exist in the caller's netns, be in tap mode and not be one
/// sandbox-net made; a guest MTU above the tap's would drop large frames.
fn host_tap(opts: &StaticOptions, d: &Device, name: &str, links: &[Link]) -> Result<Link> {
    let field = d.field("tap");
    let l = links.iter().find(|l| l.name == name).ok_or_else(|| {
        bad(
            opts,
            field.clone(),
            format!("no device {name:?} in this netns"),
        )
    })?;
    match (l.kind.as_deref(), l.tun) {
        (Some("tun"), Some(t)) if t.tap => {}
        (Some("tun"), _) => {
            return Err(bad(
                opts,
                field,
                format!("{name} is a tun device (layer 3); a VM needs a tap"),
            ));
        }
        (kind, _) => {
            let kind = match kind {
                Some(k) => k,
                None if l.is_loopback() => "loopback",
                None => "physical",
            };
            return Err(bad(
                opts,
                field,
                format!("{name} is a {kind} device, not a tap"),
            ));
        }
    }
    if let Some(owner) = l.alias.as_deref().and_then(crate::names::owner_of) {
        return Err(bad(
            opts,
            field,
            format!("{name} was made by sandbox-net for sandbox {owner}; it is not a host tap"),
        ));
    }
    if let Some(mtu) = d.mtu
        && mtu > l.mtu
    {
        return Err(bad(
            opts,
            d.field("mtu"),
            format!(
                "{mtu} is more than tap {name}'s MTU {}: larger frames would be dropped",
                l.mtu
            ),
        ));
    }
    Ok(l.clone())
}

/// A multi-queue tap is opened with IFF_MULTI_QUEUE, which a VMM sets for queues > 1.
fn tap_queues(opts: &StaticOptions, d: &Device, l: &Link, asked: Option<u32>) -> Result<u32> {
    let multi = l.tun.is_some_and(|t| t.multi_queue);
    match (multi, asked) {
        (false, None | Some(1)) => Ok(1),
        (false, Some(n)) => Err(bad(
            opts,
            d.field("queues"),
            format!("{n}, but tap {} is single-queue", l.name),
        )),
        (true, None) => Ok(2),
        (true, Some(1)) => Err(bad(
            opts,
            d.field("queues"),
            format!(
                "1, but tap {} is multi-queue: it must be opened with IFF_MULTI_QUEUE (give 2 or more)",
                l.name
            ),
        )),
        (true, Some(n)) => Ok(n),
    }
}

fn check_socket(opts: &StaticOptions, d: &Device, socket: &Path) -> Result<()> {
    match std::fs::metadata(socket) {
        Ok(m) if m.file_type().is_socket() => Ok(()),
        Ok(_) => Err(bad(
            opts,
            d.field("socket"),
            format!("{} is not a socket", socket.display()),
        )),
        Err(e) => Err(bad(
            opts,
            d.field("socket"),
            format!("{}: {e}", socket.display()),
        )),
    }
}

/// The PCI device must exist and have an IOMMU group; returns the group and the driver it
/// is bound to now (journalled, to be restored by detach).
fn pci_device(
    opts: &StaticOptions,
    d: &Device,
    root: &Path,
    address: &str,
) -> Result<(String, Option<String>)> {
    let field = d.field("pci_address");
    let dir = physical::device_dir(root, address);
    if let Err(e) = std::fs::metadata(&dir) {
        let why = if e.kind() == io::ErrorKind::NotFound {
            format!("no PCI device {address} ({} does not exist)", dir.display())
        } else {
            format!("{}: {e}", dir.display())
        };
        return Err(bad(opts, field, why));
    }
    let group_link = dir.join("iommu_group");
    let group = std::fs::read_link(&group_link)
        .ok()
        .and_then(|t| Some(t.file_name()?.to_string_lossy().into_owned()))
        .ok_or_else(|| {
            bad(
                opts,
                field.clone(),
                format!("PCI device {address} has no IOMMU group (is the IOMMU on?)"),
            )
        })?;
    let driver =
        physical::current_driver(root, address).map_err(|e| bad(opts, field, e.to_string()))?;
    Ok((group, driver))
}

/// Refuse a tap, socket or PCI device that another static attachment already holds.
fn refuse_claimed(opts: &StaticOptions, store: &StateDir, config: &StaticConfig) -> Result<()> {
    for id in store.ids()? {
        if id == opts.id {
            continue;
        }
        let Some(other) = store.load(&id)? else {
            continue;
        };
        for d in &config.devices {
            let (key, clash) = match &d.backend {
                Backend::Tap { tap, .. } => (
                    "tap",
                    other.is_static() && other.endpoints.iter().any(|e| e.device() == Some(tap)),
                ),
                Backend::VhostUser { socket, .. } => (
                    "socket",
                    other.endpoints.iter().any(|e| {
                        e.backend
                            .vhost_user_socket()
                            .is_some_and(|s| crate::vhost_user::same_socket(s, socket))
                    }),
                ),
                Backend::Vfio { pci_address } => (
                    "pci_address",
                    other
                        .endpoints
                        .iter()
                        .any(|e| e.backend.pci_address() == Some(pci_address)),
                ),
            };
            if clash {
                return Err(bad(
                    opts,
                    d.field(key),
                    format!("already attached by sandbox {id}"),
                ));
            }
        }
    }
    Ok(())
}

/// The guest description: one interface per device, in file order, then the routes and
/// neighbours of the file.
fn guest_of(config: &StaticConfig, endpoints: &[Endpoint]) -> GuestConfig {
    GuestConfig {
        interfaces: config
            .devices
            .iter()
            .zip(endpoints)
            .map(|(d, ep)| GuestInterface {
                name: d.name.clone(),
                mac: ep.mac,
                mtu: ep.mtu,
                addresses: d.addresses.clone(),
                noarp: d.noarp,
            })
            .collect(),
        routes: config.routes.clone(),
        neighbors: config.neighbors.clone(),
    }
}

/// Undo a static attachment's journal (its VFIO bindings) from the calling thread; no
/// netns is opened.
pub(super) fn undo_static(state: &State) -> Result<()> {
    let mut nl = Netlink::open_here()
        .map_err(|e| Error::kernel("the caller's netns", "open netlink socket", e))?;
    journal::undo(&mut nl, &state.journal, &state.owner())
        .map(drop)
        .map_err(|e| {
            Error::kernel(
                format!("sandbox {}: {}", state.id, e.entry.describe()),
                "remove",
                e.error,
            )
        })
}
