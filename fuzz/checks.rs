//! The properties the fuzz targets check, shared with `tests/fuzz_seeds.rs` (which runs
//! every committed seed through them in CI). Each takes arbitrary bytes and panics only
//! when a property fails.

use sandbox_net::MacAddr;
use sandbox_net::netlink::answers::{self, Answer};
use sandbox_net::netlink::attr::{self, NOT_UTF8};
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
        assert_eq!(
            shown.parse::<Rate>().ok(),
            Some(rate),
            "{text:?} -> {shown:?}"
        );
    }
}

/// The MAC parser accepts exactly six colon-separated pairs of hex digits, so what it
/// accepts prints back as the same text (in lower case).
pub fn mac(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(mac) = text.parse::<MacAddr>() {
        assert_eq!(
            mac.to_string(),
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

/// Every decoder of a kernel answer (links, addresses, routes, neighbours, qdiscs, filters,
/// classes, the end of a dump), over the bytes as one datagram of netlink messages, as a
/// dump decodes it: never a panic; every text that came from the kernel (a name, an alias,
/// a kind) is its bytes when they are UTF-8 and an escaped, marked form otherwise, which
/// no device name can equal; a filter taken for one of our redirects is a u32 filter.
pub fn netlink_answers(data: &[u8]) {
    for answer in answers::decode(data) {
        match answer {
            Ok(Answer::Link(l)) => {
                text_is_sound(&l.name);
                l.alias.as_deref().map(text_is_sound);
                l.kind.as_deref().map(text_is_sound);
            }
            Ok(Answer::Qdisc(q)) => text_is_sound(&q.kind),
            Ok(Answer::Filter(Some(f))) => {
                text_is_sound(&f.kind);
                if f.match_all && f.egress_redirect && f.target.is_some() {
                    assert_eq!(f.kind, "u32", "{f:?}");
                }
            }
            _ => {}
        }
    }
    // The text form itself, over the input as one string attribute: what it keeps of the
    // bytes (up to the first NUL) comes back from it exactly, and it is marked exactly when
    // they are not UTF-8 (or read like a marked text).
    let bytes = data.split(|b| *b == 0).next().unwrap_or(data);
    let text = attr::text(data);
    let plain = std::str::from_utf8(bytes).is_ok_and(|s| !s.ends_with(NOT_UTF8));
    assert_eq!(attr::is_not_utf8(&text), !plain, "{text:?}");
    if plain {
        assert_eq!(text.as_bytes(), bytes);
    } else {
        assert_eq!(unescape(&text), bytes, "{text:?}");
    }
}

/// A kernel text as the decoders give it: a marked one holds a space (no device name
/// does) and is a well-formed escape.
fn text_is_sound(text: &str) {
    if attr::is_not_utf8(text) {
        assert!(text.contains(' '));
        unescape(text);
    }
}

/// The bytes a marked text stands for (an implementation independent of `attr::text`).
fn unescape(text: &str) -> Vec<u8> {
    let body = text.strip_suffix(NOT_UTF8).expect("a marked text");
    let mut out = Vec::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            continue;
        }
        match chars.next() {
            Some('\\') => out.push(b'\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&hex, 16).expect("two hex digits after \\x"));
            }
            other => panic!("a lone backslash before {other:?} in {text:?}"),
        }
    }
    out
}
