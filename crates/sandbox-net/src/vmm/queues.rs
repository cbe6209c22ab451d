//! The VMM side of an endpoint, opened as a VMM opens it: every queue of a tap by name, or
//! of a macvtap through its character device. `exec` hands these fds to QEMU; a program
//! that runs its own VMM (or a test's fake guest) calls [`open_endpoint_queues`] inside the
//! sandbox netns.

use std::os::fd::OwnedFd;

use crate::state::Endpoint;
use crate::{macvtap, tap};

/// Open every queue of the endpoint's VMM-side device, as a VMM would: a tap by name, a
/// macvtap through its character device. Runs inside the netns.
pub fn open_endpoint_queues(endpoint: &Endpoint) -> std::io::Result<Vec<OwnedFd>> {
    if endpoint.chardev.is_some() {
        let index = tap::ifindex(&endpoint.tap)?;
        macvtap::open_queues(&endpoint.tap, index, endpoint.queues)
    } else {
        tap::open_queues(&endpoint.tap, endpoint.queues)
    }
}
