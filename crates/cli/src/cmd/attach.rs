//! `sandbox-net attach`: a netns's interfaces, or the devices of a static configuration.

use std::path::{Path, PathBuf};

use sandbox_net::{AttachOptions, Error, Model, StaticOptions};

use crate::output::{Defaults, print_attachment};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The netns: a name under /run/netns, or a path (a bind mount, /proc/PID/ns/net).
    #[arg(long, required_unless_present = "config")]
    netns: Option<String>,
    /// Attach the devices listed in a static configuration file instead of a netns
    /// (host taps, vhost-user sockets, PCI devices; see docs/static.md).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["netns", "model", "queues",
        "tap_queue_len", "allow_host_netns", "ifaces", "vhost_user_dir", "rx_rate", "tx_rate",
        "no_guest"])]
    config: Option<PathBuf>,
    /// The sandbox id: [A-Za-z0-9][A-Za-z0-9_.-]{0,63}; every later command names the
    /// sandbox by it.
    #[arg(long)]
    id: String,
    /// Interworking model: tcfilter (a tap joined by tc redirect filters), macvtap
    /// (a macvtap on the interface takes over its MAC), l3 (the pod's own stack
    /// routes between the interface and a tap), or none (describe only).
    #[arg(long, default_value = "tcfilter")]
    model: String,
    /// Queues per tap (multi-queue when more than 1).
    #[arg(long, default_value_t = 1)]
    queues: u32,
    /// Frames each tap (or macvtap) queue holds for the guest to read, its txqueuelen
    /// (1 to 16384): a longer queue drops less under bursts and adds latency when full.
    #[arg(long, value_name = "FRAMES", default_value_t = sandbox_net::tap::DEFAULT_QUEUE_LEN)]
    tap_queue_len: u32,
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
    #[arg(long, value_name = "RATE", allow_hyphen_values = true, alias = "rx")]
    rx_rate: Option<String>,
    /// Limit traffic from the guest on every endpoint.
    #[arg(long, value_name = "RATE", allow_hyphen_values = true, alias = "tx")]
    tx_rate: Option<String>,
    /// A nameserver for the guest (repeat for several); guest-config renders it.
    #[arg(long = "dns", value_name = "ADDR")]
    dns: Vec<std::net::IpAddr>,
    /// Do not take the guest description now (tcfilter: fewer netlink requests; with
    /// --iface, interfaces without addresses are attached too); guest-config reads it
    /// from the netns when asked.
    #[arg(long)]
    no_guest: bool,
    /// Print the attachment as one JSON object (with `rate_limits`).
    #[arg(long)]
    json: bool,
}

pub fn run(state_dir: &Path, args: Args) -> Result<(), Error> {
    if let Some(config) = args.config {
        let mut opts = StaticOptions::new(config, args.id);
        opts.state_dir = state_dir.to_path_buf();
        opts.dns = args.dns;
        let a = sandbox_net::attach_static(&opts)?;
        let header = format!(
            "sandbox {}: attached {} device(s) from {} (static)",
            a.id,
            a.endpoints.len(),
            opts.config.display()
        );
        return print_attachment(&a, Defaults::default(), args.json, &header);
    }
    let Some(netns) = args.netns else {
        return Err(Error::invalid("attach", "give --netns NS or --config FILE"));
    };
    let model: Model = args.model.parse()?;
    let mut opts = AttachOptions::new(netns, args.id);
    opts.model = model;
    opts.queues = args.queues;
    opts.tap_queue_len = args.tap_queue_len;
    opts.allow_host_netns = args.allow_host_netns;
    opts.interfaces = (!args.ifaces.is_empty()).then_some(args.ifaces);
    opts.vhost_user_dir = args.vhost_user_dir;
    opts.rx_rate = args.rx_rate.as_deref().map(super::parse_rate).transpose()?;
    opts.tx_rate = args.tx_rate.as_deref().map(super::parse_rate).transpose()?;
    opts.dns = args.dns;
    opts.describe_guest = !args.no_guest;
    opts.state_dir = state_dir.to_path_buf();
    let a = sandbox_net::attach(&opts)?;
    let header = format!(
        "sandbox {}: attached {} endpoint(s) in {} (model {})",
        a.id,
        a.endpoints.len(),
        a.netns,
        a.model
    );
    print_attachment(
        &a,
        Defaults::new(opts.rx_rate, opts.tx_rate),
        args.json,
        &header,
    )
}
