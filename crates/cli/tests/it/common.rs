//! What the test modules share: the test kit's helpers (`sandbox_net_testkit::prelude`)
//! and the binary under test.

pub use sandbox_net_testkit::prelude::*;

/// The `sandbox-net` binary cargo built for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sandbox-net")
}

/// The state in the state file at `path` (its last whole record, as the library reads
/// it), as JSON.
pub fn state_value(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("read state file");
    let state = sandbox_net::state::parse_state(path, &text).expect("a state");
    serde_json::to_value(state).expect("encode the state")
}

/// Run the CLI; returns (exit code, stdout, stderr).
pub fn cli(args: &[&str]) -> (i32, String, String) {
    run_bin(bin(), args)
}

/// Run the CLI with `--state-dir DIR` first, printing what it did; (exit code, stdout,
/// stderr).
pub fn cli_at(dir: &TempStateDir, args: &[&str]) -> (i32, String, String) {
    let mut full = vec!["--state-dir", dir.path().to_str().expect("utf-8 state dir")];
    full.extend_from_slice(args);
    let (code, out, err) = cli(&full);
    println!("sandbox-net {full:?} -> {code}\n{out}{err}");
    (code, out, err)
}

/// `sandbox-net attach --netns NS --id ID EXTRA...` with `--state-dir DIR`.
pub fn cli_attach(
    dir: &TempStateDir,
    netns: &str,
    id: &str,
    extra: &[&str],
) -> (i32, String, String) {
    let mut args = vec!["attach", "--netns", netns, "--id", id];
    args.extend_from_slice(extra);
    cli_at(dir, &args)
}
