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

impl Command {
    /// The subcommand's name, as the user typed it (for messages).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Attach(_) => "attach",
            Command::AddEndpoint(_) => "add-endpoint",
            Command::RemoveEndpoint(_) => "remove-endpoint",
            Command::SetRate(_) => "set-rate",
            Command::Detach(_) => "detach",
            Command::Gc(_) => "gc",
            Command::Status(_) => "status",
            Command::GuestConfig(_) => "guest-config",
            Command::VmmArgs(_) => "vmm-args",
            Command::Exec(_) => "exec",
            Command::Watch(_) => "watch",
            Command::Demo => "demo",
        }
    }
}

/// A rate argument (`--rx-rate`, `--tx-rate`): iproute2 units; a unit iproute2 does not
/// have (`10M`, `10MB`, `10m`) is refused with the spelling meant.
fn parse_rate(text: &str) -> Result<Rate, Error> {
    text.parse().map_err(|e| match (e, did_you_mean(text)) {
        (Error::InvalidInput { what, reason }, Some(hint)) => {
            Error::invalid(what, format!("{reason}; did you mean {hint}?"))
        }
        (e, _) => e,
    })
}

/// The iproute2 spelling of a rate written with a bare SI prefix: `10M` -> `10mbit`,
/// `10MB` -> `10mbps` (bytes per second) or `10mbit`.
fn did_you_mean(text: &str) -> Option<String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return None;
    }
    let unit = unit.to_ascii_lowercase();
    let (prefix, bytes) = match unit.as_str() {
        "k" | "m" | "g" | "t" => (unit.as_str(), false),
        "kb" | "mb" | "gb" | "tb" => (&unit[..1], true),
        _ => return None,
    };
    Some(if bytes {
        format!("{number}{prefix}bps (bytes per second) or {number}{prefix}bit")
    } else {
        format!("{number}{prefix}bit")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_prefix_gets_the_iproute2_spelling() {
        assert_eq!(did_you_mean("10M").as_deref(), Some("10mbit"));
        assert_eq!(did_you_mean("10m").as_deref(), Some("10mbit"));
        assert_eq!(did_you_mean("1.5G").as_deref(), Some("1.5gbit"));
        assert_eq!(
            did_you_mean("10MB").as_deref(),
            Some("10mbps (bytes per second) or 10mbit")
        );
        assert_eq!(did_you_mean("fast"), None);
        assert_eq!(did_you_mean("10furlongs"), None);
    }
}
