//! CNI errors: every failure of the plugin, its well-known error code, and the error JSON
//! the spec wants on stdout.
//!
//! Codes follow the CNI spec ("Error" section): 1 incompatible CNI version, 4 invalid
//! necessary environment variables, 5 I/O
//! failure, 6 failed to decode content, 7 invalid network configuration, 11 try again
//! later, 50 plugin not available (STATUS). Codes of 100 and up are this plugin's own.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::{env, version};

pub const INCOMPATIBLE_VERSION: u32 = 1;
pub const INVALID_ENV: u32 = 4;
pub const IO_FAILURE: u32 = 5;
pub const DECODE: u32 = 6;
pub const INVALID_CONFIG: u32 = 7;
pub const TRY_AGAIN_LATER: u32 = 11;
pub const NOT_AVAILABLE: u32 = 50;
/// Plugin-specific: the sandbox id is already attached (a second ADD, or an id collision).
pub const ALREADY_ATTACHED: u32 = 100;
/// Plugin-specific: CHECK found the attachment missing, drifted, or not matching prevResult.
pub const CHECK_FAILED: u32 = 101;

/// Everything that can make a CNI command fail.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("incompatible CNI version {version:?} in the network configuration (supported: {})", version::SUPPORTED.join(", "))]
    IncompatibleVersion { version: String },

    #[error("{command} needs cniVersion {min} or later; the network configuration has {version}")]
    CommandNeedsVersion {
        command: &'static str,
        min: &'static str,
        version: String,
    },

    #[error("environment variable {var}: {reason}")]
    Env { var: &'static str, reason: String },

    #[error("read the network configuration from stdin: {source}")]
    Stdin {
        #[source]
        source: std::io::Error,
    },

    #[error("cannot decode {what}: {reason}")]
    Decode { what: String, reason: String },

    #[error("invalid network configuration: {key}: {reason}")]
    Config { key: String, reason: String },

    #[error("sandbox {id}: already attached by {by}; DEL it first")]
    Taken { id: String, by: String },

    #[error("{step}: {source}")]
    Operation {
        step: String,
        #[source]
        source: crate::Error,
    },

    #[error("CHECK of sandbox {id}: {}", problems.join("; "))]
    CheckFailed { id: String, problems: Vec<String> },

    #[error("GC of network {network}: {}", failures.join("; "))]
    GcFailed {
        network: String,
        failures: Vec<String>,
    },

    #[error("not available: {reason}")]
    NotAvailable { reason: String },

    #[error(
        "{step}: another sandbox-net process (a CLI command or a watch) still holds the lock {}{} after {:.1} s; try again later",
        lock.display(),
        if holder.is_empty() { String::new() } else { format!(" ({holder})") },
        waited.as_secs_f64()
    )]
    LockTimeout {
        step: String,
        lock: PathBuf,
        /// Who holds it, as `/proc/locks` tells ("pid N (COMMAND)"), or empty.
        holder: String,
        waited: Duration,
    },
}

impl CniError {
    pub fn env(var: &'static str, reason: impl Into<String>) -> CniError {
        CniError::Env {
            var,
            reason: reason.into(),
        }
    }

    pub fn config(key: impl Into<String>, reason: impl Into<String>) -> CniError {
        CniError::Config {
            key: key.into(),
            reason: reason.into(),
        }
    }

    pub fn decode(what: impl Into<String>, reason: impl Into<String>) -> CniError {
        CniError::Decode {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// A failure of the library's operation `step`. A netns that can't be used is the
    /// runtime's CNI_NETNS: code 4, naming the variable.
    pub fn op(step: impl Into<String>, source: crate::Error) -> CniError {
        let step = step.into();
        match source {
            crate::Error::BadNetns { .. } => CniError::Env {
                var: env::NETNS,
                reason: format!("{step}: {source}"),
            },
            source => CniError::Operation { step, source },
        }
    }

    /// The well-known CNI error code.
    pub fn code(&self) -> u32 {
        match self {
            CniError::IncompatibleVersion { .. } | CniError::CommandNeedsVersion { .. } => {
                INCOMPATIBLE_VERSION
            }
            CniError::Env { .. } => INVALID_ENV,
            CniError::Stdin { .. } => IO_FAILURE,
            CniError::Decode { .. } => DECODE,
            CniError::Config { .. } => INVALID_CONFIG,
            CniError::Taken { .. } => ALREADY_ATTACHED,
            CniError::Operation { source, .. } => code_of(source),
            CniError::CheckFailed { .. } => CHECK_FAILED,
            CniError::GcFailed { .. } => IO_FAILURE,
            CniError::NotAvailable { .. } => NOT_AVAILABLE,
            CniError::LockTimeout { .. } => TRY_AGAIN_LATER,
        }
    }

    /// The spec's error JSON: `{"cniVersion","code","msg","details"}`.
    pub fn to_json(&self, cni_version: &str) -> String {
        let details = match self {
            CniError::IncompatibleVersion { .. } | CniError::CommandNeedsVersion { .. } => {
                format!("supported versions: {}", version::SUPPORTED.join(", "))
            }
            CniError::Env { var, .. } => format!("environment variable {var}"),
            CniError::Config { key, .. } => format!("configuration key {key}"),
            CniError::Taken { id, .. } => format!("sandbox id {id}"),
            CniError::LockTimeout { lock, .. } => format!("lock file {}", lock.display()),
            CniError::Operation { source, .. } => causes(source),
            _ => String::new(),
        };
        let body = ErrorJson {
            cni_version,
            code: self.code(),
            msg: self.to_string(),
            details,
        };
        serde_json::to_string_pretty(&body).unwrap_or_else(|_| {
            format!(
                r#"{{"cniVersion":"{cni_version}","code":{},"msg":"","details":""}}"#,
                self.code()
            )
        })
    }
}

/// The error and what caused it, as readable text: "a: b: c".
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let more = cause.to_string();
        if !text.ends_with(&more) {
            text = format!("{text}: {more}");
        }
        next = cause.source();
    }
    text
}

/// The error JSON, fields in the spec's order.
#[derive(Serialize)]
struct ErrorJson<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    code: u32,
    msg: String,
    details: String,
}

/// The CNI code for a failure of the library's operations.
fn code_of(e: &crate::Error) -> u32 {
    use crate::Error as E;
    match e {
        // The kinds that were `InvalidInput` before they had variants of their own keep
        // its code.
        E::InvalidInput { .. }
        | E::Unsupported { .. }
        | E::NothingToAttach { .. }
        | E::NotAttached { .. }
        | E::NetnsLost { .. }
        | E::InterfaceNotFound { .. } => INVALID_CONFIG,
        E::BadNetns { .. } => INVALID_ENV,
        E::AlreadyAttached { .. } => ALREADY_ATTACHED,
        E::Busy { .. } => TRY_AGAIN_LATER,
        _ => IO_FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_spec() {
        assert_eq!(
            CniError::IncompatibleVersion {
                version: "9.9.9".into()
            }
            .code(),
            1
        );
        assert_eq!(CniError::env("CNI_NETNS", "missing").code(), 4);
        assert_eq!(CniError::decode("stdin", "bad").code(), 6);
        assert_eq!(CniError::config("prevResult", "missing").code(), 7);
        let busy = CniError::op("attach", crate::Error::Busy { id: "x".into() });
        assert_eq!(busy.code(), 11);
    }

    #[test]
    fn error_json_has_the_spec_fields() {
        let text = CniError::env("CNI_IFNAME", "is not set").to_json("1.0.0");
        let j: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(j["cniVersion"], "1.0.0");
        assert_eq!(j["code"], 4);
        assert_eq!(j["msg"], "environment variable CNI_IFNAME: is not set");
        assert_eq!(j["details"], "environment variable CNI_IFNAME");
    }

    #[test]
    fn a_bad_netns_names_the_variable_and_details_are_text() {
        let bad = crate::Error::BadNetns {
            netns: "/run/netns/x".into(),
            problem: crate::error::NetnsProblem::NotFound,
            reason: "does not exist".into(),
        };
        let e = CniError::op("ADD s: attach eth0", bad);
        assert_eq!(e.code(), 4);
        assert!(
            e.to_string()
                .starts_with("environment variable CNI_NETNS: "),
            "{e}"
        );
        let io = crate::Error::state(
            std::path::Path::new("/s/x.json"),
            "read",
            std::io::Error::from_raw_os_error(libc::EIO),
        );
        let text = CniError::op("DEL s", io).to_json("1.0.0");
        let j: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let details = j["details"].as_str().unwrap_or_default();
        assert!(details.contains("/s/x.json"), "{details}");
        assert!(
            !details.contains("State {") && !details.contains("Os {"),
            "{details}"
        );
    }
}
