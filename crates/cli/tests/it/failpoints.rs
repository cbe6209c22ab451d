//! Failure at every step beyond attach (attach itself: tests/rollback.rs), for the tcfilter
//! and macvtap models: a failure injected before each journalled step of add-endpoint and
//! set-rate leaves the netns as its snapshot from before the operation, and the attachment
//! as it was; a detach stopped before each of its steps keeps the state, and the next
//! detach returns the netns to its snapshot from before the attach.

use crate::common::*;
use crate::common::{
    DetachOnDrop, assert_settles_to, assert_settles_to_by, listing, settled_snapshot,
    without_ifindexes,
};
use sandbox_net::ops::{
    LimitStatus, RateChange, add_endpoint_with_failpoint, detach_with_failpoint,
    set_rate_with_failpoint,
};
use sandbox_net::rate::Rate;
use sandbox_net::state::{State, StateDir};
use sandbox_net::{AttachOptions, Model};
use sandbox_net_testkit::scratch::ScratchNet;

/// More steps than any operation here has: a loop that reaches it has not terminated.
const MAX_STEPS: usize = 64;

fn attach(net: &ScratchNet, dir: &TempStateDir, id: &str, model: Model, only: Option<&str>) {
    let mut opts = AttachOptions::new(net.pod_name.clone(), id);
    opts.state_dir = dir.path().to_path_buf();
    opts.model = model;
    opts.interfaces = only.map(|i| vec![i.to_string()]);
    sandbox_net::attach(&opts).unwrap_or_else(|e| panic!("attach {id}: {e}"));
}

fn load(dir: &TempStateDir, id: &str) -> State {
    StateDir::open(dir.path())
        .expect("open state dir")
        .load(id)
        .expect("load state")
        .expect("state exists")
}

/// The journal as descriptions (ifindexes left out: a re-created device gets a new one).
fn described(state: &State) -> Vec<String> {
    state.journal.iter().map(|e| e.describe()).collect()
}

fn limits(dir: &TempStateDir, id: &str) -> Vec<LimitStatus> {
    let st = sandbox_net::status(dir.path(), id)
        .expect("status")
        .expect("attached");
    assert!(!st.drift, "{st:?}");
    st.limits.expect("limits read back")
}

fn assert_injected(err: &sandbox_net::Error, id: &str, context: &str) {
    let text = err.to_string();
    assert!(text.contains("failpoint"), "{context}: {text}");
    assert!(text.contains(&format!("sandbox {id}")), "{context}: {text}");
}

fn add_endpoint_fails_at_every_step(model: Model) {
    let net = scratch(2);
    let dir = TempStateDir::new();
    let id = format!("fp-add-{model}");
    let _cleanup = DetachOnDrop::new(dir.path(), id.clone());
    let pristine = settled_snapshot(&net.pod_name);
    attach(&net, &dir, &id, model, Some("eth0"));
    let before = settled_snapshot(&net.pod_name);
    let state_before = load(&dir, &id);
    let mut steps = 0;
    for step in 0..MAX_STEPS {
        let context = format!("add-endpoint eth1 ({model}), failure at step {step}");
        match add_endpoint_with_failpoint(dir.path(), &id, "eth1", Some(step)) {
            Ok(change) => {
                assert_eq!(change.endpoint.name, "eth1", "{context}");
                steps = step;
                break;
            }
            Err(e) => {
                println!("{context}: {e}");
                assert_injected(&e, &id, &context);
                assert_settles_to(&net.pod_name, &before, &context);
                assert_eq!(
                    load(&dir, &id),
                    state_before,
                    "{context}: the state changed"
                );
            }
        }
    }
    // One failpoint per new journal entry, plus one before the state is saved.
    let added = load(&dir, &id).journal.len() - state_before.journal.len();
    assert_eq!(steps, added + 1, "{model}: steps tried");
    println!("add-endpoint ({model}): {steps} failpoints, each rolled back");
    sandbox_net::detach(dir.path(), &id).expect("detach");
    assert_settles_to(&net.pod_name, &pristine, "after detach");
}

#[test]
fn add_endpoint_tcfilter() {
    add_endpoint_fails_at_every_step(Model::Tcfilter);
}

#[test]
fn add_endpoint_macvtap() {
    add_endpoint_fails_at_every_step(Model::Macvtap);
}

/// A snapshot for comparisons across a rollback that re-created an IFB: without
/// ifindexes, and without what the kernel gives a new IFB at random (its MAC, and so its
/// IPv6 link-local address and that address's local route).
fn across_recreation(s: NetnsSnapshot) -> NetnsSnapshot {
    let mut s = without_ifindexes(s);
    let ifb = |line: &str| line.contains("ifb") && line.contains("_sn");
    for line in &mut s.links {
        if ifb(line)
            && let Some(start) = line.find(" mac=")
        {
            let end = line[start + 1..]
                .find(' ')
                .map_or(line.len(), |e| start + 1 + e);
            line.replace_range(start..end, "");
        }
    }
    s.addresses.retain(|l| !(ifb(l) && l.contains("fe80:")));
    s.routes
        .retain(|l| !(ifb(l) && l.contains("\"dst\":\"fe80::") && l.contains("local")));
    // A re-created filter's action gets the lowest free index, and the old action's index
    // is freed only once the kernel has released it (RCU; late under load).
    for line in &mut s.filters {
        *line = without_action_indexes(line);
    }
    s
}

/// `line` with every `"index":N` written `"index":_`.
fn without_action_indexes(line: &str) -> String {
    const KEY: &str = "\"index\":";
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find(KEY) {
        out.push_str(&rest[..at + KEY.len()]);
        rest = rest[at + KEY.len()..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('_');
    }
    out.push_str(rest);
    out
}

fn rate(text: &str) -> RateChange {
    RateChange::Set(text.parse::<Rate>().expect("rate"))
}

fn set_rate_fails_at_every_step(model: Model) {
    let net = scratch(2);
    let dir = TempStateDir::new();
    let id = format!("fp-rate-{model}");
    let _cleanup = DetachOnDrop::new(dir.path(), id.clone());
    let pristine = settled_snapshot(&net.pod_name);
    attach(&net, &dir, &id, model, None);
    for (phase, rx, tx) in [
        ("add limits", rate("20mbit"), rate("10mbit")),
        ("change limits", rate("30mbit"), rate("15mbit")),
        ("remove limits", RateChange::Remove, RateChange::Remove),
    ] {
        let before = across_recreation(settled_snapshot(&net.pod_name));
        let journal_before = described(&load(&dir, &id));
        let limits_before = limits(&dir, &id);
        let mut steps = 0;
        for step in 0..MAX_STEPS {
            let context = format!("set-rate ({model}): {phase}, failure at step {step}");
            match set_rate_with_failpoint(dir.path(), &id, None, Some(rx), Some(tx), Some(step)) {
                Ok(_) => {
                    steps = step;
                    break;
                }
                Err(e) => {
                    println!("{context}: {e}");
                    assert_injected(&e, &id, &context);
                    assert_settles_to_by(&net.pod_name, &before, &context, across_recreation);
                    assert_eq!(described(&load(&dir, &id)), journal_before, "{context}");
                    assert_eq!(limits(&dir, &id), limits_before, "{context}");
                }
            }
        }
        assert!(steps >= 3, "{model}: {phase}: only {steps} step(s)");
        println!("set-rate ({model}): {phase}: {steps} failpoints, each rolled back");
    }
    sandbox_net::detach(dir.path(), &id).expect("detach");
    assert_settles_to(&net.pod_name, &pristine, "after detach");
}

#[test]
fn set_rate_tcfilter() {
    set_rate_fails_at_every_step(Model::Tcfilter);
}

#[test]
fn set_rate_macvtap() {
    set_rate_fails_at_every_step(Model::Macvtap);
}

fn detach_stopped_at_every_step(model: Model) {
    let net = scratch(2);
    let dir = TempStateDir::new();
    let id = format!("fp-detach-{model}");
    let _cleanup = DetachOnDrop::new(dir.path(), id.clone());
    let pristine = settled_snapshot(&net.pod_name);
    let mut opts = AttachOptions::new(net.pod_name.clone(), &id);
    opts.state_dir = dir.path().to_path_buf();
    opts.model = model;
    opts.rx_rate = Some("20mbit".parse().expect("rate"));
    opts.tx_rate = Some("10mbit".parse().expect("rate"));
    let state_dir = dir.path().display().to_string();
    let mut steps = 0;
    for step in 0..MAX_STEPS {
        let context = format!("detach ({model}), stopped at step {step}");
        sandbox_net::attach(&opts).unwrap_or_else(|e| panic!("{context}: attach: {e}"));
        match detach_with_failpoint(dir.path(), &id, Some(step)) {
            Ok(_) => {
                steps = step;
                assert_settles_to(&net.pod_name, &pristine, &context);
                break;
            }
            Err(e) => {
                println!("{context}: {e}");
                assert_injected(&e, &id, &context);
                // The state is kept, and status sees what is missing.
                let st = sandbox_net::status(dir.path(), &id)
                    .expect("status")
                    .expect("still attached");
                assert_eq!(st.drift, step > 0, "{context}: {st:?}");
                // The next detach finishes the job.
                let (code, out, err) = cli(&["--state-dir", &state_dir, "detach", "--id", &id]);
                assert_eq!(code, 0, "{context}: {out}{err}");
                assert_settles_to(&net.pod_name, &pristine, &context);
                assert_eq!(listing(dir.path()), Vec::<String>::new(), "{context}");
            }
        }
    }
    assert!(steps >= 10, "{model}: only {steps} step(s)");
    println!("detach ({model}): {steps} failpoints, each finished by the next detach");
}

#[test]
fn detach_tcfilter() {
    detach_stopped_at_every_step(Model::Tcfilter);
}

#[test]
fn detach_macvtap() {
    detach_stopped_at_every_step(Model::Macvtap);
}
