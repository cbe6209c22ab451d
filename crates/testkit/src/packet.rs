//! `AF_PACKET` sockets bound to one device: what the datapath bench sends frames with and
//! what the end-to-end test captures a guest's frames with.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A raw `AF_PACKET` socket bound to device `ifindex` of the calling thread's netns, for
/// `protocol` (an `ETH_P_*` in host order; 0 receives nothing: a socket for sending only).
pub fn bound(ifindex: u32, protocol: u16) -> io::Result<OwnedFd> {
    let protocol = protocol.to_be();
    // SAFETY: plain socket(2); the fd is checked and owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol.into(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol;
    sll.sll_ifindex = i32::try_from(ifindex).map_err(io::Error::other)?;
    // SAFETY: bind reads a sockaddr_ll of the given size that outlives the call.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}
