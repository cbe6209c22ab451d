//! The per-netns network sysctls the l3 model sets (`/proc/sys/net/...`).
//!
//! `/proc/sys/net` answers for the netns of the task that looks a path up, so every read
//! and write here runs on a thread inside the pod's netns ([`crate::netns::NetNs::run`]).
//! A path is built from a [`Knob`] (a fixed set of known settings, never text from a file)
//! and a device name checked like any interface name (and never `all` or `default`,
//! which name the netns-wide settings). A device's setting is proven to be that device's
//! before it is used: the file is opened first, then the name must still resolve to the
//! recorded ifindex in this netns. The kernel re-registers a device's sysctl directory
//! when it is renamed, so a file opened before a rename fails to read or write
//! (ENOENT): what the check saw is what the open file is.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use serde::{Deserialize, Serialize};

/// One setting of `/proc/sys/net/{ipv4,ipv6}/{conf,neigh}/<device or all>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Knob {
    /// `ipv4/conf/D/forwarding`: route IPv4 packets that arrive on D.
    Ipv4Forwarding,
    /// `ipv4/conf/D/proxy_arp`: answer ARP for addresses routed through another device.
    Ipv4ProxyArp,
    /// `ipv4/conf/D/accept_local`: accept packets arriving on D whose source is an address
    /// of this netns (the guest's are the pod's).
    Ipv4AcceptLocal,
    /// `ipv4/conf/D/rp_filter`: drop packets whose source is not routed back through D.
    Ipv4RpFilter,
    /// `ipv4/conf/D/accept_redirects`.
    Ipv4AcceptRedirects,
    /// `ipv4/neigh/D/proxy_delay`: how long a proxy ARP answer to a broadcast request waits.
    Ipv4ProxyDelay,
    /// `ipv6/conf/D/force_forwarding` (Linux 6.17): route IPv6 packets that arrive on D,
    /// whatever `conf/all/forwarding` says.
    Ipv6ForceForwarding,
    /// `ipv6/conf/all/forwarding`: IPv6 routing for the whole netns (kernels without
    /// `force_forwarding`).
    Ipv6Forwarding,
    /// `ipv6/conf/all/proxy_ndp`: the proxy check of a unicast neighbour message that the
    /// netns would otherwise forward reads this netns-wide value only.
    Ipv6ProxyNdp,
    /// `ipv6/conf/D/use_oif_addrs_only`: source addresses for packets out of D come from D.
    Ipv6UseOifAddrsOnly,
    /// `ipv6/conf/D/accept_ra`.
    Ipv6AcceptRa,
    /// `ipv6/conf/D/accept_redirects`.
    Ipv6AcceptRedirects,
    /// `ipv6/conf/D/disable_ipv6`.
    Ipv6DisableIpv6,
}

impl Knob {
    /// (family, section, file name).
    fn parts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Knob::Ipv4Forwarding => ("ipv4", "conf", "forwarding"),
            Knob::Ipv4ProxyArp => ("ipv4", "conf", "proxy_arp"),
            Knob::Ipv4AcceptLocal => ("ipv4", "conf", "accept_local"),
            Knob::Ipv4RpFilter => ("ipv4", "conf", "rp_filter"),
            Knob::Ipv4AcceptRedirects => ("ipv4", "conf", "accept_redirects"),
            Knob::Ipv4ProxyDelay => ("ipv4", "neigh", "proxy_delay"),
            Knob::Ipv6ForceForwarding => ("ipv6", "conf", "force_forwarding"),
            Knob::Ipv6Forwarding => ("ipv6", "conf", "forwarding"),
            Knob::Ipv6ProxyNdp => ("ipv6", "conf", "proxy_ndp"),
            Knob::Ipv6UseOifAddrsOnly => ("ipv6", "conf", "use_oif_addrs_only"),
            Knob::Ipv6AcceptRa => ("ipv6", "conf", "accept_ra"),
            Knob::Ipv6AcceptRedirects => ("ipv6", "conf", "accept_redirects"),
            Knob::Ipv6DisableIpv6 => ("ipv6", "conf", "disable_ipv6"),
        }
    }

    /// The setting's name as `sysctl` prints it, for `device` (None: netns-wide, `all`).
    pub fn name(self, device: Option<&str>) -> String {
        let (family, section, file) = self.parts();
        format!("net.{family}.{section}.{}.{file}", device.unwrap_or("all"))
    }

    /// The file of the setting for `device` (None: `all`); the name is checked first.
    fn path(self, device: Option<&str>) -> io::Result<String> {
        let (family, section, file) = self.parts();
        let dir = match device {
            None => "all",
            Some(name) => {
                crate::tap::validate_ifname(name)
                    .map_err(|r| invalid(format!("interface name {name:?} {r}")))?;
                if matches!(name, "all" | "default") {
                    return Err(invalid(format!(
                        "an interface named {name:?} would name the netns-wide settings"
                    )));
                }
                name
            }
        };
        Ok(format!("/proc/sys/net/{family}/{section}/{dir}/{file}"))
    }
}

fn invalid(reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, reason)
}

/// Which device a setting belongs to, and the ifindex its name must resolve to (in the
/// calling thread's netns) for the setting to be that device's.
#[derive(Debug, Clone, Copy)]
pub struct On<'a> {
    pub name: &'a str,
    pub ifindex: u32,
}

fn open_path(path: &str, write: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Open the setting's file (`write` or read), then prove the device is the recorded one.
fn open(knob: Knob, on: Option<On<'_>>, write: bool) -> io::Result<File> {
    let file = open_path(&knob.path(on.map(|o| o.name))?, write)?;
    if let Some(on) = on {
        let now = crate::tap::ifindex(on.name)?;
        if now != on.ifindex {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is ifindex {now} now, not the ifindex {} it was recorded with",
                    on.name, on.ifindex
                ),
            ));
        }
    }
    Ok(file)
}

/// The integer a setting's file holds; `what` names it in an error.
fn read_from(file: File, what: &str) -> io::Result<i32> {
    let mut text = String::new();
    file.take(64).read_to_string(&mut text)?;
    text.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} reads {text:?}, not an integer"),
        )
    })
}

/// Read a setting (an integer). Runs inside the netns.
pub fn read(knob: Knob, on: Option<On<'_>>) -> io::Result<i32> {
    read_from(open(knob, on, false)?, &knob.name(on.map(|o| o.name)))
}

/// Write a setting. Runs inside the netns.
pub fn write(knob: Knob, on: Option<On<'_>>, value: i32) -> io::Result<()> {
    open(knob, on, true)?.write_all(format!("{value}\n").as_bytes())
}

/// Read the netns's default for new devices (`.../default/...`). Runs inside the netns.
pub fn read_default(knob: Knob) -> io::Result<i32> {
    let (family, section, file) = knob.parts();
    let path = format!("/proc/sys/net/{family}/{section}/default/{file}");
    read_from(open_path(&path, false)?, &path)
}

/// Whether this kernel has the setting at all (a netns-wide file, e.g. `force_forwarding`
/// since Linux 6.17). Runs inside the netns.
pub fn exists(knob: Knob) -> bool {
    knob.path(None)
        .is_ok_and(|p| std::path::Path::new(&p).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_come_from_the_knob_and_a_checked_name() {
        assert_eq!(
            Knob::Ipv4ProxyArp.path(Some("eth0")).unwrap(),
            "/proc/sys/net/ipv4/conf/eth0/proxy_arp"
        );
        assert_eq!(
            Knob::Ipv4ProxyDelay.path(Some("tap0_sn")).unwrap(),
            "/proc/sys/net/ipv4/neigh/tap0_sn/proxy_delay"
        );
        assert_eq!(
            Knob::Ipv6ProxyNdp.path(None).unwrap(),
            "/proc/sys/net/ipv6/conf/all/proxy_ndp"
        );
        for bad in ["..", "a/b", "all", "default", "", "0123456789abcdef", "a b"] {
            assert!(Knob::Ipv4ProxyArp.path(Some(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(
            Knob::Ipv6ForceForwarding.name(Some("eth0")),
            "net.ipv6.conf.eth0.force_forwarding"
        );
    }

    #[test]
    fn knobs_serialize_as_names() {
        let text = serde_json::to_string(&Knob::Ipv6UseOifAddrsOnly).unwrap();
        assert_eq!(text, "\"ipv6_use_oif_addrs_only\"");
        assert!(serde_json::from_str::<Knob>("\"ipv4/../../x\"").is_err());
    }
}
