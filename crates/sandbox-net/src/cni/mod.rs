//! sandbox-net as a chained CNI plugin.
//!
//! The `sandbox-net` binary acts as a CNI plugin when CNI_COMMAND is set: it reads the
//! network configuration from stdin and the CNI_* variables, and writes the result (or the
//! spec's error JSON) to stdout; logs go to stderr. ADD attaches CNI_IFNAME, the interface
//! the previous plugin of the chain made, with the library's `attach`, and returns the
//! previous result plus the tap and the VM's interface. Attachments share the state
//! directory with the CLI under a sandbox id derived from the container id and CNI_IFNAME
//! (see [`id`]); a small record (see [`record`]) marks them as CNI's for DEL and GC.
//!
//! | module | one concept |
//! |---|---|
//! | `version` | supported spec versions and comparing them |
//! | `error` | `CniError`, its spec code, the error JSON |
//! | `env`, `args` | the CNI_* variables, and the keys of CNI_ARGS |
//! | `config` | the network configuration and sandbox-net's keys |
//! | `result` | decoding prevResult, adding our interfaces, encoding per version |
//! | `id`, `record` | the sandbox id and tap name rules; the CNI records |
//! | `wait` | waiting a bounded time (`lockTimeout`) for a sandbox another process holds |
//! | `relocate` | finding a sandbox's netns by its identity when its recorded path is gone |
//! | `add`, `del`, `check`, `status` | the commands (DEL and GC share `del`) |

pub mod add;
pub mod args;
pub mod check;
pub mod config;
pub mod del;
pub mod env;
pub mod error;
pub mod id;
pub mod record;
pub mod relocate;
pub mod result;
pub mod status;
pub mod version;
pub mod wait;

use std::io::{Read, Write};

pub use env::{COMMAND as COMMAND_ENV, CniEnv, Command};
pub use error::CniError;
pub use id::sandbox_id;

use config::NetConf;

/// Run one CNI command with `stdin` as the network configuration. `Ok(Some(json))` is
/// the output of ADD and VERSION; the other commands print nothing on success.
pub fn dispatch(env: &CniEnv, stdin: &[u8]) -> Result<Option<String>, CniError> {
    let command = env.command()?;
    if command == Command::Version {
        let answer = status::version(config::peek_version(stdin).as_deref());
        return Ok(Some(answer.to_string()));
    }
    let conf = NetConf::parse(stdin)?;
    match command {
        Command::Add => add::add(env, &conf).map(Some),
        Command::Del => del::del(env, &conf).map(|()| None),
        Command::Check => {
            conf.require_version("CHECK", version::CHECK_SINCE)?;
            check::check(env, &conf).map(|()| None)
        }
        Command::Gc => {
            conf.require_version("GC", version::GC_STATUS_SINCE)?;
            del::gc(&conf).map(|()| None)
        }
        Command::Status => {
            conf.require_version("STATUS", version::GC_STATUS_SINCE)?;
            status::status(&conf).map(|()| None)
        }
        Command::Version => Ok(None),
    }
}

fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// The plugin's entry point: read env and stdin, run the command, print the result or
/// the error JSON. Returns the process exit code (0 ok, 1 error).
pub fn run() -> u8 {
    let env = CniEnv::from_process();
    let mut stdin = Vec::new();
    let outcome = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => dispatch(&env, &stdin),
        Err(source) => Err(CniError::Stdin { source }),
    };
    let (output, code) = match outcome {
        Ok(None) => return 0,
        Ok(Some(text)) => (text, 0),
        Err(e) => {
            let cni_version = config::peek_version(&stdin)
                .filter(|v| version::is_supported(v))
                .unwrap_or_else(|| version::LATEST.to_string());
            tracing::error!(code = e.code(), error = %e, "CNI command failed");
            (e.to_json(&cni_version), 1)
        }
    };
    match print(&output) {
        Ok(()) => code,
        Err(e) => {
            tracing::error!(error = %e, "could not write to stdout");
            1
        }
    }
}
