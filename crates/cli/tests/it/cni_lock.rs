//! DEL waits a bounded time for a sandbox another sandbox-net process holds (issue 17, CNI
//! item 3): released after a second, DEL succeeds; held on, DEL fails with code 11 after
//! `lockTimeout`, naming the lock.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::cni::{assert_cni_error, check_nothing_left};
use crate::cni_bed::Bed;

#[test]
fn del_waits_for_a_held_sandbox() {
    let bed = Bed::new("locknet", "1.0.0", json!({}));
    let pod = bed.pod("ctr-lock", "eth0");
    let id = pod.id();
    let store = sandbox_net::state::StateDir::open(bed.state.path()).expect("state dir");

    // Held (as a CLI command or a watch round holds it), released after a second.
    let result = bed.add(&pod);
    let lock = store.lock(&id).expect("take the sandbox's lock");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        drop(lock);
    });
    let t0 = Instant::now();
    bed.del(&pod, Some(&result))
        .ok("DEL after the lock was released");
    let waited = t0.elapsed();
    release.join().expect("release thread");
    assert!(
        waited >= Duration::from_millis(900),
        "DEL waited {waited:?}"
    );
    check_nothing_left(&bed.state, &id, &pod.ns, "tap_eth0");

    // Held on: DEL gives up after lockTimeout (1.5 s), code 11, naming the lock file.
    let result = bed.add(&pod);
    let lock = store.lock(&id).expect("take the sandbox's lock");
    let mut conf = bed.ours(Some(&result));
    conf["lockTimeout"] = 1.5.into();
    let t0 = Instant::now();
    let out = bed.call(&pod, "DEL", &conf);
    let waited = t0.elapsed();
    let lock_path = bed.state.path().join(format!("{id}.lock"));
    assert_cni_error(&out, 11, &lock_path.display().to_string());
    assert_cni_error(&out, 11, "another sandbox-net process");
    // The holder is this test process.
    assert_cni_error(&out, 11, &format!("pid {}", std::process::id()));
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(8),
        "DEL gave up after {waited:?}"
    );
    assert!(
        pod.ns.link("tap_eth0").is_some(),
        "DEL touched a held sandbox"
    );
    assert!(bed.record_file(&id).exists());
    drop(lock);
    bed.del(&pod, Some(&result)).ok("DEL once the lock is free");
    check_nothing_left(&bed.state, &id, &pod.ns, "tap_eth0");
}
