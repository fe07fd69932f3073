//! The simulated market's clock ([`SimClock`]): starts at a given Unix second and runs a
//! given number of times faster than real time.
//!
//! A replay's clock is made held ([`SimClock::held`]): it reads its start until released
//! ([`SimClock::release`], at the first subscription), so that a history asked for before the
//! live bars is the recorded run's.
//!
//! Invariants: two clocks made with the same start, anchor and speed read the same whenever
//! each was made (so a replacement worker continues its predecessor's market); a clock never
//! runs backwards; a speed that is not a positive number is real time; a held clock reads its
//! start until released, and is released once.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The market's clock: starts at a given Unix second and runs `speed` times real time.
#[derive(Debug)]
pub struct SimClock {
    /// When it began to run (unset while held).
    started: OnceLock<Instant>,
    start: f64,
    speed: f64,
}

impl SimClock {
    /// A clock reading `start` at wall time `anchor_ms` (both default to now) and running
    /// `speed` times real time from then.
    pub fn new(start: Option<i64>, anchor_ms: Option<u64>, speed: f64) -> Self {
        let speed = if speed.is_finite() && speed > 0.0 {
            speed
        } else {
            1.0
        };
        let wall_now = base::unix_time::now().as_secs_f64();
        let start = start.map_or(wall_now, |s| s as f64);
        let since_anchor = anchor_ms.map_or(0.0, |a| (wall_now - a as f64 / 1000.0).max(0.0));
        SimClock {
            started: OnceLock::from(Instant::now()),
            start: start + since_anchor * speed,
            speed,
        }
    }

    /// A clock reading `start` until [`release`](Self::release)d, then running `speed` times
    /// real time.
    pub fn held(start: i64, speed: f64) -> Self {
        let clock = SimClock::new(Some(start), None, speed);
        SimClock {
            started: OnceLock::new(),
            ..clock
        }
    }

    /// Lets a held clock run from now (nothing for one that runs).
    pub fn release(&self) {
        let _ = self.started.set(Instant::now());
    }

    /// Whether it is held (made held and not released yet).
    pub fn is_held(&self) -> bool {
        self.started.get().is_none()
    }

    /// Real seconds it has run.
    fn elapsed(&self) -> f64 {
        self.started
            .get()
            .map_or(0.0, |s| s.elapsed().as_secs_f64())
    }

    /// Market time now, Unix seconds.
    pub fn now(&self) -> i64 {
        (self.start + self.elapsed() * self.speed).floor() as i64
    }

    /// Real time until market time reaches `t` (were it released now, for a held clock).
    pub fn until(&self, t: i64) -> Duration {
        let ahead = t as f64 - (self.start + self.elapsed() * self.speed);
        Duration::from_secs_f64((ahead / self.speed).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_anchored_alike_agree_whenever_they_start() {
        let anchor_ms = base::unix_time::now().as_millis() as u64 - 10_000;
        let a = SimClock::new(Some(1_700_000_000), Some(anchor_ms), 60.0);
        std::thread::sleep(Duration::from_millis(50));
        let b = SimClock::new(Some(1_700_000_000), Some(anchor_ms), 60.0);
        // Ten seconds after the anchor at 60x: 600 simulated seconds later.
        assert!((a.now() - (1_700_000_000 + 600)).abs() <= 5, "{}", a.now());
        assert!((a.now() - b.now()).abs() <= 1);
    }

    #[test]
    fn a_held_clock_reads_its_start_until_released() {
        let c = SimClock::held(1_700_000_000, 1000.0);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(c.now(), 1_700_000_000);
        c.release();
        std::thread::sleep(Duration::from_millis(30));
        let after = c.now();
        assert!(after >= 1_700_000_030, "{after}");
        // Released once: a second release does not set it back.
        c.release();
        assert!(c.now() >= after);
    }
}
