//! Names derived from the CNI identity of an attachment: the sandbox id (shared with the
//! CLI, so `sandbox-net status --id` works) and the default tap name.
//!
//! Sandbox id: the first 47 characters of CNI_CONTAINERID, a '-', then CNI_IFNAME, with
//! every character outside `[A-Za-z0-9_.-]` replaced by '_'. It is at most 63 characters
//! and always a valid id (a valid container id starts with a letter or digit). Two pairs
//! that map to the same id (long ids sharing 47 characters, or "a-b"+"c" vs "a"+"b-c")
//! can't both be attached: the second ADD fails with "already attached".

/// How many characters of the container id the sandbox id keeps.
pub const CONTAINER_ID_CHARS: usize = 47;

fn sanitize(c: char) -> char {
    if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
        c
    } else {
        '_'
    }
}

/// The sandbox id of the attachment of `ifname` in container `container_id` (a container
/// id already checked against the spec).
pub fn sandbox_id(container_id: &str, ifname: &str) -> String {
    let container: String = container_id
        .chars()
        .take(CONTAINER_ID_CHARS)
        .map(sanitize)
        .collect();
    let ifname: String = ifname.chars().map(sanitize).collect();
    format!("{container}-{ifname}")
}

/// The tap name used when neither `tapName` nor CNI_ARGS TAP_NAME gives one:
/// `tap_<ifname>`, cut to the 15 bytes an interface name may have.
pub fn default_tap_name(ifname: &str) -> String {
    let mut name = format!("tap_{ifname}");
    let max = libc::IFNAMSIZ - 1;
    if name.len() > max {
        let cut = name.floor_char_boundary(max);
        name.truncate(cut);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::validate_id;

    #[test]
    fn ids_are_valid_and_deterministic() {
        let long = "0123456789abcdef".repeat(4);
        let id = sandbox_id(&long, "eth0");
        assert_eq!(id, format!("{}-eth0", &long[..47]));
        assert!(validate_id(&id).is_ok());
        assert_eq!(sandbox_id("ctr1", "eth0"), "ctr1-eth0");
        let odd = sandbox_id("c", "ëth@0123456789x");
        assert_eq!(odd, "c-_th_0123456789x");
        assert!(validate_id(&odd).is_ok());
        let longest = sandbox_id(&long, "abcdefghijklmno");
        assert_eq!(longest.len(), 63);
        assert!(validate_id(&longest).is_ok());
    }

    #[test]
    fn default_tap_names_fit() {
        assert_eq!(default_tap_name("eth0"), "tap_eth0");
        assert_eq!(default_tap_name("abcdefghijklmno"), "tap_abcdefghijk");
        assert!(crate::tap::validate_ifname(&default_tap_name("ëëëëëëë")).is_ok());
    }
}
