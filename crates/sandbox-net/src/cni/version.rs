//! CNI spec versions: which ones this plugin speaks, and comparing them.

/// The spec versions this plugin supports, oldest first.
/// 0.3.0 and 0.3.1 results have the same shape (`ips[].version`, `interfaces`), which
/// 0.4.0 kept; 1.0.0 dropped `ips[].version`.
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The newest supported version: used when the caller gave none we can use.
pub const LATEST: &str = "1.1.0";

/// The first version with CHECK.
pub const CHECK_SINCE: &str = "0.4.0";

/// The first version with GC and STATUS.
pub const GC_STATUS_SINCE: &str = "1.1.0";

/// The first version whose result `ips` entries have no `version` field.
pub const NO_IP_VERSION_SINCE: &str = "1.0.0";

/// The first version whose result interfaces may carry an `mtu`.
pub const INTERFACE_MTU_SINCE: &str = "1.1.0";

/// The version a network configuration without `cniVersion` implies.
pub const IMPLIED: &str = "0.1.0";

pub fn is_supported(version: &str) -> bool {
    SUPPORTED.contains(&version)
}

/// Parse "MAJOR.MINOR.PATCH".
fn parse(version: &str) -> Option<(u32, u32, u32)> {
    let mut parts = version.split('.').map(str::parse::<u32>);
    let v = (
        parts.next()?.ok()?,
        parts.next()?.ok()?,
        parts.next()?.ok()?,
    );
    parts.next().is_none().then_some(v)
}

/// True when `version` is `min` or later (false when either does not parse).
pub fn at_least(version: &str, min: &str) -> bool {
    match (parse(version), parse(min)) {
        (Some(v), Some(m)) => v >= m,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(at_least("1.0.0", "0.4.0"));
        assert!(at_least("0.10.0", "0.4.0"));
        assert!(!at_least("0.3.1", "0.4.0"));
        assert!(at_least("1.1.0", "1.1.0"));
        assert!(!at_least("1.0", "0.4.0"));
        assert!(!at_least("x.y.z", "0.4.0"));
    }

    #[test]
    fn supported_list_is_what_we_claim() {
        assert!(is_supported("0.4.0") && is_supported("1.1.0"));
        assert!(is_supported("0.3.0") && is_supported("0.3.1"));
        assert!(!is_supported("0.1.0") && !is_supported("0.2.0") && !is_supported("9.9.9"));
        assert_eq!(SUPPORTED.last(), Some(&LATEST));
    }
}
