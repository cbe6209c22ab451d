//! What the test modules share: the test kit's helpers (`sandbox_net_testkit::prelude`)
//! and the binary under test.

pub use sandbox_net_testkit::prelude::*;

/// The `sandbox-net` binary cargo built for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sandbox-net")
}

/// Run the CLI; returns (exit code, stdout, stderr).
pub fn cli(args: &[&str]) -> (i32, String, String) {
    run_bin(bin(), args)
}
