//! The `devices` entries of a static configuration: what the VMM gets (an existing tap, a
//! vhost-user socket, a PCI device for VFIO) and the guest NIC's MAC, MTU and addresses.
//! Only the file is checked here; `ops::static_attach` checks the devices exist.

use std::path::PathBuf;

use serde_json::Value;

use super::fields::{Checked, ConfigError, Obj};
use super::guest_parts::{address, unicast_mac};
use crate::guest::GuestAddress;
use crate::{physical, tap};

/// What the VMM is given for a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// An existing tap in the caller's netns, handed over as it is.
    Tap { tap: String, queues: Option<u32> },
    /// A vhost-user socket the VMM connects to.
    VhostUser { socket: PathBuf, queues: u32 },
    /// A PCI device (a NIC or a VF) bound to vfio-pci for passthrough.
    Vfio { pci_address: String },
}

impl Backend {
    pub fn kind(&self) -> &'static str {
        match self {
            Backend::Tap { .. } => "tap",
            Backend::VhostUser { .. } => "vhost-user",
            Backend::Vfio { .. } => "vfio",
        }
    }
}

/// One entry of `devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its position in `devices`, for messages.
    pub index: usize,
    /// The guest interface's name; routes and neighbours refer to it.
    pub name: String,
    pub backend: Backend,
    /// The guest NIC's MAC (lowercase); None for a VFIO device that keeps its own.
    pub mac: Option<crate::mac::MacAddr>,
    /// None: the tap's MTU for a tap, 1500 otherwise.
    pub mtu: Option<u32>,
    pub addresses: Vec<GuestAddress>,
    pub noarp: bool,
}

impl Device {
    /// The path of one of this entry's fields: `devices[1].mac`.
    pub fn field(&self, key: &str) -> String {
        format!("devices[{}].{key}", self.index)
    }
}

const KINDS: &[&str] = &["tap", "vhost-user", "vfio"];
const COMMON: &[&str] = &["name", "kind", "mac", "mtu", "addresses", "noarp"];

fn fields_of(kind: &str) -> Vec<&'static str> {
    let extra: &[&'static str] = match kind {
        "tap" => &["tap", "queues"],
        "vhost-user" => &["socket", "queues"],
        _ => &["pci_address"],
    };
    COMMON.iter().chain(extra).copied().collect()
}

fn ifname(o: &Obj<'_>, key: &str) -> Checked<String> {
    let name = o.str(key)?;
    tap::validate_ifname(name)
        .map_err(|r| ConfigError::new(o.field(key), format!("{name:?} {r}")))?;
    Ok(name.to_string())
}

fn queues(o: &Obj<'_>) -> Checked<Option<u32>> {
    let q = o.opt_u32("queues")?;
    if let Some(n) = q
        && !(1..=tap::MAX_QUEUES).contains(&n)
    {
        return Err(ConfigError::new(
            o.field("queues"),
            format!("{n} is not between 1 and {}", tap::MAX_QUEUES),
        ));
    }
    Ok(q)
}

/// Read and check entry `index` of `devices`.
pub fn device(index: usize, value: &Value) -> Checked<Device> {
    let o = Obj::new(format!("devices[{index}]"), value)?;
    let kind = o.str("kind")?;
    if !KINDS.contains(&kind) {
        return Err(ConfigError::new(
            o.field("kind"),
            format!("{kind:?} is not a device kind ({})", KINDS.join(", ")),
        ));
    }
    o.only(&fields_of(kind), &format!("a {kind} device"))?;
    let name = ifname(&o, "name")?;
    let backend = match kind {
        "tap" => Backend::Tap {
            tap: ifname(&o, "tap")?,
            queues: queues(&o)?,
        },
        "vhost-user" => {
            let socket = PathBuf::from(o.str("socket")?);
            if !socket.is_absolute() {
                return Err(ConfigError::new(
                    o.field("socket"),
                    format!("{:?} is not an absolute path", socket.display()),
                ));
            }
            Backend::VhostUser {
                socket,
                queues: queues(&o)?.unwrap_or(1),
            }
        }
        _ => {
            let address = o.str("pci_address")?;
            physical::validate_pci_address(address)
                .map_err(|e| ConfigError::new(o.field("pci_address"), e.to_string()))?;
            Backend::Vfio {
                pci_address: address.to_string(),
            }
        }
    };
    let mac = match o.opt_str("mac")? {
        Some(text) => Some(unicast_mac(&o.field("mac"), text)?),
        None if kind == "vfio" => None,
        None => return Err(ConfigError::new(o.field("mac"), "missing (required)")),
    };
    let mut addresses: Vec<GuestAddress> = Vec::new();
    for (i, v) in o.array("addresses")?.iter().enumerate() {
        let field = format!("{}[{i}]", o.field("addresses"));
        let a = address(&field, v)?;
        if addresses.iter().any(|b| b.address == a.address) {
            return Err(ConfigError::new(
                field,
                format!("{} is listed twice", a.address),
            ));
        }
        addresses.push(a);
    }
    let mtu = o.opt_u32("mtu")?;
    if let Some(m) = mtu {
        if !(68..=65535).contains(&m) {
            return Err(ConfigError::new(
                o.field("mtu"),
                format!("{m} is not between 68 and 65535"),
            ));
        }
        if m < 1280 && addresses.iter().any(|a| a.address.is_ipv6()) {
            return Err(ConfigError::new(
                o.field("mtu"),
                format!(
                    "{m} is below 1280, the minimum for IPv6, and the device has IPv6 addresses"
                ),
            ));
        }
    }
    Ok(Device {
        index,
        name,
        backend,
        mac,
        mtu,
        addresses,
        noarp: o.opt_bool("noarp")?.unwrap_or(false),
    })
}

/// Refuse two devices that share a name, a MAC, a tap, a socket or a PCI address.
pub fn check_unique(devices: &[Device]) -> Checked<()> {
    for (i, d) in devices.iter().enumerate() {
        for earlier in &devices[..i] {
            let clash = |key: &str, what: String| {
                Err(ConfigError::new(
                    d.field(key),
                    format!("{what} is already used by devices[{}]", earlier.index),
                ))
            };
            if d.name == earlier.name {
                return clash("name", format!("{:?}", d.name));
            }
            if d.mac.is_some() && d.mac == earlier.mac {
                return clash("mac", d.mac.map(|m| m.to_string()).unwrap_or_default());
            }
            match (&d.backend, &earlier.backend) {
                (Backend::Tap { tap: a, .. }, Backend::Tap { tap: b, .. }) if a == b => {
                    return clash("tap", format!("tap {a:?}"));
                }
                (Backend::VhostUser { socket: a, .. }, Backend::VhostUser { socket: b, .. })
                    if a == b =>
                {
                    return clash("socket", format!("socket {}", a.display()));
                }
                (Backend::Vfio { pci_address: a }, Backend::Vfio { pci_address: b }) if a == b => {
                    return clash("pci_address", format!("PCI device {a}"));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_kind_reads_its_fields() {
        let d = device(
            0,
            &json!({"name": "eth0", "kind": "tap", "tap": "tap-vm0", "mac": "02:00:00:00:00:01",
                    "addresses": ["10.0.0.2/24"]}),
        )
        .unwrap();
        assert_eq!(
            d.backend,
            Backend::Tap {
                tap: "tap-vm0".into(),
                queues: None
            }
        );
        assert_eq!((d.mtu, d.noarp), (None, false));
        let d = device(
            1,
            &json!({"name": "eth1", "kind": "vhost-user", "socket": "/run/x.sock",
                    "mac": "02:00:00:00:00:02", "mtu": 9000}),
        )
        .unwrap();
        assert_eq!(d.backend.kind(), "vhost-user");
        let d = device(
            2,
            &json!({"name": "eth2", "kind": "vfio", "pci_address": "0000:03:00.1"}),
        )
        .unwrap();
        assert_eq!(d.mac, None);
    }

    #[test]
    fn errors_name_the_entry_and_field() {
        let cases = [
            (
                json!({"name": "eth0", "kind": "tap", "tap": "t", "mac": "zz"}),
                "devices[3].mac",
            ),
            (
                json!({"name": "eth0", "kind": "tap", "mac": "02:00:00:00:00:01"}),
                "devices[3].tap",
            ),
            (json!({"name": "eth0", "kind": "bridge"}), "devices[3].kind"),
            (
                json!({"kind": "tap", "tap": "t", "mac": "02:00:00:00:00:01"}),
                "devices[3].name",
            ),
            (
                json!({"name": "eth0", "kind": "tap", "tap": "t", "mac": "02:00:00:00:00:01", "socket": "/x"}),
                "devices[3].socket",
            ),
            (
                json!({"name": "eth0", "kind": "vhost-user", "socket": "x.sock", "mac": "02:00:00:00:00:01"}),
                "devices[3].socket",
            ),
            (
                json!({"name": "eth0", "kind": "vfio", "pci_address": "03:00.1"}),
                "devices[3].pci_address",
            ),
            (
                json!({"name": "eth0", "kind": "tap", "tap": "t", "mac": "02:00:00:00:00:01", "queues": 0}),
                "devices[3].queues",
            ),
            (
                json!({"name": "eth0", "kind": "tap", "tap": "t", "mac": "02:00:00:00:00:01", "mtu": 1000, "addresses": ["fd00::1/64"]}),
                "devices[3].mtu",
            ),
            (
                json!({"name": "a-name-far-too-long", "kind": "tap", "tap": "t", "mac": "02:00:00:00:00:01"}),
                "devices[3].name",
            ),
            (
                json!({"name": "eth0", "kind": "tap", "tap": "t", "mac": "02:00:00:00:00:01", "addresses": ["10.0.0.2/24", "10.0.0.2/16"]}),
                "devices[3].addresses[1]",
            ),
        ];
        for (bad, field) in cases {
            let e = device(3, &bad).unwrap_err();
            assert_eq!(e.field, field, "{bad}: {e}");
        }
    }

    #[test]
    fn duplicates_are_refused() {
        let a = device(
            0,
            &json!({"name": "eth0", "kind": "tap", "tap": "t0", "mac": "02:00:00:00:00:01"}),
        )
        .unwrap();
        let mut b = a.clone();
        b.index = 1;
        let e = check_unique(&[a.clone(), b.clone()]).unwrap_err();
        assert_eq!(e.field, "devices[1].name");
        b.name = "eth1".into();
        assert_eq!(
            check_unique(&[a.clone(), b.clone()]).unwrap_err().field,
            "devices[1].mac"
        );
        b.mac = "02:00:00:00:00:02".parse().ok();
        assert_eq!(
            check_unique(&[a.clone(), b.clone()]).unwrap_err().field,
            "devices[1].tap"
        );
        b.backend = Backend::Tap {
            tap: "t1".into(),
            queues: None,
        };
        check_unique(&[a, b]).unwrap();
    }
}
