//! The network configuration on stdin: the spec's fields (`cniVersion`, `name`, `type`,
//! `prevResult`, `cni.dev/valid-attachments`) and sandbox-net's own keys.
//!
//! | key | meaning |
//! |---|---|
//! | `model` | interworking model (default `tcfilter`) |
//! | `queues` | queues per tap (default 1) |
//! | `tapQueueLen` | frames each tap (or macvtap) queue holds for the guest, its `txqueuelen` (default 1000, at most 16384) |
//! | `tapName` | the tap's name (default `tap_<CNI_IFNAME>`, cut to 15 bytes) |
//! | `tapUid`, `tapGid` | owner and group of the tap |
//! | `stateDir` | state directory (default `$SANDBOX_NET_STATE_DIR`, else `/run/sandbox-net`) |
//! | `rxRate`, `txRate` | rate limits toward / from the guest: `"20mbit"` (iproute2 units) or bits per second |
//! | `lockTimeout` | seconds DEL waits for a sandbox another sandbox-net process holds (default 10, at most 600) |
//!
//! Other keys are ignored, as the spec asks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::error::CniError;
use super::version;
use crate::model::Model;
use crate::rate::Rate;
use crate::state::StateDir;
use crate::tap;

/// The key under which CNI 1.1.0 runtimes pass the attachments GC must keep.
pub const VALID_ATTACHMENTS: &str = "cni.dev/valid-attachments";
/// The same list under the name an earlier draft used; libcni sends both.
const ATTACHMENTS_ALIAS: &str = "cni.dev/attachments";
/// How long DEL waits for a sandbox another process holds, when `lockTimeout` is not set.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `lockTimeout`: a runtime's own DEL timeout is shorter than this.
const MAX_LOCK_TIMEOUT_SECS: f64 = 600.0;

/// A parsed network configuration.
#[derive(Debug, Clone)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub prev_result: Option<Value>,
    keys: Map<String, Value>,
}

/// sandbox-net's settings for an ADD, before CNI_ARGS overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachSettings {
    pub model: Model,
    pub queues: u32,
    pub tap_queue_len: u32,
    pub tap_name: Option<String>,
    pub tap_uid: Option<u32>,
    pub tap_gid: Option<u32>,
    pub rx_rate: Option<Rate>,
    pub tx_rate: Option<Rate>,
}

/// One (container, interface) pair GC must keep.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttachmentKey {
    pub container_id: String,
    pub ifname: String,
}

/// Just the `cniVersion` of stdin, when it is there: the version error JSON is written in.
pub fn peek_version(stdin: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(stdin).ok()?;
    value.get("cniVersion")?.as_str().map(String::from)
}

fn describe(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 80 {
        format!("{}...", &text[..text.floor_char_boundary(77)])
    } else {
        text
    }
}

impl NetConf {
    /// Decode stdin (code 6 when it is not a JSON object) and check `cniVersion` (code 1)
    /// and `name` (code 7).
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let value: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::decode(
                "the network configuration on stdin",
                format!("not JSON: {e}"),
            )
        })?;
        let Value::Object(keys) = value else {
            return Err(CniError::decode(
                "the network configuration on stdin",
                format!("expected a JSON object, got {}", describe(&value)),
            ));
        };
        let cni_version = match keys.get("cniVersion") {
            None | Some(Value::Null) => version::IMPLIED.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(CniError::config(
                    "cniVersion",
                    format!("must be a string, got {}", describe(other)),
                ));
            }
        };
        if !version::is_supported(&cni_version) {
            return Err(CniError::IncompatibleVersion {
                version: cni_version,
            });
        }
        let name = match keys.get("name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            None | Some(Value::Null) => return Err(CniError::config("name", "is missing")),
            Some(other) => {
                return Err(CniError::config(
                    "name",
                    format!("must be a non-empty string, got {}", describe(other)),
                ));
            }
        };
        let prev_result = keys.get("prevResult").filter(|v| !v.is_null()).cloned();
        Ok(NetConf {
            cni_version,
            name,
            prev_result,
            keys,
        })
    }

    /// Fail with code 1 unless the configuration's version has `command`.
    pub fn require_version(
        &self,
        command: &'static str,
        min: &'static str,
    ) -> Result<(), CniError> {
        if version::at_least(&self.cni_version, min) {
            Ok(())
        } else {
            Err(CniError::CommandNeedsVersion {
                command,
                min,
                version: self.cni_version.clone(),
            })
        }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.keys.get(key).filter(|v| !v.is_null())
    }

    fn string(&self, key: &str) -> Result<Option<&str>, CniError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(CniError::config(
                key,
                format!("must be a string, got {}", describe(other)),
            )),
        }
    }

    fn uint(&self, key: &str) -> Result<Option<u32>, CniError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    CniError::config(
                        key,
                        format!(
                            "must be an integer from 0 to {}, got {}",
                            u32::MAX,
                            describe(v)
                        ),
                    )
                }),
        }
    }

    /// The state directory: `stateDir`, else $SANDBOX_NET_STATE_DIR, else the default.
    pub fn state_dir(&self) -> Result<PathBuf, CniError> {
        let explicit = self.string("stateDir")?;
        if let Some(dir) = explicit
            && !Path::new(dir).is_absolute()
        {
            return Err(CniError::config(
                "stateDir",
                format!("{dir:?} is not an absolute path"),
            ));
        }
        Ok(StateDir::resolve(explicit.map(Path::new)))
    }

    /// sandbox-net's keys for an ADD.
    pub fn attach_settings(&self) -> Result<AttachSettings, CniError> {
        let model = match self.string("model")? {
            None => Model::Tcfilter,
            Some(name) => name
                .parse::<Model>()
                .map_err(|e| CniError::config("model", e.to_string()))?,
        };
        let queues = self.uint("queues")?.unwrap_or(1);
        if queues == 0 || queues > tap::MAX_QUEUES {
            return Err(CniError::config(
                "queues",
                format!("{queues}: must be from 1 to {}", tap::MAX_QUEUES),
            ));
        }
        let tap_queue_len = self.uint("tapQueueLen")?.unwrap_or(tap::DEFAULT_QUEUE_LEN);
        tap::validate_queue_len(tap_queue_len).map_err(|reason| {
            CniError::config("tapQueueLen", format!("{tap_queue_len} {reason}"))
        })?;
        let tap_name = self.string("tapName")?.map(String::from);
        if let Some(name) = &tap_name {
            tap::validate_ifname(name)
                .map_err(|reason| CniError::config("tapName", format!("{name:?} {reason}")))?;
        }
        Ok(AttachSettings {
            model,
            queues,
            tap_queue_len,
            tap_name,
            tap_uid: self.uint("tapUid")?,
            tap_gid: self.uint("tapGid")?,
            rx_rate: self.rate("rxRate")?,
            tx_rate: self.rate("txRate")?,
        })
    }

    /// A rate: a string in iproute2 units ("20mbit") or a number of bits per second.
    fn rate(&self, key: &str) -> Result<Option<Rate>, CniError> {
        let bad = |v: &Value, reason: String| {
            CniError::config(key, format!("{reason} (got {})", describe(v)))
        };
        match self.get(key) {
            None => Ok(None),
            Some(v @ Value::String(s)) => s.parse::<Rate>().map(Some).map_err(|e| match e {
                crate::Error::InvalidInput { reason, .. } => bad(v, reason),
                other => bad(v, other.to_string()),
            }),
            Some(v) => v
                .as_u64()
                .and_then(Rate::from_bits_per_sec)
                .map(Some)
                .ok_or_else(|| {
                    bad(
                        v,
                        "must be a rate like \"20mbit\" or a positive number of bits per second"
                            .into(),
                    )
                }),
        }
    }

    /// `lockTimeout`: how long DEL waits for a sandbox another process holds, in seconds
    /// (a number from 0 to 600; default 10).
    pub fn lock_timeout(&self) -> Result<Duration, CniError> {
        const KEY: &str = "lockTimeout";
        match self.get(KEY) {
            None => Ok(DEFAULT_LOCK_TIMEOUT),
            Some(v) => v
                .as_f64()
                .filter(|s| (0.0..=MAX_LOCK_TIMEOUT_SECS).contains(s))
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    CniError::config(
                        KEY,
                        format!(
                            "must be a number of seconds from 0 to {MAX_LOCK_TIMEOUT_SECS}, got {}",
                            describe(v)
                        ),
                    )
                }),
        }
    }

    /// Everything an ADD would refuse in the configuration alone (STATUS asks this):
    /// sandbox-net's keys, the state directory's path and `lockTimeout`.
    pub fn validate(&self) -> Result<(), CniError> {
        self.attach_settings()?;
        self.state_dir()?;
        self.lock_timeout()?;
        Ok(())
    }

    /// The attachments GC must keep (`cni.dev/valid-attachments`). Missing or `null` is
    /// an empty list, as the Go plugins read it (CRI-O sends `null` for a network with no
    /// live pod): GC then collects every attachment of this network.
    pub fn valid_attachments(&self) -> Result<Vec<AttachmentKey>, CniError> {
        let key = if self.get(VALID_ATTACHMENTS).is_some() {
            VALID_ATTACHMENTS
        } else {
            ATTACHMENTS_ALIAS
        };
        let Some(value) = self.get(key) else {
            return Ok(Vec::new());
        };
        let Value::Array(items) = value else {
            return Err(CniError::config(
                key,
                format!("must be a list, got {}", describe(value)),
            ));
        };
        items
            .iter()
            .enumerate()
            .map(|(n, item)| {
                let field = |name: &str| {
                    item.get(name)
                        .and_then(Value::as_str)
                        .map(String::from)
                        .ok_or_else(|| {
                            CniError::config(
                                format!("{key}[{n}].{name}"),
                                format!("must be a string, in {}", describe(item)),
                            )
                        })
                };
                Ok(AttachmentKey {
                    container_id: field("containerID")?,
                    ifname: field("ifname")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> Result<NetConf, CniError> {
        NetConf::parse(text.as_bytes())
    }

    #[test]
    fn versions_json_and_name_are_checked_first() {
        assert_eq!(conf("{").err().map(|e| e.code()), Some(6));
        assert_eq!(conf("[1]").err().map(|e| e.code()), Some(6));
        for v in ["0.1.0", "9.9.9"] {
            let text = format!(r#"{{"cniVersion":"{v}","name":"n","type":"sandbox-net"}}"#);
            assert_eq!(conf(&text).err().map(|e| e.code()), Some(1), "{v}");
        }
        assert_eq!(
            conf(r#"{"name":"n","type":"sandbox-net"}"#)
                .err()
                .map(|e| e.code()),
            Some(1)
        );
        assert_eq!(
            conf(r#"{"cniVersion":"1.0.0","type":"sandbox-net"}"#)
                .err()
                .map(|e| e.code()),
            Some(7)
        );
    }

    #[test]
    fn settings_have_defaults_and_are_validated() {
        let c = conf(r#"{"cniVersion":"1.0.0","name":"n"}"#).expect("parse");
        let s = c.attach_settings().expect("settings");
        assert_eq!(s.model, Model::Tcfilter);
        assert_eq!((s.queues, s.tap_name, s.tap_uid), (1, None, None));
        assert_eq!(s.tap_queue_len, tap::DEFAULT_QUEUE_LEN);

        let c = conf(r#"{"cniVersion":"1.0.0","name":"n","queues":4,"tapQueueLen":4000,"tapName":"fc0","tapUid":7,"rxRate":"20mbit","txRate":1000,"unknownKey":1}"#)
            .expect("parse");
        let s = c.attach_settings().expect("settings");
        assert_eq!(s.tap_queue_len, 4000);
        assert_eq!(s.rx_rate.map(Rate::bits_per_sec), Some(20_000_000));
        assert_eq!(s.tx_rate.map(Rate::bits_per_sec), Some(1000));
        assert_eq!(
            (s.queues, s.tap_name.as_deref(), s.tap_uid),
            (4, Some("fc0"), Some(7))
        );

        for (bad, code) in [
            (r#""queues":0"#, 7),
            (r#""queues":"2""#, 7),
            (r#""tapQueueLen":0"#, 7),
            (r#""tapQueueLen":16385"#, 7),
            (r#""tapQueueLen":"1000""#, 7),
            (r#""model":"bogus""#, 7),
            (r#""tapName":"a/b""#, 7),
            (r#""tapUid":-1"#, 7),
            (r#""rxRate":0"#, 7),
            (r#""rxRate":"fast""#, 7),
            (r#""txRate":{"rate":1}"#, 7),
        ] {
            let c = conf(&format!(r#"{{"cniVersion":"1.0.0","name":"n",{bad}}}"#)).expect("parse");
            let e = c.attach_settings().err();
            assert_eq!(e.as_ref().map(CniError::code), Some(code), "{bad}: {e:?}");
        }
    }

    #[test]
    fn valid_attachments_parse() {
        let c = conf(
            r#"{"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}"#,
        )
        .expect("parse");
        assert_eq!(
            c.valid_attachments().expect("list"),
            vec![AttachmentKey {
                container_id: "c1".into(),
                ifname: "eth0".into()
            }]
        );
        // Missing or null: an empty list (collect everything of this network).
        for text in [
            r#"{"cniVersion":"1.1.0","name":"n"}"#,
            r#"{"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":null}"#,
        ] {
            let c = conf(text).expect("parse");
            assert_eq!(c.valid_attachments().expect("list"), vec![], "{text}");
        }
        let c = conf(r#"{"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":{}}"#)
            .expect("parse");
        assert_eq!(c.valid_attachments().err().map(|e| e.code()), Some(7));
    }

    #[test]
    fn lock_timeout_is_bounded() {
        let timeout = |extra: &str| {
            conf(&format!(r#"{{"cniVersion":"1.0.0","name":"n"{extra}}}"#))
                .expect("parse")
                .lock_timeout()
        };
        assert_eq!(timeout("").ok(), Some(DEFAULT_LOCK_TIMEOUT));
        assert_eq!(
            timeout(r#","lockTimeout":1.5"#).ok(),
            Some(Duration::from_millis(1500))
        );
        for bad in [
            r#","lockTimeout":-1"#,
            r#","lockTimeout":601"#,
            r#","lockTimeout":"5""#,
        ] {
            assert_eq!(timeout(bad).err().map(|e| e.code()), Some(7), "{bad}");
        }
    }

    #[test]
    fn state_dir_must_be_absolute() {
        let c = conf(r#"{"cniVersion":"1.0.0","name":"n","stateDir":"rel"}"#).expect("parse");
        assert!(c.state_dir().is_err());
        let c = conf(r#"{"cniVersion":"1.0.0","name":"n","stateDir":"/x"}"#).expect("parse");
        assert_eq!(c.state_dir().ok(), Some(PathBuf::from("/x")));
    }
}
