//! The `run` command ([`command`]): a [`Session`] with the built-in crossover as its strategy, and as its
//! observer (`Reporter`) the signals file (a row for every bar of the history with enough
//! bars before it, and for every live bar, with the order it placed), the recording
//! (`--record`: every bar, the configuration and the signals) and the record of the
//! broker connection; then the bridge's round trip (`measure_round_trips`) and each
//! symbol's last evaluation (`final_reports`), which the summary prints.
//!
//! Invariants: every configured symbol gets a report, in configuration order, with its data
//! or why it has none; `stop` (Ctrl-C) ends the run at the next phase boundary or live-phase
//! tick, and the run still reports; a run whose supervisor or broker connection gave up
//! says why ([`Outcome::gave_up`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result};
use bridge::protocol::{Bar, Event, Fill, OrderReport};

use crate::broker_connection::BrokerConnection;
use crate::cli::ConfigArgs;
use crate::config::Config;
use crate::dashboard::{Dashboard, Updates};
use crate::launch::{self, EXIT_FAILED};
use crate::session::{NoHistory, Observer, Session, SymbolRun};
use crate::signals::Signals;
use crate::strategy::{Crossover, Signal};
use crate::summary::{NoFigures, RunFailure};
pub use crate::summary::{Outcome, SymbolReport};
use crate::supervisor::{Supervisor, SupervisorError};
use crate::worker_setup::WorkerSetup;
use worker::recording::{Record, RecordingWriter};

/// Pings sent at the end to measure the bridge's round trip.
pub const RTT_PINGS: usize = 2000;

/// `runner run`: the run with the configuration of `args`, then its summary on stdout; exit
/// 0, [`EXIT_FAILED`] if it could not proceed or gave up, [`EXIT_CONFIG`](crate::launch::EXIT_CONFIG)
/// for what the operator must fix in the configuration or the machine.
pub fn command(args: &ConfigArgs) -> ExitCode {
    let (mut cfg, faults) = match launch::start(args.load()) {
        Ok(started) => started,
        Err(code) => return code,
    };
    // A replay of a hub's stream: its bars read into a recording of the run's own first.
    #[cfg(feature = "nats")]
    let _recording = match crate::nats::replay::materialize(&mut cfg) {
        Ok(r) => r,
        Err(e) => return launch::fail(crate::launch::EXIT_CONFIG, format!("{e:#}")),
    };
    #[cfg(not(feature = "nats"))]
    if !cfg.replay.stream.is_empty() && cfg.backend == crate::config::BackendKind::Replay {
        return launch::fail(
            crate::launch::EXIT_CONFIG,
            "a replay of a NATS stream: this build of the runner has no NATS support",
        );
    }
    match launch::with_workers(&mut cfg, faults, run) {
        Ok(outcome) => {
            print!("{}", crate::summary::render(&outcome));
            match outcome.gave_up {
                Some(why) => launch::fail(EXIT_FAILED, why),
                None => ExitCode::SUCCESS,
            }
        }
        // The machine cannot host the bridge as configured, or trading on a live account was
        // not allowed: like a configuration error.
        Err(e) => launch::failed(&e),
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
    let recording = match &cfg.record {
        Some(p) => Some(record_to(cfg, p)?),
        None => None,
    };
    let mut session = Session::from_setup(cfg.clone(), setup)?;
    let dashboard = match cfg.dashboard.enabled || cfg.dashboard.report.is_some() {
        true => Some(Dashboard::start(cfg, session.shared_supervisor())?),
        false => None,
    };
    if let Some(addr) = dashboard.as_ref().and_then(Dashboard::address) {
        eprintln!("dashboard: http://{addr}/");
    }
    let mut reporter = Reporter {
        strategy,
        signals,
        recording,
        broker: BrokerConnection::default(),
        dashboard: dashboard.as_ref().map(Dashboard::updates),
    };
    let report = session.run_observed(&mut strategy, &mut reporter, stop);
    if let Some(d) = &dashboard {
        d.quiet();
    }
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            // A failed live phase still leaves its report.
            if let Some(d) = dashboard {
                finish_dashboard(d, &[]);
            }
            return Err(e);
        }
    };
    let round_trips = measure_round_trips(session.supervisor());
    if let Some(d) = dashboard {
        let us: Vec<f64> = round_trips.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        finish_dashboard(d, &us);
    }
    let mut supervisor = session.supervisor().stats();
    session.shutdown();
    supervisor.restarts = session.supervisor().stats().restarts;
    let gave_up = session
        .supervisor()
        .gave_up()
        .map(RunFailure::Supervisor)
        .or_else(|| reporter.broker.gave_up.clone().map(RunFailure::Broker));
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
    /// The recording (`--record`) and its path.
    recording: Option<(RecordingWriter, PathBuf)>,
    broker: BrokerConnection,
    dashboard: Option<Updates>,
}

/// Ends the dashboard and writes its report, saying where; a report that cannot be
/// written is a warning (the run itself is done).
fn finish_dashboard(d: Dashboard, round_trips_us: &[f64]) {
    match d.finish(round_trips_us) {
        Ok(Some(path)) => eprintln!("report: {}", path.display()),
        Ok(None) => {}
        Err(e) => tracing::warn!("{e:#}"),
    }
}

impl Reporter {
    /// Appends to the recording, if there is one; a recording that cannot be written is
    /// given up, said once, and the run goes on (its trading is not stopped by a full disk).
    fn record(&mut self, write: impl FnOnce(&mut RecordingWriter) -> std::io::Result<()>) {
        let Some((r, path)) = self.recording.as_mut() else {
            return;
        };
        if let Err(e) = write(r).and_then(|()| r.flush()) {
            tracing::error!(
                "the recording {} is given up (the run goes on): cannot write it: {e}",
                path.display()
            );
            self.recording = None;
        }
    }
}

impl Observer for Reporter {
    fn on_history(&mut self, symbol: &str, bars: &[Bar]) -> Result<()> {
        if let Some(d) = self.dashboard.as_mut() {
            d.on_history(symbol, bars)?;
        }
        self.record(|r| r.history(symbol, bars));
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
        signal: Signal,
        order: Option<&str>,
    ) -> Result<()> {
        self.broker.bar(symbol);
        if let Some(d) = self.dashboard.as_mut() {
            d.on_live_bar(symbol, bars, signal, order)?;
        }
        if let Some(bar) = bars.last() {
            self.record(|r| r.live(symbol, bar, &signal.to_string(), order));
        }
        if let (Some(file), Ok(e)) = (self.signals.as_mut(), self.strategy.evaluate(bars)) {
            file.row(symbol, &e, order)?;
        }
        Ok(())
    }

    fn on_order(&mut self, report: &OrderReport) {
        if let Some(d) = self.dashboard.as_mut() {
            d.on_order(report);
        }
    }

    fn on_fill(&mut self, fill: &Fill) {
        if let Some(d) = self.dashboard.as_mut() {
            d.on_fill(fill);
        }
    }

    fn on_history_failed(&mut self, symbol: &str, why: &NoHistory) {
        // Named without bars: a replay of the same symbols knows it has none.
        self.record(|r| r.name(symbol));
        if let Some(d) = self.dashboard.as_mut() {
            d.on_history_failed(symbol, why);
        }
    }

    fn on_event(&mut self, event: &Event) -> bool {
        if let Some(d) = self.dashboard.as_mut() {
            d.on_event(event);
        }
        match event {
            Event::Connection(status) => {
                self.broker.observe(status);
                // The connection stays down for good: nothing more can come.
                return self.broker.gave_up.is_none();
            }
            Event::Delayed { symbol, refused } => self.broker.delayed(symbol, refused),
            Event::Refused { symbol, error } => self.broker.refuse(symbol, error),
            Event::Notice { code, message } => tracing::info!(code, "notice: {message}"),
            Event::Feed { symbol, state } => self.broker.feed(symbol, state),
            _ => {}
        }
        true
    }
}

/// A recording of this run at `path`: the run's record (this program, the configuration, the
/// bar size, now) written.
fn record_to(cfg: &Config, path: &Path) -> Result<(RecordingWriter, PathBuf)> {
    let run = Record::Run {
        program: format!("runner {}", env!("CARGO_PKG_VERSION")),
        config: cfg.to_toml(),
        bar_seconds: cfg.history.bar_seconds,
        started: base::unix_time::now().as_secs() as i64,
    };
    let writer = RecordingWriter::create(path, &run)
        .with_context(|| format!("cannot create the recording {}", path.display()))?;
    Ok((writer, path.to_path_buf()))
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
            let last = match (s.error, broker.refused.get(&s.symbol), &broker.down) {
                (Some(e), _, _) => Err(NoFigures::NoData(e)),
                (None, Some(why), _) => Err(NoFigures::Refused(why.clone())),
                (None, None, Some(reason)) if !cfg.live.disabled => {
                    Err(NoFigures::Interrupted(reason.clone()))
                }
                (None, None, _) => match s.stalled_since {
                    Some(since) => Err(NoFigures::Stalled(since)),
                    None => strategy
                        .evaluate_fresh(
                            &s.recent,
                            cfg.history.bar_seconds,
                            market_time,
                            cfg.strategy.stale_after_bars,
                        )
                        .map_err(NoFigures::NoSignal),
                },
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
