//! What the subcommands print: JSON (`--json`), and the human-readable lines shared by
//! several of them. Notes and warnings go to stderr, so that stdout stays what was asked
//! for.

use std::io::Write;

use std::path::Path;

use sandbox_net::rate::Rate;
use sandbox_net::state::StateDir;
use sandbox_net::{Attachment, Backend, Endpoint, Error};

/// `println!` for command output: a reader that went away (`EPIPE`: `status | head -1`)
/// is not a failure of the command, which ends with its own exit code; another write
/// failure is an error naming stdout.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// `print!` for command output, as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!($($arg)*))
    };
}
pub(crate) use out;

/// Write to stdout; a closed pipe is ignored (the process ignores SIGPIPE from its start,
/// `start.rs`, so the write fails with `EPIPE` instead of killing it).
pub fn write_out(args: std::fmt::Arguments<'_>) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::kernel("stdout", "write the output", e))
        }
        _ => Ok(()),
    }
}

/// A line on stderr; a closed stderr loses it (there is nowhere left to say so).
pub fn write_err(args: std::fmt::Arguments<'_>) {
    let mut stderr = std::io::stderr().lock();
    // Best effort by design: stderr is where failures are reported.
    let _ = writeln!(stderr, "{args}");
}

/// A value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::encode("output", e))?;
    outln!("{text}")
}

/// The rate limits every endpoint of a sandbox gets (attach's `--rx-rate`/`--tx-rate`,
/// `set-rate` without `--iface`): what `add-endpoint` and `watch` give a new endpoint.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Defaults {
    /// Toward the guest, in bits per second (null: none).
    pub rx_rate_bps: Option<u64>,
    /// From the guest, in bits per second (null: none).
    pub tx_rate_bps: Option<u64>,
}

impl Defaults {
    pub fn new(rx: Option<Rate>, tx: Option<Rate>) -> Defaults {
        Defaults {
            rx_rate_bps: rx.map(Rate::bits_per_sec),
            tx_rate_bps: tx.map(Rate::bits_per_sec),
        }
    }

    /// The sandbox's, as its state records them now (none when it has no state).
    pub fn recorded(state_dir: &Path, id: &str) -> Result<Defaults, Error> {
        let Some(store) = StateDir::open_existing(state_dir)? else {
            return Ok(Defaults::default());
        };
        Ok(store.load(id)?.map_or_else(Defaults::default, |s| {
            Defaults::new(s.settings.rx_rate, s.settings.tx_rate)
        }))
    }

    /// "rx 10mbit, tx none".
    pub fn describe(self) -> String {
        format!(
            "rx {}, tx {}",
            show_rate(self.rx_rate_bps),
            show_rate(self.tx_rate_bps)
        )
    }
}

/// An attachment as JSON (with `rate_limits`: those of every endpoint), or a header
/// line, one line per endpoint and one for the limits.
pub fn print_attachment(
    a: &Attachment,
    limits: Defaults,
    json: bool,
    header: &str,
) -> Result<(), Error> {
    if json {
        #[derive(serde::Serialize)]
        struct WithLimits<'a> {
            #[serde(flatten)]
            attachment: &'a Attachment,
            rate_limits: Defaults,
        }
        return print_json(&WithLimits {
            attachment: a,
            rate_limits: limits,
        });
    }
    outln!("{header}")?;
    for ep in &a.endpoints {
        outln!("  {}", describe_endpoint(ep))?;
    }
    outln!("  rate limits of every endpoint: {}", limits.describe())
}

/// A rate in bits per second as iproute2 writes it, or "none".
pub fn show_rate(bits_per_sec: Option<u64>) -> String {
    bits_per_sec
        .and_then(Rate::from_bits_per_sec)
        .map_or("none".to_string(), |r| r.to_string())
}

/// One line per endpoint: what the VMM gets for it.
pub fn describe_endpoint(ep: &Endpoint) -> String {
    let vmm = match &ep.backend {
        Backend::VhostUser { socket } => format!("vhost-user socket {}", socket.display()),
        Backend::Vfio { pci_address, group } => {
            format!("VFIO group {} (PCI {pci_address})", group.display())
        }
        Backend::Macvtap {
            name,
            chardev: Some(dev),
            ..
        } => format!("macvtap {name} (char device {dev})"),
        Backend::Tap { name, .. } | Backend::Macvtap { name, .. } => format!("tap {name}"),
        Backend::None => "nothing (model none)".to_string(),
    };
    format!(
        "{} ({}) -> {vmm}  mac {}  mtu {}  queues {}",
        ep.name,
        ep.kind.as_str(),
        sandbox_net::mac::text_or_empty(ep.mac),
        ep.mtu,
        ep.queues
    )
}

/// A note on stderr (what a rendering could not carry, a default taken).
pub fn note(text: &str) {
    write_err(format_args!("sandbox-net: note: {text}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value serde can't encode.
    struct Unencodable;

    impl serde::Serialize for Unencodable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("not encodable"))
        }
    }

    #[test]
    fn a_value_that_cannot_be_encoded_is_an_internal_failure() {
        let e = print_json(&Unencodable).expect_err("not encodable");
        assert_eq!(e.exit_code(), 1, "{e}");
        assert_eq!(e.to_string(), "output: cannot encode JSON: not encodable");
    }
}
