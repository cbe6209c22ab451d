//! `sandbox-net status`: list the attachments, or check one against the kernel.
//!
//! Exit codes: 0 healthy (the list: listed, whatever each sandbox's state), 1 drift
//! (`status --id`: something journalled is missing or not ours, the netns is gone, or the
//! attach never finished), an unknown id as every command answers it.

use std::path::Path;

use sandbox_net::Error;
use sandbox_net::ops::{Listed, Status};

use crate::output::{note, outln, print_json, show_rate};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Check this sandbox against the kernel: exit 0 when healthy, 1 on drift. Without it,
    /// list every attachment of the state directory (with whether its netns is still
    /// there) and exit 0.
    #[arg(long)]
    pub id: Option<String>,
    /// Print JSON: the sandbox's status, or a list of them.
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
        print_json(&s)?;
    } else {
        human(&s)?;
    }
    if s.drift {
        return Err(Error::kernel(
            format!("sandbox {id}"),
            "status",
            std::io::Error::other(format!(
                "drift: {}",
                s.problem
                    .as_deref()
                    .unwrap_or("a journalled object is missing (see above)")
            )),
        ));
    }
    Ok(())
}

fn human(s: &Status) -> Result<(), Error> {
    outln!(
        "sandbox {}: {:?} in {} (model {}){}",
        s.id,
        s.phase,
        s.netns,
        s.model,
        if s.drift { "  DRIFT" } else { "" }
    )?;
    if let Some(p) = &s.problem {
        outln!("  problem: {p}")?;
    }
    for l in s.limits.iter().flatten().filter(|l| l.rate_bps.is_some()) {
        outln!(
            "  {} {} limit {} (kernel: {})",
            l.endpoint,
            l.direction.as_str(),
            show_rate(l.rate_bps),
            show_rate(l.kernel_bps)
        )?;
    }
    for o in s.objects.iter().flatten() {
        let word = if o.present {
            o.condition.to_string()
        } else {
            o.condition.to_uppercase()
        };
        outln!("  {:<40} {word}", o.object)?;
    }
    Ok(())
}

/// Every attachment of the state directory, one line each; an unreadable state file is
/// a line (an entry) of its own naming it. A state directory that does not exist lists
/// nothing (and is not created).
fn list(state_dir: &Path, json: bool) -> Result<(), Error> {
    let all = sandbox_net::list(state_dir)?;
    let missing = all.is_empty() && std::fs::symlink_metadata(state_dir).is_err();
    if missing {
        note(&format!(
            "no state dir {}: nothing was attached with it",
            state_dir.display()
        ));
    }
    if json {
        return print_json(&all);
    }
    if all.is_empty() && !missing {
        outln!("no attachments in {}", state_dir.display())?;
    }
    for entry in all {
        match entry {
            Listed::Sandbox(s) => {
                let eps: Vec<String> = s
                    .endpoints
                    .iter()
                    .map(|e| format!("{}->{}", e.name, e.device().unwrap_or_default()))
                    .collect();
                let drift = match (&s.problem, s.drift) {
                    (Some(p), _) => format!("  DRIFT: {p}"),
                    (None, true) => "  DRIFT".into(),
                    (None, false) => String::new(),
                };
                outln!(
                    "{}  {:?}  {}  {}{drift}",
                    s.id,
                    s.phase,
                    s.netns,
                    eps.join(" ")
                )?;
            }
            Listed::Unreadable {
                id,
                state_file,
                error,
            } => outln!("{id}  UNREADABLE  {state_file}: {error}")?,
        }
    }
    Ok(())
}
