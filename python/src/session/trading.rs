//! A session's trading ([`Desk`]): the runner's own [`Trader`] (its book, its risk limits,
//! its exactly-once placement) over the session's supervisor, and the order events the
//! workers tell, handed to it.
//!
//! Invariants: nothing is sent unless trading is on (`trade=True`, or `trading.enabled` in
//! the configuration) and the account may be traded (a live one only with
//! `trading.allow_live`); an order that is malformed or over a limit is refused before
//! anything leaves; an order's reference is made before anything is sent, and the same
//! reference is always the same order; one trader per connection (a new connect makes a new
//! one); once the session closes no order is sent (checked under the trader's lock, so a
//! placement either ends before the cancel on close or sends nothing); the pump never waits
//! for the trader (a call may hold it for a whole round trip): it queues the order events
//! and takes them into the book only if the trader is free, and whoever holds the trader
//! takes them when done ([`Desk::digest`]); every change the book takes in (a fill counted,
//! an order's status, fills or terms) is told to Python once, in the order taken
//! ([`Desk::events`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bridge::protocol::{
    Event, Fill, OrderChange, OrderReport, OrderRequest, OrderStatus, OrderType, Reply, Request,
    Side, TimeInForce,
};
use parking_lot::Mutex;
use pyo3::prelude::*;
use runner::config::Config;
use runner::supervisor::Supervisor;
use runner::trader::{References, TradeError, Trader};

use crate::failure::{Failure, FailureKind};
use crate::mailbox::{self, Mailbox};

/// An order as Python takes it: (ref, symbol, side, quantity, limit, tif, status, filled,
/// average price, reason, broker id).
pub(crate) type OrderTuple = (
    String,
    String,
    &'static str,
    f64,
    Option<f64>,
    &'static str,
    &'static str,
    f64,
    Option<f64>,
    Option<String>,
    i64,
);

/// A fill as Python takes it: (execution id, ref, symbol, side, quantity, price, commission,
/// time).
pub(crate) type FillTuple = (
    String,
    String,
    String,
    &'static str,
    f64,
    f64,
    Option<f64>,
    i64,
);

/// A position as Python takes it: (account, symbol, quantity, average cost).
pub(crate) type PositionTuple = (String, String, f64, f64);

/// Order events kept for the trader between two calls, at most: beyond, the oldest are
/// dropped (the book learns what they said from the order's next report).
const HEARD_KEPT: usize = 65_536;

/// Order events kept for Python until it takes them, at most: beyond, the oldest are
/// dropped and counted.
const TOLD_KEPT: usize = 65_536;

/// A change of the book, as Python is told it.
pub(crate) enum Told {
    Order(OrderTuple),
    Fill(FillTuple),
}

impl<'py> IntoPyObject<'py> for Told {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        match self {
            Told::Order(o) => ("order", o).into_pyobject(py).map(|t| t.into_any()),
            Told::Fill(f) => ("fill", f).into_pyobject(py).map(|t| t.into_any()),
        }
    }
}

/// What of an order, once changed, is told: its status, fills and terms.
type Told4 = (OrderStatus, u64, u64, Option<u64>);

/// What Python has been told of the book so far.
#[derive(Default)]
struct Said {
    /// Per order held in the book: its state when last told.
    orders: HashMap<String, Told4>,
    /// The book's count of fills when last told.
    fills: u64,
}

/// The session's trader, and the events of orders the pump took, waiting for it.
pub(super) struct Desk {
    /// Whether the session trades: nothing is queued otherwise.
    enabled: bool,
    trader: Mutex<Option<Slot>>,
    heard: Mutex<VecDeque<Event>>,
    /// The session's order references, made without waiting for the trader.
    refs: Mutex<References>,
    /// Set once the session closes: no order is sent from then on.
    closing: AtomicBool,
    /// Set once the close is done with the book (its cancel on close told).
    settled: AtomicBool,
    /// The book's changes, on their way to Python.
    pub(super) events: Mailbox<Told>,
    said: Mutex<Said>,
}

/// The trader of one connection, and whether it has counted the broker's positions yet.
pub(super) struct Slot {
    trader: Trader<Arc<Supervisor>>,
    positions_counted: bool,
}

impl Desk {
    pub(super) fn new(enabled: bool) -> Desk {
        Desk {
            enabled,
            trader: Mutex::new(None),
            heard: Mutex::new(VecDeque::new()),
            refs: Mutex::new(References::new()),
            closing: AtomicBool::new(false),
            settled: AtomicBool::new(false),
            events: Mailbox::new("order events", TOLD_KEPT),
            said: Mutex::new(Said::default()),
        }
    }

    /// A new reference for an order of this session's.
    pub(super) fn next_ref(&self) -> String {
        self.refs.lock().next_ref()
    }

    /// Queues an order or fill event for the trader (the pump's side: it never waits).
    pub(super) fn heard(&self, event: &Event) {
        if self.enabled && matches!(event, Event::Order(_) | Event::Fill(_)) {
            let mut heard = self.heard.lock();
            if heard.len() == HEARD_KEPT {
                heard.pop_front();
            }
            heard.push_back(event.clone());
            drop(heard);
            self.digest();
        }
    }

    /// Takes the events heard into the book, unless a call holds the trader (it takes them
    /// when it is done): never waits. Called after every event queued and every call, so
    /// that an event is taken in by one or the other.
    pub(super) fn digest(&self) {
        loop {
            if self.heard.lock().is_empty() {
                return;
            }
            let Some(mut guard) = self.trader.try_lock() else {
                return;
            };
            let Some(slot) = guard.as_mut() else {
                // No trader yet: none of the orders told is this session's.
                self.heard.lock().clear();
                return;
            };
            let wakers = self.take_heard(&mut slot.trader);
            drop(guard);
            wakers.into_iter().for_each(|w| mailbox::wake(Some(w)));
        }
    }

    /// Runs `f` with the trader of `sup`'s connection (made on first use), after it took
    /// the events heard so far.
    fn with<R>(
        &self,
        cfg: &Config,
        sup: Arc<Supervisor>,
        f: impl FnOnce(&mut Slot) -> Result<R, Failure>,
    ) -> Result<R, Failure> {
        trading_on(cfg)?;
        let mut slot = self.trader.lock();
        // Under the lock: a close's cancel has either run (and this call sends nothing) or
        // waits for this call.
        if self.closing.load(Ordering::Acquire) {
            return Err(Failure::closed());
        }
        let current = slot
            .as_ref()
            .is_some_and(|s| std::ptr::eq(s.trader.supervisor(), &*sup));
        if !current {
            // A new connection's (or the first): its events start now.
            self.heard.lock().clear();
            let trader = Trader::new(sup, cfg)
                .map_err(|e| Failure::new(FailureKind::Config, e.to_string()))?;
            *slot = Some(Slot {
                trader,
                positions_counted: false,
            });
        }
        let Some(held) = slot.as_mut() else {
            return Err(Failure::new(FailureKind::Error, "no trader"));
        };
        let mut wakers = self.take_heard(&mut held.trader);
        let result = f(held);
        // What came during the call (a fill of the order just placed) before the states the
        // call made: a fill is told before the state it made.
        wakers.extend(self.take_heard(&mut held.trader));
        wakers.extend(self.tell(&held.trader, None));
        drop(slot);
        wakers.into_iter().for_each(|w| mailbox::wake(Some(w)));
        // What came while the call held the trader.
        self.digest();
        result
    }

    /// Takes the events heard into the book, telling each change; the wakers to call once
    /// the trader is let go.
    fn take_heard(&self, trader: &mut Trader<Arc<Supervisor>>) -> Vec<Py<PyAny>> {
        let heard = std::mem::take(&mut *self.heard.lock());
        let mut wakers = Vec::new();
        for event in &heard {
            trader.on_event(event);
            let order_ref = match event {
                Event::Order(o) => &o.request.order_ref,
                Event::Fill(f) => &f.order_ref,
                _ => continue,
            };
            wakers.extend(self.tell(trader, Some(order_ref)));
        }
        wakers
    }

    /// Tells Python what changed in the book since last told: new fills first, then the
    /// order `order_ref` (every order, if `None`). The waker to call, if one waits.
    fn tell(&self, trader: &Trader<Arc<Supervisor>>, order_ref: Option<&str>) -> Option<Py<PyAny>> {
        let book = trader.book();
        let mut said = self.said.lock();
        let mut waker = None;
        let mut say = |told: Told| {
            if let Some(w) = self.events.push(told) {
                waker = Some(w);
            }
        };
        let counted = book.fills_counted();
        let new = usize::try_from(counted.saturating_sub(said.fills)).unwrap_or(usize::MAX);
        if new > 0 {
            let kept: Vec<&Fill> = book.fills().collect();
            for f in &kept[kept.len().saturating_sub(new)..] {
                say(Told::Fill(fill_tuple(f)));
            }
            said.fills = counted;
        }
        let mut note = |o: &OrderReport| {
            let state = told_state(o);
            if said.orders.get(&o.request.order_ref) != Some(&state) {
                said.orders.insert(o.request.order_ref.clone(), state);
                say(Told::Order(order_tuple(o)));
            }
        };
        match order_ref {
            Some(r) => book.order(r).into_iter().for_each(&mut note),
            None => book.orders().for_each(&mut note),
        }
        if said.orders.len() > 2 * book.orders().count() + 64 {
            // Orders folded out of the book are not told again.
            said.orders.retain(|r, _| book.order(r).is_some());
        }
        waker
    }

    /// Places an order through the runner's trader: checked, then sent once (the same
    /// reference placed again is the same order), answered once the broker took it.
    pub(super) fn place_order(
        &self,
        cfg: &Config,
        sup: Arc<Supervisor>,
        asked: Asked,
        order_ref: String,
    ) -> Result<OrderTuple, Failure> {
        // Malformed is refused before anything is sent, and so is trading that is off.
        let request = order_request(
            order_ref,
            asked.symbol,
            &asked.side,
            asked.quantity,
            asked.limit,
            &asked.tif,
        )?;
        trading_on(cfg)?;
        // A market order is valued at the last price, asked for before the trader is taken
        // (it may take a while, and a failure of it is its own).
        let last = match request.order_type {
            OrderType::Limit { .. } => None,
            OrderType::Market => Some(last_price(&sup, cfg, &request.symbol)?),
        };
        self.with(cfg, sup, |slot| {
            if !slot.positions_counted {
                // What the account holds already counts against trading.max_position.
                slot.trader
                    .count_broker_positions()
                    .map_err(trade_failure)?;
                slot.positions_counted = true;
            }
            let t = &mut slot.trader;
            if let Some(known) = t.book().order(&request.order_ref) {
                if known.request != request {
                    return Err(Failure::new(
                        FailureKind::Config,
                        format!(
                            "ref {:?} is an order placed already with other terms",
                            request.order_ref
                        ),
                    ));
                }
                // Placed already: the same order, never a second one. One whose fate was
                // unknown (no answer came) is asked for again under its reference, which
                // the broker takes once.
                if known.status != OrderStatus::Pending {
                    return placed(known);
                }
                return t
                    .place_again(&request)
                    .map_err(trade_failure)
                    .and_then(|r| placed(&r));
            }
            t.place(request, last)
                .map_err(trade_failure)
                .and_then(|r| placed(&r))
        })
    }

    /// Changes a working order of this session's (its total quantity, its limit price):
    /// checked as a new order would be against the limits, less what already filled;
    /// answered once the broker took the change.
    pub(super) fn modify_order(
        &self,
        cfg: &Config,
        sup: Arc<Supervisor>,
        change: OrderChange,
    ) -> Result<OrderTuple, Failure> {
        let order_ref = change.order_ref.clone();
        let current = self.with(cfg, sup.clone(), |slot| {
            Ok(slot.trader.book().order(&order_ref).cloned())
        })?;
        let Some(current) = current else {
            return Err(no_such_order(&order_ref));
        };
        // Refused before anything is sent: a final order, nothing to change, a limit for a
        // market order, a quantity not above what filled.
        change
            .applied_to(&current)
            .map_err(|why| Failure::new(FailureKind::Config, why.to_string()))?;
        let last = match current.request.order_type {
            OrderType::Limit { .. } => None,
            OrderType::Market => Some(last_price(&sup, cfg, &current.request.symbol)?),
        };
        self.with(cfg, sup, |slot| {
            // As the book holds it now (a fill may have come meanwhile).
            let Some(current) = slot.trader.book().order(&order_ref).cloned() else {
                return Err(no_such_order(&order_ref));
            };
            slot.trader
                .modify(&current, change, last)
                .map(|r| order_tuple(&r))
                .map_err(trade_failure)
        })
    }

    /// Cancels the order with this reference; its state after.
    pub(super) fn cancel_order(
        &self,
        cfg: &Config,
        sup: Arc<Supervisor>,
        order_ref: &str,
    ) -> Result<OrderTuple, Failure> {
        self.with(cfg, sup, |slot| {
            if slot.trader.book().order(order_ref).is_none() {
                // Another program's order, or one never placed: not this session's to cancel.
                return Err(no_such_order(order_ref));
            }
            slot.trader
                .cancel(order_ref)
                .map(|r| order_tuple(&r))
                .map_err(trade_failure)
        })
    }

    /// Asks for every working order of this session's to be cancelled; how many were.
    pub(super) fn cancel_all(&self, cfg: &Config, sup: Arc<Supervisor>) -> Result<usize, Failure> {
        self.with(cfg, sup, |slot| Ok(slot.trader.cancel_working()))
    }

    /// This session's orders as its book holds them (working ones and the latest finished).
    pub(super) fn orders(
        &self,
        cfg: &Config,
        sup: Arc<Supervisor>,
    ) -> Result<Vec<OrderTuple>, Failure> {
        self.with(cfg, sup, |slot| {
            Ok(slot.trader.book().orders().map(order_tuple).collect())
        })
    }

    /// This session's fills, each once, in the order counted.
    pub(super) fn fills(
        &self,
        cfg: &Config,
        sup: Arc<Supervisor>,
    ) -> Result<Vec<FillTuple>, Failure> {
        self.with(cfg, sup, |slot| {
            Ok(slot.trader.book().fills().map(fill_tuple).collect())
        })
    }

    /// On close, before the worker stops: no order is sent from now on, and the session's
    /// working orders are cancelled when the configuration says so (`trading.cancel_on_exit`,
    /// on by default). A trading call under way (a placement that may still land) is waited
    /// for, at most the request timeout.
    pub(super) fn cancel_on_close(&self, cfg: &Config) {
        self.closing.store(true, Ordering::Release);
        if self.enabled && cfg.trading.cancel_on_exit {
            self.cancel_working_on_close(cfg);
        }
        // What the pump queued meanwhile is taken in and told before it stops.
        self.digest();
        self.settled.store(true, Ordering::Release);
    }

    /// Whether the close is done with the book: until then the pump reads the workers'
    /// events (fills of orders a cancel on close raced), then it may stop.
    pub(super) fn settled(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }

    fn cancel_working_on_close(&self, cfg: &Config) {
        // A placement under way may take its positions' count and every attempt of it.
        let attempts = runner::trader::TIMEOUT_RETRIES + 2;
        let Some(mut guard) = self.trader.try_lock_for(cfg.request_timeout() * attempts) else {
            tracing::warn!(
                target: "runner",
                "working orders not cancelled on close: a trading call is still under way"
            );
            return;
        };
        let Some(slot) = guard.as_mut() else {
            return;
        };
        let mut wakers = self.take_heard(&mut slot.trader);
        let asked = slot.trader.cancel_working();
        if asked > 0 {
            tracing::info!(target: "runner", asked, "working orders cancelled on close");
        }
        wakers.extend(self.take_heard(&mut slot.trader));
        wakers.extend(self.tell(&slot.trader, None));
        drop(guard);
        wakers.into_iter().for_each(|w| mailbox::wake(Some(w)));
    }
}

/// A placement's answer: the order, or the broker's refusal of it when it is rejected (IB's
/// 201, 203; the book holds it as rejected), with IB's code when its reason gives one.
fn placed(o: &OrderReport) -> Result<OrderTuple, Failure> {
    if o.status != OrderStatus::Rejected {
        return Ok(order_tuple(o));
    }
    let reason = o.reason.as_deref().unwrap_or("no reason given");
    let code = reason
        .strip_prefix("IB ")
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse::<i64>().ok());
    Err(Failure::broker(
        "rejected",
        code,
        format!("order {} rejected: {reason}", o.request.order_ref),
    ))
}

/// The error of a call about an order the session does not hold.
fn no_such_order(order_ref: &str) -> Failure {
    Failure::new(
        FailureKind::Config,
        format!("no order of this session's has the reference {order_ref:?}"),
    )
}

/// What of an order, once changed, is told again.
fn told_state(o: &OrderReport) -> Told4 {
    let limit = match o.request.order_type {
        OrderType::Market => None,
        OrderType::Limit { price } => Some(price.to_bits()),
    };
    (
        o.status,
        o.filled.to_bits(),
        o.request.quantity.to_bits(),
        limit,
    )
}

/// Refuses every trading call of a session that does not trade.
pub(super) fn trading_on(cfg: &Config) -> Result<(), Failure> {
    match cfg.trading.enabled {
        true => Ok(()),
        false => Err(Failure::new(
            FailureKind::Config,
            "trading is off: make the session with Session(..., trade=True)",
        )),
    }
}

/// The last close of `symbol`, to value a market order against the limits; a failure is
/// the request's own (no price, no order).
fn last_price(sup: &Supervisor, cfg: &Config, symbol: &str) -> Result<f64, Failure> {
    runner::by_hand::last_close(sup, cfg, symbol)?.ok_or_else(|| {
        Failure::broker(
            "no_data",
            None,
            format!("no price of {symbol} in the last week to value a market order"),
        )
    })
}

/// The failure of a trading call: a risk limit's refusal names the limit (its kind).
pub(super) fn trade_failure(e: TradeError) -> Failure {
    match e {
        TradeError::Limit(breach) => Failure {
            category: FailureKind::RiskLimit,
            kind: Some(breach.limit.to_string()),
            code: None,
            message: breach.to_string(),
        },
        TradeError::Remote(remote) => Failure::from_remote(&remote),
        TradeError::Supervisor(e) => e.into(),
    }
}

/// The order Python asked for, checked as every backend checks one before it leaves.
pub(super) fn order_request(
    order_ref: String,
    symbol: String,
    side: &str,
    quantity: f64,
    limit: Option<f64>,
    tif: &str,
) -> Result<OrderRequest, Failure> {
    let bad = |m: String| Failure::new(FailureKind::Config, m);
    let side = match side {
        "buy" | "BUY" => Side::Buy,
        "sell" | "SELL" => Side::Sell,
        other => return Err(bad(format!("side: \"buy\" or \"sell\", not {other:?}"))),
    };
    let tif = match tif {
        "DAY" | "day" => TimeInForce::Day,
        "GTC" | "gtc" => TimeInForce::Gtc,
        other => return Err(bad(format!("tif: \"DAY\" or \"GTC\", not {other:?}"))),
    };
    if !(quantity.is_finite() && quantity > 0.0) {
        return Err(bad(format!("quantity: a positive number, not {quantity}")));
    }
    let order_type = match limit {
        None => OrderType::Market,
        Some(price) if price.is_finite() && price > 0.0 => OrderType::Limit { price },
        Some(price) => return Err(bad(format!("limit: a positive price, not {price}"))),
    };
    let request = OrderRequest {
        order_ref,
        symbol,
        side,
        quantity,
        order_type,
        tif,
    };
    match request.check() {
        Err(problem) => Err(bad(problem.to_string())),
        Ok(()) => Ok(request),
    }
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

fn status_name(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Pending => "pending",
        OrderStatus::Working => "working",
        OrderStatus::PartiallyFilled => "partially_filled",
        OrderStatus::Filled => "filled",
        OrderStatus::Cancelled => "cancelled",
        OrderStatus::Rejected => "rejected",
    }
}

/// An order report as Python takes it.
pub(super) fn order_tuple(o: &OrderReport) -> OrderTuple {
    let r = &o.request;
    let limit = match r.order_type {
        OrderType::Market => None,
        OrderType::Limit { price } => Some(price),
    };
    let tif = match r.tif {
        TimeInForce::Day => "DAY",
        TimeInForce::Gtc => "GTC",
    };
    (
        r.order_ref.clone(),
        r.symbol.clone(),
        side_name(r.side),
        r.quantity,
        limit,
        tif,
        status_name(o.status),
        // Never -0.0 (nothing filled, as a backend may say it).
        o.filled + 0.0,
        o.avg_price,
        o.reason.clone(),
        o.broker_id,
    )
}

/// A fill as Python takes it.
pub(super) fn fill_tuple(f: &Fill) -> FillTuple {
    (
        f.exec_id.clone(),
        f.order_ref.clone(),
        f.symbol.clone(),
        side_name(f.side),
        f.quantity,
        f.price,
        f.commission,
        f.time,
    )
}

/// The broker's positions.
pub(super) fn positions(
    sup: &Supervisor,
    timeout: Duration,
) -> Result<Vec<PositionTuple>, Failure> {
    match sup.request(Request::Positions, timeout)? {
        Reply::Positions(ps) => Ok(ps
            .into_iter()
            .map(|p| (p.account, p.symbol, p.quantity, p.avg_cost))
            .collect()),
        Reply::Error(e) => Err(Failure::from_remote(&e)),
        other => Err(Failure::new(
            FailureKind::Error,
            format!("{other:?} to positions"),
        )),
    }
}

/// An account's figures as Python takes them: (account, net liquidation, cash, buying
/// power, currency).
pub(crate) type AccountTuple = (String, f64, f64, f64, String);

/// The account's figures, as the broker says.
pub(super) fn account(sup: &Supervisor, timeout: Duration) -> Result<AccountTuple, Failure> {
    match sup.request(Request::Account, timeout)? {
        Reply::Account(a) => Ok((
            a.account,
            a.net_liquidation,
            a.cash,
            a.buying_power,
            a.currency,
        )),
        Reply::Error(e) => Err(Failure::from_remote(&e)),
        other => Err(Failure::new(
            FailureKind::Error,
            format!("{other:?} to account"),
        )),
    }
}

/// The what of an order Python asks for (its reference apart).
pub(super) struct Asked {
    pub(super) symbol: String,
    pub(super) side: String,
    pub(super) quantity: f64,
    pub(super) limit: Option<f64>,
    pub(super) tif: String,
}
