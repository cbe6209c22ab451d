//! The hand-off to a VMM: every queue of an attached sandbox's taps and macvtaps opened
//! inside its netns, proven the one attached, as a VMM opens them, and returned as owned
//! fds (with `/dev/vhost-net` fds when asked).
//!
//! Opening a tap by name (`TUNSETIFF`) *creates* one when no device has that name, and
//! Linux has no flag that attaches without creating (`IFF_TUN_EXCL` does the opposite).
//! So each device is proven ours before (at its recorded ifindex: its name, its kind, our
//! owner alias) and after the open (the fd is attached to that name, the name still has
//! the recorded ifindex, the device is still ours and persistent). A tap our open would
//! have created instead is not persistent: it goes away with the fds, which are dropped,
//! so nothing is left that is not ours, and nothing of ours is deleted.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{VHOST_NET, open_attached};
use crate::endpoint::{Backend, Endpoint, EndpointKind};
use crate::journal::Entry;
use crate::netlink::Netlink;
use crate::netlink::link::{self, Link};
use crate::sandbox::Sandbox;
use crate::state::State;
use crate::{Error, Result, macvtap, names, tap};

/// What to open besides the queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandoffOptions {
    /// Also open one `/dev/vhost-net` fd per queue. When the machine has no vhost-net the
    /// hand-off goes on without ([`Handoff::vhost`] false, a warning says why).
    pub vhost: bool,
}

/// The fds of one endpoint, owned: closed when dropped.
#[derive(Debug)]
pub struct EndpointQueues {
    /// The endpoint (the interface in the netns).
    pub endpoint: String,
    /// The device the queues belong to (a tap or a macvtap).
    pub device: String,
    /// One fd per queue, in queue order.
    pub queues: Vec<OwnedFd>,
    /// One `/dev/vhost-net` fd per queue (empty without vhost-net).
    pub vhost: Vec<OwnedFd>,
}

/// Everything opened for a VMM, per endpoint. Endpoints without queues (VFIO, vhost-user,
/// model none) are not listed: the VMM opens their devices by path.
#[derive(Debug)]
pub struct Handoff {
    /// The sandbox.
    pub id: String,
    /// Per tap or macvtap endpoint, in the attachment's order.
    pub endpoints: Vec<EndpointQueues>,
    /// Whether the endpoints carry vhost-net fds.
    pub vhost: bool,
    /// What did not stop the hand-off (vhost-net absent), one sentence each.
    pub warnings: Vec<String>,
}

impl Handoff {
    /// The queues of endpoint `name`.
    pub fn endpoint(&self, name: &str) -> Option<&EndpointQueues> {
        self.endpoints.iter().find(|e| e.endpoint == name)
    }
}

/// Open the queues of every tap and macvtap of attached sandbox `id` for a VMM (see the
/// module documentation). Refused: an id with nothing attached ([`Error::NotAttached`]),
/// an attach that never finished, a static attachment, a netns that is gone or replaced
/// ([`Error::NetnsLost`]); a device that is missing or not ours is an error naming it, and
/// nothing is created.
///
/// Blocks for a few system calls; the calling thread enters the netns and comes back.
pub fn handoff(state_dir: &Path, id: &str, opts: HandoffOptions) -> Result<Handoff> {
    handoff_in(&mut open_attached(state_dir, id)?, opts)
}

/// [`handoff`] of a sandbox already opened ([`open_attached`]).
pub(super) fn handoff_in(sandbox: &mut Sandbox, opts: HandoffOptions) -> Result<Handoff> {
    let state = &sandbox.state;
    let id = state.id.as_str();
    let (netns, nl) = sandbox.place.netns(id, "open its queues for a VMM")?;
    let label = netns.display().to_string();
    let opened = netns.run(|| -> Result<Vec<EndpointQueues>> {
        let mut out = Vec::new();
        for ep in &state.endpoints {
            let Some(device) = ep.device() else { continue };
            let queues = open_verified(nl, state, ep, device).map_err(|e| {
                let step = if e.raw_os_error() == Some(libc::EBUSY) {
                    "open its queues (busy: is a VMM already using it?)"
                } else {
                    "open its queues"
                };
                let kind = match ep.backend {
                    Backend::Macvtap { .. } => "macvtap",
                    _ => "tap",
                };
                Error::kernel(
                    format!(
                        "{kind} {device} (endpoint {}) of sandbox {id} in netns {label}",
                        ep.name
                    ),
                    step,
                    e,
                )
            })?;
            out.push(EndpointQueues {
                endpoint: ep.name.clone(),
                device: device.to_string(),
                queues,
                vhost: Vec::new(),
            });
        }
        Ok(out)
    })??;
    let mut handoff = Handoff {
        id: id.to_string(),
        endpoints: opened,
        vhost: false,
        warnings: Vec::new(),
    };
    if opts.vhost && !handoff.endpoints.is_empty() {
        match open_vhost(&mut handoff.endpoints) {
            Ok(()) => handoff.vhost = true,
            Err(e) => {
                for ep in &mut handoff.endpoints {
                    ep.vhost.clear();
                }
                handoff.warnings.push(format!(
                    "{VHOST_NET}: {e}; the VMM runs without vhost-net (vhost=off)"
                ));
            }
        }
    }
    Ok(handoff)
}

fn open_vhost(endpoints: &mut [EndpointQueues]) -> io::Result<()> {
    for ep in endpoints {
        for _ in 0..ep.queues.len() {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(VHOST_NET)?;
            ep.vhost.push(OwnedFd::from(file));
        }
    }
    Ok(())
}

/// What a device must be to be opened: at `ifindex`, named `name`, of `kind`, carrying
/// `alias` (None for a tap the pod had, handed over as it is).
struct Expected<'a> {
    name: &'a str,
    ifindex: u32,
    kind: &'static str,
    alias: Option<String>,
}

fn refused(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, what)
}

impl Expected<'_> {
    /// What the link at the recorded ifindex says, against what it must be.
    fn check(&self, found: Option<Link>, when: &str) -> io::Result<()> {
        let Some(link) = found else {
            return Err(refused(format!(
                "{when}: no device at ifindex {} any more (nothing is created in its place)",
                self.ifindex
            )));
        };
        if link.name != self.name || link.kind.as_deref() != Some(self.kind) {
            return Err(refused(format!(
                "{when}: ifindex {} is {} (kind {}) now, not our {} {}; not ours, not opened",
                self.ifindex,
                link.name,
                link.kind.as_deref().unwrap_or("none"),
                self.kind,
                self.name
            )));
        }
        if let Some(alias) = &self.alias
            && link.alias.as_deref() != Some(alias.as_str())
        {
            return Err(refused(format!(
                "{when}: {} does not carry our alias {alias}; not ours, not opened",
                self.name
            )));
        }
        if self.kind == "tun" && link.tun.is_some_and(|t| !t.persist) && self.alias.is_some() {
            return Err(refused(format!(
                "{when}: {} is not persistent: not the tap sandbox-net made",
                self.name
            )));
        }
        Ok(())
    }
}

/// Where and what the device of `ep` must be, from the journal (a device sandbox-net
/// made) or, for a tap the pod had, from the endpoint itself.
fn expected<'a>(state: &State, ep: &Endpoint, device: &'a str) -> io::Result<Expected<'a>> {
    let (kind, made) = match &ep.backend {
        Backend::Macvtap { .. } => ("macvtap", true),
        _ => ("tun", ep.kind != EndpointKind::Tap || device != ep.name),
    };
    let alias = names::owner_alias(&state.id);
    if !made {
        return Ok(Expected {
            name: device,
            ifindex: ep.ifindex,
            kind,
            alias: None,
        });
    }
    let recorded = state.journal.iter().find_map(|e| match e {
        Entry::Tap { name, ifindex, .. } | Entry::Macvtap { name, ifindex, .. }
            if name == device =>
        {
            Some(*ifindex)
        }
        _ => None,
    });
    match recorded.flatten() {
        Some(ifindex) => Ok(Expected {
            name: device,
            ifindex,
            kind,
            alias: Some(alias),
        }),
        None => Err(refused(format!(
            "the journal records no ifindex for {device}: it can't be proven ours"
        ))),
    }
}

/// Open the queues of `ep`'s device, proven ours before and after (see the module
/// documentation). Runs inside the netns.
fn open_verified(
    nl: &mut Netlink,
    state: &State,
    ep: &Endpoint,
    device: &str,
) -> io::Result<Vec<OwnedFd>> {
    let want = expected(state, ep, device)?;
    let now = |nl: &mut Netlink| link::get(nl, want.ifindex).map_err(|e| e.into_io());
    want.check(now(nl)?, "before opening")?;
    let fds = match &ep.backend {
        Backend::Macvtap { .. } => macvtap::open_queues(device, want.ifindex, ep.queues)?,
        _ => tap::open_queues(device, ep.queues)?,
    };
    // After: the fds are on the device proven ours, which is still there. A tap the open
    // created (the one proven was removed in between) is dropped with the fds.
    want.check(now(nl)?, "after opening")?;
    if matches!(ep.backend, Backend::Tap { .. }) {
        for fd in &fds {
            let on = tap::attached_name(fd)?;
            if on != device {
                return Err(refused(format!("a queue opened on {on}, not on {device}")));
            }
        }
        let index = tap::ifindex_via(nl.as_fd(), device)?;
        if index != want.ifindex {
            return Err(refused(format!(
                "after opening: {device} is ifindex {index}, not the recorded {}; the tap the \
                 open made is dropped",
                want.ifindex
            )));
        }
    }
    Ok(fds)
}
