//! `runner soak` ([`command`]): sustained requests and streamed bars through the bridge, every message
//! sequence-checked end to end, optionally with chaos (SIGKILL and SIGSTOP of the worker at
//! random moments). Reports counts, round trips per minute, memory over time and recoveries,
//! and fails on any loss, duplication or reordering outside a declared failure, or on memory
//! growth beyond [`SoakSettings::memory_bound_mb`].
//!
//! Four threads run side by side, one function each on `Soak`: `Soak::send_requests`,
//! `Soak::check_bars`, `Soak::sample_memory` and `Soak::inject_chaos`, and with `--orders` a
//! fifth, `Soak::place_orders`; the calling thread only waits for the end. With orders, half
//! of the chaos kills aim at an order in flight (after the broker took it, before its
//! answer: the simulated broker holds each answer back a little), and at the end the
//! broker's orders are counted against the ones sent: any order twice at the broker, or
//! acknowledged and not there, fails the soak. The bar rule is in `sequence`, the round-trip histogram in
//! `histogram`, the report and its verdict in `report`, what the threads share in `state`.
//! With `--hub` the soak is one client of a hub it starts, beside another, and the chaos aims
//! at the hub's worker, the hub and the other client (`hub`).
//!
//! Invariants: every request carries its sequence number and is counted exactly once, as
//! answered, answered wrongly or failed with a declared error; no fault is injected in the
//! last 5 s, so each one is seen through; every thread ends within a tick of the end or of
//! `stop`.

mod histogram;
mod hub;
mod report;
mod sequence;
mod settings;
mod state;

pub use report::{json, text, SoakReport};
pub use settings::SoakSettings;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use base::random::XorShift;
use base::signal::ProcessSignal;
use bridge::protocol::{
    Event, FeedState, OrderRequest, OrderType, Reply, Request, Side, SubscribeRequest, TimeInForce,
};
use parking_lot::Mutex;

use crate::cli::SoakArgs;
use crate::config::{BackendKind, Config, Overrides};
use crate::launch::{fail, init_logging, one_line, with_workers, EXIT_CONFIG, EXIT_FAILED};
use crate::supervisor::{Supervisor, SupervisorError};
use crate::worker_events::WorkerEvents;
use crate::worker_setup::WorkerSetup;
use histogram::Minutes;
use sequence::{BarCheck, BarSequences};
pub use state::ORDER_ACK_DELAY_MS;
use state::{soak_symbol, Counts, Recovery, Soak, RECOVERY_LIMIT, REQUEST_TIMEOUT};

/// `runner soak`: the soak with the settings of `args`, its report (text or JSON), and
/// whether it passed: exit 0, or [`EXIT_FAILED`] (a configuration problem: [`EXIT_CONFIG`]).
pub fn command(args: &SoakArgs) -> ExitCode {
    let loaded = Config::load(
        args.config.as_deref(),
        |k| std::env::var(k).ok(),
        &Overrides::default(),
    );
    let mut cfg = match loaded {
        Ok(c) => c,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    // Bars every simulated second, 60 per real second per symbol; hangs found fast.
    cfg.sim.speed = 60.0;
    cfg.bridge.hang_timeout_ms = cfg.bridge.hang_timeout_ms.min(1000);
    cfg.supervisor.max_restarts = u32::MAX;
    cfg.supervisor.max_backoff_ms = cfg.supervisor.max_backoff_ms.min(1000);
    init_logging();
    let settings = SoakSettings {
        duration: Duration::from_secs(args.duration),
        rate: args.rate,
        chaos: args.chaos,
        symbols: args.symbols.max(1),
        memory_bound_mb: args.memory_bound,
        order_rate: if args.orders {
            args.order_rate.max(1)
        } else {
            0
        },
    };
    if args.orders && cfg.backend != BackendKind::Sim {
        return fail(
            EXIT_CONFIG,
            "soak --orders runs on the simulated market only",
        );
    }
    let faults = worker::SimFaults {
        // The window between the broker taking an order and its answer, which the chaos
        // aims at.
        order_ack_delay_ms: if args.orders { ORDER_ACK_DELAY_MS } else { 0 },
        ..worker::SimFaults::default()
    };
    let hub_faults = format!("order_ack_delay_ms={}", faults.order_ack_delay_ms);
    let parties = match args.hub {
        true => match hub::HubParties::start(&cfg, &hub_faults) {
            Ok(p) => Some(p),
            Err(e) => return fail(EXIT_FAILED, format!("{e:#}")),
        },
        false => None,
    };
    let report = with_workers(&mut cfg, faults, |_, mut setup, stop| {
        let through = parties.as_ref().map(|p| {
            setup.hub = Some(p.target());
            (p, hub_faults.as_str())
        });
        run(&settings, setup, stop, through)
    });
    if let Some(p) = &parties {
        let failed = !matches!(&report, Ok(r) if r.failures.is_empty());
        p.stop(failed);
    }
    match report {
        Ok(report) => {
            if args.json {
                println!("{}", json(&report));
            } else {
                print!("{}", text(&report));
            }
            if report.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FAILED)
            }
        }
        Err(e) => fail(EXIT_FAILED, one_line(&e)),
    }
}

/// Runs a soak; `stop` ends it early (Ctrl-C). `hub`: the soak is a client of this hub
/// (its worker's faults as text), whose parties the chaos aims at.
fn run(
    settings: &SoakSettings,
    setup: WorkerSetup,
    stop: &AtomicBool,
    hub: Option<(&hub::HubParties, &str)>,
) -> Result<SoakReport> {
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
        minutes: Mutex::new(Minutes::default()),
        memory: Mutex::new(Vec::new()),
        recoveries: Mutex::new(Vec::new()),
        orders: Mutex::new(Vec::new()),
        order_in_flight: AtomicBool::new(false),
    };
    std::thread::scope(|s| {
        s.spawn(|| soak.send_requests());
        if settings.order_rate > 0 {
            s.spawn(|| soak.place_orders());
        }
        s.spawn(|| soak.check_bars(&mut events));
        s.spawn(|| soak.sample_memory());
        if settings.chaos {
            match hub {
                Some((parties, faults)) => s.spawn(|| soak.inject_hub_chaos(parties, faults)),
                None => s.spawn(|| soak.inject_chaos()),
            };
        }
        while Instant::now() < soak.until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        soak.done.store(true, Ordering::Relaxed);
    });
    let at_broker = if settings.order_rate > 0 {
        Some(soak.orders_at_broker())
    } else {
        None
    };
    let restarts = sup.stats().restarts;
    sup.shutdown();
    Ok(soak.report(restarts, at_broker))
}

impl Soak<'_> {
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

    /// Orders at the configured rate, one share each, alternately bought and sold, each with a
    /// reference of its own kept on every retry.
    fn place_orders(&self) {
        let period = Duration::from_secs_f64(1.0 / self.settings.order_rate.max(1) as f64);
        let counts = &self.counts;
        let mut refs = crate::trader::References::new();
        let mut next = Instant::now();
        let mut n = 0u64;
        while !self.is_over() {
            let order = OrderRequest {
                order_ref: refs.next_ref(),
                symbol: soak_symbol((n % self.settings.symbols.max(1) as u64) as u32),
                side: if n.is_multiple_of(2) {
                    Side::Buy
                } else {
                    Side::Sell
                },
                quantity: 1.0,
                order_type: OrderType::Market,
                tif: TimeInForce::Day,
            };
            counts.orders_sent.fetch_add(1, Ordering::Relaxed);
            self.order_in_flight.store(true, Ordering::Release);
            let mut acknowledged = false;
            // A placement whose fate is unknown (timed out) goes again with its reference.
            for _ in 0..3 {
                match self
                    .sup
                    .request(Request::PlaceOrder(order.clone()), REQUEST_TIMEOUT)
                {
                    Ok(Reply::Order(_)) => {
                        acknowledged = true;
                        break;
                    }
                    Err(SupervisorError::Request(bridge::RequestError::Timeout)) => continue,
                    Err(SupervisorError::Stopped) => break,
                    other => {
                        tracing::warn!(order_ref = %order.order_ref, "order failed: {other:?}");
                        break;
                    }
                }
            }
            self.order_in_flight.store(false, Ordering::Release);
            if acknowledged {
                counts.orders_acknowledged.fetch_add(1, Ordering::Relaxed);
            } else {
                counts.orders_failed.fetch_add(1, Ordering::Relaxed);
            }
            self.orders.lock().push((order.order_ref, acknowledged));
            n += 1;
            next += period;
            let now = Instant::now();
            if next > now {
                self.sleep_until(next, Duration::from_millis(20));
            } else if now - next > Duration::from_secs(1) {
                next = now;
            }
        }
    }

    /// How many of the orders sent the broker holds, how many times each: (at the broker,
    /// duplicated, lost). An order folded out of the broker's book (final and settled long
    /// ago) is held by its reference among the folded ones; the two lists are asked one
    /// after the other, so an order folded between them may be in both (the broker never
    /// places a folded reference): duplicates are counted among the orders listed. Asked of
    /// the current worker, retried while workers are replaced.
    fn orders_at_broker(&self) -> (u64, u64, u64) {
        let listed = self.list_at_broker(Request::Orders, |r| match r {
            Reply::Orders(list) => Ok(list),
            other => Err(other),
        });
        let folded = self.list_at_broker(Request::FoldedOrders, |r| match r {
            Reply::Folded(runs) => Ok(runs),
            other => Err(other),
        });
        let mut held: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
        for o in &listed {
            *held.entry(o.request.order_ref.as_str()).or_default() += 1;
        }
        let sent = self.orders.lock();
        let (mut at_broker, mut duplicated, mut lost) = (0, 0, 0);
        for (order_ref, acknowledged) in sent.iter() {
            let listed = held.get(order_ref.as_str()).copied().unwrap_or(0);
            let folded = folded.iter().filter(|r| r.contains(order_ref)).count() as u64;
            match (listed, folded) {
                (0, 0) if *acknowledged => {
                    lost += 1;
                    tracing::error!(%order_ref, "acknowledged order not at the broker");
                }
                (0, 0) => {}
                (n, _) => {
                    at_broker += 1;
                    duplicated += n.saturating_sub(1);
                }
            }
        }
        (at_broker, duplicated, lost)
    }

    /// The list the broker answers `request` with (`take` finds it in the reply), retried
    /// while workers are replaced; empty if it cannot be had.
    fn list_at_broker<T>(
        &self,
        request: Request,
        take: impl Fn(Reply) -> Result<Vec<T>, Reply>,
    ) -> Vec<T> {
        let deadline = Instant::now() + RECOVERY_LIMIT;
        loop {
            let answer = self.sup.request(request.clone(), REQUEST_TIMEOUT);
            let failure = match answer.map(&take) {
                Ok(Ok(list)) => return list,
                Ok(Err(other)) => format!("{other:?}"),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                tracing::error!("the broker's {request:?} could not be listed: {failure}");
                return Vec::new();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Adds a round trip to the histogram of the current minute.
    fn record_round_trip(&self, rtt: Duration) {
        let minute = (self.started.elapsed().as_secs() / 60) as usize;
        self.minutes.lock().record(minute, rtt.as_nanos() as u64);
    }

    /// Streamed bars: each symbol's bars must advance by exactly one second, except across a
    /// worker restart.
    fn check_bars(&self, events: &mut WorkerEvents) {
        let counts = &self.counts;
        let mut sequences = BarSequences::default();
        // Streams made again on the word of a hub (its worker replaced): a gap is declared as
        // by a restart of our own.
        let mut remade = 0u32;
        while !self.is_over() {
            let Ok(event) = events.recv_timeout(Duration::from_millis(100)) else {
                continue;
            };
            let (sub, bar) = match event {
                Event::Bar { sub, bar } => (sub, bar),
                Event::Feed {
                    state: FeedState::Resubscribed { .. },
                    ..
                } => {
                    remade = remade.wrapping_add(1);
                    continue;
                }
                _ => continue,
            };
            counts.bars.fetch_add(1, Ordering::Relaxed);
            // The worker (or hub connection) each bar came through: a bar a replaced one
            // delivered late is told apart from the same bar of its successor.
            let restarts = (events.source() as u32).wrapping_add(remade);
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
            let (action, signal) = match rng.below(if self.settings.order_rate > 0 { 4 } else { 2 })
            {
                0 => ("kill", ProcessSignal::Kill),
                1 => ("stop", ProcessSignal::Stop),
                _ => {
                    // Into an order's window: taken by the broker, not yet answered.
                    let waited = Instant::now();
                    while !self.order_in_flight.load(Ordering::Acquire)
                        && waited.elapsed() < Duration::from_secs(2)
                        && !self.is_over()
                    {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    std::thread::sleep(Duration::from_millis(ORDER_ACK_DELAY_MS / 4));
                    ("kill-mid-order", ProcessSignal::Kill)
                }
            };
            let Some(pid) = self.sup.stats().worker_pid else {
                continue;
            };
            let at = Instant::now();
            let _ = base::signal::send(pid, signal);
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
    fn report(self, restarts: u32, at_broker: Option<(u64, u64, u64)>) -> SoakReport {
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
            minutes: self.minutes.into_inner().rows(),
            memory: self.memory.into_inner(),
            chaos: self
                .recoveries
                .into_inner()
                .into_iter()
                .map(|r| (r.at_s, r.action, r.recovered_ms))
                .collect(),
            orders: at_broker.map(|(at_broker, duplicated, lost)| report::OrderCounts {
                sent: c(&counts.orders_sent),
                acknowledged: c(&counts.orders_acknowledged),
                failed: c(&counts.orders_failed),
                at_broker,
                duplicated,
                lost,
            }),
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
