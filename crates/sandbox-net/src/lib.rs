//! sandbox-net: connect a container's network namespace to a virtual machine.
//!
//! Given a netns (usually one a CNI plugin has just configured), sandbox-net finds its
//! interfaces, builds for each the kernel plumbing that carries traffic to a VM (a tap
//! joined to the interface by tc redirect filters), records every object it creates in
//! an undo journal, and describes the network to the guest. See `docs/ARCHITECTURE.md`.
//!
//! ```no_run
//! use sandbox_net::{AttachOptions, attach, detach};
//! let mut opts = AttachOptions::new("pod1", "sandbox-1");
//! opts.queues = 2;
//! let attachment = attach(&opts)?;
//! for ep in &attachment.endpoints {
//!     println!("{} -> {:?} mac {:?}", ep.name, ep.device(), ep.mac);
//! }
//! detach(&opts.state_dir, "sandbox-1")?;
//! # Ok::<(), sandbox_net::Error>(())
//! ```

// Every unsafe block is in `sys`, each behind a safe function.
#![deny(unsafe_code)]

pub mod cni;
pub mod endpoint;
pub mod error;
mod failpoint;
pub mod guest;
pub mod guest_formats;
pub mod journal;
#[cfg(test)]
mod layers;
pub mod mac;
pub mod macvtap;
pub mod model;
pub mod names;
pub mod netlink;
pub mod netns;
pub mod ops;
pub mod physical;
pub mod rate;
pub mod sandbox;
pub mod scan;
pub mod state;
pub mod static_config;
#[allow(unsafe_code)]
mod sys;
pub mod sysctl;
pub mod tap;
pub mod trusted_dir;
pub mod vhost_user;
pub mod vmm;
pub mod watch;

pub use endpoint::{Backend, Endpoint};
pub use error::{Error, Result};
pub use mac::MacAddr;
pub use model::Model;
pub use ops::{
    AttachOptions, Attachment, Detached, EndpointChange, GcOptions, GcReport, add_endpoint, attach,
    describe_guest, detach, gc, guest_config, list, remove_endpoint, set_rate, status,
};
pub use ops::{StaticOptions, attach_static};
pub use vmm::{Handoff, HandoffOptions, handoff};
pub use watch::{WatchEvent, WatchOptions, watch};
