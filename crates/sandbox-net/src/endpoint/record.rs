//! An [`Endpoint`] as state files and JSON output write it: one flat object whose fields
//! say which backend it has (a `tap` name, empty when there is none; a `chardev` for a
//! macvtap; `pci_address` and `vfio_group` for a VFIO NIC; `vhost_user_socket`). Every
//! state written before the backend was a type reads back, and what is written now is
//! what was written then.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Backend, Endpoint, EndpointKind};
use crate::mac::{self, MacAddr};

/// The fields, names and order of the flat object.
#[derive(Serialize, Deserialize)]
pub(super) struct Record {
    name: String,
    kind: EndpointKind,
    ifindex: u32,
    tap: String,
    #[serde(with = "mac::or_empty")]
    mac: Option<MacAddr>,
    /// Read as `mac` is (an empty one is none), in case a tap without a MAC was recorded.
    #[serde(
        default,
        deserialize_with = "mac::or_empty::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    tap_mac: Option<MacAddr>,
    mtu: u32,
    queues: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chardev: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pci_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vfio_group: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vhost_user_socket: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ifb: Option<String>,
}

impl From<Endpoint> for Record {
    fn from(e: Endpoint) -> Record {
        let mut r = Record {
            name: e.name,
            kind: e.kind,
            ifindex: e.ifindex,
            tap: String::new(),
            mac: e.mac,
            tap_mac: None,
            mtu: e.mtu,
            queues: e.queues,
            chardev: None,
            pci_address: None,
            vfio_group: None,
            vhost_user_socket: None,
            ifb: e.ifb,
        };
        match e.backend {
            Backend::Tap { name, mac } => {
                r.tap = name;
                r.tap_mac = mac;
            }
            Backend::Macvtap { name, mac, chardev } => {
                r.tap = name;
                r.tap_mac = mac;
                r.chardev = chardev;
            }
            Backend::Vfio { pci_address, group } => {
                r.pci_address = Some(pci_address);
                r.vfio_group = Some(group);
            }
            Backend::VhostUser { socket } => r.vhost_user_socket = Some(socket),
            Backend::None => {}
        }
        r
    }
}

impl TryFrom<Record> for Endpoint {
    type Error = String;

    /// The backend the fields name; fields of two backends at once (which no release
    /// writes) are refused, naming the endpoint.
    fn try_from(r: Record) -> Result<Endpoint, String> {
        let tap = (!r.tap.is_empty()).then_some(r.tap);
        if tap.is_none() && (r.tap_mac.is_some() || r.chardev.is_some()) {
            return Err(format!(
                "endpoint {:?} has a tap_mac or chardev but no tap",
                r.name
            ));
        }
        let backend = match (tap, r.pci_address, r.vfio_group, r.vhost_user_socket) {
            (Some(name), None, None, None) => match r.chardev {
                Some(chardev) => Backend::Macvtap {
                    name,
                    mac: r.tap_mac,
                    chardev: Some(chardev),
                },
                None => Backend::Tap {
                    name,
                    mac: r.tap_mac,
                },
            },
            (None, Some(pci_address), Some(group), None) => Backend::Vfio { pci_address, group },
            (None, None, None, Some(socket)) => Backend::VhostUser { socket },
            (None, None, None, None) => Backend::None,
            _ => {
                return Err(format!(
                    "endpoint {:?} names more than one backend (tap, pci_address and vfio_group, vhost_user_socket), or half of one",
                    r.name
                ));
            }
        };
        Ok(Endpoint {
            name: r.name,
            kind: r.kind,
            ifindex: r.ifindex,
            mac: r.mac,
            mtu: r.mtu,
            queues: r.queues,
            backend,
            ifb: r.ifb,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn endpoint(fields: serde_json::Value) -> Result<Endpoint, String> {
        let mut base = json!({"name": "eth0", "kind": "veth", "ifindex": 2, "tap": "",
                              "mac": "02:77:00:00:00:02", "mtu": 1500, "queues": 1});
        for (k, v) in fields.as_object().into_iter().flatten() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).map_err(|e| e.to_string())
    }

    #[test]
    fn each_backend_reads_from_its_fields_and_writes_them_back() {
        let cases = [
            (json!({}), Backend::None),
            (
                json!({"tap": "tap0_sn", "tap_mac": "02:00:00:00:00:01"}),
                Backend::Tap {
                    name: "tap0_sn".into(),
                    mac: Some(MacAddr::new([2, 0, 0, 0, 0, 1])),
                },
            ),
            (
                json!({"tap": "tap-vm0"}),
                Backend::Tap {
                    name: "tap-vm0".into(),
                    mac: None,
                },
            ),
            (
                json!({"tap": "mvtap0_sn", "tap_mac": "02:77:00:00:00:02", "chardev": "246:2"}),
                Backend::Macvtap {
                    name: "mvtap0_sn".into(),
                    mac: Some(MacAddr::new([2, 0x77, 0, 0, 0, 2])),
                    chardev: Some("246:2".into()),
                },
            ),
            (
                json!({"pci_address": "0000:03:00.1", "vfio_group": "/dev/vfio/17"}),
                Backend::Vfio {
                    pci_address: "0000:03:00.1".into(),
                    group: "/dev/vfio/17".into(),
                },
            ),
            (
                json!({"vhost_user_socket": "/run/vhu/vhu.sock"}),
                Backend::VhostUser {
                    socket: "/run/vhu/vhu.sock".into(),
                },
            ),
        ];
        for (fields, backend) in cases {
            let e = endpoint(fields.clone()).unwrap_or_else(|e| panic!("{fields}: {e}"));
            assert_eq!(e.backend, backend, "{fields}");
            let back = serde_json::to_value(&e).unwrap();
            for (k, v) in fields.as_object().into_iter().flatten() {
                assert_eq!(&back[k], v, "{fields}: {k}");
            }
            assert_eq!(serde_json::from_value::<Endpoint>(back).unwrap(), e);
        }
    }

    #[test]
    fn two_backends_at_once_or_half_of_one_are_refused() {
        for fields in [
            json!({"tap": "tap0_sn", "vhost_user_socket": "/s"}),
            json!({"tap": "tap0_sn", "pci_address": "0000:03:00.1", "vfio_group": "/g"}),
            json!({"pci_address": "0000:03:00.1"}),
            json!({"vfio_group": "/dev/vfio/1"}),
            json!({"chardev": "246:1"}),
            json!({"tap_mac": "02:00:00:00:00:01"}),
            json!({"mac": "zz"}),
            json!({"tap": "t", "tap_mac": "02:00:00:00:00"}),
        ] {
            assert!(endpoint(fields.clone()).is_err(), "{fields}");
        }
        assert_eq!(endpoint(json!({"mac": ""})).map(|e| e.mac), Ok(None));
    }
}
