//! `sandbox-net demo`: the whole job on a scratch network, start to finish.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use sandbox_net::netlink::{Netlink, link, tc};
use sandbox_net::{AttachOptions, Error};
use sandbox_net_testkit::dataplane;
use sandbox_net_testkit::guard::DetachOnDrop;
use sandbox_net_testkit::scratch::ScratchNet;

use crate::output::outln;
use crate::signals;

/// Stop between steps once SIGINT or SIGTERM came (the guards clean up).
fn check_interrupt(stop: &AtomicBool) -> Result<(), Error> {
    if stop.load(Ordering::SeqCst) {
        return Err(Error::Interrupted {
            operation: "demo".into(),
        });
    }
    Ok(())
}

pub fn run(state_dir: &Path) -> Result<(), Error> {
    let stop = signals::stop_on_signals("demo")?;

    outln!("== 1. scratch network: a pod netns wired like a CNI bridge plugin would, and a peer")?;
    let mut net = ScratchNet::new("sn-demo")?;
    let veth = net.add_link(0, 1500, true)?;
    outln!(
        "   pod netns {} : {} {} / {} , default via {} / {}",
        net.pod_name,
        veth.name,
        veth.pod_v4,
        veth.pod_v6,
        veth.peer_v4,
        veth.peer_v6
    )?;
    outln!(
        "   peer netns {} : {} {} / {}",
        net.peer_name,
        veth.peer_name,
        veth.peer_v4,
        veth.peer_v6
    )?;
    check_interrupt(stop)?;

    outln!("\n== 2. attach (model tcfilter, 2 queues)")?;
    let id = format!("demo-{}", std::process::id());
    let mut opts = AttachOptions::new(net.pod.path().display().to_string(), id.clone());
    opts.queues = 2;
    opts.state_dir = state_dir.to_path_buf();
    let attachment = sandbox_net::attach(&opts)?;
    // Detaches the demo sandbox if the demo stops before it detached on its own.
    let guard = DetachOnDrop::new(state_dir, id.clone());
    let json = |v: &dyn erased::Json| v.to_pretty();
    outln!("{}", json(&attachment))?;
    outln!("\n== 3. guest config")?;
    // The demo attaches with the default `describe_guest`, so the description is there.
    let guest = attachment.guest.as_ref().ok_or_else(|| {
        sandbox_net::Error::invalid("the demo's attachment", "carries no guest description")
    })?;
    outln!("{}", json(guest))?;
    check_interrupt(stop)?;

    outln!("\n== 4. dataplane: a fake guest on the tap fd answers and sends ARP/NDP and pings")?;
    let endpoint = &attachment.endpoints[0];
    let iface = guest.interfaces.first().ok_or_else(|| {
        sandbox_net::Error::invalid("the demo's guest description", "has no interface")
    })?;
    let identity = dataplane::identity(endpoint, iface)?;
    let peers = [IpAddr::V4(veth.peer_v4), IpAddr::V6(veth.peer_v6)];
    let reports = dataplane::check(&net.pod, &net.peer, endpoint, identity, &peers, 3)?;
    for r in &reports {
        let rtts: Vec<String> = r
            .rtts
            .iter()
            .map(|d| format!("{:.3} ms", d.as_secs_f64() * 1e3))
            .collect();
        outln!(
            "   {:<28} {} replies, rtt {}",
            r.direction,
            r.rtts.len(),
            rtts.join(", ")
        )?;
    }
    check_interrupt(stop)?;

    outln!("\n== 5. detach")?;
    let outcome = sandbox_net::detach(state_dir, &id)?;
    guard.disarm();
    outln!("   {outcome}")?;
    let mut nl = Netlink::open_in(&net.pod)?;
    let links = link::dump(&mut nl)
        .map_err(|e| Error::kernel("demo pod netns", "dump links", e.into_io()))?;
    let qdiscs = tc::dump_qdiscs(&mut nl)
        .map_err(|e| Error::kernel("demo pod netns", "dump qdiscs", e.into_io()))?;
    let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
    let ingress = qdiscs.iter().filter(|q| q.kind == "ingress").count();
    let state_left = sandbox_net::ops::load_existing(&opts.state_dir, &id)?.is_some();
    outln!(
        "   links left in the pod netns: {names:?}; ingress qdiscs: {ingress}; state file left: {state_left}"
    )?;
    if names.len() != 2 || ingress != 0 || state_left {
        return Err(Error::invalid("demo", "detach left something behind"));
    }

    outln!("\n== 6. remove the scratch namespaces")?;
    let (pod, peer) = (net.pod_name.clone(), net.peer_name.clone());
    drop(net);
    let left = [&pod, &peer]
        .iter()
        .filter(|n| Path::new("/run/netns").join(n).exists())
        .count();
    outln!("   {pod}, {peer} removed ({left} left)")?;
    outln!("\ndemo OK")?;
    Ok(())
}

/// Pretty JSON for the demo's printouts.
mod erased {
    pub trait Json {
        fn to_pretty(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_pretty(&self) -> String {
            serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("<cannot encode: {e}>"))
        }
    }
}
