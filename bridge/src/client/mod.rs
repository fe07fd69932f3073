//! The runner's end: requests from many threads or async tasks, each matched to its replies by
//! id; events delivered to the application ([`Events`]); worker logs re-emitted in the runner's
//! log.
//!
//! The receiving ring is read by one thread at a time (`seat.rs`): the dispatcher thread, or
//! the application's thread while it waits for an event and no request is in flight (a live
//! bar then costs one futex wake, the worker's of the thread that wants it). Whoever reads
//! routes each reply to the slot of its request id (a reply nobody awaits is dropped and
//! counted as stray), forwards events, logs worker records with target `worker`, and when the
//! worker is declared gone fails every request in flight with [`RequestError::PeerGone`]. The
//! reader sleeps until a frame arrives or the peer is gone: it never polls, unless
//! [`ClientConfig::spin`] asks the dispatcher to busy-poll instead (no wake needed to deliver a
//! frame; one core kept busy for as long as the worker is connected).
//!
//! Deadlines: a blocking request waits on its own slot until its deadline. Async requests
//! ([`ReplyFuture`]) are expired by a timer thread that sleeps until the earliest of their
//! deadlines; while an async request waits for ring space (a full ring, a degraded state),
//! the timer also re-polls it every [`SPACE_RETRY`].
//!
//! Files, one concept each: `config.rs` (the settings), `error.rs` (why a request failed),
//! `stats.rs` (the counters), `log.rs` (the log sink), `slot.rs` (where one request's replies
//! collect), `inner.rs` (the state the threads share, and registering, sending and cancelling
//! a request), `dispatch.rs` (routing a frame, and the end), `seat.rs` (who reads the ring:
//! the dispatcher thread and the event reader in turns), `turns.rs` (their turns at it), `events.rs` (the application's
//! events), `timers.rs` (the timer thread), `stream.rs` (the blocking reply iterator),
//! `future.rs` (the async reply future); this file holds the [`Client`] itself. The
//! busy-poll's backoff is [`crate::backoff`].
//!
//! Invariants: every request ends (a final reply, or `Timeout`, or `PeerGone`) by its
//! deadline; no lock but the ring's own is held while a waker is woken or a record logged.

#![forbid(unsafe_code)]

mod config;
mod dispatch;
mod error;
mod events;
mod future;
mod inner;
mod log;
mod seat;
mod slot;
mod stats;
mod stream;
mod timers;
mod turns;

use std::fmt;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use config::{ClientConfig, EventTap};
pub use error::RequestError;
pub use events::Events;
pub use future::ReplyFuture;
pub use log::{emit, LogSink};
pub use stats::ClientStats;
pub use stream::ReplyStream;
pub use timers::SPACE_RETRY;

use crate::channel::{self, Channel, Control, StartError};
use crate::pages::Pages;
use crate::protocol::{Reply, Request};
use inner::{EventQueue, Inner};
use timers::run_timers;
use turns::dispatch;

/// The runner's connection to one worker process.
pub struct Client {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("control", &self.inner.control)
            .finish()
    }
}

impl Client {
    /// Starts `cmd` as a worker and connects to it. Returns the client and the stream of the
    /// worker's events.
    pub fn spawn(cmd: Command, cfg: &ClientConfig) -> Result<(Client, Events), StartError> {
        let channel = channel::spawn(cmd, &cfg.channel)?;
        Client::over(channel, cfg)
    }

    /// A client over the runner end of a connection made otherwise (for example
    /// [`channel::pair`]).
    pub fn over(channel: Channel, cfg: &ClientConfig) -> Result<(Client, Events), StartError> {
        let Channel {
            sender,
            receiver,
            control,
        } = channel;
        let (events_tx, events_rx) = EventQueue::new(cfg.event_capacity);
        let inner = Arc::new(Inner::new(
            sender,
            receiver,
            cfg.spin,
            control,
            events_tx,
            cfg.log_sink.clone(),
            cfg.event_tap.clone(),
        ));
        let mut client = Client {
            inner: inner.clone(),
            threads: Vec::new(),
        };
        let for_dispatcher = inner.clone();
        let events = Events::new(events_rx, &inner);
        let dispatcher = std::thread::Builder::new()
            .name("bridge-dispatch".into())
            .spawn(move || dispatch(for_dispatcher))
            .map_err(|source| StartError::Thread {
                name: "dispatcher",
                source,
            })?;
        client.threads.push(dispatcher);
        let timers = std::thread::Builder::new()
            .name("bridge-timers".into())
            .spawn(move || run_timers(inner))
            .map_err(|source| StartError::Thread {
                name: "timer",
                source,
            })?;
        client.threads.push(timers);
        Ok((client, events))
    }

    /// Sends `request` and waits for its final reply, at most `timeout` in all; a list
    /// answered in pages comes back whole. For requests answered in batches use
    /// [`stream`](Self::stream).
    pub fn request(&self, request: Request, timeout: Duration) -> Result<Reply, RequestError> {
        let mut stream = self.stream(request, timeout)?;
        let mut pages = Pages::default();
        loop {
            match stream.next() {
                Some(Ok(reply)) if reply.is_final() => return Ok(pages.join(reply)),
                Some(Ok(part)) => {
                    // A history batch is skipped; a page is kept.
                    let _batch = pages.keep(part);
                }
                Some(Err(e)) => return Err(e),
                None => return Err(RequestError::Timeout),
            }
        }
    }

    /// Sends `request` and returns an iterator over its replies, ending after the final one.
    /// The whole stream must complete within `timeout`.
    pub fn stream(&self, request: Request, timeout: Duration) -> Result<ReplyStream, RequestError> {
        let deadline = channel::deadline_after(timeout);
        let (id, slot) = self.inner.register(deadline)?;
        if let Err(e) = self.inner.send(id, request, deadline, true) {
            self.inner.forget(id);
            return Err(e.into());
        }
        Ok(ReplyStream::new(self.inner.clone(), id, slot))
    }

    /// The async form of [`request`](Self::request): never blocks the calling thread.
    pub fn request_async(&self, request: Request, timeout: Duration) -> ReplyFuture {
        ReplyFuture::new(
            self.inner.clone(),
            request,
            channel::deadline_after(timeout),
        )
    }

    /// The connection's control: worker pid, liveness, closing.
    pub fn control(&self) -> &Control {
        &self.inner.control
    }

    /// What this client counted.
    pub fn stats(&self) -> ClientStats {
        let c = &self.inner.counters;
        ClientStats {
            channel: self.inner.control.stats(),
            stray_replies: c.stray_replies.load(Ordering::Relaxed),
            dropped_events: c.dropped_events.load(Ordering::Relaxed),
            dropped_logs: c.dropped_logs.load(Ordering::Relaxed),
            dispatcher_idle_wakes: c.idle_wakes.load(Ordering::Relaxed),
            cancels: c.cancels.load(Ordering::Relaxed),
            handovers: c.handovers.load(Ordering::Relaxed),
        }
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.inner.pending.lock().slots.len()
    }

    /// Closes the connection: the worker sees it and exits; waits for it up to the configured
    /// grace, then kills it. Requests in flight fail.
    pub fn close(&mut self) {
        self.inner.control.close();
        // A dispatcher standing by takes the ring back and finds the connection closed.
        self.inner.seat.call(false);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests;
