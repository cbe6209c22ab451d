//! CNI_ARGS: "K1=V1;K2=V2". sandbox-net reads TAP_NAME, TAP_UID and TAP_GID, which
//! override the configuration's `tapName`, `tapUid` and `tapGid`; other keys (K8S_POD_NAME,
//! IgnoreUnknown, ...) are ignored.

use crate::tap;

pub const TAP_NAME: &str = "TAP_NAME";
pub const TAP_UID: &str = "TAP_UID";
pub const TAP_GID: &str = "TAP_GID";

/// What sandbox-net takes from CNI_ARGS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub tap_name: Option<String>,
    pub tap_uid: Option<u32>,
    pub tap_gid: Option<u32>,
}

fn id_value(key: &str, value: &str) -> Result<u32, String> {
    value
        .parse::<u32>()
        .map_err(|_| format!("{key}={value:?}: not a numeric id"))
}

impl CniArgs {
    /// Parse "K1=V1;K2=V2" (empty pairs are skipped; a pair without '=' is an error).
    pub fn parse(text: &str) -> Result<CniArgs, String> {
        let mut out = CniArgs::default();
        for pair in text.split(';').filter(|p| !p.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(format!("{pair:?} is not KEY=VALUE"));
            };
            match key {
                TAP_NAME => {
                    tap::validate_ifname(value)
                        .map_err(|reason| format!("{TAP_NAME}={value:?}: {reason}"))?;
                    out.tap_name = Some(value.to_string());
                }
                TAP_UID => out.tap_uid = Some(id_value(key, value)?),
                TAP_GID => out.tap_gid = Some(id_value(key, value)?),
                _ => {}
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys_are_read_and_others_ignored() {
        let a =
            CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAME=p;TAP_NAME=vm0;TAP_UID=10;TAP_GID=20;")
                .expect("parse");
        assert_eq!(
            a,
            CniArgs {
                tap_name: Some("vm0".into()),
                tap_uid: Some(10),
                tap_gid: Some(20)
            }
        );
        assert_eq!(CniArgs::parse(""), Ok(CniArgs::default()));
    }

    #[test]
    fn bad_pairs_and_values_are_refused() {
        assert!(CniArgs::parse("TAP_NAME").is_err());
        assert!(CniArgs::parse("TAP_UID=root").is_err());
        assert!(CniArgs::parse("TAP_NAME=a/b").is_err());
        assert!(CniArgs::parse("TAP_NAME=").is_err());
    }
}
