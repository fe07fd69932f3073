//! A request in flight awaited without blocking the runtime
//! ([`Client::request_async`](super::Client::request_async)).
//!
//! Invariants: the future never blocks its thread: a full ring parks the task with the timer
//! thread, which re-polls it; it resolves by its deadline (the timer thread expires it); a
//! future dropped while its request is in flight has the request cancelled at the worker.

#![forbid(unsafe_code)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use super::error::RequestError;
use super::inner::Inner;
use super::slot::Slot;
use crate::channel::SendError;
use crate::pages::Pages;
use crate::protocol::{Reply, Request};

/// Where an async request is.
enum FutureState {
    /// Not sent yet (the ring was full), or not tried; `None` once taken for a try.
    Unsent(Option<Request>),
    /// Sent as this id; its replies collect in the slot.
    Sent(u64, Arc<Slot>),
    /// Resolved.
    Done,
}

/// A request in flight, awaited without blocking the runtime. Resolves to the final reply
/// (batches of a streamed answer are skipped, the pages of a list joined into it) or an
/// error, by its deadline.
pub struct ReplyFuture {
    inner: Arc<Inner>,
    deadline: Instant,
    state: FutureState,
    /// The pages of a list answered so far.
    pages: Pages,
}

impl fmt::Debug for ReplyFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyFuture").finish_non_exhaustive()
    }
}

impl ReplyFuture {
    /// The future of `request`, sent on its first poll, resolving by `deadline`.
    pub(super) fn new(inner: Arc<Inner>, request: Request, deadline: Instant) -> ReplyFuture {
        ReplyFuture {
            inner,
            deadline,
            state: FutureState::Unsent(Some(request)),
            pages: Pages::default(),
        }
    }

    /// Tries to send the request; on a full ring parks the task with the timer thread.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), RequestError>> {
        let FutureState::Unsent(request) = &mut self.state else {
            return Poll::Ready(Ok(()));
        };
        let Some(req) = request.take() else {
            return Poll::Ready(Err(RequestError::Timeout));
        };
        let (id, slot) = self.inner.register(self.deadline)?;
        match self.inner.send(id, req.clone(), self.deadline, false) {
            Ok(()) => {
                self.inner.expire_at(self.deadline, id);
                self.state = FutureState::Sent(id, slot);
                Poll::Ready(Ok(()))
            }
            Err(SendError::Full) if Instant::now() < self.deadline => {
                self.inner.forget(id);
                *request = Some(req);
                #[cfg(test)]
                if let Some(hook) = &*self.inner.before_space_wait.lock() {
                    hook();
                }
                {
                    let mut timers = self.inner.timers.lock();
                    timers.space_waiters.push(cx.waker().clone());
                }
                self.inner.timers_cv.notify_one();
                // The worker may have been declared gone, and the waiters woken, between the
                // failed send and the registration above: look again now that we are
                // registered, or nobody would ever wake this task.
                match self.inner.gone() {
                    Some(reason) => Poll::Ready(Err(RequestError::PeerGone(reason))),
                    None => Poll::Pending,
                }
            }
            Err(SendError::Full) => {
                self.inner.forget(id);
                Poll::Ready(Err(RequestError::Send(SendError::Timeout)))
            }
            Err(e) => {
                self.inner.forget(id);
                Poll::Ready(Err(e.into()))
            }
        }
    }
}

impl Future for ReplyFuture {
    type Output = Result<Reply, RequestError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match this.poll_send(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => {
                this.state = FutureState::Done;
                return Poll::Ready(Err(e));
            }
            Poll::Ready(Ok(())) => {}
        }
        loop {
            let FutureState::Sent(id, slot) = &this.state else {
                return Poll::Ready(Err(RequestError::Timeout));
            };
            match slot.poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(reply)) if !reply.is_final() => {
                    // A history batch is skipped; a page is kept.
                    let _batch = this.pages.keep(reply);
                    continue;
                }
                Poll::Ready(item) => {
                    let item = item.map(|last| std::mem::take(&mut this.pages).join(last));
                    let id = *id;
                    this.state = FutureState::Done;
                    if let Err(RequestError::Timeout) = item {
                        this.inner.abandon(id);
                    } else {
                        this.inner.forget(id);
                    }
                    return Poll::Ready(item);
                }
            }
        }
    }
}

impl Drop for ReplyFuture {
    fn drop(&mut self) {
        if let FutureState::Sent(id, _) = self.state {
            self.inner.abandon(id);
        }
    }
}
