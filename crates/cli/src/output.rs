//! What the subcommands print: JSON (`--json`), and the human-readable lines shared by
//! several of them. Notes and warnings go to stderr, so that stdout stays what was asked
//! for.

use sandbox_net::rate::Rate;
use sandbox_net::{Attachment, Backend, Endpoint, Error};

/// A value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::encode("output", e))?;
    println!("{text}");
    Ok(())
}

/// An attachment as JSON, or a header line and one line per endpoint.
pub fn print_attachment(a: &Attachment, json: bool, header: &str) -> Result<(), Error> {
    if json {
        return print_json(a);
    }
    println!("{header}");
    for ep in &a.endpoints {
        println!("  {}", describe_endpoint(ep));
    }
    Ok(())
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
    eprintln!("sandbox-net: note: {text}");
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
