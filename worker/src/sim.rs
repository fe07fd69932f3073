//! The simulated market: deterministic price paths, any bar size, a clock that can run faster
//! than real time, and injectable faults. Needs nothing installed.
//!
//! The log-price of a symbol at second `t` is a sum of smooth value-noise octaves with periods
//! from one minute to about two years, each with an amplitude growing with the square root of
//! its period (as a random walk's range does). It is a pure function of (seed, symbol, t), so
//! any range and any bar size agree with each other, and the same seed gives the same market.
//!
//! Faults ([`SimFaults`](crate::options::SimFaults)) are injected here and nowhere else: a late
//! or missing handshake, replies held back, a crash or hang after some history batches (first
//! worker only), symbols without data, a crash right after an order was taken (first worker
//! only), acknowledgements of orders held back.
//!
//! Orders go to the simulated broker ([`broker`]), whose book outlives the worker.

pub mod broker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bridge::protocol::{
    AccountSummary, Bar, ErrorKind, Event, Fill, HistoryRequest, OrderChange, OrderReport,
    OrderRequest, Position, RemoteError, SubscribeRequest,
};
use parking_lot::{Condvar, Mutex};

use crate::backend::{check_symbol, emit_in_batches, error, Backend, Cancel, EventSink};
use crate::options::SimOptions;
use crate::random::mix;
use crate::signal::Signal;

/// Most bars one request may ask for.
pub const MAX_BARS: u64 = 5_000_000;
/// The simulated account, unless configured otherwise.
pub const ACCOUNT: &str = "DU0000001";

const OCTAVES: u32 = 12;

/// Uniform in [-1, 1).
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

fn symbol_seed(seed: u64, symbol: &str) -> u64 {
    symbol.bytes().fold(mix(seed), |h, b| mix(h ^ u64::from(b)))
}

/// Deterministic prices of one symbol.
#[derive(Debug, Clone, Copy)]
pub struct PricePath {
    seed: u64,
    base: f64,
}

impl PricePath {
    pub fn new(seed: u64, symbol: &str) -> Self {
        let s = symbol_seed(seed, symbol);
        // Base price between 20 and 500.
        let base = 20.0 + (unit(mix(s)) + 1.0) * 240.0;
        PricePath { seed: s, base }
    }

    /// Price at Unix second `t`; always finite and positive.
    pub fn price(&self, t: i64) -> f64 {
        let mut log = 0.0;
        let mut period = 60.0f64;
        for k in 0..OCTAVES {
            let x = t as f64 / period;
            let i = x.floor();
            let f = x - i;
            let key = self.seed ^ u64::from(k).wrapping_mul(0xA24B_AED4_963E_E407);
            let a = unit(mix(key ^ (i as i64 as u64)));
            let b = unit(mix(key ^ ((i as i64 + 1) as u64)));
            let s = f * f * (3.0 - 2.0 * f);
            log += (a + (b - a) * s) * (0.0003 * period.sqrt()).min(0.12);
            period *= 3.0;
        }
        self.base * log.exp()
    }

    /// The bar starting at `start` lasting `seconds`.
    pub fn bar(&self, start: i64, seconds: u32) -> Bar {
        let seconds = i64::from(seconds.max(1));
        let open = self.price(start);
        let close = self.price(start + seconds);
        let (mut high, mut low) = (open.max(close), open.min(close));
        for q in 1..4 {
            let p = self.price(start + seconds * q / 4);
            high = high.max(p);
            low = low.min(p);
        }
        let vol = 100.0 + (mix(self.seed ^ start as u64) % 10_000) as f64;
        Bar {
            time: start,
            open,
            high,
            low,
            close,
            volume: (vol * seconds as f64 / 60.0).round().max(1.0),
        }
    }
}

/// The market's clock: starts at a given Unix second and runs `speed` times real time.
#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    started: Instant,
    start: f64,
    speed: f64,
}

impl SimClock {
    /// A clock reading `start` at wall time `anchor_ms` (both default to now) and running
    /// `speed` times real time from then.
    pub fn new(start: Option<i64>, anchor_ms: Option<u64>, speed: f64) -> Self {
        let speed = if speed.is_finite() && speed > 0.0 {
            speed
        } else {
            1.0
        };
        let wall_now = crate::unix_time::now().as_secs_f64();
        let start = start.map_or(wall_now, |s| s as f64);
        let since_anchor = anchor_ms.map_or(0.0, |a| (wall_now - a as f64 / 1000.0).max(0.0));
        SimClock {
            started: Instant::now(),
            start: start + since_anchor * speed,
            speed,
        }
    }

    /// Market time now, Unix seconds.
    pub fn now(&self) -> i64 {
        (self.start + self.started.elapsed().as_secs_f64() * self.speed).floor() as i64
    }

    /// Real time until market time reaches `t`.
    pub fn until(&self, t: i64) -> Duration {
        let ahead = t as f64 - (self.start + self.started.elapsed().as_secs_f64() * self.speed);
        Duration::from_secs_f64((ahead / self.speed).max(0.0))
    }
}

/// The (start, count) of the bars a history request covers: the last complete bar ends at or
/// before `end`.
pub fn history_range(req: &HistoryRequest, now: i64) -> Result<(i64, u64), RemoteError> {
    if req.bar_seconds == 0 {
        return Err(error(
            ErrorKind::BadRequest,
            "bar size must be at least 1 second",
        ));
    }
    let size = u64::from(req.bar_seconds);
    let count = req.duration_seconds / size;
    if count == 0 {
        return Err(error(
            ErrorKind::BadRequest,
            format!(
                "duration {} s is shorter than one {} s bar",
                req.duration_seconds, req.bar_seconds
            ),
        ));
    }
    if count > MAX_BARS {
        return Err(error(
            ErrorKind::BadRequest,
            format!("{count} bars requested, at most {MAX_BARS} per request"),
        ));
    }
    let size = i64::from(req.bar_seconds);
    let end = req.end.unwrap_or(now);
    let last = end.div_euclid(size) * size - size;
    Ok((last - (count as i64 - 1) * size, count))
}

/// The simulated broker connection's handshake.
struct Handshake {
    /// Both the next valid id and the managed accounts have arrived.
    connected: bool,
    /// When the first `connect` began it.
    started: Option<Instant>,
}

/// One symbol's real-time bars.
struct Subscription {
    /// The runner's id of the subscription, which its bars carry.
    id: u32,
    bar_seconds: u32,
    /// Start of the next bar to send, Unix seconds.
    next: i64,
}

/// The simulated market: what the backend and its ticker thread share.
struct Market {
    opts: SimOptions,
    clock: SimClock,
    generation: u32,
    handshake: Mutex<Handshake>,
    handshake_cv: Condvar,
    subscriptions: Mutex<HashMap<String, Subscription>>,
    subscriptions_cv: Condvar,
    stop: AtomicBool,
    batches: AtomicU64,
    events: EventSink,
    broker: broker::SimBroker,
    /// Wakes the order watcher when the market stops.
    watch: Mutex<()>,
    watch_cv: Condvar,
}

impl Market {
    /// Sends what changed at the broker as events: fills, then orders, then positions.
    fn tell(&self, changes: broker::Changes) {
        for f in changes.fills {
            (self.events)(Event::Fill(Box::new(f)));
        }
        for o in changes.orders {
            (self.events)(Event::Order(Box::new(o)));
        }
        for p in changes.positions {
            (self.events)(Event::Position(Box::new(p)));
        }
    }
}

/// The simulated broker.
pub struct SimBackend {
    market: Arc<Market>,
    ticker: Mutex<Option<JoinHandle<()>>>,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

impl SimBackend {
    /// A market with these options; `generation` is the worker's (faults apply to the first).
    pub fn new(opts: SimOptions, generation: u32, events: EventSink) -> Self {
        let clock = SimClock::new(opts.start, opts.anchor_ms, opts.speed);
        let broker = broker::SimBroker::new(opts.broker.clone(), opts.seed, &opts.broker.account);
        SimBackend {
            market: Arc::new(Market {
                opts,
                clock,
                generation,
                handshake: Mutex::new(Handshake {
                    connected: false,
                    started: None,
                }),
                handshake_cv: Condvar::new(),
                subscriptions: Mutex::new(HashMap::new()),
                subscriptions_cv: Condvar::new(),
                stop: AtomicBool::new(false),
                batches: AtomicU64::new(0),
                events,
                broker,
                watch: Mutex::new(()),
                watch_cv: Condvar::new(),
            }),
            ticker: Mutex::new(None),
            watcher: Mutex::new(None),
        }
    }

    /// The injected reply delay: every request but `ping` (answered by the worker itself) is
    /// held back this long before the market looks at it.
    fn delay_reply(&self) {
        let delay = Duration::from_millis(self.market.opts.faults.reply_delay_ms);
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
    }

    fn require_connected(&self) -> Result<(), RemoteError> {
        if self.market.handshake.lock().connected {
            Ok(())
        } else {
            Err(error(
                ErrorKind::NotConnected,
                "not connected to the simulated market",
            ))
        }
    }

    /// A well-formed symbol the market has data for.
    fn check_data(&self, symbol: &str) -> Result<(), RemoteError> {
        check_symbol(symbol)?;
        if self.market.opts.faults.no_data.iter().any(|s| s == symbol) {
            return Err(error(ErrorKind::NoData, format!("no data for {symbol}")));
        }
        Ok(())
    }

    /// Injected faults, first worker only.
    fn after_batch(&self) {
        let n = self.market.batches.fetch_add(1, Ordering::Relaxed) + 1;
        if self.market.generation != 0 {
            return;
        }
        let f = &self.market.opts.faults;
        let signal = if f.crash_after_batches == Some(n) {
            Signal::Kill
        } else if f.hang_after_batches == Some(n) {
            Signal::Stop
        } else {
            return;
        };
        tracing::warn!("injected fault: kill {signal} self after {n} batches");
        let _ = crate::signal::send(std::process::id(), signal);
    }

    /// Starts the thread that brings the broker's book up to the market clock at every fill
    /// bar and tells what changed (once connected, until disconnected).
    fn ensure_watcher(&self) {
        let mut watcher = self.watcher.lock();
        if watcher.is_some() {
            return;
        }
        let market = self.market.clone();
        match std::thread::Builder::new()
            .name("sim-orders".into())
            .spawn(move || watch_orders(&market))
        {
            Ok(t) => *watcher = Some(t),
            Err(e) => tracing::error!("cannot start the order thread: {e}"),
        }
    }

    /// Tells at once what an order request changed, rather than at the next fill bar.
    fn tell_now(&self) {
        match self.market.broker.poll(self.market.clock.now()) {
            Ok(changes) => self.market.tell(changes),
            Err(e) => tracing::warn!("simulated broker: {}", e.message),
        }
    }

    /// A well-formed order on a symbol with data, from a connected market.
    fn check_order(&self, order: &OrderRequest) -> Result<(), RemoteError> {
        self.require_connected()?;
        if let Some(problem) = order.problem() {
            return Err(error(ErrorKind::BadRequest, problem));
        }
        self.check_data(&order.symbol)
    }

    fn ensure_ticker(&self) {
        let mut ticker = self.ticker.lock();
        if ticker.is_some() {
            return;
        }
        let market = self.market.clone();
        match std::thread::Builder::new()
            .name("sim-ticker".into())
            .spawn(move || tick(&market))
        {
            Ok(t) => *ticker = Some(t),
            Err(e) => tracing::error!("cannot start the real-time bar thread: {e}"),
        }
    }
}

/// Emits due real-time bars until stopped.
fn tick(market: &Market) {
    let mut subs = market.subscriptions.lock();
    while !market.stop.load(Ordering::Acquire) {
        let now = market.clock.now();
        let mut due = Vec::new();
        let mut next_due = None::<i64>;
        for (symbol, sub) in subs.iter_mut() {
            let size = i64::from(sub.bar_seconds);
            while sub.next + size <= now {
                due.push(Event::Bar {
                    sub: sub.id,
                    bar: PricePath::new(market.opts.seed, symbol).bar(sub.next, sub.bar_seconds),
                });
                sub.next += size;
            }
            let d = sub.next + size;
            next_due = Some(next_due.map_or(d, |n| n.min(d)));
        }
        if !due.is_empty() {
            drop(subs);
            for mut e in due {
                if let (true, Event::Bar { bar, .. }) = (market.opts.stamp_bars, &mut e) {
                    bar.volume = bridge::platform::monotonic_ns() as f64;
                }
                (market.events)(e);
            }
            subs = market.subscriptions.lock();
            continue;
        }
        let wait = next_due
            .map(|t| market.clock.until(t))
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_millis(1), Duration::from_millis(200));
        market.subscriptions_cv.wait_for(&mut subs, wait);
    }
}

/// Brings the broker's book up to the market clock at every fill bar (and at least every
/// second, for orders other processes add to the journal) until the market stops.
fn watch_orders(market: &Market) {
    let size = i64::from(market.opts.broker.fill_seconds.max(1));
    let mut guard = market.watch.lock();
    while !market.stop.load(Ordering::Acquire) {
        let now = market.clock.now();
        match market.broker.poll(now) {
            Ok(changes) => {
                drop(guard);
                market.tell(changes);
                guard = market.watch.lock();
            }
            Err(e) => tracing::warn!("simulated broker: {}", e.message),
        }
        let next_bar = (now.div_euclid(size) + 1) * size;
        let wait = market
            .clock
            .until(next_bar)
            .clamp(Duration::from_millis(1), Duration::from_secs(1));
        market.watch_cv.wait_for(&mut guard, wait);
    }
}

impl Backend for SimBackend {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn connect(&self, timeout: Duration) -> Result<(Vec<String>, i64), RemoteError> {
        self.delay_reply();
        let deadline = Instant::now() + timeout;
        let faults = &self.market.opts.faults;
        let mut handshake = self.market.handshake.lock();
        let started = *handshake.started.get_or_insert_with(Instant::now);
        // The handshake: next valid id after 20 ms, managed accounts after the configured
        // delay (or never). Ready only when both are known.
        let ready_at = (!faults.accounts_never).then(|| {
            started + Duration::from_millis(20).max(Duration::from_millis(faults.accounts_delay_ms))
        });
        loop {
            if handshake.connected {
                return Ok((vec![self.market.opts.broker.account.clone()], 1));
            }
            let now = Instant::now();
            if let Some(at) = ready_at {
                if now >= at {
                    handshake.connected = true;
                    self.market.handshake_cv.notify_all();
                    tracing::info!(
                        "connected to the simulated market, account {}",
                        self.market.opts.broker.account
                    );
                    (self.market.events)(Event::Connection(
                        bridge::protocol::ConnectionStatus::Connected,
                    ));
                    drop(handshake);
                    // Tells at once what the broker did while no worker watched.
                    self.ensure_watcher();
                    handshake = self.market.handshake.lock();
                    continue;
                }
            }
            if now >= deadline {
                return Err(error(
                    ErrorKind::Timeout,
                    format!(
                        "managed accounts not received within {} ms",
                        timeout.as_millis()
                    ),
                ));
            }
            let until = ready_at.map_or(deadline, |at| at.min(deadline));
            self.market.handshake_cv.wait_until(&mut handshake, until);
        }
    }

    fn accounts(&self) -> Result<Vec<String>, RemoteError> {
        self.delay_reply();
        self.require_connected()?;
        Ok(vec![self.market.opts.broker.account.clone()])
    }

    fn history(
        &self,
        req: &HistoryRequest,
        cancel: &Cancel,
        emit: &mut dyn FnMut(Vec<Bar>) -> bool,
    ) -> Result<u64, RemoteError> {
        self.delay_reply();
        self.require_connected()?;
        self.check_data(&req.symbol)?;
        let (first, count) = history_range(req, self.market.clock.now())?;
        let path = PricePath::new(self.market.opts.seed, &req.symbol);
        let size = i64::from(req.bar_seconds);
        let bars = (0..count as i64).map(|i| path.bar(first + i * size, req.bar_seconds));
        let mut emit = |batch| !cancel.is_cancelled() && emit(batch);
        emit_in_batches(bars, &mut emit, || self.after_batch())
    }

    fn subscribe(&self, req: &SubscribeRequest) -> Result<(), RemoteError> {
        self.delay_reply();
        self.require_connected()?;
        self.check_data(&req.symbol)?;
        if req.bar_seconds == 0 {
            return Err(error(
                ErrorKind::BadRequest,
                "bar size must be at least 1 second",
            ));
        }
        let size = i64::from(req.bar_seconds);
        let now = self.market.clock.now();
        self.market.subscriptions.lock().insert(
            req.symbol.clone(),
            Subscription {
                id: req.id,
                bar_seconds: req.bar_seconds,
                next: now.div_euclid(size) * size,
            },
        );
        self.market.subscriptions_cv.notify_all();
        self.ensure_ticker();
        Ok(())
    }

    fn unsubscribe(&self, symbol: &str) -> Result<(), RemoteError> {
        self.delay_reply();
        self.market.subscriptions.lock().remove(symbol);
        Ok(())
    }

    fn place_order(&self, order: &OrderRequest) -> Result<OrderReport, RemoteError> {
        self.delay_reply();
        self.check_order(order)?;
        let (report, placed, taken) = self.market.broker.place(order, self.market.clock.now())?;
        let faults = &self.market.opts.faults;
        if placed {
            tracing::info!(
                order_ref = %order.order_ref,
                broker_id = report.broker_id,
                status = %report.status,
                "simulated broker took order"
            );
            if self.market.generation == 0 && faults.crash_after_orders == Some(taken) {
                tracing::warn!("injected fault: kill self after taking {taken} orders");
                let _ = crate::signal::send(std::process::id(), Signal::Kill);
            }
        } else {
            tracing::info!(
                order_ref = %order.order_ref,
                broker_id = report.broker_id,
                status = %report.status,
                "order already at the simulated broker; not placed again"
            );
        }
        if faults.order_ack_delay_ms > 0 {
            std::thread::sleep(Duration::from_millis(faults.order_ack_delay_ms));
        }
        self.tell_now();
        Ok(report)
    }

    fn modify_order(&self, change: &OrderChange) -> Result<OrderReport, RemoteError> {
        self.delay_reply();
        self.require_connected()?;
        let report = self.market.broker.modify(change, self.market.clock.now())?;
        self.tell_now();
        Ok(report)
    }

    fn cancel_order(&self, order_ref: &str) -> Result<OrderReport, RemoteError> {
        self.delay_reply();
        self.require_connected()?;
        let report = self
            .market
            .broker
            .cancel(order_ref, self.market.clock.now())?;
        self.tell_now();
        Ok(report)
    }

    fn cancel_all(&self) -> Result<u32, RemoteError> {
        self.delay_reply();
        self.require_connected()?;
        let count = self.market.broker.cancel_all(self.market.clock.now())?;
        self.tell_now();
        Ok(count)
    }

    fn orders(&self) -> Result<Vec<OrderReport>, RemoteError> {
        self.delay_reply();
        self.require_connected()?;
        self.market.broker.orders(self.market.clock.now())
    }

    fn executions(&self) -> Result<Vec<Fill>, RemoteError> {
        self.delay_reply();
        self.require_connected()?;
        self.market.broker.executions(self.market.clock.now())
    }

    fn positions(&self) -> Result<Vec<Position>, RemoteError> {
        self.delay_reply();
        self.require_connected()?;
        self.market.broker.positions(self.market.clock.now())
    }

    fn account(&self) -> Result<AccountSummary, RemoteError> {
        self.delay_reply();
        self.require_connected()?;
        self.market.broker.account(self.market.clock.now())
    }

    fn disconnect(&self) {
        self.market.stop.store(true, Ordering::Release);
        self.market.subscriptions_cv.notify_all();
        {
            let _guard = self.market.watch.lock();
            self.market.watch_cv.notify_all();
        }
        for thread in [&self.ticker, &self.watcher] {
            if let Some(t) = thread.lock().take() {
                let _ = t.join();
            }
        }
        let mut handshake = self.market.handshake.lock();
        if handshake.connected {
            handshake.connected = false;
            tracing::info!("disconnected from the simulated market");
        }
    }
}

impl Drop for SimBackend {
    fn drop(&mut self) {
        self.disconnect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink() -> (EventSink, Arc<Mutex<Vec<Event>>>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        (Arc::new(move |e| g.lock().push(e)), got)
    }

    /// `stamp_bars` (the benchmark's) puts the monotonic clock of the moment a live bar is
    /// handed over into its volume; off, the volume is the price path's.
    #[test]
    fn stamped_live_bars_carry_the_moment_they_were_sent() {
        for stamp in [false, true] {
            let (events, got) = sink();
            let opts = SimOptions {
                speed: 600.0,
                stamp_bars: stamp,
                ..SimOptions::default()
            };
            let sim = SimBackend::new(opts, 0, events);
            sim.connect(Duration::from_secs(5)).unwrap();
            let before = bridge::platform::monotonic_ns();
            sim.subscribe(&SubscribeRequest {
                symbol: "SPY".into(),
                id: 1,
                bar_seconds: 60,
            })
            .unwrap();
            let bars_in = |got: &Mutex<Vec<Event>>| {
                got.lock()
                    .iter()
                    .filter(|e| matches!(e, Event::Bar { .. }))
                    .count()
            };
            let start = Instant::now();
            while bars_in(&got) < 2 && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            sim.disconnect();
            let after = bridge::platform::monotonic_ns();
            let bars: Vec<Bar> = got
                .lock()
                .iter()
                .filter_map(|e| match e {
                    Event::Bar { bar, .. } => Some(*bar),
                    _ => None,
                })
                .collect();
            assert!(bars.len() >= 2, "{} bars", bars.len());
            for bar in bars {
                let stamped = bar.volume >= before as f64 && bar.volume <= after as f64;
                assert_eq!(stamped, stamp, "volume {} of {bar:?}", bar.volume);
                if !stamp {
                    let path = PricePath::new(42, "SPY").bar(bar.time, 60);
                    assert_eq!(bar.volume, path.volume);
                }
            }
        }
    }

    #[test]
    fn prices_are_deterministic_positive_and_differ_between_symbols() {
        let a = PricePath::new(42, "SPY");
        let b = PricePath::new(42, "SPY");
        let c = PricePath::new(42, "QQQ");
        let d = PricePath::new(43, "SPY");
        for t in (1_700_000_000..1_700_086_400).step_by(97) {
            assert_eq!(a.price(t), b.price(t));
            assert!(a.price(t) > 0.0 && a.price(t).is_finite());
        }
        assert_ne!(a.price(1_700_000_000), c.price(1_700_000_000));
        assert_ne!(a.price(1_700_000_000), d.price(1_700_000_000));
    }

    #[test]
    fn bars_are_consistent() {
        let p = PricePath::new(1, "AAPL");
        for i in 0..500 {
            let bar = p.bar(1_700_000_000 + i * 60, 60);
            assert!(bar.low <= bar.open.min(bar.close));
            assert!(bar.high >= bar.open.max(bar.close));
            assert!(bar.low > 0.0 && bar.volume >= 1.0);
            let next = p.bar(1_700_000_000 + (i + 1) * 60, 60);
            assert_eq!(bar.close, next.open);
        }
    }

    #[test]
    fn prices_move_enough_for_a_strategy() {
        let p = PricePath::new(42, "NVDA");
        let prices: Vec<f64> = (0..1440).map(|i| p.price(1_700_000_000 + i * 60)).collect();
        let max = prices.iter().cloned().fold(f64::MIN, f64::max);
        let min = prices.iter().cloned().fold(f64::MAX, f64::min);
        assert!(max / min > 1.005, "a day moves: {min}..{max}");
        assert!(max / min < 2.0, "but not absurdly: {min}..{max}");
    }

    #[test]
    fn clocks_anchored_alike_agree_whenever_they_start() {
        let anchor_ms = crate::unix_time::now().as_millis() as u64 - 10_000;
        let a = SimClock::new(Some(1_700_000_000), Some(anchor_ms), 60.0);
        std::thread::sleep(Duration::from_millis(50));
        let b = SimClock::new(Some(1_700_000_000), Some(anchor_ms), 60.0);
        // Ten seconds after the anchor at 60x: 600 simulated seconds later.
        assert!((a.now() - (1_700_000_000 + 600)).abs() <= 5, "{}", a.now());
        assert!((a.now() - b.now()).abs() <= 1);
    }

    #[test]
    fn history_range_counts_exactly() {
        let req = HistoryRequest {
            symbol: "SPY".into(),
            bar_seconds: 60,
            duration_seconds: 86_400,
            end: Some(1_700_000_030),
        };
        let (first, count) = history_range(&req, 0).unwrap();
        assert_eq!(count, 1440);
        assert_eq!(first % 60, 0);
        // The last complete bar ends at 1_699_999_980, before `end`.
        assert_eq!(first + 1439 * 60, 1_699_999_920);
        let zero = HistoryRequest {
            bar_seconds: 0,
            ..req.clone()
        };
        assert_eq!(
            history_range(&zero, 0).unwrap_err().kind,
            ErrorKind::BadRequest
        );
    }

    #[test]
    fn history_is_streamed_in_batches_after_connect() {
        let (events, got) = sink();
        let sim = SimBackend::new(SimOptions::default(), 0, events);
        let req = HistoryRequest {
            symbol: "SPY".into(),
            bar_seconds: 60,
            duration_seconds: 2500 * 60,
            end: None,
        };
        let mut batches = Vec::new();
        let err = sim.history(&req, &Cancel::default(), &mut |b| {
            batches.push(b);
            true
        });
        assert_eq!(err.unwrap_err().kind, ErrorKind::NotConnected);
        sim.connect(Duration::from_secs(5)).unwrap();
        assert_eq!(
            got.lock().clone(),
            vec![Event::Connection(
                bridge::protocol::ConnectionStatus::Connected
            )]
        );
        let n = sim
            .history(&req, &Cancel::default(), &mut |b| {
                batches.push(b);
                true
            })
            .unwrap();
        assert_eq!(n, 2500);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![1000, 1000, 500]
        );
        let times: Vec<i64> = batches.iter().flatten().map(|b| b.time).collect();
        assert!(times.windows(2).all(|w| w[1] - w[0] == 60));
    }

    #[test]
    fn unknown_symbols_and_missing_data_are_told_apart() {
        let (events, _) = sink();
        let opts = SimOptions {
            faults: crate::options::SimFaults {
                no_data: vec!["GONE".into()],
                ..Default::default()
            },
            ..SimOptions::default()
        };
        let sim = SimBackend::new(opts, 0, events);
        sim.connect(Duration::from_secs(5)).unwrap();
        let req = |s: &str| HistoryRequest {
            symbol: s.into(),
            bar_seconds: 60,
            duration_seconds: 600,
            end: None,
        };
        let mut ignore = |_: Vec<Bar>| true;
        assert_eq!(
            sim.history(&req("bad symbol"), &Cancel::default(), &mut ignore)
                .unwrap_err()
                .kind,
            ErrorKind::UnknownSymbol
        );
        assert_eq!(
            sim.history(&req("GONE"), &Cancel::default(), &mut ignore)
                .unwrap_err()
                .kind,
            ErrorKind::NoData
        );
    }

    #[test]
    fn connect_waits_for_late_accounts_and_times_out_without_them() {
        let (events, _) = sink();
        let late = SimOptions {
            faults: crate::options::SimFaults {
                accounts_delay_ms: 300,
                ..Default::default()
            },
            ..SimOptions::default()
        };
        let sim = SimBackend::new(late, 0, events.clone());
        let start = Instant::now();
        let (accounts, _) = sim.connect(Duration::from_secs(5)).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert_eq!(accounts, vec![ACCOUNT.to_string()]);

        let never = SimOptions {
            faults: crate::options::SimFaults {
                accounts_never: true,
                ..Default::default()
            },
            ..SimOptions::default()
        };
        let sim = SimBackend::new(never, 0, events);
        let err = sim.connect(Duration::from_millis(200)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Timeout);
        assert!(sim.accounts().is_err());
    }

    #[test]
    fn an_injected_reply_delay_holds_back_every_request() {
        let (events, _) = sink();
        let slow = SimOptions {
            faults: crate::options::SimFaults {
                reply_delay_ms: 150,
                ..Default::default()
            },
            ..SimOptions::default()
        };
        let sim = SimBackend::new(slow, 0, events);
        let start = Instant::now();
        sim.connect(Duration::from_secs(5)).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(150));
        let start = Instant::now();
        assert_eq!(sim.accounts().unwrap(), vec![ACCOUNT.to_string()]);
        assert!(start.elapsed() >= Duration::from_millis(150));
        let start = Instant::now();
        sim.unsubscribe("SPY").unwrap();
        assert!(start.elapsed() >= Duration::from_millis(150));
    }

    #[test]
    fn real_time_bars_arrive_on_the_fast_clock() {
        let (events, got) = sink();
        let opts = SimOptions {
            speed: 600.0,
            ..SimOptions::default()
        };
        let sim = SimBackend::new(opts, 0, events);
        sim.connect(Duration::from_secs(5)).unwrap();
        sim.subscribe(&SubscribeRequest {
            symbol: "SPY".into(),
            id: 3,
            bar_seconds: 60,
        })
        .unwrap();
        // 600x: a one-minute bar every 100 ms.
        let start = Instant::now();
        while got.lock().len() < 4 && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        sim.disconnect();
        let bars: Vec<Bar> = got
            .lock()
            .iter()
            .filter_map(|e| match e {
                Event::Bar { sub: 3, bar } => Some(*bar),
                _ => None,
            })
            .collect();
        assert!(bars.len() >= 3, "{} bars", bars.len());
        assert!(bars.windows(2).all(|w| w[1].time - w[0].time == 60));
    }

    /// A history cancelled by the runner stops before the next batch and is not answered
    /// as complete.
    #[test]
    fn a_cancelled_history_stops_at_the_next_batch() {
        let events: EventSink = Arc::new(|_| {});
        let sim = SimBackend::new(SimOptions::default(), 0, events);
        sim.connect(Duration::from_secs(5)).unwrap();
        let req = HistoryRequest {
            symbol: "SPY".into(),
            bar_seconds: 60,
            duration_seconds: 86_400 * 3,
            end: None,
        };
        let cancel = Cancel::default();
        let mut batches = 0;
        let result = sim.history(&req, &cancel, &mut |_| {
            batches += 1;
            cancel.cancel();
            true
        });
        assert!(result.is_err(), "{result:?}");
        assert_eq!(batches, 1);
    }
}
