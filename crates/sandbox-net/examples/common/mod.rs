//! What both runtime examples share: a scratch pod to attach (the test kit's: a pod netns
//! with veths to a peer netns, as a CNI plugin leaves it), the fake guest that carries
//! traffic through a tap's queue fds, and the check that nothing is left.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sandbox_net::{Attachment, Endpoint, EndpointQueues, GuestConfig};
use sandbox_net_testkit::dataplane::identity;
use sandbox_net_testkit::fakeguest::FakeGuest;
use sandbox_net_testkit::scratch::ScratchNet;

/// A failure of the example, as text.
pub type Failure = Box<dyn std::error::Error + Send + Sync>;

/// A scratch pod with `links` veths (eth0 carries the default routes), and a state
/// directory of its own.
pub fn pod(links: u8) -> Result<(ScratchNet, PathBuf), Failure> {
    let mut net = ScratchNet::new("snx")?;
    for n in 0..links {
        net.add_link(n, 1500, n == 0)?;
    }
    let state_dir = std::env::temp_dir().join(format!("{}-state", net.pod_name));
    Ok((net, state_dir))
}

/// The endpoint named `name` of `attachment`.
pub fn endpoint<'a>(attachment: &'a Attachment, name: &str) -> Result<&'a Endpoint, Failure> {
    attachment
        .endpoints
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| format!("{name} is not attached").into())
}

/// A fake guest on the endpoint's queue fds (as the VMM would hold them) pings the peer
/// at `peer` `count` times; returns the round trips.
pub fn guest_pings(
    queues: EndpointQueues,
    endpoint: &Endpoint,
    guest: &GuestConfig,
    peer: IpAddr,
) -> Result<Vec<Duration>, Failure> {
    let iface = guest
        .interfaces
        .iter()
        .find(|i| i.name == endpoint.name)
        .ok_or_else(|| format!("the guest description has no {}", endpoint.name))?;
    let mut guest = FakeGuest::new(queues.queues, identity(endpoint, iface)?);
    Ok(guest.ping(peer, None, 3, Duration::from_secs(1))?)
}

/// Nothing is left: the pod and peer namespaces are gone, the state directory holds no
/// attachment; then the state directory itself is removed.
pub fn assert_nothing_left(netns: &[String], state_dir: &Path) -> Result<(), Failure> {
    for name in netns {
        let path = Path::new("/run/netns").join(name);
        if path.exists() {
            return Err(format!("{} is left behind", path.display()).into());
        }
    }
    let left = sandbox_net::list(state_dir)?;
    if !left.is_empty() {
        return Err(format!("attachments left in {}: {left:?}", state_dir.display()).into());
    }
    if state_dir.exists() {
        std::fs::remove_dir_all(state_dir)?;
    }
    Ok(())
}
