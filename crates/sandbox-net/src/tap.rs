//! Tap devices through /dev/net/tun: create a persistent tap, and open its queues by name
//! as a VMM would. A tap is created in the network namespace of the thread that opens
//! /dev/net/tun, so callers run these inside the target netns (see `NetNs::run`).

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::sys::tun;

const TUN_PATH: &str = "/dev/net/tun";
/// `_IOW('T', 203, int)`
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
/// `_IOW('T', 204, int)`
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
/// `_IOW('T', 206, int)`
const TUNSETGROUP: libc::c_ulong = 0x4004_54ce;
const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
const IFF_VNET_HDR: i16 = 0x4000;
const IFF_MULTI_QUEUE: i16 = 0x0100;
/// Fail instead of attaching when a device of that name already exists.
const IFF_TUN_EXCL: i16 = -0x8000; // 0x8000 as i16

/// Linux's limit on the queues of one tap.
pub const MAX_QUEUES: u32 = 256;

/// The frames a tap (or macvtap) queue holds for the guest to read, its `txqueuelen`, unless
/// set (`AttachOptions::tap_queue_len`). Chosen by measurement: see docs/BENCHMARKS.md,
/// "Tap queue length".
pub const DEFAULT_QUEUE_LEN: u32 = 1000;

/// The largest queue length accepted. A guest that stops reading leaves up to this many
/// frames queued per queue, each up to 64 KiB with segmentation offload (1 GiB here), and
/// at the drain rates measured (docs/BENCHMARKS.md) a full queue of small frames is some
/// 30 ms of latency in front of the guest; the kernel also allocates the ring (8 bytes a
/// slot) per queue when the VMM opens it.
pub const MAX_QUEUE_LEN: u32 = 16384;

/// Check a tap queue length: 1 to [`MAX_QUEUE_LEN`].
pub fn validate_queue_len(len: u32) -> Result<(), String> {
    if len == 0 {
        return Err(format!(
            "must be from 1 to {MAX_QUEUE_LEN}: a queue of 0 frames drops every frame toward \
             the guest (a CNI bridge veth starts with txqueuelen 0; don't copy it onto a tap)"
        ));
    }
    if len > MAX_QUEUE_LEN {
        return Err(format!(
            "must be from 1 to {MAX_QUEUE_LEN}: a stalled guest would leave that many \
             frames (up to 64 KiB each) queued per queue, and a longer queue only adds latency"
        ));
    }
    Ok(())
}

/// The flags a tap is created with, which a VMM must repeat to open its queues.
pub fn tap_flags(queues: u32) -> i16 {
    let mut flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if queues > 1 {
        flags |= IFF_MULTI_QUEUE;
    }
    flags
}

fn open_tun() -> io::Result<OwnedFd> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(TUN_PATH)?;
    Ok(OwnedFd::from(file))
}

/// Who may open a tap besides root (for VMMs that run unprivileged).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TapOwner {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Create a persistent tap named `name` in the calling thread's netns: tap mode, no packet
/// information, vnet header, multi-queue when `queues > 1`, owned by `owner` when given.
/// Fails if the name is taken.
pub fn create_persistent(name: &str, queues: u32, owner: TapOwner) -> io::Result<()> {
    let fd = open_tun()?;
    tun::set_iff(fd.as_fd(), Some(name), tap_flags(queues) | IFF_TUN_EXCL)?;
    if let Some(uid) = owner.uid {
        tun::set_int(fd.as_fd(), TUNSETOWNER, libc::c_ulong::from(uid))?;
    }
    if let Some(gid) = owner.gid {
        tun::set_int(fd.as_fd(), TUNSETGROUP, libc::c_ulong::from(gid))?;
    }
    tun::set_int(fd.as_fd(), TUNSETPERSIST, 1)
}

/// Check a name for a network interface: 1 to 15 bytes, no '/', ':', NUL or whitespace.
pub fn validate_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(format!("must be 1 to {} bytes long", libc::IFNAMSIZ - 1));
    }
    if name == "." || name == ".." {
        return Err("is not a valid name".into());
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
    {
        return Err("may not contain '/', ':', NUL or whitespace".into());
    }
    Ok(())
}

/// Open `queues` queues of the existing tap `name`, with the flags it was created with
/// (what a VMM does). Must run in the tap's netns.
pub fn open_queues(name: &str, queues: u32) -> io::Result<Vec<OwnedFd>> {
    (0..queues.max(1))
        .map(|_| {
            let fd = open_tun()?;
            tun::set_iff(fd.as_fd(), Some(name), tap_flags(queues))?;
            Ok(fd)
        })
        .collect()
}

/// Set the queue flags on an open tap-like fd whose device already exists (a macvtap's
/// character device): tap, no PI, vnet header, multi-queue when `queues > 1`.
pub fn set_queue_flags(fd: &OwnedFd, queues: u32) -> io::Result<()> {
    tun::set_iff(fd.as_fd(), None, tap_flags(queues))
}

/// The interface name a tun fd is attached to.
pub fn attached_name(fd: &OwnedFd) -> io::Result<String> {
    tun::attached_name(fd.as_fd())
}

/// The ifindex of `name` in the netns of `socket` (any socket; a netlink socket answers
/// SIOCGIFINDEX through the kernel's generic device ioctls). One syscall, where
/// `if_nametoindex` opens, asks and closes a socket of its own.
pub fn ifindex_via(socket: BorrowedFd<'_>, name: &str) -> io::Result<u32> {
    tun::ifindex(socket, name)
}

/// The ifindex of `name` in the calling thread's netns.
pub fn ifindex(name: &str) -> io::Result<u32> {
    nix::net::if_::if_nametoindex(name).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_the_queue_count() {
        assert_eq!(tap_flags(1) & IFF_MULTI_QUEUE, 0);
        assert_ne!(tap_flags(4) & IFF_MULTI_QUEUE, 0);
        assert_ne!(tap_flags(1) & IFF_VNET_HDR, 0);
        assert_ne!(tap_flags(1) & IFF_NO_PI, 0);
    }

    #[test]
    fn interface_names_are_validated() {
        assert!(validate_ifname("tap0").is_ok());
        for bad in ["", "..", "a/b", "a b", "a:b", "0123456789abcdef"] {
            assert!(validate_ifname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queue_lengths_are_validated() {
        for good in [1, DEFAULT_QUEUE_LEN, MAX_QUEUE_LEN] {
            assert!(validate_queue_len(good).is_ok(), "{good}");
        }
        let zero = validate_queue_len(0).unwrap_err();
        assert!(
            zero.contains("drops every frame") && zero.contains("txqueuelen 0"),
            "{zero}"
        );
        assert!(validate_queue_len(MAX_QUEUE_LEN + 1).is_err());
        assert!(validate_queue_len(u32::MAX).is_err());
    }
}
