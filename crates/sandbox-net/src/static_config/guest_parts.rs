//! The guest side of a static configuration: addresses of a device, routes and neighbours,
//! read into the types `guest-config` prints (`GuestAddress`, `GuestRoute`,
//! `GuestNeighbor`), so a description printed by `guest-config` can be pasted back.

use std::net::IpAddr;

use serde_json::Value;

use super::fields::{Checked, ConfigError, Obj};
use crate::endpoint::is_link_local_v6;
use crate::guest::{GuestAddress, GuestNeighbor, GuestRoute};
use crate::mac::MacAddr;

pub fn family(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { "inet" } else { "inet6" }
}

fn max_prefix(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// A MAC for a guest NIC or a neighbour: six colon-separated hex bytes, unicast, not zero.
/// Returned in the lowercase form the rest of sandbox-net uses.
pub fn unicast_mac(field: &str, text: &str) -> Checked<MacAddr> {
    let mac: MacAddr = text.parse().map_err(|_| {
        ConfigError::new(
            field,
            format!("{text:?} is not a MAC (expected six hex bytes like 02:00:00:00:00:01)"),
        )
    })?;
    if mac.is_zero() {
        return Err(ConfigError::new(field, format!("{text:?} is the zero MAC")));
    }
    if mac.is_multicast() {
        return Err(ConfigError::new(
            field,
            format!("{text:?} is a multicast MAC (the low bit of the first byte is set)"),
        ));
    }
    Ok(mac)
}

fn ip(field: &str, text: &str) -> Checked<IpAddr> {
    text.parse()
        .map_err(|_| ConfigError::new(field, format!("{text:?} is not an IP address")))
}

/// "ADDR/LEN" with LEN within the family's bounds.
fn prefix(field: &str, text: &str) -> Checked<(IpAddr, u8)> {
    let (addr, len) = text
        .split_once('/')
        .ok_or_else(|| ConfigError::new(field, format!("{text:?} is not ADDRESS/PREFIX-LENGTH")))?;
    let addr = ip(field, addr)?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| *l <= max_prefix(&addr))
        .ok_or_else(|| {
            ConfigError::new(
                field,
                format!(
                    "{text:?}: prefix length {len:?} is not between 0 and {}",
                    max_prefix(&addr)
                ),
            )
        })?;
    Ok((addr, len))
}

/// An optional `family` field must agree with the family of the addresses.
fn check_family(o: &Obj<'_>, actual: &str) -> Checked<()> {
    match o.opt_str("family")? {
        None => Ok(()),
        Some(f) if f == actual => Ok(()),
        Some(f @ ("inet" | "inet6")) => Err(ConfigError::new(
            o.field("family"),
            format!("{f:?} does not match the {actual} addresses of this entry"),
        )),
        Some(f) => Err(ConfigError::new(
            o.field("family"),
            format!("{f:?} is not a family (inet or inet6)"),
        )),
    }
}

/// One address of a device: `"10.0.0.2/24"`, or the object `guest-config` prints
/// (`{"family": "inet", "address": "10.0.0.2", "prefix_len": 24}`, family optional).
pub fn address(field: &str, value: &Value) -> Checked<GuestAddress> {
    let (address, prefix_len) = match value {
        Value::String(text) => prefix(field, text)?,
        other => {
            let o = Obj::new(field, other)?;
            o.only(&["family", "address", "prefix_len"], "an address")?;
            let address = ip(&o.field("address"), o.str("address")?)?;
            let len = o.u32("prefix_len")?;
            if len > u32::from(max_prefix(&address)) {
                return Err(ConfigError::new(
                    o.field("prefix_len"),
                    format!("{len} is more than {}", max_prefix(&address)),
                ));
            }
            check_family(&o, family(&address))?;
            (address, len as u8)
        }
    };
    let refuse = |why: &str| Err(ConfigError::new(field, format!("{address} {why}")));
    if address.is_unspecified() || address.is_multicast() || address.is_loopback() {
        return refuse("is not a unicast address for an interface");
    }
    if is_link_local_v6(&address) {
        return refuse("is IPv6 link-local: the guest kernel makes its own");
    }
    Ok(GuestAddress {
        family: family(&address).into(),
        address,
        prefix_len,
    })
}

/// Whether `ip` is inside `net/len`.
fn contains(net: &IpAddr, len: u8, ip: &IpAddr) -> bool {
    fn masked(bytes: &[u8], len: u8) -> Vec<u8> {
        bytes
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let bits = (len as usize).saturating_sub(i * 8).min(8);
                if bits == 0 {
                    0
                } else {
                    b & (0xffu8 << (8 - bits))
                }
            })
            .collect()
    }
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => masked(&n.octets(), len) == masked(&a.octets(), len),
        (IpAddr::V6(n), IpAddr::V6(a)) => masked(&n.octets(), len) == masked(&a.octets(), len),
        _ => false,
    }
}

/// What the route and neighbour checks need to know about the devices.
pub struct DeviceView<'a> {
    pub name: &'a str,
    pub addresses: &'a [GuestAddress],
}

fn device<'d>(o: &Obj<'_>, devices: &'d [DeviceView<'d>]) -> Checked<&'d DeviceView<'d>> {
    let name = o.str("device")?;
    devices.iter().find(|d| d.name == name).ok_or_else(|| {
        let names: Vec<&str> = devices.iter().map(|d| d.name).collect();
        ConfigError::new(
            o.field("device"),
            format!("{name:?} names no device (devices: {})", names.join(", ")),
        )
    })
}

const ROUTE_FIELDS: &[&str] = &[
    "family", "dst", "gateway", "source", "scope", "device", "mtu", "metric",
];

/// One route, in the form `guest-config` prints; `family` and `scope` may be left out.
pub fn route(path: &str, value: &Value, devices: &[DeviceView<'_>]) -> Checked<GuestRoute> {
    let o = Obj::new(path, value)?;
    o.only(ROUTE_FIELDS, "a route")?;
    let dev = device(&o, devices)?;
    let dst_text = o.str("dst")?;
    let dst = match dst_text {
        "default" => None,
        text => {
            let (net, len) = prefix(&o.field("dst"), text)?;
            if masked_differs(&net, len) {
                return Err(ConfigError::new(
                    o.field("dst"),
                    format!("{text:?} has host bits set (write the network address)"),
                ));
            }
            Some((net, len))
        }
    };
    let gateway = o
        .opt_str("gateway")?
        .map(|g| ip(&o.field("gateway"), g))
        .transpose()?;
    let source = o
        .opt_str("source")?
        .map(|s| ip(&o.field("source"), s))
        .transpose()?;
    let fam = match (dst, gateway, o.opt_str("family")?) {
        (Some((net, _)), _, _) => family(&net),
        (None, Some(gw), _) => family(&gw),
        (None, None, Some("inet")) => "inet",
        (None, None, Some("inet6")) => "inet6",
        (None, None, _) => {
            return Err(ConfigError::new(
                o.field("family"),
                "a default route without a gateway needs \"family\": \"inet\" or \"inet6\"",
            ));
        }
    };
    check_family(&o, fam)?;
    for (key, addr) in [("gateway", gateway), ("source", source)] {
        if let Some(a) = addr
            && family(&a) != fam
        {
            return Err(ConfigError::new(
                o.field(key),
                format!("{a} is not an {fam} address like the route's destination"),
            ));
        }
    }
    if let Some(gw) = gateway
        && !is_link_local_v6(&gw)
        && !dev
            .addresses
            .iter()
            .any(|a| contains(&a.address, a.prefix_len, &gw))
    {
        return Err(ConfigError::new(
            o.field("gateway"),
            format!(
                "{gw} is not in the subnet of any address of device {}",
                dev.name
            ),
        ));
    }
    if let Some(src) = source
        && !devices
            .iter()
            .any(|d| d.addresses.iter().any(|a| a.address == src))
    {
        return Err(ConfigError::new(
            o.field("source"),
            format!("{src} is not an address of any device"),
        ));
    }
    let scope = match o.opt_str("scope")? {
        None if gateway.is_some() => "universe",
        None => "link",
        Some(s @ ("universe" | "site")) => s,
        Some(s @ ("link" | "host")) if gateway.is_none() => s,
        Some(s @ ("link" | "host")) => {
            return Err(ConfigError::new(
                o.field("scope"),
                format!("{s:?}: a route through a gateway has scope universe or site"),
            ));
        }
        Some(s) => {
            return Err(ConfigError::new(
                o.field("scope"),
                format!("{s:?} is not a scope (universe, site, link, host)"),
            ));
        }
    };
    let mtu = o.opt_u32("mtu")?;
    if let Some(m) = mtu
        && !(68..=65535).contains(&m)
    {
        return Err(ConfigError::new(
            o.field("mtu"),
            format!("{m} is not between 68 and 65535"),
        ));
    }
    Ok(GuestRoute {
        family: fam.into(),
        dst: dst.map_or_else(|| "default".into(), |(n, l)| format!("{n}/{l}")),
        gateway,
        source,
        scope: scope.into(),
        device: dev.name.to_string(),
        mtu,
        metric: o.opt_u32("metric")?,
    })
}

/// True when `net` has bits set beyond its prefix length `len`.
fn masked_differs(net: &IpAddr, len: u8) -> bool {
    let bytes: Vec<u8> = match net {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let total = bytes.len() * 8;
    (len as usize..total).any(|bit| bytes[bit / 8] & (0x80 >> (bit % 8)) != 0)
}

/// One neighbour, in the form `guest-config` prints; `family` and `state` may be left out
/// (`state` is `permanent` or `reachable`, default `permanent`).
pub fn neighbor(path: &str, value: &Value, devices: &[DeviceView<'_>]) -> Checked<GuestNeighbor> {
    let o = Obj::new(path, value)?;
    o.only(&["family", "ip", "mac", "device", "state"], "a neighbour")?;
    let dev = device(&o, devices)?;
    let addr = ip(&o.field("ip"), o.str("ip")?)?;
    if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
        return Err(ConfigError::new(
            o.field("ip"),
            format!("{addr} is not a unicast address"),
        ));
    }
    check_family(&o, family(&addr))?;
    let mac = unicast_mac(&o.field("mac"), o.str("mac")?)?;
    let state = match o.opt_str("state")? {
        None | Some("permanent") => "permanent",
        Some("reachable") => "reachable",
        Some(s) => {
            return Err(ConfigError::new(
                o.field("state"),
                format!("{s:?} is not a neighbour state (permanent or reachable)"),
            ));
        }
    };
    Ok(GuestNeighbor {
        family: family(&addr).into(),
        ip: addr,
        mac,
        device: dev.name.to_string(),
        state: state.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn addrs() -> Vec<GuestAddress> {
        vec![
            address("a", &json!("10.0.0.2/24")).unwrap(),
            address("a", &json!({"address": "fd00::2", "prefix_len": 64})).unwrap(),
        ]
    }

    #[test]
    fn addresses_in_both_forms() {
        let a = addrs();
        assert_eq!((a[0].family.as_str(), a[0].prefix_len), ("inet", 24));
        assert_eq!((a[1].family.as_str(), a[1].prefix_len), ("inet6", 64));
        for bad in [
            json!("10.0.0.2"),
            json!("10.0.0.2/33"),
            json!("fe80::1/64"),
            json!("224.0.0.1/4"),
            json!("x/24"),
            json!({"address": "10.0.0.2", "prefix_len": 24, "family": "inet6"}),
            json!({"address": "10.0.0.2"}),
            json!(7),
        ] {
            assert!(address("devices[0].addresses[0]", &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routes_infer_family_and_scope_and_check_gateways() {
        let a = addrs();
        let devs = [DeviceView {
            name: "eth0",
            addresses: &a,
        }];
        let r = route(
            "routes[0]",
            &json!({"dst": "default", "gateway": "10.0.0.1", "device": "eth0"}),
            &devs,
        )
        .unwrap();
        assert_eq!(
            (r.family.as_str(), r.dst.as_str(), r.scope.as_str()),
            ("inet", "default", "universe")
        );
        let r = route(
            "routes[1]",
            &json!({"dst": "192.168.0.0/16", "device": "eth0", "mtu": 1400}),
            &devs,
        )
        .unwrap();
        assert_eq!((r.scope.as_str(), r.mtu), ("link", Some(1400)));
        let r = route(
            "routes[2]",
            &json!({"dst": "default", "gateway": "fe80::1", "device": "eth0"}),
            &devs,
        )
        .unwrap();
        assert_eq!(r.family, "inet6");
        let cases = [
            (
                json!({"dst": "default", "gateway": "10.9.0.1", "device": "eth0"}),
                "routes[0].gateway",
            ),
            (
                json!({"dst": "default", "device": "eth0"}),
                "routes[0].family",
            ),
            (
                json!({"dst": "10.1.2.3/16", "device": "eth0"}),
                "routes[0].dst",
            ),
            (
                json!({"dst": "default", "gateway": "10.0.0.1", "device": "eth9"}),
                "routes[0].device",
            ),
            (
                json!({"dst": "default", "gateway": "10.0.0.1", "device": "eth0", "scope": "link"}),
                "routes[0].scope",
            ),
            (
                json!({"dst": "10.1.0.0/16", "gateway": "fd00::1", "device": "eth0"}),
                "routes[0].gateway",
            ),
            (
                json!({"dst": "10.1.0.0/16", "device": "eth0", "source": "10.0.0.9"}),
                "routes[0].source",
            ),
            (
                json!({"dst": "10.1.0.0/16", "device": "eth0", "via": "x"}),
                "routes[0].via",
            ),
        ];
        for (bad, field) in cases {
            let e = route("routes[0]", &bad, &devs).unwrap_err();
            assert_eq!(e.field, field, "{bad}: {e}");
        }
    }

    #[test]
    fn neighbours_and_macs() {
        let a = addrs();
        let devs = [DeviceView {
            name: "eth0",
            addresses: &a,
        }];
        let n = neighbor(
            "neighbors[0]",
            &json!({"ip": "10.0.0.1", "mac": "02:AA:00:00:00:01", "device": "eth0"}),
            &devs,
        )
        .unwrap();
        assert_eq!(
            (n.mac.to_string().as_str(), n.state.as_str()),
            ("02:aa:00:00:00:01", "permanent")
        );
        for (mac, why) in [
            ("zz", "not a MAC"),
            ("00:00:00:00:00:00", "zero"),
            ("01:00:5e:00:00:01", "multicast"),
        ] {
            let e = unicast_mac("devices[1].mac", mac).unwrap_err();
            assert!(e.reason.contains(why), "{e}");
        }
        let e = neighbor(
            "neighbors[0]",
            &json!({"ip": "10.0.0.1", "mac": "02:00:00:00:00:01", "device": "eth0", "state": "stale"}),
            &devs,
        )
        .unwrap_err();
        assert_eq!(e.field, "neighbors[0].state");
    }

    #[test]
    fn subnet_arithmetic() {
        let n: IpAddr = "10.0.0.0".parse().unwrap();
        assert!(contains(&n, 24, &"10.0.0.200".parse().unwrap()));
        assert!(!contains(&n, 24, &"10.0.1.1".parse().unwrap()));
        assert!(contains(&n, 0, &"1.2.3.4".parse().unwrap()));
        assert!(masked_differs(&"10.1.2.3".parse().unwrap(), 16));
        assert!(!masked_differs(&"10.1.0.0".parse().unwrap(), 16));
        assert!(!masked_differs(&"fd00::".parse().unwrap(), 64));
        assert!(masked_differs(&"fd00::1".parse().unwrap(), 64));
    }
}
