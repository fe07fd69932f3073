//! The replies of one blocking request, as an iterator ([`Client::stream`](super::Client::stream)).
//!
//! Invariants: the iterator ends after the final reply or the error that ends the request;
//! a stream given up before its end (dropped, or past its deadline) has its request cancelled
//! at the worker.

#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;

use super::error::RequestError;
use super::inner::Inner;
use super::slot::Slot;
use crate::protocol::Reply;

/// The replies of one request, in order, ending after the final one.
pub struct ReplyStream {
    inner: Arc<Inner>,
    id: u64,
    slot: Arc<Slot>,
    done: bool,
}

impl fmt::Debug for ReplyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyStream").field("id", &self.id).finish()
    }
}

impl ReplyStream {
    /// The stream of request `id`, registered and sent, whose replies collect in `slot`.
    pub(super) fn new(inner: Arc<Inner>, id: u64, slot: Arc<Slot>) -> ReplyStream {
        ReplyStream {
            inner,
            id,
            slot,
            done: false,
        }
    }

    /// The request's id.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Iterator for ReplyStream {
    type Item = Result<Reply, RequestError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.slot.next_blocking();
        match &item {
            Ok(r) if !r.is_final() => {}
            Err(RequestError::Timeout) => {
                self.done = true;
                self.inner.abandon(self.id);
            }
            _ => {
                self.done = true;
                self.inner.forget(self.id);
            }
        }
        Some(item)
    }
}

impl Drop for ReplyStream {
    fn drop(&mut self) {
        if !self.done {
            self.inner.abandon(self.id);
        }
    }
}
