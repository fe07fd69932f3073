//! The main job: a [`Session`] with the built-in crossover as its strategy, and as its
//! observer (`Reporter`) the signals file (a row for every bar of the history with enough
//! bars before it, and for every live bar, with the order it placed) and the record of the
//! broker connection; then the bridge's round trip (`measure_round_trips`) and each
//! symbol's last evaluation (`final_reports`). The pieces a session is made of live here:
//! history for every symbol at once (`fetch_history`), each symbol's bounded window of bars
//! (`Series`, `trim`), the subscriptions (`subscribe_all`), and with trading on the order a
//! signal calls for (`order_for_signal`, `trade_on`).
//!
//! Invariants: every configured symbol gets a report, in configuration order, with its data
//! or why it has none; a symbol whose history failed is not subscribed; a live bar that does
//! not advance its symbol's series is ignored; `stop` (Ctrl-C) ends the run at the next
//! phase boundary or live-phase tick, and the run still reports.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;
use bridge::protocol::{
    Bar, Event, HistoryRequest, OrderRequest, OrderType, Side, SubscribeRequest,
};
use parking_lot::Mutex;

use crate::broker_connection::BrokerConnection;
use crate::config::Config;
use crate::progress::Progress;
use crate::session::{Observer, Session, SymbolRun};
use crate::signals::Signals;
use crate::strategy::{Crossover, Evaluation, NoSignal, Signal};
use crate::supervisor::{Supervisor, SupervisorError, SupervisorStats};
use crate::trader::{Trader, TradingSummary};
use crate::worker_setup::WorkerSetup;

/// Pings sent at the end to measure the bridge's round trip.
pub const RTT_PINGS: usize = 2000;

/// How one symbol fared.
#[derive(Debug, Clone)]
pub struct SymbolReport {
    pub symbol: String,
    pub history_bars: usize,
    pub live_bars: usize,
    /// The last evaluation, or why there is none.
    pub last: Result<Evaluation, String>,
    /// What else the row must say (its live bars come from delayed data, ...).
    pub note: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub symbols: Vec<SymbolReport>,
    pub history_elapsed: Duration,
    pub live_elapsed: Duration,
    /// Round trips of [`RTT_PINGS`] pings, sorted.
    pub round_trips: Vec<Duration>,
    pub supervisor: SupervisorStats,
    pub signals_written: u64,
    pub interrupted: bool,
    /// Why the supervisor gave up replacing a dead worker, if it did: the run failed, whatever
    /// it printed.
    pub gave_up: Option<String>,
    /// What the run saw of the broker connection.
    pub broker: BrokerConnection,
    /// What trading did (`--trade`).
    pub trading: Option<TradingSummary>,
}

/// One symbol's bars so far (history, then live; only the most recent once the history was
/// evaluated), or why it has none.
pub(crate) struct Series {
    pub(crate) symbol: String,
    pub(crate) bars: Vec<Bar>,
    pub(crate) history_bars: usize,
    pub(crate) live_bars: usize,
    pub(crate) error: Option<String>,
}

impl Series {
    /// Adds a live bar, keeping at most `keep` bars (trimmed in bulk: at most twice as many
    /// are ever held).
    pub(crate) fn push(&mut self, bar: Bar, keep: usize) {
        self.bars.push(bar);
        self.live_bars += 1;
        trim(&mut self.bars, keep);
    }

    fn fetched(symbol: &str, result: Option<Result<Vec<Bar>, String>>) -> Series {
        let (bars, error) = match result {
            Some(Ok(bars)) => (bars, None),
            Some(Err(e)) => (Vec::new(), Some(e)),
            None => (Vec::new(), Some("not fetched (interrupted)".into())),
        };
        Series {
            symbol: symbol.to_string(),
            history_bars: bars.len(),
            bars,
            live_bars: 0,
            error,
        }
    }
}

/// Keeps the last `keep` of `bars` once they are twice as many (amortised: a bar is moved at
/// most once per `keep` bars added).
pub(crate) fn trim(bars: &mut Vec<Bar>, keep: usize) {
    let keep = keep.max(1);
    if bars.len() > keep.saturating_mul(2) {
        bars.drain(..bars.len() - keep);
        // A long history's allocation is given back too.
        if bars.capacity() > keep.saturating_mul(4) {
            bars.shrink_to(keep.saturating_mul(2).saturating_add(1));
        }
    }
}

/// A file the signals go to, if configured.
type SignalFile = Signals<std::io::BufWriter<std::fs::File>>;

/// Runs the main job until done or `stop` is set: a [`Session`] with the crossover as its
/// strategy and the signals file, the broker connection's record and the summary as its
/// observer.
pub fn run(cfg: &Config, setup: WorkerSetup, stop: &AtomicBool) -> Result<Outcome> {
    let mut strategy = Crossover {
        fast: cfg.strategy.fast,
        slow: cfg.strategy.slow,
    };
    let signals = match &cfg.signals {
        Some(p) => Some(Signals::create(p)?),
        None => None,
    };
    let mut session = Session::from_setup(cfg.clone(), setup)?;
    let mut reporter = Reporter {
        strategy,
        signals,
        broker: BrokerConnection::default(),
    };
    let report = session.run_observed(&mut strategy, &mut reporter, stop)?;
    let round_trips = measure_round_trips(session.supervisor());
    let mut supervisor = session.supervisor().stats();
    session.shutdown();
    supervisor.restarts = session.supervisor().stats().restarts;
    let gave_up = session
        .supervisor()
        .gave_up()
        .map(|e| e.to_string())
        .or_else(|| reporter.broker.gave_up.clone());
    let signals_written = match reporter.signals.take() {
        Some(s) => s.flush()?.0,
        None => 0,
    };
    Ok(Outcome {
        symbols: final_reports(cfg, &strategy, report.symbols, &reporter.broker),
        history_elapsed: report.history_elapsed,
        live_elapsed: report.live_elapsed,
        round_trips,
        supervisor,
        signals_written,
        interrupted: report.interrupted,
        gave_up,
        broker: reporter.broker,
        trading: report.trading,
    })
}

/// The job's observer: a signals row for every bar of the history that has enough bars
/// before it and for every live bar (with the order it placed), and the broker connection's
/// record.
struct Reporter {
    strategy: Crossover,
    signals: Option<SignalFile>,
    broker: BrokerConnection,
}

impl Observer for Reporter {
    fn on_history(&mut self, symbol: &str, bars: &[Bar]) -> Result<()> {
        if let Some(file) = self.signals.as_mut() {
            for end in self.strategy.slow + 1..=bars.len() {
                if let Ok(e) = self.strategy.evaluate(&bars[..end]) {
                    file.row(symbol, &e, None)?;
                }
            }
        }
        Ok(())
    }

    fn on_live_bar(
        &mut self,
        symbol: &str,
        bars: &[Bar],
        _signal: Signal,
        order: Option<&str>,
    ) -> Result<()> {
        self.broker.flowing(symbol);
        if let (Some(file), Ok(e)) = (self.signals.as_mut(), self.strategy.evaluate(bars)) {
            file.row(symbol, &e, order)?;
        }
        Ok(())
    }

    fn on_event(&mut self, event: &Event) -> bool {
        match event {
            Event::Connection(status) => {
                self.broker.observe(status);
                // The connection stays down for good: nothing more can come.
                return self.broker.gave_up.is_none();
            }
            Event::Delayed { symbol, refused } => self.broker.delayed(symbol, refused),
            Event::Refused { symbol, error } => self.broker.refuse(symbol, error),
            Event::Notice { code, message } => tracing::info!(code, "notice: {message}"),
            _ => {}
        }
        true
    }
}

/// History for every symbol, `history.concurrency` at a time, with progress on stderr; one
/// series per configured symbol, in order.
pub(crate) fn fetch_history(cfg: &Config, sup: &Supervisor, stop: &AtomicBool) -> Vec<Series> {
    let progress = Progress::new(cfg.symbols.len());
    let next = AtomicUsize::new(0);
    let results: Mutex<HashMap<String, Result<Vec<Bar>, String>>> = Mutex::new(HashMap::new());
    let threads = cfg.history.concurrency.min(cfg.symbols.len()).max(1);
    let timeout = Duration::from_secs(cfg.history.timeout_seconds);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(symbol) = cfg.symbols.get(i) else {
                    return;
                };
                let req = HistoryRequest {
                    symbol: symbol.clone(),
                    bar_seconds: cfg.history.bar_seconds,
                    duration_seconds: cfg.history.duration_seconds,
                    end: cfg.history_end().ok().flatten(),
                };
                let r = sup.history(&req, timeout).map_err(|e| e.to_string());
                progress.symbol_done(symbol, &r.as_ref().map(Vec::len).map_err(Clone::clone));
                results.lock().insert(symbol.clone(), r);
            });
        }
    });
    let mut results = results.into_inner();
    let series: Vec<Series> = cfg
        .symbols
        .iter()
        .map(|s| Series::fetched(s, results.remove(s)))
        .collect();
    for s in &series {
        if let Some(e) = &s.error {
            tracing::warn!(symbol = %s.symbol, "no data: {e}");
        }
    }
    series
}

/// The order a signal calls for, given the symbol's position and whether an order of it is
/// still working (then none: orders are not stacked). Long-only: a buy opens `quantity` when
/// flat, a sell closes a long position. Otherwise a buy targets `+quantity` shares and a sell
/// `-quantity`.
pub fn order_for_signal(
    signal: Signal,
    position: f64,
    working: bool,
    quantity: f64,
    long_only: bool,
) -> Option<(Side, f64)> {
    if working {
        return None;
    }
    let target = match (signal, long_only) {
        (Signal::Hold, _) => return None,
        (Signal::Buy, true) if position > 0.0 => return None,
        (Signal::Buy, _) => quantity,
        (Signal::Sell, true) => 0.0,
        (Signal::Sell, false) => -quantity,
    };
    let delta = target - position;
    if delta > 0.0 {
        Some((Side::Buy, delta))
    } else if delta < 0.0 {
        Some((Side::Sell, -delta))
    } else {
        None
    }
}

/// Subscribes every symbol that has history to live bars. A symbol's subscription id is its
/// row: a bar finds its series without a lookup.
pub(crate) fn subscribe_all(cfg: &Config, sup: &Supervisor, series: &[Series]) {
    for (i, s) in series.iter().enumerate().filter(|(_, s)| s.error.is_none()) {
        let sub = SubscribeRequest {
            symbol: s.symbol.clone(),
            id: i as u32,
            bar_seconds: cfg.history.bar_seconds,
        };
        if let Err(e) = sup.subscribe(sub, cfg.request_timeout()) {
            tracing::warn!(symbol = %s.symbol, "no live bars: {e}");
        }
    }
}

/// Places the order `signal` calls for on `symbol` (last price `price`), if any; returns its
/// reference when the broker took it (whatever became of it after).
pub(crate) fn trade_on(
    t: &mut Trader<'_>,
    cfg: &Config,
    symbol: &str,
    signal: Signal,
    price: f64,
) -> Option<String> {
    let position = t.book().holding(symbol).quantity;
    let working = t.book().working().any(|o| o.request.symbol == symbol);
    let (side, quantity) = order_for_signal(
        signal,
        position,
        working,
        cfg.trading.quantity,
        cfg.trading.long_only,
    )?;
    let order = OrderRequest {
        order_ref: t.next_ref(),
        symbol: symbol.to_string(),
        side,
        quantity,
        order_type: OrderType::Market,
        tif: cfg.trading.time_in_force().ok()?,
    };
    let order_ref = order.order_ref.clone();
    match t.place(order, Some(price)) {
        Ok(report) => {
            tracing::info!(
                %symbol,
                %order_ref,
                %side,
                quantity,
                status = %report.status,
                "order placed on a {signal} signal"
            );
            Some(order_ref)
        }
        Err(err) => {
            tracing::warn!(%symbol, "no order on a {signal} signal: {err}");
            None
        }
    }
}

/// [`RTT_PINGS`] round trips on the live worker, sorted; none if the worker is gone.
fn measure_round_trips(sup: &Supervisor) -> Vec<Duration> {
    let mut round_trips = match sup.ping_round_trips(RTT_PINGS) {
        Ok(r) => r,
        Err(SupervisorError::Stopped) => Vec::new(),
        Err(e) => {
            tracing::warn!("round trip not measured: {e}");
            Vec::new()
        }
    };
    round_trips.sort();
    round_trips
}

/// Each symbol's last evaluation, refused if it lags the newest bar of any symbol.
fn final_reports(
    cfg: &Config,
    strategy: &Crossover,
    series: Vec<SymbolRun>,
    broker: &BrokerConnection,
) -> Vec<SymbolReport> {
    let market_time = series
        .iter()
        .filter_map(|s| s.recent.last().map(|b| b.time))
        .max()
        .unwrap_or(0);
    series
        .into_iter()
        .map(|s| {
            let last = match (&s.error, broker.refused.get(&s.symbol), &broker.down) {
                (Some(e), _, _) => Err(format!("no data: {e}")),
                (None, Some(why), _) => Err(format!("refused: {why}")),
                (None, None, Some(reason)) if !cfg.live.disabled => {
                    Err(format!("interrupted: broker connection lost ({reason})"))
                }
                (None, None, _) => strategy
                    .evaluate_fresh(
                        &s.recent,
                        cfg.history.bar_seconds,
                        market_time,
                        cfg.strategy.stale_after_bars,
                    )
                    .map_err(|e: NoSignal| e.to_string()),
            };
            let note = broker
                .delayed
                .get(&s.symbol)
                .map(|why| format!("delayed data, live refused: {why}"));
            SymbolReport {
                symbol: s.symbol,
                history_bars: s.history_bars,
                live_bars: s.live_bars,
                last,
                note,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_only_buys_when_flat_and_sells_to_flat() {
        let q = 10.0;
        assert_eq!(
            order_for_signal(Signal::Buy, 0.0, false, q, true),
            Some((Side::Buy, 10.0))
        );
        assert_eq!(order_for_signal(Signal::Buy, 10.0, false, q, true), None);
        assert_eq!(
            order_for_signal(Signal::Sell, 10.0, false, q, true),
            Some((Side::Sell, 10.0))
        );
        assert_eq!(order_for_signal(Signal::Sell, 0.0, false, q, true), None);
        assert_eq!(order_for_signal(Signal::Hold, 0.0, false, q, true), None);
        // An order still working: nothing stacked on it.
        assert_eq!(order_for_signal(Signal::Buy, 0.0, true, q, true), None);
    }

    /// A run of any length holds at most twice the bars it keeps per symbol: a week of
    /// five-second bars (120,960) never grows the series past that.
    #[test]
    fn a_series_keeps_a_bounded_window_however_many_bars_come() {
        let mut s = Series::fetched("SPY", Some(Ok(Vec::new())));
        let keep = 34;
        let mut longest = 0;
        for t in 0..120_960i64 {
            s.push(
                Bar {
                    time: t * 5,
                    open: 1.0,
                    high: 1.0,
                    low: 1.0,
                    close: 1.0,
                    volume: 1.0,
                },
                keep,
            );
            longest = longest.max(s.bars.len());
            assert!(
                s.bars.capacity() <= 4 * keep + 4,
                "capacity {}",
                s.bars.capacity()
            );
        }
        assert_eq!(longest, 2 * keep);
        assert_eq!(s.live_bars, 120_960);
        assert!(s.bars.len() >= keep);
        assert_eq!(s.bars.last().unwrap().time, 120_959 * 5);
        let times: Vec<i64> = s.bars.iter().map(|b| b.time).collect();
        assert!(
            times.windows(2).all(|w| w[1] == w[0] + 5),
            "the most recent, in order"
        );
    }

    #[test]
    fn long_and_short_targets_the_quantity_either_way() {
        let q = 10.0;
        assert_eq!(
            order_for_signal(Signal::Sell, 10.0, false, q, false),
            Some((Side::Sell, 20.0))
        );
        assert_eq!(
            order_for_signal(Signal::Buy, -10.0, false, q, false),
            Some((Side::Buy, 20.0))
        );
        assert_eq!(order_for_signal(Signal::Buy, 10.0, false, q, false), None);
    }
}
