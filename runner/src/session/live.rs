//! A session's live phase: every symbol with history subscribed ([`subscribe_all`]), live bars
//! taken in time order ([`MonotonicBars`]), each symbol's window handed to the strategy, and,
//! with trading on, its signals handed to the trader (`Live`).
//!
//! A live bar's way: [`WorkerEvents::recv_timeout`] gives `Event::Bar` to `Live::run`, which
//! lets [`Seams::on_bar`] fill the hole between the symbol's history and its first live bar
//! (that bar and later ones held until the bars between are fetched; only the newest of them
//! can lead to an order), then `Live::take`
//! finds the symbol's [`Series`] by the subscription id (its row), lets [`MonotonicBars::admit`]
//! drop a bar not newer than the last, pushes it ([`Series::push`]), calls
//! [`Strategy::on_bars`] with the window ([`tail`]), hands the signal to
//! [`trade_on`](crate::trader::trade_on) with trading on, and tells the [`Observer`].
//!
//! Invariants: a strategy sees a symbol's bars only in time order, each bar once, with no
//! hole between its history and its live bars unless fetching the bars between failed (said
//! in the log); only a
//! symbol whose history came is subscribed and takes live bars; the phase ends when the
//! configured duration passes, `stop` is set, the observer ends it, the broker connection is
//! given up or the supervisor gives up, and never waits longer than one tick to notice; a
//! symbol whose feed the worker reports stalled ([`FeedState::Stalled`]) has no signal (its
//! last one is cleared) until a bar or [`FeedState::Flowing`] says data comes again; once
//! every streamed symbol's bars are over ([`FeedState::Ended`], a replay's end) the phase ends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use bridge::protocol::{Bar, ConnectionStatus, Event, FeedState, SubscribeRequest};
use crossbeam_channel::RecvTimeoutError;

use crate::config::Config;
use crate::strategy::{Signal, Strategy};
use crate::supervisor::{Supervisor, SupervisorError};
use crate::trader::{trade_on, Traded, Trader};
use crate::worker_events::WorkerEvents;

use super::history::{tail, Series};
use super::observer::Observer;
use super::seam::{Fetch, Ready, Seams};

/// How often a live loop looks at the clock and at `stop` while no bar comes.
pub const TICK: Duration = Duration::from_millis(100);

/// What one wait for the workers' next event found ([`next_event`]).
#[derive(Debug)]
pub enum Next {
    /// An event.
    Event(Event),
    /// Nothing within a tick: the caller looks at its clock and its stop, then waits again.
    Quiet,
    /// The supervisor gave up replacing a dead worker: nothing more will come.
    GaveUp(SupervisorError),
    /// The supervisor is gone and every worker's events were read.
    Ended,
}

/// The rule every consumer of live events follows (a session's live phase, the Python
/// stream's pump): a supervisor that gave up ends the stream at once, else the next event of
/// any worker, waiting one [`TICK`] at most.
pub fn next_event(events: &mut WorkerEvents, sup: &Supervisor) -> Next {
    if let Some(e) = sup.gave_up() {
        return Next::GaveUp(e);
    }
    match events.recv_timeout(TICK) {
        Ok(e) => Next::Event(e),
        Err(RecvTimeoutError::Timeout) => Next::Quiet,
        Err(RecvTimeoutError::Disconnected) => Next::Ended,
    }
}

/// The monotonic-bar rule, per subscription id: a live bar not newer than the last one taken
/// is dropped (a replacement worker repeats the bar its predecessor sent last, a restored
/// subscription may start with one the history already held). Every consumer of live bars
/// (a session's live phase, the Python stream) goes through it.
#[derive(Debug, Clone, Default)]
pub struct MonotonicBars {
    /// The newest bar's time taken per subscription id.
    newest: BTreeMap<u32, i64>,
}

impl MonotonicBars {
    /// No bar taken yet.
    pub fn new() -> MonotonicBars {
        MonotonicBars::default()
    }

    /// Counts a bar of subscription `sub` at `time` as taken without offering it (the newest
    /// bar of its history): live bars must be newer.
    pub fn seen(&mut self, sub: u32, time: i64) {
        let newest = self.newest.entry(sub).or_insert(time);
        *newest = (*newest).max(time);
    }

    /// Whether a live bar of subscription `sub` at `time` is taken: newer than every bar of
    /// `sub` taken or seen before. A bar taken becomes the newest.
    pub fn admit(&mut self, sub: u32, time: i64) -> bool {
        match self.newest.get_mut(&sub) {
            Some(newest) if time <= *newest => false,
            Some(newest) => {
                *newest = time;
                true
            }
            None => {
                self.newest.insert(sub, time);
                true
            }
        }
    }
}

/// Subscribes every symbol that has history to live bars; returns the rows subscribed. A
/// symbol's subscription id is its row: a bar finds its series without a lookup.
pub(crate) fn subscribe_all(
    cfg: &Config,
    sup: &Supervisor,
    series: &[Series],
) -> std::collections::BTreeSet<usize> {
    let mut subscribed = std::collections::BTreeSet::new();
    for (i, s) in series.iter().enumerate().filter(|(_, s)| s.error.is_none()) {
        let sub = SubscribeRequest {
            symbol: s.symbol.clone(),
            id: i as u32,
            bar_seconds: cfg.history.bar_seconds,
        };
        match sup.subscribe(sub, cfg.request_timeout()) {
            Ok(()) => {
                subscribed.insert(i);
            }
            Err(e) => tracing::warn!(symbol = %s.symbol, "no live bars: {e}"),
        }
    }
    subscribed
}

/// The live phase of a run.
pub(crate) struct Live<'a> {
    pub(crate) cfg: &'a Config,
    pub(crate) sup: &'a Arc<Supervisor>,
    /// Bars of a symbol handed to the strategy (its window).
    pub(crate) keep: usize,
    pub(crate) stop: &'a AtomicBool,
    /// When the live phase began (its duration counts from here, subscribing included).
    pub(crate) started: Instant,
}

/// What live bars change, by subscription id (row): each symbol's series and last signal,
/// and the rule that takes a symbol's bars in time order.
struct Rows<'r> {
    series: &'r mut [Series],
    last: &'r mut [Option<Signal>],
    in_order: MonotonicBars,
}

impl Live<'_> {
    /// Subscribes every symbol with history and takes live bars until the configured
    /// duration passes, `stop` is set, the observer ends it or the supervisor gives up.
    /// Returns whether `stop` ended it.
    pub(crate) fn run(
        &self,
        events: &mut WorkerEvents,
        strategy: &mut dyn Strategy,
        observer: &mut dyn Observer,
        series: &mut [Series],
        last: &mut [Option<Signal>],
        mut trader: Option<&mut Trader<&Supervisor>>,
    ) -> Result<bool> {
        let cfg = self.cfg;
        if self.stop.load(Ordering::Relaxed) {
            return Ok(true);
        }
        if cfg.live.disabled {
            return Ok(false);
        }
        let subscribed = subscribe_all(cfg, self.sup, series);
        let mut in_order = MonotonicBars::new();
        for (i, s) in series.iter().enumerate() {
            if let Some(newest) = s.bars.last() {
                in_order.seen(i as u32, newest.time);
            }
        }
        let mut seams = Seams::new(cfg, series, self.fetch());
        let mut rows = Rows {
            series,
            last,
            in_order,
        };
        let mut ready = Vec::new();
        // Rows whose bars are over ([`FeedState::Ended`]), of those subscribed.
        let mut ended = std::collections::BTreeSet::new();
        let until = (cfg.live.duration_seconds > 0)
            .then(|| self.started + Duration::from_secs(cfg.live.duration_seconds));
        tracing::info!(
            symbols = rows.series.iter().filter(|s| s.error.is_none()).count(),
            seconds = cfg.live.duration_seconds,
            "live phase"
        );
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(true);
            }
            if until.is_some_and(|u| Instant::now() >= u) {
                return Ok(false);
            }
            if seams.filling() {
                seams.filled(&mut ready);
                self.take_all(
                    &mut rows,
                    &mut ready,
                    strategy,
                    observer,
                    trader.as_deref_mut(),
                )?;
            }
            let event = match next_event(events, self.sup) {
                Next::Event(e) => e,
                Next::Quiet => continue,
                Next::GaveUp(_) | Next::Ended => return Ok(false),
            };
            let series = &mut *rows.series;
            match event {
                Event::Bar { sub, bar } => {
                    seams.on_bar(sub, bar, &mut ready);
                    self.take_all(
                        &mut rows,
                        &mut ready,
                        strategy,
                        observer,
                        trader.as_deref_mut(),
                    )?;
                }
                Event::Feed {
                    ref symbol,
                    ref state,
                } => {
                    if let Some(i) = series.iter().position(|s| s.symbol == *symbol) {
                        match state {
                            FeedState::Stalled { since } => {
                                series[i].stalled_since = Some(*since);
                                // No signal from a feed that says nothing.
                                if let Some(slot) = rows.last.get_mut(i) {
                                    *slot = None;
                                }
                            }
                            FeedState::Flowing => series[i].stalled_since = None,
                            FeedState::Resubscribed { .. } => {}
                            FeedState::Ended if subscribed.contains(&i) => {
                                ended.insert(i);
                            }
                            FeedState::Ended => {}
                        }
                    }
                    if !observer.on_event(&event) {
                        return Ok(false);
                    }
                    // Every symbol's bars are over (a replay's end): nothing more can come.
                    if !ended.is_empty() && ended.len() == subscribed.len() {
                        tracing::info!("every symbol's bars are over: the live phase ends");
                        return Ok(false);
                    }
                }
                Event::Order(_) | Event::Fill(_) | Event::Position(_) => {
                    if let Some(t) = trader.as_deref_mut() {
                        // Each of this run's fills once, however often it is reported.
                        if let Some(fill) = t.on_event(&event) {
                            strategy.on_fill(fill);
                        }
                        // The observer is told repeats too: IB's second report of a fill
                        // brings its commission.
                        if let Event::Fill(f) = &event {
                            if t.book().order(&f.order_ref).is_some() {
                                observer.on_fill(f);
                            }
                        }
                        let changed = match &event {
                            Event::Order(r) => Some(&r.request.order_ref),
                            Event::Fill(f) => Some(&f.order_ref),
                            _ => None,
                        };
                        if let Some(report) = changed.and_then(|r| t.book().order(r)) {
                            observer.on_order(report);
                        }
                    }
                }
                other => {
                    if let Event::Dropped { count } = other {
                        tracing::warn!(
                            count,
                            "the hub dropped events for this run (it did not read in time): \
                             bars are missing"
                        );
                    }
                    // A broker connection given up for good: nothing more can come.
                    let gave_up =
                        matches!(&other, Event::Connection(ConnectionStatus::GaveUp { .. }));
                    if !observer.on_event(&other) || gave_up {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// How the seams fetch the bars between history and live: the supervisor's history, on
    /// the seams' threads.
    fn fetch(&self) -> Fetch {
        let sup = self.sup.clone();
        Arc::new(move |request, timeout| sup.history(request, timeout))
    }

    /// Takes the bars of `ready` in order ([`take`](Self::take)), leaving it empty; only a
    /// bar that is its symbol's newest goes to the trader.
    fn take_all(
        &self,
        rows: &mut Rows<'_>,
        ready: &mut Vec<Ready>,
        strategy: &mut dyn Strategy,
        observer: &mut dyn Observer,
        mut trader: Option<&mut Trader<&Supervisor>>,
    ) -> Result<()> {
        for r in ready.drain(..) {
            let trader = trader.as_deref_mut().filter(|_| r.newest);
            self.take(rows, r.sub, r.bar, strategy, observer, trader)?;
        }
        Ok(())
    }

    /// A live bar of subscription `sub`: dropped unless its row was subscribed and it is newer
    /// than the row's last; else added to the row's series, handed to the strategy with its
    /// window, its signal to `trader` (if any), and all of it to the observer.
    fn take(
        &self,
        rows: &mut Rows<'_>,
        sub: u32,
        bar: Bar,
        strategy: &mut dyn Strategy,
        observer: &mut dyn Observer,
        trader: Option<&mut Trader<&Supervisor>>,
    ) -> Result<()> {
        let i = sub as usize;
        // Only a row that was subscribed (its history came) takes live bars.
        let Some(s) = rows.series.get_mut(i).filter(|s| s.error.is_none()) else {
            return Ok(());
        };
        if !rows.in_order.admit(sub, bar.time) {
            return Ok(());
        }
        s.push(bar, self.keep);
        let recent = tail(&s.bars, self.keep);
        let signal = strategy.on_bars(&s.symbol, recent);
        if let Some(slot) = rows.last.get_mut(i) {
            *slot = Some(signal);
        }
        let (traded, trader) = match trader {
            Some(t) => (trade_on(t, self.cfg, &s.symbol, signal, bar.close), Some(t)),
            None => (Traded::Nothing, None),
        };
        let order = traded.order_ref();
        observer.on_live_bar(&s.symbol, recent, signal, order)?;
        if let (Some(t), Some(r)) = (trader, order) {
            if let Some(report) = t.book().order(r) {
                observer.on_order(report);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_bar_not_newer_than_the_last_is_dropped() {
        let mut bars = MonotonicBars::new();
        assert!(bars.admit(0, 10));
        assert!(!bars.admit(0, 10), "the same bar again");
        assert!(!bars.admit(0, 5), "an older one");
        assert!(bars.admit(0, 15));
        assert!(bars.admit(1, 5), "each subscription on its own");
        bars.seen(2, 100);
        assert!(!bars.admit(2, 100), "the history's newest bar");
        assert!(bars.admit(2, 105));
    }
}
