//! The (CNI_CONTAINERID, CNI_IFNAME) -> sandbox id map is one-to-one and readable, and
//! attachments recorded under the id of the rule before it (no hash) still DEL, CHECK and
//! GC (issue 17, CNI item 4).

use serde_json::{Value, json};

use sandbox_net::cni::id::legacy_sandbox_id;
use sandbox_net::cni::record::{RECORD_VERSION, Record, Records};

use crate::cni::{assert_cni_error, check_attached, check_nothing_left};
use crate::cni_bed::{Bed, Pod};

/// Pairs the old rule mapped to one id: `a-b`+`c` and `a`+`b-c`, and two container ids
/// sharing their first 47 characters. Each ADD succeeds with its own id, tap and record,
/// and each DEL removes its own only.
#[test]
fn pairs_that_shared_an_id_both_add() {
    let bed = Bed::new("idnet", "1.0.0", json!({}));
    let long = "f".repeat(47);
    let pairs = [
        ("a-b".to_string(), "c"),
        ("a".to_string(), "b-c"),
        (format!("{long}1"), "eth0"),
        (format!("{long}2"), "eth0"),
    ];
    assert_eq!(
        legacy_sandbox_id(&pairs[0].0, pairs[0].1),
        legacy_sandbox_id(&pairs[1].0, pairs[1].1)
    );
    assert_eq!(
        legacy_sandbox_id(&pairs[2].0, pairs[2].1),
        legacy_sandbox_id(&pairs[3].0, pairs[3].1)
    );
    let pods: Vec<(Pod, Value)> = pairs
        .iter()
        .map(|(c, i)| {
            let pod = bed.pod(c, i);
            let result = bed.add(&pod);
            (pod, result)
        })
        .collect();
    let ids: std::collections::HashSet<String> = pods.iter().map(|(p, _)| p.id()).collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    for (pod, _) in &pods {
        let id = pod.id();
        let readable = format!(
            "{}-{}-",
            pod.rt.container_id.chars().take(34).collect::<String>(),
            pod.rt.ifname
        );
        assert!(
            id.starts_with(&readable),
            "{id} is not readable as {readable}"
        );
        check_attached(&bed.state, &id);
    }
    for (pod, result) in &pods {
        bed.del(pod, Some(result)).ok("DEL");
        check_nothing_left(
            &bed.state,
            &pod.id(),
            &pod.ns,
            &format!("tap_{}", pod.rt.ifname),
        );
        // The others are still attached.
        for (other, _) in pods.iter().filter(|(o, _)| o.id() != pod.id()) {
            if bed.record_file(&other.id()).exists() {
                check_attached(&bed.state, &other.id());
            }
        }
    }
}

/// What an earlier build made for `pod`: its state and record under the id without hash
/// (attached as ADD attaches); the ADD result it printed.
fn attach_the_old_way(bed: &Bed, pod: &Pod) -> Value {
    let (container, ifname) = (&pod.rt.container_id, &pod.rt.ifname);
    let id = legacy_sandbox_id(container, ifname);
    let mut opts = sandbox_net::AttachOptions::new(pod.rt.netns.clone(), id.clone());
    opts.state_dir = bed.state.path().to_path_buf();
    opts.interfaces = Some(vec![ifname.clone()]);
    opts.tap_names = vec![format!("tap_{ifname}")];
    opts.describe_guest = false;
    sandbox_net::attach(&opts).expect("attach under the old id");
    let record = Record {
        version: RECORD_VERSION,
        network: bed.chain.name.clone(),
        container_id: container.clone(),
        ifname: ifname.clone(),
        netns: pod.rt.netns.clone(),
    };
    Records::open(bed.state.path())
        .and_then(|r| r.save(&id, &record))
        .expect("save the old record");
    let tap = pod.ns.link(&format!("tap_{ifname}")).expect("tap");
    let eth = pod.ns.link(ifname).expect("pod interface");
    let mut result = pod.prev.clone();
    let ifs = result["interfaces"].as_array_mut().expect("interfaces");
    ifs.push(json!({"name": tap["ifname"], "mac": tap["address"], "sandbox": pod.rt.netns}));
    ifs.push(json!({"name": ifname, "mac": eth["address"], "sandbox": container}));
    let vm = ifs.len() - 1;
    for ip in result["ips"].as_array_mut().expect("ips") {
        ip["interface"] = vm.into();
    }
    result
}

/// Attachments with a record made the old way: CHECK passes, a second ADD is refused
/// (100), DEL detaches one and GC collects the other.
#[test]
fn attachments_of_the_old_id_rule_still_check_del_and_gc() {
    let bed = Bed::new("oldnet", "1.0.0", json!({}));
    let a = bed.pod("ctr-old-a", "eth0");
    let b = bed.pod("ctr-old-b", "eth0");
    let result_a = attach_the_old_way(&bed, &a);
    attach_the_old_way(&bed, &b);
    let (old_a, old_b) = (
        legacy_sandbox_id("ctr-old-a", "eth0"),
        legacy_sandbox_id("ctr-old-b", "eth0"),
    );
    assert_eq!(old_a, "ctr-old-a-eth0");
    check_attached(&bed.state, &old_a);

    bed.call(&a, "CHECK", &bed.ours(Some(&result_a)))
        .ok("CHECK of an old attachment");
    let again = bed.call(&a, "ADD", &bed.ours(Some(&a.prev)));
    assert_cni_error(&again, 100, "already attached");
    assert!(!bed.record_file(&a.id()).exists(), "ADD left a new record");
    bed.del(&a, Some(&result_a)).ok("DEL of an old attachment");
    check_nothing_left(&bed.state, &old_a, &a.ns, "tap_eth0");

    let conf = json!({"cniVersion": "1.1.0", "name": "oldnet", "type": "sandbox-net",
                      "stateDir": bed.state.path(), "cni.dev/valid-attachments": []});
    bed.call_network("GC", &conf).ok("GC");
    check_nothing_left(&bed.state, &old_b, &b.ns, "tap_eth0");
}
