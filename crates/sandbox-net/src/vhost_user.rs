//! The vhost-user sockets of a dynamic attachment (`--vhost-user-dir DIR`): an interface is
//! a vhost-user endpoint when DIR has a socket `DIR/<address>/vhu.sock` for one of its
//! addresses. The address is the tenant's to choose, so neither the lookup nor the choice
//! trusts it:
//!
//! - [`find`] resolves the socket below DIR without following a symlink (`DIR/<address>`
//!   must be a real directory, `vhu.sock` a real socket) and only takes what DIR's owner or
//!   sandbox-net's own user made: a symlink, or a directory or socket of another owner, is
//!   refused, naming it. DIR itself is the operator's choice and is followed.
//! - a socket serves one endpoint: one that another endpoint already holds is refused (see
//!   `ops::vhost_user`). Two paths name the same socket when they name the same file
//!   (device and inode) or, when one is gone, the same canonical path ([`same_socket`]).

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};
use nix::unistd::geteuid;

/// The socket's name in its address's directory.
pub const SOCKET_NAME: &str = "vhu.sock";

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Owned by DIR's owner or by sandbox-net's own user, else why not.
fn check_owner(path: &Path, st: &FileStat, dir_owner: u32) -> std::result::Result<(), String> {
    let uid = st.st_uid;
    if uid == dir_owner || uid == geteuid().as_raw() {
        return Ok(());
    }
    Err(format!(
        "{} is owned by uid {uid}, neither the owner of the vhost-user directory (uid {dir_owner}) nor sandbox-net's user; it is not used",
        path.display()
    ))
}

/// The socket of `address` in `dir`: `Ok(None)` when there is none (nothing at
/// `DIR/<address>`, or no socket in it); `Err` (the reason) when something is there that
/// must not be used.
pub fn find(dir: &Path, address: &IpAddr) -> std::result::Result<Option<PathBuf>, String> {
    let name = address.to_string();
    let sub = dir.join(&name);
    let path = sub.join(SOCKET_NAME);
    let fail = |what: &Path, step: &str, e: Errno| format!("{}: {step}: {e}", what.display());
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let dir_fd = nix::fcntl::open(dir, flags, Mode::empty())
        .map_err(|e| fail(dir, "open the vhost-user directory", e))?;
    let dir_owner = fstat(&dir_fd)
        .map_err(|e| fail(dir, "stat the vhost-user directory", e))?
        .st_uid;
    let symlink = |p: &Path| {
        format!(
            "{} is a symbolic link; links under the vhost-user directory are not followed",
            p.display()
        )
    };
    match fstatat(&dir_fd, name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if kind(&st) == SFlag::S_IFDIR => {}
        Ok(st) if kind(&st) == SFlag::S_IFLNK => return Err(symlink(&sub)),
        Ok(_) | Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(fail(&sub, "stat", e)),
    }
    // O_NOFOLLOW: a directory swapped for a symlink since is refused too (ENOTDIR).
    let sub_fd = openat(
        &dir_fd,
        name.as_str(),
        flags | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|e| fail(&sub, "open", e))?;
    let sub_st = fstat(&sub_fd).map_err(|e| fail(&sub, "stat", e))?;
    check_owner(&sub, &sub_st, dir_owner)?;
    let st = match fstatat(&sub_fd, SOCKET_NAME, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(fail(&path, "stat", e)),
    };
    match kind(&st) {
        SFlag::S_IFSOCK => {}
        SFlag::S_IFLNK => return Err(symlink(&path)),
        _ => return Ok(None),
    }
    check_owner(&path, &st, dir_owner)?;
    Ok(Some(path))
}

/// A path with its directory made canonical (the socket itself may be gone).
fn canonical(path: &Path) -> PathBuf {
    match (path.parent().map(fs::canonicalize), path.file_name()) {
        (Some(Ok(dir)), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

/// Whether two paths name the same socket: the same file, or the same canonical path.
pub fn same_socket(a: &Path, b: &Path) -> bool {
    let id = |p: &Path| fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    matches!((id(a), id(b)), (Some(x), Some(y)) if x == y) || canonical(a) == canonical(b)
}
