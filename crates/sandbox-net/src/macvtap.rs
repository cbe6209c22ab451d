//! Macvtap character devices, opened without `/dev/tapN`.
//!
//! A macvtap's queues are opened through its character device. The name udev or devtmpfs
//! gives it, `/dev/tap<ifindex>`, uses the ifindex inside the macvtap's own netns, so two
//! namespaces can produce the same name. Instead, sandbox-net reads the device numbers
//! from a sysfs instance mounted (detached, never attached anywhere) from inside the
//! netns, makes the device node in a private, detached tmpfs, and opens it there. Nothing
//! is created in any shared directory, and the node vanishes with the last fd.
//! Must run inside the macvtap's netns (see `NetNs::run`).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag, makedev, mknodat};

use crate::sys::mount;
use crate::tap;

/// A sysfs instance that shows the calling thread's netns, mounted nowhere; read it under
/// `/proc/self/fd/<fd>/` while the fd is open.
pub fn netns_sysfs() -> io::Result<OwnedFd> {
    mount::detached("sysfs")
}

fn read_at(dir: &OwnedFd, path: &str) -> io::Result<String> {
    let fd = openat(dir, path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    let mut text = String::new();
    File::from(fd).read_to_string(&mut text)?;
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
    let sysfs = mount::detached("sysfs")?;
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
    let private = mount::detached("tmpfs")?;
    let node = "macvtap";
    let dev = makedev(u64::from(major), u64::from(minor));
    mknodat(
        &private,
        node,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o600),
        dev,
    )?;
    let flags = OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    (0..queues.max(1))
        .map(|_| {
            let fd = openat(&private, node, flags, Mode::empty())?;
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
