//! Test equipment for sandbox-net, used by the demo and the tests, never by the library:
//!
//! - [`netns`]: named network namespaces made the way iproute2 makes them;
//! - [`scratch`]: a pod netns wired like a CNI bridge plugin would wire it, and a peer;
//! - [`fakeguest`]: a userspace guest on a tap fd (ARP, NDP, ICMP echo, a TCP client), and
//!   a pinger;
//! - [`dataplane`]: the two-way ping check of an attachment through that guest;
//! - [`fake_sysfs`]: a sysfs tree with one PCI NIC, for the physical-NIC path;
//! - [`snapshot`]: what iproute2 says a netns holds, compared once the kernel has settled;
//! - [`iproute`]: `ip` and `tc` run against one netns;
//! - [`packet`]: `AF_PACKET` sockets bound to one device;
//! - [`guard`]: cleanup on drop (detach a sandbox, remove a directory).
//!
//! Everything here may panic: it is test equipment (the demo uses only the parts that
//! return errors: `scratch`, `dataplane`, `fakeguest`).

pub mod dataplane;
pub mod fake_sysfs;
pub mod fakeguest;
pub mod guard;
pub mod iproute;
pub mod netns;
pub mod packet;
pub mod scratch;
pub mod snapshot;

/// What most tests use, for one glob import.
pub mod prelude {
    pub use crate::dataplane::{COUNT, assert_replied, check_guest, while_busy};
    pub use crate::guard::{
        DetachOnDrop, TempDir, TempStateDir, attach, described, options, serial,
    };
    pub use crate::iproute::*;
    pub use crate::netns::DeleteOnDrop;
    pub use crate::scratch::{ScratchNet, scratch, unique_name};
    pub use crate::snapshot::*;
}
