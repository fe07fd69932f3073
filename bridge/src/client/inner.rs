//! The state a client's threads share: requests in flight, the timer thread's work, the
//! sender, cancels not yet sent, and the counters; and the steps every path takes on it
//! (register a request, send it, forget or abandon it).
//!
//! Invariants: a request is registered before it is sent, and none is registered once the
//! worker is gone; a request given up before its final reply is cancelled at the worker, never
//! by waiting for the sender (a `Cancel` that finds it busy is left in `cancels_pending` for
//! whoever holds it next, or for the timer thread).

#![forbid(unsafe_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::error::RequestError;
use super::log::LogSink;
use super::seat::Seat;
use super::slot::Slot;
use super::stats::Counters;
use crate::channel::{Control, GoneReason, Receiver, SendError, Sender};
use crate::protocol::{Body, Envelope, Event, Request};

/// How long the dispatcher sleeps when no frame arrives (it wakes sooner for any frame, and
/// when the worker is gone or closes); the timer thread's longest sleep too.
pub(super) const DISPATCH_IDLE: Duration = Duration::from_secs(1);

/// The requests in flight.
pub(super) struct Pending {
    pub(super) slots: HashMap<u64, Arc<Slot>>,
    /// Set once the worker is gone: no new request is accepted.
    pub(super) gone: Option<GoneReason>,
}

/// What the timer thread watches: deadlines of async requests, and async requests waiting
/// for ring space.
#[derive(Default)]
pub(super) struct Timers {
    pub(super) deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    pub(super) space_waiters: Vec<Waker>,
    pub(super) stop: bool,
}

/// What the client's threads share.
pub(super) struct Inner {
    pub(super) tx: Mutex<Sender>,
    pub(super) control: Control,
    pub(super) pending: Mutex<Pending>,
    pub(super) next_id: AtomicU64,
    pub(super) timers: Mutex<Timers>,
    pub(super) timers_cv: Condvar,
    /// Ids of requests given up whose `Cancel` found the sender busy: sent by the next thread
    /// that holds it, or by the timer thread within [`DISPATCH_IDLE`].
    pub(super) cancels_pending: Mutex<Vec<u64>>,
    pub(super) events: EventQueue,
    pub(super) log_sink: LogSink,
    pub(super) event_tap: Option<super::config::EventTap>,
    /// Whether the tap has been handed an event of this client yet.
    pub(super) tapped: AtomicBool,
    pub(super) counters: Counters,
    /// The receiving ring, read by the dispatcher or by the event reader.
    pub(super) seat: Seat,
    #[cfg(test)]
    pub(super) before_space_wait: Mutex<Option<Box<dyn Fn() + Send>>>,
}

/// Where the events for the application wait: a queue that holds up to `capacity` events
/// and takes memory only for those waiting (a queue allocated whole up front would take
/// megabytes per worker, and a supervisor starts many over a week).
#[derive(Debug)]
pub(super) struct EventQueue {
    pub(super) tx: crossbeam_channel::Sender<Event>,
    pub(super) capacity: usize,
    /// An event was dropped: the worker's later [`Event::BookTold`] would claim what the
    /// application never got, so none is handed on any more.
    gap: AtomicBool,
}

impl EventQueue {
    /// A queue of at most `capacity` events (1 at least), and its receiving end.
    pub(super) fn new(capacity: usize) -> (EventQueue, crossbeam_channel::Receiver<Event>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let capacity = capacity.max(1);
        (
            EventQueue {
                tx,
                capacity,
                gap: AtomicBool::new(false),
            },
            rx,
        )
    }

    /// Queues `event` unless `capacity` events wait already; returns whether it was queued
    /// (the application gone counts as queued: nobody will miss it). The dispatcher is the
    /// only sender, so the queue never holds more than `capacity`. Once an event was dropped,
    /// no `BookTold` is queued again (a replacement worker then tells the whole book).
    pub(super) fn offer(&self, event: Event) -> bool {
        if matches!(event, Event::BookTold { .. }) && self.gap.load(Ordering::Relaxed) {
            // Not news: kept back, not counted as dropped.
            return true;
        }
        if self.tx.len() >= self.capacity {
            self.gap.store(true, Ordering::Relaxed);
            return false;
        }
        let _ = self.tx.send(event);
        true
    }
}

impl Inner {
    /// The shared state of a new client over `sender`, `receiver` and `control`; `spin`: the
    /// dispatcher busy-polls and keeps the ring to itself.
    pub(super) fn new(
        sender: Sender,
        receiver: Receiver,
        spin: bool,
        control: Control,
        events: EventQueue,
        log_sink: LogSink,
        event_tap: Option<super::config::EventTap>,
    ) -> Inner {
        Inner {
            tx: Mutex::new(sender),
            control,
            pending: Mutex::new(Pending {
                slots: HashMap::new(),
                gone: None,
            }),
            next_id: AtomicU64::new(1),
            timers: Mutex::new(Timers::default()),
            timers_cv: Condvar::new(),
            cancels_pending: Mutex::new(Vec::new()),
            events,
            log_sink,
            event_tap,
            tapped: AtomicBool::new(false),
            counters: Counters::default(),
            seat: Seat::new(receiver, spin),
            #[cfg(test)]
            before_space_wait: Mutex::new(None),
        }
    }

    /// Gives a new request an id and a slot, unless the worker is gone; makes sure somebody
    /// reads the ring for its replies (the event reader, or else the dispatcher, called).
    pub(super) fn register(&self, deadline: Instant) -> Result<(u64, Arc<Slot>), RequestError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Slot::new(deadline);
        let mut pending = self.pending.lock();
        if let Some(reason) = &pending.gone {
            return Err(RequestError::PeerGone(reason.clone()));
        }
        pending.slots.insert(id, slot.clone());
        drop(pending);
        // After the `pending` lock: a reader that let go of the ring before we took it has
        // stored `false` by now; one that lets go later sees this request and calls.
        if !self.seat.reader_leads() {
            self.seat.call_dispatcher();
        }
        Ok((id, slot))
    }

    /// Forgets request `id`: a reply that still comes for it is stray.
    pub(super) fn forget(&self, id: u64) {
        self.pending.lock().slots.remove(&id);
    }

    /// Forgets request `id`, which ended without its final reply (its deadline passed or its
    /// caller gave up), and tells the worker to stop working on it, never waiting: if another
    /// thread holds the sender, the `Cancel` is left for it (or for the timer thread) to send.
    pub(super) fn abandon(&self, id: u64) {
        self.forget(id);
        self.cancels_pending.lock().push(id);
        if let Some(mut tx) = self.tx.try_lock() {
            self.flush_cancels(&mut tx);
        }
    }

    /// Sends the `Cancel`s left pending, with `tx` held, as far as the ring has room now.
    pub(super) fn flush_cancels(&self, tx: &mut Sender) {
        let ids = std::mem::take(&mut *self.cancels_pending.lock());
        let mut left = Vec::new();
        for id in ids {
            let env = Envelope {
                id: 0,
                body: Body::Request(Request::Cancel { id }),
            };
            match tx.send(&env, None) {
                Ok(()) => {
                    self.counters.cancels.fetch_add(1, Ordering::Relaxed);
                }
                Err(SendError::Full) => left.push(id),
                // Gone, or not encodable: nobody is left to cancel anything.
                Err(_) => {}
            }
        }
        if !left.is_empty() {
            self.cancels_pending.lock().extend(left);
        }
    }

    /// Why the worker is gone, once the dispatcher has failed every request.
    pub(super) fn gone(&self) -> Option<GoneReason> {
        self.pending.lock().gone.clone()
    }

    /// Sends a registered request. `wait`: block for ring space until the deadline.
    pub(super) fn send(
        &self,
        id: u64,
        request: Request,
        deadline: Instant,
        wait: bool,
    ) -> Result<(), SendError> {
        let env = Envelope {
            id,
            body: Body::Request(request),
        };
        let (mut tx, sent) = if wait {
            let Some(mut tx) = self.tx.try_lock_until(deadline) else {
                return Err(SendError::Timeout);
            };
            let sent = tx.send(&env, Some(deadline));
            (tx, sent)
        } else {
            let Some(mut tx) = self.tx.try_lock() else {
                return Err(SendError::Full);
            };
            let sent = tx.send(&env, None);
            (tx, sent)
        };
        self.flush_cancels(&mut tx);
        sent
    }
}
