//! `MacAddr`: an Ethernet MAC address, written and read as `aa:bb:cc:dd:ee:ff` (lower case
//! when written, either case when read) wherever it appears: state files, journals, JSON
//! output, static configurations.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr([u8; 6]);

impl MacAddr {
    /// A MAC from its six bytes.
    pub const fn new(bytes: [u8; 6]) -> MacAddr {
        MacAddr(bytes)
    }

    /// The MAC of a hardware address the kernel reports, when it is one (six bytes).
    pub fn from_slice(bytes: &[u8]) -> Option<MacAddr> {
        <[u8; 6]>::try_from(bytes).ok().map(MacAddr)
    }

    /// Its six bytes.
    pub const fn bytes(self) -> [u8; 6] {
        self.0
    }

    /// Its six bytes, borrowed.
    pub fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// A random unicast, locally administered MAC.
    pub fn random_local() -> std::io::Result<MacAddr> {
        let mut mac = [0u8; 6];
        crate::sys::random::fill(&mut mac)?;
        mac[0] = (mac[0] & 0xfe) | 0x02;
        Ok(MacAddr(mac))
    }

    /// A group (multicast or broadcast) address: the low bit of the first byte is set.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 != 0
    }

    /// Whether it is 00:00:00:00:00:00.
    pub fn is_zero(self) -> bool {
        self.0 == [0; 6]
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a text is not a MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAMac(pub String);

impl fmt::Display for NotAMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a MAC", self.0)
    }
}

impl std::error::Error for NotAMac {}

impl FromStr for MacAddr {
    type Err = NotAMac;

    /// "aa:bb:cc:dd:ee:ff": exactly six colon-separated pairs of hex digits.
    fn from_str(text: &str) -> Result<MacAddr, NotAMac> {
        let bad = || NotAMac(text.to_string());
        let mut mac = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut mac {
            let part = parts.next().ok_or_else(bad)?;
            // from_str_radix alone would also take a sign ("+f"); found by fuzzing.
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        match parts.next() {
            None => Ok(MacAddr(mac)),
            Some(_) => Err(bad()),
        }
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<MacAddr, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An optional MAC's text, `""` when there is none (as [`or_empty`] writes it).
pub fn text_or_empty(mac: Option<MacAddr>) -> String {
    mac.map(|m| m.to_string()).unwrap_or_default()
}

/// Serde for an optional MAC written as `""` when there is none (an interface without a
/// MAC, a static device given none), as state files and JSON output have always had it.
pub mod or_empty {
    use super::MacAddr;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mac: &Option<MacAddr>, s: S) -> Result<S::Ok, S::Error> {
        match mac {
            Some(mac) => s.collect_str(mac),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MacAddr>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_and_print() {
        let mac: MacAddr = "02:77:00:00:00:0A".parse().unwrap();
        assert_eq!(mac.bytes(), [2, 0x77, 0, 0, 0, 10]);
        assert_eq!(mac.to_string(), "02:77:00:00:00:0a");
        assert_eq!(MacAddr::from_slice(&[2, 0x77, 0, 0, 0, 10]), Some(mac));
        assert_eq!(MacAddr::from_slice(&[2, 0x77, 0, 0, 0]), None);
        for bad in [
            "",
            "02:77:00:00:00",
            "02:77:00:00:00:00:01",
            "zz:77:00:00:00:00",
            "2:77:0:0:0:a",
            "ff:ff:ff:ff:ff:+f",
            "-1:00:00:00:00:00",
        ] {
            assert_eq!(bad.parse::<MacAddr>(), Err(NotAMac(bad.into())), "{bad}");
        }
    }

    #[test]
    fn serde_writes_the_text_and_an_absent_one_as_empty() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct T {
            mac: MacAddr,
            #[serde(with = "or_empty")]
            other: Option<MacAddr>,
        }
        let t = T {
            mac: MacAddr::new([2, 0, 0, 0, 0, 1]),
            other: None,
        };
        let text = serde_json::to_string(&t).unwrap();
        assert_eq!(text, r#"{"mac":"02:00:00:00:00:01","other":""}"#);
        assert_eq!(serde_json::from_str::<T>(&text).unwrap(), t);
        assert!(serde_json::from_str::<T>(r#"{"mac":"x","other":""}"#).is_err());
    }

    #[test]
    fn random_macs_are_local_unicast() {
        for _ in 0..50 {
            let mac = MacAddr::random_local().unwrap();
            assert_eq!(mac.bytes()[0] & 0x03, 0x02);
        }
    }
}
