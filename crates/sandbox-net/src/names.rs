//! The names sandbox-net gives what it creates: the devices of an endpoint
//! (`tap<N>_sn`, `mvtap<N>_sn`, `ifb<IFINDEX>_sn`) and the owner alias (and link group)
//! that marks a device as a sandbox's.

/// The tap sandbox-net creates in slot `slot` (tcfilter).
pub fn tap(slot: usize) -> String {
    format!("tap{slot}_sn")
}

/// The macvtap sandbox-net creates in slot `slot` (macvtap model).
pub fn macvtap(slot: usize) -> String {
    format!("mvtap{slot}_sn")
}

/// The IFB that shapes traffic toward the guest of the endpoint with ifindex `index`.
pub fn ifb(index: u32) -> String {
    format!("ifb{index}_sn")
}

/// The prefix of the alias that marks a link as ours.
pub const OWNER_ALIAS_PREFIX: &str = "sandbox-net:";

/// The alias sandbox-net gives the links it creates: it marks them as ours.
pub fn owner_alias(id: &str) -> String {
    format!("{OWNER_ALIAS_PREFIX}{id}")
}

/// The link group of the devices a sandbox creates (derived from its owner alias): a
/// detach deletes them all in one request. Never 0, the kernel's default group.
pub fn owner_group(alias: &str) -> u32 {
    // FNV-1a, 32 bits.
    let hash = alias.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash | 0x4000_0000
}

/// The sandbox id an alias names, when the alias marks the link as ours (unvalidated).
pub fn owner_of(alias: &str) -> Option<&str> {
    alias.strip_prefix(OWNER_ALIAS_PREFIX)
}
