//! The seat: the ring's reading end, held by one thread at a time (leader/follower).
//!
//! Two threads take turns at it: the dispatcher, and the application's event reader
//! ([`Events`](super::Events)) while it waits for an event. A live bar then costs one futex
//! wake (the worker's, of the thread that wants the bar) instead of two (the worker's of the
//! dispatcher, then the dispatcher's of the event reader).
//!
//! - The event reader, finding the queue empty, takes the seat if it is free; if the dispatcher
//!   holds it and no request is in flight, it asks for it (`reader_wants`, then wakes the
//!   dispatcher's sleep on the ring) and the dispatcher hands it over at once; with requests in
//!   flight it leaves the seat to the dispatcher and waits on the queue (a follower).
//! - While it holds the seat it routes every frame as the dispatcher would (replies to their
//!   slots, logs to the sink), so requests of other threads are answered meanwhile.
//! - When it lets go (an event came, or its deadline) and requests are in flight, it calls the
//!   dispatcher, which takes the seat back; a request registered while nobody holds the seat
//!   calls the dispatcher too (see `register`).
//! - The dispatcher, having handed the seat over, stands by: it sleeps until called, and every
//!   second (every 5 ms while it keeps finding frames) reads what waits on a ring nobody
//!   holds, so logs, events and a dead worker are never left unread for long.
//!
//! This file holds the seat and its flags; `turns.rs` the two readers' turns at it.
//!
//! Invariants: only the holder of the seat reads the ring or routes frames, so frames are
//! routed in the order sent; whenever a request is in flight, someone holds the seat or the
//! dispatcher has been called (a request registered sees `reader_leads` false after the
//! reader stored it, or the reader leaving sees the request: both go through the `pending`
//! lock); the event reader waits on the queue only while the dispatcher leads or has been
//! called; the dispatcher never waits for the reader, except to take the seat back, and the
//! reader holds it at most until its own deadline or the worker is gone.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Condvar, Mutex};

use crate::channel::Receiver;

/// The ring's reading end and who holds it.
pub(super) struct Seat {
    /// The receiving ring; `None` once the dispatcher has ended.
    pub(super) rx: Mutex<Option<Receiver>>,
    /// Whether the event reader may read the ring itself (not when the client spins).
    pub(super) shared: bool,
    /// The event reader holds the seat.
    pub(super) reader_leads: AtomicBool,
    /// The event reader asks the dispatcher for the seat (until it has it, or gives up).
    pub(super) reader_wants: AtomicBool,
    /// The dispatcher holds the seat to read (not to look at it while standing by).
    pub(super) dispatcher_leads: AtomicBool,
    /// The event reader is gone (dropped): the dispatcher reads for good.
    pub(super) reader_gone: AtomicBool,
    /// Calls to a standing-by dispatcher.
    pub(super) call: Mutex<Call>,
    pub(super) call_cv: Condvar,
}

#[derive(Default)]
pub(super) struct Call {
    /// Take the seat and read.
    pub(super) called: bool,
    /// The worker is gone: end.
    pub(super) stop: bool,
}

impl Seat {
    pub(super) fn new(rx: Receiver, spin: bool) -> Seat {
        Seat {
            rx: Mutex::new(Some(rx)),
            shared: !spin,
            reader_leads: AtomicBool::new(false),
            reader_wants: AtomicBool::new(false),
            dispatcher_leads: AtomicBool::new(false),
            reader_gone: AtomicBool::new(false),
            call: Mutex::new(Call::default()),
            call_cv: Condvar::new(),
        }
    }

    /// Whether the event reader holds the seat (read after the `pending` lock: see the
    /// module's invariants).
    pub(super) fn reader_leads(&self) -> bool {
        self.reader_leads.load(Ordering::SeqCst)
    }

    /// The event reader is gone: the dispatcher takes the seat back for good.
    pub(super) fn reader_gone(&self) {
        self.reader_gone.store(true, Ordering::SeqCst);
        self.call(false);
    }

    /// Wakes a standing-by dispatcher: to read (`stop` false) or to end.
    pub(super) fn call(&self, stop: bool) {
        let mut call = self.call.lock();
        if stop {
            call.stop = true;
        } else {
            call.called = true;
        }
        drop(call);
        self.call_cv.notify_one();
    }

    /// Calls the dispatcher to read, unless it does already.
    pub(super) fn call_dispatcher(&self) {
        if !self.dispatcher_leads.load(Ordering::SeqCst) {
            self.call(false);
        }
    }

    /// Tells the dispatcher to end.
    pub(super) fn stop(&self) {
        self.call(true);
    }

    /// Whether the event reader is gone (its [`Events`](super::Events) dropped).
    pub(super) fn reader_left(&self) -> bool {
        self.reader_gone.load(Ordering::SeqCst)
    }
}
