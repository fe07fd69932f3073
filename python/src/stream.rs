//! Live bars on their way to Python: the pump reads the events of every worker of a session
//! (across restarts) into a bounded buffer, and wakes the one waiter, an event loop's or a
//! blocked thread's, when the buffer stops being empty.
//!
//! Invariants: the pump never waits for the GIL while the buffer is locked, and takes it only
//! to wake a waiter that asked to be woken (a loop busy elsewhere has none, so the pump never
//! waits on it); a symbol's bars leave in time order, each once (a replacement worker's bars
//! not later than the last one are dropped, by the runner's [`MonotonicBars`] rule); when the buffer is full the oldest bar is dropped
//! and counted, never silently; the stream's end (the session closed, the supervisor gave
//! up) is told after every buffered bar.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bridge::protocol::{ConnectionStatus, Event};
use parking_lot::Mutex;
use pyo3::prelude::*;
use runner::session::{next_event, MonotonicBars, Next};
use runner::supervisor::Supervisor;
use runner::worker_events::WorkerEvents;

use crate::bar::Bar;
use crate::failure::{Failure, FailureKind};
use crate::mailbox::Mailbox;
pub(crate) use crate::mailbox::{wake, Taken};

/// What happened to a stream's symbol, as Python takes it: (what, the error's kind, IB's
/// code, the details). `what` is `refused`, `delayed`, `stalled`, `flowing`,
/// `resubscribed`, `interrupted`, `restored` or `worker_replaced`.
pub(crate) type News = (&'static str, Option<String>, Option<i64>, String);

/// What the stream hands Python for a subscription: a bar, or news of its symbol, in the
/// order the pump took them.
pub(crate) enum Item {
    Bar(Bar),
    News(News),
}

impl<'py> IntoPyObject<'py> for Item {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        match self {
            Item::Bar(bar) => Ok(Bound::new(py, bar)?.into_any()),
            Item::News(news) => news.into_pyobject(py).map(|t| t.into_any()),
        }
    }
}

/// The buffer between the pump and Python: bars and news by subscription id.
pub(crate) struct Bars {
    mail: Mailbox<(u32, Item)>,
    /// The newest bar taken per subscription id: an older one is dropped.
    in_order: Mutex<MonotonicBars>,
    /// News taken in (the mailbox counts it with the bars).
    news: AtomicU64,
}

impl Bars {
    pub(crate) fn new(capacity: usize) -> Bars {
        Bars {
            mail: Mailbox::new("live bars", capacity),
            in_order: Mutex::new(MonotonicBars::new()),
            news: AtomicU64::new(0),
        }
    }

    /// Takes a bar in (unless it is not later than its subscription's last); returns the
    /// waker to call, if one waits.
    fn push(&self, sub: u32, bar: Bar) -> Option<Py<PyAny>> {
        if !self.in_order.lock().admit(sub, bar.time) {
            return None;
        }
        self.mail.push((sub, Item::Bar(bar)))
    }

    /// Takes news of subscription `sub`'s symbol in, after the bars before it; returns the
    /// waker to call, if one waits.
    pub(crate) fn tell(&self, sub: u32, news: News) -> Option<Py<PyAny>> {
        self.news.fetch_add(1, Ordering::Relaxed);
        self.mail.push((sub, Item::News(news)))
    }

    /// No more bars will come, for `why`; returns the waker to call.
    pub(crate) fn end(&self, why: Failure) -> Option<Py<PyAny>> {
        self.mail.end(why)
    }

    /// Up to `max` buffered bars, oldest first.
    pub(crate) fn take(&self, max: usize) -> Taken<(u32, Item)> {
        self.mail.take(max)
    }

    /// Registers `waker` to be called once when a bar or the end arrives; `false` (and no
    /// registration) if something is there already.
    pub(crate) fn set_waker(&self, waker: Option<Py<PyAny>>) -> bool {
        self.mail.set_waker(waker)
    }

    /// Waits until a bar or the end is there, at most `timeout`; whether one is.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        self.mail.wait(timeout)
    }

    /// (bars taken in, bars and news dropped, bars and news buffered).
    pub(crate) fn counts(&self) -> (u64, u64, usize) {
        let (received, dropped, buffered) = self.mail.counts();
        let news = self.news.load(Ordering::Relaxed);
        (received.saturating_sub(news), dropped, buffered)
    }
}

/// Reads every event of the session's workers until it closes (looking at whether it did at
/// least every [`runner::session::TICK`], by the runner's rule of [`next_event`]): bars into `bars`, orders'
/// and fills' to `heard`, the rest into the log. Ends the stream when the session closes
/// (`closed()` says so) or the supervisor gives up; returns why it ended.
pub(crate) fn pump(
    mut events: WorkerEvents,
    bars: Arc<Bars>,
    sup: Arc<Supervisor>,
    closed: impl Fn() -> bool,
    heard: impl Fn(&Event),
) -> Failure {
    let end = loop {
        if closed() {
            break Failure::new(FailureKind::Closed, "the session is closed");
        }
        let event = match next_event(&mut events, &sup) {
            Next::Event(e) => e,
            Next::Quiet => continue,
            Next::GaveUp(e) => break e.into(),
            Next::Ended => break Failure::new(FailureKind::Closed, "the session is closed"),
        };
        heard(&event);
        match event {
            Event::Bar { sub, bar } => wake(bars.push(sub, bar.into())),
            Event::Connection(status) => match &status {
                ConnectionStatus::Connected | ConnectionStatus::Restored { .. } => {
                    tracing::info!(target: "runner", ?status, "broker connection")
                }
                ConnectionStatus::GaveUp { .. } => {
                    tracing::error!(target: "runner", ?status, "broker connection");
                    break Failure::broker(
                        "disconnected",
                        None,
                        format!("the broker connection is given up: {status:?}"),
                    );
                }
                _ => tracing::warn!(target: "runner", ?status, "broker connection"),
            },
            Event::Refused { symbol, error } => {
                tracing::warn!(target: "runner", %symbol, "live data refused: {error}")
            }
            Event::Delayed { symbol, refused } => {
                tracing::warn!(target: "runner", %symbol, "live data delayed: {refused}")
            }
            Event::Notice { code, message } => {
                tracing::info!(target: "runner", code, "broker notice: {message}")
            }
            Event::Dropped { count } => tracing::warn!(
                target: "runner",
                count,
                "the hub dropped events for this session (it did not read in time): bars are missing"
            ),
            // The worker logged it, with why.
            Event::Feed { symbol, state } => {
                tracing::debug!(target: "runner", %symbol, ?state, "live feed")
            }
            // Orders' and fills' went to the session's trader (`heard`).
            Event::Order(_) | Event::Fill(_) | Event::Position(_) | Event::BookTold { .. } => {}
        }
    };
    wake(bars.end(end.clone()));
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bar at `time`, every price and the volume 1.
    fn bar(time: i64) -> Bar {
        Bar::new(time, 1.0, 1.0, 1.0, 1.0, 1.0)
    }

    fn times(t: Taken<(u32, Item)>) -> Vec<(u32, i64)> {
        match t {
            Taken::Items(b) => b
                .into_iter()
                .map(|(s, i)| match i {
                    Item::Bar(b) => (s, b.time),
                    Item::News(n) => panic!("news: {n:?}"),
                })
                .collect(),
            Taken::Ended(f) => panic!("ended: {f:?}"),
        }
    }

    #[test]
    fn bars_leave_in_order_once_and_the_oldest_are_dropped_and_counted() {
        let b = Bars::new(3);
        for t in [10, 20, 20, 15, 30] {
            b.push(0, bar(t));
        }
        b.push(1, bar(5));
        b.push(1, bar(25));
        // 10, 20, 30 for sub 0 and 5, 25 for sub 1 came in; 15 and the second 20 did not.
        assert_eq!(b.counts(), (5, 2, 3));
        assert_eq!(times(b.take(2)), vec![(0, 30), (1, 5)]);
        assert_eq!(times(b.take(10)), vec![(1, 25)]);
        assert_eq!(times(b.take(10)), vec![]);
    }
}
