//! CNI records: which attachments were made through CNI, for which (network, container,
//! interface). One small JSON file per sandbox id in `STATE_DIR/cni/`, next to the
//! sandbox's own state, with its own lock so that CNI commands on one attachment are
//! serialised. DEL and GC only ever remove attachments that have a record, so an
//! attachment made with the CLI is never touched by CNI.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::id;
use crate::state::{self, Lock, StateDir};
use crate::trusted_dir::TrustedDir;
use crate::{Error, Result};

/// The subdirectory of the state directory holding the records.
pub const RECORD_DIR: &str = "cni";
/// The record schema version.
pub const RECORD_VERSION: u32 = 1;
/// The largest record read (and written): 64 KiB. A record is four short strings (the
/// network name, a container id, an interface name of at most 15 bytes and a netns path of
/// at most PATH_MAX, 4096 bytes): a few hundred bytes, a few KiB at the very most.
pub const RECORD_FILE_LIMIT: u64 = 64 << 10;

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

/// The record directory: `STATE_DIR/cni`, a [`TrustedDir`] inside the state directory,
/// held and checked like it.
#[derive(Debug, Clone)]
pub struct Records {
    dir: TrustedDir,
}

impl Records {
    /// Open (creating, mode 0700) `STATE_DIR/cni`.
    pub fn open(state_dir: &Path) -> Result<Records> {
        let dir = StateDir::open(state_dir)?
            .trusted()
            .child(RECORD_DIR, "CNI record directory")?;
        Ok(Records { dir })
    }

    /// Open `STATE_DIR/cni` when the state directory exists (None: nothing was ever
    /// attached there); the record directory is created in it when missing.
    pub fn open_existing(state_dir: &Path) -> Result<Option<Records>> {
        let Some(store) = StateDir::open_existing(state_dir)? else {
            return Ok(None);
        };
        let dir = store.trusted().child(RECORD_DIR, "CNI record directory")?;
        Ok(Some(Records { dir }))
    }

    /// The lock file of a sandbox id's record.
    pub fn lock_path(&self, id: &str) -> PathBuf {
        self.dir.file_path(&format!("{id}.lock"))
    }

    /// The sandbox id under which (`container_id`, `ifname`) has a record of its own: its
    /// id ([`id::sandbox_id`]), else the one an earlier build gave it
    /// ([`id::legacy_sandbox_id`]). None when neither has one. Takes no lock.
    pub fn find(&self, container_id: &str, ifname: &str) -> Result<Option<String>> {
        for sandbox in [
            id::sandbox_id(container_id, ifname),
            id::legacy_sandbox_id(container_id, ifname),
        ] {
            if self
                .load(&sandbox)?
                .is_some_and(|r| r.is_for(container_id, ifname))
            {
                return Ok(Some(sandbox));
            }
        }
        Ok(None)
    }

    /// Take the record lock of a sandbox id without waiting (`Error::Busy` when held).
    pub fn lock(&self, id: &str) -> Result<Lock> {
        state::lock_id(&self.dir, id)
    }

    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.file_path(&state::file_name(id))
    }

    /// Every sandbox id with a record.
    pub fn ids(&self) -> Result<Vec<String>> {
        state::ids_in(&self.dir)
    }

    pub fn load(&self, id: &str) -> Result<Option<Record>> {
        let path = self.path(id);
        let name = state::file_name(id);
        let Some(bytes) = self.dir.read(&name, RECORD_FILE_LIMIT, "CNI record")? else {
            return Ok(None);
        };
        let record: Record = serde_json::from_slice(&bytes).map_err(|e| Error::CorruptState {
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

    /// Write a record atomically (temp file 0600 created with `O_EXCL`, fsync, rename).
    pub fn save(&self, id: &str, record: &Record) -> Result<()> {
        let path = self.path(id);
        let text = serde_json::to_vec_pretty(record)
            .map_err(|e| Error::state(&path, "encode CNI record", io::Error::other(e)))?;
        self.dir
            .write_atomically(&state::file_name(id), &text, true, RECORD_FILE_LIMIT)
    }

    /// Remove a record (absent is fine).
    pub fn remove(&self, id: &str) -> Result<()> {
        self.dir.remove(&state::file_name(id))
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
        let _ = std::fs::remove_dir_all(&dir);
    }
}
