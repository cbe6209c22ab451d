//! iproute2 run against one netns (`ip -n NS`, `tc -n NS`; never without `-n`), its JSON
//! parsed, and waits for link state the kernel settles asynchronously. Every helper panics
//! naming the command when it fails.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Run a command, return stdout; panic with stderr on failure.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `TOOL -n NS -j ARGS...` and parse its JSON (nothing printed: an empty array).
fn json(tool: &str, ns: &str, args: &[&str]) -> Value {
    let mut full = vec!["-n", ns, "-j"];
    full.extend_from_slice(args);
    let text = run(tool, &full);
    if text.trim().is_empty() {
        return Value::Array(vec![]);
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{tool} {full:?}: bad JSON {e}: {text}"))
}

/// Run `ip -n NS -j ARGS...` and parse its JSON.
pub fn ip_json(ns: &str, args: &[&str]) -> Value {
    json("ip", ns, args)
}

/// Run `tc -n NS -j ARGS...` and parse its JSON.
pub fn tc_json(ns: &str, args: &[&str]) -> Value {
    json("tc", ns, args)
}

/// Run `ip -n NS ARGS...` (never without -n); panic with stderr on failure.
pub fn ip(ns: &str, args: &[&str]) {
    if let Err(e) = try_ip(ns, args) {
        panic!("ip -n {ns} {}: {e}", args.join(" "));
    }
}

/// Run `ip -n NS ARGS...`; Err(stderr) on failure.
pub fn try_ip(ns: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .map_err(|e| format!("run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Run `ip netns exec NS CMD ARGS...` (a fresh sysfs of NS is mounted for the command);
/// returns stdout, panics on failure.
pub fn netns_exec(ns: &str, cmd: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .output()
        .unwrap_or_else(|e| panic!("ip netns exec: {e}"));
    assert!(
        out.status.success(),
        "ip netns exec {ns} {cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip -d link show dev NAME` in `ns`, as JSON.
pub fn link(ns: &str, name: &str) -> serde_json::Value {
    ip_json(ns, &["-d", "link", "show", "dev", name])[0].clone()
}

/// Wait (up to 10 s) until `cond` holds; panic naming `what` otherwise. Waits for state the
/// kernel settles asynchronously; never asserts on how long it took.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until link `name` in `ns` has its carrier (LOWER_UP) and is operationally up.
pub fn wait_lower_up(ns: &str, name: &str) {
    wait_for(&format!("{name} in {ns} to get a carrier"), || {
        let l = link(ns, name);
        l["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "LOWER_UP"))
    });
}

/// True when an ingress qdisc or any ingress filter exists in `ns`.
pub fn has_tc_objects(ns: &str) -> bool {
    let snap = crate::snapshot::snapshot(ns);
    !snap.filters.is_empty() || snap.qdiscs.iter().any(|q| q.contains("ingress"))
}

/// The link names of `ns`, in ifindex order.
pub fn link_names(ns: &str) -> Vec<String> {
    ip_json(ns, &["link", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| l["ifname"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The addresses (ADDR/LEN) of `dev` in `ns`, link-local ones included.
pub fn addresses(ns: &str, dev: &str) -> Vec<String> {
    let mut out: Vec<String> = ip_json(ns, &["addr", "show", "dev", dev])
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            format!(
                "{}/{}",
                a["local"].as_str().unwrap_or_default(),
                a["prefixlen"]
            )
        })
        .collect();
    out.sort();
    out
}

/// The default routes of `ns` (both families), as "FAMILY via GW dev DEV".
pub fn default_routes(ns: &str) -> Vec<String> {
    let mut out = Vec::new();
    for fam in ["-4", "-6"] {
        for r in ip_json(ns, &[fam, "route", "show", "default"])
            .as_array()
            .into_iter()
            .flatten()
        {
            out.push(format!(
                "{fam} via {} dev {}",
                r["gateway"].as_str().unwrap_or("-"),
                r["dev"].as_str().unwrap_or("-")
            ));
        }
    }
    out
}

/// The addresses of `dev` in `ns` with every attribute iproute2 shows (family, scope,
/// flags such as noprefixroute or nodad, broadcast...) except the lifetimes, sorted.
pub fn address_details(ns: &str, dev: &str) -> Vec<String> {
    let mut out: Vec<String> = ip_json(ns, &["addr", "show", "dev", dev])
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .map(|mut a| {
            if let Some(o) = a.as_object_mut() {
                o.remove("valid_life_time");
                o.remove("preferred_life_time");
            }
            a.to_string()
        })
        .collect();
    out.sort();
    out
}

/// Run the binary `bin` (the CLI under test) with `args`; returns (exit code, stdout,
/// stderr).
pub fn run_bin(bin: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
