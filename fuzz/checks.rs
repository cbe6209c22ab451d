//! The properties the fuzz targets check, shared with `tests/fuzz_seeds.rs` (which runs
//! every committed seed through them in CI). Each takes arbitrary bytes and panics only
//! when a property fails.

use sandbox_net::guest::{format_mac, parse_mac};
use sandbox_net::rate::Rate;
use sandbox_net::state::{parse_state, validate_id};

/// The state file parser: any bytes give a state or an error; a state that parses
/// survives a save/load round trip unchanged.
pub fn state_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("/fuzz/state.json");
    if let Ok(state) = parse_state(path, text) {
        let saved = serde_json::to_string_pretty(&state).expect("a parsed state encodes");
        let again = parse_state(path, &saved).expect("an encoded state parses");
        assert_eq!(again, state, "state changed through a round trip");
    }
}

/// The rate parser (iproute2 units): a parsed rate is above 0 and prints to text that
/// parses back to the same rate.
pub fn rate(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(rate) = text.parse::<Rate>() {
        assert!(rate.bits_per_sec() > 0);
        assert!(rate.bytes_per_sec() > 0);
        let shown = rate.to_string();
        assert_eq!(shown.parse::<Rate>(), Ok(rate), "{text:?} -> {shown:?}");
    }
}

/// The MAC parser accepts exactly six colon-separated pairs of hex digits, so what it
/// accepts prints back as the same text (in lower case).
pub fn mac(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(mac) = parse_mac(text) {
        assert_eq!(
            format_mac(&mac),
            text.to_ascii_lowercase(),
            "accepted {text:?}"
        );
    }
}

/// The id validator accepts exactly `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}` (checked against an
/// independent implementation), so an accepted id is a safe file name.
pub fn id(data: &[u8]) {
    let Ok(id) = std::str::from_utf8(data) else {
        return;
    };
    let b = id.as_bytes();
    let expected = !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    let ok = validate_id(id).is_ok();
    assert_eq!(ok, expected, "{id:?}");
    if ok {
        assert!(!id.contains('/') && id != "." && id != "..");
    }
}
