//! The soak's check of streamed bars: each symbol's bars must advance by exactly one second,
//! except across a worker restart.
//!
//! Invariants: a verdict depends only on the symbol's last accepted bar, the new bar's time
//! and the restart count; only bars that move a series forward are accepted (a duplicate, a
//! reordered bar or a bar a new worker repeats leaves the series as it was); a gap or a
//! repetition is "declared" only if a restart happened since the last accepted bar.

use std::collections::HashMap;

/// What a bar is, given the bars before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BarCheck {
    /// The symbol's first bar, or exactly one second after the last.
    InOrder,
    /// Later than one second after the last, across a restart (declared).
    GapAfterRestart,
    /// Later than one second after the last with no restart to explain it: bars lost.
    Gap { from: i64 },
    /// Not after the last, across a restart: the new worker repeats the bar in progress
    /// (declared, dropped).
    RepeatedAfterRestart,
    /// The same time as the last, with no restart.
    Duplicate { last: i64 },
    /// Before the last, with no restart.
    Reordered { last: i64 },
}

/// The last accepted bar of every symbol.
#[derive(Debug, Default)]
pub(super) struct BarSequences {
    /// Subscription id → (time of the last accepted bar, restarts counted when it came).
    last: HashMap<u32, (i64, u32)>,
}

impl BarSequences {
    /// Checks the bar of subscription `sub` at `time`, `restarts` being the worker restarts
    /// so far.
    pub(super) fn check(&mut self, sub: u32, time: i64, restarts: u32) -> BarCheck {
        let verdict = match self.last.get(&sub).copied() {
            None => BarCheck::InOrder,
            Some((t, seen)) if time <= t && restarts != seen => BarCheck::RepeatedAfterRestart,
            Some((t, _)) if time == t => BarCheck::Duplicate { last: t },
            Some((t, _)) if time < t => BarCheck::Reordered { last: t },
            Some((t, seen)) if time > t + 1 => {
                if restarts != seen {
                    BarCheck::GapAfterRestart
                } else {
                    BarCheck::Gap { from: t }
                }
            }
            Some(_) => BarCheck::InOrder,
        };
        if matches!(
            verdict,
            BarCheck::InOrder | BarCheck::GapAfterRestart | BarCheck::Gap { .. }
        ) {
            self.last.insert(sub, (time, restarts));
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_one_second_apart_are_in_order_per_symbol() {
        let mut s = BarSequences::default();
        assert_eq!(s.check(0, 100, 0), BarCheck::InOrder);
        assert_eq!(s.check(1, 500, 0), BarCheck::InOrder);
        assert_eq!(s.check(0, 101, 0), BarCheck::InOrder);
        assert_eq!(s.check(1, 501, 0), BarCheck::InOrder);
    }

    #[test]
    fn duplicates_reorderings_and_gaps_without_a_restart_are_errors() {
        let mut s = BarSequences::default();
        s.check(0, 100, 0);
        assert_eq!(s.check(0, 100, 0), BarCheck::Duplicate { last: 100 });
        assert_eq!(s.check(0, 99, 0), BarCheck::Reordered { last: 100 });
        // Neither moved the series: 101 is still next.
        assert_eq!(s.check(0, 101, 0), BarCheck::InOrder);
        assert_eq!(s.check(0, 104, 0), BarCheck::Gap { from: 101 });
        assert_eq!(s.check(0, 105, 0), BarCheck::InOrder);
    }

    #[test]
    fn across_a_restart_gaps_and_repeats_are_declared() {
        let mut s = BarSequences::default();
        s.check(0, 100, 0);
        s.check(1, 100, 0);
        // Worker restarted (restarts 0 -> 1): A's new worker repeats 100, B's skips ahead.
        assert_eq!(s.check(0, 100, 1), BarCheck::RepeatedAfterRestart);
        assert_eq!(s.check(0, 99, 1), BarCheck::RepeatedAfterRestart);
        assert_eq!(s.check(1, 110, 1), BarCheck::GapAfterRestart);
        // A's repeat was dropped, so the restart still explains a gap for it.
        assert_eq!(s.check(0, 105, 1), BarCheck::GapAfterRestart);
        // Once a bar after the restart is accepted, the old rules apply again.
        assert_eq!(s.check(0, 105, 1), BarCheck::Duplicate { last: 105 });
        assert_eq!(s.check(1, 112, 1), BarCheck::Gap { from: 110 });
    }

    #[test]
    fn the_next_second_across_a_restart_is_simply_in_order() {
        let mut s = BarSequences::default();
        s.check(0, 100, 0);
        assert_eq!(s.check(0, 101, 1), BarCheck::InOrder);
        assert_eq!(s.check(0, 101, 1), BarCheck::Duplicate { last: 101 });
    }
}
