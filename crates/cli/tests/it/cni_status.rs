//! STATUS refuses what ADD would refuse, VERSION answers the version asked (0.3.0 too, and
//! an ADD under 0.3.0 gives a 0.3.0 result), and error JSON names the variable and carries
//! readable `details` (issue 17, CNI items 5 and 6).

use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};

use crate::cni::{assert_cni_error, ips, plugin};
use crate::cni_bed::Bed;
use crate::common::*;
use sandbox_net_testkit::netns::Named;

fn status(conf: &Value) -> crate::cni::Outcome {
    plugin(&[("CNI_COMMAND", "STATUS")], &conf.to_string())
}

/// STATUS with a configuration ADD would refuse fails with ADD's code (7), and with a state
/// directory ADD could not use with 50; a state directory that does not exist yet but can
/// be made is fine, and STATUS does not make it.
#[test]
fn status_refuses_what_add_would_refuse() {
    let base = TempStateDir::new();
    std::fs::create_dir_all(base.path()).expect("base dir");
    let conf = |extra: Value| {
        let mut c = json!({"cniVersion": "1.1.0", "name": "n", "type": "sandbox-net",
                           "stateDir": base.path().join("state")});
        if let (Some(c), Value::Object(e)) = (c.as_object_mut(), extra) {
            c.extend(e);
        }
        c
    };
    let out = status(&conf(json!({})));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        !base.path().join("state").exists(),
        "STATUS made the state dir"
    );
    for (extra, key) in [
        (json!({"model": "bogus"}), "model"),
        (json!({"queues": 0}), "queues"),
        (json!({"queues": 257}), "queues"),
        (json!({"tapQueueLen": 0}), "tapQueueLen"),
        (json!({"tapQueueLen": "long"}), "tapQueueLen"),
        (json!({"rxRate": "fast"}), "rxRate"),
        (json!({"tapName": "a/b"}), "tapName"),
        (json!({"stateDir": "relative/dir"}), "stateDir"),
        (json!({"lockTimeout": -1}), "lockTimeout"),
    ] {
        assert_cni_error(&status(&conf(extra)), 7, key);
    }
    // State directories ADD can't use: a regular file, one below a regular file, one
    // writable by others.
    let file = base.path().join("file");
    std::fs::write(&file, "x").expect("file");
    let open = base.path().join("open");
    std::fs::create_dir(&open).expect("dir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    for (dir, why) in [
        (file.clone(), "is not a directory"),
        (file.join("state"), "is not a directory"),
        (open.clone(), "world-writable"),
        (open.join("state"), "world-writable"),
    ] {
        let out = status(&conf(json!({ "stateDir": dir })));
        assert_cni_error(&out, 50, why);
        assert!(
            !open.join("state").exists(),
            "STATUS made {}",
            dir.display()
        );
    }
}

/// VERSION answers in the version asked when it is supported, else in the newest; the list
/// has 0.3.0 and 0.3.1.
#[test]
fn version_answers_the_version_asked() {
    let all = json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
    for asked in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let stdin = json!({ "cniVersion": asked }).to_string();
        let v = plugin(&[("CNI_COMMAND", "VERSION")], &stdin)
            .ok("VERSION")
            .json();
        assert_eq!(v["cniVersion"], asked, "{v}");
        assert_eq!(v["supportedVersions"], all, "{v}");
    }
    let v = plugin(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"0.2.0"}"#)
        .ok("VERSION")
        .json();
    assert_eq!(v["cniVersion"], "1.1.0", "{v}");
}

/// A bridge chain under cniVersion 0.3.0: ADD answers a 0.3.0 result (`ips[].version`,
/// our two interfaces), DEL removes everything.
#[test]
fn add_and_del_under_0_3_0() {
    let bed = Bed::new("net030", "0.3.0", json!({}));
    let pod = bed.pod("ctr-030", "eth0");
    let result = bed.add(&pod);
    assert_eq!(result["cniVersion"], "0.3.0", "{result:#}");
    let got = ips(&result);
    assert_eq!(got[0]["version"], "4", "{result:#}");
    let ifs = result["interfaces"].as_array().cloned().unwrap_or_default();
    assert_eq!(got[0]["interface"], ifs.len() - 1, "{result:#}");
    assert_eq!(ifs[ifs.len() - 2]["name"], "tap_eth0", "{result:#}");
    assert!(pod.ns.link("tap_eth0").is_some());
    // CHECK came with 0.4.0.
    let out = bed.call(&pod, "CHECK", &bed.ours(Some(&result)));
    assert_cni_error(&out, 1, "CHECK needs cniVersion 0.4.0");
    bed.del(&pod, Some(&result)).ok("DEL");
    assert!(pod.ns.link("tap_eth0").is_none(), "DEL left the tap");
    assert!(!bed.record_file(&pod.id()).exists());
}

/// Code 4 names the variable (a CNI_NETNS that is not a netns), and `details` is text
/// naming the object, not a Rust debug dump.
#[test]
fn errors_name_the_variable_and_details_are_text() {
    let state = TempStateDir::new();
    let not_ns = TempStateDir::new();
    std::fs::create_dir_all(not_ns.path()).expect("dir");
    let file = not_ns.path().join("netns");
    std::fs::write(&file, "").expect("file");
    let conf = crate::cni::conf_with(&state, "1.0.0", json!({}));
    let path = file.display().to_string();
    let out = plugin(&crate::cni::add_env(&path), &conf);
    assert_cni_error(&out, 4, "environment variable CNI_NETNS");
    assert_cni_error(&out, 4, &path);
    let j = out.json();
    assert_eq!(j["details"], "environment variable CNI_NETNS", "{j:#}");

    // An operation's failure: a state directory that is a regular file.
    let conf = crate::cni::conf_with(&state, "1.0.0", json!({ "stateDir": file }));
    let netns = Named::create(&unique_name("sncni-det")).expect("netns");
    let ns_path = format!("/run/netns/{}", netns.name());
    let out = plugin(&crate::cni::add_env(&ns_path), &conf);
    let j = out.json();
    let details = j["details"].as_str().unwrap_or_default();
    println!("{j:#}");
    assert!(details.contains(&path), "{j:#}");
    for debug in ["{", "InvalidInput", "Os {", "kind:"] {
        assert!(!details.contains(debug), "{debug:?} in {details:?}");
    }
}
