//! A bounded queue from the library's threads to Python ([`Mailbox`]): live bars, order
//! events. One side pushes without ever waiting for Python; the other takes what is there,
//! waits for more without the GIL (a blocking iterator), or leaves a waker to be called once
//! something comes (an event loop).
//!
//! Invariants: items leave in the order they came, each once; when the queue is full the
//! oldest item is dropped and counted, never silently; the end (why nothing more will come)
//! is told after every item queued before it; the waker is handed back to the pusher to be
//! called with no lock held, so the queue's lock is never held while the GIL is waited for.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;

use crate::failure::Failure;

struct Inbox<T> {
    queue: VecDeque<T>,
    capacity: usize,
    /// Items dropped because the queue was full.
    dropped: u64,
    /// Items taken in.
    received: u64,
    /// Called (with the GIL) once, when an item or the end arrives.
    waker: Option<Py<PyAny>>,
    /// Why no more items come, once none will.
    ended: Option<Failure>,
}

/// A bounded queue to Python, of items of one kind (named `what` in the log).
pub(crate) struct Mailbox<T> {
    what: &'static str,
    state: Mutex<Inbox<T>>,
    cv: Condvar,
}

/// What [`Mailbox::take`] found.
pub(crate) enum Taken<T> {
    Items(Vec<T>),
    /// Nothing queued, and nothing more will come.
    Ended(Failure),
}

impl<T> Mailbox<T> {
    pub(crate) fn new(what: &'static str, capacity: usize) -> Mailbox<T> {
        Mailbox {
            what,
            state: Mutex::new(Inbox {
                queue: VecDeque::new(),
                capacity: capacity.max(1),
                dropped: 0,
                received: 0,
                waker: None,
                ended: None,
            }),
            cv: Condvar::new(),
        }
    }

    /// Takes an item in (the oldest is dropped if the queue is full); returns the waker to
    /// call, if one waits.
    pub(crate) fn push(&self, item: T) -> Option<Py<PyAny>> {
        let mut st = self.state.lock();
        if st.queue.len() >= st.capacity {
            st.queue.pop_front();
            st.dropped += 1;
            if st.dropped.is_power_of_two() {
                tracing::warn!(
                    dropped = st.dropped,
                    capacity = st.capacity,
                    "{} dropped: the buffer is full (nobody is taking them)",
                    self.what
                );
            }
        }
        st.queue.push_back(item);
        st.received += 1;
        self.cv.notify_all();
        st.waker.take()
    }

    /// No more items will come, for `why` (the first reason given stays); returns the
    /// waker to call.
    pub(crate) fn end(&self, why: Failure) -> Option<Py<PyAny>> {
        let mut st = self.state.lock();
        if st.ended.is_none() {
            st.ended = Some(why);
        }
        self.cv.notify_all();
        st.waker.take()
    }

    /// Up to `max` queued items (at least one if any), oldest first.
    pub(crate) fn take(&self, max: usize) -> Taken<T> {
        let mut st = self.state.lock();
        if st.queue.is_empty() {
            if let Some(why) = &st.ended {
                return Taken::Ended(why.clone());
            }
        }
        let n = st.queue.len().min(max.max(1));
        Taken::Items(st.queue.drain(..n).collect())
    }

    /// Registers `waker` to be called once when an item or the end arrives; `false` (and no
    /// registration) if something is there already. `None` unregisters.
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

    /// Waits until an item or the end is there, at most `timeout`; whether one is.
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

    /// (items taken in, items dropped, items queued).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;

    fn items(t: Taken<i32>) -> Vec<i32> {
        match t {
            Taken::Items(v) => v,
            Taken::Ended(f) => panic!("ended: {f:?}"),
        }
    }

    #[test]
    fn items_leave_in_order_once_and_the_oldest_are_dropped_and_counted() {
        let m = Mailbox::new("numbers", 3);
        for i in 1..=5 {
            m.push(i);
        }
        assert_eq!(m.counts(), (5, 2, 3));
        assert_eq!(items(m.take(2)), vec![3, 4]);
        assert_eq!(items(m.take(10)), vec![5]);
        assert_eq!(items(m.take(10)), Vec::<i32>::new());
    }

    #[test]
    fn the_end_comes_after_every_queued_item_and_the_first_reason_stays() {
        let m = Mailbox::new("numbers", 10);
        m.push(1);
        assert!(m.end(Failure::new(FailureKind::Closed, "first")).is_none());
        assert!(m.end(Failure::new(FailureKind::Error, "second")).is_none());
        assert!(m.wait(Duration::ZERO));
        assert_eq!(items(m.take(10)), vec![1]);
        assert!(matches!(m.take(10), Taken::Ended(f) if f.message == "first"));
    }

    #[test]
    fn a_wait_ends_when_an_item_is_there() {
        let m = Mailbox::new("numbers", 10);
        assert!(!m.wait(Duration::from_millis(1)));
        m.push(1);
        assert!(m.wait(Duration::from_millis(1)));
    }
}
