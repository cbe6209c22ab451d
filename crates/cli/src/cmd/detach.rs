//! `sandbox-net detach`: undo everything an attach created.

use std::path::Path;

use sandbox_net::Error;

use crate::output::{outln, print_json};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The sandbox id (an unknown one: "nothing was attached", exit 0).
    #[arg(long)]
    id: String,
    /// Print `{"outcome","id",...}` (outcome: detached, not-attached or netns-gone).
    #[arg(long)]
    json: bool,
}

pub fn run(state_dir: &Path, args: Args) -> Result<(), Error> {
    let outcome = sandbox_net::detach(state_dir, &args.id)?;
    if args.json {
        print_json(&outcome)
    } else {
        outln!("{outcome}")?;
        Ok(())
    }
}
