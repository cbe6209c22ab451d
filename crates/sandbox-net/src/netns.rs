//! Network namespaces: resolve a `--netns` argument, check that it is a network namespace
//! we may touch, and run code inside it (the calling thread enters it and comes back).
//! sandbox-net never creates or deletes a named namespace (the runtime does); the test
//! kit does, for the demo and the tests.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};
use serde::{Deserialize, Serialize};

use crate::error::NetnsProblem;
use crate::{Error, Result};

/// Where `ip netns` keeps named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// The cookie of the network namespace `socket` belongs to (`SO_NETNS_COOKIE`): a 64-bit
/// number the kernel gives each netns and never gives another within a boot, where the
/// device and inode of its nsfs file are reused as soon as it is freed.
pub fn cookie_of(socket: BorrowedFd<'_>) -> io::Result<u64> {
    crate::sys::ns::netns_cookie(socket)
}

/// The identity of a namespace: the device and inode of its nsfs file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsId {
    pub dev: u64,
    pub ino: u64,
}

/// An open network namespace.
#[derive(Debug)]
pub struct NetNs {
    label: String,
    path: PathBuf,
    file: File,
    id: NsId,
}

/// Puts the calling thread back into the netns it came from when dropped (also while a
/// panic unwinds). A thread that cannot get back would go on working in a foreign netns,
/// so a failure aborts the process instead.
struct ReturnHome<'a>(BorrowedFd<'a>);

impl Drop for ReturnHome<'_> {
    fn drop(&mut self) {
        if let Err(e) = setns(self.0, CloneFlags::CLONE_NEWNET) {
            tracing::error!(error = %e, "cannot return to the calling thread's netns; aborting");
            eprintln!("sandbox-net: cannot return to the calling thread's netns ({e}); aborting");
            std::process::abort();
        }
    }
}

/// Turn a `--netns` argument into a path: a bare name means `/run/netns/NAME`.
pub fn resolve(spec: &str) -> Result<PathBuf> {
    if spec.is_empty() {
        return Err(bad(spec, NetnsProblem::Unusable, "empty netns argument"));
    }
    if spec.contains('/') {
        return Ok(PathBuf::from(spec));
    }
    if spec == "." || spec == ".." || spec.len() > 255 {
        return Err(bad(spec, NetnsProblem::Unusable, "not a valid netns name"));
    }
    Ok(Path::new(NETNS_RUN_DIR).join(spec))
}

fn bad(netns: &str, problem: NetnsProblem, reason: impl Into<String>) -> Error {
    Error::BadNetns {
        netns: netns.to_string(),
        problem,
        reason: reason.into(),
    }
}

fn id_of(meta: &std::fs::Metadata) -> NsId {
    NsId {
        dev: meta.dev(),
        ino: meta.ino(),
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// PID 1's netns, looked up once per process (PID 1 stays in its netns); None when it
/// can't be read (as where PID 1 is a supervisor that hides it).
fn host_netns() -> Option<NsId> {
    static HOST: std::sync::OnceLock<Option<NsId>> = std::sync::OnceLock::new();
    *HOST.get_or_init(|| match std::fs::metadata("/proc/1/ns/net") {
        Ok(host) => Some(id_of(&host)),
        Err(e) => {
            tracing::debug!(error = %e, "PID 1's netns is unreadable; only the caller's netns is guarded");
            None
        }
    })
}

/// The identity of the calling thread's netns.
pub fn own_id() -> io::Result<NsId> {
    std::fs::metadata(OWN_NETNS).map(|meta| id_of(&meta))
}

/// The calling thread's own netns.
const OWN_NETNS: &str = "/proc/thread-self/ns/net";

/// The calling thread's netns, held open by the thread that opened it: what
/// [`NetNs::open_with_home`] compares a namespace with and [`NetNs::run_from`] returns to. An
/// operation that does both (attach) opens `/proc/thread-self/ns/net` once, where
/// [`NetNs::open`] and [`NetNs::run`] each walk it (about 15 µs a walk here).
#[derive(Debug)]
pub struct Home {
    file: File,
    id: NsId,
    thread: nix::unistd::Pid,
}

impl Home {
    /// Open the calling thread's netns.
    pub fn here() -> io::Result<Home> {
        let file = File::open(OWN_NETNS)?;
        let id = id_of(&file.metadata()?);
        Ok(Home {
            file,
            id,
            thread: nix::unistd::gettid(),
        })
    }

    pub fn id(&self) -> NsId {
        self.id
    }
}

impl NetNs {
    /// Open and validate the namespace named by `spec` (a name or a path). Refuses anything
    /// that is not a network namespace, and — unless `allow_host` — the caller's own netns and
    /// the host's (PID 1's, when it can be read).
    pub fn open(spec: &str, allow_host: bool) -> Result<NetNs> {
        let path = resolve(spec)?;
        let ns = NetNs::open_path(spec, &path)?;
        if !allow_host {
            let own = own_id().map_err(|e| {
                bad(
                    spec,
                    NetnsProblem::Unusable,
                    format!("cannot identify the caller's netns: {e}"),
                )
            })?;
            ns.refuse_host(own)?;
        }
        Ok(ns)
    }

    /// [`NetNs::open`], and the calling thread's own netns opened once (see [`Home`]) for
    /// the check and for [`NetNs::run_from`]. Fails as `open` and `run` would.
    pub fn open_with_home(spec: &str, allow_host: bool) -> Result<(NetNs, Home)> {
        let path = resolve(spec)?;
        let ns = NetNs::open_path(spec, &path)?;
        let home = Home::here().map_err(|e| {
            if allow_host {
                Error::kernel(ns.object(), "open the calling thread's own netns", e)
            } else {
                bad(
                    spec,
                    NetnsProblem::Unusable,
                    format!("cannot identify the caller's netns: {e}"),
                )
            }
        })?;
        if !allow_host {
            ns.refuse_host(home.id)?;
        }
        Ok((ns, home))
    }

    /// Open a namespace file and check that it is a network namespace; no host check.
    ///
    /// The path is opened with `O_PATH` (following symlinks: `/proc/PID/ns/net` is a magic
    /// link), which opens nothing: a FIFO does not block, a device's driver is not called.
    /// Only once `fstatfs` says the file is on nsfs is it reopened for reading, through
    /// `/proc/self/fd`, and asked its type (`NS_GET_NSTYPE`, which needs a real open).
    pub fn open_path(label: &str, path: &Path) -> Result<NetNs> {
        let located = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    bad(
                        label,
                        NetnsProblem::NotFound,
                        format!("{} does not exist", path.display()),
                    )
                } else {
                    let reason = format!("cannot open {}: {e}", path.display());
                    bad(label, NetnsProblem::Unusable, reason)
                }
            })?;
        let fs = nix::sys::statfs::fstatfs(&located).map_err(|e| {
            bad(
                label,
                NetnsProblem::Unusable,
                format!("statfs {}: {e}", path.display()),
            )
        })?;
        if fs.filesystem_type().0 as i64 != NSFS_MAGIC {
            return Err(bad(
                label,
                NetnsProblem::NotANetns,
                format!("{} is not a namespace file (not on nsfs)", path.display()),
            ));
        }
        let by_fd = format!("/proc/self/fd/{}", located.as_raw_fd());
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&by_fd)
            .map_err(|e| {
                bad(
                    label,
                    NetnsProblem::Unusable,
                    format!("cannot open {}: {e}", path.display()),
                )
            })?;
        if crate::sys::ns::ns_type(file.as_fd()) != libc::CLONE_NEWNET {
            return Err(bad(
                label,
                NetnsProblem::NotANetns,
                format!(
                    "{} is a namespace, but not a network namespace",
                    path.display()
                ),
            ));
        }
        let meta = file.metadata().map_err(|e| {
            bad(
                label,
                NetnsProblem::Unusable,
                format!("stat {}: {e}", path.display()),
            )
        })?;
        Ok(NetNs {
            label: label.to_string(),
            path: path.to_path_buf(),
            file,
            id: id_of(&meta),
        })
    }

    fn refuse_host(&self, own: NsId) -> Result<()> {
        if own == self.id {
            return Err(bad(
                &self.label,
                NetnsProblem::HostRefused,
                "this is the caller's own network namespace; refusing (use --allow-host-netns to override)",
            ));
        }
        if host_netns() == Some(self.id) {
            return Err(bad(
                &self.label,
                NetnsProblem::HostRefused,
                "this is the host network namespace (that of PID 1); refusing (use --allow-host-netns to override)",
            ));
        }
        Ok(())
    }

    /// What the user called this namespace.
    pub fn display(&self) -> &str {
        &self.label
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn id(&self) -> NsId {
        self.id
    }

    /// Run `f` inside this namespace, on the calling thread: the thread enters the netns
    /// (`setns`), runs `f`, and returns to the netns it was in, also when `f` panics.
    /// Sockets and tap fds created by `f` stay bound to this namespace and can be used from
    /// anywhere afterwards. Only the calling thread moves, for the duration of `f`; other
    /// threads of the process are not affected. (This replaced a thread spawned per call,
    /// which cost ~170 µs per operation against ~3 µs for the two `setns` calls.)
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let home = File::open(OWN_NETNS)
            .map_err(|e| Error::kernel(self.object(), "open the calling thread's own netns", e))?;
        self.enter(home.as_fd(), f)
    }

    /// [`NetNs::run`], returning to `home`, which the calling thread opened and has not
    /// left since (another thread's `Home` is refused: it would return this thread to the
    /// other thread's netns).
    pub fn run_from<T>(&self, home: &Home, f: impl FnOnce() -> T) -> Result<T> {
        if home.thread != nix::unistd::gettid() {
            return Err(Error::kernel(
                self.object(),
                "enter (setns)",
                io::Error::other("the calling thread's netns was opened by another thread"),
            ));
        }
        self.enter(home.file.as_fd(), f)
    }

    fn enter<T>(&self, home: BorrowedFd<'_>, f: impl FnOnce() -> T) -> Result<T> {
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::kernel(self.object(), "enter (setns)", e.into()))?;
        let _return_home = ReturnHome(home);
        Ok(f())
    }

    fn object(&self) -> String {
        format!("netns {}", self.label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_under_run_netns() {
        assert_eq!(resolve("pod1").ok(), Some(PathBuf::from("/run/netns/pod1")));
        assert_eq!(
            resolve("/proc/42/ns/net").ok(),
            Some(PathBuf::from("/proc/42/ns/net"))
        );
        assert!(resolve("").is_err());
        assert!(resolve("..").is_err());
    }

    #[test]
    fn run_from_refuses_another_threads_home() {
        let (ns, home) = NetNs::open_with_home("/proc/self/ns/net", true).expect("open");
        assert_eq!(home.id(), ns.id(), "the caller's own netns, allowed");
        let theirs = std::thread::spawn(Home::here)
            .join()
            .expect("thread")
            .expect("home");
        let refused = ns
            .run_from(&theirs, || ())
            .expect_err("another thread's home");
        assert!(refused.to_string().contains("another thread"), "{refused}");
        // The own netns is refused without allow_host.
        assert!(NetNs::open_with_home("/proc/self/ns/net", false).is_err());
    }
}
