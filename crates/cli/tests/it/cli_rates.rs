//! Issue #17, CLI item 5: one spelling of the rate flags (`--rx-rate`/`--tx-rate` for
//! attach and set-rate, the old `--rx`/`--tx` kept as hidden aliases); attach shows the
//! limits; set-rate without `--iface` says they become the default for later endpoints;
//! add-endpoint says which limits it applied; `10M`, `10MB`, `10m` are refused with the
//! iproute2 spelling meant.

use serde_json::Value;

use crate::common::*;

#[test]
fn rates_are_spelled_one_way_shown_and_explained() {
    let net = scratch(2);
    let dir = TempStateDir::new();
    let id = unique_name("rates");
    let _cleanup = DetachOnDrop::new(dir.path(), id.clone());

    // A bare SI prefix is refused with the spelling meant, before anything is done.
    for (bad, hint) in [
        ("10M", "did you mean 10mbit?"),
        ("10m", "did you mean 10mbit?"),
        ("10MB", "did you mean 10mbps (bytes per second) or 10mbit?"),
    ] {
        let (code, _, err) = cli_attach(&dir, &net.pod_name, &id, &["--rx-rate", bad]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(hint), "{bad}: {err}");
    }
    assert!(!link_names(&net.pod_name).iter().any(|n| n == "tap0_sn"));

    let (code, out, err) = cli_attach(
        &dir,
        &net.pod_name,
        &id,
        &["--iface", "eth0", "--rx-rate", "10mbit", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let a: Value = serde_json::from_str(&out).expect("attach JSON");
    assert_eq!(a["rate_limits"]["rx_rate_bps"], 10_000_000, "{a}");
    assert_eq!(a["rate_limits"]["tx_rate_bps"], Value::Null, "{a}");

    // set-rate: the attach spelling, and the old one still accepted (hidden).
    for flag in ["--tx-rate", "--tx"] {
        let (code, _, err) = cli_at(&dir, &["set-rate", "--id", &id, flag, "5mbit"]);
        assert_eq!(code, 0, "{flag}: {err}");
    }
    let (code, _, err) = cli_at(&dir, &["set-rate", "--id", &id, "--rx-rate", "10M"]);
    assert_eq!(code, 2);
    assert!(err.contains("did you mean 10mbit?"), "{err}");
    let (_, help, _) = cli(&["set-rate", "--help"]);
    assert!(
        help.contains("--rx-rate") && help.contains("--tx-rate"),
        "{help}"
    );
    assert!(!help.contains("--rx ") && !help.contains("--tx "), "{help}");

    // Without --iface: the default for later endpoints, said so.
    let (code, out, err) = cli_at(&dir, &["set-rate", "--id", &id, "--rx-rate", "20mbit"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("also the default for endpoints added later: rx 20mbit, tx 5mbit"),
        "{out}"
    );
    let (code, out, err) = cli_at(
        &dir,
        &["set-rate", "--id", &id, "--rx-rate", "30mbit", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("set-rate JSON");
    assert_eq!(v["id"], id.as_str(), "{v}");
    assert!(v["limits"].as_array().is_some_and(|l| l.len() == 2), "{v}");
    assert_eq!(v["limits"][0]["endpoint"], "eth0", "{v}");
    assert_eq!(v["rate_limits"]["rx_rate_bps"], 30_000_000, "{v}");
    // With --iface: only that endpoint, no default.
    let (code, out, err) = cli_at(
        &dir,
        &[
            "set-rate", "--id", &id, "--iface", "eth0", "--rx", "40mbit", "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("set-rate JSON");
    assert!(v.get("rate_limits").is_none(), "{v}");

    // add-endpoint says which limits the new endpoint got.
    let (code, out, err) = cli_at(&dir, &["add-endpoint", "--id", &id, "--iface", "eth1"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("rate limits applied (the sandbox's): rx 30mbit, tx 5mbit"),
        "{out}"
    );
    let (code, _, err) = cli_at(&dir, &["remove-endpoint", "--id", &id, "--iface", "eth1"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli_at(
        &dir,
        &["add-endpoint", "--id", &id, "--iface", "eth1", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("add-endpoint JSON");
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["endpoint"]["name"], "eth1");
    assert_eq!(v["rate_limits"]["rx_rate_bps"], 30_000_000, "{v}");
    assert_eq!(v["rate_limits"]["tx_rate_bps"], 5_000_000, "{v}");
}
