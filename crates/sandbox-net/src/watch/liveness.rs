//! Whether the sandbox's netns still exists: `watch` holds the namespace open (its sockets
//! keep it alive), so deletion shows only on the file: `ip netns delete` unmounts and
//! removes it, and a namespace re-created under the same name has another inode. Device
//! and inode are enough here, without the cookie `ops::reopen_netns` checks at the start:
//! the kernel reuses an nsfs inode only once its namespace is freed, and the one watched
//! is not freed while the watch holds it.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::netns::NsId;
use crate::{Error, Result};

/// The netns file of a sandbox and the identity it had at attach time.
pub struct NetnsFile {
    pub path: PathBuf,
    pub id: NsId,
}

impl NetnsFile {
    /// True when the file is gone or now names another namespace.
    pub fn gone(&self) -> Result<bool> {
        match std::fs::metadata(&self.path) {
            Ok(meta) => Ok(NsId {
                dev: meta.dev(),
                ino: meta.ino(),
            } != self.id),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(Error::kernel(
                format!("netns {}", self.path.display()),
                "check that it still exists",
                e,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_replaced_file_is_gone() {
        let dir = std::env::temp_dir().join(format!("sn-liveness-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ns");
        std::fs::write(&path, "").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let file = NetnsFile {
            path: path.clone(),
            id: NsId {
                dev: meta.dev(),
                ino: meta.ino(),
            },
        };
        assert!(!file.gone().unwrap());
        let other = dir.join("other");
        std::fs::write(&other, "").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert!(file.gone().unwrap());
        std::fs::remove_file(&path).unwrap();
        assert!(file.gone().unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
