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

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge::protocol::{ConnectionStatus, Event};
use crossbeam_channel::RecvTimeoutError;
use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;
use runner::session::MonotonicBars;
use runner::supervisor::Supervisor;
use runner::worker_events::WorkerEvents;

use crate::bar::Bar;
use crate::failure::{Failure, FailureKind};

/// How often the pump looks at whether the session closed while no event comes.
const TICK: Duration = Duration::from_millis(100);

struct State {
    queue: VecDeque<(u32, Bar)>,
    capacity: usize,
    /// Bars dropped because the buffer was full.
    dropped: u64,
    /// Bars taken in.
    received: u64,
    /// Called (with the GIL) once, when a bar or the end arrives.
    waker: Option<Py<PyAny>>,
    /// Why no more bars come, once none will.
    ended: Option<Failure>,
    /// The newest bar taken per subscription id: an older one is dropped.
    in_order: MonotonicBars,
}

/// The buffer between the pump and Python.
pub(crate) struct Bars {
    state: Mutex<State>,
    cv: Condvar,
}

/// What [`Bars::take`] found.
pub(crate) enum Taken {
    Bars(Vec<(u32, Bar)>),
    /// Nothing buffered, and nothing more will come.
    Ended(Failure),
}

impl Bars {
    pub(crate) fn new(capacity: usize) -> Bars {
        Bars {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                capacity: capacity.max(1),
                dropped: 0,
                received: 0,
                waker: None,
                ended: None,
                in_order: MonotonicBars::new(),
            }),
            cv: Condvar::new(),
        }
    }

    /// Takes a bar in; returns the waker to call, if one waits.
    fn push(&self, sub: u32, bar: Bar) -> Option<Py<PyAny>> {
        let mut st = self.state.lock();
        if !st.in_order.admit(sub, bar.time) {
            return None;
        }
        if st.queue.len() >= st.capacity {
            st.queue.pop_front();
            st.dropped += 1;
            if st.dropped.is_power_of_two() {
                tracing::warn!(
                    dropped = st.dropped,
                    capacity = st.capacity,
                    "live bars dropped: the buffer is full (nobody is taking them)"
                );
            }
        }
        st.queue.push_back((sub, bar));
        st.received += 1;
        self.cv.notify_all();
        st.waker.take()
    }

    /// No more bars will come, for `why`; returns the waker to call.
    pub(crate) fn end(&self, why: Failure) -> Option<Py<PyAny>> {
        let mut st = self.state.lock();
        if st.ended.is_none() {
            st.ended = Some(why);
        }
        self.cv.notify_all();
        st.waker.take()
    }

    /// Up to `max` buffered bars, oldest first.
    pub(crate) fn take(&self, max: usize) -> Taken {
        let mut st = self.state.lock();
        if st.queue.is_empty() {
            if let Some(why) = &st.ended {
                return Taken::Ended(why.clone());
            }
        }
        let n = st.queue.len().min(max.max(1));
        Taken::Bars(st.queue.drain(..n).collect())
    }

    /// Registers `waker` to be called once when a bar or the end arrives; `false` (and no
    /// registration) if something is there already.
    pub(crate) fn set_waker(&self, waker: Option<Py<PyAny>>) -> bool {
        let mut st = self.state.lock();
        if waker.is_some() && (!st.queue.is_empty() || st.ended.is_some()) {
            return false;
        }
        // An old waker is dropped here, with the lock held but without calling Python: its
        // reference is released when the GIL is next taken.
        st.waker = waker;
        true
    }

    /// Waits until a bar or the end is there, at most `timeout`; whether one is.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock();
        while st.queue.is_empty() && st.ended.is_none() {
            if self.cv.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        !st.queue.is_empty() || st.ended.is_some()
    }

    /// (bars taken in, bars dropped, bars buffered).
    pub(crate) fn counts(&self) -> (u64, u64, usize) {
        let st = self.state.lock();
        (st.received, st.dropped, st.queue.len())
    }
}

/// Calls `waker` with the GIL, if the interpreter is still there.
pub(crate) fn wake(waker: Option<Py<PyAny>>) {
    let Some(waker) = waker else {
        return;
    };
    let _ = crate::interpreter::attach(|py| {
        if let Err(e) = waker.call0(py) {
            e.print(py);
        }
        drop(waker);
    });
}

/// Reads every event of the session's workers until it closes: bars into `bars`, the rest
/// into the log. Ends the stream when the session closes (`closed()` says so) or the
/// supervisor gives up.
pub(crate) fn pump(
    mut events: WorkerEvents,
    bars: Arc<Bars>,
    sup: Arc<Supervisor>,
    closed: impl Fn() -> bool,
    heard: impl Fn(&Event),
) {
    let end = loop {
        if closed() {
            break Failure::new(FailureKind::Closed, "the session is closed");
        }
        if let Some(e) = sup.gave_up() {
            break e.into();
        }
        let event = match events.recv_timeout(TICK) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                break Failure::new(FailureKind::Closed, "the session is closed")
            }
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
            // The worker logged it, with why.
            Event::Feed { symbol, state } => {
                tracing::debug!(target: "runner", %symbol, ?state, "live feed")
            }
            // Orders' and fills' went to the session's trader (`heard`).
            Event::Order(_) | Event::Fill(_) | Event::Position(_) | Event::BookTold { .. } => {}
        }
    };
    wake(bars.end(end));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bar at `time`, every price and the volume 1.
    fn bar(time: i64) -> Bar {
        Bar::new(time, 1.0, 1.0, 1.0, 1.0, 1.0)
    }

    fn times(t: Taken) -> Vec<(u32, i64)> {
        match t {
            Taken::Bars(b) => b.into_iter().map(|(s, b)| (s, b.time)).collect(),
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

    #[test]
    fn the_end_comes_after_every_buffered_bar() {
        let b = Bars::new(10);
        b.push(0, bar(1));
        assert!(b.end(Failure::new(FailureKind::Closed, "x")).is_none());
        assert!(b.wait(Duration::ZERO));
        assert_eq!(times(b.take(10)), vec![(0, 1)]);
        assert!(matches!(b.take(10), Taken::Ended(f) if f.category == FailureKind::Closed));
    }

    #[test]
    fn a_wait_ends_when_a_bar_is_there() {
        let b = Bars::new(10);
        assert!(!b.wait(Duration::from_millis(1)));
        b.push(0, bar(1));
        assert!(b.wait(Duration::from_millis(1)));
    }
}
