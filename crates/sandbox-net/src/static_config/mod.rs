//! Static attachments: a JSON file that lists devices living in no container netns (an
//! existing tap, a vhost-user socket, a PCI device for VFIO) with the guest NIC's MAC,
//! MTU and addresses, and the guest's routes and neighbours. `attach --config FILE`
//! attaches them (see `ops::static_attach`); the schema is documented in docs/static.md.
//!
//! [`parse`] checks the whole file and touches nothing: every error names the entry and
//! the field (`devices[1].mac: "zz" is not a MAC`).

pub mod devices;
pub mod fields;
pub mod guest_parts;

use std::path::Path;

use serde_json::Value;

pub use devices::{Backend, Device};
pub use fields::ConfigError;
use fields::{Checked, Obj};
use guest_parts::DeviceView;

use crate::guest::{GuestNeighbor, GuestRoute};
use crate::{Error, Result};

/// The schema version this build reads.
pub const CONFIG_VERSION: u32 = 1;

/// A checked static configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticConfig {
    pub devices: Vec<Device>,
    pub routes: Vec<GuestRoute>,
    pub neighbors: Vec<GuestNeighbor>,
}

/// Parse and check a static configuration (the text of the file).
pub fn parse(text: &str) -> Checked<StaticConfig> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ConfigError::new("(file)", format!("not valid JSON: {e}")))?;
    let top = Obj::new("", &value)?;
    top.only(
        &["version", "devices", "routes", "neighbors"],
        "a static configuration",
    )?;
    let version = top.u32("version")?;
    if version != CONFIG_VERSION {
        return Err(ConfigError::new(
            "version",
            format!("{version} is not supported (this build reads version {CONFIG_VERSION})"),
        ));
    }
    if !top.has("devices") {
        return Err(ConfigError::new("devices", "missing (required)"));
    }
    let entries = top.array("devices")?;
    if entries.is_empty() {
        return Err(ConfigError::new(
            "devices",
            "is empty: list at least one device",
        ));
    }
    let devices = entries
        .iter()
        .enumerate()
        .map(|(i, v)| devices::device(i, v))
        .collect::<Checked<Vec<Device>>>()?;
    devices::check_unique(&devices)?;
    let views: Vec<DeviceView<'_>> = devices
        .iter()
        .map(|d| DeviceView {
            name: &d.name,
            addresses: &d.addresses,
        })
        .collect();
    let mut routes: Vec<GuestRoute> = Vec::new();
    for (i, v) in top.array("routes")?.iter().enumerate() {
        let path = format!("routes[{i}]");
        let r = guest_parts::route(&path, v, &views)?;
        if let Some(j) = routes.iter().position(|o| {
            o.family == r.family && o.dst == r.dst && o.device == r.device && o.metric == r.metric
        }) {
            return Err(ConfigError::new(
                path,
                format!(
                    "route {} ({}) through {} duplicates routes[{j}]",
                    r.dst, r.family, r.device
                ),
            ));
        }
        routes.push(r);
    }
    let mut neighbors: Vec<GuestNeighbor> = Vec::new();
    for (i, v) in top.array("neighbors")?.iter().enumerate() {
        let path = format!("neighbors[{i}]");
        let n = guest_parts::neighbor(&path, v, &views)?;
        if let Some(j) = neighbors
            .iter()
            .position(|o| o.ip == n.ip && o.device == n.device)
        {
            return Err(ConfigError::new(
                path,
                format!(
                    "neighbour {} on {} duplicates neighbors[{j}]",
                    n.ip, n.device
                ),
            ));
        }
        neighbors.push(n);
    }
    Ok(StaticConfig {
        devices,
        routes,
        neighbors,
    })
}

/// Read and check a static configuration file; errors name the file, the entry and the
/// field.
pub fn load(path: &Path) -> Result<StaticConfig> {
    let what = format!("config {}", path.display());
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid(&what, format!("cannot read: {e}")))?;
    parse(&text).map_err(|e| Error::invalid(what, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
      "version": 1,
      "devices": [
        {"name": "eth0", "kind": "tap", "tap": "tap-vm0", "mac": "02:00:00:00:00:01",
         "addresses": ["10.0.0.2/24", "fd00::2/64"]},
        {"name": "eth1", "kind": "vhost-user", "socket": "/run/vhu.sock",
         "mac": "02:00:00:00:00:02", "mtu": 9000, "addresses": ["10.1.0.2/24"]}
      ],
      "routes": [
        {"dst": "default", "gateway": "10.0.0.1", "device": "eth0"},
        {"dst": "default", "gateway": "fd00::1", "device": "eth0"},
        {"dst": "10.2.0.0/16", "gateway": "10.1.0.1", "device": "eth1", "mtu": 8950}
      ],
      "neighbors": [{"ip": "10.0.0.1", "mac": "02:00:00:00:00:fe", "device": "eth0"}]
    }"#;

    #[test]
    fn a_good_file_parses() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.devices.len(), 2);
        assert_eq!(c.routes.len(), 3);
        assert_eq!(c.neighbors[0].state, "permanent");
    }

    #[test]
    fn top_level_problems_are_named() {
        let cases = [
            ("{", "(file)"),
            ("[]", "(top level)"),
            (r#"{"devices": []}"#, "version"),
            (r#"{"version": 2, "devices": []}"#, "version"),
            (r#"{"version": 1}"#, "devices"),
            (r#"{"version": 1, "devices": []}"#, "devices"),
            (r#"{"version": 1, "devices": {}}"#, "devices"),
            (r#"{"version": 1, "devices": [], "extra": 1}"#, "extra"),
        ];
        for (text, field) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
        }
    }

    #[test]
    fn duplicate_routes_and_neighbours_are_refused() {
        let v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        let mut twice = v.clone();
        let r = twice["routes"][0].clone();
        twice["routes"].as_array_mut().unwrap().push(r);
        let e = parse(&twice.to_string()).unwrap_err();
        assert_eq!(e.field, "routes[3]");
        let mut twice = v;
        let n = twice["neighbors"][0].clone();
        twice["neighbors"].as_array_mut().unwrap().push(n);
        assert_eq!(parse(&twice.to_string()).unwrap_err().field, "neighbors[1]");
    }
}
