//! Named network namespaces (`/run/netns/NAME`), made and removed as iproute2's
//! `ip netns add` and `ip netns del` make and remove them, so that both can share
//! `/run/netns` on one boot.
//!
//! `ip netns add` first makes `/run/netns` a mount point of its own and shared (a
//! recursive bind mount of the directory onto itself, then `--make-shared`), under an
//! exclusive flock of the directory, and only then bind-mounts the new namespace onto
//! `/run/netns/NAME`. A namespace bind-mounted while `/run/netns` was still a plain
//! directory is covered when `ip netns add` later mounts the directory over itself: the
//! name then shows a copy of the mount, and once that copy is unmounted the covered
//! original still pins the file, so the name can neither be entered (`setns`: EINVAL, the
//! path is the empty file) nor removed (EBUSY). [`create`] therefore takes the same first
//! step as iproute2.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use sandbox_net::netns::{NETNS_RUN_DIR, NetNs, resolve};
use sandbox_net::{Error, Result};

/// Make `/run/netns` (created 0755 if missing) a shared mount point of its own, as
/// `ip netns add` does: `mount --make-shared --recursive`, and when that fails with EINVAL
/// (not a mount point yet), `mount --rbind /run/netns /run/netns` first. Under an exclusive
/// flock of the directory, which `ip netns add` takes too.
fn share_run_dir(object: &str) -> Result<()> {
    match DirBuilder::new().mode(0o755).create(NETNS_RUN_DIR) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::kernel(object, format!("create {NETNS_RUN_DIR}"), e)),
    }
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(NETNS_RUN_DIR)
        .map_err(|e| Error::kernel(object, format!("open {NETNS_RUN_DIR}"), e))?;
    let _locked = Flock::lock(dir, FlockArg::LockExclusive).map_err(|(_, e)| {
        Error::kernel(object, format!("lock {NETNS_RUN_DIR} (flock)"), e.into())
    })?;
    let mut made_mount_point = false;
    loop {
        let shared = mount(
            None::<&str>,
            NETNS_RUN_DIR,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        );
        match shared {
            Ok(()) => return Ok(()),
            Err(Errno::EINVAL) if !made_mount_point => {
                mount(
                    Some(NETNS_RUN_DIR),
                    NETNS_RUN_DIR,
                    Some("none"),
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(|e| {
                    Error::kernel(
                        object,
                        format!("make {NETNS_RUN_DIR} a mount point (bind it onto itself)"),
                        e.into(),
                    )
                })?;
                made_mount_point = true;
            }
            Err(e) => {
                return Err(Error::kernel(
                    object,
                    format!("make {NETNS_RUN_DIR} a shared mount"),
                    e.into(),
                ));
            }
        }
    }
}

/// Create a named namespace (`/run/netns/NAME`, with only `lo`, down), as `ip netns add`
/// does; see the module documentation.
pub fn create(name: &str) -> Result<NetNs> {
    if name.contains('/') {
        return Err(Error::BadNetns {
            netns: name.to_string(),
            problem: sandbox_net::error::NetnsProblem::Unusable,
            reason: "create takes a name, not a path".into(),
        });
    }
    let path = resolve(name)?;
    let object = format!("netns {name}");
    share_run_dir(&object)?;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(&path)
        .map_err(|e| Error::kernel(&object, format!("create mount point {}", path.display()), e))?;
    // A thread of its own unshares (the calling thread keeps its netns) and bind-mounts
    // the new netns onto the file.
    let mounted = std::thread::scope(|s| {
        s.spawn(|| -> io::Result<()> {
            unshare(CloneFlags::CLONE_NEWNET)?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &path,
                Some("none"),
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
            Ok(())
        })
        .join()
    });
    let mounted = match mounted {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    if let Err(e) = mounted {
        if let Err(removal) = std::fs::remove_file(&path) {
            tracing::error!(path = %path.display(), error = %removal, "could not remove the mount point of a netns that was not made");
        }
        return Err(Error::kernel(&object, "unshare and bind-mount", e));
    }
    NetNs::open_path(name, &path)
}

/// Delete a named namespace made by [`create`] or `ip netns add`, as `ip netns del` does:
/// unmount (lazily) and remove the file. A name that is gone is deleted.
pub fn delete(name: &str) -> Result<()> {
    let path = resolve(name)?;
    let object = format!("netns {name}");
    match umount2(&path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(Error::kernel(&object, "unmount", e.into())),
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::kernel(&object, "remove mount point", e)),
    }
}

/// A named namespace made by [`create`], deleted on drop (also when a test fails).
#[derive(Debug)]
pub struct Named {
    pub netns: NetNs,
    deleted_on_drop: DeleteOnDrop,
}

impl Named {
    /// [`create`] `name`.
    pub fn create(name: &str) -> Result<Named> {
        Ok(Named {
            netns: create(name)?,
            deleted_on_drop: DeleteOnDrop(name.to_string()),
        })
    }

    pub fn name(&self) -> &str {
        &self.deleted_on_drop.0
    }

    /// `/run/netns/NAME`.
    pub fn path(&self) -> &Path {
        self.netns.path()
    }
}

/// Deletes a namespace by name on drop, however it was made (`ip netns add` included).
#[derive(Debug)]
pub struct DeleteOnDrop(pub String);

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        if let Err(e) = delete(&self.0) {
            eprintln!("cleanup: could not delete netns {}: {e}", self.0);
        }
    }
}
