//! Interworking models: how an endpoint's traffic is carried to the VM.

pub mod tcfilter;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The interworking model of an attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    /// A tap per endpoint, joined to it by two tc u32 match-all mirred redirect filters.
    Tcfilter,
}

impl Model {
    pub const NAMES: &'static [&'static str] = &["tcfilter"];

    pub fn as_str(self) -> &'static str {
        match self {
            Model::Tcfilter => "tcfilter",
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Model {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "tcfilter" => Ok(Model::Tcfilter),
            other => Err(Error::invalid(
                format!("model {other:?}"),
                format!("unknown model (known: {})", Model::NAMES.join(", ")),
            )),
        }
    }
}
