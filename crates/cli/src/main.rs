//! The `sandbox-net` command line: parse, set up logging, run one subcommand (`cmd/`), or
//! act as a CNI plugin when a container runtime calls the binary (`cni.rs`). The process
//! starts at `main` below, not at Rust's runtime start (`start.rs` says why and what it
//! does instead).

#![cfg_attr(not(test), no_main)]

use std::path::PathBuf;

use clap::Parser;
use sandbox_net::physical::{DEFAULT_SYSFS_ROOT, SYSFS_ROOT_ENV};
use sandbox_net::state::{DEFAULT_STATE_DIR, STATE_DIR_ENV};

mod cmd;
mod cni;
mod demo;
mod output;
mod privileges;
mod signals;
mod start;

/// Connect a container's network namespace to a virtual machine.
///
/// sandbox-net scans a network namespace (usually one a CNI plugin has just configured),
/// creates for every configured interface a tap joined to it by tc redirect filters,
/// records every kernel object in an undo journal under --state-dir, and prints what the
/// VMM (tap names, MACs, queues) and the guest (addresses, routes, neighbours) need.
///
/// Exit codes: 0 ok, 1 the operation failed, 2 bad usage or bad input, 3 the sandbox is
/// not attached.
#[derive(Parser, Debug)]
#[command(name = "sandbox-net", version, long_about)]
struct Cli {
    /// Directory holding one state file per sandbox (an absolute path).
    #[arg(long, global = true, env = STATE_DIR_ENV, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,

    /// The sysfs tree PCI devices are found and rebound to vfio-pci under, for every
    /// command (detach and gc too): a state file never chooses it.
    #[arg(long, global = true, value_name = "DIR", env = SYSFS_ROOT_ENV, default_value = DEFAULT_SYSFS_ROOT, hide = true)]
    sysfs_root: PathBuf,

    #[command(subcommand)]
    command: cmd::Command,
}

/// Logs go to stderr (stdout is the command's output), at `warn` unless SANDBOX_NET_LOG
/// says otherwise (an `EnvFilter`: `info`, `sandbox_net=debug`...). Colour only when
/// stderr is a terminal: a log written to a pipe or a file carries no escape codes.
fn init_logging() {
    use std::io::IsTerminal;
    let logs = tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match tracing_subscriber::EnvFilter::try_from_env("SANDBOX_NET_LOG") {
        Ok(filter) => logs.with_env_filter(filter).init(),
        // The same as `EnvFilter::new("warn")`, without the directive parser's set-up.
        Err(_) => logs
            .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
            .init(),
    }
}

/// A relative `--state-dir` (or `$SANDBOX_NET_STATE_DIR`) is refused before anything
/// runs: it would name another directory from every working directory, so a detach from
/// elsewhere would find nothing attached and leave the taps behind.
fn absolute(state_dir: &std::path::Path) -> Result<PathBuf, sandbox_net::Error> {
    if state_dir.is_absolute() {
        return Ok(state_dir.to_path_buf());
    }
    Err(sandbox_net::Error::invalid(
        format!("--state-dir {}", state_dir.display()),
        "a relative path names another directory from each working directory (a detach run \
         elsewhere would not find the attach); give an absolute path",
    ))
}

/// The process entry (`start.rs`). In the unit tests' build the test harness has the
/// entry, and this is a plain function.
///
/// # Safety
/// Only the C runtime calls it, with the program's `argc` and `argv`.
// SAFETY (the attribute): the C entry point of a `#![no_main]` binary; no other symbol of
// the program is named `main`.
#[cfg_attr(not(test), unsafe(no_mangle))]
unsafe extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: argc and argv are what the C runtime passed to main (this function's contract).
    unsafe { start::run(argc, argv, sandbox_net_main) }
}

/// The command: the CNI plugin when a runtime called it, else the command line.
fn sandbox_net_main(args: Vec<std::ffi::OsString>) -> u8 {
    init_logging();
    if cni::called() {
        return cni::run();
    }
    let cli = Cli::parse_from(args);
    sandbox_net::physical::set_sysfs_root(cli.sysfs_root);
    let started = privileges::require(cli.command.name()).and_then(|()| absolute(&cli.state_dir));
    match started.and_then(|state_dir| cmd::run(cli.command, &state_dir)) {
        Ok(()) => 0,
        Err(e) => {
            output::write_err(format_args!("sandbox-net: error: {e}"));
            e.exit_code() as u8
        }
    }
}
