//! Rates as iproute2 writes them: `500kbit`, `20mbit`, `1gbit`, `10gbit`, `2mibit`,
//! `1mbps` (bytes), or a plain number of bits per second.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// A rate in bits per second (never 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rate {
    bits_per_sec: u64,
}

impl Rate {
    /// A rate of `bits_per_sec`; None for 0.
    pub fn from_bits_per_sec(bits_per_sec: u64) -> Option<Rate> {
        (bits_per_sec > 0).then_some(Rate { bits_per_sec })
    }

    /// The rate in bits per second.
    pub fn bits_per_sec(self) -> u64 {
        self.bits_per_sec
    }

    /// Bytes per second, as the kernel's rate specs count (rounded down, at least 1).
    pub fn bytes_per_sec(self) -> u64 {
        (self.bits_per_sec / 8).max(1)
    }
}

/// Units: (suffix, bits per unit). Longest suffixes first so "kibit" wins over "bit".
const UNITS: &[(&str, u64)] = &[
    ("tibps", 8 << 40),
    ("gibps", 8 << 30),
    ("mibps", 8 << 20),
    ("kibps", 8 << 10),
    ("tibit", 1 << 40),
    ("gibit", 1 << 30),
    ("mibit", 1 << 20),
    ("kibit", 1 << 10),
    ("tbps", 8_000_000_000_000),
    ("gbps", 8_000_000_000),
    ("mbps", 8_000_000),
    ("kbps", 8_000),
    ("tbit", 1_000_000_000_000),
    ("gbit", 1_000_000_000),
    ("mbit", 1_000_000),
    ("kbit", 1_000),
    ("bps", 8),
    ("bit", 1),
];

impl FromStr for Rate {
    type Err = Error;
    /// Parse iproute2's rate syntax; a malformed, zero or too large rate is an
    /// [`Error::InvalidInput`] naming the text.
    fn from_str(text: &str) -> Result<Rate, Error> {
        parse(text).map_err(|reason| Error::invalid(format!("rate {text:?}"), reason))
    }
}

fn parse(text: &str) -> Result<Rate, String> {
    let lower = text.trim().to_ascii_lowercase();
    let (number, unit) = UNITS
        .iter()
        .find_map(|(suffix, mult)| lower.strip_suffix(suffix).map(|n| (n, *mult)))
        .unwrap_or((lower.as_str(), 1));
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!(
            "{text:?} is not a rate (examples: 500kbit, 20mbit, 1gbit, 1000000)"
        ));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a rate (examples: 500kbit, 20mbit, 1gbit)"))?;
    let bits = value * unit as f64;
    if !bits.is_finite() || bits >= u64::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    let bits = bits.round() as u64;
    Rate::from_bits_per_sec(bits).ok_or_else(|| format!("{text:?}: a rate must be above 0"))
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.bits_per_sec;
        for (suffix, mult) in [
            ("gbit", 1_000_000_000),
            ("mbit", 1_000_000),
            ("kbit", 1_000),
        ] {
            if b >= mult && b.is_multiple_of(mult) {
                return write!(f, "{}{suffix}", b / mult);
            }
        }
        write!(f, "{b}bit")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(s: &str) -> Option<u64> {
        s.parse::<Rate>().ok().map(Rate::bits_per_sec)
    }

    #[test]
    fn iproute2_units_parse() {
        assert_eq!(bits("500kbit"), Some(500_000));
        assert_eq!(bits("20mbit"), Some(20_000_000));
        assert_eq!(bits("1gbit"), Some(1_000_000_000));
        assert_eq!(bits("10gbit"), Some(10_000_000_000));
        assert_eq!(bits("40GBit"), Some(40_000_000_000));
        assert_eq!(bits("1000000"), Some(1_000_000));
        assert_eq!(bits("2mibit"), Some(2 << 20));
        assert_eq!(bits("1mbps"), Some(8_000_000));
        assert_eq!(bits("1.5mbit"), Some(1_500_000));
    }

    #[test]
    fn bad_rates_are_refused() {
        for bad in [
            "0",
            "0kbit",
            "-1",
            "fast",
            "",
            "mbit",
            "1e9",
            "99999999999999999999tbit",
            "1..2mbit",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rates_display_in_the_largest_exact_unit() {
        assert_eq!(
            bits("20mbit")
                .and_then(Rate::from_bits_per_sec)
                .map(|r| r.to_string()),
            Some("20mbit".into())
        );
        assert_eq!(
            Rate::from_bits_per_sec(1500).map(|r| r.to_string()),
            Some("1500bit".into())
        );
    }
}
