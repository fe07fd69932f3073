//! The dispatcher thread: owns the receiving ring and routes every frame from the worker
//! (replies to the slot of their request id, events to the application's channel, log records
//! to the log sink) until the worker is gone, then fails every request in flight.
//!
//! Invariants: it sleeps until a frame arrives or the peer is gone (never polls), unless the
//! client was configured to spin, and then it never sleeps; a reply nobody awaits is dropped
//! and counted as stray; once the worker is gone no request stays unanswered, no new one is
//! accepted, and the timer thread is told to stop.

#![forbid(unsafe_code)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::error::RequestError;
use super::inner::{Inner, DISPATCH_IDLE};
use super::slot::Slot;
use crate::backoff::Backoff;
use crate::channel::{GoneReason, Receiver, RecvError};
use crate::protocol::{Body, Envelope};

/// The dispatcher: routes every frame from the worker until it is gone, then fails every
/// request in flight.
pub(super) fn dispatch(inner: Arc<Inner>, mut rx: Receiver, spin: bool) {
    let gone = |reason: GoneReason| {
        if let GoneReason::Corrupt(_) = reason {
            // A worker that corrupts the segment is not trusted to exit by itself.
            inner.control.declare_gone(reason.clone());
        }
        inner.fail_all(reason);
        let mut timers = inner.timers.lock();
        timers.stop = true;
        drop(timers);
        inner.timers_cv.notify_all();
    };
    if spin {
        // Never sleeps: a frame is routed as soon as it is published. The gone state is
        // looked at on every empty poll (`try_recv` reports it once the ring is drained).
        let mut backoff = Backoff::new();
        loop {
            match rx.try_recv::<Envelope>() {
                Ok(Some(env)) => {
                    backoff.reset();
                    inner.route(env);
                }
                Ok(None) | Err(RecvError::Timeout) => backoff.snooze(),
                Err(RecvError::PeerGone(reason)) => return gone(reason),
            }
        }
    }
    loop {
        match rx.recv::<Envelope>(Instant::now() + DISPATCH_IDLE) {
            Ok(env) => {
                inner.route(env);
                // Drain what else is there before sleeping again.
                loop {
                    match rx.try_recv::<Envelope>() {
                        Ok(Some(env)) => inner.route(env),
                        Ok(None) | Err(RecvError::Timeout) => break,
                        Err(RecvError::PeerGone(reason)) => return gone(reason),
                    }
                }
            }
            Err(RecvError::Timeout) => {
                inner.counters.idle_wakes.fetch_add(1, Ordering::Relaxed);
            }
            Err(RecvError::PeerGone(reason)) => return gone(reason),
        }
    }
}

impl Inner {
    /// Hands one frame from the worker to whoever it is for.
    fn route(&self, env: Envelope) {
        match env.body {
            Body::Reply(reply) => {
                let slot = {
                    let mut pending = self.pending.lock();
                    if reply.is_final() {
                        pending.slots.remove(&env.id)
                    } else {
                        pending.slots.get(&env.id).cloned()
                    }
                };
                match slot {
                    Some(slot) => slot.deliver(Ok(reply)),
                    None => {
                        self.counters.stray_replies.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(target: "bridge", id = env.id, "stray reply dropped");
                    }
                }
            }
            Body::Event(event) => {
                let event = match &self.event_tap {
                    Some(tap) => match tap(event) {
                        Some(event) => event,
                        None => return,
                    },
                    None => event,
                };
                if !self.events.offer(event) {
                    self.counters.dropped_events.fetch_add(1, Ordering::Relaxed);
                }
            }
            Body::Log(record) => {
                if record.dropped_before > 0 {
                    self.counters
                        .dropped_logs
                        .fetch_add(record.dropped_before, Ordering::Relaxed);
                }
                (self.log_sink)(&record)
            }
            Body::Hello(_) | Body::Request(_) => {
                tracing::warn!(target: "bridge", "unexpected frame from the worker ignored");
            }
        }
    }

    /// The worker is gone: fails every request in flight, refuses new ones, and wakes the
    /// async requests waiting for ring space.
    fn fail_all(&self, reason: GoneReason) {
        let slots: Vec<Arc<Slot>> = {
            let mut pending = self.pending.lock();
            pending.gone = Some(reason.clone());
            pending.slots.drain().map(|(_, s)| s).collect()
        };
        for slot in slots {
            slot.deliver(Err(RequestError::PeerGone(reason.clone())));
        }
        let waiters = std::mem::take(&mut self.timers.lock().space_waiters);
        for w in waiters {
            w.wake();
        }
    }
}
