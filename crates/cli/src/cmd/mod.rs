//! The subcommands, one file each: its arguments (clap) and what it does with them.

use std::path::Path;

use clap::Subcommand;
use sandbox_net::Error;
use sandbox_net::rate::Rate;

pub mod add_endpoint;
pub mod attach;
pub mod detach;
pub mod exec;
pub mod gc;
pub mod guest_config;
pub mod remove_endpoint;
pub mod set_rate;
pub mod status;
pub mod vmm_args;
pub mod watch;

#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum Command {
    /// Attach every configured interface of a netns to taps for a VM.
    Attach(attach::Args),
    /// Attach one more interface of an attached sandbox's netns, under its model.
    AddEndpoint(add_endpoint::Args),
    /// Detach one interface of an attached sandbox (the others stay attached).
    RemoveEndpoint(remove_endpoint::Args),
    /// Change, add or remove rate limits of a live attachment without interrupting traffic.
    SetRate(set_rate::Args),
    /// Remove everything an attach created, filters first, then qdiscs, then taps.
    Detach(detach::Args),
    /// Find and remove leftovers: links marked as ours (alias `sandbox-net:<id>`) that no
    /// state accounts for, and states whose netns or objects are gone. Looks in the netns of
    /// every state file and in those given with --netns. Never touches links that are not
    /// ours. A sandbox or netns that can't be handled is reported and the others are still
    /// collected. Exit 1 when something could not be removed or looked at.
    Gc(gc::Args),
    /// List attachments, or check one against the kernel and report drift.
    Status(status::Args),
    /// Print the network description the guest must apply.
    GuestConfig(guest_config::Args),
    /// Print the arguments (QEMU, Cloud Hypervisor) or network-interfaces entries
    /// (Firecracker) that hand every endpoint to a VMM. Notes go to stderr.
    VmmArgs(vmm_args::Args),
    /// Open every tap queue in the sandbox netns (and /dev/vhost-net per queue when present),
    /// pass the fds to the VMM from fd 3 up, append the matching arguments and exec the VMM
    /// in the caller's netns: `sandbox-net exec --id ID --vmm qemu -- qemu-system-x86_64 ...`.
    Exec(exec::Args),
    /// Follow an attached sandbox's netns: attach interfaces that get configured, detach
    /// those that disappear, and report guest changes, one event per line, until SIGTERM or
    /// SIGINT, the netns's deletion, or detach.
    Watch(watch::Args),
    /// Build a scratch pod network, attach it, ping through the tap with a built-in fake
    /// guest, detach, and check that nothing is left. Needs root; takes no arguments.
    Demo,
}

/// Run one subcommand against the state directory.
pub fn run(command: Command, state_dir: &Path) -> Result<(), Error> {
    match command {
        Command::Attach(args) => attach::run(state_dir, args),
        Command::AddEndpoint(args) => add_endpoint::run(state_dir, args),
        Command::RemoveEndpoint(args) => remove_endpoint::run(state_dir, args),
        Command::SetRate(args) => set_rate::run(state_dir, args),
        Command::Detach(args) => detach::run(state_dir, args),
        Command::Gc(args) => gc::run(state_dir, args),
        Command::Status(args) => status::run(state_dir, args),
        Command::GuestConfig(args) => guest_config::run(state_dir, args),
        Command::VmmArgs(args) => vmm_args::run(state_dir, args),
        Command::Exec(args) => Err(exec::run(state_dir, args)),
        Command::Watch(args) => watch::run(state_dir, args),
        Command::Demo => crate::demo::run(state_dir),
    }
}

/// A rate argument (`--rx-rate`, `--rx`...): iproute2 units.
fn parse_rate(text: &str) -> Result<Rate, Error> {
    text.parse()
}
