//! What the simulated backend and its threads share ([`Market`]): the options, the clock, the
//! handshake, the live subscriptions, the broker, and the flag that stops the threads.
//!
//! Invariants: one `Market` per worker, behind an `Arc` the ticker and the order watcher
//! hold; once `stop` is set it is never cleared, and both condition variables are notified
//! so that the threads see it at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Instant;

use bridge::protocol::Event;
use parking_lot::{Condvar, Mutex};

use super::book::Changes;
use super::broker::SimBroker;
use super::clock::SimClock;
use crate::backend::EventSink;
use crate::options::SimOptions;

/// The simulated broker connection's handshake.
pub(super) struct Handshake {
    /// Both the next valid id and the managed accounts have arrived.
    pub(super) connected: bool,
    /// When the first `connect` began it.
    pub(super) started: Option<Instant>,
}

/// One symbol's real-time bars.
pub(super) struct Subscription {
    /// The runner's id of the subscription, which its bars carry.
    pub(super) id: u32,
    pub(super) bar_seconds: u32,
    /// Start of the next bar to send, Unix seconds.
    pub(super) next: i64,
}

/// The simulated market: what the backend and its ticker and order threads share.
pub(super) struct Market {
    pub(super) opts: SimOptions,
    pub(super) clock: SimClock,
    /// The worker's generation: injected crashes and hangs apply to the first (0) only.
    pub(super) generation: u32,
    pub(super) handshake: Mutex<Handshake>,
    pub(super) handshake_cv: Condvar,
    pub(super) subscriptions: Mutex<HashMap<String, Subscription>>,
    pub(super) subscriptions_cv: Condvar,
    pub(super) stop: AtomicBool,
    /// History batches sent, for the injected crash and hang.
    pub(super) batches: AtomicU64,
    pub(super) events: EventSink,
    pub(super) broker: SimBroker,
    /// Wakes the order watcher when the market stops.
    pub(super) watch: Mutex<()>,
    pub(super) watch_cv: Condvar,
}

impl Market {
    /// A market with these options, for worker `generation`, telling `events`.
    pub(super) fn new(opts: SimOptions, generation: u32, events: EventSink) -> Self {
        let clock = SimClock::new(opts.start, opts.anchor_ms, opts.speed);
        let broker = SimBroker::new(
            opts.broker.clone(),
            opts.seed,
            &opts.broker.account,
            opts.book_told_through,
        );
        Market {
            opts,
            clock,
            generation,
            handshake: Mutex::new(Handshake {
                connected: false,
                started: None,
            }),
            handshake_cv: Condvar::new(),
            subscriptions: Mutex::new(HashMap::new()),
            subscriptions_cv: Condvar::new(),
            stop: AtomicBool::new(false),
            batches: AtomicU64::new(0),
            events,
            broker,
            watch: Mutex::new(()),
            watch_cv: Condvar::new(),
        }
    }

    /// Sends what changed at the broker as events: fills (unless the fault drops them), then
    /// orders, then positions, then that the book was told through the changes' time.
    pub(super) fn tell(&self, changes: Changes) {
        if changes.is_empty() {
            return;
        }
        let through = changes.at;
        let fills = if self.opts.faults.fill_events_dropped {
            Vec::new()
        } else {
            changes.fills
        };
        for f in fills {
            (self.events)(Event::Fill(Box::new(f)));
        }
        for o in changes.orders {
            (self.events)(Event::Order(Box::new(o)));
        }
        for p in changes.positions {
            (self.events)(Event::Position(Box::new(p)));
        }
        (self.events)(Event::BookTold { through });
    }

    /// Tells at once what an order request changed, rather than at the next fill bar.
    pub(super) fn tell_now(&self) {
        match self.broker.poll(self.clock.now()) {
            Ok(changes) => self.tell(changes),
            Err(e) => tracing::warn!("simulated broker: {}", e.message),
        }
    }
}
