//! Cloud Hypervisor: `--net tap=<name>,mac=<mac>,num_queues=<n>,mtu=<mtu>` per tap
//! endpoint (docs/networking.md: `num_queues` counts rx and tx queues, so it is twice the
//! tap's queue pairs, default 2; a tap opened with more than one pair must be multi-queue,
//! which sandbox-net makes it when attached with `--queues` > 1). `--net` takes one value
//! per NIC. vhost-user sockets: `vhost_user=true,socket=...`; VFIO NICs: `--device path=`.

use super::{RenderOptions, Vmm, VmmArgs, guest_mac, queues, unsupported};
use crate::Result;
use crate::endpoint::Backend;
use crate::endpoint::Endpoint;

const VMM: Vmm = Vmm::CloudHypervisor;

/// Cloud Hypervisor's option parser splits on ',' and '=' and groups with '[...]'.
fn check_value(value: &str) -> std::result::Result<(), String> {
    if value.contains([',', '=', '[', ']', '"']) {
        return Err(format!(
            "{value:?} contains a character Cloud Hypervisor's option syntax can't carry"
        ));
    }
    Ok(())
}

/// With `opts.fd_numbers`, taps and macvtaps go by the caller's fds (`fd=[..]`, Cloud
/// Hypervisor's list syntax; no vhost-net fds: it has its own vhost-net handling).
pub(super) fn render(
    endpoints: &[Endpoint],
    opts: &RenderOptions,
    out: &mut VmmArgs,
) -> Result<()> {
    let by_fds = |ep: &Endpoint| {
        let numbers = opts.fd_numbers.as_deref()?;
        numbers.iter().find(|n| n.endpoint == ep.name)
    };
    let mut nets = Vec::new();
    let mut devices = Vec::new();
    let mut vhost_user = false;
    for ep in endpoints {
        let check = |v: &str| check_value(v).map_err(|r| unsupported(VMM, ep, r));
        let queues = queues(ep);
        match (&ep.backend, by_fds(ep)) {
            (Backend::Tap { .. } | Backend::Macvtap { .. }, Some(fds)) => {
                if !fds.vhost_fds.is_empty() {
                    return Err(unsupported(
                        VMM,
                        ep,
                        "Cloud Hypervisor takes no vhost-net fds; give queue fds only",
                    ));
                }
                let list: Vec<String> = fds.queue_fds.iter().map(i32::to_string).collect();
                nets.push(format!(
                    "fd=[{}],mac={},num_queues={},mtu={}",
                    list.join(","),
                    guest_mac(ep),
                    2 * queues,
                    ep.mtu
                ));
            }
            (Backend::Tap { name, .. }, None) => {
                check(name)?;
                out.run_in_netns = true;
                nets.push(format!(
                    "tap={name},mac={},num_queues={},mtu={}",
                    guest_mac(ep),
                    2 * queues,
                    ep.mtu
                ));
            }
            (Backend::Macvtap { name, .. }, None) => {
                return Err(unsupported(
                    VMM,
                    ep,
                    format!(
                        "{name} is a macvtap: its queues must be passed as fds (--net fd=[...]), \
                         and `sandbox-net exec` passes fds to QEMU only; attach with the \
                         tcfilter model for Cloud Hypervisor"
                    ),
                ));
            }
            (Backend::VhostUser { socket }, _) => {
                let socket = socket.to_string_lossy();
                check(&socket)?;
                vhost_user = true;
                nets.push(format!(
                    "vhost_user=true,socket={socket},mac={},num_queues={}",
                    guest_mac(ep),
                    2 * queues
                ));
            }
            (Backend::Vfio { pci_address, .. }, _) => {
                check(pci_address)?;
                devices.push(format!("path=/sys/bus/pci/devices/{pci_address}/"));
            }
            (Backend::None, _) => {}
        }
    }
    if !nets.is_empty() {
        out.args.push("--net".into());
        out.args.extend(nets);
    }
    if !devices.is_empty() {
        out.args.push("--device".into());
        out.args.extend(devices);
    }
    if vhost_user {
        out.notes.push(
            "vhost-user needs shared guest memory: add `--memory size=<RAM>,shared=on`".into(),
        );
    }
    if out.run_in_netns {
        out.notes
            .push("give no ip=/mask= in --net: they would configure the tap's host side".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::endpoint::Backend;
    use crate::vmm::tests::{OPTS, endpoint, state, with};
    use crate::vmm::{Vmm, vmm_args};

    #[test]
    fn taps_by_name_with_queue_count_in_rx_plus_tx() {
        let mut e1 = endpoint("eth1", "tap1_sn", 1);
        e1.mtu = 1450;
        e1.mac = "02:77:00:00:01:02".parse().ok();
        let s = state(vec![endpoint("eth0", "tap0_sn", 2), e1]);
        let a = vmm_args(&s, Vmm::CloudHypervisor, OPTS).unwrap();
        assert_eq!(
            a.args,
            vec![
                "--net",
                "tap=tap0_sn,mac=02:77:00:00:00:02,num_queues=4,mtu=1500",
                "tap=tap1_sn,mac=02:77:00:00:01:02,num_queues=2,mtu=1450",
            ]
        );
        assert!(a.run_in_netns);
    }

    #[test]
    fn macvtap_is_refused_with_a_reason() {
        let mut ep = endpoint("eth0", "mvt0_sn", 1);
        ep.backend = Backend::Macvtap {
            name: "mvt0_sn".into(),
            mac: None,
            chardev: Some("240:1".into()),
        };
        let e = vmm_args(&state(vec![ep]), Vmm::CloudHypervisor, OPTS).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("macvtap"), "{e}");
    }

    #[test]
    fn vhost_user_and_vfio() {
        let vu = with(
            endpoint("eth0", "", 1),
            Backend::VhostUser {
                socket: "/run/vhu/vhu.sock".into(),
            },
        );
        let vfio = with(
            endpoint("eth1", "", 1),
            Backend::Vfio {
                pci_address: "0000:03:00.0".into(),
                group: "/dev/vfio/12".into(),
            },
        );
        let a = vmm_args(&state(vec![vu, vfio]), Vmm::CloudHypervisor, OPTS).unwrap();
        assert_eq!(
            a.args,
            vec![
                "--net",
                "vhost_user=true,socket=/run/vhu/vhu.sock,mac=02:77:00:00:00:02,num_queues=2",
                "--device",
                "path=/sys/bus/pci/devices/0000:03:00.0/",
            ]
        );
        assert!(!a.run_in_netns);
    }

    #[test]
    fn tap_names_with_separators_are_refused() {
        let e = vmm_args(
            &state(vec![endpoint("eth0", "t,ap", 1)]),
            Vmm::CloudHypervisor,
            OPTS,
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }
}
