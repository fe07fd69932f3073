//! A slot: where the replies of one request collect, waited on by a blocked thread (its
//! condvar) or an async task (its waker).
//!
//! Invariants: nothing is added after the item that ends the request (a final reply or an
//! error); a waiter never returns an item once the request's deadline has passed; the waker is
//! woken, and the condvar notified, after the slot's lock is released.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use super::error::RequestError;
use crate::protocol::Reply;

/// Where the replies of one request collect.
pub(super) struct Slot {
    state: Mutex<SlotState>,
    cv: Condvar,
    deadline: Instant,
}

struct SlotState {
    replies: VecDeque<Result<Reply, RequestError>>,
    finished: bool,
    waker: Option<Waker>,
}

impl Slot {
    pub(super) fn new(deadline: Instant) -> Arc<Slot> {
        Arc::new(Slot {
            state: Mutex::new(SlotState {
                replies: VecDeque::new(),
                finished: false,
                waker: None,
            }),
            cv: Condvar::new(),
            deadline,
        })
    }

    /// Adds a reply or the error that ends the request.
    pub(super) fn deliver(&self, item: Result<Reply, RequestError>) {
        let mut st = self.state.lock();
        if st.finished {
            return;
        }
        st.finished = match &item {
            Ok(reply) => reply.is_final(),
            Err(_) => true,
        };
        st.replies.push_back(item);
        let waker = st.waker.take();
        drop(st);
        self.cv.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Blocks for the next item until the request's deadline. Past the deadline the request
    /// has timed out, whatever is still queued: a caller slower than the worker's batches
    /// cannot make a stream outlive its deadline.
    pub(super) fn next_blocking(&self) -> Result<Reply, RequestError> {
        let mut st = self.state.lock();
        loop {
            if Instant::now() >= self.deadline {
                return Err(RequestError::Timeout);
            }
            if let Some(item) = st.replies.pop_front() {
                return item;
            }
            let _ = self.cv.wait_until(&mut st, self.deadline);
        }
    }

    /// The next item if there is one (or the timeout, past the deadline); else registers the
    /// task's waker.
    pub(super) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Result<Reply, RequestError>> {
        let mut st = self.state.lock();
        if Instant::now() >= self.deadline {
            return Poll::Ready(Err(RequestError::Timeout));
        }
        if let Some(item) = st.replies.pop_front() {
            return Poll::Ready(item);
        }
        st.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
