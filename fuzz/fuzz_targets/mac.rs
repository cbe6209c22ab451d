//! The MAC parser (`MacAddr`'s `FromStr`, in `mac.rs`). Properties: see `checks.rs`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::mac(data));
