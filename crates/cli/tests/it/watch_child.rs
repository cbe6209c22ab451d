//! A `sandbox-net watch --json` child whose stdout lines are read as events (shared by the
//! watch tests).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::common::{TempStateDir, bin};

/// A `sandbox-net watch --json` child; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Watch {
    pub child: Child,
    lines: Receiver<(Instant, Value)>,
    /// Every event read so far, with its arrival time.
    pub seen: Vec<(Instant, Value)>,
}

impl Watch {
    /// `watch --id ID --json` of the binary under test.
    pub fn start(dir: &TempStateDir, id: &str) -> Watch {
        Watch::spawn(Command::new(bin()), dir.path(), id)
    }

    /// `watch --id ID --json` run by `cmd` (a binary, with its environment and stderr set
    /// by the caller).
    pub fn spawn(mut cmd: Command, dir: &Path, id: &str) -> Watch {
        let mut child = cmd
            .args(["--state-dir", dir.to_str().unwrap_or_default()])
            .args(["watch", "--id", id, "--json"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sandbox-net watch");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("watch printed a line that is not JSON ({e}): {line}")
                });
                if tx.send((Instant::now(), value)).is_err() {
                    break;
                }
            }
        });
        // The watch subscribes before its first scan, so nothing done now could be missed;
        // this pause only keeps process start-up out of the latency figures.
        std::thread::sleep(Duration::from_secs(1));
        Watch {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Wait for the next event matching `pred` (up to `wait`); earlier ones are kept in
    /// `seen` too.
    pub fn until(
        &mut self,
        what: &str,
        wait: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> (Instant, Value) {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, event)) => {
                    self.seen.push((at, event.clone()));
                    if pred(&event) {
                        return (at, event);
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no {what} event within {wait:?}; events so far: {:#?}",
                    self.seen.iter().map(|(_, e)| e).collect::<Vec<_>>()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "watch ended before a {what} event; events: {:#?}",
                    self.seen.iter().map(|(_, e)| e).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Wait (up to `wait`) for the process to exit; None if it did not.
    pub fn wait_exit(&mut self, wait: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + wait;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.child.id() as i32);
        kill(pid, signal).expect("signal the watch process");
    }

    /// SIGTERM, then wait up to 10 s: the exit code (None: still running, or killed).
    pub fn terminate(&mut self) -> Option<i32> {
        self.signal(Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(10))
            .and_then(|s| s.code())
    }

    /// Stop it (SIGTERM) and wait for it to exit; every event it printed.
    pub fn stop(mut self) -> Vec<Value> {
        self.terminate();
        self.rest();
        self.seen.drain(..).map(|(_, e)| e).collect()
    }

    /// The events left on stdout after the process exited.
    pub fn rest(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok((at, e)) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push((at, e.clone()));
            out.push(e);
        }
        out
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            if self.wait_exit(Duration::from_secs(10)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}
