//! STATUS and VERSION: whether the plugin can serve ADD, and which spec versions it speaks.

use std::os::unix::fs::FileTypeExt;

use serde_json::{Value, json};

use super::config::NetConf;
use super::error::CniError;
use super::version;
use crate::state::StateDir;

/// The device every tap is made through.
const TUN_DEVICE: &str = "/dev/net/tun";

/// Run STATUS: ready when /dev/net/tun is there and the state directory is usable (or can
/// be created on the first ADD).
pub fn status(conf: &NetConf) -> Result<(), CniError> {
    match std::fs::metadata(TUN_DEVICE) {
        Ok(m) if m.file_type().is_char_device() => {}
        Ok(_) => {
            return Err(CniError::NotAvailable {
                reason: format!("{TUN_DEVICE} is not a character device"),
            });
        }
        Err(e) => {
            return Err(CniError::NotAvailable {
                reason: format!("{TUN_DEVICE}: {e}"),
            });
        }
    }
    let dir = conf.state_dir()?;
    StateDir::open_existing(&dir).map_err(|e| CniError::NotAvailable {
        reason: e.to_string(),
    })?;
    Ok(())
}

/// Run VERSION: the answer is in the version the caller asked in, when we speak it.
pub fn version(stdin_version: Option<&str>) -> Value {
    let answer = stdin_version
        .filter(|v| version::is_supported(v))
        .unwrap_or(version::LATEST);
    // Alphabetical (serde_json's map order) is also the spec's order here.
    json!({
        "cniVersion": answer,
        "supportedVersions": version::SUPPORTED,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_answers_in_the_asked_version() {
        assert_eq!(version(Some("0.4.0"))["cniVersion"], "0.4.0");
        assert_eq!(version(Some("9.9.9"))["cniVersion"], "1.1.0");
        assert_eq!(version(None)["supportedVersions"][0], "0.3.1");
    }
}
