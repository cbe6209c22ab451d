//! A test bed for the CNI tests of the issue-17 corners (`cni_*.rs`): a netns playing the
//! host with the bridge plugin's network, pods added to it by the bridge plugin, and
//! sandbox-net called after it the way libcni calls a chained plugin (`prevResult`, the
//! CNI_* variables). Built on `cni.rs`'s driver; everything is deleted on drop.

use serde_json::{Value, json};

use crate::cni::{Chain, Ns, Outcome, Runtime, bridge, sandbox_net, v4_default};
use crate::common::*;

/// The host-playing netns, its network `name` and the state directory of sandbox-net.
pub(crate) struct Bed {
    pub(crate) host: Ns,
    _ipam: TempStateDir,
    pub(crate) state: TempStateDir,
    pub(crate) chain: Chain,
}

/// A pod the bridge plugin added: its netns, the runtime's view, the bridge's result.
pub(crate) struct Pod {
    pub(crate) ns: Ns,
    pub(crate) rt: Runtime,
    pub(crate) prev: Value,
}

impl Pod {
    /// The sandbox id of this pod's attachment.
    pub(crate) fn id(&self) -> String {
        sandbox_net::cni::sandbox_id(&self.rt.container_id, &self.rt.ifname)
    }
}

impl Bed {
    /// A bridge network `network` under `cni_version`, sandbox-net with `extra` keys.
    pub(crate) fn new(network: &str, cni_version: &str, extra: Value) -> Bed {
        let host = Ns::new("sncni-host");
        let ipam = TempStateDir::new();
        let state = TempStateDir::new();
        let chain = Chain::new(
            network,
            cni_version,
            vec![
                bridge(
                    ipam.path(),
                    json!([[{ "subnet": "10.40.0.0/16", "gateway": "10.40.0.1" }]]),
                    v4_default(),
                ),
                sandbox_net(&state, extra),
            ],
        );
        Bed {
            host,
            _ipam: ipam,
            state,
            chain,
        }
    }

    /// A new pod, its interface `ifname` made by the bridge plugin; `netns` overrides the
    /// CNI_NETNS path (a `/proc/PID/ns/net`).
    pub(crate) fn pod_at(&self, container_id: &str, ifname: &str, netns: Option<String>) -> Pod {
        let ns = Ns::new("sncni-pod");
        let mut rt = Runtime::new(container_id, &ns);
        rt.ifname = ifname.into();
        if let Some(path) = netns {
            rt.netns = path;
        }
        let prev = self.chain.add_first(&self.host, &rt, 1).remove(0);
        Pod { ns, rt, prev }
    }

    pub(crate) fn pod(&self, container_id: &str, ifname: &str) -> Pod {
        self.pod_at(container_id, ifname, None)
    }

    /// sandbox-net's configuration, with `prev` as its prevResult.
    pub(crate) fn ours(&self, prev: Option<&Value>) -> Value {
        self.chain.conf(&self.chain.plugins[1], prev)
    }

    /// Call sandbox-net with `command` for `pod` and the configuration `conf`.
    pub(crate) fn call(&self, pod: &Pod, command: &str, conf: &Value) -> Outcome {
        let out = self.chain.invoke(&self.host, &pod.rt, command, conf);
        println!(
            "{command} {} -> {}: {}{}",
            pod.rt.container_id,
            out.code,
            out.stdout.trim(),
            out.stderr.trim()
        );
        out
    }

    /// ADD sandbox-net after the bridge plugin; its result.
    pub(crate) fn add(&self, pod: &Pod) -> Value {
        self.call(pod, "ADD", &self.ours(Some(&pod.prev)))
            .ok(&format!("ADD {}", pod.rt.container_id))
            .json()
    }

    /// DEL sandbox-net, as libcni does (the ADD result as prevResult).
    pub(crate) fn del(&self, pod: &Pod, result: Option<&Value>) -> Outcome {
        self.call(pod, "DEL", &self.ours(result))
    }

    /// Run a CNI 1.1.0 command with no container (GC, STATUS) with `conf`.
    pub(crate) fn call_network(&self, command: &str, conf: &Value) -> Outcome {
        let out = crate::cni::exec(
            Some(&self.host),
            bin(),
            &[("CNI_COMMAND", command), ("CNI_PATH", crate::cni::CNI_BIN)],
            conf.to_string().as_bytes(),
        );
        println!("{command} -> {}: {}{}", out.code, out.stdout, out.stderr);
        out
    }

    pub(crate) fn state_file(&self, id: &str) -> std::path::PathBuf {
        self.state.path().join(format!("{id}.json"))
    }

    pub(crate) fn record_file(&self, id: &str) -> std::path::PathBuf {
        self.state.path().join(format!("cni/{id}.json"))
    }
}
