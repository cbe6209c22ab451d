//! `sandbox-net set-rate`: change, add or remove the rate limits of a live attachment.

use std::path::Path;

use sandbox_net::Error;
use sandbox_net::ops::RateChange;

use crate::output::{outln, print_json, show_rate};

#[derive(clap::Args, Debug)]
pub struct Args {
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
}

/// `--rx`/`--tx`: a rate, or `none` to remove the limit.
fn change(value: Option<String>) -> Result<Option<RateChange>, Error> {
    match value.as_deref() {
        None => Ok(None),
        Some("none") => Ok(Some(RateChange::Remove)),
        Some(text) => super::parse_rate(text).map(|r| Some(RateChange::Set(r))),
    }
}

pub fn run(state_dir: &Path, args: Args) -> Result<(), Error> {
    let (rx, tx) = (change(args.rx)?, change(args.tx)?);
    let limits = sandbox_net::set_rate(state_dir, &args.id, args.iface.as_deref(), rx, tx)?;
    if args.json {
        return print_json(&limits);
    }
    for l in limits {
        outln!(
            "  {} {}: {} (kernel: {})",
            l.endpoint,
            l.direction.as_str(),
            show_rate(l.rate_bps),
            show_rate(l.kernel_bps)
        )?;
    }
    Ok(())
}
