//! The netlink subscription of `watch`: a second NETLINK_ROUTE socket, opened inside the
//! sandbox netns, member of the link, address, route and neighbour multicast groups. The
//! messages are not decoded: they only say "something changed, scan again". The socket has
//! a large receive buffer and keeps buffering while the watcher is busy, so nothing that
//! happens during an attach is missed; an overrun (ENOBUFS) is reported, and answered by
//! the same full rescan. A read of the queue stops after `MAX_READS` notifications or when
//! the stop flag is set, so a pod that floods it can't keep the watch from stopping.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use netlink_sys::{Socket, protocols::NETLINK_ROUTE};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{setsockopt, sockopt};

use crate::netns::NetNs;
use crate::{Error, Result};

/// RTNLGRP_* multicast groups (<linux/rtnetlink.h>): link, neighbour, IPv4 and IPv6
/// addresses, IPv4 and IPv6 routes.
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_NEIGH: u32 = 3;
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV6_IFADDR: u32 = 9;
const RTNLGRP_IPV6_ROUTE: u32 = 11;
const GROUPS: [u32; 6] = [
    RTNLGRP_LINK,
    RTNLGRP_IPV4_IFADDR,
    RTNLGRP_IPV6_IFADDR,
    RTNLGRP_IPV4_ROUTE,
    RTNLGRP_IPV6_ROUTE,
    RTNLGRP_NEIGH,
];

/// Receive buffer asked for: room for tens of thousands of notifications.
const RCVBUF: usize = 8 * 1024 * 1024;
/// One datagram at a time is read into this; longer ones are cut (their content is unused).
const DATAGRAM: usize = 64 * 1024;
/// Notifications read by one call at most: about as many as the receive buffer holds (a
/// notification takes at least ~1 KiB of it). What is left stays queued for the next call.
const MAX_READS: usize = 8 * 1024;

/// What a wait saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Nothing arrived before the timeout (or a signal interrupted the wait).
    Quiet,
    /// This many notifications were read (and discarded).
    Changed(usize),
    /// The kernel dropped notifications (ENOBUFS): everything must be re-read.
    Overrun,
}

/// A subscription to a netns's link, address, route and neighbour changes.
pub struct Subscription {
    socket: Socket,
    buf: Vec<u8>,
    label: String,
}

fn open_here() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    // SO_RCVBUFFORCE goes past net.core.rmem_max (needs CAP_NET_ADMIN); else ask within it.
    if let Err(e) = setsockopt(&socket, sockopt::RcvBufForce, &RCVBUF) {
        tracing::debug!(error = %e, "SO_RCVBUFFORCE refused; using SO_RCVBUF");
        setsockopt(&socket, sockopt::RcvBuf, &RCVBUF)?;
    }
    for group in GROUPS {
        socket.add_membership(group)?;
    }
    socket.set_non_blocking(true)?;
    Ok(socket)
}

impl Subscription {
    /// Subscribe inside `netns`. Subscribe before the first scan, so that no change falls
    /// between the two.
    pub fn open(netns: &NetNs) -> Result<Subscription> {
        let label = format!("netns {}", netns.display());
        let socket = netns.run(open_here)?.map_err(|e| {
            Error::kernel(
                &label,
                "subscribe to netlink link/address/route/neighbour groups",
                e,
            )
        })?;
        Ok(Subscription {
            socket,
            buf: Vec::with_capacity(DATAGRAM),
            label,
        })
    }

    /// Wait up to `timeout` for notifications, then read those that are queued (see
    /// [`Subscription::drain`]).
    pub fn wait(&mut self, timeout: Duration, stop: &AtomicBool) -> Result<Activity> {
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, poll_timeout(timeout)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => return Ok(Activity::Quiet),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::kernel(
                    &self.label,
                    "poll the netlink subscription",
                    e.into(),
                ));
            }
        }
        self.drain(stop)
    }

    /// Read the queued notifications without blocking: all of them, or `MAX_READS`, or
    /// until `stop` is set.
    pub fn drain(&mut self, stop: &AtomicBool) -> Result<Activity> {
        let mut read = 0;
        let mut overrun = false;
        while read < MAX_READS && !stop.load(Ordering::SeqCst) {
            self.buf.clear();
            match self.socket.recv(&mut self.buf, 0) {
                Ok(_) => read += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    tracing::debug!(netns = %self.label, "netlink notifications overran the buffer; rescanning");
                    overrun = true;
                }
                Err(e) => {
                    return Err(Error::kernel(&self.label, "read netlink notifications", e));
                }
            }
        }
        Ok(match (overrun, read) {
            (true, _) => Activity::Overrun,
            (false, 0) => Activity::Quiet,
            (false, n) => Activity::Changed(n),
        })
    }
}

fn poll_timeout(timeout: Duration) -> PollTimeout {
    PollTimeout::from(u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX))
}

/// Sleep up to `timeout` without reading anything; a signal (SIGTERM, SIGINT: installed
/// without SA_RESTART) cuts it short.
pub fn pause(timeout: Duration) -> Result<()> {
    let mut none: [PollFd; 0] = [];
    match poll(&mut none, poll_timeout(timeout)) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(e) => Err(Error::kernel("watch", "pause between two rounds", e.into())),
    }
}
