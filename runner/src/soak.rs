//! `runner soak`: sustained requests and streamed bars through the bridge, every message
//! sequence-checked end to end, optionally with chaos (SIGKILL and SIGSTOP of the worker at
//! random moments). Reports counts, round trips per minute, memory over time and recoveries,
//! and fails on any loss, duplication or reordering outside a declared failure, or on memory
//! growth beyond [`SoakOptions::memory_bound_mb`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use bridge::protocol::{Event, Reply, Request, SubscribeRequest};
use parking_lot::Mutex;

use crate::supervisor::{Launch, Supervisor, SupervisorError};

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakOptions {
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

/// Round trips of one minute: a log-linear histogram (64 steps per power of two, under 1.6 %
/// error), so a long soak keeps constant memory.
#[derive(Debug, Clone)]
struct Minute {
    buckets: Vec<u64>,
    count: u64,
    max_ns: u64,
}

impl Default for Minute {
    fn default() -> Self {
        Minute {
            buckets: vec![0; 64 * 64],
            count: 0,
            max_ns: 0,
        }
    }
}

impl Minute {
    fn bucket(ns: u64) -> usize {
        if ns < 64 {
            return ns as usize;
        }
        let p = 63 - u64::from(ns.leading_zeros()); // floor(log2), at least 6
        ((p - 5) * 64 + ((ns >> (p - 6)) & 63)) as usize
    }

    /// The lowest value of a bucket.
    fn value(bucket: usize) -> u64 {
        let (p, sub) = ((bucket / 64) as u64, (bucket % 64) as u64);
        if p == 0 {
            sub
        } else {
            (64 + sub) << (p - 1)
        }
    }

    fn record(&mut self, ns: u64) {
        let i = Self::bucket(ns).min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.count += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    fn quantile_us(&self, q: f64) -> f64 {
        let rank = (self.count as f64 * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::value(i) as f64 / 1000.0;
            }
        }
        self.max_ns as f64 / 1000.0
    }
}

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

/// The outcome.
#[derive(Debug, Clone)]
pub struct SoakReport {
    pub seconds: f64,
    pub sent: u64,
    pub answered: u64,
    /// Requests that failed with an error (a declared failure), not silently.
    pub failed_declared: u64,
    /// Replies that did not carry their request's sequence number.
    pub mismatched: u64,
    pub bars: u64,
    pub bar_duplicates: u64,
    pub bar_reordered: u64,
    /// Gaps in a symbol's bars across a worker restart (declared).
    pub bar_gaps_declared: u64,
    /// Gaps with no restart to explain them (loss).
    pub bar_gaps_undeclared: u64,
    /// Bars repeated by a replacement worker right after a restart (declared, dropped).
    pub bar_overlaps_declared: u64,
    pub restarts: u32,
    /// Per minute: (count, p50 µs, p99 µs, max µs).
    pub minutes: Vec<(usize, f64, f64, f64)>,
    /// (seconds, runner RSS KiB, worker RSS KiB).
    pub memory: Vec<(f64, u64, u64)>,
    pub chaos: Vec<(f64, &'static str, Option<u64>)>,
    /// Why the run failed; empty if it passed.
    pub failures: Vec<String>,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Runs a soak; `stop` ends it early (Ctrl-C).
pub fn run(opts: &SoakOptions, launch: Launch, stop: &AtomicBool) -> Result<SoakReport> {
    let (sup, events) = Supervisor::start(launch).map_err(|e| anyhow::anyhow!("{e}"))?;
    let symbols: Vec<String> = (0..opts.symbols).map(|i| format!("SOAK{i:03}")).collect();
    for s in &symbols {
        let sub = SubscribeRequest {
            symbol: s.clone(),
            bar_seconds: 1,
        };
        sup.subscribe(sub, Duration::from_secs(10))
            .map_err(|e| anyhow::anyhow!("subscribe {s}: {e}"))?;
    }
    let started = Instant::now();
    let until = started + opts.duration;
    let done = AtomicBool::new(false);
    let counts = Counts::default();
    let minutes: Mutex<Vec<Minute>> = Mutex::new(Vec::new());
    let memory: Mutex<Vec<(f64, u64, u64)>> = Mutex::new(Vec::new());
    let chaos: Mutex<Vec<Recovery>> = Mutex::new(Vec::new());
    let finished = || done.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed);

    std::thread::scope(|s| {
        // Requests, paced, each carrying its sequence number.
        s.spawn(|| {
            let period = Duration::from_secs_f64(1.0 / opts.rate.max(1) as f64);
            let mut next = Instant::now();
            let mut seq = 0u64;
            while !finished() {
                let payload = seq.to_le_bytes().to_vec();
                counts.sent.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                match sup.request(Request::Ping { payload }, Duration::from_secs(10)) {
                    Ok(Reply::Pong { payload }) if payload == seq.to_le_bytes() => {
                        counts.answered.fetch_add(1, Ordering::Relaxed);
                        let ns = t.elapsed().as_nanos() as u64;
                        let minute = (started.elapsed().as_secs() / 60) as usize;
                        let mut m = minutes.lock();
                        if m.len() <= minute {
                            m.resize(minute + 1, Minute::default());
                        }
                        m[minute].record(ns);
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
        });
        // Streamed bars: each symbol's bars must advance by exactly one second, except across
        // a worker restart.
        s.spawn(|| {
            let mut last: HashMap<String, (i64, u32)> = HashMap::new();
            while !finished() {
                let Ok(event) = events.recv_timeout(Duration::from_millis(100)) else {
                    continue;
                };
                let Event::Bar { symbol, bar } = event else {
                    continue;
                };
                counts.bars.fetch_add(1, Ordering::Relaxed);
                let restarts = sup.stats().restarts;
                if let Some((t, seen_restarts)) = last.get(&symbol).copied() {
                    if bar.time <= t && restarts != seen_restarts {
                        // A new worker resubscribed and repeats the bar in progress.
                        counts.bar_overlaps_declared.fetch_add(1, Ordering::Relaxed);
                        continue;
                    } else if bar.time == t {
                        counts.bar_duplicates.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(%symbol, time = t, "bar duplicated");
                        continue;
                    } else if bar.time < t {
                        counts.bar_reordered.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(%symbol, last = t, got = bar.time, "bar out of order");
                        continue;
                    } else if bar.time > t + 1 {
                        if restarts != seen_restarts {
                            counts.bar_gaps_declared.fetch_add(1, Ordering::Relaxed);
                        } else {
                            counts.bar_gaps_undeclared.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(%symbol, from = t, to = bar.time, "bars lost");
                        }
                    }
                }
                last.insert(symbol, (bar.time, restarts));
            }
        });
        // Memory of both processes, every second.
        s.spawn(|| {
            while !finished() {
                let worker = sup.stats().worker_pid.map(rss_kib).unwrap_or(0);
                memory.lock().push((
                    started.elapsed().as_secs_f64(),
                    rss_kib(std::process::id()),
                    worker,
                ));
                let next = Instant::now() + Duration::from_secs(1);
                while Instant::now() < next && !finished() {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
        // Chaos: SIGKILL or SIGSTOP the worker every 3 to 8 seconds.
        if opts.chaos {
            s.spawn(|| {
                let mut rng = Rng(0x5EED ^ u64::from(std::process::id()));
                while !finished() {
                    let wait = Duration::from_millis(3000 + rng.below(5000));
                    let next = Instant::now() + wait;
                    while Instant::now() < next && !finished() {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    // No fault in the last 5 s: each one must be seen through.
                    if finished()
                        || until.saturating_duration_since(Instant::now()) < Duration::from_secs(5)
                    {
                        return;
                    }
                    let Some(pid) = sup.stats().worker_pid else {
                        continue;
                    };
                    let action = if rng.below(2) == 0 { "kill" } else { "stop" };
                    let signal = if action == "kill" { "-KILL" } else { "-STOP" };
                    let at = Instant::now();
                    let _ = std::process::Command::new("kill")
                        .args([signal, &pid.to_string()])
                        .status();
                    tracing::warn!(pid, action, "chaos");
                    // Recovered when a new worker answers.
                    let mut recovered_ms = None;
                    while at.elapsed() < Duration::from_secs(30) && !finished() {
                        if sup.stats().worker_pid.is_some_and(|p| p != pid)
                            && sup
                                .request(
                                    Request::Ping {
                                        payload: Vec::new(),
                                    },
                                    Duration::from_secs(5),
                                )
                                .is_ok()
                        {
                            recovered_ms = Some(at.elapsed().as_millis() as u64);
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    chaos.lock().push(Recovery {
                        at_s: at.duration_since(started).as_secs_f64(),
                        action,
                        recovered_ms,
                    });
                }
            });
        }
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        done.store(true, Ordering::Relaxed);
    });
    let restarts = sup.stats().restarts;
    sup.shutdown();

    let memory = memory.into_inner();
    let minutes = minutes
        .into_inner()
        .into_iter()
        .map(|m| {
            (
                m.count as usize,
                m.quantile_us(0.5),
                m.quantile_us(0.99),
                m.max_ns as f64 / 1000.0,
            )
        })
        .collect();
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut report = SoakReport {
        seconds: started.elapsed().as_secs_f64(),
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
        minutes,
        chaos: chaos
            .into_inner()
            .into_iter()
            .map(|r| (r.at_s, r.action, r.recovered_ms))
            .collect(),
        memory,
        failures: Vec::new(),
    };
    report.failures = verdict(&report, opts);
    Ok(report)
}

fn verdict(r: &SoakReport, opts: &SoakOptions) -> Vec<String> {
    let mut f = Vec::new();
    if r.sent != r.answered + r.failed_declared + r.mismatched {
        f.push(format!(
            "{} requests neither answered nor failed",
            r.sent - r.answered - r.failed_declared - r.mismatched
        ));
    }
    if r.mismatched > 0 {
        f.push(format!(
            "{} replies with the wrong sequence number",
            r.mismatched
        ));
    }
    if !opts.chaos && r.failed_declared > 0 {
        f.push(format!(
            "{} requests failed without any fault injected",
            r.failed_declared
        ));
    }
    if r.bar_duplicates > 0 || r.bar_reordered > 0 || r.bar_gaps_undeclared > 0 {
        f.push(format!(
            "bars: {} duplicated, {} reordered, {} gaps without a restart",
            r.bar_duplicates, r.bar_reordered, r.bar_gaps_undeclared
        ));
    }
    if r.answered == 0 || r.bars == 0 {
        f.push("no traffic went through".into());
    }
    if r.chaos.iter().any(|c| c.2.is_none()) {
        f.push("a worker was not replaced within 30 s".into());
    }
    let base = r.memory.iter().find(|m| m.0 >= 5.0).or(r.memory.first());
    if let (Some(base), Some(end)) = (base, r.memory.last()) {
        let growth_kib = end.1.saturating_sub(base.1);
        if growth_kib > opts.memory_bound_mb * 1024 {
            f.push(format!(
                "runner memory grew by {} MiB (bound {} MiB)",
                growth_kib / 1024,
                opts.memory_bound_mb
            ));
        }
    }
    f
}

/// The report as one JSON object.
pub fn json(r: &SoakReport) -> String {
    let mut s = String::from("{");
    let _ = write!(
        s,
        "\"seconds\": {:.1}, \"sent\": {}, \"answered\": {}, \"failed_declared\": {}, \
         \"mismatched\": {}, \"lost\": {}, \"bars\": {}, \"bar_duplicates\": {}, \
         \"bar_reordered\": {}, \"bar_gaps_declared\": {}, \"bar_gaps_undeclared\": {}, \
         \"bar_overlaps_declared\": {}, \"restarts\": {}, ",
        r.seconds,
        r.sent,
        r.answered,
        r.failed_declared,
        r.mismatched,
        r.sent - r.answered - r.failed_declared - r.mismatched,
        r.bars,
        r.bar_duplicates,
        r.bar_reordered,
        r.bar_gaps_declared,
        r.bar_gaps_undeclared,
        r.bar_overlaps_declared,
        r.restarts
    );
    let minutes: Vec<String> = r
        .minutes
        .iter()
        .enumerate()
        .map(|(i, (n, p50, p99, max))| {
            format!(
                "{{\"minute\": {i}, \"count\": {n}, \"p50_us\": {p50:.1}, \"p99_us\": {p99:.1}, \"max_us\": {max:.1}}}"
            )
        })
        .collect();
    let _ = write!(s, "\"rtt_per_minute\": [{}], ", minutes.join(", "));
    let memory: Vec<String> = r
        .memory
        .iter()
        .map(|(t, a, b)| format!("[{t:.0}, {a}, {b}]"))
        .collect();
    let _ = write!(
        s,
        "\"memory_kib\": {{\"columns\": [\"seconds\", \"runner\", \"worker\"], \"samples\": [{}]}}, ",
        memory.join(", ")
    );
    let chaos: Vec<String> = r
        .chaos
        .iter()
        .map(|(t, a, ms)| {
            format!(
                "{{\"at_s\": {t:.1}, \"action\": \"{a}\", \"recovered_ms\": {}}}",
                ms.map_or("null".to_string(), |m| m.to_string())
            )
        })
        .collect();
    let _ = write!(s, "\"chaos\": [{}], ", chaos.join(", "));
    let failures: Vec<String> = r
        .failures
        .iter()
        .map(|f| format!("\"{}\"", f.replace('"', "'")))
        .collect();
    let _ = write!(
        s,
        "\"passed\": {}, \"failures\": [{}]}}",
        r.failures.is_empty(),
        failures.join(", ")
    );
    s
}

/// The report for people.
pub fn text(r: &SoakReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "soak: {:.0} s; requests sent {}, answered {}, failed with a declared error {}, \
         wrong reply {}, lost {}",
        r.seconds,
        r.sent,
        r.answered,
        r.failed_declared,
        r.mismatched,
        r.sent - r.answered - r.failed_declared - r.mismatched
    );
    let _ = writeln!(
        s,
        "bars: {} received, {} duplicated, {} reordered, {} lost; across restarts: {} gaps, \
         {} repeated bars dropped",
        r.bars,
        r.bar_duplicates,
        r.bar_reordered,
        r.bar_gaps_undeclared,
        r.bar_gaps_declared,
        r.bar_overlaps_declared
    );
    for (i, (n, p50, p99, max)) in r.minutes.iter().enumerate() {
        let _ = writeln!(
            s,
            "minute {i}: {n} round trips, p50 {p50:.1} µs, p99 {p99:.1} µs, max {max:.1} µs"
        );
    }
    let recoveries: Vec<String> = r
        .chaos
        .iter()
        .map(|(t, a, ms)| {
            format!(
                "{a}@{t:.1}s→{}",
                ms.map_or("never".to_string(), |m| format!("{m} ms"))
            )
        })
        .collect();
    let _ = writeln!(
        s,
        "worker restarts: {}; chaos: {}",
        r.restarts,
        if recoveries.is_empty() {
            "none".to_string()
        } else {
            recoveries.join(", ")
        }
    );
    if let (Some(first), Some(last)) = (r.memory.first(), r.memory.last()) {
        let _ = writeln!(
            s,
            "memory (RSS): runner {} → {} KiB; worker {} → {} KiB",
            first.1, last.1, first.2, last.2
        );
    }
    let _ = writeln!(
        s,
        "{}",
        if r.failures.is_empty() {
            "PASSED".to_string()
        } else {
            format!("FAILED: {}", r.failures.join("; "))
        }
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_two_percent() {
        let mut m = Minute::default();
        for ns in 1..=100_000u64 {
            m.record(ns * 10);
        }
        let p50 = m.quantile_us(0.5);
        let p99 = m.quantile_us(0.99);
        assert!((p50 - 500.0).abs() / 500.0 < 0.02, "{p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.02, "{p99}");
        assert_eq!(m.max_ns, 1_000_000);
        for ns in [0u64, 1, 63, 64, 65, 1000, 1 << 40] {
            assert!(Minute::value(Minute::bucket(ns)) <= ns, "{ns}");
        }
    }
}
