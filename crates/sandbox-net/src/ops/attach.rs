//! Attach: scan a netns, plan every endpoint, journal the plan, apply it, save the state.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::transaction;
use crate::endpoint::{self, Candidate, Endpoint, EndpointKind};
use crate::failpoint::FailAt;
use crate::guest::{self, GuestConfig};
use crate::journal::Entry;
use crate::model::{self, Model, PlanContext};
use crate::netlink::Netlink;
use crate::netns::NetNs;
use crate::rate::Rate;
use crate::scan::{self, Snapshot};
use crate::state::{self, Lock, Phase, Settings, State, StateDir};
use crate::tap::{self, TapOwner};
use crate::{Error, Result, macvtap, physical};

/// What to attach, and how.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// A netns name (under /run/netns) or a path to a netns file.
    pub netns: String,
    /// The sandbox id: `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`.
    pub id: String,
    /// How each endpoint is connected (default tcfilter).
    pub model: Model,
    /// Queues per tap (1 = single queue).
    pub queues: u32,
    /// Frames each tap or macvtap queue holds for the guest to read (its `txqueuelen`):
    /// 1 to [`tap::MAX_QUEUE_LEN`], default [`tap::DEFAULT_QUEUE_LEN`]. Recorded in the
    /// state, so hotplug gives new endpoints the same.
    pub tap_queue_len: u32,
    /// Allow the caller's own netns and the host netns.
    pub allow_host_netns: bool,
    /// The state directory (default `/run/sandbox-net`, or `$SANDBOX_NET_STATE_DIR`).
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
    /// Options for attaching `netns` (a name under `/run/netns` or a path) as sandbox `id`, every other option at its default.
    pub fn new(netns: impl Into<String>, id: impl Into<String>) -> AttachOptions {
        AttachOptions {
            netns: netns.into(),
            id: id.into(),
            model: Model::Tcfilter,
            queues: 1,
            tap_queue_len: tap::DEFAULT_QUEUE_LEN,
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
            tap_queue_len: self.tap_queue_len,
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
    /// The sandbox id.
    pub id: String,
    /// The netns path (empty for a static attachment).
    pub netns: String,
    /// The model the endpoints are connected by.
    pub model: Model,
    /// The attached interfaces, in natural order of names, each with what the VMM gets for it.
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
    tap::validate_queue_len(opts.tap_queue_len).map_err(|reason| {
        Error::invalid(format!("tap queue length {}", opts.tap_queue_len), reason)
    })?;
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
    // The calling thread's own netns is opened once, to refuse it and to come back to.
    let (netns, home) = NetNs::open_with_home(&opts.netns, opts.allow_host_netns)?;
    let store = StateDir::open(&opts.state_dir)?;
    let mut lock = store.lock_to_attach(&opts.id)?;
    let result = netns
        .run_from(&home, || attach_inside(opts, &store, &mut lock, &netns))
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
        tap_queue_len: settings.tap_queue_len,
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
fn attach_inside(
    opts: &AttachOptions,
    store: &StateDir,
    lock: &mut Lock,
    netns: &NetNs,
) -> Result<Attachment> {
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
    .map_err(|r| r.into_error(netns.display()))?;
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
        detached_by_user: Vec::new(),
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
    super::claims::finish_plan(store, &mut state, 0)?;
    // The journal is written before the first kernel change.
    store.create(lock, &state)?;
    let refused = super::vhost_user::refuse_held(store, &state, &state.endpoints, netns.display());
    if let Err(error) = refused {
        if let Err(e) = store.remove(&state.id) {
            tracing::error!(id = %state.id, error = %e, "a refused attach could not remove its state file");
        }
        return Err(error);
    }
    let fail_at = opts.fail_at();
    let finish = transaction::record_attached(store, Some(lock), 0, fail_at);
    let object = format!("sandbox {}", state.id);
    match transaction::apply(&mut nl, &mut state, 0, &object, fail_at, finish) {
        Ok(()) => {
            tracing::info!(id = %opts.id, endpoints = state.endpoints.len(), requests = nl.requests(), "attached");
            Ok(Attachment::from_state(&state, nl.requests()))
        }
        Err(failed) => {
            if !failed.kept
                && let Err(e) = store.remove(&state.id)
            {
                tracing::error!(id = %state.id, error = %e, "rollback could not remove the state file");
            }
            Err(failed.error)
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
