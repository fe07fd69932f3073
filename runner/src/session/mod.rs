//! A session: the runner as a library, for a strategy of one's own ([`Session`]).
//!
//! A session starts and supervises the worker (the simulated market or IB, with the same
//! configuration as the `runner` binary), fetches history for the configured symbols at
//! once (`history`), streams their live bars (`live`), and hands each symbol's most recent
//! bars to a [`Strategy`]; with trading on, the strategy's buy and sell signals become
//! orders, placed exactly once through the worker with the runner's risk limits and
//! live-account rule. Only the strategy's [`window`](Strategy::window) of bars is kept per
//! symbol, so a session of any length holds a bounded amount of data. What a run tells
//! beside the strategy goes to an [`Observer`]; what it did is a [`SessionReport`].
//!
//! The worker is a program of its own: the `runner` binary (`runner worker`), or the program
//! that opens the session, if it calls [`serve_worker_if_requested`] first thing in `main`
//! (then [`Session::start_here`] starts it as the worker). `runner/examples/breakout.rs` is a
//! complete program.
//!
//! Invariants: a session's worker is shut down when the session is dropped; its working
//! orders are cancelled at the end of [`Session::run`] when `trading.cancel_on_exit` says so;
//! a strategy sees a symbol's bars only in time order, each bar once ([`MonotonicBars`]); a
//! process started as a worker never opens a session.

mod history;
mod live;
mod observer;
mod report;
mod seam;

pub use live::{next_event, MonotonicBars, Next, TICK};
pub use observer::{Observer, Unobserved};
pub use report::{NoHistory, SessionReport, SymbolRun};

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Result};

use crate::config::Config;
use crate::strategy::Strategy;
use crate::supervisor::{Supervisor, SupervisorError};
use crate::trader::Trader;
use crate::worker_events::WorkerEvents;
use crate::worker_setup::{prepare, RunJournal, WorkerProgram, WorkerSetup};

use history::{fetch_history, tail, trim};
use live::Live;

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
    worker::serve_if_started_as_worker(None).map(ExitCode::from)
}

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
    pub fn start(cfg: Config, worker_exe: PathBuf) -> Result<Session> {
        Self::start_program(cfg, WorkerProgram::executable(worker_exe))
    }

    /// Starts this very program as the worker: it must call [`serve_worker_if_requested`]
    /// first thing in `main`.
    pub fn start_here(cfg: Config) -> Result<Session> {
        // Started as a worker, and opening a session instead of serving: every generation
        // would start another.
        worker::entry::refuse_session_in_worker().map_err(|e| {
            anyhow::Error::new(e).context(
                "this program was started as a worker but did not serve: call \
                 runner::session::serve_worker_if_requested first thing in main",
            )
        })?;
        let program = WorkerProgram::this_program().map_err(|e| anyhow!("{e}"))?;
        Self::start_program(cfg, program)
    }

    /// Starts a worker that is `program` and connects it to the broker of `cfg`.
    fn start_program(mut cfg: Config, program: WorkerProgram) -> Result<Session> {
        cfg.validate()?;
        let run = prepare(&mut cfg, program, worker::SimFaults::default())
            .map_err(SupervisorError::from)?;
        let mut session = Self::from_setup(cfg, run.setup)?;
        session._journal = Some(run.journal);
        Ok(session)
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

    /// The supervisor, shared: for a thread of one's own that outlives a borrow.
    pub fn shared_supervisor(&self) -> Arc<Supervisor> {
        self.sup.clone()
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
                let mut t = Trader::new(&*sup, &cfg)?;
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
            if let Some(e) = &s.error {
                observer.on_history_failed(&s.symbol, e);
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
            match t.reconcile() {
                // Fills that came while nobody read the events (the cancel on exit), or
                // whose events were lost: the strategy hears of them too.
                Ok(late) => {
                    for fill in &late {
                        tracing::info!(order_ref = %fill.order_ref, "fill learned at the end of the run");
                        strategy.on_fill(fill);
                        observer.on_fill(fill);
                    }
                }
                Err(e) => tracing::warn!("orders not reconciled with the broker's: {e}"),
            }
            // What the cancel on exit and the reconciliation changed.
            for o in t.book().orders() {
                observer.on_order(o);
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
                .map(|(s, last_signal)| s.into_run(last_signal))
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
