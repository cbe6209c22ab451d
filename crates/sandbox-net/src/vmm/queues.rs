//! The VMM side of an endpoint, opened as a VMM opens it: every queue of a tap by name, or
//! of a macvtap through its character device. `exec` hands these fds to QEMU; a program
//! that runs its own VMM (or a test's fake guest) calls [`open_endpoint_queues`] inside the
//! sandbox netns.

use std::os::fd::OwnedFd;

use crate::endpoint::{Backend, Endpoint};
use crate::{macvtap, tap};

/// Open every queue of the endpoint's VMM-side device, as a VMM would: a tap by name, a
/// macvtap through its character device. Runs inside the netns. An endpoint without such
/// a device (a VFIO NIC, a vhost-user socket, model none) has no queues to open.
pub fn open_endpoint_queues(endpoint: &Endpoint) -> std::io::Result<Vec<OwnedFd>> {
    match &endpoint.backend {
        Backend::Tap { name, .. } => tap::open_queues(name, endpoint.queues),
        Backend::Macvtap { name, .. } => {
            let index = tap::ifindex(name)?;
            macvtap::open_queues(name, index, endpoint.queues)
        }
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("endpoint {} has no tap or macvtap", endpoint.name),
        )),
    }
}
