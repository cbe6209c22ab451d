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

/// Fds waiting to be placed at their numbers in a program about to be spawned or exec'd.
#[derive(Debug)]
pub struct FdMap {
    /// Close-on-exec duplicates above every target; kept open until the exec.
    _sources: Vec<OwnedFd>,
    /// (source, target) pairs.
    pairs: Vec<(RawFd, RawFd)>,
}

impl FdMap {
    /// Plan each fd at its own number. The numbers must be distinct and not 0, 1 or 2.
    pub fn at(fds: Vec<(OwnedFd, RawFd)>) -> io::Result<FdMap> {
        let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_string());
        let mut targets: Vec<RawFd> = fds.iter().map(|&(_, t)| t).collect();
        if targets.iter().any(|&t| t < 3) {
            return Err(invalid("fd numbers must be 3 or above (0-2 are stdio)"));
        }
        targets.sort_unstable();
        if targets.windows(2).any(|w| w[0] == w[1]) {
            return Err(invalid("an fd number is given twice"));
        }
        let base = targets
            .last()
            .map_or(Some(3), |&t| t.checked_add(1))
            .ok_or_else(|| invalid("fd numbers overflow"))?;
        let mut sources = Vec::with_capacity(fds.len());
        let mut pairs = Vec::with_capacity(fds.len());
        for (owned, target) in &fds {
            let dup = fd::dup_at_or_above(owned.as_fd(), base)?;
            pairs.push((dup.as_raw_fd(), *target));
            sources.push(dup);
        }
        Ok(FdMap {
            _sources: sources,
            pairs,
        })
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    #[test]
    fn numbers_must_be_distinct_and_above_stdio() {
        let (a, b) = UnixStream::pair().unwrap();
        assert!(FdMap::at(vec![(OwnedFd::from(a), 2)]).is_err());
        let (c, _d) = UnixStream::pair().unwrap();
        assert!(FdMap::at(vec![(OwnedFd::from(b), 10), (OwnedFd::from(c), 10)]).is_err());
    }

    #[test]
    fn a_child_finds_the_fds_at_their_numbers_and_nothing_else() {
        let (ours0, theirs0) = UnixStream::pair().unwrap();
        let (ours1, theirs1) = UnixStream::pair().unwrap();
        let map = FdMap::at(vec![
            (OwnedFd::from(theirs0), 3),
            (OwnedFd::from(theirs1), 4),
        ])
        .unwrap();
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
