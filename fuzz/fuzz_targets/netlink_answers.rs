//! Every decoder of kernel answers (netlink::answers::decode) over arbitrary bytes taken
//! as a datagram of netlink messages. Properties: see `checks.rs`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::netlink_answers(data));
