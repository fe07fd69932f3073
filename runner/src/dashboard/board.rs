//! What the dashboard knows of the run ([`Board`]): each symbol's bars with the strategy's
//! averages and signals, its figures and its state in words, the run's orders, fills and
//! positions, its health, and the P&L over time; [`Board::apply`] takes one [`Update`] in and
//! says what changed ([`Change`]), which `views` turns into messages for the browsers.
//!
//! Invariants: everything held is bounded: bars per symbol ([`Board::new`]'s `bars`, at least
//! the strategy's window), fills, markers, P&L points, round trips and warnings each keep
//! only their most recent ([`KEPT`]); a symbol's bars are in time order, each time once; the
//! figures of a symbol are the crossover's evaluation of its held bars, the same the run's
//! summary prints; positions come from the run's own fills through an [`OrderBook`], as the
//! trader counts them.

use std::collections::VecDeque;

use bridge::protocol::{Bar, ConnectionStatus, Event, FeedState, Fill, OrderReport};

use super::feed::Update;
use crate::broker_connection::refusal_text;
use crate::orders::OrderBook;
use crate::strategy::{Crossover, Evaluation};
use crate::supervisor::{Replacement, SupervisorStats};

/// What an update changed, for the browsers to be told.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    /// Symbol `i`'s history came.
    History(usize),
    /// Symbol `i` took a live bar (its newest point), which placed `order`.
    Bar { i: usize, order: Option<String> },
    /// An order changed; `marker` if it is new on a chart.
    Order {
        order_ref: String,
        marker: Option<Marker>,
    },
    /// A fill of the run; `marker` on its symbol's chart.
    Fill {
        fill: Box<Fill>,
        marker: Option<Marker>,
    },
    /// Symbol `i`'s state changed.
    Symbol(usize),
    /// The positions changed (a commission told late).
    Positions,
    /// The health changed.
    Health,
    /// Something to tell people: a warning, or what the worker did.
    Warning(Warning),
    /// A broker notice.
    Notice { code: i32, message: String },
    /// The run is over.
    End,
}

/// A warning: when (Unix milliseconds), its level, its text.
pub(crate) type Warning = (u64, &'static str, String);

/// A quantity as people write it: no `.0` on whole shares.
pub(crate) fn quantity(q: f64) -> String {
    if q.fract() == 0.0 && q.abs() < 1e15 {
        format!("{}", q as i64)
    } else {
        format!("{q}")
    }
}

/// Fills, markers per symbol, P&L points, round trips and warnings kept, each.
pub const KEPT: usize = 2_000;

/// One bar held for a chart, with the crossover's figures at it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point {
    pub(crate) bar: Bar,
    pub(crate) eval: Option<Evaluation>,
    /// A live bar (else from the history).
    pub(crate) live: bool,
}

/// Something to mark on a symbol's chart at its price (signals are marked from the bars'
/// own evaluations).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Marker {
    Order { time: i64, price: f64, text: String },
    Fill { time: i64, price: f64, text: String },
}

/// Where a symbol's data stands.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SymbolState {
    /// No history yet.
    Waiting,
    /// History came; no live bar yet.
    History,
    /// Its history could not be had.
    NoData(String),
    /// Live bars come.
    Live,
    /// Live data refused; bars come from the delayed feed.
    Delayed(String),
    /// Live data refused, nothing comes.
    Refused(String),
    /// Silent even after its stream was made again, since this Unix second.
    Stalled(i64),
    /// The broker connection is down.
    Interrupted(String),
}

/// One symbol.
#[derive(Debug)]
pub(crate) struct SymbolBoard {
    pub(crate) symbol: String,
    pub(crate) points: VecDeque<Point>,
    pub(crate) markers: VecDeque<Marker>,
    pub(crate) history_bars: usize,
    pub(crate) live_bars: usize,
    /// When the last live bar arrived, Unix milliseconds.
    pub(crate) last_bar_at_ms: Option<u64>,
    pub(crate) state: SymbolState,
}

/// The broker connection and the worker, as the dashboard shows them.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// `connected`, `lost`, `reconnecting`, `restored` or `gave up`.
    pub(crate) broker: &'static str,
    pub(crate) broker_detail: String,
    pub(crate) losses: u32,
    pub(crate) restores_data_lost: u32,
    pub(crate) worker_restarts: u32,
    pub(crate) replacements: Vec<Replacement>,
    /// Round trips of the bridge measured while the run lasts: (Unix ms, microseconds).
    pub(crate) round_trips: VecDeque<(u64, f64)>,
    pub(crate) dropped_logs: u64,
    pub(crate) dropped_events: u64,
    pub(crate) warnings: VecDeque<Warning>,
}

/// Everything the dashboard knows of the run.
#[derive(Debug)]
pub struct Board {
    pub(crate) seq: u64,
    pub(crate) crossover: Crossover,
    pub(crate) stale_after: u32,
    pub(crate) bar_seconds: u32,
    pub(crate) trading: bool,
    pub(crate) backend: String,
    pub(crate) started_ms: u64,
    /// Bars held per symbol.
    pub(crate) bars: usize,
    pub(crate) symbols: Vec<SymbolBoard>,
    pub(crate) book: OrderBook,
    pub(crate) fills: VecDeque<Fill>,
    /// Total P&L (realised + unrealised − commissions) after each live bar: (bar time, P&L).
    pub(crate) pnl: VecDeque<(i64, f64)>,
    pub(crate) health: Health,
    /// Updates the run dropped because the dashboard's queue was full.
    pub(crate) dropped_updates: u64,
    /// Events browsers missed because they read too slowly.
    pub(crate) lagged_events: u64,
    /// The run is over (its final figures are in).
    pub(crate) ended: bool,
}

/// What a [`Board`] is made for.
#[derive(Debug, Clone)]
pub struct BoardSetup {
    pub symbols: Vec<String>,
    pub crossover: Crossover,
    /// Bars a symbol may lag the newest of any symbol and still give a signal.
    pub stale_after: u32,
    pub bar_seconds: u32,
    pub trading: bool,
    pub backend: String,
    /// Bars held per symbol.
    pub bars: usize,
}

fn push_bounded<T>(q: &mut VecDeque<T>, item: T, max: usize) {
    if q.len() >= max {
        q.pop_front();
    }
    q.push_back(item);
}

impl SymbolBoard {
    fn new(symbol: String) -> SymbolBoard {
        SymbolBoard {
            symbol,
            points: VecDeque::new(),
            markers: VecDeque::new(),
            history_bars: 0,
            live_bars: 0,
            last_bar_at_ms: None,
            state: SymbolState::Waiting,
        }
    }

    /// The most recent evaluation, if the held bars give one.
    pub(crate) fn last_eval(&self) -> Option<&Evaluation> {
        self.points.back().and_then(|p| p.eval.as_ref())
    }

    /// Adds `bar` (if newer than the last) with the crossover's evaluation of the bars held
    /// up to it; returns the point added.
    fn push(&mut self, bar: Bar, live: bool, crossover: &Crossover, keep: usize) -> Option<&Point> {
        if self.points.back().is_some_and(|p| p.bar.time >= bar.time) {
            return None;
        }
        let need = crossover.slow + 1;
        let mut window: Vec<Bar> = self
            .points
            .iter()
            .rev()
            .take(need.saturating_sub(1))
            .map(|p| p.bar)
            .collect();
        window.reverse();
        window.push(bar);
        let eval = crossover.evaluate(&window).ok();
        push_bounded(&mut self.points, Point { bar, eval, live }, keep);
        self.points.back()
    }

    fn mark(&mut self, marker: Marker) -> Option<Marker> {
        push_bounded(&mut self.markers, marker.clone(), KEPT);
        Some(marker)
    }
}

impl Board {
    /// An empty board for the run `setup` describes.
    pub fn new(setup: BoardSetup) -> Board {
        let keep = setup.bars.max(setup.crossover.slow + 1);
        Board {
            seq: 0,
            crossover: setup.crossover,
            stale_after: setup.stale_after,
            bar_seconds: setup.bar_seconds,
            trading: setup.trading,
            backend: setup.backend,
            started_ms: base::unix_time::now().as_millis() as u64,
            bars: keep,
            symbols: setup.symbols.into_iter().map(SymbolBoard::new).collect(),
            book: OrderBook::new(),
            fills: VecDeque::new(),
            pnl: VecDeque::new(),
            health: Health {
                broker: "connected",
                ..Health::default()
            },
            dropped_updates: 0,
            lagged_events: 0,
            ended: false,
        }
    }

    fn index(&self, symbol: &str) -> Option<usize> {
        self.symbols.iter().position(|s| s.symbol == symbol)
    }

    /// The symbol named `symbol`, if the run has it.
    pub(crate) fn symbol(&self, symbol: &str) -> Option<&SymbolBoard> {
        self.symbols.iter().find(|s| s.symbol == symbol)
    }

    /// Takes `update` in; returns what changed, for the browsers.
    pub(crate) fn apply(&mut self, update: Update) -> Vec<Change> {
        let mut out = Vec::new();
        match update {
            Update::History {
                symbol,
                bars,
                total,
            } => {
                if let Some(i) = self.index(&symbol) {
                    let (crossover, keep) = (self.crossover, self.bars);
                    let s = &mut self.symbols[i];
                    for bar in bars {
                        s.push(bar, false, &crossover, keep);
                    }
                    // As the run counts it: every bar fetched, not only those held.
                    s.history_bars = total;
                    s.state = SymbolState::History;
                    out.push(Change::History(i));
                }
            }
            Update::NoData { symbol, why } => {
                self.set_state(&symbol, SymbolState::NoData(why), &mut out)
            }
            Update::Bar { symbol, bar, order } => {
                if let Some(i) = self.index(&symbol) {
                    self.live_bar(i, bar, order, &mut out);
                }
            }
            Update::Order(report) => self.order(*report, &mut out),
            Update::Fill(fill) => self.fill(*fill, &mut out),
            Update::Event(event) => self.event(event, &mut out),
            Update::Warning { at_ms, level, text } => {
                let w = (at_ms, level, text);
                out.push(Change::Warning(w.clone()));
                push_bounded(&mut self.health.warnings, w, KEPT);
            }
            Update::RoundTrip { at_ms, us } => {
                push_bounded(&mut self.health.round_trips, (at_ms, us), KEPT);
                out.push(Change::Health);
            }
            Update::End => {
                self.ended = true;
                out.push(Change::End);
            }
        }
        out
    }

    fn live_bar(&mut self, i: usize, bar: Bar, order: Option<String>, out: &mut Vec<Change>) {
        let (crossover, keep) = (self.crossover, self.bars);
        let s = &mut self.symbols[i];
        let time = bar.time;
        if s.push(bar, true, &crossover, keep).is_none() {
            return;
        }
        s.live_bars += 1;
        s.last_bar_at_ms = Some(base::unix_time::now().as_millis() as u64);
        if matches!(
            s.state,
            SymbolState::History
                | SymbolState::Waiting
                | SymbolState::Stalled(_)
                | SymbolState::Refused(_)
                | SymbolState::Interrupted(_)
        ) {
            s.state = SymbolState::Live;
        }
        self.record_pnl(time);
        out.push(Change::Bar { i, order });
    }

    fn record_pnl(&mut self, time: i64) {
        if !self.trading {
            return;
        }
        let total = self.total_pnl();
        match self.pnl.back_mut() {
            Some((t, v)) if *t == time => *v = total,
            // A symbol behind the others (delayed data) adds no point back in time.
            Some((t, _)) if *t > time => {}
            _ => push_bounded(&mut self.pnl, (time, total), self.bars.max(KEPT)),
        }
    }

    /// The last close held for `symbol`.
    pub(crate) fn last_price(&self, symbol: &str) -> Option<f64> {
        self.symbol(symbol)
            .and_then(|s| s.points.back())
            .map(|p| p.bar.close)
    }

    /// Realised + unrealised (at the last close held) − commissions, over every symbol.
    pub(crate) fn total_pnl(&self) -> f64 {
        self.book
            .holdings()
            .iter()
            .map(|(symbol, h)| {
                let unrealised = self
                    .last_price(symbol)
                    .map(|p| h.unrealised(p))
                    .unwrap_or(0.0);
                h.realised + unrealised - h.commissions
            })
            .sum()
    }

    fn order(&mut self, report: OrderReport, out: &mut Vec<Change>) {
        let first = self.book.order(&report.request.order_ref).is_none();
        self.book.apply_report(report.clone());
        let mut marker = None;
        let at = self.index(&report.request.symbol).and_then(|i| {
            let last = self.symbols[i].points.back()?;
            Some((i, last.bar.time, last.bar.close))
        });
        // Marked at the newest bar its symbol has (none without bars).
        if let (true, Some((i, time, close))) = (first, at) {
            let price = match report.request.order_type {
                bridge::protocol::OrderType::Limit { price } => price,
                bridge::protocol::OrderType::Market => close,
            };
            let text = format!(
                "{} {}",
                report.request.side,
                quantity(report.request.quantity)
            );
            marker = self.symbols[i].mark(Marker::Order { time, price, text });
        }
        out.push(Change::Order {
            order_ref: report.request.order_ref,
            marker,
        });
    }

    fn fill(&mut self, fill: Fill, out: &mut Vec<Change>) {
        let before = self.book.holding(&fill.symbol).commissions;
        if !self.book.apply_fill(fill.clone()) {
            // A repeat: only its commission can be new.
            if self.book.holding(&fill.symbol).commissions != before {
                out.push(Change::Positions);
            }
            return;
        }
        let mut marker = None;
        if let Some(i) = self.index(&fill.symbol) {
            let time = fill.time - fill.time.rem_euclid(i64::from(self.bar_seconds.max(1)));
            let text = format!(
                "{} {} @ {:.2}",
                fill.side,
                quantity(fill.quantity),
                fill.price
            );
            marker = self.symbols[i].mark(Marker::Fill {
                time,
                price: fill.price,
                text,
            });
        }
        out.push(Change::Fill {
            fill: Box::new(fill.clone()),
            marker,
        });
        push_bounded(&mut self.fills, fill, KEPT);
    }

    fn set_state(&mut self, symbol: &str, state: SymbolState, out: &mut Vec<Change>) {
        if let Some(i) = self.index(symbol) {
            let s = &mut self.symbols[i];
            s.state = state;
            out.push(Change::Symbol(i));
        }
    }

    fn event(&mut self, event: Event, out: &mut Vec<Change>) {
        match event {
            Event::Connection(status) => {
                let h = &mut self.health;
                match &status {
                    ConnectionStatus::Connected => {
                        (h.broker, h.broker_detail) = ("connected", String::new())
                    }
                    ConnectionStatus::Lost { reason } => {
                        h.losses += 1;
                        (h.broker, h.broker_detail) = ("lost", reason.clone());
                    }
                    ConnectionStatus::Restored { data_lost } => {
                        if *data_lost {
                            h.restores_data_lost += 1;
                        }
                        h.broker = "restored";
                        h.broker_detail = match data_lost {
                            true => "market data lost meanwhile: subscriptions made again".into(),
                            false => "subscriptions kept".into(),
                        };
                    }
                    ConnectionStatus::Reconnecting { attempt } => {
                        (h.broker, h.broker_detail) = ("reconnecting", format!("attempt {attempt}"))
                    }
                    ConnectionStatus::GaveUp { attempts, reason } => {
                        h.broker = "gave up";
                        h.broker_detail = format!("after {attempts} attempt(s): {reason}");
                    }
                }
                // Down until connected or restored, as the run's summary counts it:
                // reconnecting is still down.
                let down = match &status {
                    ConnectionStatus::Lost { reason } => Some(Some(reason.clone())),
                    ConnectionStatus::GaveUp { reason, .. } => Some(Some(reason.clone())),
                    ConnectionStatus::Connected | ConnectionStatus::Restored { .. } => Some(None),
                    ConnectionStatus::Reconnecting { .. } => None,
                };
                for s in &mut self.symbols {
                    match (&down, &s.state) {
                        (Some(Some(why)), SymbolState::Live | SymbolState::History) => {
                            s.state = SymbolState::Interrupted(why.clone())
                        }
                        (Some(None), SymbolState::Interrupted(_)) => s.state = SymbolState::Live,
                        _ => {}
                    }
                }
                out.push(Change::Health);
                out.extend((0..self.symbols.len()).map(Change::Symbol));
            }
            Event::Refused { symbol, error } => {
                self.set_state(&symbol, SymbolState::Refused(refusal_text(&error)), out)
            }
            Event::Delayed { symbol, refused } => {
                self.set_state(&symbol, SymbolState::Delayed(refusal_text(&refused)), out)
            }
            Event::Feed { symbol, state } => match state {
                FeedState::Stalled { since } => {
                    self.set_state(&symbol, SymbolState::Stalled(since), out)
                }
                FeedState::Flowing => self.set_state(&symbol, SymbolState::Live, out),
                FeedState::Resubscribed { reason } => out.push(Change::Warning((
                    base::unix_time::now().as_millis() as u64,
                    "info",
                    format!("{symbol}: live stream made again ({reason})"),
                ))),
                FeedState::Ended => out.push(Change::Warning((
                    base::unix_time::now().as_millis() as u64,
                    "info",
                    format!("{symbol}: no more bars (the replay's are over)"),
                ))),
            },
            Event::Notice { code, message } => out.push(Change::Notice { code, message }),
            _ => {}
        }
    }

    /// Takes the supervisor's counters in; returns a `health` message if anything shown
    /// changed.
    pub(crate) fn observe_worker(
        &mut self,
        stats: &SupervisorStats,
        replacements: Vec<Replacement>,
        dropped_updates: u64,
    ) -> Vec<Change> {
        let h = &mut self.health;
        let changed = h.worker_restarts != stats.restarts
            || h.dropped_logs < stats.bridge.dropped_logs
            || h.dropped_events < stats.bridge.dropped_events
            || self.dropped_updates != dropped_updates;
        h.worker_restarts = stats.restarts;
        h.replacements = replacements;
        h.dropped_logs = h.dropped_logs.max(stats.bridge.dropped_logs);
        h.dropped_events = h.dropped_events.max(stats.bridge.dropped_events);
        self.dropped_updates = dropped_updates;
        match changed {
            true => vec![Change::Health],
            false => Vec::new(),
        }
    }
}
