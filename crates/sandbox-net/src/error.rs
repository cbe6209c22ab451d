//! The crate's error type. Every variant names the object it is about and the step that
//! failed, and a program can branch on the kind of failure by matching the variant (and,
//! for a namespace that can't be used, its [`NetnsProblem`]); `exit_code()` is the CLI's
//! rule: 3 when the sandbox is not attached, 2 for bad input, 1 for a failed operation.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a network namespace can't be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetnsProblem {
    /// Nothing is at the path (or the recorded namespace no longer exists).
    NotFound,
    /// The path is not a network namespace (not on nsfs, or a namespace of another type).
    NotANetns,
    /// The caller's own or the host's (PID 1's) netns, refused unless allowed.
    HostRefused,
    /// Another namespace is at the recorded path now (deleted and re-created under the
    /// same name, or a reused PID): nothing in it may be touched.
    Replaced,
    /// Anything else: a malformed name, a path that can't be opened or examined.
    Unusable,
}

/// Everything that can go wrong in sandbox-net.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input from the user: a malformed value, an impossible option. Nothing was changed.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What was given (an argument, a field, an object).
        what: String,
        /// Why it is refused.
        reason: String,
    },

    /// The netns argument does not name a namespace we may attach.
    #[error("netns {netns}: {reason}")]
    BadNetns {
        /// The namespace as the caller named it.
        netns: String,
        /// Why it can't be used.
        problem: NetnsProblem,
        /// One sentence naming the path.
        reason: String,
    },

    /// The netns an attached sandbox was attached in is gone, or another namespace is at its
    /// path now; the operation needs it.
    #[error("sandbox {id}: {reason}")]
    NetnsLost {
        /// The sandbox.
        id: String,
        /// [`NetnsProblem::NotFound`] or [`NetnsProblem::Replaced`].
        problem: NetnsProblem,
        /// One sentence naming the path and what was refused.
        reason: String,
    },

    /// Nothing is attached under this sandbox id.
    #[error("sandbox {id}: not attached")]
    NotAttached {
        /// The sandbox id.
        id: String,
    },

    /// A named interface is not there: not in the netns, or not attached in the sandbox.
    #[error("interface {iface} {within}: {reason}")]
    InterfaceNotFound {
        /// The interface.
        iface: String,
        /// Where it was looked for ("in netns pod1", "of sandbox vm1").
        within: String,
        /// What is missing ("no such interface", "is not attached").
        reason: String,
    },

    /// A device name sandbox-net was to give is taken in the netns (by another sandbox,
    /// when the device's owner alias says so). Not retryable: unlike [`Error::Busy`], the
    /// name stays taken until its owner lets it go.
    #[error(
        "{kind} {name} in netns {netns}: cannot be created: the name is in use{}",
        in_use_by(by)
    )]
    NameInUse {
        /// What was to be created ("tap", "macvtap", "ifb").
        kind: &'static str,
        /// The device name.
        name: String,
        /// The netns.
        netns: String,
        /// The sandbox whose alias the device carries, when it carries one.
        by: Option<String>,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },

    /// An interface in the netns can't be attached (unsupported kind, bad configuration).
    #[error("interface {iface} in netns {netns}: {reason}")]
    Unsupported {
        /// The interface.
        iface: String,
        /// The netns.
        netns: String,
        /// Why it can't be attached.
        reason: String,
    },

    /// The netns holds no interface that could be attached.
    #[error("netns {netns}: no usable interface (every interface is loopback or has no address)")]
    NothingToAttach {
        /// The netns.
        netns: String,
    },

    /// The sandbox id is already attached.
    #[error("sandbox {id}: already attached (state file {path}); detach it first")]
    AlreadyAttached {
        /// The sandbox id.
        id: String,
        /// Its state file.
        path: PathBuf,
    },

    /// Another process holds the sandbox's lock: try again later.
    #[error("sandbox {id}: busy: another sandbox-net process is working on this sandbox")]
    Busy {
        /// The sandbox id.
        id: String,
    },

    /// A kernel operation failed.
    #[error("{object}: {step}: {source}")]
    Kernel {
        /// The object (interface, netns, sandbox) it was about.
        object: String,
        /// The step that failed.
        step: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },

    /// Reading or writing persisted state failed.
    #[error("state {path}: {step}: {source}")]
    State {
        /// The state file or directory.
        path: PathBuf,
        /// The step that failed.
        step: String,
        /// The system's answer.
        #[source]
        source: io::Error,
    },

    /// A state file exists but can't be understood.
    #[error("state {path}: {reason}")]
    CorruptState {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// What sandbox-net produced could not be encoded as JSON: an internal failure.
    #[error("{what}: cannot encode JSON: {reason}")]
    Encode {
        /// What was encoded.
        what: String,
        /// The encoder's answer.
        reason: String,
    },

    /// The operation was interrupted by a signal and cleaned up after itself.
    #[error("{operation}: interrupted by a signal; cleaned up")]
    Interrupted {
        /// The operation.
        operation: String,
    },

    /// A failure injected by a test failpoint (only with the `failpoints` feature).
    #[cfg(feature = "failpoints")]
    #[error("{object}: {step}: injected failure (failpoint)")]
    Injected {
        /// The object of the step.
        object: String,
        /// The step.
        step: String,
    },
}

fn in_use_by(by: &Option<String>) -> String {
    match by {
        Some(id) => format!(" by sandbox {id:?}"),
        None => " by a device that is not sandbox-net's".into(),
    }
}

impl Error {
    /// The process exit code this error maps to (the CLI's rule, docs/cli.md): 3 when the
    /// sandbox is not attached, 2 for bad usage or input, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NotAttached { .. } => 3,
            Error::InvalidInput { .. }
            | Error::BadNetns { .. }
            | Error::NetnsLost { .. }
            | Error::InterfaceNotFound { .. }
            | Error::Unsupported { .. }
            | Error::NothingToAttach { .. }
            | Error::AlreadyAttached { .. }
            // A state file of another version, or one that is not a state, is refused as it
            // is, never guessed at: bad input, like a bad argument.
            | Error::CorruptState { .. } => 2,
            _ => 1,
        }
    }

    /// Why a namespace can't be used, for both the netns a caller names
    /// ([`Error::BadNetns`]) and the one an attached sandbox recorded
    /// ([`Error::NetnsLost`]); None for every other error.
    pub fn netns_problem(&self) -> Option<NetnsProblem> {
        match self {
            Error::BadNetns { problem, .. } | Error::NetnsLost { problem, .. } => Some(*problem),
            _ => None,
        }
    }

    /// An [`Error::InvalidInput`].
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Kernel`].
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

    /// An [`Error::State`].
    pub fn state(path: impl Into<PathBuf>, step: impl Into<String>, source: io::Error) -> Self {
        Error::State {
            path: path.into(),
            step: step.into(),
            source,
        }
    }

    /// An [`Error::NotAttached`].
    pub fn not_attached(id: impl Into<String>) -> Self {
        Error::NotAttached { id: id.into() }
    }
}

/// Run `op` again while it fails with [`Error::Busy`] (another process holds the sandbox's
/// lock), for up to `wait`: a bounded wait on the lock, which the operations themselves
/// never wait for. Sleeps on the calling thread between tries (5 ms, doubling up to
/// 100 ms); the last `Busy` is returned when `wait` runs out, any other outcome at once.
pub fn wait_while_busy<T>(wait: Duration, mut op: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(5);
    loop {
        match op() {
            Err(Error::Busy { id }) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(Error::Busy { id });
                }
                tracing::debug!(%id, ?pause, "busy; trying again");
                std::thread::sleep(pause.min(deadline - now));
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn busy_is_tried_again_until_the_wait_runs_out() {
        let mut tries = 0;
        let r = wait_while_busy(Duration::from_secs(2), || {
            tries += 1;
            if tries < 3 {
                Err(Error::Busy { id: "x".into() })
            } else {
                Ok(tries)
            }
        });
        assert_eq!(r.ok(), Some(3));
        let start = Instant::now();
        let r: Result<()> = wait_while_busy(Duration::from_millis(50), || {
            Err(Error::Busy { id: "x".into() })
        });
        assert!(matches!(r, Err(Error::Busy { .. })));
        assert!(start.elapsed() < Duration::from_secs(1));
        let mut calls = 0;
        let r: Result<()> = wait_while_busy(Duration::from_secs(2), || {
            calls += 1;
            Err(Error::not_attached("x"))
        });
        assert!(matches!(r, Err(Error::NotAttached { .. })) && calls == 1);
    }

    #[test]
    fn exit_codes_and_kinds() {
        assert_eq!(Error::not_attached("vm1").exit_code(), 3);
        assert_eq!(
            Error::not_attached("vm1").to_string(),
            "sandbox vm1: not attached"
        );
        assert_eq!(Error::Busy { id: "x".into() }.exit_code(), 1);
        let lost = Error::NetnsLost {
            id: "x".into(),
            problem: NetnsProblem::Replaced,
            reason: "r".into(),
        };
        assert_eq!(lost.netns_problem(), Some(NetnsProblem::Replaced));
        assert_eq!(lost.exit_code(), 2);
    }

    #[test]
    fn name_in_use_names_the_other_sandbox_and_chains_its_source() {
        let e = Error::NameInUse {
            kind: "tap",
            name: "tap0_sn".into(),
            netns: "pod1".into(),
            by: Some("other".into()),
            source: io::Error::from_raw_os_error(libc::EBUSY),
        };
        let text = e.to_string();
        assert!(
            text.contains("tap0_sn") && text.contains("by sandbox \"other\""),
            "{text}"
        );
        assert_eq!(e.exit_code(), 1);
        assert!(e.source().is_some());
    }
}
