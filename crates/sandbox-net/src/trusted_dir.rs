//! A directory trusted the way sshd's `StrictModes` trusts a user's files, and every file
//! operation sandbox-net makes in it, relative to one directory fd.
//!
//! Opening walks the path from `/` one component at a time with `openat(O_PATH |
//! O_DIRECTORY | O_NOFOLLOW)` and checks each directory on its fd: every directory on the
//! way must be owned by root or the effective uid and writable by nobody else, unless it is
//! a sticky directory owned by root (like /tmp, where others can't rename or remove what is
//! ours). A symlink on the way is followed by hand, its target walked the same way (at most
//! [`MAX_SYMLINKS`]); a symlink as the last component is refused. The directory itself must
//! be owned by the effective uid and writable by neither its group nor others. Missing
//! components are created with mode 0700 (`mkdirat`) when asked; read-only callers get
//! `None` and create nothing.
//!
//! Every file is opened relative to the directory's fd with `O_NOFOLLOW | O_CLOEXEC` (and
//! `O_NONBLOCK`, so a FIFO can't block the open) and checked on its fd: a regular file,
//! owned by the effective uid, writable by neither group nor others. Reads are bounded by
//! the caller's limit (refused from `fstat` before reading when larger). A write goes to a
//! temp file created with `O_EXCL` (a leftover one is unlinked, never followed, and the
//! create tried again), then is put in place with `renameat2`. Locks, and the file a
//! lock's holder writes through its lock file, are in `trusted_dir::lock`.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, RenameFlags, openat, readlinkat, renameat, renameat2};
use nix::sys::stat::{FileStat, Mode, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::{Error, Result};

mod lock;
pub use lock::Lock;

/// The most symlinks followed on the way to a directory (the kernel's own limit).
pub const MAX_SYMLINKS: usize = 40;

/// The flags every directory on the way is opened with.
fn dir_flags() -> OFlag {
    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// The flags every file in the directory is opened with, besides its access mode.
fn file_flags() -> OFlag {
    OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn is_kind(st: &FileStat, kind: libc::mode_t) -> bool {
    st.st_mode & libc::S_IFMT == kind
}

/// "is world-writable", "is group-writable", both, or nothing.
fn writable_by_others(mode: u32) -> Vec<&'static str> {
    let mut why = Vec::new();
    if mode & 0o002 != 0 {
        why.push("is world-writable");
    }
    if mode & 0o020 != 0 {
        why.push("is group-writable");
    }
    why
}

/// Why a directory on the way to a trusted one can't be trusted, if it can't: it must be
/// owned by root or `euid`, and writable by nobody else unless it is sticky and root's.
pub fn untrusted_parent(uid: u32, mode: u32, euid: u32) -> Option<String> {
    let mut why = Vec::new();
    if uid != 0 && uid != euid {
        why.push(format!(
            "is owned by uid {uid} (neither root nor the effective uid {euid})"
        ));
    }
    let sticky_root = mode & libc::S_ISVTX != 0 && uid == 0;
    if !sticky_root {
        why.extend(writable_by_others(mode).into_iter().map(String::from));
    }
    (!why.is_empty()).then(|| {
        format!(
            "{} (mode {:04o}, not a sticky directory owned by root)",
            why.join(" and "),
            mode & 0o7777
        )
    })
}

/// Why a trusted directory or a file in it can't be trusted, if it can't: it must be owned
/// by `euid` and writable by neither its group nor others.
pub fn untrusted_own(uid: u32, mode: u32, euid: u32) -> Option<String> {
    let mut why = Vec::new();
    if uid != euid {
        why.push(format!(
            "is owned by uid {uid}, not the effective uid {euid}"
        ));
    }
    why.extend(writable_by_others(mode).into_iter().map(String::from));
    (!why.is_empty()).then(|| format!("{} (mode {:04o})", why.join(" and "), mode & 0o7777))
}

/// A directory checked as described in the module doc, held open.
#[derive(Debug, Clone)]
pub struct TrustedDir {
    fd: Arc<OwnedFd>,
    path: PathBuf,
    /// What the directory is, for messages: "state directory".
    label: &'static str,
}

/// One step of the walk: what is at a name in a directory.
enum Found {
    Missing,
    Symlink,
    Dir,
    Other,
}

impl TrustedDir {
    /// Open `path`, creating what is missing of it (mode 0700).
    pub fn create(path: &Path, label: &'static str) -> Result<TrustedDir> {
        Self::walk(path, true, label)?.ok_or_else(|| {
            Error::state(
                path,
                format!("create {label}"),
                io::Error::from(io::ErrorKind::NotFound),
            )
        })
    }

    /// Open `path` if it exists; None (and nothing created) when it or a parent is missing.
    pub fn existing(path: &Path, label: &'static str) -> Result<Option<TrustedDir>> {
        Self::walk(path, false, label)
    }

    /// Open (creating, mode 0700) the directory `name` in this one, checked like this one.
    pub fn child(&self, name: &str, label: &'static str) -> Result<TrustedDir> {
        let path = self.path.join(name);
        let refuse = |reason: String| Error::invalid(format!("{label} {}", path.display()), reason);
        let fd = match step(&self.fd, OsStr::new(name), true, &path)? {
            (Found::Dir, Some(fd)) => fd,
            (Found::Symlink, _) => return Err(refuse("is a symlink; refusing".into())),
            _ => return Err(refuse("is not a directory".into())),
        };
        let dir = TrustedDir {
            fd: Arc::new(fd),
            path,
            label,
        };
        dir.check_own()?;
        Ok(dir)
    }

    fn walk(path: &Path, create: bool, label: &'static str) -> Result<Option<TrustedDir>> {
        let named = || format!("{label} {}", path.display());
        let abs = std::path::absolute(path).map_err(|e| Error::state(path, "resolve", e))?;
        let mut todo = VecDeque::new();
        prepend(&mut todo, &abs);
        let mut at = PathBuf::from("/");
        let mut fd = open_root()?;
        check_parent(&fd, &at, &named)?;
        let mut symlinks = 0;
        while let Some(name) = todo.pop_front() {
            let last = todo.is_empty();
            let next_at = if name == ".." {
                at.parent().map_or_else(|| at.clone(), Path::to_path_buf)
            } else {
                at.join(&name)
            };
            let (found, next) = step(&fd, &name, create, &next_at)?;
            match (found, next) {
                (Found::Missing, _) => return Ok(None),
                (Found::Symlink, _) if last => {
                    let reason = if next_at == abs {
                        "is a symlink; refusing (give the real path)".to_string()
                    } else {
                        format!("{} is a symlink; refusing", next_at.display())
                    };
                    return Err(Error::invalid(named(), reason));
                }
                (Found::Symlink, _) => {
                    symlinks += 1;
                    if symlinks > MAX_SYMLINKS {
                        return Err(Error::state(path, "resolve", io::Error::from(Errno::ELOOP)));
                    }
                    let target = readlinkat(&fd, name.as_os_str())
                        .map_err(|e| Error::state(&next_at, "read symlink", e.into()))?;
                    let target = PathBuf::from(target);
                    if target.is_absolute() {
                        fd = open_root()?;
                        at = PathBuf::from("/");
                    }
                    prepend(&mut todo, &target);
                    continue;
                }
                (Found::Dir, Some(next)) => {
                    fd = next;
                    at = next_at;
                }
                (_, _) => {
                    let reason = if last {
                        "is not a directory".to_string()
                    } else {
                        format!("{} on its path is not a directory", next_at.display())
                    };
                    return Err(Error::invalid(named(), reason));
                }
            }
            if !todo.is_empty() {
                check_parent(&fd, &at, &named)?;
            }
        }
        let dir = TrustedDir {
            fd: Arc::new(fd),
            path: path.to_path_buf(),
            label,
        };
        dir.check_own()?;
        Ok(Some(dir))
    }

    fn check_own(&self) -> Result<()> {
        let st = fstat(self.fd.as_fd()).map_err(|e| Error::state(&self.path, "stat", e.into()))?;
        match untrusted_own(st.st_uid, st.st_mode, euid()) {
            Some(why) => Err(Error::invalid(
                format!("{} {}", self.label, self.path.display()),
                format!("{why}; refusing: another user could plant or swap files in it"),
            )),
            None => Ok(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of a file in the directory (for messages; nothing opens it by path).
    pub fn file_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Open the file `name` with `flags` (and [`file_flags`]), then check it is a regular
    /// file that only we can change. `what` names it in errors: "state file".
    fn open_checked(
        &self,
        name: &str,
        flags: OFlag,
        what: &str,
    ) -> Result<Option<(File, std::fs::Metadata)>> {
        let path = self.file_path(name);
        let refuse = |reason: String| Error::invalid(format!("{what} {}", path.display()), reason);
        let fd = match openat(
            self.fd.as_fd(),
            name,
            flags | file_flags(),
            Mode::from_bits_truncate(0o600),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => return Err(refuse("is a symlink; refusing".into())),
            Err(e) => return Err(Error::state(&path, format!("open {what}"), e.into())),
        };
        let file = File::from(fd);
        let meta = file
            .metadata()
            .map_err(|e| Error::state(&path, format!("stat {what}"), e))?;
        if !meta.file_type().is_file() {
            return Err(refuse("is not a regular file; refusing".into()));
        }
        if let Some(why) = untrusted_own(meta.uid(), meta.mode(), euid()) {
            return Err(refuse(format!(
                "{why}; refusing: another user could have written it"
            )));
        }
        Ok(Some((file, meta)))
    }

    /// Read the file `name`, at most `limit` bytes; None when it does not exist. A larger
    /// file is refused as corrupt, from its size before anything is read.
    pub fn read(&self, name: &str, limit: u64, what: &str) -> Result<Option<Vec<u8>>> {
        let path = self.file_path(name);
        let too_large = |size: String| Error::CorruptState {
            path: path.clone(),
            reason: format!("{what} is {size} bytes, over the limit of {limit} bytes; not read"),
        };
        let Some((file, meta)) = self.open_checked(name, OFlag::O_RDONLY, what)? else {
            return Ok(None);
        };
        if meta.len() > limit {
            return Err(too_large(meta.len().to_string()));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::state(&path, format!("read {what}"), e))?;
        if bytes.len() as u64 > limit {
            // It grew while read.
            return Err(too_large(format!("more than {limit}")));
        }
        Ok(Some(bytes))
    }

    /// Whether anything (a file, a symlink, ...) is at `name`.
    pub fn contains(&self, name: &str) -> Result<bool> {
        match fstatat(self.fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(Error::state(self.file_path(name), "stat", e.into())),
        }
    }

    /// The names in the directory that are valid UTF-8, unsorted.
    pub fn names(&self) -> Result<Vec<String>> {
        let list_err =
            |e: Errno| Error::state(&self.path, format!("list {}", self.label), e.into());
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut dir =
            nix::dir::Dir::openat(self.fd.as_fd(), ".", flags, Mode::empty()).map_err(list_err)?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(list_err)?;
            if let Ok(name) = entry.file_name().to_str()
                && name != "."
                && name != ".."
            {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }

    /// The temp file a write of `name` goes through.
    fn temp_name(name: &str) -> String {
        format!(".{name}.tmp")
    }

    /// Write `bytes` to `name` atomically: into a temp file created with `O_EXCL` (mode
    /// 0600; a leftover one from a killed write is unlinked and the create retried), then,
    /// when `durable`,
    /// fsync and rename over `name`, else exchange with an existing `name` (see
    /// [`replace`]). More than `limit` bytes are refused before anything is written (the
    /// read would refuse them). A failed write removes the temp file.
    pub fn write_atomically(
        &self,
        name: &str,
        bytes: &[u8],
        durable: bool,
        limit: u64,
    ) -> Result<()> {
        let path = self.file_path(name);
        if bytes.len() as u64 > limit {
            return Err(Error::state(
                &path,
                "write",
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} bytes, over the limit of {limit} bytes that a read accepts",
                        bytes.len()
                    ),
                ),
            ));
        }
        let tmp = Self::temp_name(name);
        let dir = self.fd.as_fd();
        let write = || -> nix::Result<()> {
            let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | file_flags();
            let create = || openat(dir, tmp.as_str(), flags, Mode::from_bits_truncate(0o600));
            // A leftover temp file (a write killed before its rename) is unlinked, never
            // followed, and the create tried again: no unlink up front when there is none.
            let fd = match create() {
                Err(Errno::EEXIST) => {
                    ignore_missing(unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir))?;
                    create()?
                }
                created => created?,
            };
            fchmod(&fd, Mode::from_bits_truncate(0o600))?;
            let mut file = File::from(fd);
            file.write_all(bytes).map_err(errno_of)?;
            if durable {
                file.sync_all().map_err(errno_of)?;
                return renameat(dir, tmp.as_str(), dir, name);
            }
            replace(dir, &tmp, name)
        };
        write().map_err(|e| {
            let _ = unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
            Error::state(&path, "write atomically", e.into())
        })
    }

    /// Remove `name` and the temp file a write killed before its rename leaves behind
    /// (absent is fine). A symlink is removed, never followed.
    pub fn remove(&self, name: &str) -> Result<()> {
        for n in [Self::temp_name(name), name.to_string()] {
            ignore_missing(unlinkat(
                self.fd.as_fd(),
                n.as_str(),
                UnlinkatFlags::NoRemoveDir,
            ))
            .map_err(|e| Error::state(self.file_path(&n), "remove", e.into()))?;
        }
        Ok(())
    }
}

fn ignore_missing(r: nix::Result<()>) -> nix::Result<()> {
    match r {
        Err(Errno::ENOENT) => Ok(()),
        other => other,
    }
}

fn errno_of(e: io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Put `tmp` in the place of `name`, atomically. An existing `name` is swapped with `tmp`
/// (`RENAME_EXCHANGE`) and the old file, now at `tmp`, unlinked: a rename over an existing
/// file makes ext4 start writing the new file's data first (`auto_da_alloc`, a guard for
/// files that must survive a crash of the machine, which state files need not), and
/// concurrent saves serialise on that. Without `name`, or on a filesystem without
/// `RENAME_EXCHANGE`, a plain rename.
fn replace(dir: std::os::fd::BorrowedFd<'_>, tmp: &str, name: &str) -> nix::Result<()> {
    match renameat2(dir, tmp, dir, name, RenameFlags::RENAME_EXCHANGE) {
        Ok(()) => unlinkat(dir, tmp, UnlinkatFlags::NoRemoveDir),
        Err(Errno::ENOENT | Errno::EINVAL) => renameat(dir, tmp, dir, name),
        Err(e) => Err(e),
    }
}

fn open_root() -> Result<OwnedFd> {
    openat(AT_FDCWD, "/", dir_flags(), Mode::empty())
        .map_err(|e| Error::state("/", "open", e.into()))
}

/// Put the components of `path` (a root is dropped, `.` skipped) in front of `todo`.
fn prepend(todo: &mut VecDeque<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    for p in parts.into_iter().rev() {
        todo.push_front(p);
    }
}

/// Look at `name` in `dir` without following it, creating a missing directory (mode
/// 0700) when asked; a directory is returned open. `at` is its path, for errors.
///
/// A directory (the usual case) is opened straight away (`O_DIRECTORY | O_NOFOLLOW`: a
/// symlink or anything else is refused by the open itself); only when that fails is the
/// name looked at with `fstatat`, to say what it is (and to fail as the walk always has).
fn step(dir: &OwnedFd, name: &OsStr, create: bool, at: &Path) -> Result<(Found, Option<OwnedFd>)> {
    if let Ok(fd) = openat(dir.as_fd(), name, dir_flags(), Mode::empty()) {
        return Ok((Found::Dir, Some(fd)));
    }
    let stat = |d: &OwnedFd| fstatat(d.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW);
    let st = match stat(dir) {
        Ok(st) => st,
        Err(Errno::ENOENT) if create => {
            match mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o700)) {
                Ok(()) => tracing::info!(path = %at.display(), "created directory (mode 0700)"),
                Err(Errno::EEXIST) => {}
                Err(e) => return Err(Error::state(at, "create directory", e.into())),
            }
            stat(dir).map_err(|e| Error::state(at, "stat", e.into()))?
        }
        Err(Errno::ENOENT) => return Ok((Found::Missing, None)),
        Err(e) => return Err(Error::state(at, "stat", e.into())),
    };
    if is_kind(&st, libc::S_IFLNK) {
        return Ok((Found::Symlink, None));
    }
    if !is_kind(&st, libc::S_IFDIR) {
        return Ok((Found::Other, None));
    }
    match openat(dir.as_fd(), name, dir_flags(), Mode::empty()) {
        Ok(fd) => Ok((Found::Dir, Some(fd))),
        // Replaced by a symlink or a file since the stat.
        Err(Errno::ELOOP | Errno::ENOTDIR) => Ok((Found::Other, None)),
        Err(e) => Err(Error::state(at, "open", e.into())),
    }
}

/// Refuse a directory on the way that someone else could change (see [`untrusted_parent`]).
fn check_parent(fd: &OwnedFd, at: &Path, named: &dyn Fn() -> String) -> Result<()> {
    let st = fstat(fd.as_fd()).map_err(|e| Error::state(at, "stat", e.into()))?;
    match untrusted_parent(st.st_uid, st.st_mode, euid()) {
        Some(why) => Err(Error::invalid(
            named(),
            format!(
                "{} on its path {why}; refusing: another user could swap what is below it",
                at.display()
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_trusted_like_sshd_strict_modes() {
        // Root's or ours, writable by nobody else.
        assert_eq!(untrusted_parent(0, 0o40755, 1000), None);
        assert_eq!(untrusted_parent(1000, 0o40700, 1000), None);
        // /tmp: sticky and root's.
        assert_eq!(untrusted_parent(0, 0o41777, 1000), None);
        // Another user's, group- or world-writable, or sticky but not root's.
        let other = untrusted_parent(1000, 0o40755, 0).unwrap_or_default();
        assert!(other.contains("owned by uid 1000"), "{other}");
        let group = untrusted_parent(0, 0o40775, 0).unwrap_or_default();
        assert!(
            group.contains("is group-writable") && group.contains("0775"),
            "{group}"
        );
        let world = untrusted_parent(0, 0o40777, 0).unwrap_or_default();
        assert!(world.contains("is world-writable"), "{world}");
        assert!(untrusted_parent(1000, 0o41777, 1000).is_some());
    }

    #[test]
    fn own_dirs_and_files_are_the_effective_uids_alone() {
        assert_eq!(untrusted_own(0, 0o40700, 0), None);
        assert_eq!(untrusted_own(0, 0o100644, 0), None);
        let both = untrusted_own(1000, 0o40775, 0).unwrap_or_default();
        assert!(
            both.contains("owned by uid 1000") && both.contains("is group-writable"),
            "{both}"
        );
        // Sticky is no excuse for the directory itself.
        assert!(untrusted_own(0, 0o41777, 0).is_some());
        assert!(untrusted_own(0, 0o100602, 0).is_some());
    }

    fn scratch_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sn-trusted-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_leftover_temp_file_is_unlinked_and_the_write_goes_through() {
        let path = scratch_dir("leftover");
        let dir = TrustedDir::create(&path, "test directory").expect("create");
        // What a write killed before its rename leaves: the create (O_EXCL) meets it.
        std::fs::write(path.join(".s.json.tmp"), b"half").expect("plant leftover");
        dir.write_atomically("s.json", b"whole", false, 100)
            .expect("write");
        assert_eq!(
            dir.read("s.json", 100, "test file")
                .expect("read")
                .as_deref(),
            Some(&b"whole"[..])
        );
        assert!(!path.join(".s.json.tmp").exists(), "leftover temp gone");
        let _ = std::fs::remove_dir_all(&path);
    }

    #[test]
    fn a_replacing_write_leaves_the_new_content_and_no_temp_file() {
        use std::os::unix::fs::PermissionsExt;
        let path = scratch_dir("replace");
        let dir = TrustedDir::create(&path, "test directory").expect("create");
        for (text, durable) in [("first", false), ("second, longer", false), ("third", true)] {
            dir.write_atomically("s.json", text.as_bytes(), durable, 100)
                .expect("write");
            let read = dir.read("s.json", 100, "test file").expect("read");
            assert_eq!(read.as_deref(), Some(text.as_bytes()));
            assert!(
                !path.join(".s.json.tmp").exists(),
                "temp left after {text:?}"
            );
        }
        let mode = std::fs::metadata(path.join("s.json"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(
            dir.write_atomically("s.json", &[b' '; 101], false, 100)
                .is_err()
        );
        assert_eq!(
            dir.read("s.json", 100, "f").expect("read").as_deref(),
            Some(&b"third"[..])
        );
        dir.remove("s.json").expect("remove");
        dir.remove("s.json").expect("remove again");
        assert_eq!(dir.read("s.json", 100, "f").expect("read"), None);
        std::fs::remove_dir_all(&path).expect("clean up");
    }

    #[test]
    fn a_missing_directory_is_created_only_when_asked() {
        let path = scratch_dir("missing").join("a/b");
        assert!(
            TrustedDir::existing(&path, "test directory")
                .expect("existing")
                .is_none()
        );
        assert!(!path.parent().is_some_and(Path::exists));
        let dir = TrustedDir::create(&path, "test directory").expect("create");
        assert!(path.is_dir());
        assert!(
            TrustedDir::existing(&path, "test directory")
                .expect("again")
                .is_some()
        );
        let child = dir.child("c", "child").expect("child");
        assert!(child.path().is_dir());
        let _ = std::fs::remove_dir_all(scratch_dir("missing"));
    }

    #[test]
    fn symlinks_on_the_way_are_followed_and_checked_the_last_is_refused() {
        let base = scratch_dir("links");
        let real = base.join("real");
        std::fs::create_dir_all(real.join("state")).expect("mkdir");
        std::os::unix::fs::symlink("real", base.join("rel")).expect("symlink");
        std::os::unix::fs::symlink(&real, base.join("abs")).expect("symlink");
        std::os::unix::fs::symlink("real/state", base.join("last")).expect("symlink");
        for via in ["rel/state", "abs/state", "real/../real/state"] {
            let dir = TrustedDir::existing(&base.join(via), "test directory");
            assert!(dir.is_ok_and(|d| d.is_some()), "{via}");
        }
        let err = TrustedDir::existing(&base.join("last"), "test directory")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("is a symlink"), "{err}");
        std::os::unix::fs::symlink("loop", base.join("loop")).expect("symlink");
        assert!(TrustedDir::existing(&base.join("loop/x"), "t").is_err());
        let _ = std::fs::remove_dir_all(&base);
    }
}
