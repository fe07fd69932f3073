//! How often a worker may be restarted: at most `max` restarts within any `window` (a restart
//! intensity, as OTP supervisors have), so that restarts spread over a long run never add up
//! to giving up, while a worker that keeps dying at once still ends the run.
//!
//! Invariant: `recent` holds the times of the restarts of the last `window`, oldest first,
//! never more than `max` of them.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Restarts allowed per window.
#[derive(Debug)]
pub struct RestartIntensity {
    max: u32,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl RestartIntensity {
    /// At most `max` restarts within any `window`.
    pub fn new(max: u32, window: Duration) -> Self {
        RestartIntensity {
            max,
            window,
            recent: VecDeque::new(),
        }
    }

    /// Asks for a restart at `now`: granted (and counted) if fewer than `max` restarts
    /// happened within the window before it; refused with that count otherwise.
    pub fn permit(&mut self, now: Instant) -> Result<(), u32> {
        while let Some(&t) = self.recent.front() {
            if now.saturating_duration_since(t) >= self.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        let within = self.recent.len() as u32;
        if within >= self.max {
            return Err(within);
        }
        self.recent.push_back(now);
        Ok(())
    }

    /// The window restarts are counted over.
    pub fn window(&self) -> Duration {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_within_the_window_add_up_and_older_ones_do_not() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut r = RestartIntensity::new(3, s(60));
        assert_eq!(r.permit(t0), Ok(()));
        assert_eq!(r.permit(t0 + s(10)), Ok(()));
        assert_eq!(r.permit(t0 + s(20)), Ok(()));
        assert_eq!(r.permit(t0 + s(30)), Err(3));
        // The first restart leaves the window at t0 + 60.
        assert_eq!(r.permit(t0 + s(59)), Err(3));
        assert_eq!(r.permit(t0 + s(60)), Ok(()));
        assert_eq!(r.permit(t0 + s(61)), Err(3));
    }

    #[test]
    fn a_long_run_with_rare_restarts_never_gives_up() {
        let t0 = Instant::now();
        let mut r = RestartIntensity::new(2, Duration::from_secs(60));
        // A day of a restart every 40 minutes: 36 restarts, never 2 within a minute.
        for i in 0..36u64 {
            assert_eq!(r.permit(t0 + Duration::from_secs(i * 2400)), Ok(()), "{i}");
        }
    }

    #[test]
    fn zero_allows_no_restart() {
        let mut r = RestartIntensity::new(0, Duration::from_secs(60));
        assert_eq!(r.permit(Instant::now()), Err(0));
    }
}
