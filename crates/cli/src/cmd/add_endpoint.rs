//! `sandbox-net add-endpoint`: hot-plug one more interface of an attached sandbox.

use std::path::Path;

use sandbox_net::Error;

use crate::output::{describe_endpoint, outln, print_json};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long)]
    id: String,
    #[arg(long, value_name = "NAME")]
    iface: String,
    #[arg(long)]
    json: bool,
}

pub fn run(state_dir: &Path, args: Args) -> Result<(), Error> {
    let change = sandbox_net::add_endpoint(state_dir, &args.id, &args.iface)?;
    if args.json {
        print_json(&change)
    } else {
        outln!(
            "sandbox {}: added {}",
            args.id,
            describe_endpoint(&change.endpoint)
        )?;
        Ok(())
    }
}
