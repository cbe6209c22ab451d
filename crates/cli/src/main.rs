//! The `sandbox-net` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use sandbox_net::ops::RateChange;
use sandbox_net::state::STATE_DIR_ENV;
use sandbox_net::{AttachOptions, Error, Model};

mod demo;
mod vmm_cmd;
mod watch_cmd;

/// Connect a container's network namespace to a virtual machine.
///
/// sandbox-net scans a network namespace (usually one a CNI plugin has just configured),
/// creates for every configured interface a tap joined to it by tc redirect filters,
/// records every kernel object in an undo journal under --state-dir, and prints what the
/// VMM (tap names, MACs, queues) and the guest (addresses, routes, neighbours) need.
///
/// Exit codes: 0 ok, 1 the operation failed, 2 bad usage or bad input.
#[derive(Parser, Debug)]
#[command(name = "sandbox-net", version, about, long_about)]
struct Cli {
    /// Directory holding one state file per sandbox.
    #[arg(long, global = true, env = STATE_DIR_ENV, default_value = sandbox_net::state::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,

    /// The sysfs tree PCI devices are found and rebound to vfio-pci under, for every
    /// command (detach and gc too): a state file never chooses it.
    #[arg(long, global = true, value_name = "DIR", env = sandbox_net::physical::SYSFS_ROOT_ENV, default_value = sandbox_net::physical::DEFAULT_SYSFS_ROOT, hide = true)]
    sysfs_root: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
enum Command {
    /// Attach every configured interface of a netns to taps for a VM.
    Attach {
        /// The netns: a name under /run/netns, or a path (a bind mount, /proc/PID/ns/net).
        #[arg(long, required_unless_present = "config")]
        netns: Option<String>,
        /// Attach the devices listed in a static configuration file instead of a netns
        /// (host taps, vhost-user sockets, PCI devices; see the README, "Static attachments").
        #[arg(long, value_name = "FILE", conflicts_with_all = ["netns", "model", "queues",
            "allow_host_netns", "ifaces", "vhost_user_dir", "rx_rate", "tx_rate", "no_guest"])]
        config: Option<PathBuf>,
        /// The sandbox id: [A-Za-z0-9][A-Za-z0-9_.-]{0,63}.
        #[arg(long)]
        id: String,
        /// Interworking model: tcfilter (a tap joined by tc redirect filters), macvtap
        /// (a macvtap on the interface takes over its MAC), or none (describe only).
        #[arg(long, default_value = "tcfilter")]
        model: String,
        /// Queues per tap (multi-queue when more than 1).
        #[arg(long, default_value_t = 1)]
        queues: u32,
        /// Allow attaching the caller's own netns or the host's.
        #[arg(long)]
        allow_host_netns: bool,
        /// Attach only this interface (repeat for several); default: every configured one.
        #[arg(long = "iface", value_name = "NAME")]
        ifaces: Vec<String>,
        /// An interface whose address has a socket at DIR/<address>/vhu.sock becomes a
        /// vhost-user endpoint (the VMM connects to that socket).
        #[arg(long, value_name = "DIR")]
        vhost_user_dir: Option<PathBuf>,
        /// Limit traffic toward the guest on every endpoint (iproute2 units: 500kbit,
        /// 20mbit, 1gbit, or bits per second).
        #[arg(long, value_name = "RATE", allow_hyphen_values = true)]
        rx_rate: Option<String>,
        /// Limit traffic from the guest on every endpoint.
        #[arg(long, value_name = "RATE", allow_hyphen_values = true)]
        tx_rate: Option<String>,
        /// A nameserver for the guest (repeat for several); guest-config renders it.
        #[arg(long = "dns", value_name = "ADDR")]
        dns: Vec<std::net::IpAddr>,
        /// Do not take the guest description now (tcfilter: fewer netlink requests; with
        /// --iface, interfaces without addresses are attached too); guest-config reads it
        /// from the netns when asked.
        #[arg(long)]
        no_guest: bool,
        /// Print the attachment as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Attach one more interface of an attached sandbox's netns, under its model.
    AddEndpoint {
        #[arg(long)]
        id: String,
        #[arg(long, value_name = "NAME")]
        iface: String,
        #[arg(long)]
        json: bool,
    },
    /// Detach one interface of an attached sandbox (the others stay attached).
    RemoveEndpoint {
        #[arg(long)]
        id: String,
        #[arg(long, value_name = "NAME")]
        iface: String,
        #[arg(long)]
        json: bool,
    },
    /// Change, add or remove rate limits of a live attachment without interrupting traffic.
    SetRate {
        #[arg(long)]
        id: String,
        /// Only this endpoint (default: all of them).
        #[arg(long, value_name = "NAME")]
        iface: Option<String>,
        /// Limit toward the guest: a rate (500kbit, 20mbit, 1gbit) or `none` to remove it.
        #[arg(long, value_name = "RATE|none", allow_hyphen_values = true)]
        rx: Option<String>,
        /// Limit from the guest: a rate or `none`.
        #[arg(long, value_name = "RATE|none", allow_hyphen_values = true)]
        tx: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove everything an attach created, filters first, then qdiscs, then taps.
    Detach {
        #[arg(long)]
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Find and remove leftovers: links marked as ours (alias `sandbox-net:<id>`) that no
    /// state accounts for, and states whose netns or objects are gone. Looks in the netns of
    /// every state file and in those given with --netns. Never touches links that are not
    /// ours. A sandbox or netns that can't be handled is reported and the others are still
    /// collected. Exit 1 when something could not be removed or looked at.
    Gc {
        /// Also look for orphan links in this netns (repeat for several).
        #[arg(long = "netns", value_name = "NS")]
        netns: Vec<String>,
        /// Report what would be removed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Allow the caller's own netns or the host's among --netns.
        #[arg(long)]
        allow_host_netns: bool,
        #[arg(long)]
        json: bool,
    },
    /// List attachments, or check one against the kernel and report drift.
    Status {
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print the network description the guest must apply.
    GuestConfig {
        #[arg(long)]
        id: String,
        /// json: the description; kernel-ip: the kernel `ip=` parameter (first IPv4
        /// interface; what it can't carry is listed on stderr); cloud-init: a
        /// network-config version 2 document.
        #[arg(long, value_enum, default_value_t = GuestFormat::Json)]
        format: GuestFormat,
    },
    /// Print the arguments (QEMU, Cloud Hypervisor) or network-interfaces entries
    /// (Firecracker) that hand every endpoint to a VMM. Notes go to stderr.
    VmmArgs {
        #[arg(long)]
        id: String,
        #[arg(long, value_enum)]
        vmm: vmm_cmd::VmmName,
        /// QEMU: vhost=off even when /dev/vhost-net exists.
        #[arg(long)]
        no_vhost: bool,
        /// QEMU: the fd form `exec` uses, for every tap.
        #[arg(long)]
        fds: bool,
        /// Print one JSON object (arguments, fds, notes).
        #[arg(long)]
        json: bool,
    },
    /// Open every tap queue in the sandbox netns (and /dev/vhost-net per queue when present),
    /// pass the fds to the VMM from fd 3 up, append the matching arguments and exec the VMM
    /// in the caller's netns: `sandbox-net exec --id ID --vmm qemu -- qemu-system-x86_64 ...`.
    Exec {
        #[arg(long)]
        id: String,
        #[arg(long, value_enum)]
        vmm: vmm_cmd::VmmName,
        /// Do not use vhost-net.
        #[arg(long)]
        no_vhost: bool,
        /// The VMM command line.
        #[arg(last = true, required = true, value_name = "VMM-COMMAND")]
        command: Vec<std::ffi::OsString>,
    },
    /// Follow an attached sandbox's netns: attach interfaces that get configured, detach
    /// those that disappear, and report guest changes, one event per line, until SIGTERM or
    /// SIGINT, the netns's deletion, or detach.
    Watch {
        #[arg(long)]
        id: String,
        /// One JSON object per line: endpoint-added, endpoint-removed, guest-changed,
        /// error, and stopped last.
        #[arg(long)]
        json: bool,
    },
    /// Build a scratch pod network, attach it, ping through the tap with a built-in fake
    /// guest, detach, and check that nothing is left. Needs root; takes no arguments.
    Demo,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum GuestFormat {
    Json,
    KernelIp,
    CloudInit,
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::invalid("output", format!("cannot encode JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

fn parse_rate(text: &str) -> Result<sandbox_net::rate::Rate, Error> {
    text.parse()
        .map_err(|reason: String| Error::invalid(format!("rate {text:?}"), reason))
}

/// An attachment as JSON, or a header line and one line per endpoint.
fn print_attachment(a: &sandbox_net::Attachment, json: bool, header: &str) -> Result<(), Error> {
    if json {
        return print_json(a);
    }
    println!("{header}");
    for ep in &a.endpoints {
        println!("  {}", describe_endpoint(ep));
    }
    Ok(())
}

/// A rate in bits per second as iproute2 writes it, or "none".
fn show_rate(bits_per_sec: Option<u64>) -> String {
    bits_per_sec
        .and_then(sandbox_net::rate::Rate::from_bits_per_sec)
        .map_or("none".to_string(), |r| r.to_string())
}

/// One line per endpoint: what the VMM gets for it.
fn describe_endpoint(ep: &sandbox_net::state::Endpoint) -> String {
    let vmm = if let Some(socket) = &ep.vhost_user_socket {
        format!("vhost-user socket {}", socket.display())
    } else if let Some(group) = &ep.vfio_group {
        format!(
            "VFIO group {} (PCI {})",
            group.display(),
            ep.pci_address.as_deref().unwrap_or("?")
        )
    } else if let Some(dev) = &ep.chardev {
        format!("macvtap {} (char device {dev})", ep.tap)
    } else if ep.tap.is_empty() {
        "nothing (model none)".to_string()
    } else {
        format!("tap {}", ep.tap)
    };
    format!(
        "{} ({}) -> {vmm}  mac {}  mtu {}  queues {}",
        ep.name,
        ep.kind.as_str(),
        ep.mac,
        ep.mtu,
        ep.queues
    )
}

fn run(cli: Cli) -> Result<(), Error> {
    let state_dir = cli.state_dir;
    sandbox_net::physical::set_sysfs_root(cli.sysfs_root);
    match cli.command {
        Command::Attach {
            netns,
            config,
            id,
            model,
            queues,
            allow_host_netns,
            ifaces,
            vhost_user_dir,
            rx_rate,
            tx_rate,
            dns,
            no_guest,
            json,
        } => {
            if let Some(config) = config {
                let mut opts = sandbox_net::StaticOptions::new(config, id);
                opts.state_dir = state_dir;
                opts.dns = dns;
                let a = sandbox_net::attach_static(&opts)?;
                let header = format!(
                    "sandbox {}: attached {} device(s) from {} (static)",
                    a.id,
                    a.endpoints.len(),
                    opts.config.display()
                );
                return print_attachment(&a, json, &header);
            }
            let Some(netns) = netns else {
                return Err(Error::invalid("attach", "give --netns NS or --config FILE"));
            };
            let model: Model = model.parse()?;
            let mut opts = AttachOptions::new(netns, id);
            opts.model = model;
            opts.queues = queues;
            opts.allow_host_netns = allow_host_netns;
            opts.interfaces = (!ifaces.is_empty()).then_some(ifaces);
            opts.vhost_user_dir = vhost_user_dir;
            opts.rx_rate = rx_rate.as_deref().map(parse_rate).transpose()?;
            opts.tx_rate = tx_rate.as_deref().map(parse_rate).transpose()?;
            opts.dns = dns;
            opts.describe_guest = !no_guest;
            opts.state_dir = state_dir;
            let a = sandbox_net::attach(&opts)?;
            let header = format!(
                "sandbox {}: attached {} endpoint(s) in {} (model {})",
                a.id,
                a.endpoints.len(),
                a.netns,
                a.model
            );
            print_attachment(&a, json, &header)?;
        }
        Command::SetRate {
            id,
            iface,
            rx,
            tx,
            json,
        } => {
            let change = |v: Option<String>| -> Result<Option<RateChange>, Error> {
                match v.as_deref() {
                    None => Ok(None),
                    Some("none") => Ok(Some(RateChange::Remove)),
                    Some(text) => parse_rate(text).map(|r| Some(RateChange::Set(r))),
                }
            };
            let (rx, tx) = (change(rx)?, change(tx)?);
            let limits = sandbox_net::set_rate(&state_dir, &id, iface.as_deref(), rx, tx)?;
            if json {
                print_json(&limits)?;
            } else {
                for l in limits {
                    println!(
                        "  {} {}: {} (kernel: {})",
                        l.endpoint,
                        l.direction.as_str(),
                        show_rate(l.rate_bps),
                        show_rate(l.kernel_bps)
                    );
                }
            }
        }
        Command::AddEndpoint { id, iface, json } => {
            let change = sandbox_net::add_endpoint(&state_dir, &id, &iface)?;
            if json {
                print_json(&change)?;
            } else {
                println!(
                    "sandbox {id}: added {}",
                    describe_endpoint(&change.endpoint)
                );
            }
        }
        Command::RemoveEndpoint { id, iface, json } => {
            let change = sandbox_net::remove_endpoint(&state_dir, &id, &iface)?;
            if json {
                print_json(&change)?;
            } else {
                println!("sandbox {id}: removed {}", change.endpoint.name);
            }
        }
        Command::Detach { id, json } => {
            let outcome = sandbox_net::detach(&state_dir, &id)?;
            if json {
                print_json(&outcome)?;
            } else {
                println!("{outcome}");
            }
        }
        Command::Gc {
            netns,
            dry_run,
            allow_host_netns,
            json,
        } => {
            let mut opts = sandbox_net::GcOptions::new(state_dir);
            opts.netns = netns;
            opts.dry_run = dry_run;
            opts.allow_host_netns = allow_host_netns;
            let report = sandbox_net::gc(&opts)?;
            if json {
                print_json(&report)?;
            } else {
                print!("{report}");
            }
            if !report.problems.is_empty() {
                return Err(Error::kernel(
                    "gc",
                    "remove leftovers",
                    std::io::Error::other(format!(
                        "{} leftover(s) could not be removed or looked at (see above)",
                        report.problems.len()
                    )),
                ));
            }
        }
        Command::Status { id: Some(id), json } => match sandbox_net::status(&state_dir, &id)? {
            None => {
                if json {
                    print_json(&serde_json::json!({"id": id, "attached": false}))?;
                } else {
                    println!("sandbox {id}: not attached");
                }
            }
            Some(s) => {
                if json {
                    print_json(&s)?;
                } else {
                    println!(
                        "sandbox {}: {:?} in {} (model {}){}",
                        s.id,
                        s.phase,
                        s.netns,
                        s.model,
                        if s.drift { "  DRIFT" } else { "" }
                    );
                    if let Some(p) = &s.problem {
                        println!("  problem: {p}");
                    }
                    for l in s.limits.iter().flatten().filter(|l| l.rate_bps.is_some()) {
                        println!(
                            "  {} {} limit {} (kernel: {})",
                            l.endpoint,
                            l.direction.as_str(),
                            show_rate(l.rate_bps),
                            show_rate(l.kernel_bps)
                        );
                    }
                    for o in s.objects.iter().flatten() {
                        println!(
                            "  {:<40} {}",
                            o.object,
                            if o.present { "ok" } else { "MISSING" }
                        );
                    }
                }
            }
        },
        Command::Status { id: None, json } => {
            let all = sandbox_net::list(&state_dir)?;
            if json {
                print_json(&all)?;
            } else if all.is_empty() {
                println!("no attachments in {}", state_dir.display());
            } else {
                for s in all {
                    let eps: Vec<String> = s
                        .endpoints
                        .iter()
                        .map(|e| format!("{}->{}", e.name, e.tap))
                        .collect();
                    println!("{}  {:?}  {}  {}", s.id, s.phase, s.netns, eps.join(" "));
                }
            }
        }
        Command::GuestConfig { id, format } => {
            let Some(guest) = sandbox_net::guest_config(&state_dir, &id)? else {
                return Err(Error::invalid(format!("sandbox {id}"), "not attached"));
            };
            match format {
                GuestFormat::Json => print_json(&guest)?,
                GuestFormat::KernelIp => vmm_cmd::guest_config(&state_dir, &id, false)?,
                GuestFormat::CloudInit => vmm_cmd::guest_config(&state_dir, &id, true)?,
            }
        }
        Command::VmmArgs {
            id,
            vmm,
            no_vhost,
            fds,
            json,
        } => vmm_cmd::vmm_args(&state_dir, &id, vmm.into(), !no_vhost, fds, json)?,
        Command::Exec {
            id,
            vmm,
            no_vhost,
            command,
        } => {
            return Err(vmm_cmd::exec(
                &state_dir,
                &id,
                vmm.into(),
                !no_vhost,
                &command,
            ));
        }
        Command::Watch { id, json } => watch_cmd::run(&state_dir, id, json)?,
        Command::Demo => demo::run(&state_dir)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SANDBOX_NET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Run as a CNI plugin when a container runtime calls us (stdout is the result).
    if std::env::var_os(sandbox_net::cni::COMMAND_ENV).is_some() {
        if let Some(root) = std::env::var_os(sandbox_net::physical::SYSFS_ROOT_ENV) {
            sandbox_net::physical::set_sysfs_root(root);
        }
        return ExitCode::from(sandbox_net::cni::run());
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandbox-net: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
