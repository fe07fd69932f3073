//! The two readers' turns at the seat ([`seat`](super::seat)): the dispatcher thread (leading,
//! standing by, or spinning) and the event reader's turn while it waits for an event.
//!
//! Invariants: those of the seat; a turn of the event reader is bounded (its deadline, or
//! [`READER_TURN_FRAMES`]) and its end, however it ends, lets go of the seat and calls the
//! dispatcher when a request is in flight or frames were left.

#![forbid(unsafe_code)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::MutexGuard;

use super::inner::{Inner, DISPATCH_IDLE};
use crate::backoff::Backoff;
use crate::channel::{GoneReason, Receiver, RecvError};
use crate::protocol::Envelope;

/// How soon a standing-by dispatcher looks at the ring again after finding frames nobody read
/// (the event reader is busy elsewhere).
pub(super) const STANDBY_BUSY: Duration = Duration::from_millis(5);

/// Whether the event reader spins and yields before it sleeps on the ring, as the dispatcher
/// does for replies. It does not: an event (a live bar) is rarely microseconds away, and the
/// spinning took the CPU from the threads that had work (other clients of a hub sharing a
/// core: measured in `fan_out`).
const EVENT_WAIT_SPINS: bool = false;

/// How a turn at the seat ended for the dispatcher.
enum Turn {
    /// The event reader asked for the seat.
    HandOver,
    /// The worker is gone.
    Ended,
}

type Held<'a> = MutexGuard<'a, Option<Receiver>>;

/// The dispatcher thread: reads the ring and routes every frame while it holds the seat,
/// hands it to the event reader when asked, and ends once the worker is gone (failing every
/// request in flight).
pub(super) fn dispatch(inner: Arc<Inner>) {
    let seat = &inner.seat;
    let mut held = seat.rx.lock();
    if !seat.shared {
        spin(&inner, &mut held);
        *held = None;
        return;
    }
    loop {
        match lead(&inner, &mut held) {
            Turn::Ended => break,
            Turn::HandOver => {
                inner.counters.handovers.fetch_add(1, Ordering::Relaxed);
                drop(held);
                match stand_by(&inner) {
                    Some(h) => held = h,
                    None => {
                        held = seat.rx.lock();
                        break;
                    }
                }
            }
        }
    }
    // Dropped here, as a dispatcher that owned it would.
    *held = None;
}

/// Reads for as long as the dispatcher holds the seat: until the event reader asks for it or
/// the worker is gone.
fn lead(inner: &Inner, held: &mut Held<'_>) -> Turn {
    let seat = &inner.seat;
    seat.dispatcher_leads.store(true, Ordering::SeqCst);
    seat.call.lock().called = false;
    let turn = loop {
        // The ask stands until the reader has the seat: a dispatcher called back to the seat
        // meanwhile (a stale call) hands it over again rather than keep the reader waiting.
        if seat.reader_wants.load(Ordering::SeqCst) && !seat.reader_left() {
            break Turn::HandOver;
        }
        let Some(rx) = held.as_mut() else {
            break Turn::Ended;
        };
        let wants = || seat.reader_wants.load(Ordering::SeqCst);
        match rx.recv_as::<Envelope>(Instant::now() + DISPATCH_IDLE, wants, true) {
            Ok(env) => {
                inner.route(env);
                if let Err(reason) = drain(inner, rx, until_asked(inner)) {
                    inner.end(reason);
                    break Turn::Ended;
                }
            }
            Err(RecvError::Timeout) => {
                if !wants() {
                    inner.counters.idle_wakes.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(RecvError::PeerGone(reason)) => {
                inner.end(reason);
                break Turn::Ended;
            }
        }
    };
    seat.dispatcher_leads.store(false, Ordering::SeqCst);
    turn
}

/// The dispatcher without the seat: sleeps until called, looking every [`DISPATCH_IDLE`] at a
/// ring nobody holds. Returns the seat when called to read; `None` once the worker is gone.
fn stand_by(inner: &Inner) -> Option<Held<'_>> {
    let seat = &inner.seat;
    let mut wait = DISPATCH_IDLE;
    loop {
        let called = {
            let mut call = seat.call.lock();
            if !call.called && !call.stop {
                let _ = seat.call_cv.wait_for(&mut call, wait);
            }
            if call.stop {
                return None;
            }
            std::mem::take(&mut call.called)
        };
        if called || seat.reader_left() {
            return Some(seat.rx.lock());
        }
        // Nobody called: a look at the ring, if nobody holds it.
        wait = DISPATCH_IDLE;
        let Some(mut held) = seat.rx.try_lock() else {
            continue;
        };
        let rx = held.as_mut()?;
        match drain(inner, rx, until_asked(inner)) {
            Ok(Drained { routed: 0, .. }) => {
                inner.counters.idle_wakes.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => wait = STANDBY_BUSY,
            Err(reason) => {
                drop(held);
                inner.end(reason);
                return None;
            }
        }
    }
}

/// How a [`drain`] ended.
struct Drained {
    /// Frames routed.
    routed: usize,
    /// Stopped by its rule with frames perhaps still waiting.
    cut: bool,
}

/// Routes the frames waiting on the ring until none is left or `stop(routed)` says so (asked
/// before each frame after the first 64 and every 64th: it may read the clock); the reason the
/// worker is gone if it is.
fn drain(
    inner: &Inner,
    rx: &mut Receiver,
    stop: impl Fn(usize) -> bool,
) -> Result<Drained, GoneReason> {
    let mut routed = 0;
    loop {
        if routed > 0 && routed % 64 == 0 && stop(routed) {
            return Ok(Drained { routed, cut: true });
        }
        match rx.try_recv::<Envelope>() {
            Ok(Some(env)) => inner.route(env),
            Ok(None) | Err(RecvError::Timeout) => return Ok(Drained { routed, cut: false }),
            Err(RecvError::PeerGone(reason)) => return Err(reason),
        }
        routed += 1;
    }
}

/// The dispatcher's rule for a burst: the event reader asking for the seat stops it (the
/// reader reads on itself; the queue is not left unread while it waits for the seat).
fn until_asked(inner: &Inner) -> impl Fn(usize) -> bool + '_ {
    |_| inner.seat.reader_wants.load(Ordering::SeqCst)
}

/// The spinning dispatcher ([`ClientConfig::spin`](super::ClientConfig::spin)): never sleeps
/// and never hands the seat over; a frame is routed as soon as it is published. The gone state
/// is looked at on every empty poll (`try_recv` reports it once the ring is drained).
fn spin(inner: &Inner, held: &mut Held<'_>) {
    let Some(rx) = held.as_mut() else {
        return;
    };
    // It reads for good: requests need not call it.
    inner.seat.dispatcher_leads.store(true, Ordering::SeqCst);
    let mut backoff = Backoff::new();
    loop {
        match rx.try_recv::<Envelope>() {
            Ok(Some(env)) => {
                backoff.reset();
                inner.route(env);
            }
            Ok(None) | Err(RecvError::Timeout) => backoff.snooze(),
            Err(RecvError::PeerGone(reason)) => return inner.end(reason),
        }
    }
}

impl Inner {
    /// One turn of the event reader at the ring, until `deadline` or the first frame (then
    /// what else waits is routed too). Returns `false` when the reader should wait on the
    /// queue instead: the dispatcher reads (requests are in flight), the client spins, or
    /// the worker is gone.
    pub(super) fn read_for_events(&self, deadline: Instant) -> bool {
        let seat = &self.seat;
        if !seat.shared {
            return false;
        }
        let held = match seat.rx.try_lock() {
            Some(held) => held,
            None => {
                if self.has_pending() {
                    // The dispatcher reads for the requests; the reader follows.
                    seat.call_dispatcher();
                    return false;
                }
                seat.reader_wants.store(true, Ordering::SeqCst);
                self.control.interrupt_reader();
                match seat.rx.try_lock_until(deadline) {
                    Some(held) => {
                        seat.reader_wants.store(false, Ordering::SeqCst);
                        held
                    }
                    None => {
                        // The deadline came first. The dispatcher may be letting go of the
                        // seat just now: the ask is withdrawn and the dispatcher called back,
                        // and this thread does not wait for it.
                        seat.reader_wants.store(false, Ordering::SeqCst);
                        seat.call(false);
                        return true;
                    }
                }
            }
        };
        if held.is_none() {
            return false;
        }
        let mut turn = ReaderTurn {
            inner: self,
            held: Some(held),
            more: false,
        };
        turn.read(deadline);
        true
    }
}

/// About the most frames the event reader routes in one turn (looked at every 64): past it
/// (or past its deadline) the
/// dispatcher reads on while the reader hands out what it took.
const READER_TURN_FRAMES: usize = 4096;

/// The event reader's turn at the seat; its end (also by a panic in a tap or a log sink) lets
/// go of the seat and calls the dispatcher if a request is in flight or frames were left.
struct ReaderTurn<'a> {
    inner: &'a Inner,
    held: Option<Held<'a>>,
    /// Frames may be waiting that this turn left.
    more: bool,
}

impl ReaderTurn<'_> {
    fn read(&mut self, deadline: Instant) {
        let inner = self.inner;
        let Some(rx) = self.held.as_mut().and_then(|h| h.as_mut()) else {
            return;
        };
        inner.seat.reader_leads.store(true, Ordering::SeqCst);
        // Events the dispatcher routed before it let go of the seat: no waiting at the ring
        // then (only this thread routes while it holds the seat, so the look is sure).
        let deadline = if inner.events.tx.is_empty() {
            deadline
        } else {
            Instant::now()
        };
        let gone = match rx.recv_as::<Envelope>(deadline, || false, EVENT_WAIT_SPINS) {
            Ok(env) => {
                inner.route(env);
                let bounded =
                    |routed| routed + 1 >= READER_TURN_FRAMES || Instant::now() >= deadline;
                match drain(inner, rx, bounded) {
                    Ok(drained) => {
                        self.more = drained.cut;
                        None
                    }
                    Err(reason) => Some(reason),
                }
            }
            Err(RecvError::Timeout) => None,
            Err(RecvError::PeerGone(reason)) => Some(reason),
        };
        if let Some(reason) = gone {
            // Nothing more to read: the ring's end is dropped here, not left for the
            // dispatcher to take.
            if let Some(held) = self.held.as_mut() {
                **held = None;
            }
            self.end_turn();
            inner.end(reason);
        }
    }

    fn end_turn(&mut self) {
        let Some(held) = self.held.take() else {
            return;
        };
        let seat = &self.inner.seat;
        seat.reader_leads.store(false, Ordering::SeqCst);
        drop(held);
        if self.more {
            seat.call(false);
        } else if self.inner.has_pending() {
            seat.call_dispatcher();
        }
    }
}

impl Drop for ReaderTurn<'_> {
    fn drop(&mut self) {
        self.end_turn();
    }
}
