//! Waiting a bounded time for a sandbox another sandbox-net process holds (a CLI command,
//! a `watch` round): DEL retries an operation refused as busy until its deadline
//! (`lockTimeout`), then gives up with code 11 naming the lock.

use std::path::Path;
use std::time::{Duration, Instant};

use super::error::CniError;

/// How often a held lock is tried again.
const POLL: Duration = Duration::from_millis(50);

/// Run `attempt` until it is not refused with `Error::Busy`, or until `deadline`: then
/// `Err` naming `step` and the `lock` file it waited for. The attempt's own outcome,
/// success or another failure, is the `Ok`.
pub fn while_busy<T>(
    deadline: Instant,
    step: &str,
    lock: &Path,
    mut attempt: impl FnMut() -> crate::Result<T>,
) -> Result<crate::Result<T>, CniError> {
    let start = Instant::now();
    let mut logged = false;
    loop {
        match attempt() {
            Err(crate::Error::Busy { .. }) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(CniError::LockTimeout {
                        step: step.to_string(),
                        lock: lock.to_path_buf(),
                        holder: holder(lock),
                        waited: now - start,
                    });
                }
                if !logged {
                    tracing::info!(step, lock = %lock.display(), "waiting for another sandbox-net process");
                    logged = true;
                }
                std::thread::sleep(POLL.min(deadline - now));
            }
            outcome => return Ok(outcome),
        }
    }
}

/// Who holds the flock on `lock`, as far as `/proc/locks` tells: "pid N (COMMAND)" for
/// each holder; empty when it can't be told (the lock released meanwhile).
fn holder(lock: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(lock) else {
        return String::new();
    };
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    holders(&locks, meta.dev(), meta.ino())
        .into_iter()
        .map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            format!("pid {pid} ({})", comm.trim())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pids holding a FLOCK on the file (`dev`, `ino`) in a `/proc/locks` text, whose
/// lines read "1: FLOCK  ADVISORY  WRITE PID MAJOR:MINOR:INODE 0 EOF" (major and minor in
/// hex).
fn holders(locks: &str, dev: u64, ino: u64) -> Vec<u32> {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    locks
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (kind, pid, file) = (fields.get(1)?, fields.get(4)?, fields.get(5)?);
            let mut parts = file.split(':');
            let at = (
                u32::from_str_radix(parts.next()?, 16).ok()?,
                u32::from_str_radix(parts.next()?, 16).ok()?,
                parts.next()?.parse::<u64>().ok()?,
            );
            (*kind == "FLOCK" && at == (major, minor, ino)).then(|| pid.parse().ok())?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_is_retried_until_the_deadline() {
        let busy = || crate::Error::Busy { id: "s".into() };
        let mut tries = 0;
        let got = while_busy(
            Instant::now() + Duration::from_secs(5),
            "DEL s",
            Path::new("/l"),
            || {
                tries += 1;
                if tries < 3 { Err(busy()) } else { Ok(tries) }
            },
        );
        assert!(matches!(got, Ok(Ok(3))));
        let start = Instant::now();
        let got: Result<crate::Result<()>, _> = while_busy(
            start + Duration::from_millis(200),
            "DEL s",
            Path::new("/l/s.lock"),
            || Err(busy()),
        );
        let e = got.expect_err("timed out");
        assert_eq!(e.code(), 11);
        assert!(e.to_string().contains("/l/s.lock"), "{e}");
        assert!(start.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn holders_are_read_from_proc_locks() {
        let text = "\
1: FLOCK  ADVISORY  WRITE 25844 fe:00:5857282 0 EOF
2: POSIX  ADVISORY  WRITE 9 fe:00:42 0 EOF
3: FLOCK  ADVISORY  WRITE 77 fe:00:42 0 EOF
4: FLOCK  ADVISORY  WRITE 78 fe:01:42 0 EOF
";
        assert_eq!(holders(text, libc::makedev(0xfe, 0), 42), vec![77]);
        assert_eq!(holders(text, libc::makedev(0xfe, 0), 43), Vec::<u32>::new());
    }
}
