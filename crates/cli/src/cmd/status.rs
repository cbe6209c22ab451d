//! `sandbox-net status`: list the attachments, or check one against the kernel.

use std::path::Path;

use sandbox_net::Error;

use crate::output::{print_json, show_rate};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long)]
    id: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn run(state_dir: &Path, args: Args) -> Result<(), Error> {
    match args.id {
        Some(id) => one(state_dir, &id, args.json),
        None => list(state_dir, args.json),
    }
}

/// One sandbox, checked against the kernel (drift, limits, every object).
fn one(state_dir: &Path, id: &str, json: bool) -> Result<(), Error> {
    let Some(s) = sandbox_net::status(state_dir, id)? else {
        // Exit 3, as every command that needs an attached sandbox (docs/cli.md).
        if json {
            print_json(&serde_json::json!({"id": id, "attached": false}))?;
        }
        return Err(Error::not_attached(id));
    };
    if json {
        return print_json(&s);
    }
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
    Ok(())
}

/// Every attachment of the state directory, one line each.
fn list(state_dir: &Path, json: bool) -> Result<(), Error> {
    let all = sandbox_net::list(state_dir)?;
    if json {
        return print_json(&all);
    }
    if all.is_empty() {
        println!("no attachments in {}", state_dir.display());
    }
    for s in all {
        let eps: Vec<String> = s
            .endpoints
            .iter()
            .map(|e| format!("{}->{}", e.name, e.device().unwrap_or_default()))
            .collect();
        println!("{}  {:?}  {}  {}", s.id, s.phase, s.netns, eps.join(" "));
    }
    Ok(())
}
