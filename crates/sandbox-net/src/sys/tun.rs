//! The tun/tap ioctls, on a `struct ifreq`: attach an fd of `/dev/net/tun` (or of a
//! macvtap's character device) to a device with flags, set an integer property, read the
//! name an fd is attached to; and `SIOCGIFINDEX` on any socket.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `_IOW('T', 202, int)`
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// `_IOR('T', 210, unsigned int)`
const TUNGETIFF: libc::c_ulong = 0x8004_54d2;

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags (the rest of the union
/// is unused here).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: i16,
    _pad: [u8; 22],
}

/// `struct ifreq` as SIOCGIFINDEX fills it: the name, then `ifr_ifindex` in the union.
#[repr(C)]
struct IfReqIndex {
    name: [u8; libc::IFNAMSIZ],
    index: i32,
    _pad: [u8; 20],
}

/// `name` as the NUL-padded field of a `struct ifreq` (an empty one for `None`).
fn ifname(name: Option<&str>) -> io::Result<[u8; libc::IFNAMSIZ]> {
    let mut field = [0; libc::IFNAMSIZ];
    if let Some(name) = name {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad interface name {name:?}"),
            ));
        }
        field[..bytes.len()].copy_from_slice(bytes);
    }
    Ok(field)
}

/// `TUNSETIFF`: attach `fd` to device `name` (None: the device the fd already stands for,
/// as a macvtap's character device) with `flags`.
pub fn set_iff(fd: BorrowedFd<'_>, name: Option<&str>, flags: i16) -> io::Result<()> {
    let mut req = IfReq {
        name: ifname(name)?,
        flags,
        _pad: [0; 22],
    };
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `IfReq` has its layout and size
    // (40 bytes) and lives for the duration of the call; the fd is borrowed open.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A tun ioctl that takes an integer argument by value (`TUNSETPERSIST`, `TUNSETOWNER`...).
pub fn set_int(fd: BorrowedFd<'_>, request: libc::c_ulong, value: libc::c_ulong) -> io::Result<()> {
    // SAFETY: these tun ioctls take an integer argument by value; the fd is borrowed open.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, value) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `TUNGETIFF`: the name of the interface a tun fd is attached to.
pub fn attached_name(fd: BorrowedFd<'_>) -> io::Result<String> {
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    // SAFETY: TUNGETIFF fills a `struct ifreq`; `IfReq` has its layout and outlives the
    // call; the fd is borrowed open.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNGETIFF, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let name = CStr::from_bytes_until_nul(&req.name)
        .map_err(|_| io::Error::other("TUNGETIFF returned an unterminated name"))?;
    Ok(name.to_string_lossy().into_owned())
}

/// `SIOCGIFINDEX`: the ifindex of `name` in the netns of `socket` (any socket answers it
/// through the kernel's generic device ioctls).
pub fn ifindex(socket: BorrowedFd<'_>, name: &str) -> io::Result<u32> {
    let mut req = IfReqIndex {
        name: ifname(Some(name))?,
        index: 0,
        _pad: [0; 20],
    };
    // SAFETY: SIOCGIFINDEX reads the name and writes ifr_ifindex within the 40-byte ifreq
    // that `req` is; the fd is borrowed open for the duration of the call.
    let rc = unsafe {
        libc::ioctl(
            socket.as_raw_fd(),
            libc::SIOCGIFINDEX,
            &mut req as *mut IfReqIndex,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    u32::try_from(req.index).map_err(|_| io::Error::other("kernel returned a negative ifindex"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert_eq!(std::mem::size_of::<IfReqIndex>(), 40);
    }

    #[test]
    fn names_are_checked() {
        assert!(ifname(Some("")).is_err());
        assert!(ifname(Some("0123456789abcdef")).is_err());
        assert!(ifname(Some("a\0b")).is_err());
        assert_eq!(&ifname(Some("tap0")).unwrap()[..5], b"tap0\0");
        assert_eq!(ifname(None).unwrap(), [0; libc::IFNAMSIZ]);
    }
}
