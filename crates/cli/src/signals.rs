//! SIGTERM and SIGINT as a stop flag, for `watch` and `demo`: the handler only sets an
//! atomic flag, which the watch loop checks between waits of at most half a second and the
//! demo between its steps. The handlers are installed without SA_RESTART, so a signal also
//! cuts the current wait short. Process-wide, so the CLI installs them, never the library.

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use sandbox_net::Error;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// Install the SIGTERM and SIGINT handlers for `command`; returns the flag they set.
pub fn stop_on_signals(command: &str) -> Result<&'static AtomicBool, Error> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe; no other
        // handler of these signals is relied upon in this process.
        unsafe { sigaction(signal, &action) }.map_err(|e| {
            Error::kernel(command, format!("install the {signal} handler"), e.into())
        })?;
    }
    Ok(&STOP)
}
