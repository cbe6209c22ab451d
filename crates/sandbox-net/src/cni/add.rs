//! ADD: attach CNI_IFNAME in CNI_NETNS and return the previous result plus the tap and
//! the VM's interface.
//!
//! Order: record (so DEL and GC know the attachment is CNI's), attach (all or nothing),
//! read the tap's MAC, build the result. A failure after the record was written undoes
//! what was done, so a failed ADD leaves nothing.

use super::args::CniArgs;
use super::config::{AttachSettings, NetConf};
use super::env::CniEnv;
use super::error::CniError;
use super::id;
use super::record::{RECORD_VERSION, Record, Records};
use super::result::{CniResult, Interface};
use super::version;
use crate::ops::{self, AttachOptions, Attachment};
use crate::state::Lock;
use crate::tap::TapOwner;

/// The settings of the configuration with the CNI_ARGS overrides applied.
fn merge(settings: AttachSettings, args: CniArgs, ifname: &str) -> (String, TapOwner) {
    let tap = args
        .tap_name
        .or(settings.tap_name)
        .unwrap_or_else(|| id::default_tap_name(ifname));
    let owner = TapOwner {
        uid: args.tap_uid.or(settings.tap_uid),
        gid: args.tap_gid.or(settings.tap_gid),
    };
    (tap, owner)
}

/// Run ADD; returns the result JSON.
pub fn add(env: &CniEnv, conf: &NetConf) -> Result<String, CniError> {
    let container_id = env.container_id()?;
    let netns = env.netns()?;
    let ifname = env.ifname()?;
    let args = env.args()?;
    let Some(prev) = &conf.prev_result else {
        return Err(CniError::config(
            "prevResult",
            "is missing: sandbox-net is a chained plugin and needs the result of a plugin \
             before it in the list (e.g. bridge or ptp)",
        ));
    };
    let mut result = CniResult::decode(prev)?;
    let settings = conf.attach_settings()?;
    let state_dir = conf.state_dir()?;
    let model = settings.model;
    let queues = settings.queues;
    let tap_queue_len = settings.tap_queue_len;
    let (rx_rate, tx_rate) = (settings.rx_rate, settings.tx_rate);
    let (tap, owner) = merge(settings, args, ifname);
    let sandbox = id::sandbox_id(container_id, ifname);

    let records = Records::open(&state_dir)
        .map_err(|e| CniError::op(format!("ADD {sandbox}: open the CNI record directory"), e))?;
    let mut lock = records
        .lock(&sandbox)
        .map_err(|e| CniError::op(format!("ADD {sandbox}: lock"), e))?;
    // This pair's record under the id an earlier build gave it counts too.
    let legacy = id::legacy_sandbox_id(container_id, ifname);
    for at in [&sandbox, &legacy] {
        let record = records
            .load(at)
            .map_err(|e| CniError::op(format!("ADD {sandbox}: read the CNI record {at}"), e))?;
        match record {
            Some(r) if at == &sandbox || r.is_for(container_id, ifname) => {
                return Err(CniError::Taken {
                    id: at.clone(),
                    by: format!(
                        "container {} interface {} of network {}",
                        r.container_id, r.ifname, r.network
                    ),
                });
            }
            _ => {}
        }
    }
    let record = Record {
        version: RECORD_VERSION,
        network: conf.name.clone(),
        container_id: container_id.to_string(),
        ifname: ifname.to_string(),
        netns: netns.to_string(),
    };
    records
        .save(&sandbox, &record)
        .map_err(|e| CniError::op(format!("ADD {sandbox}: write the CNI record"), e))?;

    let mut opts = AttachOptions::new(netns, sandbox.clone());
    opts.model = model;
    opts.queues = queues;
    opts.tap_queue_len = tap_queue_len;
    opts.state_dir = state_dir.clone();
    opts.interfaces = Some(vec![ifname.to_string()]);
    opts.tap_names = vec![tap];
    opts.tap_owner = owner;
    opts.rx_rate = rx_rate;
    opts.tx_rate = tx_rate;
    // prevResult already describes the network to the runtime; `guest-config` reads it from
    // the netns if it is ever asked for.
    opts.describe_guest = false;
    let attachment = match ops::attach(&opts) {
        Ok(a) => a,
        Err(e) => {
            // A rollback that could not finish keeps the sandbox's state for detach to
            // retry: keep the record too, so that DEL finishes the job.
            let ours_left = !matches!(e, crate::Error::AlreadyAttached { .. })
                && ops::load_existing(&state_dir, &sandbox).map_or(true, |s| s.is_some());
            if !ours_left {
                forget(&records, &mut lock, &sandbox);
            }
            return Err(CniError::op(
                format!("ADD {sandbox}: attach {ifname} in {netns}"),
                e,
            ));
        }
    };
    let (tap_iface, vm_iface) = match vm_interfaces(&attachment, conf, container_id, netns, ifname)
    {
        Ok(ifaces) => ifaces,
        Err(e) => {
            match ops::detach(&state_dir, &sandbox) {
                Ok(_) => forget(&records, &mut lock, &sandbox),
                Err(d) => tracing::error!(id = %sandbox, error = %d,
                        "could not detach after a failed ADD; DEL will retry"),
            }
            return Err(e);
        }
    };
    result.add_vm_interfaces(ifname, tap_iface, vm_iface);
    tracing::info!(id = %sandbox, container_id, ifname, netns, "CNI ADD attached");
    serde_json::to_string_pretty(&result.encode(&conf.cni_version)).map_err(|e| {
        CniError::op(
            format!("ADD {sandbox}: encode the result"),
            crate::Error::encode("result", e),
        )
    })
}

/// Drop the record of an attachment that is gone, and its lock file with it.
fn forget(records: &Records, lock: &mut Lock, sandbox: &str) {
    match records.remove(sandbox) {
        Ok(()) => lock.remove_on_release(),
        Err(e) => tracing::error!(id = %sandbox, error = %e, "could not remove a CNI record"),
    }
}

/// The tap interface (when there is a tap) and the VM's interface for the result.
fn vm_interfaces(
    a: &Attachment,
    conf: &NetConf,
    container_id: &str,
    netns: &str,
    ifname: &str,
) -> Result<(Option<Interface>, Interface), CniError> {
    let Some(ep) = a.endpoints.iter().find(|e| e.name == ifname) else {
        return Err(CniError::op(
            format!("ADD {}", a.id),
            crate::Error::invalid(
                format!("interface {ifname} in netns {netns}"),
                "the attach did not report it",
            ),
        ));
    };
    let with_mtu = version::at_least(&conf.cni_version, version::INTERFACE_MTU_SINCE);
    let mtu = with_mtu.then_some(ep.mtu);
    let tap = ep.device().map(|device| Interface {
        name: device.to_string(),
        mac: ep.backend.device_mac().map(|m| m.to_string()),
        mtu,
        sandbox: Some(netns.to_string()),
        extra: Default::default(),
    });
    let vm = Interface {
        name: ifname.to_string(),
        mac: ep.mac.map(|m| m.to_string()),
        mtu,
        sandbox: Some(container_id.to_string()),
        extra: Default::default(),
    };
    Ok((tap, vm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;

    #[test]
    fn cni_args_override_the_configuration() {
        let settings = AttachSettings {
            model: Model::Tcfilter,
            queues: 1,
            tap_queue_len: 1000,
            tap_name: Some("conf0".into()),
            tap_uid: Some(1),
            tap_gid: Some(2),
            rx_rate: None,
            tx_rate: None,
        };
        let (tap, owner) = merge(settings.clone(), CniArgs::default(), "eth0");
        assert_eq!(
            (tap.as_str(), owner.uid, owner.gid),
            ("conf0", Some(1), Some(2))
        );
        let args = CniArgs {
            tap_name: Some("args0".into()),
            tap_uid: Some(10),
            tap_gid: None,
        };
        let (tap, owner) = merge(settings, args, "eth0");
        assert_eq!(
            (tap.as_str(), owner.uid, owner.gid),
            ("args0", Some(10), Some(2))
        );
        let none = AttachSettings {
            model: Model::Tcfilter,
            queues: 1,
            tap_queue_len: 1000,
            tap_name: None,
            tap_uid: None,
            tap_gid: None,
            rx_rate: None,
            tx_rate: None,
        };
        assert_eq!(merge(none, CniArgs::default(), "net1").0, "tap_net1");
    }
}
