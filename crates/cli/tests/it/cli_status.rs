//! Issue #17, CLI item 4: `status` tells one story. With the netns gone, the list and
//! `status --id` agree (drift), and `status --id` exits 1 on drift (0 healthy); an unknown
//! id is answered as every command answers it; one corrupt state file is an entry of the
//! list naming the file, and the healthy sandboxes are still listed; under macvtap an
//! address moved to the guest by design is reported as removed, not "ok".

use serde_json::Value;

use crate::common::*;

fn list_json(dir: &TempStateDir) -> Vec<Value> {
    let (code, out, err) = cli_at(dir, &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<Vec<Value>>(&out).expect("list JSON")
}

#[test]
fn with_the_netns_gone_list_and_status_agree_and_status_exits_1() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let id = unique_name("st-gone");
    let _cleanup = DetachOnDrop::new(dir.path(), id.clone());
    let (code, _, err) = cli_attach(&dir, &net.pod_name, &id, &[]);
    assert_eq!(code, 0, "{err}");

    // Healthy: exit 0, no drift, in the list too.
    let (code, out, err) = cli_at(&dir, &["status", "--id", &id, "--json"]);
    assert_eq!(code, 0, "{err}");
    let st: Value = serde_json::from_str(&out).expect("status JSON");
    assert_eq!(st["drift"], false, "{st}");
    assert!(
        st["objects"]
            .as_array()
            .expect("objects")
            .iter()
            .all(|o| o["condition"] == "present"),
        "{st}"
    );
    assert_eq!(list_json(&dir)[0]["drift"], false);

    drop(net);
    let listed = list_json(&dir);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["drift"], true, "{listed:?}");
    assert!(
        listed[0]["problem"]
            .as_str()
            .is_some_and(|p| p.contains("no longer exists")),
        "{listed:?}"
    );
    let (code, out, err) = cli_at(&dir, &["status", "--id", &id, "--json"]);
    assert_eq!(code, 1, "drift is exit 1: {err}");
    let st: Value = serde_json::from_str(&out).expect("status JSON");
    assert_eq!(st["drift"], true, "{st}");
    assert!(err.contains("drift"), "{err}");
    let (code, out, _) = cli_at(&dir, &["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("DRIFT"), "{out}");

    // An unknown id: the answer of every other command.
    let (code, _, err) = cli_at(&dir, &["status", "--id", "nope", "--json"]);
    let (vmm_code, _, _) = cli_at(&dir, &["vmm-args", "--id", "nope", "--vmm", "qemu"]);
    assert_eq!(code, vmm_code, "{err}");
    assert_ne!(code, 0);
    assert!(err.contains("sandbox nope: not attached"), "{err}");
}

#[test]
fn a_corrupt_state_file_is_listed_by_name_and_hides_no_other_sandbox() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let id = unique_name("st-ok");
    let _cleanup = DetachOnDrop::new(dir.path(), id.clone());
    let (code, _, err) = cli_attach(&dir, &net.pod_name, &id, &[]);
    assert_eq!(code, 0, "{err}");
    // A truncated state file of another sandbox, as a crash of a foreign writer leaves.
    let bad = dir.path().join("broken.json");
    std::fs::write(&bad, "{\"version\": 1, \"id\": \"bro").expect("write");

    let listed = list_json(&dir);
    assert_eq!(listed.len(), 2, "{listed:?}");
    let broken = listed
        .iter()
        .find(|e| e["id"] == "broken")
        .expect("the broken file is an entry");
    assert_eq!(broken["state_file"], bad.display().to_string().as_str());
    assert!(broken["error"].as_str().is_some_and(|e| !e.is_empty()));
    let ok = listed
        .iter()
        .find(|e| e["id"] == id.as_str())
        .expect("the healthy one is listed");
    assert_eq!(ok["drift"], false, "{ok}");

    let (code, out, _) = cli_at(&dir, &["status"]);
    assert_eq!(code, 0);
    assert!(out.contains(&id), "{out}");
    assert!(out.contains("broken  UNREADABLE"), "{out}");
}

#[test]
fn under_macvtap_a_moved_address_is_reported_removed_not_ok() {
    let net = scratch(1);
    let dir = TempStateDir::new();
    let id = unique_name("st-mvt");
    let _cleanup = DetachOnDrop::new(dir.path(), id.clone());
    let (code, _, err) = cli_attach(&dir, &net.pod_name, &id, &["--model", "macvtap"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli_at(&dir, &["status", "--id", &id]);
    assert_eq!(code, 0, "{err}");
    let address_lines: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("address 10.77.0.2/24"))
        .collect();
    assert_eq!(address_lines.len(), 1, "{out}");
    assert!(address_lines[0].ends_with(" removed"), "{out}");
    assert!(!out.lines().any(|l| l.ends_with(" ok")), "{out}");
    let (_, out, _) = cli_at(&dir, &["status", "--id", &id, "--json"]);
    let st: Value = serde_json::from_str(&out).expect("status JSON");
    let conditions: Vec<&str> = st["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter_map(|o| o["condition"].as_str())
        .collect();
    assert!(conditions.contains(&"removed"), "{st}");
    assert!(conditions.contains(&"set"), "the MAC taken over: {st}");
}
