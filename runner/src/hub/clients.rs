//! A hub's clients: each one's connection, its live subscriptions, and the events on their
//! way to it, which never wait for it.
//!
//! An event goes straight into the client's ring when there is room and nobody else is
//! sending to it; otherwise it waits in the client's backlog (at most [`BACKLOG`] events,
//! sent in order before anything newer), and beyond that it is dropped and counted. The count
//! travels to the client as [`Event::Dropped`] in the place of what was dropped.
//!
//! Invariants: nothing here waits for a client (a full ring or a busy sender costs that
//! client a place in its backlog or an event, never anybody's time); a client's events keep
//! their order; every event meant for a client is delivered, or counted in an
//! `Event::Dropped` it receives before any later event.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bridge::protocol::Event;
use bridge::{Responder, SendError};
use parking_lot::Mutex;

/// Events a client's backlog holds before events are dropped.
pub(crate) const BACKLOG: usize = 4096;

/// One attached client.
#[derive(Debug)]
pub(crate) struct Client {
    /// The hub's number for it (never reused while the hub runs).
    pub(crate) id: u64,
    /// Its name: the namespace of its order references.
    pub(crate) name: String,
    /// Its process.
    pub(crate) pid: u32,
    /// Unix seconds it attached.
    pub(crate) since: u64,
    pub(crate) responder: Responder,
    /// Its live subscriptions: symbol → the subscription id it chose.
    pub(crate) subs: Mutex<BTreeMap<String, u32>>,
    out: Mutex<Outbox>,
    /// Requests it sent.
    pub(crate) requests: AtomicU64,
    /// Events delivered to it.
    pub(crate) delivered: AtomicU64,
    /// Events dropped for it.
    pub(crate) dropped: AtomicU64,
}

/// What waits to go to a client.
#[derive(Debug, Default)]
struct Outbox {
    backlog: VecDeque<Out>,
    /// Events in the backlog (markers of drops not counted).
    events: usize,
}

#[derive(Debug)]
enum Out {
    Event(Event),
    /// Events dropped at this place.
    Dropped(u64),
}

impl Client {
    pub(crate) fn new(id: u64, name: String, pid: u32, responder: Responder) -> Client {
        Client {
            id,
            name,
            pid,
            since: base::unix_time::now().as_secs(),
            responder,
            subs: Mutex::new(BTreeMap::new()),
            out: Mutex::new(Outbox::default()),
            requests: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Whether the client is gone (its connection closed, died or hung).
    pub(crate) fn is_gone(&self) -> bool {
        self.responder.control().is_gone()
    }

    /// Hands `event` to the client without waiting: into its ring, else its backlog, else
    /// dropped and counted.
    pub(crate) fn deliver(&self, event: Event) {
        if self.is_gone() {
            return;
        }
        let mut out = self.out.lock();
        self.flush_locked(&mut out);
        if out.backlog.is_empty() {
            // A bar is a few words: the copy costs less than keeping it aside first.
            match self.responder.try_event(event.clone()) {
                Ok(()) => {
                    self.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(SendError::Full) | Err(SendError::Timeout) => {}
                // Gone, or an event too large for its frames (never a hub's): nothing to keep.
                Err(_) => return,
            }
        }
        if out.events < BACKLOG {
            out.backlog.push_back(Out::Event(event));
            out.events += 1;
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            match out.backlog.back_mut() {
                Some(Out::Dropped(n)) => *n += 1,
                _ => out.backlog.push_back(Out::Dropped(1)),
            }
        }
    }

    /// Sends what the backlog holds, as far as the ring takes it now.
    pub(crate) fn flush(&self) {
        let mut out = self.out.lock();
        self.flush_locked(&mut out);
    }

    fn flush_locked(&self, out: &mut Outbox) {
        while let Some(front) = out.backlog.front() {
            let event = match front {
                Out::Event(e) => e.clone(),
                Out::Dropped(n) => Event::Dropped { count: *n },
            };
            match self.responder.try_event(event) {
                Ok(()) => {
                    if let Some(Out::Event(_)) = out.backlog.pop_front() {
                        out.events -= 1;
                        self.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(SendError::Full) | Err(SendError::Timeout) => return,
                Err(_) => {
                    out.backlog.clear();
                    out.events = 0;
                    return;
                }
            }
        }
    }

    /// Events waiting in its backlog.
    pub(crate) fn waiting(&self) -> usize {
        self.out.lock().events
    }
}

/// The clients attached now.
#[derive(Debug, Default)]
pub(crate) struct Clients {
    by_id: Mutex<BTreeMap<u64, Arc<Client>>>,
    next_id: AtomicU64,
    /// Seats given to clients being attached, not yet among `by_id`.
    seated: AtomicUsize,
}

/// A place among a hub's clients, held from the check of the limit until the client is
/// added (or its attach fails): clients attaching at once never exceed the limit together.
#[derive(Debug)]
pub(crate) struct Seat<'a> {
    clients: &'a Clients,
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        self.clients.seated.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Clients {
    /// A number for the next client.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A seat for one more client, if fewer than `max` are attached or being attached.
    pub(crate) fn seat(&self, max: usize) -> Option<Seat<'_>> {
        let by_id = self.by_id.lock();
        if by_id.len() + self.seated.load(Ordering::Acquire) >= max {
            return None;
        }
        self.seated.fetch_add(1, Ordering::AcqRel);
        Some(Seat { clients: self })
    }

    /// The client takes its seat.
    pub(crate) fn add(&self, seat: Seat<'_>, client: Arc<Client>) {
        let mut by_id = self.by_id.lock();
        by_id.insert(client.id, client);
        drop(seat);
    }

    pub(crate) fn remove(&self, id: u64) -> Option<Arc<Client>> {
        self.by_id.lock().remove(&id)
    }

    pub(crate) fn count(&self) -> usize {
        self.by_id.lock().len()
    }

    /// Every client, for a moment (no lock held after).
    pub(crate) fn all(&self) -> Vec<Arc<Client>> {
        self.by_id.lock().values().cloned().collect()
    }

    /// The clients named `name`.
    pub(crate) fn named(&self, name: &str) -> Vec<Arc<Client>> {
        self.by_id
            .lock()
            .values()
            .filter(|c| c.name == name)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge::channel::{pair, ChannelConfig};
    use bridge::protocol::{Bar, Body, Envelope};
    use bridge::segment::Geometry;
    use std::time::{Duration, Instant};

    fn bar(time: i64) -> Event {
        Event::Bar {
            sub: 7,
            bar: Bar {
                time,
                open: 1.0,
                high: 1.0,
                low: 1.0,
                close: 1.0,
                volume: 1.0,
            },
        }
    }

    /// Clients attaching at once are given at most the limit's seats between them, attached
    /// or not yet; a seat given back or taken by its client counts as it should.
    #[test]
    fn seats_never_exceed_the_limit_however_many_ask_at_once() {
        let clients = Clients::default();
        let given = std::sync::atomic::AtomicUsize::new(0);
        let barrier = std::sync::Barrier::new(8);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    barrier.wait();
                    let seat = clients.seat(3);
                    if seat.is_some() {
                        given.fetch_add(1, Ordering::Relaxed);
                    }
                    barrier.wait();
                    drop(seat);
                });
            }
        });
        assert_eq!(given.load(Ordering::Relaxed), 3);
        let (runner_end, worker_end) = pair(&ChannelConfig::default()).unwrap();
        let server = bridge::Server::over(worker_end, Duration::from_secs(5));
        let seat = clients.seat(2).unwrap();
        let other = clients.seat(2).unwrap();
        assert!(clients.seat(2).is_none());
        clients.add(
            seat,
            Arc::new(Client::new(1, "a".into(), 1, server.responder())),
        );
        assert!(clients.seat(2).is_none());
        drop(other);
        assert_eq!(clients.count(), 1);
        assert!(clients.seat(2).is_some());
        drop(runner_end);
    }

    /// A client that reads nothing while 20,000 bars come: its ring fills, then its backlog;
    /// the rest is dropped and counted. Once it reads, it gets everything kept, in order,
    /// then how many were dropped, then what came after; the sender never waited.
    #[test]
    fn a_client_that_does_not_read_loses_events_counted_and_told_in_their_place() {
        let cfg = ChannelConfig {
            geometry: Geometry {
                ring_capacity: 64 << 10,
                max_frame: 4 << 10,
            },
            ..ChannelConfig::default()
        };
        let (runner_end, worker_end) = pair(&cfg).unwrap();
        let server = bridge::Server::over(worker_end, Duration::from_secs(5));
        let client = Client::new(1, "slow".into(), 1, server.responder());
        let started = Instant::now();
        for t in 0..20_000 {
            client.deliver(bar(t));
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(client.waiting(), BACKLOG);
        let dropped = client.dropped.load(Ordering::Relaxed);
        assert!(dropped > 10_000, "{dropped}");
        let mut rx = runner_end.receiver;
        let mut got = Vec::new();
        let mut told = Vec::new();
        let mut after = false;
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            client.flush();
            if client.waiting() == 0 && !after {
                client.deliver(bar(1_000_000));
                after = true;
            }
            match rx.recv::<Envelope>(Instant::now() + Duration::from_millis(50)) {
                Ok(Envelope {
                    body: Body::Event(Event::Bar { bar, .. }),
                    ..
                }) => {
                    got.push(bar.time);
                    if bar.time == 1_000_000 {
                        break;
                    }
                }
                Ok(Envelope {
                    body: Body::Event(Event::Dropped { count }),
                    ..
                }) => told.push((got.len(), count)),
                Ok(other) => panic!("{other:?}"),
                Err(_) => {}
            }
        }
        let kept = got.len() - 1;
        assert_eq!(told, [(kept, dropped)]);
        assert_eq!(kept as u64 + dropped, 20_000);
        assert_eq!(got[..kept], (0..kept as i64).collect::<Vec<_>>()[..]);
        assert_eq!(got[kept], 1_000_000);
        assert_eq!(client.delivered.load(Ordering::Relaxed), kept as u64 + 1);
    }
}
