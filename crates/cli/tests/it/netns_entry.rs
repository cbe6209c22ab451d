//! `NetNs::run` moves only the calling thread, only for the closure, and brings it back even
//! when the closure panics.

use std::os::unix::fs::MetadataExt;

use sandbox_net_testkit::netns::Named;
use sandbox_net_testkit::scratch::unique_name;

/// (device, inode) of the calling thread's netns.
fn own_netns() -> (u64, u64) {
    let m = std::fs::metadata("/proc/thread-self/ns/net").expect("stat own netns");
    (m.dev(), m.ino())
}

/// A named netns, deleted on drop (also when the test fails).
fn scratch() -> Named {
    Named::create(&unique_name("snt-entry")).expect("create netns")
}

#[test]
fn run_enters_the_netns_and_returns_home() {
    let scratch = scratch();
    let target = (scratch.netns.id().dev, scratch.netns.id().ino);
    let home = own_netns();
    assert_ne!(home, target);

    let inside = scratch.netns.run(own_netns).expect("run");
    assert_eq!(inside, target, "the closure did not run in the netns");
    assert_eq!(own_netns(), home, "the thread did not come back");

    // Nested entry into the same netns comes back to it, then home.
    let nested = scratch
        .netns
        .run(|| scratch.netns.run(own_netns).map(|n| (n, own_netns())))
        .expect("outer run")
        .expect("inner run");
    assert_eq!(nested, (target, target));
    assert_eq!(own_netns(), home);
}

#[test]
fn other_threads_stay_where_they_are() {
    let scratch = scratch();
    let home = own_netns();
    let (tx, rx) = std::sync::mpsc::channel();
    let (back_tx, back_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            // Wait until the main thread is inside, then report where this thread is.
            back_rx.recv().expect("signal");
            tx.send(own_netns()).expect("send");
        });
        scratch
            .netns
            .run(|| {
                back_tx.send(()).expect("signal");
                let other = rx.recv().expect("receive");
                assert_eq!(other, home, "another thread was moved");
            })
            .expect("run");
    });
    assert_eq!(own_netns(), home);
}

#[test]
fn a_panic_inside_still_returns_home() {
    let scratch = scratch();
    let home = own_netns();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        scratch.netns.run(|| panic!("boom inside the netns"))
    }));
    assert!(outcome.is_err(), "the panic was not propagated");
    assert_eq!(
        own_netns(),
        home,
        "the thread stayed in the netns after a panic"
    );
}
