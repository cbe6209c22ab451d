//! CNI records: which attachments were made through CNI, for which (network, container,
//! interface). One small JSON file per sandbox id in `STATE_DIR/cni/`, next to the
//! sandbox's own state, with its own lock so that CNI commands on one attachment are
//! serialised. DEL and GC only ever remove attachments that have a record, so an
//! attachment made with the CLI is never touched by CNI.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state::{Lock, StateDir};
use crate::{Error, Result};

/// The subdirectory of the state directory holding the records.
pub const RECORD_DIR: &str = "cni";
/// The record schema version.
pub const RECORD_VERSION: u32 = 1;

/// What CNI attached under a sandbox id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub version: u32,
    /// The network name of the configuration.
    pub network: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
}

impl Record {
    /// True when this record is the attachment of (`container_id`, `ifname`).
    pub fn is_for(&self, container_id: &str, ifname: &str) -> bool {
        self.container_id == container_id && self.ifname == ifname
    }
}

/// The record directory.
#[derive(Debug, Clone)]
pub struct Records {
    dir: StateDir,
}

impl Records {
    /// Open (creating, mode 0700) `STATE_DIR/cni`.
    pub fn open(state_dir: &Path) -> Result<Records> {
        Ok(Records {
            dir: StateDir::open(&state_dir.join(RECORD_DIR))?,
        })
    }

    /// Take the record lock of a sandbox id without waiting (`Error::Busy` when held).
    pub fn lock(&self, id: &str) -> Result<Lock> {
        self.dir.lock(id)
    }

    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.state_path(id)
    }

    /// Every sandbox id with a record.
    pub fn ids(&self) -> Result<Vec<String>> {
        self.dir.ids()
    }

    pub fn load(&self, id: &str) -> Result<Option<Record>> {
        let path = self.path(id);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::state(&path, "read CNI record", e)),
        };
        let record: Record = serde_json::from_str(&text).map_err(|e| Error::CorruptState {
            path: path.clone(),
            reason: format!("CNI record: {e}"),
        })?;
        if record.version != RECORD_VERSION {
            return Err(Error::CorruptState {
                path,
                reason: format!(
                    "CNI record version {} is not supported (this build reads {RECORD_VERSION})",
                    record.version
                ),
            });
        }
        Ok(Some(record))
    }

    /// Write a record atomically (temp file 0600, fsync, rename).
    pub fn save(&self, id: &str, record: &Record) -> Result<()> {
        let path = self.path(id);
        let tmp = self.dir.path().join(format!(".{id}.json.tmp"));
        let text = serde_json::to_vec_pretty(record)
            .map_err(|e| Error::state(&path, "encode CNI record", io::Error::other(e)))?;
        crate::state::write_atomically(&path, &tmp, &text, true)
            .map_err(|e| Error::state(&path, "write CNI record", e))
    }

    /// Remove a record (absent is fine).
    pub fn remove(&self, id: &str) -> Result<()> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::state(&path, "remove CNI record", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_lock() {
        let dir = std::env::temp_dir().join(format!("sn-cni-record-{}", std::process::id()));
        let records = Records::open(&dir).expect("open");
        let r = Record {
            version: RECORD_VERSION,
            network: "net".into(),
            container_id: "c1".into(),
            ifname: "eth0".into(),
            netns: "/run/netns/x".into(),
        };
        let lock = records.lock("c1-eth0").expect("lock");
        assert!(matches!(records.lock("c1-eth0"), Err(Error::Busy { .. })));
        records.save("c1-eth0", &r).expect("save");
        assert_eq!(records.load("c1-eth0").expect("load"), Some(r.clone()));
        assert_eq!(records.ids().expect("ids"), vec!["c1-eth0".to_string()]);
        assert!(r.is_for("c1", "eth0") && !r.is_for("c1", "eth1"));
        records.remove("c1-eth0").expect("remove");
        records.remove("c1-eth0").expect("remove again");
        assert_eq!(records.load("c1-eth0").expect("load"), None);
        drop(lock);
        let _ = fs::remove_dir_all(&dir);
    }
}
