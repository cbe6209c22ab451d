//! The process entry. The binary starts at a C `main` of its own instead of Rust's runtime
//! start (`#![no_main]`), because it runs on every sandbox start and every CNI call and
//! that start-up is a tenth of its process: Rust's start reads the whole of
//! `/proc/self/maps` (the main thread's stack bounds, for its stack overflow message) and
//! sets up an alternate signal stack, about 100 µs of a 1.1 ms `--version` here
//! (docs/BENCHMARKS.md, "Setup, round two", item 3). What that start did and this binary
//! relies on is done here: standard fds 0 to 2 that are closed are opened on `/dev/null`
//! (so no file the command opens can become its stdout), SIGPIPE is ignored (a closed
//! stdout is an `EPIPE` the output module answers quietly), a panic exits 101 after its
//! message, and stdout is flushed before exit. The arguments are taken from `main`'s own
//! `argv`, not from `std::env::args` (which only glibc fills without Rust's start; a musl
//! build would see none). What differs: a stack overflow, of any thread, is a plain SIGSEGV
//! (exit by signal 11) without Rust's "has overflowed its stack" message and its abort
//! (signal 6); a panic's message names the main thread `<unnamed>`, and a backtrace goes
//! on below `main`.

use std::ffi::{CStr, OsString, c_char, c_int};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

/// Make fds 0, 1 and 2 open: each one that is closed is opened on `/dev/null`. An open
/// takes the lowest free fd, so opening in the order the fds are found closed fills
/// exactly those. Aborts when that is impossible, as Rust's own start does.
fn sanitize_standard_fds() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    loop {
        // SAFETY: `fds` is a valid array of three pollfd that outlives the call; a timeout
        // of 0 never blocks.
        if unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } != -1 {
            break;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            // poll can't run (fd limit, memory): ask each fd instead.
            Some(libc::EINVAL | libc::EAGAIN | libc::ENOMEM) => {
                for entry in &mut fds {
                    // SAFETY: F_GETFD only reads the fd's flags; any fd number is valid input.
                    let closed = unsafe { libc::fcntl(entry.fd, libc::F_GETFD) } == -1
                        && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF);
                    entry.revents = if closed { libc::POLLNVAL } else { 0 };
                }
                break;
            }
            _ => std::process::abort(),
        }
    }
    for entry in fds {
        if entry.revents & libc::POLLNVAL != 0 {
            // SAFETY: the path is a NUL-terminated literal; the fd is deliberately left open
            // for the life of the process as the standard fd it fills.
            if unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) } == -1 {
                std::process::abort();
            }
        }
    }
}

/// The arguments `main` was given.
///
/// # Safety
/// `argv` must hold `argc` pointers to NUL-terminated strings that outlive the call, as
/// the C runtime passes them to `main`.
unsafe fn arguments(argc: c_int, argv: *const *const c_char) -> Vec<OsString> {
    let count = usize::try_from(argc).unwrap_or(0);
    (0..count)
        .map(|i| {
            // SAFETY: i < argc, so argv[i] is within the array the caller vouches for.
            let arg = unsafe { *argv.add(i) };
            // SAFETY: each argv[i] is a NUL-terminated string that outlives this copy.
            std::ffi::OsStr::from_bytes(unsafe { CStr::from_ptr(arg) }.to_bytes()).to_owned()
        })
        .collect()
}

/// Run `command` with the process's arguments as the process: the set-up above, then
/// `command`'s exit status, 101 if it panicked (its message is already printed by the
/// panic hook).
///
/// # Safety
/// As for [`arguments`]: `argv` holds `argc` pointers to NUL-terminated strings that
/// outlive the call (what the C runtime passes to `main` does).
pub unsafe fn run(
    argc: c_int,
    argv: *const *const c_char,
    command: fn(Vec<OsString>) -> u8,
) -> c_int {
    sanitize_standard_fds();
    // SAFETY: signal(2) only sets SIGPIPE's disposition (thread-safe); no handler of
    // SIGPIPE is relied upon in this process.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // SAFETY: the caller vouches for argc and argv (this function's contract).
    let args = unsafe { arguments(argc, argv) };
    let status = std::panic::catch_unwind(|| command(args)).unwrap_or(101);
    // The commands flush what they print as they print it (`output::write_out`, the CNI
    // result), and report a failure there; this flush, as Rust's own exit does, only
    // covers a stray buffered write, with nowhere left to report its failure.
    let _ = std::io::stdout().lock().flush();
    c_int::from(status)
}

#[cfg(test)]
mod tests {
    use std::ffi::{CString, OsString, c_char};

    use super::run;

    /// `run` as `main` calls it, with `args` as argv.
    fn run_with(args: &[&str], command: fn(Vec<OsString>) -> u8) -> i32 {
        let owned: Vec<CString> = args
            .iter()
            .map(|a| CString::new(*a).expect("no NUL"))
            .collect();
        let mut argv: Vec<*const c_char> = owned.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let argc = i32::try_from(owned.len()).expect("few arguments");
        // SAFETY: argv holds argc NUL-terminated strings (and a NULL) that outlive the call.
        unsafe { run(argc, argv.as_ptr(), command) }
    }

    #[test]
    fn the_command_gets_main_s_arguments_and_its_status_is_the_process_s() {
        assert_eq!(
            run_with(&["sandbox-net", "status", "--json"], |args| {
                if args == ["sandbox-net", "status", "--json"] {
                    3
                } else {
                    1
                }
            }),
            3
        );
    }

    #[test]
    fn a_panic_exits_101() {
        assert_eq!(
            run_with(&["sandbox-net"], |_| panic!("a command that panics")),
            101
        );
    }
}
