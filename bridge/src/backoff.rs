//! Backing off in a busy-poll: what a thread does each time it looks for work and finds none.
//!
//! After crossbeam's `Backoff`: the caller keeps one [`Backoff`] for its wait, calls
//! [`snooze`](Backoff::snooze) after every empty poll, [`reset`](Backoff::reset) when work
//! arrives, and asks [`is_completed`](Backoff::is_completed) whether spinning has stopped
//! paying and it should block instead (a caller that must never block, such as a busy-polling
//! dispatcher, keeps snoozing).
//!
//! The schedule is fixed: every turn is one spin hint, except every
//! [`YIELD_EVERY`](Backoff::YIELD_EVERY)-th, which yields the core instead. Spinning one hint
//! a turn (no growing runs of hints) keeps the gap between two polls at its shortest, which
//! is what a busy-poll is for; the periodic yield lets a poller sharing its core with another
//! runnable thread (the application's, on a machine without a core to spare for each) hand
//! it the core at once instead of at the end of its time slice.
//!
//! Invariants: [`snooze`](Backoff::snooze) never sleeps; the schedule depends only on the
//! turns since the last [`reset`](Backoff::reset), and it survives the counter wrapping
//! (`u32::MAX + 1` is a multiple of [`YIELD_EVERY`](Backoff::YIELD_EVERY)).

#![forbid(unsafe_code)]

/// The state of one busy-poll's backing off: see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    /// Turns since the last reset, wrapping.
    turns: u32,
    /// Whether a yield happened since the last reset.
    yielded: bool,
}

impl Backoff {
    /// Turns from one yield to the next: `YIELD_EVERY - 1` spin hints, then a yield.
    pub const YIELD_EVERY: u32 = 64;

    /// A fresh backoff: the next yield comes after `YIELD_EVERY - 1` spin hints.
    pub const fn new() -> Backoff {
        Backoff {
            turns: 0,
            yielded: false,
        }
    }

    /// Starts over, after the poll found work.
    pub fn reset(&mut self) {
        *self = Backoff::new();
    }

    /// One turn of waiting: a spin hint, or on every [`YIELD_EVERY`](Self::YIELD_EVERY)-th
    /// turn a yield of the core. Never sleeps.
    pub fn snooze(&mut self) {
        self.turns = self.turns.wrapping_add(1);
        if self.turns.is_multiple_of(Self::YIELD_EVERY) {
            self.yielded = true;
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }

    /// Whether a whole round of spinning and a yield went by without work: a caller that can
    /// block (sleep, or wait on a channel) should do so now rather than snooze on.
    pub fn is_completed(&self) -> bool {
        self.yielded
    }

    /// Turns since the last [`reset`](Self::reset) (wrapping): for the tests.
    #[cfg(test)]
    fn turns(&self) -> u32 {
        self.turns
    }
}

#[cfg(test)]
mod tests;
