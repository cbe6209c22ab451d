//! A VM runtime's network flow end to end, through the library's root API only (besides
//! the test kit, which stands in for the CNI plugin and the guest):
//!
//! 1. attach a pod's netns (a scratch one: eth0 with addresses and default routes);
//! 2. hand its taps to the VMM: open the queues in the verified netns ([`handoff`]) and
//!    render QEMU's arguments with the runtime's own fd numbers (10, 11, ...);
//! 3. carry traffic through the tap fds (a fake guest pings the pod's peer);
//! 4. hot-plug eth1, set a rate limit, remove eth0 (eth1 keeps its QEMU id);
//! 5. detach, and check that nothing is left.
//!
//! Run as root: `cargo run -p sandbox-net --example runtime`. scripts/test.sh runs it.

mod common;

use std::net::IpAddr;
use std::process::ExitCode;

use common::{Failure, assert_nothing_left, endpoint, guest_pings, pod};
use sandbox_net::{
    AttachOptions, HandoffOptions, RateChange, RenderOptions, Vmm, add_endpoint, attach, detach,
    handoff, remove_endpoint, render, set_rate,
};

const ID: &str = "runtime-example";

fn main() -> ExitCode {
    match run() {
        Ok(()) => {
            println!("runtime example: ok, nothing left");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("runtime example: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Failure> {
    let (mut net, state_dir) = pod(1)?;
    let names = vec![net.pod_name.clone(), net.peer_name.clone()];
    let mut opts = AttachOptions::new(net.pod_name.clone(), ID);
    opts.state_dir = state_dir.clone();
    let mut attachment = attach(&opts)?;
    // Whatever happens next, detach (a runtime does this when the sandbox stops).
    let flow = flow(&mut net, &state_dir, &mut attachment);
    let detached = detach(&state_dir, ID);
    println!("detach: {:?}", detached.as_ref().map(ToString::to_string));
    flow?;
    detached?;
    drop(net); // the scratch namespaces go
    assert_nothing_left(&names, &state_dir)
}

fn flow(
    net: &mut sandbox_net_testkit::scratch::ScratchNet,
    state_dir: &std::path::Path,
    attachment: &mut sandbox_net::Attachment,
) -> Result<(), Failure> {
    println!(
        "attached: {}",
        serde_json::to_string(&attachment.endpoints)?
    );

    // The hand-off: the queues, opened in the netns proven the one attached.
    let mut handoff = handoff(state_dir, ID, HandoffOptions::default())?;
    let numbers = handoff.numbered_from(10);
    let opts = RenderOptions {
        fd_numbers: Some(numbers.clone()),
        ..RenderOptions::default()
    };
    let qemu = render(attachment, Vmm::Qemu, &opts)?;
    println!("qemu {}", qemu.args.join(" "));
    if !qemu
        .args
        .iter()
        .any(|a| a.starts_with("tap,id=sn-eth0,fd=10,"))
    {
        return Err(format!("QEMU's arguments do not use fd 10: {:?}", qemu.args).into());
    }

    // Traffic through the tap fds, as the guest's NIC would carry it.
    let eth0 = endpoint(attachment, "eth0")?.clone();
    let guest = attachment
        .guest
        .clone()
        .ok_or("the attach described no guest")?;
    let queues = handoff.endpoints.remove(0);
    let rtts = guest_pings(queues, &eth0, &guest, IpAddr::V4(net.links[0].peer_v4))?;
    println!("fake guest on eth0's tap pinged the peer: {rtts:?}");

    // Hotplug: eth1 comes, gets a rate limit; eth0 goes; eth1's QEMU id stays.
    net.add_link(1, 1500, false)?;
    let added = add_endpoint(state_dir, ID, "eth1")?;
    attachment.endpoints.push(added.endpoint);
    let before = render(attachment, Vmm::Qemu, &RenderOptions::default())?;
    let rate = RateChange::Set("100mbit".parse()?);
    let limits = set_rate(state_dir, ID, Some("eth1"), Some(rate), None)?;
    println!("eth1 rate limits: {}", serde_json::to_string(&limits)?);
    remove_endpoint(state_dir, ID, "eth0")?;
    attachment.endpoints.retain(|e| e.name != "eth0");
    let after = render(attachment, Vmm::Qemu, &RenderOptions::default())?;
    let eth1 = |args: &[String]| args.iter().find(|a| a.contains("id=sn-eth1,")).cloned();
    if eth1(&before.args).is_none() || eth1(&before.args) != eth1(&after.args) {
        return Err(format!("eth1's netdev changed: {before:?} -> {after:?}").into());
    }
    println!("after hotplug: qemu {}", after.args.join(" "));
    Ok(())
}
