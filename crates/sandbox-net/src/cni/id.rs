//! Names derived from the CNI identity of an attachment: the sandbox id (shared with the
//! CLI, so `sandbox-net status --id` works) and the default tap name.
//!
//! Sandbox id: the first [`CONTAINER_ID_CHARS`] characters of CNI_CONTAINERID, a '-',
//! CNI_IFNAME, a '-', then [`HASH_CHARS`] hex digits of a hash of the whole pair (every
//! character outside `[A-Za-z0-9_.-]` replaced by '_'; container `ctr1`, interface `eth0`
//! gives `ctr1-eth0-` and 12 hex digits). It is at most 63 characters, always a valid id
//! (a valid container id starts with a letter or digit), readable, and distinct pairs get
//! distinct ids: the readable part may be shared (long ids sharing their first characters,
//! or "a-b"+"c" and "a"+"b-c"), the hash of the full pair is not, short of a 48-bit
//! collision, which ADD refuses with "already attached" naming the other pair (the record
//! says whose an id is).
//!
//! Attachments made before this rule have the id [`legacy_sandbox_id`] (the first 47
//! characters of the container id, '-', the interface, no hash): DEL and CHECK find their
//! record there, and GC goes by the records themselves.

/// How many characters of the container id the sandbox id keeps.
pub const CONTAINER_ID_CHARS: usize = 34;
/// How many hex digits of the pair's hash end the sandbox id.
pub const HASH_CHARS: usize = 12;
/// How many characters of the container id the rule before the hash kept.
pub const LEGACY_CONTAINER_ID_CHARS: usize = 47;

fn sanitize(c: char) -> char {
    if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
        c
    } else {
        '_'
    }
}

fn readable(text: &str, max: usize) -> String {
    text.chars().take(max).map(sanitize).collect()
}

/// FNV-1a, 64 bits: stable across builds and platforms (ids are written to disk), which
/// `std`'s hasher is not. The container id and interface name are separated by a NUL,
/// which neither may contain, so the input is one-to-one with the pair.
fn pair_hash(container_id: &str, ifname: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let bytes = container_id
        .bytes()
        .chain(std::iter::once(0))
        .chain(ifname.bytes());
    bytes.fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// The sandbox id of the attachment of `ifname` in container `container_id` (a container
/// id already checked against the spec).
pub fn sandbox_id(container_id: &str, ifname: &str) -> String {
    let h = pair_hash(container_id, ifname);
    // 48 bits: the top 16 folded into the bottom 48.
    let short = (h ^ (h >> 48)) & 0xffff_ffff_ffff;
    format!(
        "{}-{}-{short:0width$x}",
        readable(container_id, CONTAINER_ID_CHARS),
        readable(ifname, libc::IFNAMSIZ),
        width = HASH_CHARS
    )
}

/// The sandbox id the rule before the hash gave the pair (not one-to-one): where the
/// records of attachments made by earlier builds are.
pub fn legacy_sandbox_id(container_id: &str, ifname: &str) -> String {
    format!(
        "{}-{}",
        readable(container_id, LEGACY_CONTAINER_ID_CHARS),
        readable(ifname, libc::IFNAMSIZ)
    )
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
    fn ids_are_valid_readable_and_deterministic() {
        let long = "0123456789abcdef".repeat(4);
        let id = sandbox_id(&long, "eth0");
        assert!(id.starts_with(&format!("{}-eth0-", &long[..CONTAINER_ID_CHARS])));
        assert_eq!(id, sandbox_id(&long, "eth0"));
        assert!(validate_id(&id).is_ok());
        assert!(sandbox_id("ctr1", "eth0").starts_with("ctr1-eth0-"));
        assert_eq!(
            sandbox_id("ctr1", "eth0").len(),
            "ctr1-eth0-".len() + HASH_CHARS
        );
        let odd = sandbox_id("c", "ëth@0123456789x");
        assert!(odd.starts_with("c-_th_0123456789x-"), "{odd}");
        assert!(validate_id(&odd).is_ok());
        let longest = sandbox_id(&long, "abcdefghijklmno");
        assert_eq!(longest.len(), 63);
        assert!(validate_id(&longest).is_ok());
        // A fixed value: the id is on disk, so the hash must never change.
        assert_eq!(pair_hash("", ""), 0xaf63_bd4c_8601_b7df);
    }

    #[test]
    fn pairs_the_old_rule_merged_get_distinct_ids() {
        assert_eq!(legacy_sandbox_id("a-b", "c"), legacy_sandbox_id("a", "b-c"));
        assert_ne!(sandbox_id("a-b", "c"), sandbox_id("a", "b-c"));
        let base = "f".repeat(47);
        let (x, y) = (format!("{base}1"), format!("{base}2"));
        assert_eq!(legacy_sandbox_id(&x, "eth0"), legacy_sandbox_id(&y, "eth0"));
        assert_ne!(sandbox_id(&x, "eth0"), sandbox_id(&y, "eth0"));
        assert_eq!(legacy_sandbox_id("ctr1", "eth0"), "ctr1-eth0");
    }

    #[test]
    fn default_tap_names_fit() {
        assert_eq!(default_tap_name("eth0"), "tap_eth0");
        assert_eq!(default_tap_name("abcdefghijklmno"), "tap_abcdefghijk");
        assert!(crate::tap::validate_ifname(&default_tap_name("ëëëëëëë")).is_ok());
    }
}
