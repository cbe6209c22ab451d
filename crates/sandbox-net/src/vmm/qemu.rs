//! QEMU: `-netdev tap` + `-device virtio-net-pci` per endpoint (QEMU's docs, "-netdev
//! tap": `ifname=`, `script=no,downscript=no`, `queues=N`; or `fd=`/`fds=x:y` with
//! `vhostfd=`/`vhostfds=`, which exclude `ifname=` and `queues=`), `mq=on,vectors=2N+2`
//! for a multi-queue NIC; `-netdev vhost-user` for a vhost-user socket, `-device vfio-pci`
//! for a NIC bound to vfio-pci.

use super::{EndpointFds, RenderOptions, VmmArgs, fd_layout, guest_mac, queues};
use crate::Result;
use crate::endpoint::{Backend, Endpoint};
use crate::state::State;

/// A value inside a QEMU option list: commas are doubled.
fn esc(value: &str) -> String {
    value.replace(',', ",,")
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

fn join(fds: &[i32]) -> String {
    fds.iter().map(i32::to_string).collect::<Vec<_>>().join(":")
}

/// `-device virtio-net-pci,...` for netdev `id`.
pub(super) fn device(ep: &Endpoint, id: &str, queues: u32) -> String {
    let mut d = format!(
        "virtio-net-pci,netdev={id},id={id}-nic,mac={},host_mtu={}",
        esc(&guest_mac(ep)),
        ep.mtu
    );
    if queues > 1 {
        d.push_str(&format!(",mq=on,vectors={}", 2 * queues + 2));
    }
    d
}

/// `-netdev tap` opening the tap by name (QEMU runs in the netns).
pub(super) fn netdev_by_name(id: &str, tap: &str, queues: u32, vhost: bool) -> String {
    let mut n = format!("tap,id={id},ifname={},script=no,downscript=no", esc(tap));
    if queues > 1 {
        n.push_str(&format!(",queues={queues}"));
    }
    n.push_str(&format!(",vhost={}", on_off(vhost)));
    n
}

/// `-netdev tap` on inherited fds.
pub(super) fn netdev_by_fds(id: &str, fds: &EndpointFds) -> String {
    let single = fds.queue_fds.len() == 1;
    let mut n = if single {
        format!("tap,id={id},fd={}", join(&fds.queue_fds))
    } else {
        format!("tap,id={id},fds={}", join(&fds.queue_fds))
    };
    if fds.vhost_fds.is_empty() {
        n.push_str(",vhost=off");
    } else if single {
        n.push_str(&format!(",vhost=on,vhostfd={}", join(&fds.vhost_fds)));
    } else {
        n.push_str(&format!(",vhost=on,vhostfds={}", join(&fds.vhost_fds)));
    }
    n
}

/// The netdev id of endpoint number `index`.
pub(super) fn netdev_id(index: usize) -> String {
    format!("sn{index}")
}

/// Render for QEMU. Taps go by name unless a macvtap (or `opts.fds`) calls for the fd form,
/// in which case every tap and macvtap goes by fd, as `exec` passes them.
pub(super) fn render(state: &State, opts: RenderOptions, out: &mut VmmArgs) -> Result<()> {
    let macvtap = state
        .endpoints
        .iter()
        .any(|ep| matches!(ep.backend, Backend::Macvtap { .. }));
    let needs_fds = opts.fds || macvtap;
    let layout = fd_layout(&state.endpoints, opts.vhost);
    render_with(
        state,
        opts.vhost,
        needs_fds.then_some(layout.as_slice()),
        out,
    );
    if needs_fds {
        out.needs_exec = true;
        out.notes.push(
            "the fd numbers are those `sandbox-net exec --vmm qemu -- QEMU...` passes: \
             run QEMU through it (it appends these arguments itself)"
                .into(),
        );
        if macvtap {
            out.notes.push(
                "a macvtap's queues are opened through its character device: QEMU can't \
                 open it by name"
                    .into(),
            );
        }
    }
    out.vhost = Some(opts.vhost);
    Ok(())
}

/// Render the arguments; `layout` = Some for the fd form (as `exec` places the fds).
pub(super) fn render_with(
    state: &State,
    vhost: bool,
    layout: Option<&[Option<EndpointFds>]>,
    out: &mut VmmArgs,
) {
    let mut vhost_user = false;
    for (i, ep) in state.endpoints.iter().enumerate() {
        let id = netdev_id(i);
        let queues = queues(ep);
        match &ep.backend {
            Backend::Tap { name, .. } | Backend::Macvtap { name, .. } => {
                let fds = layout.and_then(|l| l.get(i)).and_then(Option::as_ref);
                let netdev = match fds {
                    Some(fds) => {
                        out.fds.push(fds.clone());
                        netdev_by_fds(&id, fds)
                    }
                    None => {
                        out.run_in_netns = true;
                        netdev_by_name(&id, name, queues, vhost)
                    }
                };
                out.args.extend([
                    "-netdev".into(),
                    netdev,
                    "-device".into(),
                    device(ep, &id, queues),
                ]);
            }
            Backend::VhostUser { socket } => {
                vhost_user = true;
                let chr = format!("{id}-chr");
                let mut netdev = format!("vhost-user,id={id},chardev={chr}");
                if queues > 1 {
                    netdev.push_str(&format!(",queues={queues}"));
                }
                out.args.extend([
                    "-chardev".into(),
                    format!("socket,id={chr},path={}", esc(&socket.to_string_lossy())),
                    "-netdev".into(),
                    netdev,
                    "-device".into(),
                    device(ep, &id, queues),
                ]);
            }
            Backend::Vfio { pci_address, .. } => {
                out.args.extend([
                    "-device".into(),
                    format!("vfio-pci,host={},id={id}-nic", esc(pci_address)),
                ]);
            }
            Backend::None => {}
        }
    }
    if vhost_user {
        out.notes.push(
            "vhost-user needs the guest RAM shared with the backend, e.g. \
             `-object memory-backend-memfd,id=mem,size=<RAM>,share=on -machine memory-backend=mem`"
                .into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::tests::{endpoint, state, with};
    use crate::vmm::{FIRST_FD, Vmm, vmm_args};

    fn opts(vhost: bool, fds: bool) -> RenderOptions {
        RenderOptions { vhost, fds }
    }

    #[test]
    fn single_queue_by_name() {
        let s = state(vec![endpoint("eth0", "tap0_sn", 1)]);
        let a = vmm_args(&s, Vmm::Qemu, opts(false, false)).unwrap();
        assert_eq!(
            a.args,
            vec![
                "-netdev",
                "tap,id=sn0,ifname=tap0_sn,script=no,downscript=no,vhost=off",
                "-device",
                "virtio-net-pci,netdev=sn0,id=sn0-nic,mac=02:77:00:00:00:02,host_mtu=1500",
            ]
        );
        assert!(a.run_in_netns && !a.needs_exec);
        assert!(a.notes.iter().any(|n| n.contains("ip netns exec pod1")));
    }

    #[test]
    fn multi_queue_by_name_with_vhost() {
        let s = state(vec![endpoint("eth0", "tap0_sn", 4)]);
        let a = vmm_args(&s, Vmm::Qemu, opts(true, false)).unwrap();
        assert_eq!(
            a.args[1],
            "tap,id=sn0,ifname=tap0_sn,script=no,downscript=no,queues=4,vhost=on"
        );
        assert!(a.args[3].ends_with(",mq=on,vectors=10"), "{}", a.args[3]);
    }

    #[test]
    fn fd_form_as_exec_passes_them() {
        let s = state(vec![
            endpoint("eth0", "tap0_sn", 2),
            endpoint("eth1", "tap1_sn", 1),
        ]);
        let a = vmm_args(&s, Vmm::Qemu, opts(true, true)).unwrap();
        assert_eq!(a.args[1], "tap,id=sn0,fds=3:4,vhost=on,vhostfds=5:6");
        assert_eq!(a.args[5], "tap,id=sn1,fd=7,vhost=on,vhostfd=8");
        assert!(a.needs_exec && !a.run_in_netns);
        assert_eq!(a.fds[0].queue_fds[0], FIRST_FD);
        let a = vmm_args(&s, Vmm::Qemu, opts(false, true)).unwrap();
        assert_eq!(a.args[1], "tap,id=sn0,fds=3:4,vhost=off");
        assert_eq!(a.args[5], "tap,id=sn1,fd=5,vhost=off");
    }

    #[test]
    fn macvtap_forces_the_fd_form() {
        let mut ep = endpoint("eth0", "mvt0_sn", 1);
        ep.kind = crate::endpoint::EndpointKind::Veth;
        ep.backend = Backend::Macvtap {
            name: "mvt0_sn".into(),
            mac: None,
            chardev: Some("240:1".into()),
        };
        let s = state(vec![ep, endpoint("eth1", "tap1_sn", 1)]);
        let a = vmm_args(&s, Vmm::Qemu, opts(false, false)).unwrap();
        assert_eq!(a.args[1], "tap,id=sn0,fd=3,vhost=off");
        assert_eq!(a.args[5], "tap,id=sn1,fd=4,vhost=off");
        assert!(a.needs_exec && !a.run_in_netns);
        assert!(a.notes.iter().any(|n| n.contains("character device")));
    }

    #[test]
    fn vhost_user_vfio_and_none() {
        let vu = with(
            endpoint("eth0", "", 2),
            Backend::VhostUser {
                socket: "/run/vhu,1/vhu.sock".into(),
            },
        );
        let vfio = with(
            endpoint("eth1", "", 1),
            Backend::Vfio {
                pci_address: "0000:03:00.0".into(),
                group: "/dev/vfio/12".into(),
            },
        );
        let none = endpoint("eth2", "", 1);
        let s = state(vec![vu, vfio, none]);
        let a = vmm_args(&s, Vmm::Qemu, opts(false, false)).unwrap();
        assert_eq!(
            a.args,
            vec![
                "-chardev",
                "socket,id=sn0-chr,path=/run/vhu,,1/vhu.sock",
                "-netdev",
                "vhost-user,id=sn0,chardev=sn0-chr,queues=2",
                "-device",
                "virtio-net-pci,netdev=sn0,id=sn0-nic,mac=02:77:00:00:00:02,host_mtu=1500,mq=on,vectors=6",
                "-device",
                "vfio-pci,host=0000:03:00.0,id=sn1-nic",
            ]
        );
        assert!(a.notes.iter().any(|n| n.contains("share=on")));
        assert!(a.notes.iter().any(|n| n.contains("eth2: model none")));
    }

    #[test]
    fn commas_in_names_are_doubled() {
        assert_eq!(
            netdev_by_name("sn0", "t,ap", 1, false),
            "tap,id=sn0,ifname=t,,ap,script=no,downscript=no,vhost=off"
        );
    }
}
