//! Reading the attributes of a kernel answer by hand: the decoders keep a few attributes
//! and read them here, so that what a tenant sets (a name, an alias, an address label, a
//! filter's options) is data that never makes a decode fail.
//!
//! Text is the one kind of attribute a tenant chooses freely: the kernel takes any bytes
//! for an alias or a label, and any bytes but `/`, `:` and whitespace for a device name.
//! [`text`] keeps valid UTF-8 as it is and turns anything else into an escaped form that
//! ends with [`NOT_UTF8`]; that suffix holds spaces, which the kernel refuses in a device
//! name and sandbox-net refuses in every name it is given, so such a text never equals a
//! real name or one we look for, and nothing is ever found or acted on by it. The form is
//! one-to-one: two different byte strings never read the same (valid UTF-8 that happens
//! to end with the suffix, which only an alias or a label can, is escaped and marked too).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{DecodeError, NlaBuffer, NlasIterator};

/// The suffix of a text whose bytes were not UTF-8.
pub const NOT_UTF8: &str = " (not UTF-8)";

/// A string attribute as text: the bytes up to the first NUL; valid UTF-8 as it is,
/// anything else escaped (`\xff` for a byte that is not part of valid UTF-8, `\\` for a
/// backslash) and marked with [`NOT_UTF8`].
pub fn text(value: &[u8]) -> String {
    let bytes = value.split(|b| *b == 0).next().unwrap_or(value);
    if let Ok(s) = std::str::from_utf8(bytes)
        && !s.ends_with(NOT_UTF8)
    {
        return s.to_string();
    }
    let mut out = String::with_capacity(bytes.len() * 2 + NOT_UTF8.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push_str(NOT_UTF8);
    out
}

/// Whether a text from [`text`] is escaped and marked: its bytes were not UTF-8 (or,
/// for an alias or a label, ended like a marked text).
pub fn is_not_utf8(text: &str) -> bool {
    text.ends_with(NOT_UTF8)
}

/// A `u32` attribute (native byte order); None when it is not 4 bytes long.
pub fn u32_of(value: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(value.try_into().ok()?))
}

/// A `u8` attribute; None when it is empty.
pub fn u8_of(value: &[u8]) -> Option<u8> {
    value.first().copied()
}

/// The `u32` at `offset` of a fixed-layout structure (native byte order), if it is there.
pub fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    let b = bytes.get(offset..offset + 4)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// An address attribute: 4 bytes are IPv4, 16 are IPv6, anything else is None.
pub fn ip_of(value: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(value) {
        return Some(IpAddr::V4(Ipv4Addr::from(v4)));
    }
    let v6 = <[u8; 16]>::try_from(value).ok()?;
    Some(IpAddr::V6(Ipv6Addr::from(v6)))
}

/// The attributes in `bytes` (nested ones, or what follows a message header), each as its
/// type and value; a length that does not fit is an error.
pub fn each(bytes: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), DecodeError>> {
    NlasIterator::new(bytes).map(|nla| {
        let nla: NlaBuffer<&[u8]> = nla?;
        let kind = nla.kind();
        Ok((kind, nla_value(nla)))
    })
}

/// The value of an attribute, borrowed from the message (`NlaBuffer::value` borrows from
/// the buffer object instead). A checked buffer's length is at least 4 and fits.
fn nla_value(nla: NlaBuffer<&[u8]>) -> &[u8] {
    let len = usize::from(nla.length());
    nla.into_inner().get(4..len).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_text_is_kept_and_the_rest_is_escaped_and_marked() {
        assert_eq!(text(b"eth0\0"), "eth0");
        assert_eq!(text(b"eth0"), "eth0");
        assert_eq!(text(b"a\\b"), "a\\b");
        assert_eq!(text(b""), "");
        assert_eq!(text(b"\xff"), "\\xff (not UTF-8)");
        assert_eq!(text(b"\xc3\x28\0junk"), "\\xc3( (not UTF-8)");
        assert_eq!(text(b"\\\xff"), "\\\\\\xff (not UTF-8)");
        assert_eq!(text("é\u{1}".as_bytes()), "é\u{1}");
        assert!(is_not_utf8(&text(b"x\xfe")));
        assert!(!is_not_utf8(&text(b"x")));
        // An alias that reads like a marked text is marked itself.
        assert_eq!(text(b"a (not UTF-8)"), "a (not UTF-8) (not UTF-8)");
    }

    #[test]
    fn different_bytes_never_read_the_same() {
        // The backslash of a real name is escaped once the name is marked, so an escape
        // can't be spelled with plain characters.
        assert_ne!(text(b"\xff\\xff"), text(b"\xff\xff"));
        assert_ne!(text(b"\xff"), text(b"\xfe"));
        assert_ne!(text(b"\xff"), text("\u{fffd}".as_bytes()));
        assert_ne!(text(b"\\xff (not UTF-8)"), text(b"\xff"));
        // A marked text holds spaces: no device name, and no name we are given, does.
        assert!(text(b"\xff").contains(' '));
    }

    #[test]
    fn fixed_size_values() {
        assert_eq!(u32_of(&7u32.to_ne_bytes()), Some(7));
        assert_eq!(u32_of(&[1, 2]), None);
        assert_eq!(
            u32_at(&[0, 0, 0, 0, 9, 0, 0, 0], 4),
            Some(u32::from_ne_bytes([9, 0, 0, 0]))
        );
        assert_eq!(u32_at(&[0; 6], 4), None);
        assert_eq!(ip_of(&[10, 0, 0, 1]), Some(IpAddr::from([10, 0, 0, 1])));
        assert_eq!(ip_of(&[0; 16]), Some(IpAddr::from([0u16; 8])));
        assert_eq!(ip_of(&[1, 2, 3]), None);
        assert_eq!(u8_of(&[]), None);
    }

    #[test]
    fn attributes_are_walked_and_a_bad_length_is_an_error() {
        // type 3, "ab\0" (length 7, padded to 8), then type 4 with a u32.
        let mut bytes = vec![7, 0, 3, 0, b'a', b'b', 0, 0];
        bytes.extend_from_slice(&[8, 0, 4, 0]);
        bytes.extend_from_slice(&5u32.to_ne_bytes());
        let got: Vec<_> = each(&bytes).collect::<Result<_, _>>().expect("walk");
        assert_eq!(got, vec![(3, &b"ab\0"[..]), (4, &5u32.to_ne_bytes()[..])]);
        assert!(each(&[200, 0, 1, 0, 0]).any(|a| a.is_err()));
    }
}
