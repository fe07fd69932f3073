//! The runner as a library: a session with a strategy of one's own on the simulated market.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use bridge::protocol::{Bar, Fill};
use runner::config::Config;
use runner::session::Session;
use runner::strategy::{Signal, Strategy};

mod common;

/// Records what it is shown; buys on every bar it sees after `buy_after` calls.
#[derive(Default)]
struct Recorder {
    window: usize,
    calls: BTreeMap<String, Vec<(usize, i64)>>,
    longest: usize,
    out_of_order: u32,
    buy_after: Option<usize>,
    fills: Vec<Fill>,
}

impl Strategy for Recorder {
    fn window(&self) -> usize {
        self.window
    }

    fn on_bars(&mut self, symbol: &str, bars: &[Bar]) -> Signal {
        self.longest = self.longest.max(bars.len());
        if bars.windows(2).any(|w| w[1].time <= w[0].time) {
            self.out_of_order += 1;
        }
        let seen = self.calls.entry(symbol.to_string()).or_default();
        if let (Some(last), Some(&(_, before))) = (bars.last(), seen.last()) {
            if last.time <= before {
                self.out_of_order += 1;
            }
        }
        seen.push((bars.len(), bars.last().map_or(0, |b| b.time)));
        match self.buy_after {
            Some(n) if seen.len() > n => Signal::Buy,
            _ => Signal::Hold,
        }
    }

    fn on_fill(&mut self, fill: &Fill) {
        self.fills.push(fill.clone());
    }
}

fn config(orders: &str, trading: bool) -> Config {
    let mut cfg = Config {
        symbols: vec!["SPY".into(), "QQQ".into()],
        ..Config::default()
    };
    cfg.history.bar_seconds = 5;
    cfg.history.duration_seconds = 3600;
    cfg.live.duration_seconds = 3;
    cfg.trading.enabled = trading;
    cfg.sim.orders_file = Some(common::temp("session", orders));
    let _ = std::fs::remove_file(cfg.sim.orders_file.as_ref().unwrap());
    cfg
}

#[test]
fn a_strategy_sees_each_symbols_window_in_time_order_and_no_more() {
    let mut session = Session::start(
        config("window.journal", false),
        PathBuf::from(common::RUNNER),
    )
    .unwrap();
    assert_eq!(session.accounts(), vec!["DU0000001".to_string()]);
    let mut strategy = Recorder {
        window: 7,
        ..Recorder::default()
    };
    let report = session.run(&mut strategy, &AtomicBool::new(false)).unwrap();
    assert_eq!(strategy.out_of_order, 0);
    assert_eq!(strategy.longest, 7, "never more than the window");
    assert_eq!(report.symbols.len(), 2);
    for s in &report.symbols {
        assert!(s.error.is_none(), "{:?}", s.error);
        assert_eq!(s.history_bars, 720);
        assert!(s.live_bars >= 10, "{s:?}");
        let calls = &strategy.calls[&s.symbol];
        // Once for the history, then once per live bar.
        assert_eq!(calls.len(), 1 + s.live_bars, "{}", s.symbol);
        assert!(calls.iter().all(|(n, _)| *n == 7));
        assert_eq!(s.last_signal, Some(Signal::Hold));
    }
    assert!(report.trading.is_none(), "trading is off unless asked for");
}

#[test]
fn a_trading_strategy_places_orders_once_each_and_sees_its_fills() {
    let cfg = config("trading.journal", true);
    let journal = cfg.sim.orders_file.clone().unwrap();
    let mut session = Session::start(cfg, PathBuf::from(common::RUNNER)).unwrap();
    let mut strategy = Recorder {
        window: 3,
        buy_after: Some(1),
        ..Recorder::default()
    };
    let report = session.run(&mut strategy, &AtomicBool::new(false)).unwrap();
    let trading = report.trading.unwrap();
    // Long-only: one buy per symbol, never stacked, held to the end.
    assert_eq!(trading.orders, 2, "{trading:?}");
    assert_eq!(trading.filled, 2, "{trading:?}");
    assert_eq!(strategy.fills.len(), trading.fills);
    assert!(
        trading.rows.iter().all(|r| r.position == 10.0),
        "{trading:?}"
    );
    let placed = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("P\t"))
        .count();
    assert_eq!(placed, 2);
}

/// Fills the book learns of only at the end of the run (their events were lost) are told to
/// the strategy too, after its last bar, each once.
#[test]
fn fills_learned_at_the_end_of_the_run_are_told_to_the_strategy() {
    let mut cfg = config("late-fills.journal", true);
    let faults = worker::SimFaults {
        fill_events_dropped: true,
        ..worker::SimFaults::default()
    };
    let run = runner::worker_setup::prepare(
        &mut cfg,
        runner::worker_setup::WorkerProgram::executable(PathBuf::from(common::RUNNER)),
        faults,
    )
    .unwrap();
    let mut session = Session::from_setup(cfg, run.setup).unwrap();
    let mut strategy = Recorder {
        window: 3,
        buy_after: Some(1),
        ..Recorder::default()
    };
    let report = session.run(&mut strategy, &AtomicBool::new(false)).unwrap();
    drop(session);
    drop(run.journal);
    let trading = report.trading.unwrap();
    // No fill event: the order reports tell the trader what it holds, and it does not buy
    // again (long-only, one buy per symbol).
    assert_eq!(trading.orders, 2, "{trading:?}");
    assert_eq!(trading.fills, 2, "{trading:?}");
    let mut told: Vec<&str> = strategy.fills.iter().map(|f| f.exec_id.as_str()).collect();
    told.sort();
    told.dedup();
    assert_eq!(
        told.len(),
        trading.fills,
        "each fill once: {:?}",
        strategy.fills
    );
    assert_eq!(strategy.fills.len(), trading.fills);
}

/// A session rides through the simulated market's long weekend (its calendar at 14,400
/// times real time, Friday 10:00 to Monday 18:00 US/Eastern): the strategy sees bars only in
/// sessions, in time order, Friday's and then Monday's for every symbol, none of the weekend.
#[test]
fn a_sessions_strategy_rides_through_a_long_weekend_of_restarts() {
    let mut cfg = config("weekend.journal", false);
    cfg.history.bar_seconds = 60;
    cfg.history.duration_seconds = 86_400;
    cfg.live.duration_seconds = 20;
    cfg.sim.speed = 14_400.0;
    cfg.sim.start = Some(1_796_396_400); // Friday 2026-12-04 15:00 UTC, 10:00 ET
    cfg.sim.calendar = true;
    let mut session = Session::start(cfg, PathBuf::from(common::RUNNER)).unwrap();
    let mut strategy = Recorder {
        window: 5,
        ..Recorder::default()
    };
    let report = session.run(&mut strategy, &AtomicBool::new(false)).unwrap();
    assert_eq!(strategy.out_of_order, 0);
    // Friday 16:00 and Monday 09:30 ET (14:30 UTC).
    let (friday_close, monday_open) = (1_796_418_000, 1_796_653_800);
    for s in &report.symbols {
        let times: Vec<i64> = strategy.calls[&s.symbol][1..].iter().map(|c| c.1).collect();
        assert_eq!(times.len(), s.live_bars);
        assert!(
            times.iter().all(|t| *t < friday_close || *t >= monday_open),
            "{}: a bar of the weekend",
            s.symbol
        );
        let monday = times.iter().filter(|t| **t >= monday_open).count();
        assert!(monday >= 380, "{}: {monday} bars on Monday", s.symbol);
        assert!(times.len() > monday, "{}: none on Friday", s.symbol);
    }
}

/// A program started as a session's worker that opens a session instead of serving (it did
/// not call `serve_worker_if_requested`) is refused, instead of starting worker after worker.
#[test]
fn a_program_started_as_a_worker_that_opens_a_session_is_refused() {
    std::env::set_var(worker::OPTIONS_ENV, "00");
    let refused = Session::start_here(Config::default()).err();
    std::env::remove_var(worker::OPTIONS_ENV);
    let e = refused.expect("refused");
    assert!(
        e.to_string()
            .contains("call runner::session::serve_worker_if_requested first"),
        "{e}"
    );
}

/// The live bars on which a run placed an order: (symbol, bar time).
#[derive(Default)]
struct OrdersOn(Vec<(String, i64)>);

impl runner::session::Observer for OrdersOn {
    fn on_live_bar(
        &mut self,
        symbol: &str,
        bars: &[Bar],
        _signal: Signal,
        order: Option<&str>,
    ) -> anyhow::Result<()> {
        if let (Some(_), Some(bar)) = (order, bars.last()) {
            self.0.push((symbol.to_string(), bar.time));
        }
        Ok(())
    }
}

/// Where a session's history meets its live bars no bar is missing: the simulated market
/// starts a subscription as IB's real-time bars do (with the next bar to start, never the one
/// forming) and answers every request half a second late, so the first live bar comes some
/// six 5-second bars after the history's newest. The runner fetches the bars between, and the
/// strategy sees every bar from its history's newest on, 5 s apart. A strategy that buys from
/// its second bar on buys on the first live bar, not on a fetched one (its price is stale).
#[test]
fn no_bar_is_missing_where_the_history_meets_the_live_bars() {
    let mut cfg = config("seam.journal", true);
    cfg.sim.skip_forming_bar = true;
    cfg.live.duration_seconds = 5;
    let faults = worker::SimFaults {
        reply_delay_ms: 500,
        ..worker::SimFaults::default()
    };
    let run = runner::worker_setup::prepare(
        &mut cfg,
        runner::worker_setup::WorkerProgram::executable(PathBuf::from(common::RUNNER)),
        faults,
    )
    .unwrap();
    let mut session = Session::from_setup(cfg, run.setup).unwrap();
    let mut strategy = Recorder {
        window: 3,
        buy_after: Some(1),
        ..Recorder::default()
    };
    let mut orders = OrdersOn::default();
    let report = session
        .run_observed(&mut strategy, &mut orders, &AtomicBool::new(false))
        .unwrap();
    drop(session);
    drop(run.journal);
    assert_eq!(strategy.out_of_order, 0);
    assert_eq!(orders.0.len(), 2, "{:?}", orders.0);
    for s in &report.symbols {
        assert!(s.error.is_none(), "{:?}", s.error);
        // The history's newest bar, then every live one.
        let times: Vec<i64> = strategy.calls[&s.symbol].iter().map(|c| c.1).collect();
        assert!(times.len() > 10, "{}: {times:?}", s.symbol);
        for w in times.windows(2) {
            assert_eq!(w[1] - w[0], 5, "{}: {times:?}", s.symbol);
        }
        // Half a second at 60x is 30 s: the first live bar is at least 40 s after the
        // history's newest (the bar forming at the subscription skipped).
        let bought = orders.0.iter().find(|(symbol, _)| *symbol == s.symbol);
        let (_, at) = bought.unwrap_or_else(|| panic!("{}: no order", s.symbol));
        assert!(
            *at >= times[0] + 40,
            "{}: bought at {at}: {times:?}",
            s.symbol
        );
    }
}
