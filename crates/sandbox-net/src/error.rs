//! The crate's error type. Every variant names the object it is about and the step that
//! failed, and knows whether it is the caller's fault (exit 2) or an operation failure (1).

use std::io;
use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in sandbox-net.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from the user: a malformed value, an impossible option. Nothing was changed.
    #[error("invalid {what}: {reason}")]
    InvalidInput { what: String, reason: String },

    /// The netns argument does not name a namespace we may attach.
    #[error("netns {netns}: {reason}")]
    BadNetns { netns: String, reason: String },

    /// An interface in the netns can't be attached (unsupported kind, bad configuration).
    #[error("interface {iface} in netns {netns}: {reason}")]
    Unsupported {
        iface: String,
        netns: String,
        reason: String,
    },

    /// The netns holds no interface that could be attached.
    #[error("netns {netns}: no usable interface (every interface is loopback or has no address)")]
    NothingToAttach { netns: String },

    /// The sandbox id is already attached.
    #[error("sandbox {id}: already attached (state file {path}); detach it first")]
    AlreadyAttached { id: String, path: PathBuf },

    /// Another process holds the sandbox's lock.
    #[error("sandbox {id}: busy: another sandbox-net process is working on this sandbox")]
    Busy { id: String },

    /// A kernel operation failed.
    #[error("{object}: {step}: {source}")]
    Kernel {
        object: String,
        step: String,
        #[source]
        source: io::Error,
    },

    /// Reading or writing persisted state failed.
    #[error("state {path}: {step}: {source}")]
    State {
        path: PathBuf,
        step: String,
        #[source]
        source: io::Error,
    },

    /// A state file exists but can't be understood.
    #[error("state {path}: {reason}")]
    CorruptState { path: PathBuf, reason: String },

    /// What sandbox-net produced could not be encoded as JSON: an internal failure.
    #[error("{what}: cannot encode JSON: {reason}")]
    Encode { what: String, reason: String },

    /// The operation was interrupted by a signal and cleaned up after itself.
    #[error("{operation}: interrupted by a signal; cleaned up")]
    Interrupted { operation: String },

    /// A failure injected by a test failpoint (only with the `failpoints` feature).
    #[cfg(feature = "failpoints")]
    #[error("{object}: {step}: injected failure (failpoint)")]
    Injected { object: String, step: String },
}

impl Error {
    /// The process exit code this error maps to: 2 for bad usage or input, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::InvalidInput { .. }
            | Error::BadNetns { .. }
            | Error::Unsupported { .. }
            | Error::NothingToAttach { .. }
            | Error::AlreadyAttached { .. }
            // A state file of another version, or one that is not a state, is refused as it
            // is, never guessed at: bad input, like a bad argument.
            | Error::CorruptState { .. } => 2,
            _ => 1,
        }
    }

    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub fn kernel(object: impl Into<String>, step: impl Into<String>, source: io::Error) -> Self {
        Error::Kernel {
            object: object.into(),
            step: step.into(),
            source,
        }
    }

    /// `what` could not be encoded as JSON (exit 1: not the caller's fault).
    pub fn encode(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Encode {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    pub fn state(path: impl Into<PathBuf>, step: impl Into<String>, source: io::Error) -> Self {
        Error::State {
            path: path.into(),
            step: step.into(),
            source,
        }
    }
}
