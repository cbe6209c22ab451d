//! Firecracker: one `network-interfaces` entry per tap endpoint, `{"iface_id",
//! "host_dev_name", "guest_mac"}`, for the `--config-file` JSON or the body of
//! `PUT /network-interfaces/{iface_id}`. Firecracker opens the tap by name (tap, no PI,
//! vnet header, never multi-queue), so it must run inside the sandbox netns, and its
//! virtio-net has a single queue pair.

use serde::Serialize;

use super::{Vmm, VmmArgs, guest_mac, queues, unsupported};
use crate::Result;
use crate::endpoint::Backend;
use crate::endpoint::Endpoint;

const VMM: Vmm = Vmm::Firecracker;

/// One entry of Firecracker's `network-interfaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirecrackerInterface {
    /// The interface id: the interface name, characters Firecracker does not take as `_`.
    pub iface_id: String,
    /// The tap Firecracker opens by name (in the sandbox netns).
    pub host_dev_name: String,
    /// The MAC of the guest NIC.
    pub guest_mac: String,
}

/// Firecracker ids are `[A-Za-z0-9_]{1,64}`: other characters become '_'.
fn iface_id(name: &str) -> String {
    let id: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if id.is_empty() { "net".into() } else { id }
}

pub(super) fn render(endpoints: &[Endpoint], out: &mut VmmArgs) -> Result<()> {
    let mut interfaces = Vec::new();
    let mut mtu_notes = Vec::new();
    for ep in endpoints {
        let queues = queues(ep);
        match &ep.backend {
            Backend::Tap { name, .. } => {
                if queues > 1 {
                    return Err(unsupported(
                        VMM,
                        ep,
                        format!(
                            "tap {name} has {queues} queues, but Firecracker's virtio-net has one \
                             queue pair and opens taps without IFF_MULTI_QUEUE; attach with --queues 1"
                        ),
                    ));
                }
                if ep.mtu != 1500 {
                    mtu_notes.push(format!("{} MTU {}", ep.name, ep.mtu));
                }
                interfaces.push(FirecrackerInterface {
                    iface_id: iface_id(&ep.name),
                    host_dev_name: name.to_string(),
                    guest_mac: guest_mac(ep),
                });
            }
            Backend::Macvtap { name, .. } => {
                return Err(unsupported(
                    VMM,
                    ep,
                    format!(
                        "{name} is a macvtap, which Firecracker can't open (it opens taps by \
                         name through /dev/net/tun); attach with the tcfilter model"
                    ),
                ));
            }
            Backend::VhostUser { .. } => {
                return Err(unsupported(
                    VMM,
                    ep,
                    "Firecracker has no vhost-user network device",
                ));
            }
            Backend::Vfio { .. } => {
                return Err(unsupported(VMM, ep, "Firecracker has no PCI passthrough"));
            }
            Backend::None => {}
        }
    }
    if !interfaces.is_empty() {
        out.run_in_netns = true;
        out.notes.push(
            "Firecracker opens the tap by name; its jailer enters the netns with \
             `--netns <netns path>`"
                .into(),
        );
        out.notes.push(
            "config file: put these entries under \"network-interfaces\"; API: PUT each one to \
             /network-interfaces/<iface_id> before InstanceStart"
                .into(),
        );
    }
    if !mtu_notes.is_empty() {
        out.notes.push(format!(
            "Firecracker does not tell the guest the MTU: set it in the guest ({})",
            mtu_notes.join(", ")
        ));
    }
    out.network_interfaces = Some(interfaces);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::tests::{OPTS, endpoint, state};
    use crate::vmm::vmm_args;

    #[test]
    fn network_interfaces_entries() {
        let a = vmm_args(
            &state(vec![
                endpoint("eth0", "tap0_sn", 1),
                endpoint("net-1", "tap1_sn", 1),
            ]),
            Vmm::Firecracker,
            OPTS,
        )
        .unwrap();
        let json = serde_json::to_value(&a.network_interfaces).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"iface_id": "eth0", "host_dev_name": "tap0_sn", "guest_mac": "02:77:00:00:00:02"},
                {"iface_id": "net_1", "host_dev_name": "tap1_sn", "guest_mac": "02:77:00:00:00:02"}
            ])
        );
        assert!(a.run_in_netns && a.args.is_empty());
        assert!(
            a.notes
                .iter()
                .any(|n| n.contains("inside the sandbox netns"))
        );
    }

    #[test]
    fn multi_queue_and_macvtap_are_refused() {
        let e = vmm_args(
            &state(vec![endpoint("eth0", "tap0_sn", 2)]),
            Vmm::Firecracker,
            OPTS,
        )
        .unwrap_err();
        assert!(e.to_string().contains("--queues 1"), "{e}");
        let mut m = endpoint("eth0", "mvt0_sn", 1);
        m.backend = Backend::Macvtap {
            name: "mvt0_sn".into(),
            mac: None,
            chardev: Some("240:1".into()),
        };
        let e = vmm_args(&state(vec![m]), Vmm::Firecracker, OPTS).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }
}
