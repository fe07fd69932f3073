//! The events of every worker a supervisor starts, read as one stream across restarts.
//!
//! Each worker's [`bridge::Client`] delivers its events on a channel of its own. The
//! supervisor hands each new channel over (`EventChannels`); [`WorkerEvents`] reads them
//! all, with no thread and no second channel in between.
//!
//! Invariants: no event is lost across a restart: a replaced worker's channel is read until
//! it is both empty and closed (what the worker sent before it died still arrives); each
//! worker's events keep their order; an older worker's waiting events come before a newer
//! one's. The stream ends ([`RecvTimeoutError::Disconnected`]) only once the supervisor is gone
//! and every channel is drained. [`Event::BookTold`] is bookkeeping, not news: it is taken
//! here (the latest time read is kept for the supervisor, `BookHeard`) and never handed on.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge::protocol::Event;
use bridge::{Backoff, Events};
use crossbeam_channel::{Receiver, RecvTimeoutError, Select, Sender, TryRecvError};

/// The supervisor's end: where the events of each new worker go.
pub(crate) type EventChannels = Sender<Events>;

/// The latest market time through which the reader has read every change of the simulated
/// broker's book ([`Event::BookTold`]), shared with the supervisor, which hands it to each new
/// worker: a replacement tells only what changed since. Only ever moves forward.
#[derive(Debug, Clone)]
pub(crate) struct BookHeard(Arc<AtomicI64>);

impl BookHeard {
    /// The time, if any was read.
    pub(crate) fn through(&self) -> Option<i64> {
        let t = self.0.load(Ordering::Acquire);
        (t != NOTHING_HEARD).then_some(t)
    }

    fn heard(&self, through: i64) {
        self.0.fetch_max(through, Ordering::AcqRel);
    }
}

/// What [`BookHeard`] holds before anything was read.
const NOTHING_HEARD: i64 = i64::MIN;

/// The events of all the workers of one supervisor, in one stream.
#[derive(Debug)]
pub struct WorkerEvents {
    /// Events of workers started since the last read.
    new: Receiver<Events>,
    /// Whether the supervisor is gone (no new channels will come).
    new_closed: bool,
    /// Channels still open or holding events, oldest worker first.
    open: VecDeque<(u64, Events)>,
    /// Channels adopted so far: the next one's number.
    adopted: u64,
    /// The number of the channel (0: the first worker's) the last event came from.
    source: u64,
    /// Times the reader found nothing and waited on the queues (a sleep, unless an event came
    /// in between, and the wake of another thread that ended it); waits at the worker's ring
    /// itself are the ring's sleeps.
    waits: u64,
    /// Busy-poll instead of sleeping (`bridge.spin`).
    spin: bool,
    /// The busy-poll's backoff (never reset: its yields keep their spacing across calls).
    backoff: Backoff,
    /// What was read of the simulated broker's book.
    book: BookHeard,
}

impl WorkerEvents {
    /// A stream, and the sender of the channels it reads.
    #[cfg(test)]
    pub(crate) fn new() -> (EventChannels, WorkerEvents) {
        Self::with_spin(false)
    }

    /// A stream, and the sender of the channels it reads; with `spin`, [`recv_timeout`](Self::recv_timeout) busy-polls
    /// instead of sleeping.
    pub(crate) fn with_spin(spin: bool) -> (EventChannels, WorkerEvents) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (
            tx,
            WorkerEvents {
                new: rx,
                new_closed: false,
                open: VecDeque::new(),
                adopted: 0,
                source: 0,
                waits: 0,
                spin,
                backoff: Backoff::new(),
                book: BookHeard(Arc::new(AtomicI64::new(NOTHING_HEARD))),
            },
        )
    }

    /// The next event of any worker, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.adopt_new();
            if let Some(event) = self.try_next() {
                return Ok(event);
            }
            if self.new_closed && self.open.is_empty() {
                return Err(RecvTimeoutError::Disconnected);
            }
            if Instant::now() >= deadline {
                return Err(RecvTimeoutError::Timeout);
            }
            if self.spin {
                self.backoff.snooze();
                continue;
            }
            // One worker's events and no other: wait at its ring, reading it on this thread
            // (one wake per event), unless its dispatcher reads it.
            if let (1, Some((_, only))) = (self.open.len(), self.open.front()) {
                if self.new.is_empty() && only.wait_at_ring(deadline) {
                    continue;
                }
            }
            // Sleep until any channel (or a new one) has something, then look again.
            let mut select = Select::new();
            if !self.new_closed {
                select.recv(&self.new);
            }
            for (_, events) in &self.open {
                select.recv(events.follow());
            }
            self.waits += 1;
            if select.ready_deadline(deadline).is_err() {
                return Err(RecvTimeoutError::Timeout);
            }
        }
    }

    /// Which worker (0: the supervisor's first, 1: its first replacement, ...) the last event
    /// read came from.
    pub fn source(&self) -> u64 {
        self.source
    }

    /// What this stream has read of the simulated broker's book, as it goes on reading.
    pub(crate) fn book_heard(&self) -> BookHeard {
        self.book.clone()
    }

    /// Times [`recv_timeout`](Self::recv_timeout) found nothing and waited: at most one
    /// sleep (and the wake that ended it) each.
    pub fn waits(&self) -> u64 {
        self.waits
    }

    /// Takes the channels of workers started meanwhile.
    fn adopt_new(&mut self) {
        loop {
            match self.new.try_recv() {
                Ok(rx) => {
                    self.open.push_back((self.adopted, rx));
                    self.adopted += 1;
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.new_closed = true;
                    return;
                }
            }
        }
    }

    /// An event waiting on the oldest channel that has one; drops drained, closed channels.
    fn try_next(&mut self) -> Option<Event> {
        let mut i = 0;
        while i < self.open.len() {
            let (number, rx) = &self.open[i];
            match rx.try_recv() {
                Ok(Event::BookTold { through }) => self.book.heard(through),
                Ok(event) => {
                    self.source = *number;
                    return Some(event);
                }
                Err(TryRecvError::Empty) => i += 1,
                Err(TryRecvError::Disconnected) => {
                    self.open.remove(i);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(code: i32) -> Event {
        Event::Notice {
            code,
            message: String::new(),
        }
    }

    fn code(e: Event) -> i32 {
        match e {
            Event::Notice { code, .. } => code,
            other => panic!("{other:?}"),
        }
    }

    const SHORT: Duration = Duration::from_millis(20);

    #[test]
    fn events_of_a_dead_worker_are_read_to_the_end_before_the_next_workers() {
        let (channels, mut events) = WorkerEvents::new();
        let (first, first_rx) = crossbeam_channel::unbounded();
        channels.send(Events::detached(first_rx)).unwrap();
        first.send(notice(1)).unwrap();
        first.send(notice(2)).unwrap();
        // The first worker dies; a second one starts and speaks at once.
        drop(first);
        let (second, second_rx) = crossbeam_channel::unbounded();
        channels.send(Events::detached(second_rx)).unwrap();
        second.send(notice(3)).unwrap();
        let got: Vec<i32> = (0..3)
            .map(|_| code(events.recv_timeout(SHORT).unwrap()))
            .collect();
        assert_eq!(got, vec![1, 2, 3]);
        assert_eq!(events.recv_timeout(SHORT), Err(RecvTimeoutError::Timeout));
        assert_eq!(
            events.open.len(),
            1,
            "the drained, closed channel is dropped"
        );
    }

    #[test]
    fn what_was_told_of_the_book_is_kept_not_handed_on_and_never_goes_back() {
        let (channels, mut events) = WorkerEvents::new();
        let heard = events.book_heard();
        assert_eq!(heard.through(), None);
        let (tx, rx) = crossbeam_channel::unbounded();
        channels.send(Events::detached(rx)).unwrap();
        tx.send(Event::BookTold { through: 50 }).unwrap();
        tx.send(notice(1)).unwrap();
        tx.send(Event::BookTold { through: 40 }).unwrap();
        assert_eq!(code(events.recv_timeout(SHORT).unwrap()), 1);
        assert_eq!(heard.through(), Some(50), "read before the notice");
        assert_eq!(events.recv_timeout(SHORT), Err(RecvTimeoutError::Timeout));
        assert_eq!(heard.through(), Some(50), "never back");
    }

    #[test]
    fn a_waiting_reader_wakes_for_a_worker_started_while_it_waits() {
        let (channels, mut events) = WorkerEvents::new();
        let (tx, rx) = crossbeam_channel::unbounded();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            channels.send(Events::detached(rx)).unwrap();
            tx.send(notice(7)).unwrap();
            channels
        });
        let start = Instant::now();
        let e = events.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(code(e), 7);
        assert!(start.elapsed() < Duration::from_secs(5));
        drop(writer.join().unwrap());
    }

    /// Spinning (`bridge.spin`) changes how the reader waits, not what it reads: the same
    /// events, the same timeout and end, and no wait that needs a wake.
    #[test]
    fn a_spinning_reader_reads_the_same_without_waiting() {
        for spin in [false, true] {
            let (channels, mut events) = WorkerEvents::with_spin(spin);
            let (tx, rx) = crossbeam_channel::unbounded();
            let writer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                channels.send(Events::detached(rx)).unwrap();
                tx.send(notice(7)).unwrap();
                tx.send(notice(8)).unwrap();
                channels
            });
            let got: Vec<i32> = (0..2)
                .map(|_| code(events.recv_timeout(Duration::from_secs(10)).unwrap()))
                .collect();
            assert_eq!(got, vec![7, 8], "spin {spin}");
            assert_eq!(events.recv_timeout(SHORT), Err(RecvTimeoutError::Timeout));
            if spin {
                assert_eq!(events.waits(), 0);
            } else {
                assert!(events.waits() >= 2, "{}", events.waits());
            }
            drop(writer.join().unwrap());
            assert_eq!(
                events.recv_timeout(SHORT),
                Err(RecvTimeoutError::Disconnected),
                "spin {spin}"
            );
        }
    }

    #[test]
    fn a_replaced_worker_that_still_speaks_does_not_hold_back_the_new_one() {
        let (channels, mut events) = WorkerEvents::new();
        let (old, old_rx) = crossbeam_channel::unbounded();
        let (new, new_rx) = crossbeam_channel::unbounded();
        channels.send(Events::detached(old_rx)).unwrap();
        channels.send(Events::detached(new_rx)).unwrap();
        new.send(notice(2)).unwrap();
        assert_eq!(code(events.recv_timeout(SHORT).unwrap()), 2);
        old.send(notice(1)).unwrap();
        new.send(notice(3)).unwrap();
        assert_eq!(code(events.recv_timeout(SHORT).unwrap()), 1);
        assert_eq!(code(events.recv_timeout(SHORT).unwrap()), 3);
    }

    #[test]
    fn the_stream_ends_once_the_supervisor_is_gone_and_everything_is_read() {
        let (channels, mut events) = WorkerEvents::new();
        let (tx, rx) = crossbeam_channel::unbounded();
        channels.send(Events::detached(rx)).unwrap();
        tx.send(notice(1)).unwrap();
        drop(channels);
        assert_eq!(code(events.recv_timeout(SHORT).unwrap()), 1);
        assert_eq!(events.recv_timeout(SHORT), Err(RecvTimeoutError::Timeout));
        drop(tx);
        assert_eq!(
            events.recv_timeout(SHORT),
            Err(RecvTimeoutError::Disconnected)
        );
    }

    /// One live worker: the reader waits at its ring itself, takes each event from there, and
    /// comes back at its deadline when nothing comes (it does not go round at the ring).
    #[test]
    fn one_workers_events_are_read_at_its_ring_and_a_wait_ends_at_its_deadline() {
        let cfg = bridge::channel::ChannelConfig::default();
        let (runner_end, worker_end) = bridge::channel::pair(&cfg).unwrap();
        let (client, worker_events) =
            bridge::Client::over(runner_end, &bridge::ClientConfig::default()).unwrap();
        let server = bridge::server::Server::over(worker_end, Duration::from_secs(1));
        let (channels, mut events) = WorkerEvents::new();
        channels.send(worker_events).unwrap();
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let reading = std::thread::spawn(move || {
            let first = events.recv_timeout(Duration::from_millis(100));
            let _ = done_tx.send(());
            let mut codes = Vec::new();
            for _ in 0..20 {
                codes.push(code(events.recv_timeout(Duration::from_secs(10)).unwrap()));
            }
            (first, codes, events.waits())
        });
        // A wait that sees nothing ends at its deadline.
        assert!(
            done_rx.recv_timeout(Duration::from_secs(10)).is_ok(),
            "a wait at the ring went past its deadline"
        );
        for i in 0..20 {
            std::thread::sleep(Duration::from_millis(2));
            server.responder().event(notice(i)).unwrap();
        }
        let (first, codes, waits) = reading.join().unwrap();
        assert_eq!(first, Err(RecvTimeoutError::Timeout));
        assert_eq!(codes, (0..20).collect::<Vec<_>>());
        // Every wait was at the ring, none on the queue (a wake of the dispatcher's).
        assert_eq!(waits, 0);
        assert!(client.stats().channel.received.sleeps <= 21);
    }
}
