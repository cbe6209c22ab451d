//! Finding the netns of an attachment whose recorded path no longer leads to it. A runtime
//! may give CNI_NETNS as `/proc/PID/ns/net`: once that process has exited, the path is gone
//! (or, the PID reused, leads to another namespace) while the namespace itself may live on,
//! held by a bind mount or another process in it. Before DEL gives up on it, the namespace
//! is looked for by the identity the state records (device and inode, then the cookie:
//! [`prove_recorded`]) among the nsfs mounts of this mount namespace and the processes'
//! `/proc/PID/ns/net`, and the state is pointed at the path found. Nothing found: the
//! namespace is gone, and detach drops the state (undoing only what lives outside it).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::netns::NetNs;
use crate::sandbox::{Reopened, prove_recorded, reopen_netns};
use crate::state::{State, StateDir};

/// Point the state of `id` at a path of its netns when the recorded path no longer leads
/// there and the namespace is found elsewhere; the path found, if any. Takes the
/// sandbox's lock (`Error::Busy` when held).
pub fn relocate(state_dir: &Path, id: &str) -> crate::Result<Option<PathBuf>> {
    let Some(store) = StateDir::open_existing(state_dir)? else {
        return Ok(None);
    };
    let _lock = store.lock(id)?;
    let Some(mut state) = store.load(id)? else {
        return Ok(None);
    };
    // The usual case, cheaply: the path still leads to the recorded inode (detach proves
    // it is the same namespace by its cookie).
    if state.is_static() || same_inode(&state.netns_path, &state) {
        return Ok(None);
    }
    if let Reopened::Same { .. } = reopen_netns(&state)? {
        return Ok(None);
    }
    let Some(path) = find(&state)? else {
        return Ok(None);
    };
    tracing::info!(id, was = %state.netns_path.display(), now = %path.display(),
        "the sandbox's netns lives on at another path");
    state.netns_path = path.clone();
    store.save(&state)?;
    Ok(Some(path))
}

/// Whether `path` leads to the device and inode `state` records for its netns.
fn same_inode(path: &Path, state: &State) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|m| m.dev() == state.netns_id.dev && m.ino() == state.netns_id.ino)
}

/// The first path, of the candidates, that is provably `state`'s netns.
fn find(state: &State) -> crate::Result<Option<PathBuf>> {
    for path in candidates() {
        if !same_inode(&path, state) {
            continue;
        }
        let Ok(netns) = NetNs::open_path(&path.display().to_string(), &path) else {
            continue;
        };
        if let Reopened::Same { .. } = prove_recorded(state, netns)? {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// Where a netns may be reachable: nsfs mount points first (they last), then every
/// process's `/proc/PID/ns/net`.
fn candidates() -> impl Iterator<Item = PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|text| nsfs_mounts(&text))
        .unwrap_or_default();
    let procs = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|e| e.path().join("ns/net"));
    mounts.into_iter().chain(procs)
}

/// The mount points of the nsfs mounts in a `/proc/PID/mountinfo` text (octal escapes
/// such as `\040` undone).
fn nsfs_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (right.split(' ').next()? == "nsfs").then_some(())?;
            left.split(' ').nth(4).map(unescape)
        })
        .collect()
}

fn unescape(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match octal {
            Some(b) => {
                out.push(b);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsfs_mounts_are_read_from_mountinfo() {
        let text = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
610 30 0:4 net:[4026532890] /run/netns/pod\\040a rw shared:5 - nsfs nsfs rw
611 30 0:4 net:[4026532891] /var/run/netns/b rw - nsfs nsfs rw
";
        assert_eq!(
            nsfs_mounts(text),
            vec![
                PathBuf::from("/run/netns/pod a"),
                PathBuf::from("/var/run/netns/b")
            ]
        );
        assert_eq!(unescape("a\\134b\\"), PathBuf::from("a\\b\\"));
    }
}
