//! The simulated market: deterministic prices ([`PricePath`]), any bar size, a clock that can
//! run faster than real time ([`SimClock`]), injectable faults, and a broker whose book
//! outlives the worker ([`broker`]). Needs nothing installed.
//!
//! Here: the backend ([`SimBackend`]), which answers the worker's requests from the
//! `Market` (`market`) it shares with its two threads, the ticker (live bars, `ticker`) and the
//! order watcher (fills, `watcher`). Which bars a history covers is in `history`, the faults
//! in `faults`, the broker's journal file in `journal` and its book in `book`.
//!
//! Invariants: nothing is answered before the handshake completes (but `connect` itself);
//! the threads start once, on first need, and stop with [`Backend::disconnect`], which every
//! exit path calls (the backend's drop too).

mod book;
pub mod broker;
mod calendar;
mod clock;
mod faults;
mod folded;
mod history;
pub(crate) mod journal;
mod market;
mod price_path;
mod prices;
mod ticker;
mod watcher;

pub use crate::options::SIM_ACCOUNT as ACCOUNT;
pub use clock::SimClock;
pub use history::{history_range, MAX_BARS};
pub use price_path::PricePath;
pub use prices::Prices;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bridge::protocol::{
    AccountSummary, Bar, ErrorKind, Event, Fill, HistoryRequest, OrderChange, OrderReport,
    OrderRequest, Position, RefRun, RemoteError, SubscribeRequest,
};
use parking_lot::Mutex;

use crate::backend::{check_symbol, emit_in_batches, error, Backend, Cancel, EventSink};
use crate::options::SimOptions;
use market::{Market, Subscription};

/// The simulated broker.
pub struct SimBackend {
    market: Arc<Market>,
    ticker: Mutex<Option<JoinHandle<()>>>,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

impl SimBackend {
    /// A market with these options; `generation` is the worker's (faults apply to the first).
    pub fn new(opts: SimOptions, generation: u32, events: EventSink) -> Self {
        SimBackend {
            market: Arc::new(Market::new(opts, generation, events)),
            ticker: Mutex::new(None),
            watcher: Mutex::new(None),
        }
    }

    /// The handshake is complete (the gateway may be down for its restart meanwhile).
    fn require_handshake(&self) -> Result<(), RemoteError> {
        if self.market.handshake.lock().connected {
            Ok(())
        } else {
            Err(error(
                ErrorKind::NotConnected,
                "not connected to the simulated market",
            ))
        }
    }

    fn require_connected(&self) -> Result<(), RemoteError> {
        self.require_handshake()?;
        let now = self.market.clock.now();
        match self.market.opts.calendar.outage_at(now) {
            Some(o) => Err(error(
                ErrorKind::Disconnected,
                format!(
                    "the broker connection is down for {} ({} s more on the market clock)",
                    o.reason(),
                    o.until - now
                ),
            )),
            None => Ok(()),
        }
    }

    /// A well-formed symbol the market has data for.
    fn check_data(&self, symbol: &str) -> Result<(), RemoteError> {
        check_symbol(symbol)?;
        if faults::no_data(&self.market, symbol) {
            return Err(error(ErrorKind::NoData, format!("no data for {symbol}")));
        }
        self.market.prices.check(symbol)
    }

    /// Starts the thread that brings the broker's book up to the market clock at every fill
    /// bar and tells what changed (once connected, until disconnected).
    fn ensure_watcher(&self) {
        let watch = watcher::watch_orders;
        Self::ensure_thread(&self.watcher, "sim-orders", "order", &self.market, watch);
    }

    /// Starts the thread that sends the live bars (on the first subscription).
    fn ensure_ticker(&self) {
        let tick = ticker::tick;
        Self::ensure_thread(
            &self.ticker,
            "sim-ticker",
            "real-time bar",
            &self.market,
            tick,
        );
    }

    /// Starts `run` on a thread named `name` into `slot`, unless one is there already.
    fn ensure_thread(
        slot: &Mutex<Option<JoinHandle<()>>>,
        name: &str,
        what: &str,
        market: &Arc<Market>,
        run: fn(&Market),
    ) {
        let mut slot = slot.lock();
        if slot.is_some() {
            return;
        }
        let market = market.clone();
        match std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(&market))
        {
            Ok(t) => *slot = Some(t),
            Err(e) => tracing::error!("cannot start the {what} thread: {e}"),
        }
    }

    /// A well-formed order on a symbol with data, from a connected market.
    fn check_order(&self, order: &OrderRequest) -> Result<(), RemoteError> {
        self.require_connected()?;
        if let Err(problem) = order.check() {
            return Err(error(ErrorKind::BadRequest, problem.to_string()));
        }
        self.check_data(&order.symbol)
    }

    /// What every request but `connect` goes through: the injected delay, then the handshake
    /// must be complete.
    fn ready(&self) -> Result<(), RemoteError> {
        faults::delay_reply(&self.market);
        self.require_connected()
    }

    /// Tells that the handshake completed (under the handshake's lock, so that no other
    /// `connect` answers before it is told).
    fn tell_connected(&self) {
        tracing::info!(
            "connected to the simulated market, account {}",
            self.market.opts.broker.account
        );
        (self.market.events)(Event::Connection(
            bridge::protocol::ConnectionStatus::Connected,
        ));
    }
}

impl Backend for SimBackend {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn connect(&self, timeout: Duration) -> Result<(Vec<String>, i64), RemoteError> {
        faults::delay_reply(&self.market);
        if let Some(why) = &self.market.unusable {
            return Err(error(ErrorKind::BadRequest, why.clone()));
        }
        let deadline = Instant::now() + timeout;
        let mut handshake = self.market.handshake.lock();
        let started = *handshake.started.get_or_insert_with(Instant::now);
        // Ready only when both the next valid id and the managed accounts are known.
        let ready_at = faults::accounts_ready_at(&self.market, started);
        loop {
            if handshake.connected {
                return Ok((vec![self.market.opts.broker.account.clone()], 1));
            }
            let now = Instant::now();
            if let Some(at) = ready_at {
                if now >= at {
                    handshake.connected = true;
                    self.market.handshake_cv.notify_all();
                    self.tell_connected();
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
        self.ready()?;
        Ok(vec![self.market.opts.broker.account.clone()])
    }

    fn history(
        &self,
        req: &HistoryRequest,
        cancel: &Cancel,
        emit: &mut dyn FnMut(Vec<Bar>) -> bool,
    ) -> Result<u64, RemoteError> {
        self.ready()?;
        self.check_data(&req.symbol)?;
        let prices = &self.market.prices;
        let now = match (req.end, self.market.clock.is_held()) {
            (None, true) => prices.recorded_history_end(&req.symbol),
            _ => None,
        };
        let (first, count) = history_range(req, now.unwrap_or_else(|| self.market.clock.now()))?;
        prices.check_size(req.bar_seconds)?;
        let calendar = &self.market.opts.calendar;
        let bars = history_bars(prices, &req.symbol, first, count, req.bar_seconds)
            .filter(move |b| calendar.in_session(b.time));
        let mut emit = |batch| !cancel.is_cancelled() && emit(batch);
        emit_in_batches(bars, &mut emit, || faults::after_batch(&self.market))
    }

    fn subscribe(&self, req: &SubscribeRequest) -> Result<(), RemoteError> {
        // Taken while the gateway is down too (a replacement worker started in a restart
        // restores its subscriptions then): its bars start when the gateway is back.
        faults::delay_reply(&self.market);
        self.require_handshake()?;
        self.check_data(&req.symbol)?;
        if req.bar_seconds == 0 {
            return Err(error(
                ErrorKind::BadRequest,
                "bar size must be at least 1 second",
            ));
        }
        self.market.prices.check_size(req.bar_seconds)?;
        // A replay's market runs from its first subscription on.
        self.market.clock.release();
        let size = i64::from(req.bar_seconds);
        let now = self.market.clock.now();
        let forming = now.div_euclid(size) * size;
        let next = match self.market.opts.skip_forming_bar && forming < now {
            true => forming + size,
            false => forming,
        };
        self.market.subscriptions.lock().insert(
            req.symbol.clone(),
            Subscription {
                id: req.id,
                bar_seconds: req.bar_seconds,
                next,
                ended: false,
            },
        );
        self.market.subscriptions_cv.notify_all();
        self.ensure_ticker();
        Ok(())
    }

    fn unsubscribe(&self, symbol: &str) -> Result<(), RemoteError> {
        faults::delay_reply(&self.market);
        self.market.subscriptions.lock().remove(symbol);
        Ok(())
    }

    fn place_order(&self, order: &OrderRequest) -> Result<OrderReport, RemoteError> {
        faults::delay_reply(&self.market);
        self.check_order(order)?;
        let (report, placed, taken) = self.market.broker.place(order, self.market.clock.now())?;
        if placed {
            tracing::info!(
                order_ref = %order.order_ref,
                broker_id = report.broker_id,
                status = %report.status,
                "simulated broker took order"
            );
            faults::after_order_taken(&self.market, taken);
        } else {
            tracing::info!(
                order_ref = %order.order_ref,
                broker_id = report.broker_id,
                status = %report.status,
                "order already at the simulated broker; not placed again"
            );
        }
        faults::hold_ack(&self.market);
        self.market.tell_now();
        Ok(report)
    }

    fn modify_order(&self, change: &OrderChange) -> Result<OrderReport, RemoteError> {
        self.ready()?;
        let report = self.market.broker.modify(change, self.market.clock.now())?;
        self.market.tell_now();
        Ok(report)
    }

    fn cancel_order(&self, order_ref: &str) -> Result<OrderReport, RemoteError> {
        self.ready()?;
        let report = self
            .market
            .broker
            .cancel(order_ref, self.market.clock.now())?;
        self.market.tell_now();
        Ok(report)
    }

    fn cancel_all(&self) -> Result<u32, RemoteError> {
        self.ready()?;
        let count = self.market.broker.cancel_all(self.market.clock.now())?;
        self.market.tell_now();
        Ok(count)
    }

    fn orders(&self) -> Result<Vec<OrderReport>, RemoteError> {
        self.ready()?;
        self.market.broker.orders(self.market.clock.now())
    }

    fn folded_orders(&self) -> Result<Vec<RefRun>, RemoteError> {
        self.ready()?;
        self.market.broker.folded_orders(self.market.clock.now())
    }

    fn executions(&self) -> Result<Vec<Fill>, RemoteError> {
        self.ready()?;
        self.market.broker.executions(self.market.clock.now())
    }

    fn positions(&self) -> Result<Vec<Position>, RemoteError> {
        self.ready()?;
        self.market.broker.positions(self.market.clock.now())
    }

    fn account(&self) -> Result<AccountSummary, RemoteError> {
        self.ready()?;
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

/// The bars of `symbol` a history of `count` bars of `seconds` from `first` holds: every one
/// of a price path (made as they are sent), the recorded ones of a recording.
fn history_bars<'a>(
    prices: &'a Prices,
    symbol: &str,
    first: i64,
    count: u64,
    seconds: u32,
) -> Box<dyn Iterator<Item = Bar> + Send + 'a> {
    let size = i64::from(seconds);
    match prices {
        Prices::Paths { seed } => {
            let path = PricePath::new(*seed, symbol);
            Box::new((0..count as i64).map(move |i| path.bar(first + i * size, seconds)))
        }
        Prices::Recorded(_) => {
            let to = first.saturating_add((count as i64).saturating_mul(size));
            Box::new(prices.bars(symbol, first, to, seconds).into_iter())
        }
    }
}

#[cfg(test)]
mod tests;
