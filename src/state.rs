//! Persisted attachments: one versioned JSON file per sandbox in the state directory,
//! written atomically (temp file renamed or exchanged into place; no fsync, see
//! `StateDir::save`) with mode 0600,
//! and a per-sandbox lock.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::endpoint::EndpointKind;
use crate::guest::GuestConfig;
use crate::journal::Entry;
use crate::model::Model;
use crate::netns::NsId;
use crate::{Error, Result};

/// The state directory used when none is given.
pub const DEFAULT_STATE_DIR: &str = "/run/sandbox-net";
/// The environment variable that overrides the default state directory.
pub const STATE_DIR_ENV: &str = "SANDBOX_NET_STATE_DIR";
/// The schema version this build writes and reads.
pub const STATE_VERSION: u32 = 1;

/// Check a sandbox id: `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`.
pub fn validate_id(id: &str) -> Result<()> {
    let bad = |reason: &str| Err(Error::invalid(format!("sandbox id {id:?}"), reason));
    let Some(first) = id.chars().next() else {
        return bad("empty");
    };
    if id.len() > 64 {
        return bad("longer than 64 characters");
    }
    if !first.is_ascii_alphanumeric() {
        return bad("must start with a letter or digit");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return bad("may contain only letters, digits, '_', '.' and '-'");
    }
    Ok(())
}

/// Where an attachment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The journal lists what attach is creating; the kernel may hold any prefix of it.
    Attaching,
    /// Everything in the journal exists.
    Attached,
}

/// One attached interface, and what the VMM needs to use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The interface in the netns.
    pub name: String,
    pub kind: EndpointKind,
    pub ifindex: u32,
    /// The network device the VMM opens: a tap, or a macvtap (see `chardev`). Empty when
    /// the VMM gets something else (a VFIO group, a vhost-user socket) or nothing (model none).
    pub tap: String,
    /// The MAC the guest NIC must use.
    pub mac: String,
    /// The MAC of the device in `tap` (a CNI result lists it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap_mac: Option<String>,
    pub mtu: u32,
    pub queues: u32,
    /// A macvtap's character device, "MAJOR:MINOR" (open it through a private node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chardev: Option<String>,
    /// A physical NIC given to the VM: its PCI address...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_address: Option<String>,
    /// ...and the VFIO group device the VMM opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vfio_group: Option<PathBuf>,
    /// A vhost-user endpoint: the socket the VMM connects to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost_user_socket: Option<PathBuf>,
    /// The IFB device that shapes traffic toward the guest (macvtap model with an rx limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifb: Option<String>,
}

impl Endpoint {
    /// An endpoint for `link` with nothing for the VMM yet.
    pub fn new(link: &crate::netlink::link::Link, kind: EndpointKind, queues: u32) -> Endpoint {
        Endpoint {
            name: link.name.clone(),
            kind,
            ifindex: link.index,
            tap: String::new(),
            mac: link
                .mac
                .as_deref()
                .map(crate::guest::format_mac)
                .unwrap_or_default(),
            tap_mac: None,
            mtu: link.mtu,
            queues,
            chardev: None,
            pci_address: None,
            vfio_group: None,
            vhost_user_socket: None,
            ifb: None,
        }
    }

    /// The devices this endpoint's journal entries live on.
    pub fn owns(&self, device: &str) -> bool {
        device == self.name
            || (!self.tap.is_empty() && device == self.tap)
            || self.ifb.as_deref() == Some(device)
    }
}

/// Everything persisted about one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub id: String,
    /// What the user passed as --netns.
    pub netns: String,
    /// The resolved path of the netns.
    pub netns_path: PathBuf,
    /// The identity of the netns at attach time, so a namespace re-created under the same
    /// name is never mistaken for ours: the device and inode of its nsfs file...
    pub netns_id: NsId,
    /// ...and its cookie (`SO_NETNS_COOKIE`), which, unlike the inode, the kernel never
    /// reuses within a boot. None in states written before it was recorded (and for static
    /// attachments): those are compared by device and inode only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_cookie: Option<u64>,
    pub model: Model,
    /// How the sandbox was attached; hotplug attaches more interfaces the same way.
    #[serde(default)]
    pub settings: Settings,
    pub phase: Phase,
    pub endpoints: Vec<Endpoint>,
    /// The guest description taken at attach; None when the attach did not take it
    /// (`AttachOptions::describe_guest` off): it is then read from the netns when asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<GuestConfig>,
    pub journal: Vec<Entry>,
    /// Nameservers for the guest (`attach --dns`), rendered by `guest-config --format
    /// kernel-ip|cloud-init`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<std::net::IpAddr>,
}

impl State {
    /// A static attachment (`attach --config`): its devices live in no netns of its own, so
    /// `netns_path` is empty and nothing opens a netns for it.
    pub fn is_static(&self) -> bool {
        self.netns_path.as_os_str().is_empty()
    }
}

/// The attach options that hotplug must repeat for a new interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub queues: u32,
    #[serde(default)]
    pub tap_owner: crate::tap::TapOwner,
    pub sysfs_root: PathBuf,
    #[serde(default)]
    pub vhost_user_dir: Option<PathBuf>,
    /// Rate limits applied to every endpoint (toward / from the guest).
    #[serde(default)]
    pub rx_rate: Option<crate::rate::Rate>,
    #[serde(default)]
    pub tx_rate: Option<crate::rate::Rate>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            queues: 1,
            tap_owner: crate::tap::TapOwner::default(),
            sysfs_root: PathBuf::from("/sys"),
            vhost_user_dir: None,
            rx_rate: None,
            tx_rate: None,
        }
    }
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

/// A held per-sandbox lock; released (and its file removed, if asked) on drop.
#[derive(Debug)]
pub struct Lock {
    /// Held open for its flock.
    _file: File,
    path: PathBuf,
    remove: bool,
}

impl Lock {
    /// Remove the lock file when the lock is released (the sandbox is gone).
    pub fn remove_on_release(&mut self) {
        self.remove = true;
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.remove {
            // Remove while still holding the lock; waiters re-check the inode (see `lock`).
            if let Err(e) = fs::remove_file(&self.path)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove lock file");
            }
        }
        // Unlock explicitly rather than rely on the close: a child that another thread is
        // spawning holds a copy of the fd from fork until exec (O_CLOEXEC closes it only
        // then), and a flock lasts while any copy is open, so a later `lock` in this process
        // could see a spurious Busy. LOCK_UN releases it for every copy.
        // SAFETY: flock on an fd we own; no memory is passed.
        unsafe { libc::flock(self._file.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl StateDir {
    /// The state directory from an explicit path, else $SANDBOX_NET_STATE_DIR, else the default.
    pub fn resolve(explicit: Option<&Path>) -> PathBuf {
        explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(STATE_DIR_ENV).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
    }

    /// Open (creating with mode 0700 if needed) a state directory. Refuses a symlink and a
    /// directory that others can write to.
    pub fn open(dir: &Path) -> Result<StateDir> {
        match fs::symlink_metadata(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| Error::state(dir, "create state directory", e))?;
            }
            Err(e) => return Err(Error::state(dir, "stat state directory", e)),
            Ok(meta) => {
                if meta.file_type().is_symlink() {
                    return Err(Error::invalid(
                        format!("state directory {}", dir.display()),
                        "is a symlink; refusing (give the real path)",
                    ));
                }
                if !meta.is_dir() {
                    return Err(Error::invalid(
                        format!("state directory {}", dir.display()),
                        "is not a directory",
                    ));
                }
                if meta.mode() & 0o002 != 0 {
                    return Err(Error::invalid(
                        format!("state directory {}", dir.display()),
                        "is world-writable; refusing",
                    ));
                }
            }
        }
        Ok(StateDir {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn state_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// The temp file a save writes before renaming it over the state file.
    fn temp_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!(".{id}.json.tmp"))
    }

    fn lock_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.lock"))
    }

    /// Take the sandbox's lock without waiting: another holder means `Error::Busy`.
    pub fn lock(&self, id: &str) -> Result<Lock> {
        let path = self.lock_path(id);
        loop {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| Error::state(&path, "open lock file", e))?;
            // SAFETY: flock on an fd we own; no memory is passed.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    return Err(Error::Busy { id: id.to_string() });
                }
                return Err(Error::state(&path, "lock", e));
            }
            // The holder before us may have removed the file after we opened it: make sure
            // the lock we hold is on the file that is at the path now.
            let held = file
                .metadata()
                .map_err(|e| Error::state(&path, "stat lock file", e))?;
            match fs::metadata(&path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                    return Ok(Lock {
                        _file: file,
                        path,
                        remove: false,
                    });
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::state(&path, "stat lock file", e)),
            }
        }
    }

    /// Load a sandbox's state; `Ok(None)` when there is none.
    pub fn load(&self, id: &str) -> Result<Option<State>> {
        let path = self.state_path(id);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::state(&path, "read", e)),
        };
        parse_state(&path, &text).map(Some)
    }

    /// Every sandbox id with a state file.
    pub fn ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let entries = fs::read_dir(&self.dir)
            .map_err(|e| Error::state(&self.dir, "list state directory", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::state(&self.dir, "list state directory", e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(id) = name.strip_suffix(".json")
                && validate_id(id).is_ok()
            {
                ids.push(id.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Write a sandbox's state atomically: temp file (0600), then put in place of the old
    /// one (see [`write_atomically`]).
    /// No fsync: the state must survive the process (a kill between two kernel changes),
    /// which the page cache guarantees, but not the machine, because every kernel object
    /// it lists (taps, qdiscs, filters, macvtaps, driver bindings) is gone after a reboot
    /// too. An fsync would cost 0.3 to 0.5 ms per save on a disk-backed /run and buy
    /// nothing.
    pub fn save(&self, state: &State) -> Result<()> {
        let path = self.state_path(&state.id);
        let tmp = self.temp_path(&state.id);
        let text = serde_json::to_vec_pretty(state)
            .map_err(|e| Error::state(&path, "encode", io::Error::other(e)))?;
        write_atomically(&path, &tmp, &text, false)
            .map_err(|e| Error::state(&path, "write atomically", e))
    }

    /// Remove a sandbox's state file, and the temp file a save killed before its rename
    /// leaves behind (absent is fine).
    pub fn remove(&self, id: &str) -> Result<()> {
        for path in [self.temp_path(id), self.state_path(id)] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::state(&path, "remove", e)),
            }
        }
        Ok(())
    }
}

/// Write `bytes` to `path` atomically: into `tmp` (mode 0600, no symlink followed); when
/// `durable`, fsync and rename over `path`, else exchange with an existing `path` (see
/// `replace`). A failed write removes `tmp`.
pub fn write_atomically(path: &Path, tmp: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let write = || -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(tmp)?;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        if durable {
            file.sync_all()?;
            return fs::rename(tmp, path);
        }
        replace(tmp, path)
    };
    write().inspect_err(|_| {
        let _ = fs::remove_file(tmp);
    })
}

/// Put `tmp` in the place of `path`, atomically. An existing `path` is swapped with `tmp`
/// (`RENAME_EXCHANGE`) and the old file, now at `tmp`, unlinked: a rename over an existing
/// file makes ext4 start writing the new file's data first (`auto_da_alloc`, a guard for
/// files that must survive a crash of the machine, which state files need not), and
/// concurrent saves serialise on that. Without `path`, or on a filesystem without
/// `RENAME_EXCHANGE`, a plain rename.
fn replace(tmp: &Path, path: &Path) -> io::Result<()> {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    match renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RenameFlags::RENAME_EXCHANGE) {
        Ok(()) => fs::remove_file(tmp),
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::EINVAL) => fs::rename(tmp, path),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Parse a state file, checking its version.
pub fn parse_state(path: &Path, text: &str) -> Result<State> {
    let corrupt = |reason: String| Error::CorruptState {
        path: path.to_path_buf(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| corrupt(format!("not valid JSON: {e}")))?;
    let version = value
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| corrupt("no version field".into()))?;
    if version != u64::from(STATE_VERSION) {
        return Err(corrupt(format!(
            "version {version} is not supported by this build (it reads version {STATE_VERSION})"
        )));
    }
    serde_json::from_value(value).map_err(|e| corrupt(format!("unexpected content: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_pattern() {
        for ok in ["a", "A9", "pod-1.x_y", &"a".repeat(64)] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "..", ".a", "-a", "a/b", "a b", "ä", &"a".repeat(65)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn future_and_garbage_state_is_refused() {
        let p = Path::new("/x.json");
        assert!(parse_state(p, "{").is_err());
        assert!(parse_state(p, "{}").is_err());
        let e = parse_state(p, r#"{"version": 99}"#)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("version 99")));
    }

    #[test]
    fn a_replacing_write_leaves_the_new_content_and_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("sn-replace-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let (path, tmp) = (dir.join("s.json"), dir.join(".s.json.tmp"));
        for text in ["first", "second, longer", "third"] {
            write_atomically(&path, &tmp, text.as_bytes(), false).expect("write");
            assert_eq!(fs::read_to_string(&path).expect("read"), text);
            assert!(!tmp.exists(), "temp file left after writing {text:?}");
        }
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::remove_dir_all(&dir).expect("clean up");
    }
}
