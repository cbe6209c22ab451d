//! CHECK: the attachment exists, every journalled kernel object is in place (no drift), it
//! is in CNI_NETNS, and it matches prevResult (the tap and the VM's interface are listed,
//! the MAC is the guest's, and every address of the VM's interface is one the guest got).

use std::path::Path;

use super::config::NetConf;
use super::env::CniEnv;
use super::error::CniError;
use super::id;
use super::record::Records;
use super::result::CniResult;
use crate::guest::GuestConfig;
use crate::netns::NetNs;
use crate::ops;
use crate::state::State;

/// Run CHECK.
pub fn check(env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
    let container_id = env.container_id()?;
    let netns = env.netns()?;
    let ifname = env.ifname()?;
    let Some(prev) = &conf.prev_result else {
        return Err(CniError::config(
            "prevResult",
            "is missing: CHECK needs the result of the ADD",
        ));
    };
    let prev = CniResult::decode(prev)?;
    let state_dir = conf.state_dir()?;
    let records = Records::open(&state_dir).map_err(|e| {
        CniError::op(
            format!("CHECK {container_id} {ifname}: open the CNI record directory"),
            e,
        )
    })?;
    let sandbox = records
        .find(container_id, ifname)
        .map_err(|e| CniError::op(format!("CHECK {container_id} {ifname}: read its record"), e))?
        .unwrap_or_else(|| id::sandbox_id(container_id, ifname));
    let failed = |problems: Vec<String>| CniError::CheckFailed {
        id: sandbox.clone(),
        problems,
    };
    let step = |what: &str| format!("CHECK {sandbox}: {what}");

    match records
        .load(&sandbox)
        .map_err(|e| CniError::op(step("read the CNI record"), e))?
    {
        Some(r) if r.is_for(container_id, ifname) => {}
        Some(r) => {
            return Err(failed(vec![format!(
                "the sandbox id belongs to container {} interface {}",
                r.container_id, r.ifname
            )]));
        }
        None => {
            return Err(failed(vec![format!(
                "container {container_id} interface {ifname} is not attached (no CNI record)"
            )]));
        }
    }
    let state = ops::load_existing(&state_dir, &sandbox)
        .map_err(|e| CniError::op(step("read the state"), e))?
        .ok_or_else(|| failed(vec!["the attachment's state is gone (detached?)".into()]))?;

    let mut problems = Vec::new();
    match NetNs::open_path(netns, Path::new(netns)).and_then(|ns| ops::prove_recorded(&state, ns)) {
        Ok(ops::Reopened::Same { .. }) => {}
        Ok(ops::Reopened::Lost(_)) => problems.push(format!(
            "CNI_NETNS {netns} is not the netns the attachment was made in ({})",
            state.netns_path.display()
        )),
        Err(e) => problems.push(format!("CNI_NETNS: {e}")),
    }
    let status = ops::status(&state_dir, &sandbox)
        .map_err(|e| CniError::op(step("read the kernel state"), e))?;
    match status {
        None => problems.push("the attachment's state is gone (detached?)".into()),
        Some(s) => {
            problems.extend(s.problem);
            problems.extend(
                s.objects
                    .into_iter()
                    .flatten()
                    .filter(|o| !o.present)
                    .map(|o| format!("{} is missing", o.object)),
            );
            if s.drift && problems.is_empty() {
                problems.push("the kernel does not match the journal".into());
            }
        }
    }
    match ops::describe_guest(&state) {
        Ok(guest) => problems.extend(compare(&prev, &state, &guest, container_id, netns, ifname)),
        Err(e) => problems.push(format!("the guest description: {e}")),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(failed(problems))
    }
}

/// What differs between prevResult and the attachment's state.
fn compare(
    prev: &CniResult,
    state: &State,
    guest: &GuestConfig,
    container_id: &str,
    netns: &str,
    ifname: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(ep) = state.endpoints.iter().find(|e| e.name == ifname) else {
        return vec![format!("the attachment has no endpoint {ifname}")];
    };
    let find = |name: &str, sandbox: &str| {
        prev.interfaces
            .iter()
            .position(|i| i.name == name && i.sandbox.as_deref() == Some(sandbox))
    };
    if let Some(device) = ep.device()
        && find(device, netns).is_none()
    {
        problems.push(format!(
            "prevResult lists no interface {device} with sandbox {netns}"
        ));
    }
    let Some(vm_index) = find(ifname, container_id) else {
        problems.push(format!(
            "prevResult lists no interface {ifname} with sandbox {container_id} (the VM's)"
        ));
        return problems;
    };
    let vm = &prev.interfaces[vm_index];
    let ours = crate::mac::text_or_empty(ep.mac);
    if let Some(mac) = &vm.mac
        && !mac.eq_ignore_ascii_case(&ours)
    {
        problems.push(format!(
            "prevResult gives the VM's interface MAC {mac}, the attachment has {ours}"
        ));
    }
    let guest_addrs: Vec<_> = guest
        .interfaces
        .iter()
        .filter(|g| g.name == ifname)
        .flat_map(|g| g.addresses.iter().map(|a| (a.address, a.prefix_len)))
        .collect();
    // Under l3 the guest has each IPv6 address as a /128 (see `model::l3`).
    let routed = |ip: &std::net::IpAddr| state.model == crate::Model::L3 && ip.is_ipv6();
    for ip in prev.ips.iter().filter(|ip| ip.interface == Some(vm_index)) {
        let prefix_len = if routed(&ip.ip) { 128 } else { ip.prefix_len };
        if !guest_addrs.contains(&(ip.ip, prefix_len)) {
            problems.push(format!(
                "prevResult address {} is not an address the guest was given",
                ip.address
            ));
        }
    }
    problems
}
