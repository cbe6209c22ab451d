//! `sandbox-net add-endpoint`: hot-plug one more interface of an attached sandbox.

use std::path::Path;

use sandbox_net::{EndpointChange, Error};

use crate::output::{Defaults, describe_endpoint, outln, print_json};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The sandbox id.
    #[arg(long)]
    id: String,
    /// The interface of the sandbox's netns to attach.
    #[arg(long, value_name = "NAME")]
    iface: String,
    /// Print `{"id","endpoint","guest","rate_limits"}`.
    #[arg(long)]
    json: bool,
}

/// What `add-endpoint --json` prints: the change, and the rate limits the new endpoint
/// got (the sandbox's, from attach or `set-rate` without `--iface`).
#[derive(serde::Serialize)]
struct Added<'a> {
    #[serde(flatten)]
    change: &'a EndpointChange,
    rate_limits: Defaults,
}

pub fn run(state_dir: &Path, args: Args) -> Result<(), Error> {
    let change = sandbox_net::add_endpoint(state_dir, &args.id, &args.iface)?;
    let rate_limits = Defaults::recorded(state_dir, &args.id)?;
    if args.json {
        return print_json(&Added {
            change: &change,
            rate_limits,
        });
    }
    outln!(
        "sandbox {}: added {}",
        args.id,
        describe_endpoint(&change.endpoint)
    )?;
    outln!(
        "  rate limits applied (the sandbox's): {}",
        rate_limits.describe()
    )
}
