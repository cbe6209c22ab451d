//! GC with `"cni.dev/valid-attachments": null` (what CRI-O's ocicni sends for a network
//! with no live pod), or without the key: an empty list, so GC collects every attachment
//! of its network and nothing of another (issue 17, CNI item 1).

use serde_json::{Value, json};

use crate::cni::check_nothing_left;
use crate::cni_bed::Bed;

fn gc_conf(bed: &Bed, network: &str, valid: Option<Value>) -> Value {
    let mut conf = json!({"cniVersion": "1.1.0", "name": network, "type": "sandbox-net",
                          "stateDir": bed.state.path()});
    if let Some(v) = valid {
        conf["cni.dev/valid-attachments"] = v;
    }
    conf
}

#[test]
fn gc_with_null_or_no_valid_attachments_collects_the_network() {
    let bed = Bed::new("gcnull", "1.0.0", json!({}));
    let a = bed.pod("ctr-gcnull-a", "eth0");
    let b = bed.pod("ctr-gcnull-b", "eth0");
    bed.add(&a);
    bed.add(&b);
    for valid in [Some(Value::Null), None] {
        let out = bed.call_network("GC", &gc_conf(&bed, "gcnull", valid.clone()));
        assert_eq!(out.code, 0, "{valid:?}: {out:#?}");
        assert_eq!(out.stdout.trim(), "");
        for pod in [&a, &b] {
            check_nothing_left(&bed.state, &pod.id(), &pod.ns, "tap_eth0");
            assert!(
                pod.ns.link("eth0").is_some(),
                "GC is only about our objects"
            );
        }
        // Attached again for the next round (the bridge's eth0 is still there).
        if valid.is_some() {
            bed.add(&a);
            bed.add(&b);
        }
    }
}

/// A null list under another network's name collects nothing of this one.
#[test]
fn gc_with_null_spares_other_networks() {
    let bed = Bed::new("gckeep", "1.0.0", json!({}));
    let a = bed.pod("ctr-gckeep", "eth0");
    let result = bed.add(&a);
    let out = bed.call_network("GC", &gc_conf(&bed, "another", Some(Value::Null)));
    assert_eq!(out.code, 0, "{out:#?}");
    crate::cni::check_attached(&bed.state, &a.id());
    bed.del(&a, Some(&result)).ok("DEL");
    check_nothing_left(&bed.state, &a.id(), &a.ns, "tap_eth0");
}

/// A record GC can't read (truncated): whose network it is can't be told, so it is left
/// alone and logged, and GC succeeds (it would otherwise fail every GC from then on); DEL
/// of its pair still removes it.
#[test]
fn gc_leaves_an_unreadable_record_alone() {
    let bed = Bed::new("gcbad", "1.0.0", json!({}));
    let a = bed.pod("ctr-gcbad", "eth0");
    let result = bed.add(&a);
    let record = bed.record_file(&a.id());
    let text = std::fs::read(&record).expect("record");
    std::fs::write(&record, &text[..text.len() / 2]).expect("truncate");
    let out = bed.call_network("GC", &gc_conf(&bed, "gcbad", Some(Value::Null)));
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("unreadable CNI record"), "{out:#?}");
    assert!(
        a.ns.link("tap_eth0").is_some(),
        "GC removed what it can't tell is its"
    );
    bed.del(&a, Some(&result)).ok("DEL");
    check_nothing_left(&bed.state, &a.id(), &a.ns, "tap_eth0");
}
