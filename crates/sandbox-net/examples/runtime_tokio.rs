//! The library under an async runtime: every call blocks its thread (and moves it into the
//! netns for the call), so a tokio runtime runs each one on a blocking thread
//! (`spawn_blocking`). Attach, hand the taps over, carry fake-guest traffic, detach,
//! several sandboxes at once, and check that nothing is left.
//!
//! Run as root: `cargo run -p sandbox-net --example runtime_tokio`. scripts/test.sh runs it.

mod common;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use common::{Failure, assert_nothing_left, endpoint, guest_pings, pod};
use sandbox_net::{AttachOptions, HandoffOptions, RenderOptions, Vmm, attach, detach, handoff};
use tokio::task::spawn_blocking;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    // Three sandboxes at once, each on its own pod.
    let runs: Vec<_> = (0..3).map(|n| tokio::spawn(one(n))).collect();
    let mut failed = false;
    for run in runs {
        match run.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("runtime_tokio example: {e}");
                failed = true;
            }
            Err(e) => {
                eprintln!("runtime_tokio example: a task failed: {e}");
                failed = true;
            }
        }
    }
    if failed {
        return ExitCode::FAILURE;
    }
    println!("runtime_tokio example: ok, nothing left");
    ExitCode::SUCCESS
}

async fn one(n: u32) -> Result<(), Failure> {
    let id = format!("tokio-example-{n}");
    let (net, state_dir) = spawn_blocking(|| pod(1)).await??;
    let names = vec![net.pod_name.clone(), net.peer_name.clone()];
    let peer = IpAddr::V4(net.links[0].peer_v4);
    let mut opts = AttachOptions::new(net.pod_name.clone(), id.clone());
    opts.state_dir = state_dir.clone();
    let attachment = spawn_blocking(move || attach(&opts)).await??;
    let flow = {
        let (dir, id) = (state_dir.clone(), id.clone());
        spawn_blocking(move || -> Result<(), Failure> {
            let mut h = handoff(&dir, &id, HandoffOptions::default())?;
            let numbers = h.numbered_from(20);
            let opts = RenderOptions {
                fd_numbers: Some(numbers),
                ..RenderOptions::default()
            };
            let qemu = sandbox_net::render(&attachment, Vmm::Qemu, &opts)?;
            println!("{id}: qemu {}", qemu.args.join(" "));
            let eth0 = endpoint(&attachment, "eth0")?;
            let guest = attachment.guest.as_ref().ok_or("no guest description")?;
            let rtts = guest_pings(h.endpoints.remove(0), eth0, guest, peer)?;
            println!("{id}: fake guest pinged the peer: {rtts:?}");
            Ok(())
        })
        .await?
    };
    let dir: PathBuf = state_dir.clone();
    let detached = spawn_blocking(move || detach(&dir, &id)).await?;
    flow?;
    detached?;
    spawn_blocking(move || {
        drop(net);
        assert_nothing_left(&names, &state_dir)
    })
    .await?
}
