//! After an attach, iproute2 (`ip -j -d link`, `tc -j qdisc/filter`) and sandbox-net's own
//! netlink read-back both show exactly the expected tap, qdiscs and filters; status notices
//! a filter removed by hand; and the CLI prints the attachment and the guest description.

use crate::common::{
    DetachOnDrop, TempStateDir, cli, ip_json, run, scratch, settle, snapshot, tc_json,
};
use sandbox_net::netlink::{Netlink, link, tc};
use sandbox_net::{AttachOptions, Detached};
use sandbox_net_testkit::scratch::ScratchNet;
use serde_json::Value;

/// A pod with one veth `eth0` of the given MTU, with default routes.
fn pod(mtu: u32) -> ScratchNet {
    if mtu == 1500 {
        return scratch(1);
    }
    let mut net = ScratchNet::new("snt").expect("create scratch namespaces");
    net.add_link(0, mtu, true).expect("add veth");
    net
}

fn dir_str(state: &TempStateDir) -> &str {
    state.path().to_str().expect("utf-8 state dir")
}

fn flags_of(link: &Value) -> Vec<String> {
    link["flags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(String::from))
        .collect()
}

/// Check with `tc -j` (and tc's text form) that `dev`'s ingress holds exactly one filter
/// that matches everything and redirects it to `to`'s egress.
fn check_tc_filter(ns: &str, dev: &str, to: &str) {
    let filters = tc_json(ns, &["filter", "show", "dev", dev, "ingress"]);
    println!(
        "tc -n {ns} -j filter show dev {dev} ingress:\n{}",
        serde_json::to_string_pretty(&filters).expect("encode")
    );
    let all = filters.as_array().expect("filter list");
    // u32 lists its hash table and the filter under one priority: all are pref 1.
    assert!(!all.is_empty(), "no filter on {dev}");
    for f in all {
        assert_eq!(f["pref"], 1, "{dev}: {f}");
        assert_eq!(f["protocol"], "all", "{dev}: {f}");
        assert_eq!(f["kind"], "u32", "{dev}: {f}");
        assert_eq!(f["parent"], "ffff:", "{dev}: {f}");
    }
    let with_actions: Vec<&Value> = all
        .iter()
        .filter(|f| f["options"]["actions"].is_array())
        .collect();
    assert_eq!(
        with_actions.len(),
        1,
        "exactly one filter with actions on {dev}"
    );
    let options = &with_actions[0]["options"];
    assert_eq!(options["match"]["value"], "0", "match-all value on {dev}");
    assert_eq!(options["match"]["mask"], "0", "match-all mask on {dev}");
    let actions = options["actions"].as_array().expect("actions");
    assert_eq!(actions.len(), 1, "one action on {dev}");
    let a = &actions[0];
    assert_eq!(a["kind"], "mirred", "{a}");
    assert_eq!(a["mirred_action"], "redirect", "{a}");
    assert_eq!(a["direction"], "egress", "{a}");
    assert_eq!(a["to_dev"], to, "{a}");
    assert_eq!(a["control_action"]["type"], "stolen", "{a}");
    // The text form spells it out.
    let text = run("tc", &["-n", ns, "filter", "show", "dev", dev, "ingress"]);
    assert!(
        text.contains(&format!("Egress Redirect to device {to}")),
        "tc filter show dev {dev} ingress:\n{text}"
    );
}

/// Attach one veth of MTU `mtu` with `queues` queues through the library, and check what
/// iproute2 and the netlink read-back see; then drift detection, and detach.
fn attach_and_read_back(queues: u32, mtu: u32) {
    let net = pod(mtu);
    let ns = net.pod_name.clone();
    settle(&ns);
    let state = TempStateDir::new();
    let id = format!("rb-q{queues}-m{mtu}");
    let before = snapshot(&ns);

    let mut opts = AttachOptions::new(ns.clone(), id.clone());
    opts.queues = queues;
    opts.state_dir = state.path().to_path_buf();
    // Detaches the sandbox when the test ends, whatever happened (a no-op once detached).
    let _guard = DetachOnDrop::new(state.path(), id.clone());
    let attachment = sandbox_net::attach(&opts).expect("attach");
    assert_eq!(attachment.endpoints.len(), 1);
    let ep = &attachment.endpoints[0];
    assert_eq!(
        (
            ep.name.as_str(),
            ep.device().unwrap_or_default(),
            ep.mtu,
            ep.queues
        ),
        ("eth0", "tap0_sn", mtu, queues)
    );

    // --- iproute2: the tap.
    let eth0 = &ip_json(&ns, &["-d", "link", "show", "dev", "eth0"])[0];
    assert_eq!(eth0["mtu"], mtu, "eth0's MTU");
    assert_eq!(
        eth0["address"].as_str(),
        ep.mac.map(|m| m.to_string()).as_deref(),
        "endpoint MAC is eth0's"
    );
    let tap = &ip_json(&ns, &["-d", "link", "show", "dev", "tap0_sn"])[0];
    println!(
        "ip -n {ns} -j -d link show dev tap0_sn:\n{}",
        serde_json::to_string_pretty(tap).expect("encode")
    );
    let info = &tap["linkinfo"];
    assert_eq!(info["info_kind"], "tun");
    let data = &info["info_data"];
    assert_eq!(data["type"], "tap");
    assert_eq!(data["pi"], false);
    assert_eq!(data["vnet_hdr"], true);
    assert_eq!(data["multi_queue"], queues > 1);
    assert_eq!(data["persist"], true);
    assert_eq!(tap["mtu"], eth0["mtu"], "tap MTU follows eth0");
    assert_eq!(
        tap["address"].as_str().map(String::from),
        ep.backend.device_mac().map(|m| m.to_string()),
        "the tap has the MAC the attach reports"
    );
    assert_ne!(tap["address"], eth0["address"]);
    assert!(
        flags_of(tap).iter().any(|f| f == "UP"),
        "tap is up: {}",
        tap["flags"]
    );
    assert_eq!(tap["ifalias"], format!("sandbox-net:{id}"));

    // --- iproute2: exactly one ingress qdisc on each side.
    let qdiscs = tc_json(&ns, &["qdisc", "show"]);
    let mut ingress: Vec<String> = qdiscs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|q| q["kind"] == "ingress")
        .map(|q| format!("{} {} {}", q["dev"], q["handle"], q["parent"]))
        .collect();
    ingress.sort();
    assert_eq!(
        ingress,
        vec![
            r#""eth0" "ffff:" "ffff:fff1""#,
            r#""tap0_sn" "ffff:" "ffff:fff1""#
        ],
        "ingress qdiscs in {qdiscs}"
    );

    // --- iproute2: the two redirect filters.
    check_tc_filter(&ns, "eth0", "tap0_sn");
    check_tc_filter(&ns, "tap0_sn", "eth0");

    // --- The same through sandbox-net's netlink read-back.
    let mut nl = Netlink::open_in(&net.pod).expect("netlink in pod");
    let links = link::dump(&mut nl).expect("dump links");
    let eth0_nl = links.iter().find(|l| l.name == "eth0").expect("eth0");
    let tap_nl = links.iter().find(|l| l.name == "tap0_sn").expect("tap0_sn");
    assert_eq!(Some(u64::from(tap_nl.index)), tap["ifindex"].as_u64());
    assert_eq!(tap_nl.kind.as_deref(), Some("tun"));
    assert_eq!(tap_nl.mtu, mtu);
    assert!(tap_nl.is_up());
    assert_eq!(
        tap_nl.alias.as_deref(),
        Some(format!("sandbox-net:{id}").as_str())
    );
    let t = tap_nl.tun.expect("tun details");
    assert!(t.tap && !t.pi && t.vnet_hdr && t.persist, "{t:?}");
    assert_eq!(t.multi_queue, queues > 1, "{t:?}");
    let mut ingress_nl: Vec<(u32, u32, u32)> = tc::dump_qdiscs(&mut nl)
        .expect("dump qdiscs")
        .into_iter()
        .filter(|q| q.kind == "ingress")
        .map(|q| (q.ifindex, q.handle, q.parent))
        .collect();
    ingress_nl.sort();
    let mut expected = vec![
        (eth0_nl.index, 0xffff_0000, 0xffff_fff1),
        (tap_nl.index, 0xffff_0000, 0xffff_fff1),
    ];
    expected.sort();
    assert_eq!(ingress_nl, expected);
    for (from, to) in [(eth0_nl.index, tap_nl.index), (tap_nl.index, eth0_nl.index)] {
        let filters = tc::dump_ingress_filters(&mut nl, from).expect("dump filters");
        assert_eq!(
            filters.len(),
            1,
            "one filter with a selector on {from}: {filters:?}"
        );
        let f = &filters[0];
        assert_eq!(
            (f.ifindex, f.prio, f.protocol),
            (from, 1, libc::ETH_P_ALL as u16)
        );
        assert_eq!(f.kind, "u32");
        assert!(f.match_all && f.egress_redirect, "{f:?}");
        assert_eq!(f.target, Some(to));
    }

    // --- Status: everything present, no drift.
    let s = sandbox_net::status(state.path(), &id)
        .expect("status")
        .expect("attached");
    let objects = s.objects.clone().expect("objects checked");
    assert_eq!(objects.len(), 5, "{objects:?}");
    assert!(objects.iter().all(|o| o.present), "{objects:?}");
    assert!(!s.drift && s.problem.is_none(), "{s:?}");

    // --- Remove eth0's filter by hand: status reports drift, naming it.
    run(
        "tc",
        &["-n", &ns, "filter", "del", "dev", "eth0", "ingress"],
    );
    assert_eq!(
        tc_json(&ns, &["filter", "show", "dev", "eth0", "ingress"]),
        Value::Array(vec![])
    );
    let s = sandbox_net::status(state.path(), &id)
        .expect("status")
        .expect("attached");
    assert!(s.drift, "{s:?}");
    let missing: Vec<String> = s
        .objects
        .iter()
        .flatten()
        .filter(|o| !o.present)
        .map(|o| o.object.clone())
        .collect();
    assert_eq!(missing, vec!["redirect filter eth0 -> tap0_sn"]);
    let (code, out, err) = cli(&[
        "--state-dir",
        dir_str(&state),
        "status",
        "--id",
        &id,
        "--json",
    ]);
    // Drift is exit 1 (issue #17: 0 means healthy).
    assert_eq!(code, 1, "status: {err}");
    let json: Value = serde_json::from_str(&out).expect("status JSON");
    assert_eq!(json["drift"], true, "{out}");
    let missing_cli: Vec<&Value> = json["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["present"] == false)
        .map(|o| &o["object"])
        .collect();
    assert_eq!(
        missing_cli,
        vec!["redirect filter eth0 -> tap0_sn"],
        "{out}"
    );

    // --- Detach still succeeds and leaves nothing.
    let d = sandbox_net::detach(state.path(), &id).expect("detach");
    assert_eq!(
        d,
        Detached::Detached {
            id: id.clone(),
            objects: 5,
            left_alone: vec![],
        }
    );
    assert_eq!(
        before,
        snapshot(&ns),
        "the netns is as it was before attach (left: before attach, right: after detach)"
    );
    assert!(
        !state.path().join(format!("{id}.json")).exists(),
        "state file removed"
    );
}

#[test]
fn one_queue_tap_reads_back() {
    attach_and_read_back(1, 1500);
}

#[test]
fn four_queue_tap_reads_back() {
    attach_and_read_back(4, 1500);
}

#[test]
fn one_queue_tap_follows_mtu_1400() {
    attach_and_read_back(1, 1400);
}

#[test]
fn four_queue_tap_follows_mtu_1400() {
    attach_and_read_back(4, 1400);
}

#[test]
fn cli_attach_json_and_guest_config_agree_with_iproute2() {
    let net = scratch(1);
    let ns = net.pod_name.clone();
    settle(&ns);
    let state = TempStateDir::new();
    let dir = dir_str(&state);
    let id = "rb-cli";
    let before = snapshot(&ns);
    let _guard = DetachOnDrop::new(state.path(), id);

    let (code, out, err) = cli(&[
        "--state-dir",
        dir,
        "attach",
        "--netns",
        &ns,
        "--id",
        id,
        "--json",
    ]);
    assert_eq!(code, 0, "attach: {err}");
    println!("sandbox-net attach --json:\n{out}");
    let a: Value = serde_json::from_str(&out).expect("attach JSON");
    assert_eq!(a["id"], id);
    assert_eq!(a["netns"], format!("/run/netns/{ns}"));
    assert_eq!(a["model"], "tcfilter");

    let eth0 = &ip_json(&ns, &["link", "show", "dev", "eth0"])[0];
    let endpoints = a["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), 1, "{out}");
    let ep = &endpoints[0];
    for key in ["name", "kind", "tap", "mac", "mtu", "queues"] {
        assert!(ep.get(key).is_some(), "endpoint has {key}: {ep}");
    }
    assert_eq!(ep["name"], "eth0");
    assert_eq!(ep["kind"], "veth");
    assert_eq!(ep["tap"], "tap0_sn");
    assert_eq!(ep["mac"], eth0["address"], "MAC is eth0's, per ip -j link");
    assert_eq!(ep["mtu"], eth0["mtu"]);
    assert_eq!(ep["queues"], 1);

    let guest = &a["guest"];
    for key in ["interfaces", "routes", "neighbors"] {
        assert!(guest[key].is_array(), "guest.{key} is a list: {guest}");
    }
    assert_eq!(guest["interfaces"][0]["name"], "eth0");
    assert_eq!(guest["interfaces"][0]["mac"], eth0["address"]);
    let routes = guest["routes"].as_array().expect("routes");
    for family in ["inet", "inet6"] {
        assert!(
            routes
                .iter()
                .any(|r| r["family"] == family && r["dst"] == "default"),
            "{family} default route in {guest}"
        );
    }

    // guest-config prints the same guest object.
    let (code, out, err) = cli(&[
        "--state-dir",
        dir,
        "guest-config",
        "--id",
        id,
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "guest-config: {err}");
    let g: Value = serde_json::from_str(&out).expect("guest-config JSON");
    assert_eq!(&g, guest);

    let (code, out, err) = cli(&["--state-dir", dir, "status", "--id", id, "--json"]);
    assert_eq!(code, 0, "status: {err}");
    let s: Value = serde_json::from_str(&out).expect("status JSON");
    assert_eq!(s["drift"], false, "{out}");

    let (code, out, err) = cli(&["--state-dir", dir, "detach", "--id", id, "--json"]);
    assert_eq!(code, 0, "detach: {err}");
    let d: Value = serde_json::from_str(&out).expect("detach JSON");
    assert_eq!(d["outcome"], "detached", "{out}");
    assert_eq!(d["objects"], 5, "{out}");
    assert_eq!(
        before,
        snapshot(&ns),
        "the netns is as it was before attach (left: before attach, right: after detach)"
    );
}
