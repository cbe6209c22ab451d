//! Detached mounts: a fresh filesystem instance (`fsopen`, `fsconfig`, `fsmount`) that is
//! attached nowhere, reachable only through the fd of its root.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;

/// The result of a syscall that returns a new fd, owned.
fn new_fd(rc: libc::c_long) -> io::Result<OwnedFd> {
    let fd = i32::try_from(rc).map_err(|_| io::Error::other(format!("fd {rc} out of range")))?;
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd, open and owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Mount a fresh instance of `fstype` without attaching it, and return the mount's root fd.
/// A sysfs instance shows the network devices of the calling thread's netns.
pub fn detached(fstype: &str) -> io::Result<OwnedFd> {
    let name = CString::new(fstype).map_err(|_| io::Error::other("fs type has a NUL"))?;
    // SAFETY: fsopen reads a NUL-terminated string that outlives the call.
    let fs = new_fd(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) })?;
    // SAFETY: FSCONFIG_CMD_CREATE takes no key or value (null pointers, aux 0); the fs
    // context fd is open for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fsmount takes the configured fs context fd, open for the call, and flags.
    new_fd(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) })
}
