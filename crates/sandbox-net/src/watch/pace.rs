//! How often `watch` may compare the netns with the state, whatever the tenant does: a pod
//! is root in its netns and can make notifications as fast as the kernel takes its
//! requests, while every round costs root four dumps, a state load and maybe a save.
//!
//! A generic cell rate: each round costs `max(MIN_COST, DUTY × its duration)` of budget,
//! the budget refills at one second per second and holds `BURST` rounds' worth. The first
//! change after a quiet spell is handled at once, as are the few rounds an interface's
//! set-up takes (create, address, up; the round that attaches it, the one that sees the
//! tap); under a sustained flood rounds come at most every `MIN_COST` (10 per second) and
//! take at most `1 / DUTY` of the time (a round made long by a large routing table is
//! followed by a longer pause). Notifications that arrive meanwhile coalesce: the next
//! round's scan sees all of them.

use std::time::{Duration, Instant};

/// The least a round costs: under a flood, at most one round per `MIN_COST`.
pub const MIN_COST: Duration = Duration::from_millis(100);
/// A round costs this many times its own duration: rounds take at most 1/DUTY of the time.
pub const DUTY: u32 = 5;
/// Rounds that may follow each other without a pause after a quiet spell.
pub const BURST: u32 = 8;

/// When the next round may start.
#[derive(Debug, Clone)]
pub struct Pace {
    /// The theoretical time at which the budget spent so far is paid back.
    paid_at: Instant,
}

impl Pace {
    pub fn new(now: Instant) -> Pace {
        Pace { paid_at: now }
    }

    /// How long to wait before the next round may start (zero: now).
    pub fn wait(&self, now: Instant) -> Duration {
        let tolerance = MIN_COST * (BURST - 1);
        self.paid_at
            .saturating_duration_since(now)
            .saturating_sub(tolerance)
    }

    /// Account for a round that ran from `started` to `ended`.
    pub fn ran(&mut self, started: Instant, ended: Instant) {
        let cost = (ended.saturating_duration_since(started) * DUTY).max(MIN_COST);
        self.paid_at = self.paid_at.max(started) + cost;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rounds of `length` started as soon as allowed, from `t0`, until `until`: their count.
    fn rounds(length: Duration, until: Duration) -> u32 {
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        let mut now = t0;
        let mut n = 0;
        while now < t0 + until {
            now += pace.wait(now);
            pace.ran(now, now + length);
            now += length;
            n += 1;
        }
        n
    }

    #[test]
    fn a_burst_runs_at_once_then_rounds_are_spaced() {
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        let mut now = t0;
        for _ in 0..BURST {
            assert_eq!(pace.wait(now), Duration::ZERO);
            pace.ran(now, now + Duration::from_millis(1));
            now += Duration::from_millis(1);
        }
        assert!(pace.wait(now) > Duration::from_millis(50), "{pace:?}");
        // After a quiet spell the budget is back.
        let later = now + MIN_COST * BURST;
        assert_eq!(pace.wait(later), Duration::ZERO);
    }

    #[test]
    fn sustained_rounds_are_bounded_in_count_and_in_time() {
        // Cheap rounds: about 10 a second (plus the burst).
        let n = rounds(Duration::from_millis(1), Duration::from_secs(10));
        assert!((100..=100 + BURST + 1).contains(&n), "{n}");
        // Expensive rounds (200 ms): busy at most 1/DUTY of the time.
        let length = Duration::from_millis(200);
        let n = rounds(length, Duration::from_secs(20));
        let busy = length * n;
        assert!(
            busy <= Duration::from_secs(20) / DUTY + length * BURST,
            "{n} rounds"
        );
    }
}
