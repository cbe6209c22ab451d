//! `sandbox_net::wait_while_busy`: the operations never wait for a sandbox's lock (another
//! holder is `Error::Busy` at once); the caller may ask for a bounded wait.

use std::time::Duration;

use sandbox_net::sandbox::{Access, Sandbox};

use crate::common::*;

/// The lock is never waited for (Busy at once), unless the caller asks for a bounded wait.
#[test]
fn a_bounded_wait_on_the_lock_gets_through_once_it_is_released() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let (_, _detach) = attach(&options(&net.pod_name, &dir, "lock-wait"));
    let held = Sandbox::open(dir.path(), "lock-wait", Access::Change).expect("take the lock");
    let set = || {
        sandbox_net::set_rate(
            dir.path(),
            "lock-wait",
            None,
            Some(sandbox_net::RateChange::Set(
                "50mbit".parse().expect("rate"),
            )),
            None,
        )
    };
    let e = set().expect_err("busy");
    assert!(matches!(e, sandbox_net::Error::Busy { .. }), "{e:?}");
    let e = sandbox_net::wait_while_busy(Duration::from_millis(100), set).expect_err("still held");
    assert!(matches!(e, sandbox_net::Error::Busy { .. }), "{e:?}");
    std::thread::scope(|s| {
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(held);
        });
        let limits = sandbox_net::wait_while_busy(Duration::from_secs(5), set)
            .expect("through once the lock is released");
        assert!(
            limits.iter().any(|l| l.rate_bps == Some(50_000_000)),
            "{limits:?}"
        );
    });
}
