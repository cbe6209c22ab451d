//! Per-name locks in a [`TrustedDir`]: an exclusive `flock` on a lock file, and the one
//! file that a lock's holder may write through it.
//!
//! A new sandbox's state file is written into its lock file and linked under the state
//! file's name ([`TrustedDir::link_lock_as`]), and the attach's second record is appended
//! to that same file ([`TrustedDir::append_to_lock`]). The file appears whole (written
//! before it is linked) and no inode is created for it: on ext4, creating an inode (a temp
//! file) costs as much as the rest of a state write, and an attach writes its state twice
//! (the journal before the first kernel change, then the attached state).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileExt, MetadataExt};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag};
use nix::sys::stat::fstatat;
use nix::unistd::{UnlinkatFlags, linkat, unlinkat};

use super::{TrustedDir, ignore_missing};
use crate::sys::fd;
use crate::{Error, Result};

impl TrustedDir {
    /// Take an exclusive flock on the lock file `name` (created mode 0600, checked like
    /// every file) without waiting: None when another holder has it. The lock is on the
    /// file at `name` when this returns: one removed and re-created meanwhile by the
    /// holder before us is detected (device and inode) and the lock taken again.
    pub fn lock(&self, name: &str) -> Result<Option<Lock>> {
        let path = self.file_path(name);
        loop {
            let flags = OFlag::O_WRONLY | OFlag::O_CREAT;
            let Some((file, held)) = self.open_checked(name, flags, "lock file")? else {
                let gone = io::Error::from(io::ErrorKind::NotFound);
                return Err(Error::state(&path, "create lock file", gone));
            };
            let locked =
                fd::try_lock_exclusive(file.as_fd()).map_err(|e| Error::state(&path, "lock", e))?;
            if !locked {
                return Ok(None);
            }
            match fstatat(self.fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(now) if now.st_ino == held.ino() && now.st_dev == held.dev() => {
                    return Ok(Some(Lock {
                        file,
                        dir: self.clone(),
                        name: name.to_string(),
                        remove: false,
                        inode: (now.st_dev, now.st_ino),
                        len: held.len(),
                    }));
                }
                Ok(_) | Err(Errno::ENOENT) => continue,
                Err(e) => return Err(Error::state(&path, "stat lock file", e.into())),
            }
        }
    }

    /// Make `name` (which must not exist) a second name of the held lock's file, with
    /// `bytes` as its whole content: written first (what a killed operation left in the
    /// lock file is cut off), then linked, so `name` never shows less than `bytes`. The link
    /// is made from the held fd (`/proc/self/fd/N`), so it is the file we hold whatever is
    /// at the lock file's name. Ok(false), and nothing at `name`, where the filesystem has
    /// no hard links: the caller writes `name` on its own then
    /// ([`TrustedDir::write_atomically`]).
    pub fn link_lock_as(&self, lock: &mut Lock, name: &str, bytes: &[u8]) -> Result<bool> {
        let path = self.file_path(name);
        let failed = |step: &str, e: io::Error| Error::state(&path, step, e);
        if lock.len > 0 {
            lock.file
                .set_len(0)
                .map_err(|e| failed("empty the lock file", e))?;
        }
        lock.file
            .write_all_at(bytes, 0)
            .map_err(|e| failed("write into the lock file", e))?;
        lock.len = bytes.len() as u64;
        let held = format!("/proc/self/fd/{}", lock.file.as_raw_fd());
        let follow = AtFlags::AT_SYMLINK_FOLLOW;
        match linkat(AT_FDCWD, held.as_str(), self.fd.as_fd(), name, follow) {
            Ok(()) => Ok(true),
            Err(Errno::EPERM | Errno::EMLINK | Errno::EOPNOTSUPP | Errno::EXDEV) => Ok(false),
            Err(e) => Err(failed("link the lock file", e.into())),
        }
    }

    /// Append `bytes` to `name` when it is still the held lock's file (linked by
    /// [`TrustedDir::link_lock_as`] and not replaced since) and stays within `limit`
    /// bytes: Ok(false), nothing written, otherwise. A failed write is cut off again, so
    /// the file ends with a whole record.
    pub fn append_to_lock(
        &self,
        lock: &mut Lock,
        name: &str,
        bytes: &[u8],
        limit: u64,
    ) -> Result<bool> {
        let Some(len) = self.is_lock_file(lock, name)? else {
            return Ok(false);
        };
        if len + bytes.len() as u64 > limit {
            return Ok(false);
        }
        if let Err(e) = lock.file.write_all_at(bytes, len) {
            if let Err(cut) = lock.file.set_len(len) {
                tracing::warn!(path = %self.file_path(name).display(), error = %cut,
                    "could not cut off a failed append; a reader takes the last whole record");
            }
            return Err(Error::state(self.file_path(name), "append", e));
        }
        Ok(true)
    }

    /// The size of `name` when it is the held lock's file, else None.
    fn is_lock_file(&self, lock: &Lock, name: &str) -> Result<Option<u64>> {
        match fstatat(self.fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if (st.st_dev, st.st_ino) == lock.inode => Ok(Some(st.st_size as u64)),
            Ok(_) | Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(Error::state(self.file_path(name), "stat", e.into())),
        }
    }
}

/// A held lock; released (and its file removed, if asked) on drop.
#[derive(Debug)]
pub struct Lock {
    /// Held open for its flock.
    file: File,
    dir: TrustedDir,
    name: String,
    remove: bool,
    /// The lock file's device and inode.
    inode: (u64, u64),
    /// The lock file's size when locked or since written by `link_lock_as`: content a
    /// killed holder left is cut off before the file is written.
    len: u64,
}

impl Lock {
    /// Remove the lock file when the lock is released (what it guards is gone).
    pub fn remove_on_release(&mut self) {
        self.remove = true;
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.remove {
            // Remove while still holding the lock; waiters re-check the inode (see `lock`).
            let removed = unlinkat(
                self.dir.fd.as_fd(),
                self.name.as_str(),
                UnlinkatFlags::NoRemoveDir,
            );
            if let Err(e) = ignore_missing(removed) {
                let path = self.dir.file_path(&self.name);
                tracing::warn!(path = %path.display(), error = %e, "could not remove lock file");
            }
        }
        // Unlock explicitly rather than rely on the close: a child that another thread is
        // spawning holds a copy of the fd from fork until exec (O_CLOEXEC closes it only
        // then), and a flock lasts while any copy is open, so a later `lock` in this process
        // could see a spurious Busy. LOCK_UN releases it for every copy.
        if let Err(e) = fd::unlock(self.file.as_fd()) {
            let path = self.dir.file_path(&self.name);
            tracing::warn!(path = %path.display(), error = %e, "could not release a lock");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::path::PathBuf;

    fn scratch(tag: &str) -> (PathBuf, TrustedDir) {
        let path = std::env::temp_dir().join(format!("sn-lock-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        let dir = TrustedDir::create(&path, "test directory").expect("create");
        (path, dir)
    }

    fn held(dir: &TrustedDir, name: &str) -> Lock {
        dir.lock(name).expect("lock").expect("not held")
    }

    #[test]
    fn the_lock_file_becomes_the_file_whole_and_takes_an_appended_record() {
        let (path, dir) = scratch("link");
        let mut lock = held(&dir, "a.lock");
        assert!(
            dir.link_lock_as(&mut lock, "a.json", b"one\n")
                .expect("link")
        );
        let (json, lockf) = (path.join("a.json"), path.join("a.lock"));
        assert_eq!(std::fs::read(&json).expect("read"), b"one\n");
        let (a, b) = (std::fs::metadata(&json), std::fs::metadata(&lockf));
        let (a, b) = (a.expect("json"), b.expect("lock"));
        assert_eq!((a.ino(), a.nlink()), (b.ino(), 2), "one file, two names");
        assert!(
            dir.append_to_lock(&mut lock, "a.json", b"two\n", 64)
                .expect("append")
        );
        assert_eq!(std::fs::read(&json).expect("read"), b"one\ntwo\n");
        // Over the limit: nothing written.
        assert!(
            !dir.append_to_lock(&mut lock, "a.json", b"three\n", 10)
                .expect("limit")
        );
        assert_eq!(std::fs::read(&json).expect("read"), b"one\ntwo\n");
        // Once the file is written whole elsewhere, appending to the lock file would not
        // reach it: refused, and neither file changes.
        dir.write_atomically("a.json", b"new\n", false, 64)
            .expect("write");
        assert!(
            !dir.append_to_lock(&mut lock, "a.json", b"x\n", 64)
                .expect("append")
        );
        assert_eq!(std::fs::read(&json).expect("read"), b"new\n");
        assert_eq!(std::fs::read(&lockf).expect("read"), b"one\ntwo\n");
        lock.remove_on_release();
        drop(lock);
        assert!(!lockf.exists() && json.exists());
        let _ = std::fs::remove_dir_all(&path);
    }

    #[test]
    fn what_a_killed_holder_left_in_the_lock_file_is_cut_off() {
        let (path, dir) = scratch("leftover");
        std::fs::write(
            path.join("b.lock"),
            "a longer record a killed attach wrote\n",
        )
        .expect("plant");
        let mut lock = held(&dir, "b.lock");
        assert!(
            dir.link_lock_as(&mut lock, "b.json", b"short\n")
                .expect("link")
        );
        assert_eq!(
            std::fs::read(path.join("b.json")).expect("read"),
            b"short\n"
        );
        let _ = std::fs::remove_dir_all(&path);
    }

    #[test]
    fn an_existing_name_is_never_replaced() {
        let (path, dir) = scratch("exists");
        std::fs::write(path.join("c.json"), "theirs\n").expect("plant");
        std::os::unix::fs::symlink("/etc/passwd", path.join("d.json")).expect("plant");
        let mut lock = held(&dir, "c.lock");
        let e = dir.link_lock_as(&mut lock, "c.json", b"ours\n");
        assert!(e.is_err_and(|e| e.to_string().contains("c.json")));
        assert_eq!(
            std::fs::read(path.join("c.json")).expect("read"),
            b"theirs\n"
        );
        assert!(dir.link_lock_as(&mut lock, "d.json", b"ours\n").is_err());
        assert_eq!(
            std::fs::read_link(path.join("d.json")).expect("still a symlink"),
            PathBuf::from("/etc/passwd")
        );
        // Not the lock file: nothing is appended.
        assert!(
            !dir.append_to_lock(&mut lock, "c.json", b"x\n", 64)
                .expect("append")
        );
        assert_eq!(
            std::fs::read(path.join("c.json")).expect("read"),
            b"theirs\n"
        );
        let _ = std::fs::remove_dir_all(&path);
    }
}
