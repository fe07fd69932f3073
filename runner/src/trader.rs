//! Placing orders through the supervisor's worker, exactly once ([`Trader`]), and the order a
//! strategy's signal calls for ([`order_for_signal`], placed by [`trade_on`]).
//!
//! Every order gets its reference here, before it is first sent, and keeps it on every
//! retry. A placement whose worker dies before answering is sent again, with the same
//! reference, to the replacement worker, which looks the reference up at the broker first
//! and places nothing if it is there; a placement that timed out is sent again the same way
//! (its fate was unknown). So an order reaches the broker once, or not at all when the broker
//! never had it and every attempt failed.
//!
//! Invariants: nothing leaves before the risk limits pass ([`RiskLimits`]) and before the
//! account was checked ([`check_accounts`]: a live account only with `allow_live`); the
//! runner's view of each order only moves forward ([`OrderBook`]).

use std::borrow::Borrow;
use std::fmt;
use std::time::{Duration, Instant};

use bridge::protocol::{
    is_paper_account, Event, OrderChange, OrderReport, OrderRequest, OrderType, Reply, Request,
    Side,
};
use bridge::RequestError;

use crate::config::{BackendKind, Config};
use crate::orders::OrderBook;
use crate::risk::{LimitBreach, RiskLimits};
use crate::strategy::Signal;
use crate::supervisor::{ProtocolError, Supervisor, SupervisorError};

/// Placements sent again after a timeout (the same reference each time).
pub const TIMEOUT_RETRIES: u32 = 2;

/// Why an order request did not go through.
#[derive(Debug, Clone)]
pub enum TradeError {
    /// A risk limit refused it before it left.
    Limit(LimitBreach),
    /// The broker (or the worker, for a malformed order) refused the request.
    Remote(bridge::protocol::RemoteError),
    /// The worker could not be reached or answered nothing that fits.
    Supervisor(SupervisorError),
}

impl fmt::Display for TradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TradeError::Limit(e) => e.fmt(f),
            TradeError::Remote(e) => write!(f, "refused: {}", e.message),
            TradeError::Supervisor(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for TradeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Told whole by `Display`: what comes next is the supervisor's own cause.
            TradeError::Supervisor(e) => e.source(),
            TradeError::Limit(_) | TradeError::Remote(_) => None,
        }
    }
}

/// Trading was refused before anything was sent: the account is a live one and
/// `trading.allow_live` is off. A run ends with it as with a configuration error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveAccountRefused {
    /// The broker behind the worker.
    pub backend: BackendKind,
    /// The live accounts among those the broker manages.
    pub live: Vec<String>,
}

impl fmt::Display for LiveAccountRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match self.backend {
            BackendKind::Sim => "sim",
            BackendKind::Ibkr => "ibkr",
            BackendKind::Replay => "replay",
        };
        write!(
            f,
            "the {backend} broker manages a live account ({}): trading refused; set \
             trading.allow_live = true to trade on it",
            self.live.join(", ")
        )
    }
}

impl std::error::Error for LiveAccountRefused {}

/// What trading did in a run, for the summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TradingSummary {
    /// Orders placed (acknowledged by the broker).
    pub orders: usize,
    /// Of those: filled, still working, cancelled, rejected by the broker.
    pub filled: usize,
    pub working: usize,
    pub cancelled: usize,
    pub rejected: usize,
    /// Orders the risk limits refused before they left.
    pub refused_by_limits: u64,
    /// Orders that failed otherwise (worker unreachable, malformed).
    pub failed: u64,
    /// Fills counted.
    pub fills: usize,
    /// One row per symbol traded.
    pub rows: Vec<TradingRow>,
}

/// One symbol's trading.
#[derive(Debug, Clone, PartialEq)]
pub struct TradingRow {
    pub symbol: String,
    pub position: f64,
    pub avg_cost: f64,
    pub realised: f64,
    /// At the last price seen; `None` without one.
    pub unrealised: Option<f64>,
    pub commissions: f64,
}

/// Refuses trading on a live account unless allowed: every account the broker manages must be
/// a paper account (IB: `D…`) when `allow_live` is off.
pub fn check_accounts(
    backend: BackendKind,
    accounts: &[String],
    allow_live: bool,
) -> Result<(), LiveAccountRefused> {
    if allow_live {
        return Ok(());
    }
    let live: Vec<String> = accounts
        .iter()
        .filter(|a| !is_paper_account(a))
        .cloned()
        .collect();
    if live.is_empty() {
        return Ok(());
    }
    Err(LiveAccountRefused { backend, live })
}

/// References unique to this process: `<run tag>-<n>`.
#[derive(Debug)]
pub struct References {
    tag: String,
    next: u64,
}

impl References {
    /// A tag from this process and the time: runs never share one.
    pub fn new() -> Self {
        let seed = u64::from(std::process::id()) << 32 ^ base::unix_time::now().as_nanos() as u64;
        References {
            tag: format!("{:08x}", base::random::mix(seed) as u32),
            next: 1,
        }
    }

    /// The next reference.
    pub fn next_ref(&mut self) -> String {
        let r = format!("{}-{}", self.tag, self.next);
        self.next += 1;
        r
    }
}

impl Default for References {
    fn default() -> Self {
        Self::new()
    }
}

/// Orders through one supervisor (borrowed, `&Supervisor`, or shared, `Arc<Supervisor>`),
/// with the book of what became of them.
pub struct Trader<S: Borrow<Supervisor>> {
    sup: S,
    book: OrderBook,
    risk: RiskLimits,
    refs: References,
    timeout: Duration,
    refused_by_limits: u64,
    failed: u64,
    /// Positions the broker held before this trader's fills (orders by hand: what the broker
    /// reports), by symbol.
    held_before: std::collections::HashMap<String, f64>,
}

impl<S: Borrow<Supervisor>> Trader<S> {
    /// A trader for the run of `cfg` on `sup`'s workers; refuses a live account unless
    /// allowed.
    pub fn new(sup: S, cfg: &Config) -> Result<Self, LiveAccountRefused> {
        check_accounts(
            cfg.backend,
            &sup.borrow().accounts(),
            cfg.trading.allow_live,
        )?;
        Ok(Trader {
            sup,
            book: OrderBook::new(),
            risk: RiskLimits::new(&cfg.trading),
            refs: References::new(),
            timeout: cfg.request_timeout(),
            refused_by_limits: 0,
            failed: 0,
            held_before: std::collections::HashMap::new(),
        })
    }

    /// The summary of this run's trading, positions valued at `last_price` of each symbol.
    pub fn summary(&self, last_price: impl Fn(&str) -> Option<f64>) -> TradingSummary {
        use bridge::protocol::OrderStatus;
        let mut s = TradingSummary {
            refused_by_limits: self.refused_by_limits,
            failed: self.failed,
            fills: usize::try_from(self.book.fills_counted()).unwrap_or(usize::MAX),
            ..TradingSummary::default()
        };
        for (status, n) in self.book.counts() {
            s.orders += n;
            match status {
                Some(OrderStatus::Filled) => s.filled += n,
                Some(OrderStatus::Cancelled) => s.cancelled += n,
                Some(OrderStatus::Rejected) => s.rejected += n,
                _ => s.working += n,
            }
        }
        s.rows = self
            .book
            .holdings()
            .iter()
            .map(|(symbol, h)| TradingRow {
                symbol: symbol.clone(),
                position: h.quantity,
                avg_cost: h.avg_cost,
                realised: h.realised,
                unrealised: last_price(symbol).map(|p| h.unrealised(p)),
                commissions: h.commissions,
            })
            .collect();
        s
    }

    /// Counts `quantity` shares of `symbol` held at the broker before this trader's own fills
    /// (for the position limit).
    pub fn held_before(&mut self, symbol: &str, quantity: f64) {
        self.held_before.insert(symbol.to_string(), quantity);
    }

    /// Shares of `symbol` held, counting what the working orders would add: at the broker
    /// before, plus this trader's fills, plus the unfilled part of its working orders.
    fn position(&self, symbol: &str) -> f64 {
        let working: f64 = self
            .book
            .working()
            .filter(|o| o.request.symbol == symbol)
            .map(|o| o.request.side.sign() * (o.request.quantity - self.book.filled(o)).max(0.0))
            .sum();
        self.held_before.get(symbol).copied().unwrap_or(0.0) + self.book.traded(symbol) + working
    }

    /// Takes the broker's positions as held before this trader's fills (for the position
    /// limit); fails if the broker cannot say.
    pub fn count_broker_positions(&mut self) -> Result<(), TradeError> {
        match self
            .sup
            .borrow()
            .request(Request::Positions, self.timeout)
            .map_err(TradeError::Supervisor)?
        {
            Reply::Positions(ps) => {
                self.held_before.clear();
                for p in ps {
                    *self.held_before.entry(p.symbol).or_default() += p.quantity;
                }
                Ok(())
            }
            other => Err(unexpected(other, "positions")),
        }
    }

    /// The supervisor it trades through.
    pub fn supervisor(&self) -> &Supervisor {
        self.sup.borrow()
    }

    /// The next reference of this run.
    pub fn next_ref(&mut self) -> String {
        self.refs.next_ref()
    }

    /// What became of the orders.
    pub fn book(&self) -> &OrderBook {
        &self.book
    }

    /// Places `order` (valued at its limit or `last_price` for the limits) and returns its
    /// state once the broker acknowledged it.
    pub fn place(
        &mut self,
        order: OrderRequest,
        last_price: Option<f64>,
    ) -> Result<OrderReport, TradeError> {
        let position = self.position(&order.symbol);
        if let Err(e) = self
            .risk
            .check(&order, last_price, position, Instant::now())
        {
            self.refused_by_limits += 1;
            return Err(TradeError::Limit(e));
        }
        let placed = self.send_placement(&order);
        if let Err(e) = &placed {
            self.failed += 1;
            if fate_unknown(e) {
                // The broker may have it: kept as pending, so that its events, the
                // reconciliation and the cancel on exit still reach it.
                tracing::warn!(
                    order_ref = %order.order_ref,
                    "order's fate unknown ({e}); followed as pending"
                );
                self.book.apply_report(OrderReport {
                    request: order.clone(),
                    broker_id: 0,
                    status: bridge::protocol::OrderStatus::Pending,
                    filled: 0.0,
                    avg_price: None,
                    reason: Some(e.to_string()),
                });
            }
        }
        placed
    }

    /// Sends again an order whose fate was unknown (kept as pending after no answer came),
    /// under its reference, which the broker takes once; the limits passed when it was
    /// first placed. An order the book knows otherwise is returned as it is.
    pub fn place_again(&mut self, order: &OrderRequest) -> Result<OrderReport, TradeError> {
        match self.book.order(&order.order_ref) {
            Some(o) if o.status == bridge::protocol::OrderStatus::Pending => {}
            Some(o) => return Ok(o.clone()),
            None => {
                return Err(TradeError::Supervisor(SupervisorError::Protocol(
                    ProtocolError::OrderLost,
                )))
            }
        }
        let placed = self.send_placement(order);
        if placed.is_err() {
            self.failed += 1;
        }
        placed
    }

    fn send_placement(&mut self, order: &OrderRequest) -> Result<OrderReport, TradeError> {
        let order_ref = order.order_ref.clone();
        let mut attempt = 0;
        let reply = loop {
            match self
                .sup
                .borrow()
                .request(Request::PlaceOrder(order.clone()), self.timeout)
            {
                Err(SupervisorError::Request(RequestError::Timeout))
                | Ok(Reply::Error(bridge::protocol::RemoteError {
                    kind: bridge::protocol::ErrorKind::Timeout,
                    ..
                })) if attempt < TIMEOUT_RETRIES => {
                    attempt += 1;
                    tracing::warn!(
                        %order_ref,
                        "no answer to the order in time; sending it again with the same reference"
                    );
                }
                other => break other.map_err(TradeError::Supervisor)?,
            }
        };
        let report = self.expect_order(reply)?;
        self.book.apply_report(report);
        self.book
            .order(&order_ref)
            .cloned()
            .ok_or(TradeError::Supervisor(SupervisorError::Protocol(
                ProtocolError::OrderLost,
            )))
    }

    /// Changes a working order (`current` is its state at the broker); the changed order is
    /// checked against the limits as a new one would be, less what of it already filled.
    pub fn modify(
        &mut self,
        current: &OrderReport,
        change: OrderChange,
        last_price: Option<f64>,
    ) -> Result<OrderReport, TradeError> {
        let changed = change.applied_to(current).map_err(|why| {
            TradeError::Remote(bridge::protocol::RemoteError {
                kind: bridge::protocol::ErrorKind::BadRequest,
                message: why.to_string(),
            })
        })?;
        let unfilled = OrderRequest {
            quantity: changed.quantity - current.filled,
            ..changed
        };
        let position = self.position(&unfilled.symbol);
        if let Err(e) = self
            .risk
            .check(&unfilled, last_price, position, Instant::now())
        {
            self.refused_by_limits += 1;
            return Err(TradeError::Limit(e));
        }
        let reply = self
            .sup
            .borrow()
            .request(Request::ModifyOrder(change), self.timeout)
            .map_err(TradeError::Supervisor)?;
        let report = self.expect_order(reply)?;
        let order_ref = report.request.order_ref.clone();
        // An order the book does not hold (another run's, or one folded into its totals) is
        // not taken in: a folded one is counted already.
        if self.book.order(&order_ref).is_some() {
            self.book.apply_report(report.clone());
            self.book.amend(&report);
        }
        Ok(self.book.order(&order_ref).cloned().unwrap_or(report))
    }

    /// Cancels the order with this reference; returns its state after.
    pub fn cancel(&mut self, order_ref: &str) -> Result<OrderReport, TradeError> {
        let reply = cancel_request(self.sup.borrow(), order_ref, self.timeout);
        self.cancelled(order_ref, reply)
    }

    /// Takes the broker's answer to a cancel of `order_ref`.
    fn cancelled(
        &mut self,
        order_ref: &str,
        reply: Result<Reply, SupervisorError>,
    ) -> Result<OrderReport, TradeError> {
        let report = self.expect_order(reply.map_err(TradeError::Supervisor)?)?;
        // As for a change: only an order the book holds is taken in.
        match self.book.order(order_ref) {
            Some(_) => {
                self.book.apply_report(report.clone());
                Ok(self.book.order(order_ref).cloned().unwrap_or(report))
            }
            None => Ok(report),
        }
    }

    /// Cancels every order of this run still working; returns how many were asked to. The
    /// cancels go out [`CANCELS_AT_ONCE`] at a time, so that a broker that does not answer
    /// holds the exit up for a request timeout per batch, not per order.
    pub fn cancel_working(&mut self) -> usize {
        let working: Vec<String> = self
            .book
            .working()
            .map(|o| o.request.order_ref.clone())
            .collect();
        for batch in working.chunks(CANCELS_AT_ONCE) {
            let (sup, timeout) = (self.sup.borrow(), self.timeout);
            let replies: Vec<Result<Reply, SupervisorError>> = std::thread::scope(|s| {
                let asked: Vec<_> = batch
                    .iter()
                    .map(|r| s.spawn(move || cancel_request(sup, r, timeout)))
                    .collect();
                asked
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or(Err(SupervisorError::Protocol(ProtocolError::OrderLost)))
                    })
                    .collect()
            });
            for (r, reply) in batch.iter().zip(replies) {
                match self.cancelled(r, reply) {
                    Ok(o) => {
                        tracing::info!(order_ref = %r, status = %o.status, "order cancelled on exit")
                    }
                    Err(e) => tracing::warn!(order_ref = %r, "cannot cancel on exit: {e}"),
                }
            }
        }
        working.len()
    }

    /// Brings the book up to what the broker knows: its orders and today's executions.
    /// Returns the fills of this run's orders the book learns of only now (the strategy has
    /// not been told of them).
    pub fn reconcile(&mut self) -> Result<Vec<bridge::protocol::Fill>, TradeError> {
        match self
            .sup
            .borrow()
            .request(Request::Orders, self.timeout)
            .map_err(TradeError::Supervisor)?
        {
            Reply::Orders(orders) => {
                for o in orders {
                    if self.book.order(&o.request.order_ref).is_some() {
                        self.book.apply_report(o);
                    }
                }
            }
            other => return Err(unexpected(other, "orders")),
        }
        match self
            .sup
            .borrow()
            .request(Request::Executions, self.timeout)
            .map_err(TradeError::Supervisor)?
        {
            Reply::Fills(fills) => {
                let mut new = Vec::new();
                for f in fills {
                    if self.book.order(&f.order_ref).is_some() && self.book.apply_fill(f.clone()) {
                        new.push(f);
                    }
                }
                Ok(new)
            }
            other => Err(unexpected(other, "executions")),
        }
    }

    /// Takes an order, fill or position event of this run's orders; returns the fill it
    /// counted for the first time, if it was one (a fill reported again, with its commission
    /// or by a replacement worker catching up, is not new).
    pub fn on_event(&mut self, event: &Event) -> Option<&bridge::protocol::Fill> {
        match event {
            Event::Order(report) => {
                if self.book.order(&report.request.order_ref).is_some() {
                    self.book.apply_report((**report).clone());
                }
                None
            }
            Event::Fill(fill) => {
                let new = self.book.order(&fill.order_ref).is_some()
                    && self.book.apply_fill((**fill).clone());
                if new {
                    self.book.fills().last()
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    fn expect_order(&self, reply: Reply) -> Result<OrderReport, TradeError> {
        match reply {
            Reply::Order(report) => Ok(*report),
            Reply::Error(e) => Err(TradeError::Remote(e)),
            other => Err(unexpected(other, "order")),
        }
    }
}

/// Cancels sent at once by [`Trader::cancel_working`].
pub const CANCELS_AT_ONCE: usize = 16;

/// Asks the broker to cancel `order_ref`.
fn cancel_request(
    sup: &Supervisor,
    order_ref: &str,
    timeout: Duration,
) -> Result<Reply, SupervisorError> {
    sup.request(
        Request::CancelOrder {
            order_ref: order_ref.to_string(),
        },
        timeout,
    )
}

/// The order a signal calls for, given the symbol's position and whether an order of it is
/// still working (then none: orders are not stacked). Long-only: a buy opens `quantity` when
/// flat, a sell closes a long position. Otherwise a buy targets `+quantity` shares and a sell
/// `-quantity`.
pub fn order_for_signal(
    signal: Signal,
    position: f64,
    working: bool,
    quantity: f64,
    long_only: bool,
) -> Option<(Side, f64)> {
    if working {
        return None;
    }
    let target = match (signal, long_only) {
        (Signal::Hold, _) => return None,
        (Signal::Buy, true) if position > 0.0 => return None,
        (Signal::Buy, _) => quantity,
        (Signal::Sell, true) => 0.0,
        (Signal::Sell, false) => -quantity,
    };
    let delta = target - position;
    if delta > 0.0 {
        Some((Side::Buy, delta))
    } else if delta < 0.0 {
        Some((Side::Sell, -delta))
    } else {
        None
    }
}

/// What a signal led to ([`trade_on`]).
#[derive(Debug)]
pub enum Traded {
    /// The signal calls for no order (a hold, a buy while long, a working order already).
    Nothing,
    /// The broker took the order with this reference (whatever became of it after).
    Placed(String),
    /// The order was not placed, for this reason (a risk limit, the broker, the worker).
    Refused(TradeError),
}

impl Traded {
    /// The reference of the order placed, if one was.
    pub fn order_ref(&self) -> Option<&str> {
        match self {
            Traded::Placed(r) => Some(r),
            Traded::Nothing | Traded::Refused(_) => None,
        }
    }
}

/// Places the order `signal` calls for on `symbol` (last price `price`) through `t`, sized
/// and timed as `cfg.trading` says, if any.
pub fn trade_on(
    t: &mut Trader<&Supervisor>,
    cfg: &Config,
    symbol: &str,
    signal: Signal,
    price: f64,
) -> Traded {
    // What the reports tell counts too: a fill whose event is late or lost must not make
    // the strategy buy again.
    let position = t.book().traded(symbol);
    let working = t.book().working().any(|o| o.request.symbol == symbol);
    let Some((side, quantity)) = order_for_signal(
        signal,
        position,
        working,
        cfg.trading.quantity,
        cfg.trading.long_only,
    ) else {
        return Traded::Nothing;
    };
    let order = OrderRequest {
        order_ref: t.next_ref(),
        symbol: symbol.to_string(),
        side,
        quantity,
        order_type: OrderType::Market,
        tif: cfg.trading.tif,
    };
    let order_ref = order.order_ref.clone();
    match t.place(order, Some(price)) {
        Ok(report) => {
            tracing::info!(
                %symbol,
                %order_ref,
                %side,
                quantity,
                status = %report.status,
                "order placed on a {signal} signal"
            );
            Traded::Placed(order_ref)
        }
        Err(err) => {
            tracing::warn!(%symbol, "no order on a {signal} signal: {err}");
            Traded::Refused(err)
        }
    }
}

/// Whether a failed placement may still have reached the broker.
fn fate_unknown(e: &TradeError) -> bool {
    use bridge::protocol::ErrorKind as K;
    match e {
        TradeError::Limit(_) => false,
        TradeError::Remote(r) => !matches!(
            r.kind,
            K::BadRequest | K::UnknownSymbol | K::LiveAccount | K::NotPermitted
        ),
        TradeError::Supervisor(_) => true,
    }
}

fn unexpected(reply: Reply, to: &'static str) -> TradeError {
    match reply {
        Reply::Error(e) => TradeError::Remote(e),
        other => TradeError::Supervisor(SupervisorError::Protocol(ProtocolError::unexpected(
            other, to,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_only_buys_when_flat_and_sells_to_flat() {
        let q = 10.0;
        assert_eq!(
            order_for_signal(Signal::Buy, 0.0, false, q, true),
            Some((Side::Buy, 10.0))
        );
        assert_eq!(order_for_signal(Signal::Buy, 10.0, false, q, true), None);
        assert_eq!(
            order_for_signal(Signal::Sell, 10.0, false, q, true),
            Some((Side::Sell, 10.0))
        );
        assert_eq!(order_for_signal(Signal::Sell, 0.0, false, q, true), None);
        assert_eq!(order_for_signal(Signal::Hold, 0.0, false, q, true), None);
        // An order still working: nothing stacked on it.
        assert_eq!(order_for_signal(Signal::Buy, 0.0, true, q, true), None);
    }

    #[test]
    fn long_and_short_targets_the_quantity_either_way() {
        let q = 10.0;
        assert_eq!(
            order_for_signal(Signal::Sell, 10.0, false, q, false),
            Some((Side::Sell, 20.0))
        );
        assert_eq!(
            order_for_signal(Signal::Buy, -10.0, false, q, false),
            Some((Side::Buy, 20.0))
        );
        assert_eq!(order_for_signal(Signal::Buy, 10.0, false, q, false), None);
    }

    #[test]
    fn a_live_account_is_refused_unless_allowed() {
        let paper = vec!["DU123".to_string()];
        let mixed = vec!["DU123".to_string(), "U999".to_string()];
        assert!(check_accounts(BackendKind::Ibkr, &paper, false).is_ok());
        let e = check_accounts(BackendKind::Ibkr, &mixed, false).unwrap_err();
        assert_eq!(e.live, vec!["U999".to_string()]);
        assert_eq!(
            e.to_string(),
            "the ibkr broker manages a live account (U999): trading refused; set \
             trading.allow_live = true to trade on it"
        );
        assert!(check_accounts(BackendKind::Ibkr, &mixed, true).is_ok());
    }

    #[test]
    fn references_are_valid_unique_and_differ_between_runs() {
        let mut a = References::new();
        let mut b = References::new();
        let ra: Vec<String> = (0..3).map(|_| a.next_ref()).collect();
        assert!(ra.iter().all(|r| bridge::protocol::valid_order_ref(r)));
        assert_eq!(ra[0].rsplit_once('-').unwrap().1, "1");
        assert_eq!(ra[2].rsplit_once('-').unwrap().1, "3");
        assert_ne!(ra[0], b.next_ref());
    }
}
