//! The IPv4/UDP frames the generators send, one per flow.

use std::net::Ipv4Addr;

use sandbox_net_testkit::fakeguest::packet::{ETHERTYPE_IPV4, build_ethernet, build_ipv4};

use crate::{R, fail};

pub const UDP_DST_PORT: u16 = 9000;
pub const UDP_SRC_PORT_BASE: u16 = 10000;
/// Distinct flows (UDP source ports): a multi-queue tap picks a queue by flow hash.
pub const FLOWS: u16 = 64;
/// The vnet header a VMM puts before every frame (`virtio_net_hdr_v1`, 12 bytes).
pub const VNET_HDR_LEN: usize = 12;
/// Frames per `sendmmsg` / `recvmmsg` call.
pub const BATCH: usize = 64;

/// The addresses of the frames of one direction.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
}

/// The pod's `eth0` and the peer's `peth0`: their MACs and IPv4 addresses.
#[derive(Debug, Clone, Copy)]
pub struct Ends {
    pub pod_mac: [u8; 6],
    pub peer_mac: [u8; 6],
    pub pod_ip: Ipv4Addr,
    pub peer_ip: Ipv4Addr,
}

/// The addresses of the frames (into the guest, out of it) between the peer and a guest
/// with the pod's address and `guest_mac`. Bridged (tcfilter, macvtap, or no tap at all)
/// each frame carries the far end's MAC. Routed (l3, `routed_tap_mac` the tap's MAC) each
/// side sends to its gateway's MAC: the peer to the pod's `eth0` (its neighbour for the
/// pod's address), the guest to the tap (what the tap's proxy ARP answers for the peer's
/// address).
pub fn frame_addresses(
    e: &Ends,
    guest_mac: [u8; 6],
    routed_tap_mac: Option<[u8; 6]>,
) -> (Addresses, Addresses) {
    let (peer_sends_to, guest_sends_to) = match routed_tap_mac {
        Some(tap_mac) => (e.pod_mac, tap_mac),
        None => (guest_mac, e.peer_mac),
    };
    let to_guest = Addresses {
        src_mac: e.peer_mac,
        dst_mac: peer_sends_to,
        src_ip: e.peer_ip,
        dst_ip: e.pod_ip,
    };
    let from_guest = Addresses {
        src_mac: guest_mac,
        dst_mac: guest_sends_to,
        src_ip: e.pod_ip,
        dst_ip: e.peer_ip,
    };
    (to_guest, from_guest)
}

/// One IPv4/UDP frame per flow, `wire` bytes long (60 at least), UDP checksum 0.
pub fn build_frames(a: &Addresses, wire: usize) -> R<Vec<Vec<u8>>> {
    if !(60..=1514).contains(&wire) {
        return fail(format!("frame of {wire} bytes: must be from 60 to 1514"));
    }
    let payload = wire - 14 - 20 - 8;
    (0..FLOWS)
        .map(|flow| {
            let src_port = UDP_SRC_PORT_BASE + flow;
            let mut udp = Vec::with_capacity(8 + payload);
            udp.extend_from_slice(&src_port.to_be_bytes());
            udp.extend_from_slice(&UDP_DST_PORT.to_be_bytes());
            udp.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
            udp.extend_from_slice(&[0, 0]);
            udp.resize(8 + payload, 0xab);
            let ip = build_ipv4(a.src_ip, a.dst_ip, libc::IPPROTO_UDP as u8, 64, flow, &udp)
                .ok_or("UDP payload does not fit an IPv4 packet")?;
            Ok(build_ethernet(a.dst_mac, a.src_mac, ETHERTYPE_IPV4, &ip))
        })
        .collect()
}

/// Whether a frame is one of ours (IPv4, UDP, our destination port): a reader counts only
/// these, not the IPv6 or ARP frames the pod's stack sends on its own.
pub fn is_ours(frame: &[u8]) -> bool {
    frame.len() >= 42
        && frame[12..14] == ETHERTYPE_IPV4.to_be_bytes()
        && frame[23] == libc::IPPROTO_UDP as u8
        && frame[36..38] == UDP_DST_PORT.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::wire_bytes;
    use sandbox_net_testkit::fakeguest::packet::{internet_checksum, parse_ethernet, parse_ipv4};

    fn addresses() -> Addresses {
        Addresses {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(10, 77, 0, 1),
            dst_ip: Ipv4Addr::new(10, 77, 0, 2),
        }
    }

    #[test]
    fn frames_have_the_wire_size_a_valid_header_and_one_flow_each() {
        for (nominal, wire) in [(64, 60), (1500, 1514)] {
            assert_eq!(wire_bytes(nominal), wire);
            let frames = build_frames(&addresses(), wire).unwrap();
            assert_eq!(frames.len(), FLOWS as usize);
            let mut ports = std::collections::BTreeSet::new();
            for f in &frames {
                assert_eq!(f.len(), wire);
                assert!(is_ours(f));
                let eth = parse_ethernet(f).unwrap();
                assert_eq!((eth.dst, eth.src), ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]));
                let ip = parse_ipv4(eth.payload).expect("a valid IPv4 header");
                assert_eq!(internet_checksum(&eth.payload[..20]), 0);
                assert_eq!(ip.protocol, 17);
                assert_eq!(ip.payload.len(), wire - 34);
                assert_eq!(&ip.payload[2..4], &UDP_DST_PORT.to_be_bytes());
                assert_eq!(
                    u16::from_be_bytes([ip.payload[4], ip.payload[5]]) as usize,
                    wire - 34
                );
                ports.insert([ip.payload[0], ip.payload[1]]);
            }
            assert_eq!(ports.len(), FLOWS as usize, "every frame its own flow");
        }
        assert!(build_frames(&addresses(), 59).is_err());
        assert!(build_frames(&addresses(), 1515).is_err());
    }

    #[test]
    fn bridged_frames_carry_the_far_ends_mac_routed_ones_the_gateways() {
        let ends = Ends {
            pod_mac: [2, 0, 0, 0, 0, 2],
            peer_mac: [2, 0, 0, 0, 0, 1],
            pod_ip: Ipv4Addr::new(10, 77, 0, 2),
            peer_ip: Ipv4Addr::new(10, 77, 0, 1),
        };
        let guest = [2, 0, 0, 0, 0, 9];
        let tap = [2, 0, 0, 0, 0, 7];
        let (to, from) = frame_addresses(&ends, guest, None);
        assert_eq!((to.src_mac, to.dst_mac), (ends.peer_mac, guest));
        assert_eq!((from.src_mac, from.dst_mac), (guest, ends.peer_mac));
        let (to, from) = frame_addresses(&ends, guest, Some(tap));
        assert_eq!((to.src_mac, to.dst_mac), (ends.peer_mac, ends.pod_mac));
        assert_eq!((from.src_mac, from.dst_mac), (guest, tap));
        for (to, from) in [
            frame_addresses(&ends, guest, None),
            frame_addresses(&ends, guest, Some(tap)),
        ] {
            assert_eq!((to.src_ip, to.dst_ip), (ends.peer_ip, ends.pod_ip));
            assert_eq!((from.src_ip, from.dst_ip), (ends.pod_ip, ends.peer_ip));
        }
    }

    #[test]
    fn only_our_udp_frames_count() {
        let f = build_frames(&addresses(), 60).unwrap().remove(0);
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let mut other_port = f.clone();
        other_port[37] ^= 1;
        let mut tcp = f.clone();
        tcp[23] = 6;
        for bad in [&arp, &other_port, &tcp, &f[..41].to_vec()] {
            assert!(!is_ours(bad));
        }
    }
}
