//! The main job: history for every symbol at once, the crossover over it, live bars, signals
//! to a file, and a summary.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bridge::protocol::{Bar, Event, HistoryRequest, SubscribeRequest};
use bridge::ClientConfig;
use parking_lot::Mutex;
use worker::{BackendOptions, SimFaults, SimOptions, WorkerOptions};

use crate::config::{BackendKind, Config};
use crate::strategy::{Crossover, Evaluation, NoSignal};
use crate::supervisor::{Launch, Supervisor, SupervisorError, SupervisorStats};

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
}

/// Builds the worker launch description from the configuration.
pub fn launch(cfg: &Config, exe: PathBuf, faults: SimFaults) -> Launch {
    let backend = match cfg.backend {
        BackendKind::Sim => {
            // One market clock for every worker of this run, replacements included.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            BackendOptions::Sim(SimOptions {
                seed: cfg.sim.seed,
                speed: cfg.sim.speed,
                start: Some(cfg.sim.start.unwrap_or(now.as_secs() as i64)),
                anchor_ms: Some(now.as_millis() as u64),
                faults,
            })
        }
        BackendKind::Ibkr => BackendOptions::Ibkr(worker::options::IbkrOptions {
            gateway: cfg.ibkr.gateway.clone(),
            client_id: cfg.ibkr.client_id,
            client_id_attempts: cfg.ibkr.client_id_attempts,
            contracts: cfg
                .ibkr
                .contracts
                .iter()
                .map(|(symbol, c)| worker::options::ContractSpec {
                    symbol: symbol.clone(),
                    exchange: c.exchange.clone(),
                    currency: c.currency.clone(),
                    primary_exchange: c.primary_exchange.clone(),
                })
                .collect(),
        }),
    };
    let build_id = worker::build_id_of(&exe);
    let mut options = WorkerOptions::new(build_id.clone(), backend);
    options.heartbeat_ms = cfg.bridge.heartbeat_ms;
    options.hang_timeout_ms = cfg.bridge.hang_timeout_ms;
    options.handshake_timeout_ms = cfg.bridge.handshake_timeout_ms;
    options.log_level = if tracing::enabled!(target: "worker", tracing::Level::TRACE) {
        4
    } else if tracing::enabled!(target: "worker", tracing::Level::DEBUG) {
        3
    } else {
        2
    };
    let channel = bridge::channel::Config {
        geometry: bridge::segment::Geometry {
            ring_capacity: cfg.bridge.ring_capacity,
            max_frame: cfg.bridge.max_frame,
        },
        heartbeat_interval: Duration::from_millis(cfg.bridge.heartbeat_ms),
        hang_timeout: Duration::from_millis(cfg.bridge.hang_timeout_ms),
        build_id,
        ..bridge::channel::Config::default()
    };
    Launch {
        exe,
        options,
        client: ClientConfig {
            channel,
            ..ClientConfig::default()
        },
        handshake: Duration::from_millis(cfg.bridge.handshake_timeout_ms),
        policy: cfg.supervisor.clone(),
    }
}

/// Shows history progress: a bar on a terminal, plain lines otherwise.
struct Progress {
    total: usize,
    done: AtomicUsize,
    bars: AtomicU64,
    tty: bool,
    out: Mutex<()>,
}

impl Progress {
    fn new(total: usize) -> Self {
        Progress {
            total,
            done: AtomicUsize::new(0),
            bars: AtomicU64::new(0),
            tty: std::io::stderr().is_terminal(),
            out: Mutex::new(()),
        }
    }

    fn symbol_done(&self, symbol: &str, result: &Result<usize, String>) {
        let _guard = self.out.lock();
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let n = *result.as_ref().unwrap_or(&0);
        let bars = self.bars.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        let mut err = std::io::stderr().lock();
        if self.tty {
            let width = 30;
            let filled = width * done / self.total.max(1);
            let _ = write!(
                err,
                "\rhistory [{}{}] {done}/{} symbols, {bars} bars",
                "#".repeat(filled),
                "-".repeat(width - filled),
                self.total
            );
            if done == self.total {
                let _ = writeln!(err);
            }
        } else {
            let what = match result {
                Ok(n) => format!("{n} bars"),
                Err(e) => format!("failed: {e}"),
            };
            let _ = writeln!(err, "history {done}/{}: {symbol} {what}", self.total);
        }
    }
}

/// Writes signal rows as CSV.
struct SignalFile {
    out: BufWriter<File>,
    rows: u64,
}

impl SignalFile {
    fn create(path: &Path) -> Result<Self> {
        let file = File::create(path)
            .with_context(|| format!("cannot create signals file {}", path.display()))?;
        let mut out = BufWriter::new(file);
        writeln!(out, "time,symbol,price,fast_sma,slow_sma,signal")?;
        Ok(SignalFile { out, rows: 0 })
    }

    fn row(&mut self, symbol: &str, e: &Evaluation) -> Result<()> {
        writeln!(
            self.out,
            "{},{symbol},{:.4},{:.4},{:.4},{}",
            iso_time(e.time),
            e.price,
            e.fast,
            e.slow,
            e.signal
        )?;
        self.rows += 1;
        Ok(())
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time.
pub fn iso_time(t: i64) -> String {
    let (year, month, day, h, m, s) = worker::unix_time::civil_time(t);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

struct SymbolState {
    bars: Vec<Bar>,
    history_bars: usize,
    live_bars: usize,
    error: Option<String>,
}

/// Runs the main job until done or `stop` is set.
pub fn run(cfg: &Config, launch: Launch, stop: &AtomicBool) -> Result<Outcome> {
    let strategy = Crossover {
        fast: cfg.strategy.fast,
        slow: cfg.strategy.slow,
    };
    let mut signals = match &cfg.signals {
        Some(p) => Some(SignalFile::create(p)?),
        None => None,
    };
    let (sup, events) = Supervisor::start(launch).map_err(|e| anyhow::anyhow!("{e}"))?;
    let outcome = run_with(cfg, &sup, &events, &strategy, &mut signals, stop);
    sup.shutdown();
    let mut outcome = outcome?;
    outcome.supervisor.restarts = sup.stats().restarts;
    if let Some(s) = signals.as_mut() {
        s.out.flush().context("cannot write signals file")?;
        outcome.signals_written = s.rows;
    }
    Ok(outcome)
}

fn run_with(
    cfg: &Config,
    sup: &Arc<Supervisor>,
    events: &crossbeam_channel::Receiver<Event>,
    strategy: &Crossover,
    signals: &mut Option<SignalFile>,
    stop: &AtomicBool,
) -> Result<Outcome> {
    let bar_seconds = cfg.history.bar_seconds;
    // --- history, all symbols at once
    let started = Instant::now();
    let progress = Progress::new(cfg.symbols.len());
    let next = AtomicUsize::new(0);
    let results: Mutex<HashMap<String, Result<Vec<Bar>, String>>> = Mutex::new(HashMap::new());
    let threads = cfg.history.concurrency.min(cfg.symbols.len()).max(1);
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
                    bar_seconds,
                    duration_seconds: cfg.history.duration_seconds,
                    end: None,
                };
                let timeout = Duration::from_secs(cfg.history.timeout_seconds);
                let r = sup.history(&req, timeout).map_err(|e| e.to_string());
                progress.symbol_done(symbol, &r.as_ref().map(Vec::len).map_err(Clone::clone));
                results.lock().insert(symbol.clone(), r);
            });
        }
    });
    let history_elapsed = started.elapsed();
    let mut results = results.into_inner();
    let mut state: Vec<(String, SymbolState)> = cfg
        .symbols
        .iter()
        .map(|s| {
            let st = match results.remove(s) {
                Some(Ok(bars)) => SymbolState {
                    history_bars: bars.len(),
                    bars,
                    live_bars: 0,
                    error: None,
                },
                Some(Err(e)) => SymbolState {
                    bars: Vec::new(),
                    history_bars: 0,
                    live_bars: 0,
                    error: Some(e),
                },
                None => SymbolState {
                    bars: Vec::new(),
                    history_bars: 0,
                    live_bars: 0,
                    error: Some("not fetched (interrupted)".into()),
                },
            };
            (s.clone(), st)
        })
        .collect();
    for (symbol, st) in &state {
        if let Some(e) = &st.error {
            tracing::warn!(%symbol, "no data: {e}");
        }
    }

    // --- the strategy over the history
    if let Some(file) = signals.as_mut() {
        for (symbol, st) in &state {
            for end in strategy.slow + 1..=st.bars.len() {
                if let Ok(e) = strategy.evaluate(&st.bars[..end]) {
                    file.row(symbol, &e)?;
                }
            }
        }
    }

    // --- live bars
    let live_started = Instant::now();
    let mut interrupted = stop.load(Ordering::Relaxed);
    if !cfg.live.disabled && !interrupted {
        for (symbol, st) in &state {
            if st.error.is_some() {
                continue;
            }
            let sub = SubscribeRequest {
                symbol: symbol.clone(),
                bar_seconds,
            };
            if let Err(e) = sup.subscribe(sub, cfg.request_timeout()) {
                tracing::warn!(%symbol, "no live bars: {e}");
            }
        }
        let index: HashMap<String, usize> = state
            .iter()
            .enumerate()
            .map(|(i, (s, _))| (s.clone(), i))
            .collect();
        let until = (cfg.live.duration_seconds > 0)
            .then(|| live_started + Duration::from_secs(cfg.live.duration_seconds));
        tracing::info!(
            symbols = index.len(),
            seconds = cfg.live.duration_seconds,
            "live phase"
        );
        loop {
            if stop.load(Ordering::Relaxed) {
                interrupted = true;
                break;
            }
            if until.is_some_and(|u| Instant::now() >= u) {
                break;
            }
            match events.recv_timeout(Duration::from_millis(100)) {
                Ok(Event::Bar { symbol, bar }) => {
                    let Some(&i) = index.get(&symbol) else {
                        continue;
                    };
                    let st = &mut state[i].1;
                    if st.bars.last().is_some_and(|last| bar.time <= last.time) {
                        continue;
                    }
                    st.bars.push(bar);
                    st.live_bars += 1;
                    if let (Some(file), Ok(e)) = (signals.as_mut(), strategy.evaluate(&st.bars)) {
                        file.row(&symbol, &e)?;
                    }
                }
                Ok(Event::Connection(status)) => tracing::info!(?status, "broker connection"),
                Ok(Event::Notice { code, message }) => tracing::info!(code, "notice: {message}"),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
        }
    }
    let live_elapsed = live_started.elapsed();

    // --- the bridge's round trip, measured on the live worker
    let mut round_trips = match sup.ping_round_trips(RTT_PINGS) {
        Ok(r) => r,
        Err(SupervisorError::Stopped) => Vec::new(),
        Err(e) => {
            tracing::warn!("round trip not measured: {e}");
            Vec::new()
        }
    };
    round_trips.sort();

    let market_time = state
        .iter()
        .filter_map(|(_, st)| st.bars.last().map(|b| b.time))
        .max()
        .unwrap_or(0);
    let symbols = state
        .into_iter()
        .map(|(symbol, st)| {
            let last = match &st.error {
                Some(e) => Err(format!("no data: {e}")),
                None => strategy
                    .evaluate_fresh(
                        &st.bars,
                        bar_seconds,
                        market_time,
                        cfg.strategy.stale_after_bars,
                    )
                    .map_err(|e: NoSignal| e.to_string()),
            };
            SymbolReport {
                symbol,
                history_bars: st.history_bars,
                live_bars: st.live_bars,
                last,
            }
        })
        .collect();
    Ok(Outcome {
        symbols,
        history_elapsed,
        live_elapsed,
        round_trips,
        supervisor: sup.stats(),
        signals_written: 0,
        interrupted,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied()
}

fn micros(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1} µs", d.as_secs_f64() * 1e6))
}

/// The summary table and counters, as printed at the end.
pub fn summary(o: &Outcome) -> String {
    let mut s = String::new();
    let line = |s: &mut String, cols: [&str; 7]| {
        s.push_str(&format!(
            "{:<8} {:>8} {:>6} {:>12} {:>12} {:>12}  {}\n",
            cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6]
        ));
    };
    line(
        &mut s,
        [
            "symbol",
            "history",
            "live",
            "last price",
            "fast SMA",
            "slow SMA",
            "signal",
        ],
    );
    for r in &o.symbols {
        let h = r.history_bars.to_string();
        let l = r.live_bars.to_string();
        match &r.last {
            Ok(e) => {
                let (p, f, sl, sig) = (
                    format!("{:.2}", e.price),
                    format!("{:.2}", e.fast),
                    format!("{:.2}", e.slow),
                    e.signal.to_string(),
                );
                line(&mut s, [&r.symbol, &h, &l, &p, &f, &sl, &sig]);
            }
            Err(why) => line(&mut s, [&r.symbol, &h, &l, "-", "-", "-", why]),
        }
    }
    let b = &o.supervisor.bridge;
    s.push_str(&format!(
        "\nhistory: {} symbols in {:.2} s; live phase {:.1} s{}\n",
        o.symbols.len(),
        o.history_elapsed.as_secs_f64(),
        o.live_elapsed.as_secs_f64(),
        if o.interrupted { " (interrupted)" } else { "" }
    ));
    s.push_str(&format!(
        "bridge round trip: p50 {}, p99 {} ({} pings)\n",
        micros(percentile(&o.round_trips, 0.50)),
        micros(percentile(&o.round_trips, 0.99)),
        o.round_trips.len()
    ));
    s.push_str(&format!(
        "bridge counters: to worker {} frames / {} bytes, to runner {} frames / {} bytes, \
         wakes {}, full {}, stray replies {}, dropped logs {}, dropped events {}\n",
        b.to_worker.frames,
        b.to_worker.bytes,
        b.to_runner.frames,
        b.to_runner.bytes,
        b.to_worker.wakes + b.to_runner.wakes,
        b.to_worker.full_events + b.to_runner.full_events,
        b.stray_replies,
        b.dropped_logs,
        b.dropped_events
    ));
    s.push_str(&format!(
        "worker restarts: {}; requests failed by a worker's death and retried: {}; signals written: {}\n",
        o.supervisor.restarts, o.supervisor.failed_requests, o.signals_written
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(iso_time(951_825_600), "2000-02-29T12:00:00Z");
    }

    #[test]
    fn percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&v, 0.5), Some(Duration::from_micros(51)));
        assert_eq!(percentile(&v, 0.99), Some(Duration::from_micros(99)));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
