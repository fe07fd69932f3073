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
//! (then [`Session::start_here`] starts it as the worker). `runner/examples/momentum.rs` is a
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
use bridge::protocol::Event;
use crossbeam_channel::RecvTimeoutError;

use crate::config::Config;
use crate::job::{fetch_history, subscribe_all, trade_on, trim};
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
    let asked = std::env::args().nth(1).as_deref() == Some("worker")
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
}

/// A supervised worker, connected, for one configuration.
pub struct Session {
    cfg: Config,
    sup: Arc<Supervisor>,
    events: WorkerEvents,
    _journal: RunJournal,
}

impl Session {
    /// Starts a worker from `worker_exe` (the `runner` binary, or a program that calls
    /// [`serve_worker_if_requested`]) and connects it to the broker of `cfg`.
    pub fn start(mut cfg: Config, worker_exe: PathBuf) -> Result<Session> {
        cfg.validate()?;
        let journal = RunJournal::for_run(&mut cfg);
        let mut setup = WorkerSetup::from_config(&cfg, worker_exe, worker::SimFaults::default());
        journal
            .adopt_clock(&mut setup)
            .map_err(SupervisorError::Environment)?;
        let (sup, events) = Supervisor::start(setup)?;
        Ok(Session {
            cfg,
            sup,
            events,
            _journal: journal,
        })
    }

    /// Starts this very program as the worker: it must call [`serve_worker_if_requested`]
    /// first thing in `main`.
    pub fn start_here(cfg: Config) -> Result<Session> {
        let exe = bridge::platform::own_executable()
            .map_err(|e| anyhow!("cannot find this program's executable: {e}"))?;
        Self::start(cfg, exe)
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
    pub fn run(&mut self, strategy: &mut dyn Strategy, stop: &AtomicBool) -> Result<SessionReport> {
        let cfg = &self.cfg;
        let sup = &*self.sup;
        let keep = strategy.window().max(1);
        let mut trader = match cfg.trading.enabled {
            true => {
                let mut t = Trader::new(sup, cfg)?;
                t.count_broker_positions()
                    .map_err(|e| anyhow!("cannot check trading.max_position: {e}"))?;
                Some(t)
            }
            false => None,
        };
        let mut series = fetch_history(cfg, sup, stop);
        let mut last = vec![None; series.len()];
        for (i, s) in series.iter_mut().enumerate() {
            trim(&mut s.bars, keep);
            if s.error.is_none() && !s.bars.is_empty() {
                last[i] = Some(strategy.on_bars(&s.symbol, tail(&s.bars, keep)));
            }
        }
        if !cfg.live.disabled && !stop.load(Ordering::Relaxed) {
            subscribe_all(cfg, sup, &series);
        }
        let until = (cfg.live.duration_seconds > 0)
            .then(|| Instant::now() + Duration::from_secs(cfg.live.duration_seconds));
        let mut interrupted = false;
        loop {
            if cfg.live.disabled {
                break;
            }
            if stop.load(Ordering::Relaxed) {
                interrupted = true;
                break;
            }
            if until.is_some_and(|u| Instant::now() >= u) || sup.gave_up().is_some() {
                break;
            }
            match self.events.recv_timeout(TICK) {
                Ok(Event::Bar { sub, bar }) => {
                    let i = sub as usize;
                    let Some(s) = series.get_mut(i).filter(|s| s.error.is_none()) else {
                        continue;
                    };
                    if s.bars.last().is_some_and(|l| bar.time <= l.time) {
                        continue;
                    }
                    s.push(bar, keep);
                    let signal = strategy.on_bars(&s.symbol, tail(&s.bars, keep));
                    last[i] = Some(signal);
                    if let Some(t) = trader.as_mut() {
                        trade_on(t, cfg, &s.symbol, signal, bar.close);
                    }
                }
                Ok(event @ (Event::Order(_) | Event::Fill(_) | Event::Position(_))) => {
                    if let Some(t) = trader.as_mut() {
                        let ours = match &event {
                            Event::Fill(f) => t.book().order(&f.order_ref).is_some(),
                            _ => false,
                        };
                        t.on_event(&event);
                        if let (true, Event::Fill(f)) = (ours, &event) {
                            strategy.on_fill(f);
                        }
                    }
                }
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let trading = trader.as_mut().map(|t| {
            if cfg.trading.cancel_on_exit {
                t.cancel_working();
            }
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
        if let Some(e) = sup.gave_up() {
            return Err(e.into());
        }
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
                })
                .collect(),
            trading,
            restarts: sup.stats().restarts,
            interrupted,
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

/// The last `n` of `bars`.
fn tail(bars: &[bridge::protocol::Bar], n: usize) -> &[bridge::protocol::Bar] {
    &bars[bars.len().saturating_sub(n)..]
}
