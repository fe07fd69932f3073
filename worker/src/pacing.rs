//! Historical-data pacing, as Interactive Brokers enforces it: no more than 5 requests for
//! one contract in 2 s, no more than 60 requests for bars under one minute in 10 minutes,
//! and an identical request within 15 s served from the first (never sent again). A history
//! longer than IB answers at once ([`max_request_span`]) is sent in pages, each a request of
//! its own ([`requests_counted`]).
//!
//! Invariants: a request is booked at the time it will go out, so the budgets hold for
//! requests still waiting too; a pacer resumed from a replaced worker's requests paces at
//! least as strictly as the broker does.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge::protocol::{Bar, HistoryRequest, RemoteError};
use parking_lot::Mutex;
use tokio::sync::OnceCell;

/// Same-contract window and budget.
pub const CONTRACT_WINDOW: Duration = Duration::from_secs(2);
pub const CONTRACT_BUDGET: usize = 5;
/// Small-bar window and budget.
pub const SMALL_BAR_WINDOW: Duration = Duration::from_secs(600);
pub const SMALL_BAR_BUDGET: usize = 60;
/// How long an answer serves identical requests.
pub const IDENTICAL_WINDOW: Duration = Duration::from_secs(15);

/// The longest history IB answers in one request for bars of `bar_seconds` (IB's step
/// sizes: a request may return only a few thousand bars), in seconds.
pub fn max_request_span(bar_seconds: u32) -> u64 {
    const DAY: u64 = 86_400;
    match bar_seconds {
        0..5 => 1800,
        5..10 => 3600,
        10..30 => 14_400,
        30..60 => 28_800,
        60..120 => DAY,
        120..180 => 2 * DAY,
        180..1800 => 7 * DAY,
        1800..86_400 => 30 * DAY,
        _ => 365 * DAY,
    }
}

/// How many requests the broker counts for `request`: one per page of at most
/// [`max_request_span`] (at least one, at most 1000).
pub fn requests_counted(request: &HistoryRequest) -> u64 {
    let span = max_request_span(request.bar_seconds).max(1);
    request.duration_seconds.div_ceil(span).clamp(1, 1000)
}

/// The shared answer of identical requests.
pub type SharedAnswer = Arc<OnceCell<Result<Arc<Vec<Bar>>, RemoteError>>>;

#[derive(Default)]
struct State {
    /// (sent at, symbol, small bars) of recent requests, oldest first.
    sent: VecDeque<(Instant, String, bool)>,
    /// Answers (or answers in the making) of recent requests.
    answers: HashMap<HistoryRequest, (Instant, SharedAnswer)>,
}

/// Decides when a historical request may go out.
#[derive(Default)]
pub struct Pacer {
    state: Mutex<State>,
}

/// What to do with a request.
pub enum Admission {
    /// An identical request was made within the window: await its answer. Should that
    /// request be abandoned before it is answered, this one is sent in its place, paced like
    /// a new one and not within [`IDENTICAL_WINDOW`] of `first` (when the first went or was
    /// to go out): see [`Pacer::book_after`].
    Join {
        answer: SharedAnswer,
        first: Instant,
    },
    /// Send it after waiting this long (zero: now); fill the cell with the answer.
    Send {
        wait: Duration,
        answer: SharedAnswer,
    },
}

impl Pacer {
    /// A pacer that remembers `earlier` requests (symbol, bar size, sent this long before
    /// `now`), made by a worker this one replaces: IB counts them whoever sent them.
    pub fn resuming(earlier: &[(String, u32, Duration)], now: Instant) -> Pacer {
        let mut sent: Vec<(Instant, String, bool)> = earlier
            .iter()
            .filter(|(_, _, age)| *age < SMALL_BAR_WINDOW)
            .filter_map(|(symbol, bar_seconds, age)| {
                Some((now.checked_sub(*age)?, symbol.clone(), *bar_seconds < 60))
            })
            .collect();
        sent.sort_by_key(|(t, _, _)| *t);
        Pacer {
            state: Mutex::new(State {
                sent: sent.into(),
                answers: HashMap::new(),
            }),
        }
    }

    /// Admits `req` at `now`: either joins an identical recent request, or books a slot and
    /// says how long to wait first.
    pub fn admit(&self, req: &HistoryRequest, now: Instant) -> Admission {
        let mut st = self.state.lock();
        st.answers
            .retain(|_, (at, _)| now.duration_since(*at) < IDENTICAL_WINDOW);
        while st
            .sent
            .front()
            .is_some_and(|(at, _, _)| now.duration_since(*at) >= SMALL_BAR_WINDOW)
        {
            st.sent.pop_front();
        }
        if req.end.is_none() {
            if let Some((first, answer)) = st.answers.get(req) {
                return Admission::Join {
                    answer: answer.clone(),
                    first: *first,
                };
            }
        }
        let at = book(&mut st, req, now);
        let answer: SharedAnswer = Arc::new(OnceCell::new());
        if req.end.is_none() {
            st.answers.insert(req.clone(), (at, answer.clone()));
        }
        Admission::Send {
            wait: at.duration_since(now),
            answer,
        }
    }

    /// Books a slot for `req`, which joined an identical request sent (or to be sent) at
    /// `first` that was then abandoned: not before `first` + [`IDENTICAL_WINDOW`] (IB counts
    /// an identical request within it as a pacing violation, and the first may have gone
    /// out), nor before the budgets allow. Returns how long to wait from `now`.
    ///
    /// The slot becomes the one identical requests are spaced from: a second joiner sent in
    /// place of this one, should it be abandoned too, goes out 15 s after it, not after the
    /// first.
    pub fn book_after(&self, req: &HistoryRequest, first: Instant, now: Instant) -> Duration {
        let mut st = self.state.lock();
        let latest = st
            .answers
            .get(req)
            .map_or(first, |(at, _)| (*at).max(first));
        let at = book(&mut st, req, now.max(latest + IDENTICAL_WINDOW));
        if let Some(entry) = st.answers.get_mut(req) {
            entry.0 = at;
        }
        at.duration_since(now)
    }
}

/// Books the earliest slot at or after `earliest` that the budgets allow; returns it.
fn book(st: &mut State, req: &HistoryRequest, earliest: Instant) -> Instant {
    let small = req.bar_seconds < 60;
    let mut at = earliest;
    // The 5th-previous request for this contract must be 2 s old.
    let same: Vec<Instant> = st
        .sent
        .iter()
        .filter(|(_, s, _)| *s == req.symbol)
        .map(|(t, _, _)| *t)
        .collect();
    if same.len() >= CONTRACT_BUDGET {
        at = at.max(same[same.len() - CONTRACT_BUDGET] + CONTRACT_WINDOW);
    }
    if small {
        let smalls: Vec<Instant> = st
            .sent
            .iter()
            .filter(|(_, _, s)| *s)
            .map(|(t, _, _)| *t)
            .collect();
        if smalls.len() >= SMALL_BAR_BUDGET {
            at = at.max(smalls[smalls.len() - SMALL_BAR_BUDGET] + SMALL_BAR_WINDOW);
        }
    }
    // Booked at the time it will go out, in time order.
    let pos = st.sent.partition_point(|(t, _, _)| *t <= at);
    st.sent.insert(pos, (at, req.symbol.clone(), small));
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(symbol: &str, bar_seconds: u32, duration_seconds: u64) -> HistoryRequest {
        HistoryRequest {
            symbol: symbol.into(),
            bar_seconds,
            duration_seconds,
            end: None,
        }
    }

    fn wait(a: Admission) -> Duration {
        match a {
            Admission::Send { wait, .. } => wait,
            Admission::Join { .. } => panic!("joined"),
        }
    }

    /// When the request `a` joined went (or was to go) out.
    fn joined(a: Admission) -> Instant {
        match a {
            Admission::Join { first, .. } => first,
            Admission::Send { .. } => panic!("not joined"),
        }
    }

    #[test]
    fn identical_requests_within_15_s_share_one_answer() {
        let p = Pacer::default();
        let t = Instant::now();
        let first = p.admit(&req("SPY", 60, 86_400), t);
        assert!(matches!(first, Admission::Send { wait, .. } if wait.is_zero()));
        assert!(matches!(
            p.admit(&req("SPY", 60, 86_400), t + Duration::from_secs(14)),
            Admission::Join { first, .. } if first == t
        ));
        // Different duration: a different request.
        assert!(matches!(
            p.admit(&req("SPY", 60, 3600), t),
            Admission::Send { .. }
        ));
        // After 15 s it is sent again.
        assert!(matches!(
            p.admit(&req("SPY", 60, 86_400), t + Duration::from_secs(15)),
            Admission::Send { .. }
        ));
    }

    /// A request that joined an identical one which was then abandoned goes out in its place
    /// no sooner than 15 s after it, and is counted like any other.
    #[test]
    fn a_joiner_sent_in_place_of_an_abandoned_request_keeps_15_s_from_it() {
        let p = Pacer::default();
        let t = Instant::now();
        let r = req("SPY", 60, 86_400);
        assert!(wait(p.admit(&r, t)).is_zero());
        let first = joined(p.admit(&r, t + Duration::from_secs(1)));
        let later = t + Duration::from_secs(4);
        assert_eq!(p.book_after(&r, first, later), Duration::from_secs(11));
        // Booked and counted: at t + 15 s it is one of five for SPY, the sixth waits.
        let other = |d: u64| req("SPY", 60, d);
        for d in 1..=3 {
            assert!(wait(p.admit(&other(d), t + Duration::from_secs(15))).is_zero());
        }
        assert_eq!(
            wait(p.admit(&other(4), t + Duration::from_secs(15))),
            Duration::from_secs(0)
        );
        assert_eq!(
            wait(p.admit(&other(5), t + Duration::from_secs(15))),
            CONTRACT_WINDOW
        );
    }

    /// Joiners sent one after the other in place of abandoned requests keep 15 s apart.
    #[test]
    fn a_second_joiner_keeps_15_s_from_the_first_joiner() {
        let p = Pacer::default();
        let t = Instant::now();
        let r = req("SPY", 60, 86_400);
        assert!(wait(p.admit(&r, t)).is_zero());
        let first = joined(p.admit(&r, t + Duration::from_secs(1)));
        let other = joined(p.admit(&r, t + Duration::from_secs(2)));
        // The first is abandoned: one joiner goes out at t + 15 s, and is abandoned too.
        assert_eq!(
            p.book_after(&r, first, t + Duration::from_secs(3)),
            Duration::from_secs(12)
        );
        // The other goes out 15 s after it, not 15 s after the first.
        assert_eq!(
            p.book_after(&r, other, t + Duration::from_secs(16)),
            Duration::from_secs(14)
        );
    }

    #[test]
    fn the_sixth_request_for_one_contract_within_2_s_waits() {
        let p = Pacer::default();
        let t = Instant::now();
        for d in 1..=5u64 {
            assert!(wait(p.admit(&req("SPY", 60, d * 60), t)).is_zero());
        }
        assert_eq!(wait(p.admit(&req("SPY", 60, 6 * 60), t)), CONTRACT_WINDOW);
        // Another contract is not held back.
        assert!(wait(p.admit(&req("QQQ", 60, 60), t)).is_zero());
    }

    #[test]
    fn the_61st_small_bar_request_in_10_minutes_waits() {
        let p = Pacer::default();
        let t = Instant::now();
        for i in 0..60u64 {
            let at = t + Duration::from_secs(i * 3);
            assert!(wait(p.admit(&req(&format!("S{i}"), 5, 300), at)).is_zero());
        }
        let late = t + Duration::from_secs(180);
        let w = wait(p.admit(&req("S60", 5, 300), late));
        assert_eq!(w, SMALL_BAR_WINDOW - Duration::from_secs(180));
        // Minute bars are not counted against it.
        assert!(wait(p.admit(&req("S61", 60, 300), late)).is_zero());
    }

    /// Requests a replaced worker made still count: five for one contract in the last 2 s
    /// make the next one wait, as if this worker had made them.
    #[test]
    fn a_resumed_pacer_counts_the_requests_of_the_worker_before() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let earlier: Vec<(String, u32, Duration)> = (0..5)
            .map(|i| ("SPY".to_string(), 60, ms(1500 - i * 100)))
            .collect();
        let pacer = Pacer::resuming(&earlier, now);
        // The oldest of the five was 1.5 s ago: 0.5 s to wait.
        assert_eq!(wait(pacer.admit(&req("SPY", 60, 3600), now)), ms(500));
        // Another contract is not held back.
        assert_eq!(
            wait(pacer.admit(&req("QQQ", 60, 3600), now)),
            Duration::ZERO
        );
        // Requests older than the longest window are forgotten.
        let pacer = Pacer::resuming(&[("SPY".into(), 5, Duration::from_secs(700))], now);
        assert_eq!(wait(pacer.admit(&req("SPY", 5, 3600), now)), Duration::ZERO);
    }

    #[test]
    fn the_longest_request_follows_ibs_step_sizes() {
        assert_eq!(max_request_span(1), 1800);
        assert_eq!(max_request_span(5), 3600);
        assert_eq!(max_request_span(30), 28_800);
        assert_eq!(max_request_span(60), 86_400);
        assert_eq!(max_request_span(86_400), 365 * 86_400);
    }

    #[test]
    fn a_paged_history_counts_one_request_per_page() {
        assert_eq!(requests_counted(&req("SPY", 1, 86_400)), 48);
        assert_eq!(requests_counted(&req("SPY", 60, 86_400)), 1);
        assert_eq!(requests_counted(&req("SPY", 60, 0)), 1);
    }
}
