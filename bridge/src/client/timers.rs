//! The timer thread: expires async requests ([`ReplyFuture`](super::ReplyFuture)) at their
//! deadlines, re-polls async requests waiting for ring space, and sends cancels left pending.
//!
//! Invariants: it sleeps until the earliest async deadline, at most [`DISPATCH_IDLE`], and
//! while an async request waits for ring space at most [`SPACE_RETRY`]; it stops when the
//! dispatcher says so or the connection is gone, so that no wait here outlives the connection;
//! no lock is held while a waker is woken.

#![forbid(unsafe_code)]

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::RequestError;
use super::inner::{Inner, Timers, DISPATCH_IDLE};
use super::slot::Slot;

/// How often an async request waiting for ring space retries.
pub const SPACE_RETRY: Duration = Duration::from_millis(1);

/// The timer: sleeps until the earliest async deadline (or, while async requests wait for
/// ring space, at most [`SPACE_RETRY`]), expires what is due and wakes space waiters.
pub(super) fn run_timers(inner: Arc<Inner>) {
    let mut timers = inner.timers.lock();
    loop {
        // Stopped by the dispatcher when the worker is gone; the gone state itself is looked
        // at too, so that no wait here outlives the connection whatever became of the
        // dispatcher.
        if timers.stop || inner.control.is_gone() {
            return;
        }
        let due = inner.expire_due(&mut timers, Instant::now());
        if !due.is_empty() {
            drop(timers);
            for slot in due {
                slot.deliver(Err(RequestError::Timeout));
            }
            timers = inner.timers.lock();
            continue;
        }
        if !inner.cancels_pending.lock().is_empty() {
            if let Some(mut tx) = inner.tx.try_lock() {
                inner.flush_cancels(&mut tx);
            }
        }
        let next = timers.deadlines.peek().map(|Reverse((d, _))| *d);
        if timers.space_waiters.is_empty() {
            // Nothing to retry: sleep until the next deadline, or until told of a new one.
            let idle = Instant::now() + DISPATCH_IDLE;
            inner
                .timers_cv
                .wait_until(&mut timers, next.map_or(idle, |d| d.min(idle)));
            continue;
        }
        // Async requests wait for ring space: let them try again after a short pause.
        let retry = Instant::now() + SPACE_RETRY;
        inner
            .timers_cv
            .wait_until(&mut timers, next.map_or(retry, |d| d.min(retry)));
        let waiters = std::mem::take(&mut timers.space_waiters);
        drop(timers);
        for w in waiters {
            w.wake();
        }
        timers = inner.timers.lock();
    }
}

impl Inner {
    /// Asks the timer thread to expire request `id` at `deadline`.
    pub(super) fn expire_at(&self, deadline: Instant, id: u64) {
        let mut timers = self.timers.lock();
        let earlier = timers
            .deadlines
            .peek()
            .is_none_or(|Reverse((d, _))| deadline < *d);
        timers.deadlines.push(Reverse((deadline, id)));
        drop(timers);
        if earlier {
            self.timers_cv.notify_one();
        }
    }

    /// Takes the slots of the async requests whose deadline passed.
    fn expire_due(&self, timers: &mut Timers, now: Instant) -> Vec<Arc<Slot>> {
        let mut due = Vec::new();
        while let Some(Reverse((d, id))) = timers.deadlines.peek().copied() {
            if d > now {
                break;
            }
            timers.deadlines.pop();
            due.push(id);
        }
        if due.is_empty() {
            return Vec::new();
        }
        let mut pending = self.pending.lock();
        due.iter()
            .filter_map(|id| pending.slots.remove(id))
            .collect()
    }
}
