//! QEMU: `-netdev tap` + `-device virtio-net-pci` per endpoint (QEMU's docs, "-netdev
//! tap": `ifname=`, `script=no,downscript=no`, `queues=N`; or `fd=`/`fds=x:y` with
//! `vhostfd=`/`vhostfds=`, which exclude `ifname=` and `queues=`), `mq=on,vectors=2N+2`
//! for a multi-queue NIC; `-netdev vhost-user` for a vhost-user socket, `-device vfio-pci`
//! for a NIC bound to vfio-pci.

use super::{EndpointFds, FIRST_FD, RenderOptions, VmmArgs, fd_layout, guest_mac, queues};
use crate::Result;
use crate::endpoint::{Backend, Endpoint};

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

/// The netdev id of the endpoint on interface `name`: `sn-` and the name, stable across
/// hotplug (removing eth0 leaves eth1's id as it was). QEMU ids are letters, digits, '-',
/// '.' and '_': any other byte of the name is written `_XX` (hex), and '_' itself `_5f`,
/// so that two names never share an id.
pub fn netdev_id(name: &str) -> String {
    let mut id = String::from("sn-");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
            id.push(char::from(b));
        } else {
            id.push_str(&format!("_{b:02x}"));
        }
    }
    id
}

/// Render for QEMU. Taps go by name unless a macvtap (or `opts.fds`) calls for the fd form,
/// in which case every tap and macvtap goes by fd, as `exec` passes them.
/// With `opts.fd_numbers`, every tap and macvtap goes by the caller's fd numbers.
pub(super) fn render(
    endpoints: &[Endpoint],
    opts: &RenderOptions,
    out: &mut VmmArgs,
) -> Result<()> {
    if let Some(numbers) = &opts.fd_numbers {
        let vhost = numbers.iter().any(|n| !n.vhost_fds.is_empty());
        render_with(endpoints, vhost, Some(numbers), out);
        out.vhost = Some(vhost);
        return Ok(());
    }
    let macvtap = endpoints
        .iter()
        .any(|ep| matches!(ep.backend, Backend::Macvtap { .. }));
    let needs_fds = opts.fds || macvtap;
    let layout = fd_layout(endpoints, opts.vhost, FIRST_FD);
    render_with(
        endpoints,
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

/// Render the arguments; `layout` = Some for the fd form (the fd numbers of each
/// endpoint, found by its name).
pub(super) fn render_with(
    endpoints: &[Endpoint],
    vhost: bool,
    layout: Option<&[EndpointFds]>,
    out: &mut VmmArgs,
) {
    let mut vhost_user = false;
    for ep in endpoints {
        let id = netdev_id(&ep.name);
        let queues = queues(ep);
        match &ep.backend {
            Backend::Tap { name, .. } | Backend::Macvtap { name, .. } => {
                let fds = layout.and_then(|l| l.iter().find(|f| f.endpoint == ep.name));
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
        RenderOptions {
            vhost,
            fds,
            fd_numbers: None,
        }
    }

    #[test]
    fn single_queue_by_name() {
        let s = state(vec![endpoint("eth0", "tap0_sn", 1)]);
        let a = vmm_args(&s, Vmm::Qemu, &opts(false, false)).unwrap();
        assert_eq!(
            a.args,
            vec![
                "-netdev",
                "tap,id=sn-eth0,ifname=tap0_sn,script=no,downscript=no,vhost=off",
                "-device",
                "virtio-net-pci,netdev=sn-eth0,id=sn-eth0-nic,mac=02:77:00:00:00:02,host_mtu=1500",
            ]
        );
        assert!(a.run_in_netns && !a.needs_exec);
        assert!(a.notes.iter().any(|n| n.contains("ip netns exec pod1")));
    }

    #[test]
    fn multi_queue_by_name_with_vhost() {
        let s = state(vec![endpoint("eth0", "tap0_sn", 4)]);
        let a = vmm_args(&s, Vmm::Qemu, &opts(true, false)).unwrap();
        assert_eq!(
            a.args[1],
            "tap,id=sn-eth0,ifname=tap0_sn,script=no,downscript=no,queues=4,vhost=on"
        );
        assert!(a.args[3].ends_with(",mq=on,vectors=10"), "{}", a.args[3]);
    }

    #[test]
    fn fd_form_as_exec_passes_them() {
        let s = state(vec![
            endpoint("eth0", "tap0_sn", 2),
            endpoint("eth1", "tap1_sn", 1),
        ]);
        let a = vmm_args(&s, Vmm::Qemu, &opts(true, true)).unwrap();
        assert_eq!(a.args[1], "tap,id=sn-eth0,fds=3:4,vhost=on,vhostfds=5:6");
        assert_eq!(a.args[5], "tap,id=sn-eth1,fd=7,vhost=on,vhostfd=8");
        assert!(a.needs_exec && !a.run_in_netns);
        assert_eq!(a.fds[0].queue_fds[0], FIRST_FD);
        let a = vmm_args(&s, Vmm::Qemu, &opts(false, true)).unwrap();
        assert_eq!(a.args[1], "tap,id=sn-eth0,fds=3:4,vhost=off");
        assert_eq!(a.args[5], "tap,id=sn-eth1,fd=5,vhost=off");
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
        let a = vmm_args(&s, Vmm::Qemu, &opts(false, false)).unwrap();
        assert_eq!(a.args[1], "tap,id=sn-eth0,fd=3,vhost=off");
        assert_eq!(a.args[5], "tap,id=sn-eth1,fd=4,vhost=off");
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
        let a = vmm_args(&s, Vmm::Qemu, &opts(false, false)).unwrap();
        assert_eq!(
            a.args,
            vec![
                "-chardev",
                "socket,id=sn-eth0-chr,path=/run/vhu,,1/vhu.sock",
                "-netdev",
                "vhost-user,id=sn-eth0,chardev=sn-eth0-chr,queues=2",
                "-device",
                "virtio-net-pci,netdev=sn-eth0,id=sn-eth0-nic,mac=02:77:00:00:00:02,host_mtu=1500,mq=on,vectors=6",
                "-device",
                "vfio-pci,host=0000:03:00.0,id=sn-eth1-nic",
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
