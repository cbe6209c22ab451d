//! Macvtap character devices, opened without `/dev/tapN`.
//!
//! A macvtap's queues are opened through its character device. The name udev or devtmpfs
//! gives it, `/dev/tap<ifindex>`, uses the ifindex inside the macvtap's own netns, so two
//! namespaces can produce the same name. Instead, sandbox-net reads the device numbers
//! from a sysfs instance mounted (detached, never attached anywhere) from inside the
//! netns, makes the device node in a private, detached tmpfs, and opens it there. Nothing
//! is created in any shared directory, and the node vanishes with the last fd.
//! Must run inside the macvtap's netns (see `NetNs::run`).

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::tap;

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;

/// A sysfs instance that shows the calling thread's netns, mounted nowhere; read it under
/// `/proc/self/fd/<fd>/` while the fd is open.
pub fn netns_sysfs() -> io::Result<OwnedFd> {
    detached_mount("sysfs")
}

/// Mount a fresh instance of `fstype` without attaching it, and return the mount's root fd.
/// A sysfs instance shows the network devices of the calling thread's netns.
fn detached_mount(fstype: &str) -> io::Result<OwnedFd> {
    let name = CString::new(fstype).map_err(|_| io::Error::other("fs type has a NUL"))?;
    // SAFETY: fsopen reads a NUL-terminated string that outlives the call.
    let fs = unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) };
    if fs < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fsopen returned a new fd that nothing else owns.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
    // SAFETY: FSCONFIG_CMD_CREATE takes no key or value (null pointers, aux 0).
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
    // SAFETY: fsmount takes the configured fs context fd and plain flags.
    let mnt = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
    if mnt < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fsmount returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(mnt as i32) })
}

fn read_at(dir: &OwnedFd, path: &str) -> io::Result<String> {
    let cpath = CString::new(path).map_err(|_| io::Error::other("path has a NUL"))?;
    // SAFETY: openat with a valid dir fd and a NUL-terminated relative path.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            cpath.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a new fd that nothing else owns.
    let mut file = unsafe { File::from_raw_fd(fd) };
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}

/// Parse sysfs's "MAJOR:MINOR\n".
pub fn parse_dev(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The character device numbers of macvtap `name` with ifindex `index`, from
/// `class/net/<name>/macvtap/tap<index>/dev` of a sysfs mounted inside the netns.
pub fn chardev(name: &str, index: u32) -> io::Result<(u32, u32)> {
    if name.is_empty() || name.contains('/') || name.contains("..") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    let sysfs = detached_mount("sysfs")?;
    let path = format!("class/net/{name}/macvtap/tap{index}/dev");
    let text = read_at(&sysfs, &path)
        .map_err(|e| io::Error::new(e.kind(), format!("read sysfs {path}: {e}")))?;
    parse_dev(&text)
        .ok_or_else(|| io::Error::other(format!("sysfs {path}: unexpected content {text:?}")))
}

/// Open `queues` queues of macvtap `name` (ifindex `index`) with the flags a VMM uses
/// (tap, no PI, vnet header, multi-queue when more than one).
pub fn open_queues(name: &str, index: u32, queues: u32) -> io::Result<Vec<OwnedFd>> {
    let (major, minor) = chardev(name, index)?;
    let private = detached_mount("tmpfs")?;
    let node = CString::new("macvtap").map_err(|_| io::Error::other("node name"))?;
    // SAFETY: mknodat with a valid dir fd, a NUL-terminated name and a device number.
    let rc = unsafe {
        libc::mknodat(
            private.as_raw_fd(),
            node.as_ptr(),
            libc::S_IFCHR | 0o600,
            libc::makedev(major, minor),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    (0..queues.max(1))
        .map(|_| {
            // SAFETY: openat with a valid dir fd and a NUL-terminated relative name.
            let fd = unsafe {
                libc::openat(
                    private.as_raw_fd(),
                    node.as_ptr(),
                    libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
                )
            };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: openat returned a new fd that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            tap::set_queue_flags(&fd, queues)?;
            Ok(fd)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_numbers_parse() {
        assert_eq!(parse_dev("246:1\n"), Some((246, 1)));
        assert_eq!(parse_dev("246"), None);
        assert_eq!(parse_dev("a:b"), None);
    }
}
