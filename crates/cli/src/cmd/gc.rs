//! `sandbox-net gc`: find and remove leftovers; exit 1 when some could not be handled.

use std::path::Path;

use sandbox_net::{Error, GcOptions};

use crate::output::{out, print_json};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Also look for orphan links in this netns (repeat for several).
    #[arg(long = "netns", value_name = "NS")]
    netns: Vec<String>,
    /// Report what would be removed; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Allow the caller's own netns or the host's among --netns.
    #[arg(long)]
    allow_host_netns: bool,
    /// Print `{"dry_run","links","states","skipped","problems"}`.
    #[arg(long)]
    json: bool,
}

pub fn run(state_dir: &Path, args: Args) -> Result<(), Error> {
    let mut opts = GcOptions::new(state_dir.to_path_buf());
    opts.netns = args.netns;
    opts.dry_run = args.dry_run;
    opts.allow_host_netns = args.allow_host_netns;
    let report = sandbox_net::gc(&opts)?;
    if args.json {
        print_json(&report)?;
    } else {
        out!("{report}")?;
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
    Ok(())
}
