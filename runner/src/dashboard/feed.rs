//! What the run hands the dashboard ([`Update`]) and the handing side ([`Updates`]), which is
//! the run's [`Observer`] for it.
//!
//! Invariants: a send never waits: the queue is bounded ([`QUEUE`]), and an update that
//! finds it full is dropped and counted ([`Updates::dropped`]), so a dashboard that falls
//! behind (a slow browser, a hundred of them) cannot hold a bar up on its way to the
//! strategy; updates are applied in the order they were sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Result;
use bridge::protocol::{Bar, Event, Fill, OrderReport};
use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::session::{NoHistory, Observer};
use crate::strategy::Signal;

/// Updates queued for the dashboard, at most; beyond, they are dropped and counted.
pub const QUEUE: usize = 8_192;

/// One thing the run tells the dashboard.
#[derive(Debug)]
pub(crate) enum Update {
    /// A symbol's history: its most recent bars, as many as the dashboard holds, of
    /// `total` fetched.
    History {
        symbol: String,
        bars: Vec<Bar>,
        total: usize,
    },
    /// A symbol's history could not be had.
    NoData { symbol: String, why: String },
    /// A live bar the strategy saw, and the order it placed (the board evaluates the
    /// crossover itself, as the run's summary does).
    Bar {
        symbol: String,
        bar: Bar,
        order: Option<String>,
    },
    /// An order's new state (the run's book's view).
    Order(Box<OrderReport>),
    /// A fill of the run, once.
    Fill(Box<Fill>),
    /// Any other event of the worker (the broker connection, refusals, feeds, notices).
    Event(Event),
    /// A warning or error logged by the run.
    Warning {
        at_ms: u64,
        level: &'static str,
        text: String,
    },
    /// A round trip of the bridge measured at `at_ms` (Unix milliseconds), microseconds.
    RoundTrip { at_ms: u64, us: f64 },
    /// The run is over: nothing comes after this.
    End,
}

/// The sending half: cheap to clone, never waits.
#[derive(Debug, Clone)]
pub struct Updates {
    tx: Sender<Update>,
    dropped: Arc<AtomicU64>,
    /// Bars of a history handed over, at most (the dashboard's bound).
    bars: usize,
}

impl Updates {
    /// A feed and the dashboard's receiving half.
    pub(crate) fn new(bars: usize) -> (Updates, Receiver<Update>) {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let feed = Updates {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            bars,
        };
        (feed, rx)
    }

    /// Queues `update`, or drops and counts it if the queue is full (or the dashboard gone).
    pub(crate) fn send(&self, update: Update) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(update)
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues `update`, waiting up to `timeout` for room: for the run's end only.
    pub(crate) fn send_waiting(&self, update: Update, timeout: std::time::Duration) -> bool {
        self.tx.send_timeout(update, timeout).is_ok()
    }

    /// Updates dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The count of updates dropped, shared.
    pub(crate) fn dropped_counter(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }
}

impl Observer for Updates {
    fn on_history(&mut self, symbol: &str, bars: &[Bar]) -> Result<()> {
        let from = bars.len().saturating_sub(self.bars);
        self.send(Update::History {
            symbol: symbol.to_string(),
            bars: bars[from..].to_vec(),
            total: bars.len(),
        });
        Ok(())
    }

    fn on_history_failed(&mut self, symbol: &str, why: &NoHistory) {
        self.send(Update::NoData {
            symbol: symbol.to_string(),
            why: why.to_string(),
        });
    }

    fn on_live_bar(
        &mut self,
        symbol: &str,
        bars: &[Bar],
        _signal: Signal,
        order: Option<&str>,
    ) -> Result<()> {
        if let Some(bar) = bars.last() {
            self.send(Update::Bar {
                symbol: symbol.to_string(),
                bar: *bar,
                order: order.map(str::to_string),
            });
        }
        Ok(())
    }

    fn on_order(&mut self, report: &OrderReport) {
        self.send(Update::Order(Box::new(report.clone())));
    }

    fn on_fill(&mut self, fill: &Fill) {
        self.send(Update::Fill(Box::new(fill.clone())));
    }

    fn on_event(&mut self, event: &Event) -> bool {
        self.send(Update::Event(event.clone()));
        true
    }
}
