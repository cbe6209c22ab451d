//! Put open fds at fixed numbers in a program about to be exec'd, clearing close-on-exec
//! on those fds only.
//!
//! Before the exec, every fd is duplicated (close-on-exec) above the highest target number,
//! so that no target overwrites a source; between fork/exec the hook only calls `dup2`,
//! which is async-signal-safe, and the new fds do not have close-on-exec. The duplicates
//! close at exec.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::process::Command;

use crate::sys::fd;

/// Fds waiting to be placed at `first`, `first + 1`, ... in an exec'd program.
#[derive(Debug)]
pub struct FdMap {
    /// Close-on-exec duplicates above every target; kept open until the exec.
    sources: Vec<OwnedFd>,
    /// (source, target) pairs.
    pairs: Vec<(RawFd, RawFd)>,
}

impl FdMap {
    /// Plan `fds` (in order) at `first..`.
    pub fn new(fds: Vec<OwnedFd>, first: RawFd) -> io::Result<FdMap> {
        let count = RawFd::try_from(fds.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many fds"))?;
        let base = first
            .checked_add(count)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "fd numbers overflow"))?;
        let mut sources = Vec::with_capacity(fds.len());
        let mut pairs = Vec::with_capacity(fds.len());
        for (i, owned) in fds.iter().enumerate() {
            let dup = fd::dup_at_or_above(owned.as_fd(), base)?;
            pairs.push((dup.as_raw_fd(), first + i as RawFd));
            sources.push(dup);
        }
        Ok(FdMap { sources, pairs })
    }

    /// The fd numbers the program gets, in order.
    pub fn targets(&self) -> Vec<RawFd> {
        self.pairs.iter().map(|&(_, t)| t).collect()
    }

    /// Install the placement as a pre-exec hook of `cmd`. The fds stay open as long as
    /// `self` lives: keep it until the exec.
    pub fn install(&self, cmd: &mut Command) {
        fd::place_at_exec(cmd, self.pairs.clone());
    }

    /// How many fds are placed.
    pub fn len(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_child_finds_the_fds_at_their_numbers_and_nothing_else() {
        let (ours0, theirs0) = UnixStream::pair().unwrap();
        let (ours1, theirs1) = UnixStream::pair().unwrap();
        let map = FdMap::new(vec![OwnedFd::from(theirs0), OwnedFd::from(theirs1)], 3).unwrap();
        assert_eq!(map.targets(), vec![3, 4]);
        let mut cmd = Command::new("/bin/sh");
        // fd 3 and 4 are the sockets; fd 5 (a duplicate) must be closed in the child.
        cmd.args([
            "-c",
            "echo three >&3; echo four >&4; if true 2>/dev/null >&5; then echo leak >&3; fi",
        ]);
        map.install(&mut cmd);
        let status = cmd.status().unwrap();
        assert!(status.success());
        // Every copy of the child's ends is closed now: the reads end at EOF.
        drop(map);
        let (mut a, mut b) = (String::new(), String::new());
        let (mut ours0, mut ours1) = (ours0, ours1);
        ours0.read_to_string(&mut a).unwrap();
        ours1.read_to_string(&mut b).unwrap();
        assert_eq!(a, "three\n");
        assert_eq!(b, "four\n");
    }
}
