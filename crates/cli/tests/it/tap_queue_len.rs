//! The tap queue length (issue 15, item 3): `AttachOptions::tap_queue_len`, the CLI's
//! `attach --tap-queue-len`, the CNI key `tapQueueLen`. Each is read back with `ip -j link`
//! (`txqlen`), for a tap (tcfilter) and a macvtap; hotplug repeats the recorded setting; the
//! attach makes as many netlink requests as before (the length rides on the tap's existing
//! RTM_SETLINK); 0 and absurd values are refused before anything is created.

use crate::common::*;
use sandbox_net::state::StateDir;
use sandbox_net::{Model, tap};
use serde_json::{Value, json};

/// The `txqlen` iproute2 reports for `dev` in `ns` (it leaves a 0 out).
fn txqlen(ns: &str, dev: &str) -> u64 {
    let links = ip_json(ns, &["link", "show", "dev", dev]);
    assert_eq!(links[0]["ifname"], dev, "{links}");
    links[0]["txqlen"].as_u64().unwrap_or(0)
}

#[test]
fn library_sets_the_tap_queue_length_in_the_same_request_and_hotplug_repeats_it() {
    let net = scratch(2);
    let state = TempStateDir::new();

    // The default, for comparison of the request count.
    let mut opts = options(&net.pod_name, &state, "tql-default");
    opts.interfaces = Some(vec!["eth1".into()]);
    let default = sandbox_net::attach(&opts).expect("attach with the default");
    assert_eq!(
        txqlen(
            &net.pod_name,
            default.endpoints[0].backend.device().expect("a tap")
        ),
        u64::from(tap::DEFAULT_QUEUE_LEN)
    );
    sandbox_net::detach(state.path(), "tql-default").expect("detach");

    let mut opts = options(&net.pod_name, &state, "tql-lib");
    opts.interfaces = Some(vec!["eth0".into()]);
    opts.tap_queue_len = 4000;
    let a = sandbox_net::attach(&opts).expect("attach");
    assert_eq!(
        txqlen(
            &net.pod_name,
            a.endpoints[0].backend.device().expect("a tap")
        ),
        4000
    );
    assert_eq!(
        a.netlink_requests, default.netlink_requests,
        "the queue length must not cost a request"
    );
    let recorded = StateDir::open(state.path())
        .expect("state dir")
        .load("tql-lib")
        .expect("load")
        .expect("state");
    assert_eq!(recorded.settings.tap_queue_len, 4000);

    let change = sandbox_net::add_endpoint(state.path(), "tql-lib", "eth1").expect("hotplug");
    assert_eq!(
        txqlen(
            &net.pod_name,
            change.endpoint.backend.device().expect("a tap")
        ),
        4000
    );
    sandbox_net::detach(state.path(), "tql-lib").expect("detach");
}

#[test]
fn macvtap_gets_the_setting_never_the_veths_own() {
    let net = scratch(1);
    // A CNI bridge veth starts with txqueuelen 0.
    run(
        "ip",
        &[
            "-n",
            &net.pod_name,
            "link",
            "set",
            "eth0",
            "txqueuelen",
            "0",
        ],
    );
    let state = TempStateDir::new();
    let mut opts = options(&net.pod_name, &state, "tql-mvt");
    opts.model = Model::Macvtap;
    let a = sandbox_net::attach(&opts).expect("attach macvtap");
    assert_eq!(
        txqlen(
            &net.pod_name,
            a.endpoints[0].backend.device().expect("a tap")
        ),
        u64::from(tap::DEFAULT_QUEUE_LEN)
    );
    sandbox_net::detach(state.path(), "tql-mvt").expect("detach");
    assert_eq!(
        txqlen(&net.pod_name, "eth0"),
        0,
        "the veth is left as it was"
    );

    // The tenant sizes its own interface's queue; the macvtap's is the operator's setting.
    run(
        "ip",
        &[
            "-n",
            &net.pod_name,
            "link",
            "set",
            "eth0",
            "txqueuelen",
            "1000000",
        ],
    );
    opts.id = "tql-mvt2".into();
    opts.tap_queue_len = 3000;
    let a = sandbox_net::attach(&opts).expect("attach macvtap with a length");
    assert_eq!(
        txqlen(
            &net.pod_name,
            a.endpoints[0].backend.device().expect("a tap")
        ),
        3000
    );
    sandbox_net::detach(state.path(), "tql-mvt2").expect("detach");
}

#[test]
fn cli_sets_it_and_refuses_zero_and_absurd_lengths_before_creating_anything() {
    let net = scratch(1);
    let state = TempStateDir::new();
    let dir = state.path().to_str().expect("utf-8");
    let before = snapshot(&net.pod_name);
    for (bad, needle) in [("0", "txqueuelen 0"), ("16385", "16384"), ("-1", "")] {
        let (code, out, err) = cli(&[
            "--state-dir",
            dir,
            "attach",
            "--netns",
            &net.pod_name,
            "--id",
            "tql-cli",
            "--tap-queue-len",
            bad,
        ]);
        assert_eq!(code, 2, "--tap-queue-len {bad}: {out}{err}");
        assert!(err.contains(needle), "--tap-queue-len {bad}: {err}");
        if bad != "-1" {
            assert!(err.contains("tap queue length"), "names the setting: {err}");
        }
    }
    assert_eq!(snapshot(&net.pod_name), before, "a refusal changes nothing");
    assert!(
        !state.path().join("tql-cli.json").exists(),
        "a refusal writes no state"
    );

    let (code, out, err) = cli(&[
        "--state-dir",
        dir,
        "attach",
        "--netns",
        &net.pod_name,
        "--id",
        "tql-cli",
        "--tap-queue-len",
        "2500",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let a: Value = serde_json::from_str(&out).expect("attach JSON");
    let tap = a["endpoints"][0]["tap"].as_str().expect("tap");
    assert_eq!(txqlen(&net.pod_name, tap), 2500);
    let (code, _, err) = cli(&["--state-dir", dir, "detach", "--id", "tql-cli"]);
    assert_eq!(code, 0, "{err}");
}

/// Run the binary as a CNI plugin: ADD of eth0 in `netns` with `extra` keys.
fn cni_add(state: &TempStateDir, netns: &str, extra: Value) -> (i32, Value, String) {
    let mut conf = json!({
        "cniVersion": "1.0.0", "name": "tqlnet", "type": "sandbox-net",
        "stateDir": state.path(),
        "prevResult": {
            "cniVersion": "1.0.0",
            "interfaces": [{ "name": "eth0", "sandbox": netns }],
            "ips": [{ "address": "10.77.0.2/24", "gateway": "10.77.0.1", "interface": 0 }]
        }
    });
    if let (Some(c), Value::Object(e)) = (conf.as_object_mut(), extra) {
        c.extend(e);
    }
    let env = crate::cni::env("ADD", "tql-ctr", netns);
    let out = crate::cni::plugin(&env, &conf.to_string());
    let stdout: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    (out.code, stdout, out.stderr)
}

#[test]
fn cni_config_key_sets_it_and_a_bad_value_is_error_code_7() {
    let net = scratch(1);
    let state = TempStateDir::new();
    let netns = format!("/run/netns/{}", net.pod_name);
    let before = snapshot(&net.pod_name);
    for bad in [json!(0), json!(100000), json!("1000")] {
        let (code, out, err) = cni_add(&state, &netns, json!({ "tapQueueLen": bad }));
        assert_ne!(code, 0, "tapQueueLen {bad}: {out}");
        assert_eq!(out["code"], 7, "tapQueueLen {bad}: {out} {err}");
        assert!(
            out["msg"]
                .as_str()
                .unwrap_or_default()
                .contains("tapQueueLen"),
            "names the key: {out}"
        );
    }
    assert_eq!(snapshot(&net.pod_name), before, "a refusal changes nothing");

    let (code, out, err) = cni_add(&state, &netns, json!({ "tapQueueLen": 1500 }));
    assert_eq!(code, 0, "ADD: {out} {err}");
    let tap = out["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|i| i["name"].as_str().filter(|n| n.starts_with("tap")))
        .unwrap_or_else(|| panic!("no tap in the result: {out}"))
        .to_string();
    assert_eq!(txqlen(&net.pod_name, &tap), 1500);
    let ids: Vec<String> = StateDir::open(state.path())
        .expect("state dir")
        .ids()
        .expect("list the states");
    for id in ids {
        sandbox_net::detach(state.path(), &id).expect("detach");
    }
}
