//! Persisted attachments: one versioned JSON file per sandbox in the state directory (a
//! [`TrustedDir`]), written atomically (temp file renamed or exchanged into place; no
//! fsync, see `StateDir::save`; an attach's first state is written into the sandbox's lock
//! file and linked, its second appended, see `StateDir::create`) with mode 0600, read with a
//! size limit, and a per-sandbox lock.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;
use crate::guest::GuestConfig;
use crate::journal::Entry;
use crate::journal::ownership::Owner;
use crate::model::Model;
use crate::netns::NsId;
use crate::trusted_dir::TrustedDir;
use crate::{Error, Result};

/// The state directory used when none is given.
pub const DEFAULT_STATE_DIR: &str = "/run/sandbox-net";
/// The environment variable that overrides the default state directory.
pub const STATE_DIR_ENV: &str = "SANDBOX_NET_STATE_DIR";
/// The schema version this build writes and reads.
pub const STATE_VERSION: u32 = 1;

/// Check a sandbox id: `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`.
pub fn validate_id(id: &str) -> Result<()> {
    let bad = |reason: &str| Err(Error::invalid(format!("sandbox id {id:?}"), reason));
    let Some(first) = id.chars().next() else {
        return bad("empty");
    };
    if id.len() > 64 {
        return bad("longer than 64 characters");
    }
    if !first.is_ascii_alphanumeric() {
        return bad("must start with a letter or digit");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return bad("may contain only letters, digits, '_', '.' and '-'");
    }
    Ok(())
}

/// Where an attachment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The journal lists what attach is creating; the kernel may hold any prefix of it.
    Attaching,
    /// Everything in the journal exists.
    Attached,
}

/// Everything persisted about one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub id: String,
    /// What the user passed as --netns.
    pub netns: String,
    /// The resolved path of the netns.
    pub netns_path: PathBuf,
    /// The identity of the netns at attach time, so a namespace re-created under the same
    /// name is never mistaken for ours: the device and inode of its nsfs file...
    pub netns_id: NsId,
    /// ...and its cookie (`SO_NETNS_COOKIE`), which, unlike the inode, the kernel never
    /// reuses within a boot. None in states written before it was recorded (and for static
    /// attachments): those are compared by device and inode only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_cookie: Option<u64>,
    pub model: Model,
    /// How the sandbox was attached; hotplug attaches more interfaces the same way.
    #[serde(default)]
    pub settings: Settings,
    pub phase: Phase,
    pub endpoints: Vec<Endpoint>,
    /// The guest description taken at attach; None when the attach did not take it
    /// (`AttachOptions::describe_guest` off): it is then read from the netns when asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<GuestConfig>,
    pub journal: Vec<Entry>,
    /// Nameservers for the guest (`attach --dns`), rendered by `guest-config --format
    /// kernel-ip|cloud-init`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<std::net::IpAddr>,
    /// Interfaces the user detached with `remove-endpoint`: `watch` does not attach them
    /// again (they may still have addresses) until an explicit `add-endpoint`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detached_by_user: Vec<String>,
}

impl State {
    /// A static attachment (`attach --config`): its devices live in no netns of its own, so
    /// `netns_path` is empty and nothing opens a netns for it.
    pub fn is_static(&self) -> bool {
        self.netns_path.as_os_str().is_empty()
    }

    /// The guest description of the attached endpoints now, from a scan of the netns
    /// (see [`crate::guest::now`]).
    pub fn guest_now(&self, snapshot: &crate::scan::Snapshot) -> GuestConfig {
        let now = crate::guest::now(
            &self.endpoints,
            &self.journal,
            self.guest.as_ref(),
            snapshot,
        );
        match self.model {
            // The guest of a routed endpoint sees its routes (see `model::l3`).
            Model::L3 => crate::model::l3::guest_view(now, &self.endpoints, &self.journal),
            _ => now,
        }
    }

    /// The addresses of the attached endpoints that settled, appeared or went since they
    /// were routed (the l3 model; nothing for the others): see `model::l3::follow`.
    pub fn address_changes(
        &self,
        snapshot: &crate::scan::Snapshot,
    ) -> Vec<crate::model::l3::follow::AddressChange> {
        match self.model {
            Model::L3 => {
                crate::model::l3::follow::changes(&self.endpoints, &self.journal, snapshot)
            }
            _ => Vec::new(),
        }
    }

    /// Whose objects an undo of this sandbox's journal may touch.
    pub fn owner(&self) -> Owner<'_> {
        Owner {
            alias: crate::names::owner_alias(&self.id),
            endpoints: &self.endpoints,
        }
    }
}

/// The attach options that hotplug must repeat for a new interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub queues: u32,
    /// The queue length (`txqueuelen`) of the taps and macvtaps; not written when it is
    /// the default, so states written before it was recorded load (and are written back)
    /// unchanged.
    #[serde(
        default = "default_tap_queue_len",
        skip_serializing_if = "is_default_tap_queue_len"
    )]
    pub tap_queue_len: u32,
    #[serde(default)]
    pub tap_owner: crate::tap::TapOwner,
    /// The process's sysfs root at attach, for information only: nothing is looked up or
    /// written under a root read from a state (see `physical::sysfs_root`).
    pub sysfs_root: PathBuf,
    #[serde(default)]
    pub vhost_user_dir: Option<PathBuf>,
    /// Rate limits applied to every endpoint (toward / from the guest).
    #[serde(default)]
    pub rx_rate: Option<crate::rate::Rate>,
    #[serde(default)]
    pub tx_rate: Option<crate::rate::Rate>,
}

fn default_tap_queue_len() -> u32 {
    crate::tap::DEFAULT_QUEUE_LEN
}

fn is_default_tap_queue_len(len: &u32) -> bool {
    *len == crate::tap::DEFAULT_QUEUE_LEN
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            queues: 1,
            tap_queue_len: crate::tap::DEFAULT_QUEUE_LEN,
            tap_owner: crate::tap::TapOwner::default(),
            sysfs_root: crate::physical::sysfs_root(),
            vhost_user_dir: None,
            rx_rate: None,
            tx_rate: None,
        }
    }
}

/// What a state directory is called in messages.
const STATE_DIR_LABEL: &str = "state directory";

/// The largest state file read (and written): 16 MiB. A state is mostly its guest
/// description and journal, about 200 bytes per route, neighbour or address (pretty JSON);
/// a pod has a handful, and a state of 16 MiB describes some 80,000 of them, far more than
/// any netns handed to a VM. Parsing costs a few times the size in memory, so the limit
/// also bounds what root spends on a planted or runaway file.
pub const STATE_FILE_LIMIT: u64 = 16 << 20;

/// The state directory: a [`TrustedDir`] (owned by the effective uid, writable by nobody
/// else, every directory on its path trusted; files opened relative to its fd, never
/// following a symlink).
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: TrustedDir,
}

pub use crate::trusted_dir::Lock;

impl StateDir {
    /// The state directory from an explicit path, else $SANDBOX_NET_STATE_DIR, else the default.
    pub fn resolve(explicit: Option<&Path>) -> PathBuf {
        explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(STATE_DIR_ENV).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
    }

    /// Open (creating with mode 0700 what is missing) a state directory. Refuses a
    /// symlink, a directory not owned by the effective uid or writable by its group or
    /// others, and one below a directory that others could change (see [`TrustedDir`]).
    pub fn open(dir: &Path) -> Result<StateDir> {
        TrustedDir::create(dir, STATE_DIR_LABEL).map(|dir| StateDir { dir })
    }

    /// Open a state directory that exists, checked like [`StateDir::open`]; None, and
    /// nothing created, when it does not (nothing is attached there). For the commands
    /// that only read.
    pub fn open_existing(dir: &Path) -> Result<Option<StateDir>> {
        Ok(TrustedDir::existing(dir, STATE_DIR_LABEL)?.map(|dir| StateDir { dir }))
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The directory itself (the CNI records live in a directory inside it).
    pub(crate) fn trusted(&self) -> &TrustedDir {
        &self.dir
    }

    pub fn state_path(&self, id: &str) -> PathBuf {
        self.dir.file_path(&file_name(id))
    }

    /// Take the sandbox's lock without waiting: another holder means `Error::Busy`.
    pub fn lock(&self, id: &str) -> Result<Lock> {
        lock_id(&self.dir, id)
    }

    /// Take the lock of sandbox `id` to attach it: `Error::AlreadyAttached` when it has a
    /// state already.
    pub fn lock_to_attach(&self, id: &str) -> Result<Lock> {
        let lock = self.lock(id)?;
        if self.load(id)?.is_some() {
            return Err(Error::AlreadyAttached {
                id: id.to_string(),
                path: self.state_path(id),
            });
        }
        Ok(lock)
    }

    /// Whether a state file (or anything else) is at the sandbox's state path.
    pub fn has_state(&self, id: &str) -> Result<bool> {
        self.dir.contains(&file_name(id))
    }

    /// Load a sandbox's state; `Ok(None)` when there is none.
    pub fn load(&self, id: &str) -> Result<Option<State>> {
        let path = self.state_path(id);
        let Some(bytes) = self
            .dir
            .read(&file_name(id), STATE_FILE_LIMIT, "state file")?
        else {
            return Ok(None);
        };
        let text = String::from_utf8(bytes).map_err(|e| Error::CorruptState {
            path: path.clone(),
            reason: format!("not UTF-8: {e}"),
        })?;
        parse_state(&path, &text).map(Some)
    }

    /// Every sandbox id with a state file.
    pub fn ids(&self) -> Result<Vec<String>> {
        ids_in(&self.dir)
    }

    /// Write a sandbox's state atomically: temp file (0600, `O_EXCL`), then put in place
    /// of the old one (see [`TrustedDir::write_atomically`]).
    /// No fsync: the state must survive the process (a kill between two kernel changes),
    /// which the page cache guarantees, but not the machine, because every kernel object
    /// it lists (taps, qdiscs, filters, macvtaps, driver bindings) is gone after a reboot
    /// too. An fsync would cost 0.3 to 0.5 ms per save on a disk-backed /run and buy
    /// nothing.
    pub fn save(&self, state: &State) -> Result<()> {
        let text = self.encode(b"", state)?;
        self.dir
            .write_atomically(&file_name(&state.id), &text, false, STATE_FILE_LIMIT)
    }

    /// Write the first state of a sandbox that has none (`lock` from
    /// [`StateDir::lock_to_attach`]): into its lock file, which becomes the state file too
    /// (a hard link, see [`TrustedDir::link_lock_as`]), so no file is created for it; a
    /// filesystem without hard links gets [`StateDir::save`].
    pub fn create(&self, lock: &mut Lock, state: &State) -> Result<()> {
        let text = self.encode(b"", state)?;
        let name = file_name(&state.id);
        if self.dir.link_lock_as(lock, &name, &text)? {
            return Ok(());
        }
        self.dir
            .write_atomically(&name, &text, false, STATE_FILE_LIMIT)
    }

    /// Save a state that [`StateDir::create`] wrote under the same `lock`: appended as a
    /// second record (the reader takes the last whole one, see [`parse_state`]) while the
    /// state file is still the lock file, else written by [`StateDir::save`].
    pub fn save_next(&self, lock: &mut Lock, state: &State) -> Result<()> {
        // On a line of its own.
        let text = self.encode(b"\n", state)?;
        let name = file_name(&state.id);
        if self
            .dir
            .append_to_lock(lock, &name, &text, STATE_FILE_LIMIT)?
        {
            return Ok(());
        }
        self.dir
            .write_atomically(&name, &text[1..], false, STATE_FILE_LIMIT)
    }

    /// A state as one record of its file: pretty JSON, after `prefix`.
    fn encode(&self, prefix: &[u8], state: &State) -> Result<Vec<u8>> {
        // Sized for a state of a few endpoints (about 2 KiB each) in one allocation, where
        // `to_vec_pretty` starts at 128 bytes and doubles.
        let mut text = Vec::with_capacity(8 * 1024);
        text.extend_from_slice(prefix);
        serde_json::to_writer_pretty(&mut text, state)
            .map_err(|e| Error::state(self.state_path(&state.id), "encode", io::Error::other(e)))?;
        Ok(text)
    }

    /// Remove a sandbox's state file, and the temp file a save killed before its rename
    /// leaves behind (absent is fine).
    pub fn remove(&self, id: &str) -> Result<()> {
        self.dir.remove(&file_name(id))
    }
}

/// The file of sandbox `id` in a state or record directory.
pub(crate) fn file_name(id: &str) -> String {
    format!("{id}.json")
}

/// Take the lock of sandbox `id` in `dir` without waiting (`Error::Busy` when held).
pub(crate) fn lock_id(dir: &TrustedDir, id: &str) -> Result<Lock> {
    dir.lock(&format!("{id}.lock"))?
        .ok_or_else(|| Error::Busy { id: id.to_string() })
}

/// The sandbox ids with a file in `dir`, sorted.
pub(crate) fn ids_in(dir: &TrustedDir) -> Result<Vec<String>> {
    let mut ids: Vec<String> = dir
        .names()?
        .into_iter()
        .filter_map(|name| {
            let id = name.strip_suffix(".json")?;
            validate_id(id).is_ok().then(|| id.to_string())
        })
        .collect();
    ids.sort();
    Ok(ids)
}

/// Parse a state file, checking its version. A file holds one or more records (JSON
/// objects, one after the other: an attach appends its second, see [`StateDir::save_next`]);
/// the last whole one is the state. An unfinished last record (an append killed half-way)
/// is ignored when a whole one comes before it; anything else that is not JSON is corrupt.
pub fn parse_state(path: &Path, text: &str) -> Result<State> {
    let corrupt = |reason: String| Error::CorruptState {
        path: path.to_path_buf(),
        reason,
    };
    let mut last = None;
    for record in serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>() {
        match record {
            Ok(value) => last = Some(value),
            Err(e) if e.is_eof() && last.is_some() => {
                tracing::warn!(path = %path.display(), error = %e,
                    "the state file ends in an unfinished record; the one before it is the state");
                break;
            }
            Err(e) => return Err(corrupt(format!("not valid JSON: {e}"))),
        }
    }
    let value = last.ok_or_else(|| corrupt("not valid JSON: no record".into()))?;
    let version = value
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| corrupt("no version field".into()))?;
    if version != u64::from(STATE_VERSION) {
        return Err(corrupt(format!(
            "version {version} is not supported by this build (it reads version {STATE_VERSION})"
        )));
    }
    serde_json::from_value(value).map_err(|e| corrupt(format!("unexpected content: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_pattern() {
        for ok in ["a", "A9", "pod-1.x_y", &"a".repeat(64)] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "..", ".a", "-a", "a/b", "a b", "ä", &"a".repeat(65)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn future_and_garbage_state_is_refused() {
        let p = Path::new("/x.json");
        assert!(parse_state(p, "{").is_err());
        assert!(parse_state(p, "{}").is_err());
        let e = parse_state(p, r#"{"version": 99}"#)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("version 99")));
    }

    #[test]
    fn the_last_whole_record_is_the_state() {
        let p = Path::new("/x.json");
        let record = |phase: &str| {
            format!(
                "{{\n  \"version\": 1,\n  \"id\": \"{phase}\",\n  \"netns\": \"n\",\n  \"netns_path\": \"/run/netns/n\",\n  \"netns_id\": {{\"dev\": 4, \"ino\": 5}},\n  \"model\": \"tcfilter\",\n  \"phase\": \"{phase}\",\n  \"endpoints\": [],\n  \"journal\": []\n}}"
            )
        };
        let (first, second) = (record("attaching"), record("attached"));
        let one = parse_state(p, &first).expect("one record");
        assert_eq!(one.phase, Phase::Attaching);
        let two = parse_state(p, &format!("{first}\n{second}")).expect("two records");
        assert_eq!(two.phase, Phase::Attached);
        // An append killed half-way: the record before it.
        let torn = format!("{first}\n{}", &second[..second.len() / 2]);
        assert_eq!(
            parse_state(p, &torn).expect("torn tail").phase,
            Phase::Attaching
        );
        // Half a record alone, or anything but JSON after a record, is corrupt.
        assert!(parse_state(p, &first[..first.len() / 2]).is_err());
        assert!(parse_state(p, &format!("{first}garbage")).is_err());
        assert!(parse_state(p, "").is_err());
    }

    #[test]
    fn settings_written_before_the_tap_queue_length_load_with_the_default() {
        let old: Settings =
            serde_json::from_str(r#"{"queues": 2, "sysfs_root": "/sys"}"#).expect("old settings");
        assert_eq!(old.tap_queue_len, crate::tap::DEFAULT_QUEUE_LEN);
        assert_eq!(old.queues, 2);
        let entry: crate::journal::Entry = serde_json::from_str(
            r#"{"object": "tap", "name": "tap0_sn", "ifindex": 5, "queues": 1, "mtu": 1500}"#,
        )
        .expect("old tap entry");
        assert!(matches!(
            entry,
            crate::journal::Entry::Tap {
                tx_queue_len: None,
                ..
            }
        ));
    }
}
