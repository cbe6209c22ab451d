//! Attach: scan a netns, plan every endpoint, journal the plan, apply it, save the state.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::endpoint::{self, Candidate, EndpointKind};
use crate::failpoint::FailAt;
use crate::guest::{self, GuestConfig};
use crate::journal::{self, Entry};
use crate::model::{self, Model, PlanContext};
use crate::netlink::Netlink;
use crate::netns::NetNs;
use crate::ownership::Owner;
use crate::rate::Rate;
use crate::scan::{self, Snapshot};
use crate::state::{self, Endpoint, Phase, Settings, State, StateDir};
use crate::tap::{self, TapOwner};
use crate::{Error, Result, macvtap, physical};

/// What to attach, and how.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// A netns name (under /run/netns) or a path to a netns file.
    pub netns: String,
    pub id: String,
    pub model: Model,
    /// Queues per tap (1 = single queue).
    pub queues: u32,
    /// Allow the caller's own netns and the host netns.
    pub allow_host_netns: bool,
    pub state_dir: PathBuf,
    /// Attach only these interfaces (e.g. a CNI plugin's CNI_IFNAME); None = every
    /// configured interface.
    pub interfaces: Option<Vec<String>>,
    /// Tap names to use instead of `tap<N>_sn`, in endpoint order (CNI's `tapName`).
    pub tap_names: Vec<String>,
    /// Owner and group of the taps, for VMMs that run unprivileged.
    pub tap_owner: TapOwner,
    /// Interfaces with a socket at `DIR/<address>/vhu.sock` become vhost-user endpoints.
    pub vhost_user_dir: Option<PathBuf>,
    /// Rate limit toward the guest, on every endpoint.
    pub rx_rate: Option<Rate>,
    /// Rate limit from the guest, on every endpoint.
    pub tx_rate: Option<Rate>,
    /// Test hook: fail before journal step N (N = journal length: after every step).
    /// Exists only with the `failpoints` feature.
    #[cfg(feature = "failpoints")]
    pub fail_at_step: Option<usize>,
    /// Nameservers for the guest, kept in the state for `guest-config`.
    pub dns: Vec<std::net::IpAddr>,
    /// Take the guest description (addresses, routes, neighbours) at attach, return it and
    /// record it (the default). Off, a tcfilter attach reads only what choosing the
    /// endpoints needs: with `interfaces` named, one link request per name and no address
    /// requirement (the caller chose them); without, the links and addresses. The
    /// description is then read from the netns when asked ([`crate::describe_guest`],
    /// `guest-config`). The CNI plugin attaches this way: prevResult already describes the
    /// network. Other models, and physical NICs (which leave the netns), always take it.
    pub describe_guest: bool,
}

impl AttachOptions {
    pub fn new(netns: impl Into<String>, id: impl Into<String>) -> AttachOptions {
        AttachOptions {
            netns: netns.into(),
            id: id.into(),
            model: Model::Tcfilter,
            queues: 1,
            allow_host_netns: false,
            state_dir: StateDir::resolve(None),
            interfaces: None,
            tap_names: Vec::new(),
            tap_owner: TapOwner::default(),
            vhost_user_dir: None,
            rx_rate: None,
            tx_rate: None,
            #[cfg(feature = "failpoints")]
            fail_at_step: None,
            dns: Vec::new(),
            describe_guest: true,
        }
    }

    /// The test hook's failpoint (never, without the `failpoints` feature).
    fn fail_at(&self) -> FailAt {
        #[cfg(feature = "failpoints")]
        return FailAt::before(self.fail_at_step);
        #[cfg(not(feature = "failpoints"))]
        FailAt::NEVER
    }

    fn settings(&self) -> Settings {
        Settings {
            queues: self.queues,
            tap_owner: self.tap_owner,
            sysfs_root: physical::sysfs_root(),
            vhost_user_dir: self.vhost_user_dir.clone(),
            rx_rate: self.rx_rate,
            tx_rate: self.tx_rate,
        }
    }
}

/// The result of an attach: what the VMM and the guest need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    pub id: String,
    pub netns: String,
    pub model: Model,
    pub endpoints: Vec<Endpoint>,
    /// None (left out of the JSON) when the attach did not take it
    /// (`AttachOptions::describe_guest` off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest: Option<GuestConfig>,
    /// Netlink requests the operation made (the scan's included).
    pub netlink_requests: u64,
}

impl Attachment {
    pub(super) fn from_state(s: &State, netlink_requests: u64) -> Attachment {
        Attachment {
            id: s.id.clone(),
            netns: s.netns_path.display().to_string(),
            model: s.model,
            endpoints: s.endpoints.clone(),
            guest: s.guest.clone(),
            netlink_requests,
        }
    }
}

fn check_queues(queues: u32) -> Result<()> {
    if queues == 0 || queues > tap::MAX_QUEUES {
        return Err(Error::invalid(
            format!("queue count {queues}"),
            format!("must be between 1 and {}", tap::MAX_QUEUES),
        ));
    }
    Ok(())
}

/// Attach every configured interface of a netns. On any failure the kernel objects made so
/// far are removed, the state file is removed, and the netns is left as it was.
pub fn attach(opts: &AttachOptions) -> Result<Attachment> {
    state::validate_id(&opts.id)?;
    check_queues(opts.queues)?;
    for name in &opts.tap_names {
        tap::validate_ifname(name).map_err(|r| Error::invalid(format!("tap name {name:?}"), r))?;
    }
    for name in opts.interfaces.iter().flatten() {
        tap::validate_ifname(name)
            .map_err(|r| Error::invalid(format!("interface name {name:?}"), r))?;
    }
    if let Some(dir) = &opts.vhost_user_dir
        && !dir.is_dir()
    {
        return Err(Error::invalid(
            format!("vhost-user directory {}", dir.display()),
            "is not a directory",
        ));
    }
    // Validate the netns before touching the state directory: bad input creates nothing.
    let netns = NetNs::open(&opts.netns, opts.allow_host_netns)?;
    let store = StateDir::open(&opts.state_dir)?;
    let mut lock = store.lock(&opts.id)?;
    if store.load(&opts.id)?.is_some() {
        return Err(Error::AlreadyAttached {
            id: opts.id.clone(),
            path: store.state_path(&opts.id),
        });
    }
    let result = netns
        .run(|| attach_inside(opts, &store, &netns))
        .and_then(|r| r);
    // A failed attach that left no state behind (refused, or rolled back) leaves no lock
    // file either: the state directory is as it was.
    if result.is_err() && !store.has_state(&opts.id).unwrap_or(true) {
        lock.remove_on_release();
    }
    result
}

/// Plan `candidates` for a sandbox: build the planning context (with a sysfs view of the
/// netns when a NIC must be looked up) and turn a refusal into an error naming the
/// interface. Runs inside the netns.
pub(super) fn plan(
    netns: &NetNs,
    model: Model,
    settings: &Settings,
    snapshot: &Snapshot,
    candidates: &[Candidate],
    existing: &[Endpoint],
    device_names: &[String],
) -> Result<(Vec<Endpoint>, Vec<Entry>)> {
    // The process's sysfs root, never the one recorded in the state (hotplug plans with
    // the recorded settings).
    let sysfs_root = physical::sysfs_root();
    let live_nic = sysfs_root == Path::new(physical::DEFAULT_SYSFS_ROOT)
        && candidates.iter().any(|c| c.kind == EndpointKind::Physical);
    let view = if live_nic {
        Some(macvtap::netns_sysfs().map_err(|e| {
            Error::kernel(
                format!("netns {}", netns.display()),
                "mount a sysfs view",
                e,
            )
        })?)
    } else {
        None
    };
    let view_path = view.as_ref().map(|fd| {
        PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(fd)
        ))
    });
    let ctx = PlanContext {
        model,
        snapshot,
        queues: settings.queues,
        tap_owner: settings.tap_owner,
        sysfs_root: &sysfs_root,
        net_sysfs_root: view_path.as_deref().unwrap_or(&sysfs_root),
        vhost_user_dir: settings.vhost_user_dir.as_deref(),
        rx_rate: settings.rx_rate,
        tx_rate: settings.tx_rate,
    };
    model::plan_all(&ctx, candidates, existing, device_names).map_err(|(iface, reason)| {
        Error::Unsupported {
            iface,
            netns: netns.display().to_string(),
            reason,
        }
    })
}

/// The body of attach, run while the calling thread is inside the netns.
fn attach_inside(opts: &AttachOptions, store: &StateDir, netns: &NetNs) -> Result<Attachment> {
    let ns_label = format!("netns {}", netns.display());
    let mut nl =
        Netlink::open_here().map_err(|e| Error::kernel(&ns_label, "open netlink socket", e))?;
    let cookie = netns_cookie(&nl, &ns_label)?;
    let scan_failed = |e: scan::ScanError| Error::kernel(&ns_label, e.dump, e.error.into_io());
    // Less than the whole scan only where nothing planned needs the rest (see
    // `AttachOptions::describe_guest`).
    let partial =
        !opts.describe_guest && opts.model == Model::Tcfilter && opts.vhost_user_dir.is_none();
    let mut snapshot = match (&opts.interfaces, partial) {
        (Some(names), true) => scan::named_links(&mut nl, names),
        (None, true) => scan::links_and_addresses(&mut nl),
        (_, false) => scan::scan(&mut nl),
    }
    .map_err(scan_failed)?;
    let candidates = match (&opts.interfaces, partial) {
        (Some(names), true) => endpoint::named(&snapshot, names),
        (only, _) => endpoint::candidates(&snapshot, only.as_deref()),
    }
    .map_err(|r| Error::Unsupported {
        iface: r.iface,
        netns: netns.display().to_string(),
        reason: r.reason,
    })?;
    // A NIC handed to VFIO leaves the netns: what the guest needs must be read now.
    let describe = !partial || candidates.iter().any(|c| c.kind == EndpointKind::Physical);
    if partial && describe {
        snapshot = scan::scan(&mut nl).map_err(scan_failed)?;
    }
    if opts.model == Model::L3 {
        let indexes: Vec<u32> = candidates.iter().map(|c| c.link.index).collect();
        snapshot = model::l3::await_settled(&mut nl, snapshot, &indexes, model::l3::SETTLE_WAIT)
            .map_err(scan_failed)?;
    }
    if candidates.is_empty() {
        return Err(Error::NothingToAttach {
            netns: netns.display().to_string(),
        });
    }
    if opts.tap_names.len() > candidates.len() {
        return Err(Error::invalid(
            "tap names",
            format!(
                "{} tap name(s) given for {} interface(s) to attach",
                opts.tap_names.len(),
                candidates.len()
            ),
        ));
    }
    let settings = opts.settings();
    let (endpoints, journal) = plan(
        netns,
        opts.model,
        &settings,
        &snapshot,
        &candidates,
        &[],
        &opts.tap_names,
    )?;
    let indexes: Vec<u32> = endpoints.iter().map(|e| e.ifindex).collect();
    let mut state = State {
        version: state::STATE_VERSION,
        id: opts.id.clone(),
        netns: opts.netns.clone(),
        netns_path: netns.path().to_path_buf(),
        netns_id: netns.id(),
        netns_cookie: cookie,
        model: opts.model,
        settings,
        phase: Phase::Attaching,
        endpoints,
        guest: describe.then(|| guest::describe(&snapshot, &indexes)),
        journal,
        dns: opts.dns.clone(),
    };
    model::l3::finish_plan(store, &mut state, 0)?;
    // The journal is written before the first kernel change.
    store.save(&state)?;
    let refused = crate::vhost_user::refuse_held(store, &state, &state.endpoints, netns.display());
    if let Err(error) = refused {
        if let Err(e) = store.remove(&state.id) {
            tracing::error!(id = %state.id, error = %e, "a refused attach could not remove its state file");
        }
        return Err(error);
    }
    match apply_and_save(&mut nl, store, &mut state, 0, opts.fail_at()) {
        Ok(()) => {
            tracing::info!(id = %opts.id, endpoints = state.endpoints.len(), requests = nl.requests(), "attached");
            Ok(Attachment::from_state(&state, nl.requests()))
        }
        Err((applied, error)) => {
            tracing::info!(id = %state.id, %error, applied, "attach failed; rolling back");
            if undo_logged(&mut nl, &state, 0, applied)
                && let Err(e) = store.remove(&state.id)
            {
                tracing::error!(id = %state.id, error = %e, "rollback could not remove the state file");
            }
            Err(error)
        }
    }
}

/// The cookie of the netns the socket is in, recorded next to its device and inode (see
/// `ops::reopen`). None, with a warning, on a kernel without `SO_NETNS_COOKIE` (before
/// 5.14): the state is then compared by device and inode only.
fn netns_cookie(nl: &Netlink, ns_label: &str) -> Result<Option<u64>> {
    match nl.netns_cookie() {
        Ok(cookie) => Ok(Some(cookie)),
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => {
            tracing::warn!(netns = %ns_label, "this kernel has no SO_NETNS_COOKIE; the netns is recorded by device and inode only");
            Ok(None)
        }
        Err(e) => Err(Error::kernel(
            ns_label,
            "read its cookie (SO_NETNS_COOKIE)",
            e,
        )),
    }
}

/// Apply `state.journal[start..]`, report the character devices of new macvtaps, and save
/// the state as attached. On failure returns how many entries of the slice were applied.
pub(super) fn apply_and_save(
    nl: &mut Netlink,
    store: &StateDir,
    state: &mut State,
    start: usize,
    fail_at: FailAt,
) -> std::result::Result<(), (usize, Error)> {
    let alias = journal::owner_alias(&state.id);
    let id = state.id.clone();
    let new = &mut state.journal[start..];
    let total = new.len();
    journal::apply_at(nl, new, &alias, fail_at).map_err(|e| {
        (
            e.applied,
            Error::kernel(
                format!("sandbox {id}: {}", e.entry.describe()),
                e.step,
                e.error,
            ),
        )
    })?;
    for entry in &state.journal[start..] {
        if let Entry::Macvtap {
            name,
            ifindex: Some(index),
            ..
        } = entry
        {
            let (major, minor) = macvtap::chardev(name, *index).map_err(|e| {
                (
                    total,
                    Error::kernel(format!("macvtap {name}"), "read its character device", e),
                )
            })?;
            if let Some(ep) = state.endpoints.iter_mut().find(|ep| &ep.tap == name) {
                ep.chardev = Some(format!("{major}:{minor}"));
            }
        }
    }
    fail_at
        .check(total, &format!("sandbox {id}"), "save attached state")
        .map_err(|e| (total, e))?;
    state.phase = Phase::Attached;
    store.save(state).map_err(|e| (total, e))
}

/// Undo `state.journal[start..start + applied]` after a failure; false (logged) when an
/// object could not be removed, in which case the state must be kept for detach.
pub(super) fn undo_logged(nl: &mut Netlink, state: &State, start: usize, applied: usize) -> bool {
    let entries = &state.journal[start..start + applied];
    match journal::undo(nl, entries, &Owner::of(state)) {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(id = %state.id, object = %e.entry.describe(), error = %e.error,
                "rollback could not remove an object; the state file is kept so detach can retry");
            false
        }
    }
}
