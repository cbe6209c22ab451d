//! The CNI result: decoding a `prevResult` (any supported version), adding the tap and the
//! VM's interface, and encoding it in the configuration's version.
//!
//! 0.3.1 and 0.4.0 results carry `"version": "4"|"6"` in every `ips` entry; 1.0.0 dropped
//! it; 1.1.0 added `mtu` (and more) to interfaces. Decoding accepts either shape, and
//! encoding writes the one of the requested version. Fields this module does not model
//! (routes, dns, extra interface fields) pass through unchanged.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::CniError;
use super::version;

/// One entry of `interfaces`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Interface {
    /// True for an interface inside a container or VM (it has a non-empty `sandbox`).
    pub fn in_sandbox(&self) -> bool {
        self.sandbox.as_deref().is_some_and(|s| !s.is_empty())
    }
}

/// One entry of `ips`.
#[derive(Debug, Clone, PartialEq)]
pub struct IpConfig {
    /// "ADDR/PREFIX" as given.
    pub address: String,
    /// The address part, parsed.
    pub ip: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<String>,
    /// Index into `interfaces`; None when the previous plugin left it out.
    pub interface: Option<usize>,
    /// Fields this module does not model.
    pub extra: Map<String, Value>,
}

/// A CNI result.
#[derive(Debug, Clone, PartialEq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Value>,
    pub dns: Option<Value>,
}

/// Parse "10.1.1.2/24" or "fd00::2/64".
pub fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = text.split_once('/')?;
    let ip: IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

fn take_list(obj: &mut Map<String, Value>, key: &str) -> Result<Vec<Value>, CniError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(CniError::decode(
            format!("prevResult.{key}"),
            format!("expected a list, got {other}"),
        )),
    }
}

fn decode_ip(n: usize, item: Value) -> Result<IpConfig, CniError> {
    let what = format!("prevResult.ips[{n}]");
    let Value::Object(mut obj) = item else {
        return Err(CniError::decode(what, "expected an object"));
    };
    let address = match obj.remove("address") {
        Some(Value::String(s)) => s,
        other => {
            return Err(CniError::decode(
                format!("{what}.address"),
                format!(
                    "expected \"ADDRESS/PREFIX\", got {}",
                    other.unwrap_or(Value::Null)
                ),
            ));
        }
    };
    let (ip, prefix_len) = parse_cidr(&address).ok_or_else(|| {
        CniError::decode(
            format!("{what}.address"),
            format!("{address:?} is not ADDRESS/PREFIX"),
        )
    })?;
    let gateway = match obj.remove("gateway") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            return Err(CniError::decode(
                format!("{what}.gateway"),
                format!("expected an address, got {other}"),
            ));
        }
    };
    let interface = match obj.remove("interface") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|i| usize::try_from(i).ok())
                .ok_or_else(|| {
                    CniError::decode(
                        format!("{what}.interface"),
                        format!("expected an index, got {v}"),
                    )
                })?,
        ),
    };
    // Regenerated from the address when encoding for a version that has it.
    obj.remove("version");
    Ok(IpConfig {
        address,
        ip,
        prefix_len,
        gateway,
        interface,
        extra: obj,
    })
}

impl CniResult {
    /// Decode a `prevResult` (code 6 when its shape is wrong).
    pub fn decode(value: &Value) -> Result<CniResult, CniError> {
        let Value::Object(obj) = value else {
            return Err(CniError::decode("prevResult", "expected a JSON object"));
        };
        let mut obj = obj.clone();
        let interfaces = take_list(&mut obj, "interfaces")?
            .into_iter()
            .enumerate()
            .map(|(n, v)| {
                serde_json::from_value::<Interface>(v).map_err(|e| {
                    CniError::decode(format!("prevResult.interfaces[{n}]"), e.to_string())
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ips = take_list(&mut obj, "ips")?
            .into_iter()
            .enumerate()
            .map(|(n, v)| decode_ip(n, v))
            .collect::<Result<Vec<_>, _>>()?;
        let routes = take_list(&mut obj, "routes")?;
        let dns = obj.remove("dns").filter(|v| !v.is_null());
        Ok(CniResult {
            interfaces,
            ips,
            routes,
            dns,
        })
    }

    /// Append the tap (when the model made one) and the VM's interface, and point at the
    /// VM's interface every IP that belonged to `ifname` in a sandbox, or to no interface
    /// at all (a missing or out-of-range index). IPs of other interfaces keep theirs.
    /// Returns the index of the VM's interface.
    pub fn add_vm_interfaces(
        &mut self,
        ifname: &str,
        tap: Option<Interface>,
        vm: Interface,
    ) -> usize {
        let before = self.interfaces.clone();
        self.interfaces.extend(tap);
        self.interfaces.push(vm);
        let vm_index = self.interfaces.len() - 1;
        for ip in &mut self.ips {
            let ours = match ip.interface.and_then(|i| before.get(i)) {
                None => true,
                Some(iface) => iface.name == ifname && iface.in_sandbox(),
            };
            if ours {
                ip.interface = Some(vm_index);
            }
        }
        vm_index
    }

    /// Encode in the shape of `cni_version`, fields in the spec's order.
    pub fn encode<'a>(&'a self, cni_version: &'a str) -> Encoded<'a> {
        let with_ip_version = !version::at_least(cni_version, version::NO_IP_VERSION_SINCE);
        Encoded {
            cni_version,
            interfaces: &self.interfaces,
            ips: self
                .ips
                .iter()
                .map(|ip| EncodedIp {
                    version: with_ip_version.then_some(if ip.ip.is_ipv4() { "4" } else { "6" }),
                    address: &ip.address,
                    gateway: ip.gateway.as_deref(),
                    interface: ip.interface,
                    extra: &ip.extra,
                })
                .collect(),
            routes: &self.routes,
            dns: self
                .dns
                .clone()
                .unwrap_or_else(|| Value::Object(Map::new())),
        }
    }
}

/// A result as written to stdout.
#[derive(Debug, Serialize)]
pub struct Encoded<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    interfaces: &'a [Interface],
    ips: Vec<EncodedIp<'a>>,
    #[serde(skip_serializing_if = "<[Value]>::is_empty")]
    routes: &'a [Value],
    dns: Value,
}

#[derive(Debug, Serialize)]
struct EncodedIp<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'static str>,
    address: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface: Option<usize>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value(r: &CniResult, version: &str) -> Value {
        serde_json::to_value(r.encode(version)).expect("encode")
    }

    fn bridge_040() -> Value {
        json!({
            "cniVersion": "0.4.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa:00:00:00:00:01"},
                {"name": "veth1", "mac": "aa:00:00:00:00:02"},
                {"name": "eth0", "mac": "aa:00:00:00:00:03", "sandbox": "/run/netns/p"}
            ],
            "ips": [
                {"version": "4", "address": "10.22.0.2/16", "gateway": "10.22.0.1", "interface": 2},
                {"version": "6", "address": "fd22::2/64", "gateway": "fd22::1", "interface": 2}
            ],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {"nameservers": ["10.0.0.53"]}
        })
    }

    fn vm(name: &str) -> Interface {
        Interface {
            name: name.into(),
            mac: Some("aa:00:00:00:00:03".into()),
            mtu: None,
            sandbox: Some("ctr1".into()),
            extra: Map::new(),
        }
    }

    #[test]
    fn ips_move_to_the_vm_interface_and_versions_convert() {
        let mut r = CniResult::decode(&bridge_040()).expect("decode");
        let tap = Interface {
            name: "tap_eth0".into(),
            mac: Some("aa:00:00:00:00:04".into()),
            mtu: None,
            sandbox: Some("/run/netns/p".into()),
            extra: Map::new(),
        };
        assert_eq!(r.add_vm_interfaces("eth0", Some(tap), vm("eth0")), 4);
        let v1 = value(&r, "1.0.0");
        assert_eq!(v1["cniVersion"], "1.0.0");
        assert_eq!(v1["interfaces"].as_array().map(Vec::len), Some(5));
        for ip in v1["ips"].as_array().into_iter().flatten() {
            assert_eq!(ip["interface"], 4, "{ip}");
            assert!(ip.get("version").is_none(), "{ip}");
        }
        assert_eq!(v1["routes"], json!([{"dst": "0.0.0.0/0"}]));
        assert_eq!(v1["dns"]["nameservers"][0], "10.0.0.53");
        let v0 = value(&r, "0.4.0");
        assert_eq!(v0["ips"][0]["version"], "4");
        assert_eq!(v0["ips"][1]["version"], "6");
        // And it decodes back to the same thing.
        assert_eq!(CniResult::decode(&v0).expect("decode"), r);
    }

    #[test]
    fn ips_without_an_index_and_ips_of_other_interfaces() {
        let prev = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "host0"}, {"name": "eth0", "sandbox": "/run/netns/p"}],
            "ips": [
                {"address": "10.1.0.2/24"},
                {"address": "10.1.0.3/24", "interface": 7},
                {"address": "192.168.0.1/24", "interface": 0},
                {"address": "10.1.0.4/24", "interface": 1}
            ]
        });
        let mut r = CniResult::decode(&prev).expect("decode");
        let idx = r.add_vm_interfaces("eth0", None, vm("eth0"));
        assert_eq!(idx, 2);
        let got: Vec<Option<usize>> = r.ips.iter().map(|i| i.interface).collect();
        assert_eq!(got, vec![Some(2), Some(2), Some(0), Some(2)]);
        // No mtu, no routes, no dns: fine.
        let out = value(&r, "1.0.0");
        assert!(out.get("routes").is_none());
        assert_eq!(out["dns"], json!({}));
    }

    #[test]
    fn malformed_results_are_decode_errors() {
        for bad in [
            json!([]),
            json!({"ips": [{"address": "10.0.0.1"}]}),
            json!({"ips": [{"address": "10.0.0.1/33"}]}),
            json!({"ips": [{"address": "10.0.0.1/8", "interface": -1}]}),
            json!({"interfaces": [{"mac": "x"}]}),
            json!({"ips": {}}),
        ] {
            assert_eq!(
                CniResult::decode(&bad).err().map(|e| e.code()),
                Some(6),
                "{bad}"
            );
        }
    }
}
