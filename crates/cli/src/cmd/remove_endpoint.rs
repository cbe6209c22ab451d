//! `sandbox-net remove-endpoint`: detach one interface of an attached sandbox.

use std::path::Path;

use sandbox_net::Error;

use crate::output::{outln, print_json};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The sandbox id.
    #[arg(long)]
    id: String,
    /// The attached interface to detach (the others stay attached).
    #[arg(long, value_name = "NAME")]
    iface: String,
    /// Print `{"id","endpoint","guest"}`: the endpoint removed and the new guest
    /// description.
    #[arg(long)]
    json: bool,
}

pub fn run(state_dir: &Path, args: Args) -> Result<(), Error> {
    let change = match sandbox_net::remove_endpoint(state_dir, &args.id, &args.iface) {
        Ok(change) => change,
        // Removing what is not there succeeds (exit 0), in detach's words.
        Err(Error::InterfaceNotFound { .. }) => {
            return if args.json {
                print_json(&serde_json::json!({
                    "outcome": "not-attached", "id": args.id, "iface": args.iface,
                }))
            } else {
                println!(
                    "sandbox {}: interface {}: nothing was attached",
                    args.id, args.iface
                );
                Ok(())
            };
        }
        Err(e) => return Err(e),
    };
    if args.json {
        print_json(&change)
    } else {
        outln!("sandbox {}: removed {}", args.id, change.endpoint.name)?;
        Ok(())
    }
}
