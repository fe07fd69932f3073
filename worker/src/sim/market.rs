//! What the simulated backend and its threads share ([`Market`]): the options, the clock, the
//! handshake, the live subscriptions, the broker, and the flag that stops the threads.
//!
//! Invariants: one `Market` per worker, behind an `Arc` the ticker and the order watcher
//! hold; once `stop` is set it is never cleared, and both condition variables are notified
//! so that the threads see it at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::time::Instant;

use bridge::protocol::Event;
use parking_lot::{Condvar, Mutex};

use super::book::Changes;
use super::broker::SimBroker;
use super::clock::SimClock;
use super::prices::Prices;
use crate::backend::EventSink;
use crate::options::SimOptions;
use crate::recording::Recording;

/// Market seconds what the runner heard of the book is taken earlier than said, beyond half a
/// real second of market time.
const HEARD_MARGIN: i64 = 5;

/// How often a `BookTold` goes when nothing changed, at most.
const QUIET_MARK: std::time::Duration = std::time::Duration::from_secs(1);

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
    /// That no bar comes any more was told (a replayed recording's bars of it are over).
    pub(super) ended: bool,
}

/// The simulated market: what the backend and its ticker and order threads share.
pub(super) struct Market {
    pub(super) opts: SimOptions,
    pub(super) clock: SimClock,
    /// Where prices come from: the paths, or the recording replayed.
    pub(super) prices: Prices,
    /// Why the market cannot be used (its recording could not be read): every `connect`
    /// fails with it.
    pub(super) unusable: Option<String>,
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
    /// Held from a poll of the broker until its changes are told.
    pub(super) telling: Mutex<()>,
    /// When the last `BookTold` was sent.
    marked: Mutex<Option<Instant>>,
    /// No `BookTold` is sent any more, and nothing of the book is folded: an event of the
    /// book was not delivered, or fill events were dropped by the fault.
    marks_off: AtomicBool,
    pub(super) watch_cv: Condvar,
}

impl Market {
    /// A market with these options, for worker `generation`, telling `events`.
    pub(super) fn new(opts: SimOptions, generation: u32, events: EventSink) -> Self {
        // What was heard is taken a little earlier than said: the workers' clocks may differ
        // by milliseconds (minutes of market time at high speed), and an entry another
        // process appended may be dated a little before it; telling some again is harmless.
        let margin = HEARD_MARGIN + (opts.speed / 2.0).ceil() as i64;
        let paths = Prices::Paths { seed: opts.seed };
        let (prices, unusable) = match &opts.replay {
            None => (paths, None),
            Some(file) => match Recording::open(std::path::Path::new(file)) {
                Ok(r) => (Prices::Recorded(std::sync::Arc::new(r)), None),
                Err(e) => (paths, Some(e.to_string())),
            },
        };
        let clock = match &prices {
            // A replay starts where its recording's history ended (or where the worker it
            // replaces had told the book through), held until the first subscription.
            Prices::Recorded(r) => {
                let start = r.start().max(opts.book_told_through.unwrap_or(i64::MIN));
                SimClock::held(start, opts.speed)
            }
            Prices::Paths { .. } => SimClock::new(opts.start, opts.anchor_ms, opts.speed),
        };
        let broker = SimBroker::new(
            opts.broker.clone(),
            prices.clone(),
            &opts.broker.account,
            opts.book_told_through.map(|t| t.saturating_sub(margin)),
        );
        Market {
            opts,
            clock,
            prices,
            unusable,
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
            telling: Mutex::new(()),
            marked: Mutex::new(None),
            marks_off: AtomicBool::new(false),
        }
    }

    /// Sends what changed at the broker as events: fills (unless the fault drops them), then
    /// orders, then positions, then that the book was told through the changes' time (also
    /// when nothing changed, once per [`QUIET_MARK`] of real time: the mark moves on). Called
    /// with `telling` held.
    fn tell(&self, changes: Changes) {
        let through = changes.at;
        let mut marked = self.marked.lock();
        if changes.is_empty() && marked.is_some_and(|at| at.elapsed() < QUIET_MARK) {
            return;
        }
        if self.opts.faults.fill_events_dropped && !changes.fills.is_empty() {
            // Lost fills: no mark may claim them heard, ever again.
            self.marks_off.store(true, AtomicOrdering::Relaxed);
        }
        let fills = if self.opts.faults.fill_events_dropped {
            Vec::new()
        } else {
            changes.fills
        };
        let mut delivered = true;
        for f in fills {
            delivered &= (self.events)(Event::Fill(Box::new(f)));
        }
        for o in changes.orders {
            delivered &= (self.events)(Event::Order(Box::new(o)));
        }
        for p in changes.positions {
            delivered &= (self.events)(Event::Position(Box::new(p)));
        }
        if !delivered {
            // The runner missed some of the book's news: it must stay in the book, to be told
            // again by a replacement worker or found by the runner's reconciliation.
            self.marks_off.store(true, AtomicOrdering::Relaxed);
        }
        if !self.marks_off.load(AtomicOrdering::Relaxed) {
            (self.events)(Event::BookTold { through });
            *marked = Some(Instant::now());
        }
    }

    /// Brings the book up to the market clock and tells what changed, one caller at a time:
    /// changes worked out later are never told before those worked out earlier (a
    /// `BookTold` must not overtake events it covers). Then folds the book if that is due
    /// (`fold`: the order watcher's polls, never an order request's, which would wait for the
    /// journal's rewrite).
    pub(super) fn poll_and_tell(&self, fold: bool) {
        let _telling = self.telling.lock();
        let now = self.clock.now();
        match self.broker.poll(now) {
            Ok(changes) => self.tell(changes),
            Err(e) => tracing::warn!("simulated broker: {}", e.message),
        }
        // Only what the runner was told may be folded: not once an event of the book was lost.
        if fold && !self.marks_off.load(AtomicOrdering::Relaxed) {
            if let Err(e) = self.broker.fold_if_due(now) {
                tracing::warn!("simulated broker: {}", e.message);
            }
        }
    }

    /// Tells at once what an order request changed, rather than at the next fill bar.
    pub(super) fn tell_now(&self) {
        self.poll_and_tell(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge::protocol::{Fill, Side};
    use std::sync::Arc;

    #[test]
    fn a_book_event_not_delivered_stops_the_marks_and_the_folds() {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let seen = sent.clone();
        // The ring to the runner is full for fills.
        let events: EventSink = Arc::new(move |e: Event| {
            let delivered = !matches!(e, Event::Fill(_));
            if delivered {
                seen.lock().push(e);
            }
            delivered
        });
        let market = Market::new(SimOptions::default(), 0, events);
        let fill = Fill {
            order_ref: "a-1".into(),
            exec_id: "00000001.1".into(),
            symbol: "SPY".into(),
            side: Side::Buy,
            quantity: 1.0,
            price: 100.0,
            commission: None,
            time: 10,
        };
        market.tell(Changes {
            at: 5,
            ..Changes::default()
        });
        market.tell(Changes {
            at: 20,
            fills: vec![fill],
            ..Changes::default()
        });
        assert!(market.marks_off.load(AtomicOrdering::Relaxed));
        let marks: Vec<i64> = sent
            .lock()
            .iter()
            .filter_map(|e| match e {
                Event::BookTold { through } => Some(*through),
                _ => None,
            })
            .collect();
        assert_eq!(marks, [5], "no mark claims the lost fill heard");
    }
}
