use crate::common::*;

#[test]
fn attach_and_detach_round_trip_leaves_the_netns_as_it_was() {
    let net = scratch(1);
    let state = TempStateDir::new();
    let before = snapshot(&net.pod_name);
    let mut opts = sandbox_net::AttachOptions::new(net.pod_name.clone(), "smoke-1");
    opts.state_dir = state.path().to_path_buf();
    let a = sandbox_net::attach(&opts).expect("attach");
    assert_eq!(a.endpoints.len(), 1);
    assert_ne!(snapshot(&net.pod_name), before);
    let d = sandbox_net::detach(state.path(), "smoke-1").expect("detach");
    assert!(matches!(d, sandbox_net::Detached::Detached { .. }));
    assert_eq!(snapshot(&net.pod_name), before);
}
