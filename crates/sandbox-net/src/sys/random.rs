//! Random bytes from the kernel (`getrandom`).

use std::io;

/// Fill `buf` with random bytes.
pub fn fill(buf: &mut [u8]) -> io::Result<()> {
    // SAFETY: getrandom writes at most `buf.len()` bytes into `buf`, which we borrow
    // mutably for the call.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != buf.len() {
        return Err(io::Error::other(format!(
            "getrandom gave {n} of {} bytes",
            buf.len()
        )));
    }
    Ok(())
}
