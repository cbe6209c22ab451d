//! Issue #17, CLI item 3: two sandboxes in one netns. `attach --id a --iface eth0` then
//! `attach --id b --iface eth1` both work: a new tap takes the first `tap<N>_sn` free in
//! the netns at plan time (not only among the sandbox's own endpoints), a device the
//! tenant made under such a name included; and a name still taken when the tap is
//! created is an error naming the sandbox that holds it.

use crate::common::*;

fn taps(ns: &str) -> Vec<String> {
    let mut names: Vec<String> = link_names(ns)
        .into_iter()
        .filter(|n| n.starts_with("tap"))
        .collect();
    names.sort();
    names
}

#[test]
fn two_sandboxes_in_one_netns_get_their_own_taps() {
    let net = scratch(3);
    let dir = TempStateDir::new();
    let before = snapshot(&net.pod_name);
    let (a, b, c) = (
        unique_name("two-a"),
        unique_name("two-b"),
        unique_name("two-c"),
    );
    let _ga = DetachOnDrop::new(dir.path(), a.clone());
    let _gb = DetachOnDrop::new(dir.path(), b.clone());
    let _gc = DetachOnDrop::new(dir.path(), c.clone());
    for (id, iface) in [(&a, "eth0"), (&b, "eth1")] {
        let (code, out, err) = cli_attach(&dir, &net.pod_name, id, &["--iface", iface]);
        assert_eq!(code, 0, "attach {id} {iface}: {err}");
        assert!(out.contains(iface), "{out}");
    }
    assert_eq!(taps(&net.pod_name), ["tap0_sn", "tap1_sn"]);

    // A device the tenant named like ours is skipped too.
    ip(
        &net.pod_name,
        &["tuntap", "add", "dev", "tap2_sn", "mode", "tap"],
    );
    let (code, out, err) = cli_attach(&dir, &net.pod_name, &c, &["--iface", "eth2"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("tap tap3_sn"), "{out}");
    ip(&net.pod_name, &["link", "del", "tap2_sn"]);

    for id in [&a, &b, &c] {
        let (code, _, err) = cli_at(&dir, &["detach", "--id", id]);
        assert_eq!(code, 0, "{err}");
    }
    assert_eq!(snapshot(&net.pod_name), before);
}

#[test]
fn a_taken_tap_name_names_the_sandbox_that_holds_it() {
    let net = scratch(2);
    let dir = TempStateDir::new();
    let (a, b) = (unique_name("held-a"), unique_name("held-b"));
    let mut opts = options(&net.pod_name, &dir, &a);
    opts.interfaces = Some(vec!["eth0".into()]);
    let (_, _guard_a) = attach(&opts);
    // The name asked for explicitly (as the CNI plugin's tapName does) is a's.
    let mut opts = options(&net.pod_name, &dir, &b);
    opts.interfaces = Some(vec!["eth1".into()]);
    opts.tap_names = vec!["tap0_sn".into()];
    let e = sandbox_net::attach(&opts).expect_err("the name is a's");
    let text = e.to_string();
    assert!(text.contains("tap tap0_sn"), "{text}");
    assert!(
        text.contains(&format!("the name is in use by sandbox \"{a}\"")),
        "{text}"
    );
    assert_eq!(taps(&net.pod_name), ["tap0_sn"], "b left nothing");
}
