//! File descriptors: a duplicate at or above a number, fds placed at fixed numbers in a
//! program about to be exec'd, and `flock`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// A close-on-exec duplicate of `fd` at the lowest free number at or above `base`.
pub fn dup_at_or_above(fd: BorrowedFd<'_>, base: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC duplicates a borrowed, open fd; it takes an integer argument
    // and touches no memory.
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, base) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fcntl returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// Make `cmd`'s program find each `source` fd at its `target` number (without
/// close-on-exec). The sources must stay open until the exec: the caller keeps them.
pub fn place_at_exec(cmd: &mut Command, pairs: Vec<(RawFd, RawFd)>) {
    let hook = move || -> io::Result<()> {
        for &(source, target) in &pairs {
            // SAFETY: dup2 is async-signal-safe and takes two plain numbers; `source` is
            // open (held by the caller until the exec).
            if unsafe { libc::dup2(source, target) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook runs between fork and exec (or just before exec); it only calls
    // dup2 and reads a Vec allocated beforehand: no allocation, no locks.
    unsafe { cmd.pre_exec(hook) };
}

/// Take an exclusive flock on `fd` without waiting: false when another holder has it.
pub fn try_lock_exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: flock on a borrowed, open fd; no memory is passed.
    if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(false);
    }
    Err(e)
}

/// Release a flock on `fd` (for every copy of the fd).
pub fn unlock(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: flock on a borrowed, open fd; no memory is passed.
    if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_UN) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
