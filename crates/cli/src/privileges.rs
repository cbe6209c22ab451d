//! The capabilities every command needs, checked before anything runs: a caller without
//! them learns it before any state directory is created.

use sandbox_net::Error;

/// CAP_NET_ADMIN (links, qdiscs, filters) and CAP_SYS_ADMIN (entering a netns): every
/// command needs both (`status` reopens every sandbox's netns to say whether it is still
/// there). Bits of the capability sets in `/proc/self/status`.
const NEEDED: [(u32, &str); 2] = [(12, "CAP_NET_ADMIN"), (21, "CAP_SYS_ADMIN")];

/// Refuse `sandbox-net COMMAND` when the process lacks a capability it needs.
pub fn require(command: &str) -> Result<(), Error> {
    let object = format!("sandbox-net {command}");
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| Error::kernel(&object, "read /proc/self/status (capabilities)", e))?;
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| {
            Error::kernel(
                &object,
                "read the effective capabilities",
                std::io::Error::other("no CapEff line in /proc/self/status"),
            )
        })?;
    let missing: Vec<&str> = NEEDED
        .iter()
        .filter(|(bit, _)| effective & (1 << bit) == 0)
        .map(|(_, cap)| *cap)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::kernel(
        object,
        "check privileges",
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN; missing {}): run as root",
                missing.join(", ")
            ),
        ),
    ))
}
