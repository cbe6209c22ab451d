//! The state file an attach writes: its first record written into the sandbox's lock file
//! and linked as the state file, its second appended (see `state::StateDir::create`). What
//! is on disk after an attach, and an attach killed during its append (the state file ends
//! in half a record): the record before it is read, `status` reports the unfinished attach
//! and `detach` restores the netns.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::common::*;
use sandbox_net::AttachOptions;
use sandbox_net::state::{Phase, StateDir};

fn attach(net: &sandbox_net_testkit::scratch::ScratchNet, dir: &TempStateDir, id: &str) {
    let mut opts = AttachOptions::new(net.pod_name.clone(), id);
    opts.state_dir = dir.path().to_path_buf();
    sandbox_net::attach(&opts).expect("attach");
}

/// The records of a state file, in order.
fn records(text: &str) -> Vec<serde_json::Value> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<serde_json::Value>()
        .collect::<Result<_, _>>()
        .expect("whole records")
}

#[test]
fn an_attach_leaves_one_file_with_two_names_and_two_records() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let id = "sf-two";
    let _cleanup = DetachOnDrop::new(dir.path(), id.to_string());
    attach(&net, &dir, id);
    let (json, lock) = (
        dir.path().join(format!("{id}.json")),
        dir.path().join(format!("{id}.lock")),
    );
    let (j, l) = (fs::metadata(&json), fs::metadata(&lock));
    let (j, l) = (j.expect("state file"), l.expect("lock file"));
    assert_eq!(
        (j.ino(), j.nlink()),
        (l.ino(), 2),
        "the lock file is the state file"
    );
    assert_eq!(j.mode() & 0o777, 0o600);
    let text = fs::read_to_string(&json).expect("read");
    let all = records(&text);
    assert_eq!(all.len(), 2, "{text}");
    assert_eq!(all[0]["phase"], "attaching");
    assert_eq!(all[1]["phase"], "attached");
    // The tap's ifindex is known only once it exists: in the second record.
    assert_eq!(all[0]["journal"][0]["object"], "tap", "{}", all[0]);
    assert!(all[0]["journal"][0]["ifindex"].is_null(), "{}", all[0]);
    assert!(all[1]["journal"][0]["ifindex"].is_u64(), "{}", all[1]);
    let store = StateDir::open(dir.path()).expect("open");
    let state = store.load(id).expect("load").expect("a state");
    assert_eq!(state.phase, Phase::Attached);

    // A later change writes the file whole again, with one record, in a file of its own.
    store.save(&state).expect("save");
    let text = fs::read_to_string(&json).expect("read");
    assert_eq!(records(&text).len(), 1);
    let (j, l) = (fs::metadata(&json), fs::metadata(&lock));
    let (j, l) = (j.expect("state file"), l.expect("lock file"));
    assert_ne!(j.ino(), l.ino());
    assert_eq!((j.nlink(), l.nlink()), (1, 1));

    sandbox_net::detach(dir.path(), id).expect("detach");
    assert!(!json.exists() && !lock.exists());
}

#[test]
fn an_attach_killed_in_its_append_is_read_as_unfinished_and_detach_restores_the_netns() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let id = "sf-torn";
    let _cleanup = DetachOnDrop::new(dir.path(), id.to_string());
    let before = settled_snapshot(&net.pod_name);
    attach(&net, &dir, id);
    let json = dir.path().join(format!("{id}.json"));
    let text = fs::read_to_string(&json).expect("read");
    let second = text.rfind("\n{").expect("a second record");
    // Killed half-way through the append: the first record and part of the second.
    let torn = &text[..second + (text.len() - second) / 2];
    fs::write(&json, torn).expect("tear the append");

    let state = StateDir::open(dir.path())
        .expect("open")
        .load(id)
        .expect("a torn tail is not corrupt")
        .expect("a state");
    assert_eq!(state.phase, Phase::Attaching);
    let status = sandbox_net::status(dir.path(), id)
        .expect("status")
        .expect("a state");
    assert!(status.drift, "an unfinished attach shows drift");
    let (code, out, err) = cli_at(&dir, &["status", "--id", id]);
    assert_eq!(code, 1, "{out}{err}");

    sandbox_net::detach(dir.path(), id).expect("detach");
    assert_eq!(
        settled_snapshot(&net.pod_name),
        before,
        "the netns as it was"
    );
    assert!(!json.exists());
    assert!(!dir.path().join(format!("{id}.lock")).exists());
}
