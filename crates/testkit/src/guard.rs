//! Cleanup on drop, so that a failing test leaves nothing behind (a sandbox detached, a
//! directory removed); attaching under such a guard; and the lock of the tests that must
//! not overlap in one process.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use sandbox_net::guest::GuestConfig;
use sandbox_net::{AttachOptions, Attachment, Detached};

use crate::scratch::unique_name;

static SERIAL: Mutex<()> = Mutex::new(());

/// The lock of the tests that must not overlap with one another in this process:
/// - those that hold tap fds here (the fake guest, a VMM's queues): while another test
///   thread spawns a child (`ip`, `tc`, the CLI), the child holds copies of this process's
///   fds from fork until exec closes them, so a single-queue tap the fake guest just
///   closed can still be attached, and reopening it fails with EBUSY;
/// - those that point the process's sysfs root (`physical::set_sysfs_root`) at a fake tree;
/// - those that wait for the kernel to reuse a netns inode (each creates and deletes
///   namespaces, which would take the other's inode).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Detaches a sandbox on drop (also when a test panics, or the demo stops early), unless
/// it was disarmed or detached through [`DetachOnDrop::detach`]. What the detach on drop
/// did, or why it failed, is printed on stderr.
#[derive(Debug)]
pub struct DetachOnDrop {
    pub dir: PathBuf,
    pub id: String,
    armed: bool,
}

impl DetachOnDrop {
    /// Guard sandbox `id` of the state directory `dir`, however it was attached.
    pub fn new(dir: impl AsRef<Path>, id: impl Into<String>) -> DetachOnDrop {
        DetachOnDrop {
            dir: dir.as_ref().to_path_buf(),
            id: id.into(),
            armed: true,
        }
    }

    /// Stop guarding (the test detaches some other way, or hands over to another guard).
    pub fn disarm(mut self) {
        self.armed = false;
    }

    /// Detach now; panics if the detach fails.
    pub fn detach(mut self) -> Detached {
        self.armed = false;
        sandbox_net::detach(&self.dir, &self.id)
            .unwrap_or_else(|e| panic!("detach {}: {e}", self.id))
    }
}

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        if self.armed {
            match sandbox_net::detach(&self.dir, &self.id) {
                Ok(outcome) => eprintln!("cleanup: {outcome}"),
                Err(e) => eprintln!("cleanup: detach of sandbox {} failed: {e}", self.id),
            }
        }
    }
}

/// Options for attaching `netns` as `id` with a private state dir.
pub fn options(netns: &str, dir: &TempStateDir, id: &str) -> AttachOptions {
    let mut opts = AttachOptions::new(netns, id);
    opts.state_dir = dir.path().to_path_buf();
    opts
}

/// Attach with `opts`, guarded; panics if the attach fails.
pub fn attach(opts: &AttachOptions) -> (Attachment, DetachOnDrop) {
    let a = sandbox_net::attach(opts).unwrap_or_else(|e| panic!("attach {}: {e}", opts.id));
    (a, DetachOnDrop::new(&opts.state_dir, opts.id.clone()))
}

/// The guest description of an attach that took it (the default).
pub fn described(guest: &Option<GuestConfig>) -> &GuestConfig {
    guest.as_ref().expect("the attach described the guest")
}

/// A temp directory, created now and removed on drop (also when the test panics).
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `$TMPDIR/PREFIX-PID-N`, created.
    pub fn new(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique_name(prefix));
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path in the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A private state directory, removed on drop; not created (sandbox-net creates it, with
/// the modes it checks).
#[derive(Debug)]
pub struct TempStateDir(pub PathBuf);

impl TempStateDir {
    pub fn new() -> TempStateDir {
        TempStateDir(std::env::temp_dir().join(unique_name("snt-state")))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Default for TempStateDir {
    fn default() -> Self {
        TempStateDir::new()
    }
}

impl Drop for TempStateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
