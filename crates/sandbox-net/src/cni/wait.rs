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
}
