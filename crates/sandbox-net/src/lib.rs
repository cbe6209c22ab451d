//! sandbox-net: connect a container's network namespace to a virtual machine.
//!
//! Given a netns (usually one a CNI plugin has just configured), sandbox-net finds its
//! interfaces, builds for each the kernel plumbing that carries traffic to a VM (a tap
//! joined to the interface by tc redirect filters, a macvtap, or the routed l3 model),
//! records every object it creates in an undo journal persisted in a state directory, and
//! describes the network to the guest. `detach` undoes the journal.
//!
//! ```no_run
//! use sandbox_net::{AttachOptions, HandoffOptions, RenderOptions, Vmm, attach, detach};
//! let mut opts = AttachOptions::new("pod1", "sandbox-1"); // netns name or path, id
//! opts.queues = 2;
//! let attachment = attach(&opts)?;
//! // The queues, opened in the sandbox's netns proven the one attached; never created.
//! let handoff = sandbox_net::handoff(&opts.state_dir, "sandbox-1", HandoffOptions::default())?;
//! let numbers = handoff.numbered_from(10); // the runtime's own fd numbers
//! let render = RenderOptions { fd_numbers: Some(numbers.clone()), ..Default::default() };
//! let qemu = sandbox_net::render(&attachment, Vmm::Qemu, &render)?;
//! let placed = handoff.place(&numbers)?;
//! let mut cmd = std::process::Command::new("qemu-system-x86_64");
//! cmd.args(&qemu.args);
//! placed.install(&mut cmd);
//! // cmd.spawn() ...
//! detach(&opts.state_dir, "sandbox-1")?;
//! # Ok::<(), sandbox_net::Error>(())
//! ```
//!
//! # The surface
//!
//! What a runtime uses is at the crate root: the operations ([`attach`], [`detach`],
//! [`add_endpoint`], [`remove_endpoint`], [`set_rate`], [`status`], [`list`], [`gc`],
//! [`guest_config`], [`watch`], [`attach_static`]), the [`Attachment`] with its typed
//! [`Endpoint`]s ([`Backend`], [`MacAddr`]), the options, the [`Error`], and the VMM
//! hand-off ([`handoff`], [`render`], [`Handoff::place`]), also in their modules
//! [`error`] and [`vmm`]. The other modules are internal (hidden from the documentation):
//! the CLI, the CNI plugin and the test kit build on them, and they are not kept stable as
//! an API.
//!
//! # Threads, blocking and fds
//!
//! - **Threads.** An operation that works in a netns moves the *calling thread* into it
//!   (`setns`) for the duration of the work and brings it back before returning (also
//!   when it panics; if the way back ever failed, the process aborts rather than go on in
//!   a foreign netns). Nothing spawns a thread, installs a signal handler or changes
//!   anything process-wide; other threads are not affected.
//! - **Blocking.** Every call is synchronous and blocks the calling thread for its system
//!   calls: netlink requests, file I/O in the state directory, and (l3) up to 3 s waiting
//!   for IPv6 addresses to settle. Under an async runtime, call it from a blocking thread
//!   (`tokio::task::spawn_blocking`). A sandbox another process is working on is
//!   [`Error::Busy`] at once: the lock is never waited for, unless the caller asks for a
//!   bounded wait ([`wait_while_busy`]).
//! - **Fds.** Every fd sandbox-net opens is close-on-exec and closed before the call
//!   returns, except those it hands over: the [`Handoff`]'s queue and vhost-net fds are
//!   owned by the caller ([`std::os::fd::OwnedFd`]: closed when dropped), and
//!   [`Placed::install`] clears close-on-exec on the placed copies in the child only.
//!
//! # Errors
//!
//! [`Error`] is `#[non_exhaustive]`; each variant names the object and the step.
//! Programs branch on the kind: [`Error::NotAttached`], [`Error::Busy`] (retry later),
//! [`Error::NameInUse`], [`Error::InterfaceNotFound`], and for a namespace
//! [`Error::netns_problem`] ([`NetnsProblem`]: not found, not a netns, the host's,
//! replaced). [`Error::exit_code`] is the CLI's mapping.

// Every unsafe block is in `sys`, each behind a safe function.
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[doc(hidden)]
pub mod cni;
#[doc(hidden)]
pub mod endpoint;
pub mod error;
mod failpoint;
#[doc(hidden)]
pub mod guest;
#[doc(hidden)]
pub mod guest_formats;
#[doc(hidden)]
pub mod journal;
#[cfg(test)]
mod layers;
#[doc(hidden)]
pub mod mac;
#[doc(hidden)]
pub mod macvtap;
#[doc(hidden)]
pub mod model;
#[doc(hidden)]
pub mod names;
#[doc(hidden)]
pub mod netlink;
#[doc(hidden)]
pub mod netns;
#[doc(hidden)]
pub mod ops;
#[doc(hidden)]
pub mod physical;
#[doc(hidden)]
pub mod rate;
#[doc(hidden)]
pub mod sandbox;
#[doc(hidden)]
pub mod scan;
#[doc(hidden)]
pub mod state;
#[doc(hidden)]
pub mod static_config;
#[allow(unsafe_code)]
mod sys;
#[doc(hidden)]
pub mod sysctl;
#[doc(hidden)]
pub mod tap;
#[doc(hidden)]
pub mod trusted_dir;
#[doc(hidden)]
pub mod vhost_user;
pub mod vmm;
#[doc(hidden)]
pub mod watch;

pub use endpoint::{Backend, Endpoint, EndpointKind};
pub use error::{Error, NetnsProblem, Result, wait_while_busy};
pub use guest::GuestConfig;
pub use mac::MacAddr;
pub use model::Model;
pub use ops::{
    AttachOptions, Attachment, Detached, EndpointChange, GcOptions, GcReport, LimitStatus,
    RateChange, StaticOptions, Status, add_endpoint, attach, attach_static, describe_guest, detach,
    gc, guest_config, list, remove_endpoint, set_rate, status,
};
pub use rate::Rate;
pub use vmm::{
    EndpointFds, EndpointQueues, FirecrackerInterface, Handoff, HandoffOptions, Placed,
    RenderOptions, Vmm, VmmArgs, handoff, render,
};
pub use watch::{WatchEvent, WatchOptions, watch};
