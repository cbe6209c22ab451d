//! SIGTERM and SIGINT as a stop flag for `watch`: the handler only sets an atomic flag,
//! which the watch loop checks between waits of at most half a second. The handlers are
//! installed without SA_RESTART, so a signal also cuts the current wait short.

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use crate::{Error, Result};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// Install the SIGTERM and SIGINT handlers; returns the flag they set.
pub fn stop_on_signals() -> Result<&'static AtomicBool> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe; no other
        // handler of these signals is relied upon in this process.
        unsafe { sigaction(signal, &action) }.map_err(|e| {
            Error::kernel("watch", format!("install the {signal} handler"), e.into())
        })?;
    }
    Ok(&STOP)
}
