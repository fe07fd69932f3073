//! Routing: every frame from the worker goes to whoever it is for (replies to the slot of their
//! request id, events to the application's queue, log records to the log sink), whichever
//! thread holds the ring ([`seat`](super::seat)); and the end, once the worker is gone.
//!
//! Invariants: a reply nobody awaits is dropped and counted as stray; once the worker is gone
//! no request stays unanswered, no new one is accepted, and the timer thread and the
//! dispatcher are told to stop.

#![forbid(unsafe_code)]

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::error::RequestError;
use super::inner::Inner;
use super::slot::Slot;
use crate::channel::GoneReason;
use crate::protocol::{Body, Envelope};

impl Inner {
    /// The worker is gone: fails every request in flight, refuses new ones, stops the timer
    /// thread and the dispatcher. Only the first call does anything.
    pub(super) fn end(&self, reason: GoneReason) {
        if self.pending.lock().gone.is_some() {
            return;
        }
        if let GoneReason::Corrupt(_) = reason {
            // A worker that corrupts the segment is not trusted to exit by itself.
            self.control.declare_gone(reason.clone());
        }
        self.fail_all(reason);
        let mut timers = self.timers.lock();
        timers.stop = true;
        drop(timers);
        self.timers_cv.notify_all();
        self.seat.stop();
    }

    /// Whether a request is in flight.
    pub(super) fn has_pending(&self) -> bool {
        !self.pending.lock().slots.is_empty()
    }

    /// Hands one frame from the worker to whoever it is for.
    pub(super) fn route(&self, env: Envelope) {
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
                    Some(tap) => match tap(event, !self.tapped.swap(true, Ordering::Relaxed)) {
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
