//! The CNI environment variables: CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME,
//! CNI_ARGS (CNI_PATH is not needed: sandbox-net delegates to no other plugin). Which
//! ones a command needs is the command's business; this module reads and checks them.

use std::ffi::OsString;

use super::args::CniArgs;
use super::error::CniError;
use crate::tap;

pub const COMMAND: &str = "CNI_COMMAND";
pub const CONTAINER_ID: &str = "CNI_CONTAINERID";
pub const NETNS: &str = "CNI_NETNS";
pub const IFNAME: &str = "CNI_IFNAME";
pub const ARGS: &str = "CNI_ARGS";

/// The CNI commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub const NAMES: &'static [&'static str] = &["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION"];

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }

    fn parse(text: &str) -> Option<Command> {
        Some(match text {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }
}

/// One variable: unset, set to valid UTF-8, or set to something else.
#[derive(Debug, Clone)]
enum Var {
    Unset,
    Set(String),
    NotUtf8,
}

impl Var {
    fn from_os(value: Option<OsString>) -> Var {
        match value.map(OsString::into_string) {
            None => Var::Unset,
            Some(Ok(s)) if s.is_empty() => Var::Unset,
            Some(Ok(s)) => Var::Set(s),
            Some(Err(_)) => Var::NotUtf8,
        }
    }

    fn optional(&self, name: &'static str) -> Result<Option<&str>, CniError> {
        match self {
            Var::Unset => Ok(None),
            Var::Set(s) => Ok(Some(s)),
            Var::NotUtf8 => Err(CniError::env(name, "is not valid UTF-8")),
        }
    }

    fn required(&self, name: &'static str) -> Result<&str, CniError> {
        self.optional(name)?
            .ok_or_else(|| CniError::env(name, "is not set (or empty)"))
    }
}

/// The CNI variables of one invocation.
#[derive(Debug, Clone)]
pub struct CniEnv {
    command: Var,
    container_id: Var,
    netns: Var,
    ifname: Var,
    args: Var,
}

impl CniEnv {
    /// Read the variables of this process.
    pub fn from_process() -> CniEnv {
        CniEnv::from_lookup(|name| std::env::var_os(name))
    }

    /// Read the variables through `lookup` (for tests: a map instead of the process env).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> CniEnv {
        CniEnv {
            command: Var::from_os(lookup(COMMAND)),
            container_id: Var::from_os(lookup(CONTAINER_ID)),
            netns: Var::from_os(lookup(NETNS)),
            ifname: Var::from_os(lookup(IFNAME)),
            args: Var::from_os(lookup(ARGS)),
        }
    }

    pub fn command(&self) -> Result<Command, CniError> {
        let text = self.command.required(COMMAND)?;
        Command::parse(text).ok_or_else(|| {
            CniError::env(
                COMMAND,
                format!(
                    "unknown command {text:?} (known: {})",
                    Command::NAMES.join(", ")
                ),
            )
        })
    }

    /// CNI_CONTAINERID, checked against the spec: an alphanumeric first character, then
    /// alphanumerics, '_', '.' or '-'.
    pub fn container_id(&self) -> Result<&str, CniError> {
        let id = self.container_id.required(CONTAINER_ID)?;
        let mut chars = id.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !(first_ok && rest_ok) {
            return Err(CniError::env(
                CONTAINER_ID,
                format!(
                    "{id:?} is not a valid container id (an alphanumeric character, then alphanumerics, '_', '.' or '-')"
                ),
            ));
        }
        Ok(id)
    }

    /// CNI_NETNS, required.
    pub fn netns(&self) -> Result<&str, CniError> {
        self.netns.required(NETNS)
    }

    /// CNI_NETNS when given (DEL may go without).
    pub fn netns_opt(&self) -> Result<Option<&str>, CniError> {
        self.netns.optional(NETNS)
    }

    /// CNI_IFNAME, checked like any interface name.
    pub fn ifname(&self) -> Result<&str, CniError> {
        let name = self.ifname.required(IFNAME)?;
        tap::validate_ifname(name)
            .map_err(|reason| CniError::env(IFNAME, format!("{name:?} {reason}")))?;
        Ok(name)
    }

    /// CNI_ARGS, parsed (empty when unset).
    pub fn args(&self) -> Result<CniArgs, CniError> {
        match self.args.optional(ARGS)? {
            None => Ok(CniArgs::default()),
            Some(text) => CniArgs::parse(text).map_err(|reason| CniError::env(ARGS, reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> CniEnv {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CniEnv::from_lookup(|name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| OsString::from(v))
        })
    }

    #[test]
    fn commands_parse_and_unknown_ones_are_refused() {
        assert_eq!(env(&[(COMMAND, "ADD")]).command().ok(), Some(Command::Add));
        let e = env(&[(COMMAND, "FROB")]).command().err().map(|e| e.code());
        assert_eq!(e, Some(4));
    }

    #[test]
    fn container_ids_follow_the_spec() {
        assert!(env(&[(CONTAINER_ID, "abc-1.2_3")]).container_id().is_ok());
        for bad in ["-abc", "a b", "a/b", ""] {
            assert!(env(&[(CONTAINER_ID, bad)]).container_id().is_err(), "{bad}");
        }
    }

    #[test]
    fn empty_means_unset_and_ifnames_are_checked() {
        assert!(env(&[(NETNS, "")]).netns().is_err());
        assert_eq!(env(&[]).netns_opt().ok(), Some(None));
        assert!(env(&[(IFNAME, "eth0")]).ifname().is_ok());
        assert!(
            env(&[(IFNAME, "a-name-that-is-too-long")])
                .ifname()
                .is_err()
        );
        assert!(env(&[(IFNAME, "a/b")]).ifname().is_err());
    }
}
