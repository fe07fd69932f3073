//! The worker's events, as the application reads them ([`Events`]).
//!
//! Invariants: events come in the order the worker sent them; a thread waiting here reads the
//! ring itself when it may ([`seat`](super::seat)), so a live bar costs one wake; the queue
//! ends (`Disconnected`) once the client is gone and every event was read.

#![forbid(unsafe_code)]

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

use super::inner::Inner;
use crate::protocol::Event;

/// The events of one worker ([`Client::spawn`](super::Client::spawn)), read by one thread at a
/// time (it may move between threads: `Send`, not `Sync`).
///
/// Waiting here ([`recv_timeout`](Self::recv_timeout), [`recv_deadline`](Self::recv_deadline),
/// [`wait_at_ring`](Self::wait_at_ring)) reads the worker's ring on this thread when no request
/// is in flight: the event is routed and taken without a second thread's wake. The queue
/// itself ([`follow`](Self::follow)) can be waited on with other channels, as any channel; only
/// the dispatcher thread reads the ring for it then.
pub struct Events {
    rx: Receiver<Event>,
    /// Not a strong reference: the queue must end once the client is dropped.
    inner: Weak<Inner>,
    /// One reader: `Send`, not `Sync` (the seat takes one ask for the ring at a time).
    _one_reader: PhantomData<Cell<()>>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("waiting", &self.rx.len())
            .finish()
    }
}

impl Events {
    pub(super) fn new(rx: Receiver<Event>, inner: &Arc<Inner>) -> Events {
        Events {
            rx,
            inner: Arc::downgrade(inner),
            _one_reader: PhantomData,
        }
    }

    /// Events fed into `rx` by other means than a client (a test's, an application's own):
    /// waiting on them waits on the queue only.
    pub fn detached(rx: Receiver<Event>) -> Events {
        Events {
            rx,
            inner: Weak::new(),
            _one_reader: PhantomData,
        }
    }

    /// The next event if one waits.
    pub fn try_recv(&self) -> Result<Event, TryRecvError> {
        self.rx.try_recv()
    }

    /// The next event, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        self.recv_deadline(crate::channel::deadline_after(timeout))
    }

    /// The next event, waiting until `deadline`.
    pub fn recv_deadline(&self, deadline: Instant) -> Result<Event, RecvTimeoutError> {
        loop {
            match self.rx.try_recv() {
                Ok(event) => return Ok(event),
                Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => {}
            }
            if Instant::now() >= deadline {
                return Err(RecvTimeoutError::Timeout);
            }
            if !self.wait_at_ring(deadline) {
                return self.rx.recv_deadline(deadline);
            }
        }
    }

    /// Reads the worker's ring on this thread until a frame comes or `deadline` passes, if it
    /// may (no request in flight, the client not spinning, the worker not gone): then whatever
    /// came is routed (events to this queue) and `true` is returned. `false`: the dispatcher
    /// reads, so wait on the queue instead ([`follow`](Self::follow)). For readers that wait on more than
    /// this queue (several workers' events) and look at each in turn.
    pub fn wait_at_ring(&self, deadline: Instant) -> bool {
        match self.inner.upgrade() {
            Some(inner) => inner.read_for_events(deadline),
            None => false,
        }
    }

    /// The queue the events wait in, to wait on with other channels (a `Select`): the
    /// dispatcher reads the ring meanwhile (called back if it had handed the ring to this
    /// thread), so every event reaches the queue as it comes.
    pub fn follow(&self) -> &Receiver<Event> {
        if let Some(inner) = self.inner.upgrade() {
            inner.seat.call_dispatcher();
        }
        &self.rx
    }

    /// Events waiting in the queue.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether no event waits in the queue.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.seat.reader_gone();
        }
    }
}
