//! STATUS and VERSION: whether the plugin can serve ADD, and which spec versions it speaks.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use serde_json::{Value, json};

use super::config::NetConf;
use super::error::CniError;
use super::version;
use crate::state::StateDir;
use crate::trusted_dir::untrusted_parent;

/// The device every tap is made through.
const TUN_DEVICE: &str = "/dev/net/tun";

/// Run STATUS: the configuration is one ADD would take (else its error, code 7), and the
/// plugin can serve ADD: /dev/net/tun is there and the state directory is usable, or can
/// be created on the first ADD below a trusted directory (else code 50).
pub fn status(conf: &NetConf) -> Result<(), CniError> {
    conf.validate()?;
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
    let unusable = |e: crate::Error| CniError::NotAvailable {
        reason: e.to_string(),
    };
    if StateDir::open_existing(&dir).map_err(unusable)?.is_some() {
        return Ok(());
    }
    // Missing: the first ADD creates it below its nearest existing ancestor, which must be
    // a directory trusted as the state directory's parents are.
    let (ancestor, meta) = dir
        .ancestors()
        .skip(1)
        .find_map(|a| std::fs::metadata(a).ok().map(|m| (a, m)))
        .ok_or_else(|| CniError::NotAvailable {
            reason: format!("state directory {}: no parent of it exists", dir.display()),
        })?;
    let refusal = if !meta.is_dir() {
        Some("is not a directory".to_string())
    } else {
        untrusted_parent(meta.uid(), meta.mode(), nix::unistd::geteuid().as_raw())
    };
    match refusal {
        None => Ok(()),
        Some(why) => Err(CniError::NotAvailable {
            reason: format!(
                "state directory {} can't be created: {} {why}",
                dir.display(),
                ancestor.display()
            ),
        }),
    }
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
        assert_eq!(version(Some("0.3.0"))["cniVersion"], "0.3.0");
        assert_eq!(version(None)["supportedVersions"][0], "0.3.0");
    }
}
