//! `runner soak`: sustained requests and streamed bars through the bridge, every message
//! sequence-checked end to end, optionally with chaos (SIGKILL and SIGSTOP of the worker at
//! random moments). Reports counts, round trips per minute, memory over time and recoveries,
//! and fails on any loss, duplication or reordering outside a declared failure, or on memory
//! growth beyond [`SoakSettings::memory_bound_mb`].
//!
//! Four threads run side by side, one function each on `Soak`: `Soak::send_requests`,
//! `Soak::check_bars`, `Soak::sample_memory` and `Soak::inject_chaos`; the calling
//! thread only waits for the end. The bar rule is in `sequence`, the round-trip histogram in
//! `histogram`, the report and its verdict in `report`.
//!
//! Invariants: every request carries its sequence number and is counted exactly once, as
//! answered, answered wrongly or failed with a declared error; no fault is injected in the
//! last 5 s, so each one is seen through; every thread ends within a tick of the end or of
//! `stop`.

mod histogram;
mod report;
mod sequence;

pub use report::{json, text, SoakReport};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use bridge::protocol::{Event, Reply, Request, SubscribeRequest};
use parking_lot::Mutex;
use worker::random::XorShift;
use worker::signal::Signal;

use crate::supervisor::{Supervisor, SupervisorError};
use crate::worker_events::WorkerEvents;
use crate::worker_setup::WorkerSetup;
use histogram::Histogram;
use sequence::{BarCheck, BarSequences};

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakSettings {
    pub duration: Duration,
    /// Requests per second.
    pub rate: u64,
    /// Kill and stop the worker at random moments.
    pub chaos: bool,
    /// Symbols with real-time bars (one bar per symbol per simulated second).
    pub symbols: usize,
    /// Allowed growth of the runner's resident memory after the first 5 s, MiB.
    pub memory_bound_mb: u64,
}

/// Deadline of one request (a ping, or a subscription).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a replaced worker has to answer before the run fails.
const RECOVERY_LIMIT: Duration = Duration::from_secs(30);

/// One recovery from an injected fault.
#[derive(Debug, Clone)]
struct Recovery {
    at_s: f64,
    action: &'static str,
    recovered_ms: Option<u64>,
}

#[derive(Debug, Default)]
struct Counts {
    sent: AtomicU64,
    answered: AtomicU64,
    mismatched: AtomicU64,
    failed_declared: AtomicU64,
    bars: AtomicU64,
    bar_duplicates: AtomicU64,
    bar_reordered: AtomicU64,
    bar_gaps_declared: AtomicU64,
    bar_gaps_undeclared: AtomicU64,
    bar_overlaps_declared: AtomicU64,
}

/// A soak in progress: what its threads share.
struct Soak<'a> {
    settings: &'a SoakSettings,
    sup: &'a Supervisor,
    started: Instant,
    until: Instant,
    /// Set when the duration is over.
    done: AtomicBool,
    /// Set by Ctrl-C.
    stop: &'a AtomicBool,
    counts: Counts,
    minutes: Mutex<Vec<Histogram>>,
    memory: Mutex<Vec<(f64, u64, u64)>>,
    recoveries: Mutex<Vec<Recovery>>,
}

/// The soak's symbol of subscription `sub`.
fn soak_symbol(sub: u32) -> String {
    format!("SOAK{sub:03}")
}

/// Runs a soak; `stop` ends it early (Ctrl-C).
pub fn run(settings: &SoakSettings, setup: WorkerSetup, stop: &AtomicBool) -> Result<SoakReport> {
    let (sup, mut events) = Supervisor::start(setup).map_err(|e| anyhow::anyhow!("{e}"))?;
    for i in 0..settings.symbols {
        let sub = SubscribeRequest {
            symbol: soak_symbol(i as u32),
            id: i as u32,
            bar_seconds: 1,
        };
        let symbol = sub.symbol.clone();
        sup.subscribe(sub, REQUEST_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("subscribe {symbol}: {e}"))?;
    }
    let started = Instant::now();
    let soak = Soak {
        settings,
        sup: &sup,
        started,
        until: started + settings.duration,
        done: AtomicBool::new(false),
        stop,
        counts: Counts::default(),
        minutes: Mutex::new(Vec::new()),
        memory: Mutex::new(Vec::new()),
        recoveries: Mutex::new(Vec::new()),
    };
    std::thread::scope(|s| {
        s.spawn(|| soak.send_requests());
        s.spawn(|| soak.check_bars(&mut events));
        s.spawn(|| soak.sample_memory());
        if settings.chaos {
            s.spawn(|| soak.inject_chaos());
        }
        while Instant::now() < soak.until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        soak.done.store(true, Ordering::Relaxed);
    });
    let restarts = sup.stats().restarts;
    sup.shutdown();
    Ok(soak.report(restarts))
}

impl Soak<'_> {
    /// Whether the soak is over: its duration passed, or Ctrl-C.
    fn is_over(&self) -> bool {
        self.done.load(Ordering::Relaxed) || self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps until `until` or the end of the soak, looking every `tick`.
    fn sleep_until(&self, until: Instant, tick: Duration) {
        while Instant::now() < until && !self.is_over() {
            std::thread::sleep(tick);
        }
    }

    /// Requests, paced at the configured rate, each carrying its sequence number.
    fn send_requests(&self) {
        let period = Duration::from_secs_f64(1.0 / self.settings.rate.max(1) as f64);
        let counts = &self.counts;
        let mut next = Instant::now();
        let mut seq = 0u64;
        while !self.is_over() {
            let payload = seq.to_le_bytes().to_vec();
            counts.sent.fetch_add(1, Ordering::Relaxed);
            let t = Instant::now();
            match self.sup.request(Request::Ping { payload }, REQUEST_TIMEOUT) {
                Ok(Reply::Pong { payload }) if payload == seq.to_le_bytes() => {
                    counts.answered.fetch_add(1, Ordering::Relaxed);
                    self.record_round_trip(t.elapsed());
                }
                Ok(_) => {
                    counts.mismatched.fetch_add(1, Ordering::Relaxed);
                }
                Err(SupervisorError::Stopped) => return,
                Err(e) => {
                    counts.failed_declared.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(seq, "request failed: {e}");
                }
            }
            seq += 1;
            next += period;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else if now - next > Duration::from_secs(1) {
                next = now; // fell behind (a recovery): do not burst
            }
        }
    }

    /// Adds a round trip to the histogram of the current minute.
    fn record_round_trip(&self, rtt: Duration) {
        let minute = (self.started.elapsed().as_secs() / 60) as usize;
        let mut m = self.minutes.lock();
        if m.len() <= minute {
            m.resize(minute + 1, Histogram::default());
        }
        m[minute].record(rtt.as_nanos() as u64);
    }

    /// Streamed bars: each symbol's bars must advance by exactly one second, except across a
    /// worker restart.
    fn check_bars(&self, events: &mut WorkerEvents) {
        let counts = &self.counts;
        let mut sequences = BarSequences::default();
        while !self.is_over() {
            let Ok(event) = events.recv_timeout(Duration::from_millis(100)) else {
                continue;
            };
            let Event::Bar { sub, bar } = event else {
                continue;
            };
            counts.bars.fetch_add(1, Ordering::Relaxed);
            let restarts = self.sup.stats().restarts;
            match sequences.check(sub, bar.time, restarts) {
                BarCheck::InOrder => {}
                BarCheck::RepeatedAfterRestart => {
                    counts.bar_overlaps_declared.fetch_add(1, Ordering::Relaxed);
                }
                BarCheck::Duplicate { last } => {
                    counts.bar_duplicates.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(sub, symbol = %soak_symbol(sub), time = last, "bar duplicated");
                }
                BarCheck::Reordered { last } => {
                    counts.bar_reordered.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(sub, symbol = %soak_symbol(sub), last, got = bar.time, "bar out of order");
                }
                BarCheck::GapAfterRestart => {
                    counts.bar_gaps_declared.fetch_add(1, Ordering::Relaxed);
                }
                BarCheck::Gap { from } => {
                    counts.bar_gaps_undeclared.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(sub, symbol = %soak_symbol(sub), from, to = bar.time, "bars lost");
                }
            }
        }
    }

    /// The resident memory of both processes, every second.
    fn sample_memory(&self) {
        while !self.is_over() {
            let worker = self.sup.stats().worker_pid.map(rss_kib).unwrap_or(0);
            self.memory.lock().push((
                self.started.elapsed().as_secs_f64(),
                rss_kib(std::process::id()),
                worker,
            ));
            self.sleep_until(
                Instant::now() + Duration::from_secs(1),
                Duration::from_millis(50),
            );
        }
    }

    /// Chaos: SIGKILL or SIGSTOP the worker every 3 to 8 seconds, and time each recovery
    /// (until a new worker answers).
    fn inject_chaos(&self) {
        let mut rng = XorShift::new(0x5EED ^ u64::from(std::process::id()));
        while !self.is_over() {
            let wait = Duration::from_millis(3000 + rng.below(5000));
            self.sleep_until(Instant::now() + wait, Duration::from_millis(20));
            // No fault in the last 5 s: each one must be seen through.
            if self.is_over()
                || self.until.saturating_duration_since(Instant::now()) < Duration::from_secs(5)
            {
                return;
            }
            let Some(pid) = self.sup.stats().worker_pid else {
                continue;
            };
            let (action, signal) = if rng.below(2) == 0 {
                ("kill", Signal::Kill)
            } else {
                ("stop", Signal::Stop)
            };
            let at = Instant::now();
            let _ = worker::signal::send(pid, signal);
            tracing::warn!(pid, action, "chaos");
            let recovered_ms = self.recovery_from(pid, at);
            self.recoveries.lock().push(Recovery {
                at_s: at.duration_since(self.started).as_secs_f64(),
                action,
                recovered_ms,
            });
        }
    }

    /// Milliseconds from `at` until a worker other than `pid` answers a ping; `None` if none
    /// does within [`RECOVERY_LIMIT`] (or the soak ends first).
    fn recovery_from(&self, pid: u32, at: Instant) -> Option<u64> {
        while at.elapsed() < RECOVERY_LIMIT && !self.is_over() {
            let replaced = self.sup.stats().worker_pid.is_some_and(|p| p != pid);
            let ping = Request::Ping {
                payload: Vec::new(),
            };
            if replaced && self.sup.request(ping, Duration::from_secs(5)).is_ok() {
                return Some(at.elapsed().as_millis() as u64);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// The report, once every thread has ended.
    fn report(self, restarts: u32) -> SoakReport {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let counts = &self.counts;
        let mut report = SoakReport {
            seconds: self.started.elapsed().as_secs_f64(),
            sent: c(&counts.sent),
            answered: c(&counts.answered),
            failed_declared: c(&counts.failed_declared),
            mismatched: c(&counts.mismatched),
            bars: c(&counts.bars),
            bar_duplicates: c(&counts.bar_duplicates),
            bar_reordered: c(&counts.bar_reordered),
            bar_gaps_declared: c(&counts.bar_gaps_declared),
            bar_gaps_undeclared: c(&counts.bar_gaps_undeclared),
            bar_overlaps_declared: c(&counts.bar_overlaps_declared),
            restarts,
            minutes: self
                .minutes
                .into_inner()
                .into_iter()
                .map(|m| {
                    (
                        m.count() as usize,
                        m.quantile_us(0.5),
                        m.quantile_us(0.99),
                        m.max_us(),
                    )
                })
                .collect(),
            memory: self.memory.into_inner(),
            chaos: self
                .recoveries
                .into_inner()
                .into_iter()
                .map(|r| (r.at_s, r.action, r.recovered_ms))
                .collect(),
            failures: Vec::new(),
        };
        report.failures = report::verdict(&report, self.settings);
        report
    }
}

/// Resident memory of process `pid`, KiB (0 if it cannot be read).
fn rss_kib(pid: u32) -> u64 {
    bridge::platform::resident_bytes(pid).map_or(0, |b| b / 1024)
}
