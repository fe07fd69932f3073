//! A session: the runner as a library, for a strategy of one's own ([`Session`]).
//!
//! A session starts and supervises the worker (the simulated market or IB, with the same
//! configuration as the `runner` binary), fetches history for the configured symbols at
//! once, streams their live bars, and hands each symbol's most recent bars to a
//! [`Strategy`]; with trading on, the strategy's buy and sell signals become orders, placed
//! exactly once through the worker with the runner's risk limits and live-account rule.
//! Only the strategy's [`window`](Strategy::window) of bars is kept per symbol, so a session
//! of any length holds a bounded amount of data.
//!
//! The worker is a program of its own: the `runner` binary (`runner worker`), or the program
//! that opens the session, if it calls [`serve_worker_if_requested`] first thing in `main`
//! (then [`Session::start_here`] starts it as the worker). `runner/examples/breakout.rs` is a
//! complete program.
//!
//! Invariants: a session's worker is shut down when the session is dropped; its working
//! orders are cancelled at the end of [`Session::run`] when `trading.cancel_on_exit` says so;
//! a strategy sees a symbol's bars only in time order, each bar once.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use bridge::protocol::{Bar, Event};
use crossbeam_channel::RecvTimeoutError;

use crate::config::Config;
use crate::job::{fetch_history, subscribe_all, trade_on, trim, Series};
use crate::strategy::{Signal, Strategy};
use crate::supervisor::{Supervisor, SupervisorError};
use crate::trader::{Trader, TradingSummary};
use crate::worker_events::WorkerEvents;
use crate::worker_setup::{RunJournal, WorkerSetup};

/// How often the live loop looks at the clock and at `stop` while no bar comes.
const TICK: Duration = Duration::from_millis(100);

/// If this process was started as a session's worker (`<program> worker`, with the worker's
/// options in the environment), serves as the worker and returns its exit code; else `None`.
/// Call it first thing in `main`:
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     if let Some(code) = runner::session::serve_worker_if_requested() {
///         return code;
///     }
///     // ... the program itself, which may open a `Session::start_here`.
///     std::process::ExitCode::SUCCESS
/// }
/// ```
pub fn serve_worker_if_requested() -> Option<ExitCode> {
    let asked = std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new("worker"))
        && std::env::var_os(worker::OPTIONS_ENV).is_some();
    if !asked {
        return None;
    }
    Some(match worker::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("worker: {e}");
            ExitCode::from(2)
        }
    })
}

/// How one symbol fared in a session.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolRun {
    pub symbol: String,
    /// Bars of history fetched.
    pub history_bars: usize,
    /// Live bars taken.
    pub live_bars: usize,
    /// The strategy's last signal for it.
    pub last_signal: Option<Signal>,
    /// Why it had no data, if it had none.
    pub error: Option<String>,
    /// Its most recent bars at the end (at most twice the strategy's window).
    pub recent: Vec<Bar>,
}

/// What a session's run did.
#[derive(Debug, Clone)]
pub struct SessionReport {
    /// One per configured symbol, in configuration order.
    pub symbols: Vec<SymbolRun>,
    /// What trading did, with trading on.
    pub trading: Option<TradingSummary>,
    /// Workers started after the first.
    pub restarts: u32,
    /// Whether `stop` ended the run.
    pub interrupted: bool,
    /// How long the history took, and the live phase.
    pub history_elapsed: Duration,
    pub live_elapsed: Duration,
}

/// What a run tells beside the strategy: the history before it is cut to the strategy's
/// window, each live bar with the signal and order it led to, and every other event (the
/// broker connection, notices, refusals). The `runner` binary's signals file and summary are
/// an observer; by default nothing is done.
pub trait Observer {
    /// A symbol's whole history, before only the strategy's window of it is kept.
    fn on_history(&mut self, _symbol: &str, _bars: &[Bar]) -> Result<()> {
        Ok(())
    }

    /// A live bar was added to `symbol` (`bars`: its most recent ones), the strategy said
    /// `signal`, and `order` is the reference of the order that placed, if any.
    fn on_live_bar(
        &mut self,
        _symbol: &str,
        _bars: &[Bar],
        _signal: Signal,
        _order: Option<&str>,
    ) -> Result<()> {
        Ok(())
    }

    /// Any event other than bars, orders and fills; `false` ends the live phase (nothing
    /// more can come).
    fn on_event(&mut self, _event: &Event) -> bool {
        true
    }
}

/// An observer that does nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unobserved;

impl Observer for Unobserved {}

/// A supervised worker, connected, for one configuration.
pub struct Session {
    cfg: Config,
    sup: Arc<Supervisor>,
    events: WorkerEvents,
    _journal: Option<RunJournal>,
}

impl Session {
    /// Starts a worker from `worker_exe` (the `runner` binary, or a program that calls
    /// [`serve_worker_if_requested`]) and connects it to the broker of `cfg`.
    pub fn start(mut cfg: Config, worker_exe: PathBuf) -> Result<Session> {
        cfg.validate()?;
        let journal = RunJournal::for_run(&mut cfg);
        let setup = journal
            .setup(&cfg, worker_exe, worker::SimFaults::default())
            .map_err(SupervisorError::Environment)?;
        let mut session = Self::from_setup(cfg, setup)?;
        session._journal = Some(journal);
        Ok(session)
    }

    /// Starts this very program as the worker: it must call [`serve_worker_if_requested`]
    /// first thing in `main`.
    pub fn start_here(cfg: Config) -> Result<Session> {
        if std::env::var_os(worker::OPTIONS_ENV).is_some() {
            // Started as a worker, and opening a session instead of serving: every generation
            // would start another.
            return Err(anyhow!(
                "this program was started as a worker but did not serve: call \
                 runner::session::serve_worker_if_requested first thing in main"
            ));
        }
        let exe = bridge::platform::own_executable()
            .map_err(|e| anyhow!("cannot find this program's executable: {e}"))?;
        Self::start(cfg, exe)
    }

    /// A session over workers started as `setup` says (the simulated broker's journal, if
    /// any, is the caller's).
    pub fn from_setup(cfg: Config, setup: WorkerSetup) -> Result<Session> {
        let (sup, events) = Supervisor::start(setup)?;
        Ok(Session {
            cfg,
            sup,
            events,
            _journal: None,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The managed accounts the broker reported.
    pub fn accounts(&self) -> Vec<String> {
        self.sup.accounts()
    }

    /// The supervisor, for requests of one's own (history, orders, positions).
    pub fn supervisor(&self) -> &Supervisor {
        &self.sup
    }

    /// History for every configured symbol, then live bars for `live.duration_seconds` (0:
    /// until `stop`), each symbol's most recent bars handed to `strategy` as they change;
    /// with `trading.enabled`, its signals become orders. At the end the run's working orders
    /// are cancelled (`trading.cancel_on_exit`) and its book reconciled with the broker's.
    /// Fails if the supervisor gave up replacing a dead worker.
    pub fn run(&mut self, strategy: &mut dyn Strategy, stop: &AtomicBool) -> Result<SessionReport> {
        let report = self.run_observed(strategy, &mut Unobserved, stop)?;
        match self.sup.gave_up() {
            Some(e) => Err(e.into()),
            None => Ok(report),
        }
    }

    /// [`run`](Self::run), telling `observer` what happens; a supervisor that gave up ends
    /// the live phase (ask [`Supervisor::gave_up`] why).
    pub fn run_observed(
        &mut self,
        strategy: &mut dyn Strategy,
        observer: &mut dyn Observer,
        stop: &AtomicBool,
    ) -> Result<SessionReport> {
        let cfg = self.cfg.clone();
        let sup = self.sup.clone();
        let keep = strategy.window().max(1);
        let mut trader = match cfg.trading.enabled {
            true => {
                let mut t = Trader::new(&sup, &cfg)?;
                // What the broker holds already counts against the position limit.
                t.count_broker_positions()
                    .map_err(|e| anyhow!("cannot check trading.max_position: {e}"))?;
                Some(t)
            }
            false => None,
        };
        let started = Instant::now();
        let mut series = fetch_history(&cfg, &sup, stop);
        let history_elapsed = started.elapsed();
        let mut last = vec![None; series.len()];
        for (i, s) in series.iter_mut().enumerate() {
            if s.error.is_some() {
                continue;
            }
            observer.on_history(&s.symbol, &s.bars)?;
            // From here on only the strategy's window is kept, however long the run.
            trim(&mut s.bars, keep);
            if !s.bars.is_empty() {
                last[i] = Some(strategy.on_bars(&s.symbol, tail(&s.bars, keep)));
            }
        }
        let live_started = Instant::now();
        let live = Live {
            cfg: &cfg,
            sup: &sup,
            keep,
            stop,
            started: live_started,
        }
        .run(
            &mut self.events,
            strategy,
            observer,
            &mut series,
            &mut last,
            trader.as_mut(),
        );
        let live_elapsed = live_started.elapsed();
        if let (Some(t), true) = (trader.as_mut(), cfg.trading.cancel_on_exit) {
            // Also when the live phase failed: its working orders are not left behind.
            t.cancel_working();
        }
        let interrupted = live?;
        let trading = trader.as_mut().map(|t| {
            if let Err(e) = t.reconcile() {
                tracing::warn!("orders not reconciled with the broker's: {e}");
            }
            t.summary(|symbol| {
                series
                    .iter()
                    .find(|s| s.symbol == symbol)
                    .and_then(|s| s.bars.last())
                    .map(|b| b.close)
            })
        });
        Ok(SessionReport {
            symbols: series
                .into_iter()
                .zip(last)
                .map(|(s, last_signal)| SymbolRun {
                    symbol: s.symbol,
                    history_bars: s.history_bars,
                    live_bars: s.live_bars,
                    last_signal,
                    error: s.error,
                    recent: s.bars,
                })
                .collect(),
            trading,
            restarts: sup.stats().restarts,
            interrupted,
            history_elapsed,
            live_elapsed,
        })
    }

    /// Asks the worker to disconnect and exit (also done when the session is dropped).
    pub fn shutdown(&self) {
        self.sup.shutdown();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.sup.shutdown();
    }
}

/// The live phase of a run.
struct Live<'a> {
    cfg: &'a Config,
    sup: &'a Supervisor,
    keep: usize,
    stop: &'a AtomicBool,
    /// When the live phase began (its duration counts from here, subscribing included).
    started: Instant,
}

impl Live<'_> {
    /// Subscribes every symbol with history and takes live bars until the configured
    /// duration passes, `stop` is set, the observer ends it or the supervisor gives up.
    /// Returns whether `stop` ended it.
    fn run(
        &self,
        events: &mut WorkerEvents,
        strategy: &mut dyn Strategy,
        observer: &mut dyn Observer,
        series: &mut [Series],
        last: &mut [Option<Signal>],
        mut trader: Option<&mut Trader<'_>>,
    ) -> Result<bool> {
        let cfg = self.cfg;
        if self.stop.load(Ordering::Relaxed) {
            return Ok(true);
        }
        if cfg.live.disabled {
            return Ok(false);
        }
        subscribe_all(cfg, self.sup, series);
        let until = (cfg.live.duration_seconds > 0)
            .then(|| self.started + Duration::from_secs(cfg.live.duration_seconds));
        tracing::info!(
            symbols = series.iter().filter(|s| s.error.is_none()).count(),
            seconds = cfg.live.duration_seconds,
            "live phase"
        );
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(true);
            }
            if until.is_some_and(|u| Instant::now() >= u) || self.sup.gave_up().is_some() {
                return Ok(false);
            }
            let event = match events.recv_timeout(TICK) {
                Ok(e) => e,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Ok(false),
            };
            match event {
                Event::Bar { sub, bar } => {
                    let i = sub as usize;
                    // Only a row that was subscribed (its history came) takes live bars.
                    let Some(s) = series.get_mut(i).filter(|s| s.error.is_none()) else {
                        continue;
                    };
                    if s.bars.last().is_some_and(|l| bar.time <= l.time) {
                        continue;
                    }
                    s.push(bar, self.keep);
                    let recent = tail(&s.bars, self.keep);
                    let signal = strategy.on_bars(&s.symbol, recent);
                    if let Some(slot) = last.get_mut(i) {
                        *slot = Some(signal);
                    }
                    let order = match trader.as_deref_mut() {
                        Some(t) => trade_on(t, cfg, &s.symbol, signal, bar.close),
                        None => None,
                    };
                    observer.on_live_bar(&s.symbol, recent, signal, order.as_deref())?;
                }
                Event::Order(_) | Event::Fill(_) | Event::Position(_) => {
                    if let Some(t) = trader.as_deref_mut() {
                        // Each of this run's fills once, however often it is reported.
                        if let Some(fill) = t.on_event(&event) {
                            strategy.on_fill(fill);
                        }
                    }
                }
                other => {
                    // A broker connection given up for good: nothing more can come.
                    let gave_up = matches!(
                        &other,
                        Event::Connection(bridge::protocol::ConnectionStatus::GaveUp { .. })
                    );
                    if !observer.on_event(&other) || gave_up {
                        return Ok(false);
                    }
                }
            }
        }
    }
}

/// The last `n` of `bars`.
fn tail(bars: &[Bar], n: usize) -> &[Bar] {
    &bars[bars.len().saturating_sub(n)..]
}
