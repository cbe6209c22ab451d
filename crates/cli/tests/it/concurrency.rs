//! Concurrency: 8 workers, each a loop of CLI processes, attach and detach their own
//! sandboxes in parallel (8 netns × 10 cycles), and every cycle also attach or detach one
//! shared sandbox id they all contend for. Every operation succeeds or fails cleanly:
//! exit 0, exit 1 "busy", or exit 2 "already attached". At the end state and kernel agree:
//! every remaining sandbox shows no drift, every tap in every netns is accounted for by a
//! state, and detaching everything leaves each netns as it was.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::common::*;
use crate::common::{DetachOnDrop, assert_settles_to, listing, our_links, settled_snapshot};

const WORKERS: usize = 8;
const CYCLES: usize = 10;
const SHARED: &str = "cc-shared";

/// One CLI run: (exit code, stderr).
fn sandbox_net(state_dir: &str, args: &[&str]) -> (i32, String) {
    let mut full = vec!["--state-dir", state_dir];
    full.extend_from_slice(args);
    let (code, _, err) = cli(&full);
    (code, err)
}

/// Classify an outcome; None when it is not a clean one.
fn outcome(op: &str, code: i32, err: &str) -> Option<&'static str> {
    match (op, code) {
        (_, 0) => Some("ok"),
        (_, 1) if err.contains("busy") => Some("busy"),
        ("attach", 2) if err.contains("already attached") => Some("already attached"),
        _ => None,
    }
}

#[test]
fn eight_processes_attach_and_detach_in_parallel_with_contention() {
    let nets: Vec<_> = (0..WORKERS).map(|_| scratch(1)).collect();
    let shared = scratch(1);
    let dir = TempStateDir::new();
    let state_dir = dir.path().display().to_string();
    let ids: Vec<String> = (0..WORKERS).map(|w| format!("cc-{w}")).collect();
    let _cleanup: Vec<DetachOnDrop> = ids
        .iter()
        .chain(std::iter::once(&SHARED.to_string()))
        .map(|id| DetachOnDrop::new(dir.path(), id.clone()))
        .collect();
    let before: Vec<_> = nets.iter().map(|n| settled_snapshot(&n.pod_name)).collect();
    let shared_before = settled_snapshot(&shared.pod_name);

    let tally: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());
    let unclean: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let record = |what: String, code: i32, err: &str, op: &str| match outcome(op, code, err) {
        Some(o) => {
            *tally
                .lock()
                .expect("tally lock")
                .entry(format!("{what} {o}"))
                .or_default() += 1
        }
        None => unclean
            .lock()
            .expect("unclean lock")
            .push(format!("{what}: exit {code}: {}", err.trim_end())),
    };
    std::thread::scope(|s| {
        for w in 0..WORKERS {
            let (net, id, state_dir, shared_pod) =
                (&nets[w], &ids[w], &state_dir, &shared.pod_name);
            let record = &record;
            s.spawn(move || {
                for cycle in 0..CYCLES {
                    let (code, err) =
                        sandbox_net(state_dir, &["attach", "--netns", &net.pod_name, "--id", id]);
                    record("own attach".into(), code, &err, "attach");
                    // Contention: half the workers attach the shared id, half detach it.
                    if (w + cycle) % 2 == 0 {
                        let r = sandbox_net(
                            state_dir,
                            &["attach", "--netns", shared_pod, "--id", SHARED],
                        );
                        record("shared attach".into(), r.0, &r.1, "attach");
                    } else {
                        let r = sandbox_net(state_dir, &["detach", "--id", SHARED]);
                        record("shared detach".into(), r.0, &r.1, "detach");
                    }
                    // The last cycle of even workers leaves their sandbox attached.
                    if cycle + 1 < CYCLES || w % 2 == 1 {
                        let (code, err) = sandbox_net(state_dir, &["detach", "--id", id]);
                        record("own detach".into(), code, &err, "detach");
                    }
                }
            });
        }
    });
    let tally = tally.into_inner().expect("tally");
    println!(
        "{} workers × {} cycles: outcomes {tally:#?}",
        WORKERS, CYCLES
    );
    let unclean = unclean.into_inner().expect("unclean");
    assert!(
        unclean.is_empty(),
        "{} unclean outcome(s):\n{}",
        unclean.len(),
        unclean.join("\n")
    );
    // The own sandboxes never contend: every one of their operations succeeded.
    assert_eq!(tally.get("own attach ok"), Some(&(WORKERS * CYCLES)));
    assert_eq!(
        tally.get("own detach ok"),
        Some(&(WORKERS * CYCLES - WORKERS / 2))
    );

    // State and kernel agree.
    let attached: Vec<String> = sandbox_net::list(dir.path())
        .expect("list")
        .into_iter()
        .map(|s| s.id().to_string())
        .collect();
    println!("attached at the end: {attached:?}");
    for (w, net) in nets.iter().enumerate() {
        let expect_attached = w % 2 == 0;
        assert_eq!(attached.contains(&ids[w]), expect_attached, "{}", ids[w]);
        let taps = our_links(&net.pod_name);
        let expected: Vec<String> = if expect_attached {
            vec!["tap0_sn".into()]
        } else {
            vec![]
        };
        assert_eq!(taps, expected, "{}: taps in its netns", ids[w]);
    }
    let shared_taps = our_links(&shared.pod_name);
    assert_eq!(
        !shared_taps.is_empty(),
        attached.contains(&SHARED.to_string()),
        "shared netns taps {shared_taps:?} vs state {attached:?}"
    );
    for id in &attached {
        let st = sandbox_net::status(dir.path(), id)
            .expect("status")
            .expect("attached");
        assert!(!st.drift, "{id}: {st:?}");
        assert!(st.objects.iter().flatten().all(|o| o.present), "{st:?}");
    }

    // Detaching everything leaves every netns as it was, and the state dir empty.
    for id in &attached {
        let (code, err) = sandbox_net(&state_dir, &["detach", "--id", id]);
        assert_eq!(code, 0, "final detach {id}: {err}");
    }
    for (net, snap) in nets.iter().zip(&before) {
        assert_settles_to(&net.pod_name, snap, &net.pod_name);
    }
    assert_settles_to(&shared.pod_name, &shared_before, "shared netns");
    assert_eq!(listing(dir.path()), Vec::<String>::new());
}
