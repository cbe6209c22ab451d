//! `sandbox-net watch`: print the events of `sandbox_net::watch` on stdout, one per line
//! (JSON with --json), until SIGTERM/SIGINT, netns deletion or detach. Logs go to stderr:
//! stdout is the event stream.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;

use sandbox_net::Error;
use sandbox_net::watch::{WatchEvent, WatchOptions};

use crate::output::describe_endpoint;
use crate::signals;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The sandbox id (attached; its netns is followed).
    #[arg(long)]
    id: String,
    /// One JSON object per line: endpoint-added, endpoint-removed, guest-changed,
    /// error, and stopped last.
    #[arg(long)]
    json: bool,
}

/// One event as a human-readable line.
fn human(event: &WatchEvent) -> String {
    match event {
        WatchEvent::EndpointAdded { endpoint, .. } => {
            format!("endpoint-added {}", describe_endpoint(endpoint))
        }
        WatchEvent::EndpointRemoved { endpoint, .. } => {
            format!("endpoint-removed {}", endpoint.name)
        }
        WatchEvent::GuestChanged { guest } => format!(
            "guest-changed {} interface(s), {} route(s), {} neighbour(s)",
            guest.interfaces.len(),
            guest.routes.len(),
            guest.neighbors.len()
        ),
        WatchEvent::Error {
            interface: Some(i),
            message,
        } => format!("error {i}: {message}"),
        WatchEvent::Error {
            interface: None,
            message,
        } => format!("error {message}"),
        WatchEvent::Stopped { reason } => format!(
            "stopped {}",
            serde_json::to_value(reason)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default()
        ),
    }
}

fn line(event: &WatchEvent, json: bool) -> Result<String, Error> {
    if json {
        serde_json::to_string(event).map_err(|e| Error::encode("watch event", e))
    } else {
        Ok(human(event))
    }
}

/// Run the watch; a closed stdout (the reader went away) stops it.
pub fn run(state_dir: &Path, args: Args) -> Result<(), Error> {
    let json = args.json;
    let stop = signals::stop_on_signals("watch")?;
    let opts = WatchOptions::new(state_dir, args.id);
    let mut failure: Option<Error> = None;
    let result = sandbox_net::watch(&opts, stop, |event| {
        let written = line(event, json).and_then(|text| {
            let mut out = std::io::stdout().lock();
            match writeln!(out, "{text}").and_then(|()| out.flush()) {
                Ok(()) => Ok(true),
                // The reader went away: a stop asked for, not a failure.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
                Err(e) => Err(Error::kernel("stdout", "write a watch event", e)),
            }
        });
        match written {
            Ok(true) => {}
            Ok(false) => stop.store(true, Ordering::SeqCst),
            Err(e) => {
                stop.store(true, Ordering::SeqCst);
                failure.get_or_insert(e);
            }
        }
    });
    if let Err(e) = &result
        && json
    {
        // The reader of the stream learns why it ends; stderr has it too.
        let event = WatchEvent::Error {
            interface: None,
            message: e.to_string(),
        };
        if let Ok(text) = line(&event, true) {
            // Best effort: the error itself is returned, and printed on stderr by main.
            let _ = writeln!(std::io::stdout(), "{text}");
        }
    }
    result?;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
