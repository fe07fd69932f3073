//! The watchdog of one live stream ([`Watchdog`]): how long it has delivered nothing while
//! something was expected, and what to do about it, as a state machine of its own (the
//! stream task in `realtime` acts on its verdicts).
//!
//! A silence is a stretch of `silence` with no data while the gateway is connected, its link
//! to IB up, no market data farm broken and the symbol in session. Its first verdict is
//! [`Verdict::Resubscribe`] (cancel and request again); if it goes on as long again,
//! [`Verdict::Stall`]; while stalled, the stream is requested again every
//! [`STALLED_RETRY`] silences, quietly ([`Verdict::Retry`]), in case the request itself is
//! what died.
//!
//! Invariants: one resubscription per silence (a flap's counts as it); one stall per silence,
//! only after its resubscription; a quiet stretch (nothing expected) never counts: the
//! silence clock starts again at its end; data ends a silence, and a stall with it
//! ([`Watchdog::fed`] says so once).

use std::time::{Duration, Instant};

/// While stalled, the stream is requested again after this many silences.
pub(super) const STALLED_RETRY: u32 = 10;

/// What to do when the watchdog's deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Nothing: data came meanwhile, or nothing was due yet.
    Wait,
    /// Silent for `silent_for`: cancel the stream and make it again.
    Resubscribe { silent_for: Duration },
    /// Still silent after it was made again: it is stalled since `since` (Unix seconds, its
    /// last data or when it was made).
    Stall { since: i64 },
    /// Stalled for long: request it again, in case the request is what died.
    Retry,
}

/// One stream's silence, as it stands.
#[derive(Debug, Clone)]
pub(super) struct Watchdog {
    silence: Duration,
    /// When the silence clock started: the last data, the end of a quiet stretch, or the
    /// last time the stream was made.
    since: Instant,
    /// The last data (or when the stream was made first, or the end of a quiet stretch), Unix
    /// seconds.
    since_unix: i64,
    /// When the stream was last made (requested).
    made: Instant,
    /// This silence's resubscription is spent.
    resubscribed: bool,
    /// Stalled: resubscribed and silent since.
    stalled: bool,
    /// Silences passed while stalled, towards the next retry.
    stalled_silences: u32,
}

impl Watchdog {
    /// A stream made at `now` (`now_unix` in Unix seconds) that may be silent for `silence`.
    pub(super) fn new(silence: Duration, now: Instant, now_unix: i64) -> Watchdog {
        Watchdog {
            silence,
            since: now,
            since_unix: now_unix,
            made: now,
            resubscribed: false,
            stalled: false,
            stalled_silences: 0,
        }
    }

    /// When the stream has been silent for long enough to act on, if nothing comes.
    pub(super) fn deadline(&self) -> Instant {
        self.since + self.silence
    }

    /// Whether the stream is stalled now.
    #[cfg(test)]
    pub(super) fn stalled(&self) -> bool {
        self.stalled
    }

    /// Data came at `now`: the silence is over. Returns whether the stream was stalled (and
    /// flows again).
    pub(super) fn fed(&mut self, now: Instant, now_unix: i64) -> bool {
        let was = self.stalled;
        self.since = now;
        self.since_unix = now_unix;
        self.resubscribed = false;
        self.stalled = false;
        self.stalled_silences = 0;
        was
    }

    /// When the stream was last made.
    pub(super) fn made(&self) -> Instant {
        self.made
    }

    /// Nothing is expected at `now` (`now_unix`: the connection, the link or a farm is down,
    /// the market is closed): the silence clock starts again, and the silence after this
    /// stretch is a new one (its resubscription not spent; a stall since it began).
    pub(super) fn quiet(&mut self, now: Instant, now_unix: i64) {
        self.since = now;
        self.since_unix = now_unix;
        self.resubscribed = false;
    }

    /// The stream was made again at `now` for its silence (after a farm's flap too): the
    /// silence goes on, its resubscription spent.
    pub(super) fn resubscribed(&mut self, now: Instant) {
        self.since = now;
        self.made = now;
        self.resubscribed = true;
    }

    /// The stream was made again at `now` for another cause (the gateway dropped every
    /// request, or the connection came back): a new silence, with a resubscription of its
    /// own. A stall stays until data comes.
    pub(super) fn restarted(&mut self, now: Instant) {
        self.since = now;
        self.made = now;
        self.resubscribed = false;
    }

    /// The verdict at `now`, when something was expected since the clock started.
    pub(super) fn verdict(&mut self, now: Instant) -> Verdict {
        if now < self.deadline() {
            return Verdict::Wait;
        }
        let silent_for = now.saturating_duration_since(self.since);
        self.since = now;
        if !self.resubscribed {
            self.resubscribed = true;
            return Verdict::Resubscribe { silent_for };
        }
        if !self.stalled {
            self.stalled = true;
            self.stalled_silences = 0;
            return Verdict::Stall {
                since: self.since_unix,
            };
        }
        self.stalled_silences += 1;
        if self.stalled_silences >= STALLED_RETRY {
            self.stalled_silences = 0;
            return Verdict::Retry;
        }
        Verdict::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(10);

    #[test]
    fn a_silence_is_resubscribed_once_then_stalled_then_retried_slowly() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(S, t0, 1_000);
        assert_eq!(w.verdict(t0 + S / 2), Verdict::Wait);
        assert_eq!(
            w.verdict(t0 + S),
            Verdict::Resubscribe { silent_for: S },
            "one resubscription"
        );
        assert_eq!(w.verdict(t0 + S + S / 2), Verdict::Wait);
        assert_eq!(
            w.verdict(t0 + 2 * S),
            Verdict::Stall { since: 1_000 },
            "stalled since the last data"
        );
        assert!(w.stalled());
        for n in 1..STALLED_RETRY {
            assert_eq!(w.verdict(t0 + (2 + n) * S), Verdict::Wait, "silence {n}");
        }
        assert_eq!(w.verdict(t0 + (2 + STALLED_RETRY) * S), Verdict::Retry);
        assert!(w.stalled(), "a retry is no recovery");
        assert!(w.fed(t0 + 20 * S, 1_200), "flowing again");
        assert!(!w.fed(t0 + 20 * S, 1_200), "said once");
        assert_eq!(
            w.verdict(t0 + 21 * S),
            Verdict::Resubscribe { silent_for: S },
            "a new silence"
        );
    }

    #[test]
    fn data_ends_a_silence_before_it_is_acted_on() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(S, t0, 0);
        w.fed(t0 + S / 2, 5);
        assert_eq!(w.verdict(t0 + S), Verdict::Wait);
        assert_eq!(w.deadline(), t0 + S / 2 + S);
    }

    #[test]
    fn quiet_stretches_never_count() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(S, t0, 0);
        // Closed, or the connection down, for a long time: the clock starts again.
        w.quiet(t0 + 5 * S, 50);
        assert_eq!(w.verdict(t0 + 5 * S + S / 2), Verdict::Wait);
        assert_eq!(
            w.verdict(t0 + 6 * S),
            Verdict::Resubscribe { silent_for: S }
        );
        assert_eq!(w.verdict(t0 + 7 * S), Verdict::Stall { since: 50 });
    }

    #[test]
    fn a_silence_after_a_quiet_stretch_is_a_new_one() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(S, t0, 0);
        // Dead at the close: made again, to no avail.
        assert!(matches!(w.verdict(t0 + S), Verdict::Resubscribe { .. }));
        // The market closes before the stall is due; it opens again much later.
        w.quiet(t0 + S + S / 2, 1_000);
        w.quiet(t0 + 100 * S, 2_000);
        assert_eq!(
            w.verdict(t0 + 101 * S),
            Verdict::Resubscribe { silent_for: S },
            "a resubscription of its own, not a stall at once"
        );
        assert_eq!(
            w.verdict(t0 + 102 * S),
            Verdict::Stall { since: 2_000 },
            "stalled since the quiet stretch ended, not since the day before"
        );
        assert_eq!(
            w.made(),
            t0,
            "a verdict makes nothing: the stream task does"
        );
        w.resubscribed(t0 + 103 * S);
        assert_eq!(w.made(), t0 + 103 * S);
    }

    #[test]
    fn a_flap_spends_the_silences_resubscription_and_a_restart_gives_a_new_one() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(S, t0, 7);
        w.resubscribed(t0 + S / 2);
        assert_eq!(
            w.verdict(t0 + S + S / 2),
            Verdict::Stall { since: 7 },
            "no second resubscription"
        );
        w.restarted(t0 + 2 * S);
        assert_eq!(
            w.verdict(t0 + 3 * S),
            Verdict::Resubscribe { silent_for: S }
        );
        assert!(w.stalled(), "a stall stays until data comes");
        assert_eq!(w.verdict(t0 + 4 * S), Verdict::Wait, "stalled once");
    }
}
