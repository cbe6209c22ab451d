//! gc: orphan links (ours, by alias, that no state accounts for) and stale states (netns
//! or objects gone) are found and removed; a dry run changes nothing; links that are not
//! ours (no alias, another alias, another kind) and live attachments are never touched.

use crate::common::*;
use sandbox_net::state::StateDir;
use sandbox_net::{AttachOptions, GcOptions, Model};
use serde_json::Value;

fn attach(pod: &str, dir: &TempStateDir, id: &str, model: Model) {
    let mut opts = AttachOptions::new(pod, id);
    opts.state_dir = dir.path().to_path_buf();
    opts.model = model;
    sandbox_net::attach(&opts).unwrap_or_else(|e| panic!("attach {id}: {e}"));
}

fn links(ns: &str) -> Vec<String> {
    let mut names: Vec<String> = ip_json(ns, &["link", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["ifname"].as_str().map(String::from))
        .collect();
    names.sort();
    names
}

/// Foreign taps that gc must leave alone: one without an alias, one with another tool's.
fn add_foreign_taps(ns: &str) {
    ip(ns, &["tuntap", "add", "dev", "foreign0", "mode", "tap"]);
    ip(ns, &["tuntap", "add", "dev", "foreign1", "mode", "tap"]);
    ip(ns, &["link", "set", "foreign1", "alias", "other-tool:abc"]);
    // Our alias on a kind we never create (a veth): not ours either.
    ip(
        ns,
        &[
            "link", "add", "foreign2", "type", "veth", "peer", "name", "foreign3",
        ],
    );
    ip(
        ns,
        &["link", "set", "foreign2", "alias", "sandbox-net:lost"],
    );
}

#[test]
fn orphan_links_are_removed_and_foreign_ones_survive() {
    let net = scratch(1);
    let pod = net.pod_name.clone();
    let dir = TempStateDir::new();
    let id = "gc-orphan";
    let _cleanup = DetachOnDrop::new(dir.path(), id.to_string());
    add_foreign_taps(&pod);
    let before = snapshot(&pod);
    attach(&pod, &dir, id, Model::Tcfilter);
    let attached = snapshot(&pod);
    // The state is lost (an admin wiped the state dir): the tap, eth0's qdisc and filter
    // are orphans now.
    std::fs::remove_file(dir.path().join(format!("{id}.json"))).expect("remove state");
    std::fs::remove_file(dir.path().join(format!("{id}.lock"))).expect("remove lock");

    let state_dir = dir.path().display().to_string();
    let (code, out, err) = cli(&[
        "--state-dir",
        &state_dir,
        "gc",
        "--netns",
        &pod,
        "--dry-run",
        "--json",
    ]);
    println!("dry run: {out}{err}");
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).expect("gc JSON");
    assert_eq!(report["dry_run"], true);
    let found = report["links"].as_array().expect("links");
    assert_eq!(found.len(), 1, "{report}");
    assert_eq!(found[0]["name"], "tap0_sn");
    assert_eq!(found[0]["id"], id);
    // A tap, as sandbox-net calls it (the kernel's link kind is "tun"; issue #17).
    assert_eq!(found[0]["kind"], "tap");
    assert_eq!(found[0]["removed"], false);
    assert_eq!(
        found[0]["also"],
        serde_json::json!(["redirect filter eth0 -> tap0_sn", "ingress qdisc on eth0"])
    );
    assert!(
        report["skipped"].to_string().contains("foreign2"),
        "{report}"
    );
    assert_eq!(snapshot(&pod), attached, "the dry run changed the netns");
    assert_eq!(
        listing(dir.path()),
        Vec::<String>::new(),
        "the dry run wrote"
    );

    let (code, out, err) = cli(&["--state-dir", &state_dir, "gc", "--netns", &pod]);
    println!("gc: {out}{err}");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("removed orphan tap tap0_sn of sandbox gc-orphan"),
        "{out}"
    );
    assert_eq!(
        snapshot(&pod),
        before,
        "gc must restore the netns (left: after gc)"
    );
    for foreign in ["foreign0", "foreign1", "foreign2", "foreign3"] {
        assert!(
            links(&pod).contains(&foreign.to_string()),
            "{foreign} was removed"
        );
    }
    assert_eq!(listing(dir.path()), Vec::<String>::new(), "gc left files");

    // Nothing left to do.
    let (code, out, err) = cli(&["--state-dir", &state_dir, "gc", "--netns", &pod]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("nothing to collect"), "{out}");
}

#[test]
fn a_live_attachment_is_kept_and_its_unjournalled_link_is_collected() {
    let net = scratch(1);
    let pod = net.pod_name.clone();
    let dir = TempStateDir::new();
    let id = "gc-live";
    let _cleanup = DetachOnDrop::new(dir.path(), id.to_string());
    let before = snapshot(&pod);
    attach(&pod, &dir, id, Model::Tcfilter);
    let attached = snapshot(&pod);
    let files = listing(dir.path());
    // A device carrying this sandbox's alias that its journal does not list (what a crash
    // between creating a device and journalling it would leave).
    ip(&pod, &["link", "add", "ifb9_sn", "type", "ifb"]);
    ip(
        &pod,
        &[
            "link",
            "set",
            "ifb9_sn",
            "alias",
            &format!("sandbox-net:{id}"),
        ],
    );

    // No --netns: the netns of the state file is scanned.
    let report = sandbox_net::gc(&GcOptions::new(dir.path())).expect("gc");
    println!("{report}");
    assert!(report.states.is_empty(), "{report:?}");
    assert_eq!(report.links.len(), 1, "{report:?}");
    assert_eq!(report.links[0].name, "ifb9_sn");
    assert!(report.links[0].removed);
    assert!(report.links[0].also.is_empty(), "{report:?}");
    assert_eq!(snapshot(&pod), attached, "the live attachment was changed");
    assert_eq!(listing(dir.path()), files, "the state dir changed");
    let st = sandbox_net::status(dir.path(), id)
        .expect("status")
        .expect("still attached");
    assert!(!st.drift, "{st:?}");

    sandbox_net::detach(dir.path(), id).expect("detach");
    assert_eq!(snapshot(&pod), before);
}

#[test]
fn stale_states_are_removed() {
    let dir = TempStateDir::new();
    // 1: its netns is deleted.
    let gone = scratch(1);
    attach(&gone.pod_name, &dir, "gc-netns-gone", Model::Tcfilter);
    let gone_name = gone.pod_name.clone();
    drop(gone);
    // 2: every object it journalled was removed behind its back.
    let net = scratch(1);
    let pod = net.pod_name.clone();
    let before = snapshot(&pod);
    attach(&pod, &dir, "gc-objects-gone", Model::Tcfilter);
    ip(&pod, &["link", "del", "tap0_sn"]);
    run(
        "tc",
        &["-n", &pod, "qdisc", "del", "dev", "eth0", "ingress"],
    );
    assert_eq!(snapshot(&pod), before);
    // 3: a live one, and one with no journal at all (model none): both stay.
    let live = scratch(1);
    let _c1 = DetachOnDrop::new(dir.path(), "gc-live");
    let _c2 = DetachOnDrop::new(dir.path(), "gc-none");
    attach(&live.pod_name, &dir, "gc-live", Model::Tcfilter);
    let other = scratch(1);
    attach(&other.pod_name, &dir, "gc-none", Model::None);
    let live_snapshot = snapshot(&live.pod_name);

    let mut opts = GcOptions::new(dir.path());
    opts.dry_run = true;
    let dry = sandbox_net::gc(&opts).expect("gc dry run");
    println!("dry run:\n{dry}");
    let files = listing(dir.path());
    assert_eq!(dry.states.len(), 2, "{dry:?}");
    assert!(dry.states.iter().all(|s| !s.removed));

    opts.dry_run = false;
    let report = sandbox_net::gc(&opts).expect("gc");
    println!("gc:\n{report}");
    let mut stale: Vec<(&str, bool)> = report
        .states
        .iter()
        .map(|s| (s.id.as_str(), s.removed))
        .collect();
    stale.sort();
    assert_eq!(
        stale,
        vec![("gc-netns-gone", true), ("gc-objects-gone", true)],
        "{report:?}"
    );
    assert!(
        report
            .states
            .iter()
            .any(|s| s.netns.contains(&gone_name) && s.reason.contains("no longer exists")),
        "{report:?}"
    );
    assert!(report.links.is_empty(), "{report:?}");
    assert!(report.problems.is_empty(), "{report:?}");
    assert_ne!(listing(dir.path()), files);
    let store = StateDir::open(dir.path()).expect("open");
    assert_eq!(store.ids().expect("ids"), vec!["gc-live", "gc-none"]);
    assert_eq!(
        listing(dir.path()),
        vec![
            "gc-live.json",
            "gc-live.lock",
            "gc-none.json",
            "gc-none.lock"
        ]
    );
    assert_eq!(snapshot(&live.pod_name), live_snapshot);
    assert_eq!(snapshot(&pod), before);
}

#[test]
fn gc_refuses_bad_namespaces_and_the_callers_own() {
    let dir = TempStateDir::new();
    let state_dir = dir.path().display().to_string();
    for (netns, needle) in [
        ("/proc/self/ns/net", "caller's own network namespace"),
        ("/proc/self/ns/mnt", "not a network namespace"),
        ("snt-no-such-netns", "does not exist"),
    ] {
        let (code, out, err) = cli(&["--state-dir", &state_dir, "gc", "--netns", netns]);
        assert_eq!(code, 2, "{netns}: {out}{err}");
        assert!(err.contains(needle), "{netns}: {err}");
    }
    assert!(!dir.path().exists(), "a refused gc created the state dir");
}

#[test]
fn an_unfinished_attach_is_reported_and_left_to_detach() {
    let net = scratch(1);
    let pod = net.pod_name.clone();
    let dir = TempStateDir::new();
    let id = "gc-crashed";
    let _cleanup = DetachOnDrop::new(dir.path(), id.to_string());
    let before = snapshot(&pod);
    attach(&pod, &dir, id, Model::Tcfilter);
    // What a process killed between its last kernel change and its final save leaves.
    let path = dir.path().join(format!("{id}.json"));
    let text = std::fs::read_to_string(&path).expect("read state");
    let crashed = text.replace("\"phase\": \"attached\"", "\"phase\": \"attaching\"");
    assert_ne!(crashed, text);
    std::fs::write(&path, crashed).expect("write state");
    let attached = snapshot(&pod);

    let report = sandbox_net::gc(&GcOptions::new(dir.path())).expect("gc");
    println!("{report}");
    assert!(
        report.states.is_empty() && report.links.is_empty(),
        "{report:?}"
    );
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.contains(id) && s.contains("never finished")),
        "{report:?}"
    );
    assert_eq!(snapshot(&pod), attached);
    sandbox_net::detach(dir.path(), id).expect("detach");
    assert_eq!(snapshot(&pod), before);
}
