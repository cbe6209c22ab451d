//! What the kernel says of a namespace: a socket's netns cookie, a namespace file's type.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `NS_GET_NSTYPE` = `_IO(0xb7, 0x3)`.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
/// `SO_NETNS_COOKIE` (Linux 5.14): the cookie of the netns a socket belongs to.
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The cookie of the network namespace `socket` belongs to (`SO_NETNS_COOKIE`).
pub fn netns_cookie(socket: BorrowedFd<'_>) -> io::Result<u64> {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cookie`, a u64 that lives for the
    // call, and sets `len`; the fd is borrowed, so it stays open.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != std::mem::size_of::<u64>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("SO_NETNS_COOKIE answered {len} bytes, not 8"),
        ));
    }
    Ok(cookie)
}

/// The type of the namespace an open nsfs file is (`CLONE_NEWNET` for a network
/// namespace), from `NS_GET_NSTYPE`; -1 when the fd is no namespace.
pub fn ns_type(file: BorrowedFd<'_>) -> libc::c_int {
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd, which is borrowed
    // open for the call.
    unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE) }
}
