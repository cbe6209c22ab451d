//! sandbox-net as a chained CNI plugin, driven the way libcni drives a plugin list, with
//! the real reference plugins of Debian's containernetworking-plugins (bridge, host-local,
//! ptp, macvlan).
//!
//! Nothing runs in the host's netns: every chain gets a netns that plays the host (the
//! plugins run in it through `ip netns exec`, so the bridge, the host ends of the veths and
//! the macvlan master live there) and a pod netns whose path is CNI_NETNS. Both are
//! deleted on drop, and take everything the plugins made with them. The error-code tests
//! run the binary directly: they fail before any kernel object is touched.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;
use sandbox_net_testkit::netns::Named;
use serde_json::{Value, json};

/// Where Debian installs the reference plugins.
pub(crate) const CNI_BIN: &str = "/usr/lib/cni";

/// A named netns (`name`, `netns`), deleted on drop.
pub(crate) struct Ns(Named);

impl std::ops::Deref for Ns {
    type Target = Named;
    fn deref(&self) -> &Named {
        &self.0
    }
}

impl Ns {
    /// A fresh netns with loopback up and IPv6 duplicate address detection off (addresses
    /// are usable at once, which keeps the tests deterministic).
    pub(crate) fn new(prefix: &str) -> Ns {
        let name = unique_name(prefix);
        let ns = Named::create(&name).unwrap_or_else(|e| panic!("create netns {name}: {e}"));
        let ns = Ns(ns);
        for scope in ["all", "default"] {
            ns.sysctl(&format!("net/ipv6/conf/{scope}/accept_dad"), "0");
        }
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub(crate) fn path(&self) -> String {
        format!("/run/netns/{}", self.name())
    }

    pub(crate) fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{key}");
        self.netns
            .run(|| std::fs::write(&path, value))
            .expect("enter netns")
            .unwrap_or_else(|e| panic!("write {path} in {}: {e}", self.name()));
    }

    pub(crate) fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// `ip -d -j link show`, one JSON object per link.
    pub(crate) fn links(&self) -> Vec<Value> {
        ip_json(self.name(), &["-d", "link", "show"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn link(&self, name: &str) -> Option<Value> {
        self.links().into_iter().find(|l| l["ifname"] == name)
    }

    /// The ingress and HTB qdiscs (what sandbox-net adds), as "DEV KIND".
    pub(crate) fn our_qdiscs(&self) -> Vec<String> {
        tc_json(self.name(), &["qdisc", "show"])
            .as_array()
            .into_iter()
            .flatten()
            .filter(|q| q["kind"] == "ingress" || q["kind"] == "htb")
            .map(|q| format!("{} {}", q["dev"], q["kind"]))
            .collect()
    }
}

/// What a plugin printed and returned.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Outcome {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    pub(crate) fn ok(self, what: &str) -> Outcome {
        assert_eq!(self.code, 0, "{what} failed: {self:#?}");
        self
    }
}

/// Run `program` with only `env` (plus PATH) and `stdin`; inside `host` when given.
pub(crate) fn exec(
    host: Option<&Ns>,
    program: &str,
    env: &[(&str, &str)],
    stdin: &[u8],
) -> Outcome {
    let mut cmd = match host {
        Some(h) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", h.name(), program]);
            c
        }
        None => Command::new(program),
    };
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin)
        .unwrap_or_else(|e| panic!("write stdin of {program}: {e}"));
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for {program}: {e}"));
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The executable of a plugin type: sandbox-net is the binary under test.
pub(crate) fn plugin_path(kind: &str) -> String {
    if kind == "sandbox-net" {
        bin().to_string()
    } else {
        format!("{CNI_BIN}/{kind}")
    }
}

/// The runtime side of an invocation (libcni's RuntimeConf).
pub(crate) struct Runtime {
    pub(crate) container_id: String,
    pub(crate) netns: String,
    pub(crate) ifname: String,
    pub(crate) args: Option<String>,
}

impl Runtime {
    pub(crate) fn new(container_id: &str, pod: &Ns) -> Runtime {
        Runtime {
            container_id: container_id.to_string(),
            netns: pod.path(),
            ifname: "eth0".into(),
            args: None,
        }
    }
}

/// A plugin list, run like libcni runs one: ADD in order, each plugin getting the result
/// of the one before as `prevResult` (same cniVersion); CHECK and DEL (in reverse) with the
/// final result as `prevResult`.
pub(crate) struct Chain {
    pub(crate) name: String,
    pub(crate) cni_version: String,
    pub(crate) plugins: Vec<Value>,
}

impl Chain {
    pub(crate) fn new(name: &str, cni_version: &str, plugins: Vec<Value>) -> Chain {
        Chain {
            name: name.into(),
            cni_version: cni_version.into(),
            plugins,
        }
    }

    pub(crate) fn conf(&self, plugin: &Value, prev: Option<&Value>) -> Value {
        let mut conf = plugin.clone();
        conf["cniVersion"] = self.cni_version.clone().into();
        conf["name"] = self.name.clone().into();
        if let Some(p) = prev {
            conf["prevResult"] = p.clone();
        }
        conf
    }

    pub(crate) fn invoke(&self, host: &Ns, rt: &Runtime, command: &str, conf: &Value) -> Outcome {
        let kind = conf["type"].as_str().expect("plugin type").to_string();
        let mut env = vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", rt.container_id.as_str()),
            ("CNI_NETNS", rt.netns.as_str()),
            ("CNI_IFNAME", rt.ifname.as_str()),
            ("CNI_PATH", CNI_BIN),
        ];
        if let Some(a) = &rt.args {
            env.push(("CNI_ARGS", a));
        }
        exec(
            Some(host),
            &plugin_path(&kind),
            &env,
            conf.to_string().as_bytes(),
        )
    }

    /// ADD the first `n` plugins; returns the result of each.
    pub(crate) fn add_first(&self, host: &Ns, rt: &Runtime, n: usize) -> Vec<Value> {
        let mut results: Vec<Value> = Vec::new();
        for plugin in &self.plugins[..n] {
            let conf = self.conf(plugin, results.last());
            let out = self
                .invoke(host, rt, "ADD", &conf)
                .ok(&format!("ADD {}", conf["type"]));
            results.push(out.json());
        }
        results
    }

    /// ADD every plugin; returns (the result before the last plugin, the final result).
    pub(crate) fn add(&self, host: &Ns, rt: &Runtime) -> (Value, Value) {
        let mut results = self.add_first(host, rt, self.plugins.len());
        let last = results.pop().expect("a chain has plugins");
        (results.pop().unwrap_or(Value::Null), last)
    }

    /// CHECK every plugin; the outcome of each.
    pub(crate) fn check(&self, host: &Ns, rt: &Runtime, result: &Value) -> Vec<Outcome> {
        self.plugins
            .iter()
            .map(|p| self.invoke(host, rt, "CHECK", &self.conf(p, Some(result))))
            .collect()
    }

    /// DEL every plugin, last first; each must succeed.
    pub(crate) fn del(&self, host: &Ns, rt: &Runtime, result: Option<&Value>) {
        for plugin in self.plugins.iter().rev() {
            let conf = self.conf(plugin, result);
            self.invoke(host, rt, "DEL", &conf)
                .ok(&format!("DEL {}", conf["type"]));
        }
    }
}

pub(crate) fn bridge(ipam_dir: &Path, ranges: Value, routes: Value) -> Value {
    json!({
        "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
        "ipam": { "type": "host-local", "dataDir": ipam_dir, "ranges": ranges, "routes": routes }
    })
}

pub(crate) fn sandbox_net(state: &TempStateDir, extra: Value) -> Value {
    let mut conf = json!({ "type": "sandbox-net", "stateDir": state.path() });
    if let (Some(c), Value::Object(e)) = (conf.as_object_mut(), extra) {
        c.extend(e);
    }
    conf
}

pub(crate) fn v4_default() -> Value {
    json!([{ "dst": "0.0.0.0/0" }])
}

pub(crate) fn interfaces(result: &Value) -> Vec<Value> {
    result["interfaces"].as_array().cloned().unwrap_or_default()
}

pub(crate) fn ips(result: &Value) -> Vec<Value> {
    result["ips"].as_array().cloned().unwrap_or_default()
}

/// The checks every ADD result of ours must pass: the previous result's interfaces kept,
/// then the tap (sandbox = the netns) and the VM's interface (sandbox = the container id,
/// MAC = the pod interface's, which the guest takes over), and every IP on the VM's.
pub(crate) fn check_result(
    result: &Value,
    prev: &Value,
    pod: &Ns,
    rt: &Runtime,
    tap: &str,
    cni_version: &str,
) {
    assert_eq!(result["cniVersion"], cni_version, "{result:#}");
    let ifs = interfaces(result);
    let before = interfaces(prev);
    assert_eq!(ifs.len(), before.len() + 2, "{result:#}");
    assert_eq!(ifs[..before.len()], before[..], "{result:#}");
    let (tap_if, vm_if) = (&ifs[ifs.len() - 2], &ifs[ifs.len() - 1]);
    let pod_link = pod.link(&rt.ifname).expect("the pod interface");
    let tap_link = pod
        .link(tap)
        .unwrap_or_else(|| panic!("tap {tap} in the pod"));
    assert_eq!(tap_if["name"], tap, "{result:#}");
    assert_eq!(tap_if["sandbox"], pod.path(), "{result:#}");
    assert_eq!(tap_if["mac"], tap_link["address"], "{result:#}");
    assert_eq!(vm_if["name"], rt.ifname.as_str(), "{result:#}");
    assert_eq!(vm_if["sandbox"], rt.container_id.as_str(), "{result:#}");
    assert_eq!(vm_if["mac"], pod_link["address"], "{result:#}");
    assert_eq!(tap_link["linkinfo"]["info_data"]["type"], "tap");
    let vm_index = ifs.len() - 1;
    let prev_ips = ips(prev);
    let got = ips(result);
    assert_eq!(got.len(), prev_ips.len(), "{result:#}");
    for (ip, was) in got.iter().zip(&prev_ips) {
        assert_eq!(ip["interface"], vm_index, "{result:#}");
        assert_eq!(ip["address"], was["address"], "{result:#}");
        assert_eq!(ip["gateway"], was["gateway"], "{result:#}");
        if cni_version == "1.0.0" {
            assert!(ip.get("version").is_none(), "{ip}");
        } else {
            let v = if ip["address"].as_str().is_some_and(|a| a.contains(':')) {
                "6"
            } else {
                "4"
            };
            assert_eq!(ip["version"], v, "{ip}");
        }
    }
    assert_eq!(result["routes"], prev["routes"], "{result:#}");
}

/// The attachment is in the shared state dir, with no drift, and the CLI sees it.
pub(crate) fn check_attached(state: &TempStateDir, id: &str) -> sandbox_net::ops::Status {
    let st = sandbox_net::status(state.path(), id)
        .expect("status")
        .unwrap_or_else(|| panic!("{id} is not attached"));
    assert!(!st.drift, "{st:?}");
    assert!(st.objects.iter().flatten().all(|o| o.present), "{st:?}");
    let dir = state.path().display().to_string();
    let (code, out, err) = cli(&["--state-dir", &dir, "status", "--id", id, "--json"]);
    assert_eq!(code, 0, "{out} {err}");
    let v: Value = serde_json::from_str(&out).expect("status JSON");
    assert_eq!(v["drift"], false, "{v}");
    st
}

/// A fake guest on the tap pings `gateways`, and the host-playing netns pings it back.
pub(crate) fn check_dataplane(
    state: &TempStateDir,
    id: &str,
    pod: &Ns,
    host: &Ns,
    gateways: &[&str],
) {
    let st = check_attached(state, id);
    let ep = &st.endpoints[0];
    let guest = sandbox_net::guest_config(state.path(), id)
        .expect("guest config")
        .expect("attached");
    let iface = guest
        .interfaces
        .iter()
        .find(|i| i.name == ep.name)
        .expect("guest interface");
    let identity = sandbox_net_testkit::dataplane::identity(ep, iface).expect("identity");
    let targets: Vec<IpAddr> = gateways
        .iter()
        .map(|g| g.parse().expect("gateway address"))
        .collect();
    let reports =
        sandbox_net_testkit::dataplane::check(&pod.netns, &host.netns, ep, identity, &targets, 3)
            .unwrap_or_else(|e| {
                panic!("dataplane through {}: {e}", ep.device().unwrap_or_default())
            });
    for r in &reports {
        println!("   {:<28} {} replies", r.direction, r.rtts.len());
    }
    assert_eq!(reports.len(), gateways.len() * 2, "{reports:?}");
}

/// Nothing of ours is left: no tap, no ingress or HTB qdisc, no state, no record, no lock.
pub(crate) fn check_nothing_left(state: &TempStateDir, id: &str, pod: &Ns, tap: &str) {
    assert!(pod.link(tap).is_none(), "tap {tap} left");
    assert_eq!(pod.our_qdiscs(), Vec::<String>::new(), "qdiscs left");
    assert!(
        !state.path().join(format!("{id}.json")).exists(),
        "state left"
    );
    assert!(
        !state.path().join(format!("{id}.lock")).exists(),
        "lock left"
    );
    assert!(
        !state.path().join(format!("cni/{id}.json")).exists(),
        "CNI record left"
    );
    assert!(
        sandbox_net::status(state.path(), id)
            .expect("status")
            .is_none()
    );
}

fn bridge_chain(cni_version: &str) {
    let host = Ns::new("sncni-host");
    let pod = Ns::new("sncni-pod");
    let ipam = TempStateDir::new();
    let state = TempStateDir::new();
    let chain = Chain::new(
        "bridgenet",
        cni_version,
        vec![
            bridge(
                ipam.path(),
                json!([[{ "subnet": "10.22.0.0/16", "gateway": "10.22.0.1" }]]),
                v4_default(),
            ),
            sandbox_net(&state, json!({})),
        ],
    );
    let rt = Runtime::new("ctr-bridge", &pod);
    let prev = chain.add_first(&host, &rt, 1).remove(0);
    let ours = chain.conf(&chain.plugins[1], Some(&prev));
    let out = chain.invoke(&host, &rt, "ADD", &ours).ok("ADD sandbox-net");
    println!("ADD result of bridge + host-local + sandbox-net, cniVersion {cni_version}:");
    println!("{}", out.stdout.trim_end());
    let result = out.json();
    check_result(&result, &prev, &pod, &rt, "tap_eth0", cni_version);
    let id = sandbox_net::cni::sandbox_id("ctr-bridge", "eth0");
    assert!(id.starts_with("ctr-bridge-eth0-"), "{id}");
    // ADD does not take the guest description (prevResult has it); guest-config reads it
    // from the netns, and it gives the address host-local leased.
    let recorded = sandbox_net::state::StateDir::open(state.path())
        .expect("state dir")
        .load(&id)
        .expect("load")
        .expect("attached");
    assert_eq!(recorded.guest, None);
    let guest = sandbox_net::guest_config(state.path(), &id)
        .expect("guest config")
        .expect("attached");
    assert_eq!(
        guest.interfaces[0].addresses[0].address.to_string(),
        "10.22.0.2"
    );
    check_dataplane(&state, &id, &pod, &host, &["10.22.0.1"]);

    // CHECK of the whole chain passes, the bridge plugin's included.
    for (out, plugin) in chain
        .check(&host, &rt, &result)
        .iter()
        .zip(["bridge", "sandbox-net"])
    {
        assert_eq!(out.code, 0, "CHECK {plugin}: {out:#?}");
        assert_eq!(out.stdout.trim(), "", "CHECK {plugin} prints nothing");
    }

    // DEL: ours, then the bridge's.
    chain.del(&host, &rt, Some(&result));
    check_nothing_left(&state, &id, &pod, "tap_eth0");
    assert!(
        pod.link("eth0").is_none(),
        "the bridge plugin's DEL left eth0"
    );
    let leased = ipam.path().join("bridgenet").join("10.22.0.2");
    assert!(!leased.exists(), "host-local kept the lease");
    // DEL is idempotent, for every plugin of the chain.
    chain.del(&host, &rt, Some(&result));
    let again = chain.invoke(&host, &rt, "DEL", &ours).ok("DEL again");
    assert_eq!(again.stdout.trim(), "");
}

#[test]
fn bridge_chain_cni_0_4_0() {
    bridge_chain("0.4.0");
}

#[test]
fn bridge_chain_cni_1_0_0() {
    bridge_chain("1.0.0");
}

/// Firecracker style: ptp, a fixed tap name from the configuration, the tap's owner from
/// CNI_ARGS (which overrides the configuration's), the MTU carried to the tap, and rate
/// limits in both directions.
#[test]
fn ptp_chain_with_tap_name_and_owner() {
    let host = Ns::new("sncni-host");
    let pod = Ns::new("sncni-pod");
    let ipam = TempStateDir::new();
    let state = TempStateDir::new();
    let chain = Chain::new(
        "fcnet",
        "1.0.0",
        vec![
            json!({
                "type": "ptp", "ipMasq": false, "mtu": 1400,
                "ipam": { "type": "host-local", "dataDir": ipam.path(),
                          "ranges": [[{ "subnet": "10.89.0.0/24" }]], "routes": v4_default() }
            }),
            sandbox_net(
                &state,
                json!({ "tapName": "fc-tap0", "tapUid": 1, "tapGid": 1,
                        "rxRate": "20mbit", "txRate": 10_000_000 }),
            ),
        ],
    );
    let mut rt = Runtime::new("ctr-ptp", &pod);
    rt.args = Some("IgnoreUnknown=1;K8S_POD_NAME=vm1;TAP_UID=4242;TAP_GID=4243".into());
    let (prev, result) = chain.add(&host, &rt);
    check_result(&result, &prev, &pod, &rt, "fc-tap0", "1.0.0");
    let tap = pod.link("fc-tap0").expect("tap");
    assert_eq!(tap["mtu"], 1400, "{tap}");
    assert_eq!(tap["linkinfo"]["info_data"]["user"], 4242, "{tap}");
    assert_eq!(tap["linkinfo"]["info_data"]["group"], 4243, "{tap}");
    let gw = ips(&result)[0]["gateway"]
        .as_str()
        .expect("ptp gives a gateway")
        .to_string();
    let id = sandbox_net::cni::sandbox_id("ctr-ptp", "eth0");
    let htb: Vec<String> = tc_json(pod.name(), &["qdisc", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .filter(|q| q["kind"] == "htb")
        .filter_map(|q| q["dev"].as_str().map(String::from))
        .collect();
    assert_eq!(htb.len(), 2, "one HTB limit per direction: {htb:?}");
    let saved = sandbox_net::state::StateDir::open(state.path())
        .expect("state dir")
        .load(&id)
        .expect("load")
        .expect("state");
    assert_eq!(
        saved.settings.rx_rate.map(|r| r.bits_per_sec()),
        Some(20_000_000)
    );
    assert_eq!(
        saved.settings.tx_rate.map(|r| r.bits_per_sec()),
        Some(10_000_000)
    );
    check_dataplane(&state, &id, &pod, &host, &[&gw]);
    for out in chain.check(&host, &rt, &result) {
        assert_eq!(out.code, 0, "{out:#?}");
    }
    chain.del(&host, &rt, Some(&result));
    check_nothing_left(&state, &id, &pod, "fc-tap0");
    assert!(pod.link("eth0").is_none());
}

/// macvlan: the master is one end of a veth pair in the host-playing netns, and the
/// gateway a macvlan "shim" on it (a macvlan child can't talk to its lower device).
#[test]
fn macvlan_chain() {
    let host = Ns::new("sncni-host");
    let pod = Ns::new("sncni-pod");
    let ipam = TempStateDir::new();
    let state = TempStateDir::new();
    host.ip(&[
        "link", "add", "mvm0", "type", "veth", "peer", "name", "mvm0p",
    ]);
    host.ip(&["link", "set", "mvm0p", "up"]);
    host.ip(&["link", "set", "mvm0", "up"]);
    host.ip(&[
        "link", "add", "mvshim", "link", "mvm0", "type", "macvlan", "mode", "bridge",
    ]);
    host.ip(&["addr", "add", "10.90.0.1/24", "dev", "mvshim"]);
    host.ip(&["link", "set", "mvshim", "up"]);
    let chain = Chain::new(
        "mvnet",
        "0.4.0",
        vec![
            json!({
                "type": "macvlan", "master": "mvm0", "mode": "bridge",
                "ipam": { "type": "host-local", "dataDir": ipam.path(),
                          "ranges": [[{ "subnet": "10.90.0.0/24", "rangeStart": "10.90.0.10",
                                        "gateway": "10.90.0.1" }]],
                          "routes": v4_default() }
            }),
            sandbox_net(&state, json!({})),
        ],
    );
    let rt = Runtime::new("ctr-macvlan", &pod);
    let (prev, result) = chain.add(&host, &rt);
    check_result(&result, &prev, &pod, &rt, "tap_eth0", "0.4.0");
    let pod_if = pod.link("eth0").expect("eth0");
    assert_eq!(pod_if["linkinfo"]["info_kind"], "macvlan", "{pod_if}");
    let id = sandbox_net::cni::sandbox_id("ctr-macvlan", "eth0");
    let st = check_attached(&state, &id);
    assert_eq!(st.endpoints[0].kind.as_str(), "macvlan");
    check_dataplane(&state, &id, &pod, &host, &["10.90.0.1"]);
    chain.del(&host, &rt, Some(&result));
    check_nothing_left(&state, &id, &pod, "tap_eth0");
    assert!(pod.link("eth0").is_none());
}

/// host-local with an IPv4 and an IPv6 range: two IPs, both moved to the VM's interface,
/// and traffic through the tap in both families.
#[test]
fn dual_stack_chain() {
    let host = Ns::new("sncni-host");
    let pod = Ns::new("sncni-pod");
    let ipam = TempStateDir::new();
    let state = TempStateDir::new();
    let chain = Chain::new(
        "dualnet",
        "1.0.0",
        vec![
            bridge(
                ipam.path(),
                json!([
                    [{ "subnet": "10.23.0.0/24", "gateway": "10.23.0.1" }],
                    [{ "subnet": "fd23::/64", "gateway": "fd23::1" }]
                ]),
                json!([{ "dst": "0.0.0.0/0" }, { "dst": "::/0" }]),
            ),
            sandbox_net(&state, json!({})),
        ],
    );
    let rt = Runtime::new("ctr-dual", &pod);
    let (prev, result) = chain.add(&host, &rt);
    check_result(&result, &prev, &pod, &rt, "tap_eth0", "1.0.0");
    let addrs: Vec<&str> = ips(&result)
        .iter()
        .filter_map(|i| i["address"].as_str())
        .map(|a| if a.contains(':') { "v6" } else { "v4" })
        .collect();
    assert_eq!(addrs, vec!["v4", "v6"], "{result:#}");
    let id = sandbox_net::cni::sandbox_id("ctr-dual", "eth0");
    check_dataplane(&state, &id, &pod, &host, &["10.23.0.1", "fd23::1"]);
    for out in chain.check(&host, &rt, &result) {
        assert_eq!(out.code, 0, "{out:#?}");
    }
    chain.del(&host, &rt, Some(&result));
    check_nothing_left(&state, &id, &pod, "tap_eth0");
}

/// Two IPv4 addresses on one interface (host-local with two ranges). The bridge plugin
/// can't be the gateway of two IPv4 subnets, so the host-playing netns puts both gateway
/// addresses on the bridge itself.
#[test]
fn two_ips_chain() {
    let host = Ns::new("sncni-host");
    let pod = Ns::new("sncni-pod");
    let ipam = TempStateDir::new();
    let state = TempStateDir::new();
    let mut first = bridge(
        ipam.path(),
        json!([
            [{ "subnet": "10.24.0.0/24", "gateway": "10.24.0.1" }],
            [{ "subnet": "10.25.0.0/24", "gateway": "10.25.0.1" }]
        ]),
        v4_default(),
    );
    first["isGateway"] = false.into();
    let chain = Chain::new(
        "twonet",
        "1.0.0",
        vec![first, sandbox_net(&state, json!({}))],
    );
    let rt = Runtime::new("ctr-two", &pod);
    let (prev, result) = chain.add(&host, &rt);
    assert_eq!(ips(&prev).len(), 2, "{prev:#}");
    host.ip(&["addr", "add", "10.24.0.1/24", "dev", "cni0"]);
    host.ip(&["addr", "add", "10.25.0.1/24", "dev", "cni0"]);
    check_result(&result, &prev, &pod, &rt, "tap_eth0", "1.0.0");
    let id = sandbox_net::cni::sandbox_id("ctr-two", "eth0");
    let guest = sandbox_net::guest_config(state.path(), &id)
        .expect("guest config")
        .expect("attached");
    let given: Vec<String> = guest.interfaces[0]
        .addresses
        .iter()
        .map(|a| format!("{}/{}", a.address, a.prefix_len))
        .collect();
    for ip in ips(&result) {
        let a = ip["address"].as_str().expect("address").to_string();
        assert!(given.contains(&a), "{a} not given to the guest: {given:?}");
    }
    check_dataplane(&state, &id, &pod, &host, &["10.24.0.1"]);
    let ours = chain.conf(&chain.plugins[1], Some(&result));
    chain.invoke(&host, &rt, "CHECK", &ours).ok("CHECK");
    chain.del(&host, &rt, Some(&result));
    check_nothing_left(&state, &id, &pod, "tap_eth0");
}

/// A prevResult whose IPs have no interface index (tc-redirect-tap fails on that), and no
/// MTU anywhere: every IP still ends up on the VM's interface.
#[test]
fn prev_result_without_interface_index() {
    let host = Ns::new("sncni-host");
    let pod = Ns::new("sncni-pod");
    let ipam = TempStateDir::new();
    let state = TempStateDir::new();
    let chain = Chain::new(
        "noidxnet",
        "1.0.0",
        vec![
            bridge(
                ipam.path(),
                json!([[{ "subnet": "10.26.0.0/24", "gateway": "10.26.0.1" }]]),
                v4_default(),
            ),
            sandbox_net(&state, json!({})),
        ],
    );
    let rt = Runtime::new("ctr-noidx", &pod);
    let mut prev = chain.add_first(&host, &rt, 1).remove(0);
    for ip in prev["ips"].as_array_mut().into_iter().flatten() {
        ip.as_object_mut().map(|o| o.remove("interface"));
    }
    for iface in prev["interfaces"].as_array_mut().into_iter().flatten() {
        iface.as_object_mut().map(|o| o.remove("mtu"));
    }
    let ours = chain.conf(&chain.plugins[1], Some(&prev));
    let result = chain.invoke(&host, &rt, "ADD", &ours).ok("ADD").json();
    check_result(&result, &prev, &pod, &rt, "tap_eth0", "1.0.0");
    let id = sandbox_net::cni::sandbox_id("ctr-noidx", "eth0");
    check_attached(&state, &id);
    chain.del(&host, &rt, Some(&result));
    check_nothing_left(&state, &id, &pod, "tap_eth0");
}

pub(crate) fn assert_cni_error(out: &Outcome, code: u64, needle: &str) {
    assert_ne!(out.code, 0, "{out:#?}");
    let e = out.json();
    assert_eq!(e["code"], code, "{e:#}\nstderr: {}", out.stderr);
    let msg = e["msg"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
    assert!(e["cniVersion"].is_string(), "{e:#}");
    assert!(e["details"].is_string(), "{e:#}");
}

/// CHECK reports a redirect filter deleted by hand, and a prevResult that does not match;
/// DEL still cleans up.
#[test]
fn check_reports_drift() {
    let host = Ns::new("sncni-host");
    let pod = Ns::new("sncni-pod");
    let ipam = TempStateDir::new();
    let state = TempStateDir::new();
    let chain = Chain::new(
        "checknet",
        "1.0.0",
        vec![
            bridge(
                ipam.path(),
                json!([[{ "subnet": "10.27.0.0/24", "gateway": "10.27.0.1" }]]),
                v4_default(),
            ),
            sandbox_net(&state, json!({})),
        ],
    );
    let rt = Runtime::new("ctr-check", &pod);
    let (_, result) = chain.add(&host, &rt);
    let ours = |r: &Value| chain.conf(&chain.plugins[1], Some(r));
    chain
        .invoke(&host, &rt, "CHECK", &ours(&result))
        .ok("CHECK");

    // A prevResult with another MAC for the VM's interface, and an address it never had.
    let mut wrong = result.clone();
    let vm = interfaces(&wrong).len() - 1;
    wrong["interfaces"][vm]["mac"] = "02:00:00:00:00:99".into();
    wrong["ips"][0]["address"] = "10.27.0.250/24".into();
    let out = chain.invoke(&host, &rt, "CHECK", &ours(&wrong));
    assert_cni_error(&out, 101, "02:00:00:00:00:99");
    assert_cni_error(&out, 101, "10.27.0.250/24");

    // CHECK in another netns than the attachment's.
    let other = Ns::new("sncni-other");
    let elsewhere = Runtime::new("ctr-check", &other);
    let out = chain.invoke(&host, &elsewhere, "CHECK", &ours(&result));
    assert_cni_error(&out, 101, "is not the netns the attachment was made in");

    run(
        "tc",
        &["-n", pod.name(), "filter", "del", "dev", "eth0", "ingress"],
    );
    let out = chain.invoke(&host, &rt, "CHECK", &ours(&result));
    println!("CHECK after a filter was deleted: {}", out.stdout.trim());
    assert_cni_error(&out, 101, "redirect filter eth0 -> tap_eth0 is missing");

    // CHECK of a container that was never attached.
    let stranger = Runtime::new("ctr-stranger", &pod);
    let out = chain.invoke(&host, &stranger, "CHECK", &ours(&result));
    assert_cni_error(&out, 101, "is not attached");

    chain.del(&host, &rt, Some(&result));
    let id = sandbox_net::cni::sandbox_id("ctr-check", "eth0");
    check_nothing_left(&state, &id, &pod, "tap_eth0");
}

/// GC (CNI 1.1.0) removes this network's CNI attachments that are not listed, and nothing
/// else: not the listed one, not another network's, not a CLI attachment.
#[test]
fn gc_removes_stale_attachments() {
    let host = Ns::new("sncni-host");
    let pod_a = Ns::new("sncni-pod");
    let pod_b = Ns::new("sncni-pod");
    let ipam = TempStateDir::new();
    let state = TempStateDir::new();
    let cli_net = scratch(1);
    let cli_id = "gc-cli";
    let mut opts = sandbox_net::AttachOptions::new(cli_net.pod_name.clone(), cli_id);
    opts.state_dir = state.path().to_path_buf();
    sandbox_net::attach(&opts).expect("CLI-style attach");

    let chain = Chain::new(
        "gcnet",
        "1.0.0",
        vec![
            bridge(
                ipam.path(),
                json!([[{ "subnet": "10.28.0.0/24", "gateway": "10.28.0.1" }]]),
                v4_default(),
            ),
            sandbox_net(&state, json!({})),
        ],
    );
    let rt_a = Runtime::new("ctr-gc-a", &pod_a);
    let rt_b = Runtime::new("ctr-gc-b", &pod_b);
    let (_, result_a) = chain.add(&host, &rt_a);
    let (_, result_b) = chain.add(&host, &rt_b);
    let (id_a, id_b) = (
        sandbox_net::cni::sandbox_id("ctr-gc-a", "eth0"),
        sandbox_net::cni::sandbox_id("ctr-gc-b", "eth0"),
    );
    let gc = |network: &str, valid: Value| {
        let conf = json!({
            "cniVersion": "1.1.0", "name": network, "type": "sandbox-net",
            "stateDir": state.path(), "cni.dev/valid-attachments": valid
        });
        exec(
            Some(&host),
            bin(),
            &[("CNI_COMMAND", "GC"), ("CNI_PATH", CNI_BIN)],
            conf.to_string().as_bytes(),
        )
    };
    // Another network's GC touches nothing of gcnet.
    let out = gc("othernet", json!([])).ok("GC othernet");
    assert_eq!(out.stdout.trim(), "");
    check_attached(&state, &id_a);
    check_attached(&state, &id_b);

    let out = gc(
        "gcnet",
        json!([{ "containerID": "ctr-gc-a", "ifname": "eth0" }]),
    )
    .ok("GC gcnet");
    assert_eq!(out.stdout.trim(), "");
    check_attached(&state, &id_a);
    check_nothing_left(&state, &id_b, &pod_b, "tap_eth0");
    assert!(pod_b.link("eth0").is_some(), "GC is only about our objects");
    check_attached(&state, cli_id);

    // The runtime's DELs still work, the GC'd one included.
    chain.del(&host, &rt_b, Some(&result_b));
    chain.del(&host, &rt_a, Some(&result_a));
    check_nothing_left(&state, &id_a, &pod_a, "tap_eth0");
    check_attached(&state, cli_id);
    sandbox_net::detach(state.path(), cli_id).expect("detach the CLI attachment");
}

/// Run sandbox-net as a plugin outside any chain (no kernel object is reached).
pub(crate) fn plugin(env: &[(&str, &str)], conf: &str) -> Outcome {
    exec(None, bin(), env, conf.as_bytes())
}

/// The environment libcni gives the plugin for `command` on (`container`, eth0) in `netns`.
pub(crate) fn env<'a>(
    command: &'a str,
    container: &'a str,
    netns: &'a str,
) -> [(&'static str, &'a str); 5] {
    [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", container),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", CNI_BIN),
    ]
}

pub(crate) fn add_env(netns: &str) -> [(&'static str, &str); 5] {
    env("ADD", "ctr-err", netns)
}

pub(crate) fn conf_with(state: &TempStateDir, version: &str, extra: Value) -> String {
    let mut conf = json!({
        "cniVersion": version, "name": "errnet", "type": "sandbox-net",
        "stateDir": state.path(),
        "prevResult": {
            "cniVersion": version,
            "interfaces": [{ "name": "eth0", "sandbox": "/run/netns/none" }],
            "ips": [{ "address": "10.29.0.2/24", "gateway": "10.29.0.1", "interface": 0 }]
        }
    });
    if let (Some(c), Value::Object(e)) = (conf.as_object_mut(), extra) {
        c.extend(e);
    }
    conf.to_string()
}

#[test]
fn bad_input_gives_the_spec_error_codes() {
    let state = TempStateDir::new();
    let missing_ns = format!("/run/netns/{}", unique_name("sncni-absent"));
    let env = add_env(&missing_ns);
    let good = conf_with(&state, "1.0.0", json!({}));

    // 6: not JSON, or not an object.
    assert_cni_error(&plugin(&env, "{\"cniVersion\":"), 6, "not JSON");
    assert_cni_error(&plugin(&env, "[1, 2]"), 6, "expected a JSON object");
    // 1: versions we don't speak (and none at all means 0.1.0).
    for v in ["0.1.0", "9.9.9"] {
        let out = plugin(&env, &conf_with(&state, v, json!({})));
        assert_cni_error(&out, 1, &format!("incompatible CNI version \"{v}\""));
    }
    let out = plugin(&env, r#"{"name":"n","type":"sandbox-net"}"#);
    assert_cni_error(&out, 1, "\"0.1.0\"");
    // 7: no prevResult, an unknown model, bad queues.
    let no_prev = json!({"cniVersion": "1.0.0", "name": "n", "type": "sandbox-net"}).to_string();
    assert_cni_error(&plugin(&env, &no_prev), 7, "prevResult");
    let out = plugin(&env, &conf_with(&state, "1.0.0", json!({"model": "bogus"})));
    assert_cni_error(&out, 7, "model");
    let out = plugin(&env, &conf_with(&state, "1.0.0", json!({"queues": 0})));
    assert_cni_error(&out, 7, "queues");
    let out = plugin(&env, &conf_with(&state, "1.0.0", json!({"rxRate": "fast"})));
    assert_cni_error(&out, 7, "rxRate");
    // 6: a prevResult of the wrong shape.
    let bad_prev = conf_with(
        &state,
        "1.0.0",
        json!({"prevResult": {"ips": [{"address": "10.0.0.1"}]}}),
    );
    assert_cni_error(&plugin(&env, &bad_prev), 6, "prevResult.ips[0].address");
    // 4: missing or bad environment.
    for var in ["CNI_NETNS", "CNI_IFNAME", "CNI_CONTAINERID"] {
        let partial: Vec<_> = env.iter().copied().filter(|(k, _)| *k != var).collect();
        assert_cni_error(&plugin(&partial, &good), 4, var);
    }
    let mut bad = env.to_vec();
    bad.push(("CNI_ARGS", "TAP_UID=nobody"));
    assert_cni_error(&plugin(&bad, &good), 4, "CNI_ARGS");
    let mut bad = env;
    bad[0] = ("CNI_COMMAND", "FROB");
    assert_cni_error(&plugin(&bad, &good), 4, "unknown command \"FROB\"");
    let mut bad = env;
    bad[3] = ("CNI_IFNAME", "a/b");
    assert_cni_error(&plugin(&bad, &good), 4, "CNI_IFNAME");
    // 4: a CNI_NETNS that does not exist; nothing is left behind in the state dir.
    let out = plugin(&env, &good);
    assert_cni_error(&out, 4, "does not exist");
    assert!(!state.path().join("ctr-err-eth0.json").exists());
    assert!(!state.path().join("cni/ctr-err-eth0.json").exists());
    // Commands newer than the configuration's version.
    let mut check = env;
    check[0] = ("CNI_COMMAND", "CHECK");
    let out = plugin(&check, &conf_with(&state, "0.3.1", json!({})));
    assert_cni_error(&out, 1, "CHECK needs cniVersion 0.4.0");
    let gc_conf = json!({"cniVersion": "1.0.0", "name": "n", "type": "sandbox-net",
                         "cni.dev/valid-attachments": []})
    .to_string();
    let out = plugin(&[("CNI_COMMAND", "GC")], &gc_conf);
    assert_cni_error(&out, 1, "GC needs cniVersion 1.1.0");
    // (A GC without cni.dev/valid-attachments keeps nothing: see cni_gc.rs.)
    let gc_conf = json!({"cniVersion": "1.1.0", "name": "n", "type": "sandbox-net",
                         "stateDir": state.path(), "cni.dev/valid-attachments": "all"})
    .to_string();
    let out = plugin(&[("CNI_COMMAND", "GC")], &gc_conf);
    assert_cni_error(&out, 7, "cni.dev/valid-attachments");
    // The error JSON is in the configuration's version when we speak it.
    let out = plugin(&env, &conf_with(&state, "0.4.0", json!({"model": "bogus"})));
    assert_eq!(out.json()["cniVersion"], "0.4.0");
}

#[test]
fn del_is_idempotent_without_netns_or_attachment() {
    let state = TempStateDir::new();
    let conf = json!({"cniVersion": "1.0.0", "name": "n", "type": "sandbox-net",
                      "stateDir": state.path()})
    .to_string();
    let absent = format!("/run/netns/{}", unique_name("sncni-absent"));
    let mut env = vec![
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "ctr-never"),
        ("CNI_IFNAME", "eth0"),
    ];
    for _ in 0..2 {
        let out = plugin(&env, &conf).ok("DEL without CNI_NETNS");
        assert_eq!(out.stdout, "");
    }
    env.push(("CNI_NETNS", &absent));
    plugin(&env, &conf).ok("DEL with a netns that is gone");
    // A DEL whose id belongs to a CLI attachment leaves it alone.
    let net = scratch(1);
    let mut opts = sandbox_net::AttachOptions::new(net.pod_name.clone(), "ctr-never-eth0");
    opts.state_dir = state.path().to_path_buf();
    sandbox_net::attach(&opts).expect("attach");
    plugin(&env, &conf).ok("DEL of an id the CLI owns");
    check_attached(&state, "ctr-never-eth0");
    sandbox_net::detach(state.path(), "ctr-never-eth0").expect("detach");
}

/// ADD after a netns went away under a live attachment, then DEL: DEL succeeds and drops
/// the state.
#[test]
fn del_after_the_pod_netns_is_gone() {
    let host = Ns::new("sncni-host");
    let pod = Ns::new("sncni-pod");
    let ipam = TempStateDir::new();
    let state = TempStateDir::new();
    let chain = Chain::new(
        "gonenet",
        "1.0.0",
        vec![
            bridge(
                ipam.path(),
                json!([[{ "subnet": "10.30.0.0/24", "gateway": "10.30.0.1" }]]),
                v4_default(),
            ),
            sandbox_net(&state, json!({})),
        ],
    );
    let rt = Runtime::new("ctr-gone", &pod);
    let (_, result) = chain.add(&host, &rt);
    let id = sandbox_net::cni::sandbox_id("ctr-gone", "eth0");
    check_attached(&state, &id);
    // A second ADD of the same pair is refused and changes nothing.
    let again = chain.invoke(
        &host,
        &rt,
        "ADD",
        &chain.conf(&chain.plugins[1], Some(&result)),
    );
    assert_cni_error(&again, 100, "already attached");
    check_attached(&state, &id);
    let pod_path = pod.path();
    drop(pod);
    assert!(!Path::new(&pod_path).exists());
    chain.del(&host, &rt, Some(&result));
    assert!(!state.path().join(format!("{id}.json")).exists());
    assert!(!state.path().join(format!("cni/{id}.json")).exists());
}

#[test]
fn version_and_status() {
    let state = TempStateDir::new();
    let out = plugin(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"1.0.0"}"#).ok("VERSION");
    let v = out.json();
    assert_eq!(v["cniVersion"], "1.0.0");
    assert_eq!(
        v["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
    let out = plugin(&[("CNI_COMMAND", "VERSION")], "").ok("VERSION without input");
    assert_eq!(out.json()["cniVersion"], "1.1.0");
    let conf = |v: &str| {
        json!({"cniVersion": v, "name": "n", "type": "sandbox-net", "stateDir": state.path()})
            .to_string()
    };
    let out = plugin(&[("CNI_COMMAND", "STATUS")], &conf("1.1.0")).ok("STATUS");
    assert_eq!(out.stdout, "");
    let out = plugin(&[("CNI_COMMAND", "STATUS")], &conf("1.0.0"));
    assert_cni_error(&out, 1, "STATUS needs cniVersion 1.1.0");
}

/// The macvtap model through CNI: the device in the result is the macvtap (with the guest's
/// MAC, which moved to it from eth0), traffic flows through its character device, CHECK
/// and DEL work. (The bridge plugin's own CHECK fails under this model: eth0 lost its MAC
/// and addresses to the macvtap. docs/cni.md says so.)
#[test]
fn bridge_chain_macvtap_model() {
    let host = Ns::new("sncni-host");
    let pod = Ns::new("sncni-pod");
    let ipam = TempStateDir::new();
    let state = TempStateDir::new();
    let chain = Chain::new(
        "mvtnet",
        "1.0.0",
        vec![
            bridge(
                ipam.path(),
                json!([[{ "subnet": "10.31.0.0/24", "gateway": "10.31.0.1" }]]),
                v4_default(),
            ),
            sandbox_net(&state, json!({ "model": "macvtap", "tapName": "mvt0" })),
        ],
    );
    let rt = Runtime::new("ctr-mvt", &pod);
    let (prev, result) = chain.add(&host, &rt);
    let ifs = interfaces(&result);
    let pod_mac = &interfaces(&prev)[2]["mac"];
    let mvt = pod.link("mvt0").expect("the macvtap");
    assert_eq!(mvt["linkinfo"]["info_kind"], "macvtap", "{mvt}");
    assert_eq!(ifs[3]["name"], "mvt0", "{result:#}");
    assert_eq!(ifs[3]["sandbox"], pod.path(), "{result:#}");
    assert_eq!(&ifs[3]["mac"], pod_mac, "the macvtap has the guest's MAC");
    assert_eq!(&ifs[4]["mac"], pod_mac, "{result:#}");
    assert_eq!(ifs[4]["sandbox"], "ctr-mvt", "{result:#}");
    assert_eq!(ips(&result)[0]["interface"], 4, "{result:#}");
    let id = sandbox_net::cni::sandbox_id("ctr-mvt", "eth0");
    check_dataplane(&state, &id, &pod, &host, &["10.31.0.1"]);
    let ours = chain.conf(&chain.plugins[1], Some(&result));
    chain.invoke(&host, &rt, "CHECK", &ours).ok("CHECK");
    chain.del(&host, &rt, Some(&result));
    check_nothing_left(&state, &id, &pod, "mvt0");
    assert!(
        pod.link("eth0").is_none(),
        "the bridge plugin's DEL left eth0"
    );
}

/// Model none: nothing is built, so the result gains only the VM's interface, and the pod
/// interface keeps working on its own.
#[test]
fn bridge_chain_model_none() {
    let host = Ns::new("sncni-host");
    let pod = Ns::new("sncni-pod");
    let ipam = TempStateDir::new();
    let state = TempStateDir::new();
    let chain = Chain::new(
        "nonenet",
        "0.4.0",
        vec![
            bridge(
                ipam.path(),
                json!([[{ "subnet": "10.32.0.0/24", "gateway": "10.32.0.1" }]]),
                v4_default(),
            ),
            sandbox_net(&state, json!({ "model": "none" })),
        ],
    );
    let rt = Runtime::new("ctr-none", &pod);
    let (prev, result) = chain.add(&host, &rt);
    let ifs = interfaces(&result);
    assert_eq!(ifs.len(), interfaces(&prev).len() + 1, "{result:#}");
    assert_eq!(ifs[3]["sandbox"], "ctr-none", "{result:#}");
    assert_eq!(ips(&result)[0]["interface"], 3, "{result:#}");
    assert_eq!(ips(&result)[0]["version"], "4", "{result:#}");
    let id = sandbox_net::cni::sandbox_id("ctr-none", "eth0");
    check_attached(&state, &id);
    assert_eq!(pod.our_qdiscs(), Vec::<String>::new());
    for out in chain.check(&host, &rt, &result) {
        assert_eq!(out.code, 0, "{out:#?}");
    }
    chain.del(&host, &rt, Some(&result));
    check_nothing_left(&state, &id, &pod, "tap_eth0");
}
