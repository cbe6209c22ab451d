//! `sandbox-net set-rate`: change, add or remove the rate limits of a live attachment.

use std::path::Path;

use sandbox_net::Error;
use sandbox_net::ops::{LimitStatus, RateChange};

use crate::output::{Defaults, outln, print_json, show_rate};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The sandbox id.
    #[arg(long)]
    id: String,
    /// Only this endpoint. Without it, every endpoint, and the limits also become the
    /// default for endpoints added later (add-endpoint, watch).
    #[arg(long, value_name = "NAME")]
    iface: Option<String>,
    /// Limit toward the guest: a rate (iproute2 units: 500kbit, 20mbit, 1gbit) or `none`
    /// to remove it.
    #[arg(
        long,
        value_name = "RATE|none",
        allow_hyphen_values = true,
        alias = "rx"
    )]
    rx_rate: Option<String>,
    /// Limit from the guest: a rate or `none`.
    #[arg(
        long,
        value_name = "RATE|none",
        allow_hyphen_values = true,
        alias = "tx"
    )]
    tx_rate: Option<String>,
    /// Print `{"id","limits":[...],"rate_limits"?}`.
    #[arg(long)]
    json: bool,
}

/// `--rx-rate`/`--tx-rate`: a rate, or `none` to remove the limit.
fn change(value: Option<String>) -> Result<Option<RateChange>, Error> {
    match value.as_deref() {
        None => Ok(None),
        Some("none") => Ok(Some(RateChange::Remove)),
        Some(text) => super::parse_rate(text).map(|r| Some(RateChange::Set(r))),
    }
}

/// What `set-rate --json` prints.
#[derive(serde::Serialize)]
struct Changed<'a> {
    id: &'a str,
    /// Per endpoint and direction, as `status --id` names them.
    limits: &'a [LimitStatus],
    /// Without `--iface`: the limits every endpoint gets, endpoints added later too (as
    /// `attach --json` and `add-endpoint --json` name them).
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limits: Option<Defaults>,
}

pub fn run(state_dir: &Path, args: Args) -> Result<(), Error> {
    let (rx, tx) = (change(args.rx_rate)?, change(args.tx_rate)?);
    if rx.is_none() && tx.is_none() {
        return Err(Error::invalid(
            "set-rate",
            "give --rx-rate and/or --tx-rate (a rate or none)",
        ));
    }
    let limits = sandbox_net::set_rate(state_dir, &args.id, args.iface.as_deref(), rx, tx)?;
    let defaults = match args.iface {
        None => Some(Defaults::recorded(state_dir, &args.id)?),
        Some(_) => None,
    };
    if args.json {
        return print_json(&Changed {
            id: &args.id,
            limits: &limits,
            rate_limits: defaults,
        });
    }
    outln!("sandbox {}: rate limits", args.id)?;
    for l in &limits {
        outln!(
            "  {} {}: {} (kernel: {})",
            l.endpoint,
            l.direction.as_str(),
            show_rate(l.rate_bps),
            show_rate(l.kernel_bps)
        )?;
    }
    if let Some(d) = defaults {
        outln!(
            "  also the default for endpoints added later: {}",
            d.describe()
        )?;
    }
    Ok(())
}
