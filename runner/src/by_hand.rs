//! Orders by hand: `runner order buy|sell|cancel`, `runner orders`, `runner positions`.
//!
//! Each command ([`command`]) starts a worker like a run does (any backend and connection
//! settings), does its one thing through the same [`Trader`] (the same references, limits,
//! live-account rule and exactly-once retries as the strategy's orders), prints what happens,
//! and shuts the worker down.
//!
//! Invariants: a command's outcome is [`Ended::Done`] or [`Ended::Failed`] with why (the
//! broker refused, the order ended rejected or cancelled); an error (the worker could not be
//! reached) is not an outcome but the command's failure; an order placed is followed until a
//! final state, the wait or `stop`, and its fills are shown once each.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use bridge::protocol::{
    Event, HistoryRequest, OrderChange, OrderReport, OrderRequest, OrderStatus, OrderType, Reply,
    Request, Side, TimeInForce,
};
use crossbeam_channel::RecvTimeoutError;

use crate::config::{Config, ConfigError};
use crate::launch;
use crate::supervisor::{Supervisor, SupervisorError};
use crate::trader::{TradeError, Trader};
use crate::worker_events::WorkerEvents;
use crate::worker_setup::{SetupError, WorkerSetup};

/// How long the fills of an order already final are waited for.
const FILLS_GRACE: Duration = Duration::from_secs(2);

/// An order to place by hand.
#[derive(Debug, Clone)]
pub struct HandOrder {
    pub side: Side,
    pub symbol: String,
    pub quantity: f64,
    pub limit: Option<f64>,
    pub tif: TimeInForce,
    /// The reference to use (`--ref`); a new one if `None`.
    pub order_ref: Option<String>,
    /// How long to follow the order after the broker took it.
    pub wait: Duration,
}

/// How a command ended. What it has to say goes line by line to the `say` each command is
/// given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It did what was asked.
    Done,
    /// It could not, for this reason (for stderr, with a non-zero exit).
    Failed(String),
}

/// The client name of the commands by hand at a hub, unless `hub.client` names one.
pub const HAND_CLIENT: &str = "hand";

/// Runs a command by hand with the configuration `loaded` and its worker (this very
/// program, or the hub's with `--hub`); prints what it says on stdout and, if it failed, why
/// on stderr: exit 1, or 2 for a configuration error, a machine that cannot host the worker,
/// or a refused live account.
pub fn command(
    loaded: Result<Config, ConfigError>,
    body: impl FnOnce(&Config, WorkerSetup, &AtomicBool, &mut dyn FnMut(&str)) -> Result<Ended>,
) -> ExitCode {
    let (mut cfg, faults) = match launch::start(loaded) {
        Ok(started) => started,
        Err(code) => return code,
    };
    // A journal that cannot be used is told as itself (exit 2), as a configuration problem.
    let told = |e: SetupError| match e {
        SetupError::Journal(problem) => anyhow::Error::new(problem),
        other => SupervisorError::from(other).into(),
    };
    let outcome = launch::with_workers_telling(&mut cfg, faults, told, |cfg, mut setup, stop| {
        // By hand through a hub, one namespace for every command (unless named): a reference
        // given again finds its order, as it does without a hub.
        setup.hub = crate::worker_setup::HubTarget::of(cfg, HAND_CLIENT);
        if let worker::options::BackendOptions::Remote(remote) = &mut setup.options.backend {
            if cfg.hub.client.is_empty() {
                remote.client = HAND_CLIENT.to_string();
            }
        }
        body(cfg, setup, stop, &mut |line: &str| println!("{line}"))
    });
    match outcome {
        Ok(Ended::Done) => ExitCode::SUCCESS,
        Ok(Ended::Failed(why)) => launch::fail(launch::EXIT_FAILED, why),
        Err(e) => launch::failed(&e),
    }
}

/// Runs `f` with a started supervisor and its events; shuts the worker down after.
fn with_worker<T>(
    mut setup: WorkerSetup,
    f: impl FnOnce(&Supervisor, &mut WorkerEvents) -> Result<T>,
) -> Result<T> {
    // Not a run's own worker: what it tells reaches no run, so it folds nothing of the book.
    if let worker::options::BackendOptions::Sim(sim) = &mut setup.options.backend {
        sim.broker.keep_orders = None;
    }
    let (sup, mut events) = Supervisor::start(setup)?;
    let out = f(&sup, &mut events);
    sup.shutdown();
    out
}

/// `runner order buy|sell`: places the order, then prints each state it goes through until a
/// final one, the wait ends, or `stop` is set.
pub fn place(
    cfg: &Config,
    setup: WorkerSetup,
    order: &HandOrder,
    stop: &AtomicBool,
    say: &mut dyn FnMut(&str),
) -> Result<Ended> {
    with_worker(setup, |sup, events| {
        let mut trader = Trader::new(sup, cfg)?;
        let request = order.request(&mut trader);
        if let Err(problem) = request.check() {
            return Ok(Ended::Failed(problem.to_string()));
        }
        let last = match order.limit {
            Some(_) => None,
            None => last_price(sup, cfg, &order.symbol),
        };
        match held_at_broker(sup, cfg, &order.symbol) {
            Ok(held) => trader.held_before(&order.symbol, held),
            Err(why) => {
                return Ok(Ended::Failed(format!(
                    "cannot check trading.max_position: {why}"
                )))
            }
        }
        let report = match trader.place(request.clone(), last) {
            Ok(r) => r,
            Err(e) => return Ok(Ended::Failed(format!("order {}: {e}", request.order_ref))),
        };
        say(&describe(&report));
        follow(&mut trader, events, &report, order.wait, stop, say);
        let last = trader
            .book()
            .order(&request.order_ref)
            .cloned()
            .unwrap_or(report);
        Ok(verdict(&last, order.wait, say))
    })
}

impl HandOrder {
    /// The request of this order, with its own reference or a new one of `trader`'s.
    fn request(&self, trader: &mut Trader<&Supervisor>) -> OrderRequest {
        OrderRequest {
            order_ref: self.order_ref.clone().unwrap_or_else(|| trader.next_ref()),
            symbol: self.symbol.clone(),
            side: self.side,
            quantity: self.quantity,
            order_type: self
                .limit
                .map_or(OrderType::Market, |price| OrderType::Limit { price }),
            tif: self.tif,
        }
    }
}

/// Follows the order `placed` through `events` for at most `wait` (or until `stop`): says each
/// new state and each of its fills once; once the order is final, its fills are still waited
/// for a little ([`FILLS_GRACE`]): they may come after the state that counts them.
fn follow(
    trader: &mut Trader<&Supervisor>,
    events: &mut WorkerEvents,
    placed: &OrderReport,
    wait: Duration,
    stop: &AtomicBool,
    say: &mut dyn FnMut(&str),
) {
    let order_ref = placed.request.order_ref.as_str();
    let mut shown = (placed.status, placed.filled);
    let mut fills_shown = 0.0;
    let deadline = Instant::now() + wait;
    let mut final_since: Option<Instant> = None;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        if let Some(o) = trader.book().order(order_ref) {
            if o.status.is_final() {
                let since = *final_since.get_or_insert_with(Instant::now);
                if fills_shown >= o.filled || since.elapsed() >= FILLS_GRACE {
                    break;
                }
            }
        }
        let tick = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        let event = match events.recv_timeout(tick) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if let Event::Fill(f) = &event {
            if f.order_ref == order_ref && trader.book().fills().all(|k| k.exec_id != f.exec_id) {
                fills_shown += f.quantity;
                say(&format!(
                    "order {}: fill {} @ {:.4}{}",
                    f.order_ref,
                    f.quantity,
                    f.price,
                    f.commission
                        .map_or(String::new(), |c| format!(" (commission {c:.2})"))
                ));
            }
        }
        trader.on_event(&event);
        if let Some(now) = trader.book().order(order_ref) {
            if (now.status, now.filled) != shown {
                shown = (now.status, now.filled);
                say(&describe(now));
            }
        }
    }
}

/// How a placed order ended, as it stands (`last`): failed if rejected or cancelled; one
/// still working after the `wait` stays at the broker, which is said.
fn verdict(last: &OrderReport, wait: Duration, say: &mut dyn FnMut(&str)) -> Ended {
    match last.status {
        OrderStatus::Rejected | OrderStatus::Cancelled => Ended::Failed(format!(
            "order {} {}: {}",
            last.request.order_ref,
            last.status,
            last.reason.as_deref().unwrap_or("no reason given")
        )),
        _ => {
            if !last.status.is_final() {
                say(&format!(
                    "order {}: still {} after {} s; it stays at the broker",
                    last.request.order_ref,
                    last.status,
                    wait.as_secs()
                ));
            }
            Ended::Done
        }
    }
}

/// Shares of `symbol` the broker holds, over every account.
fn held_at_broker(sup: &Supervisor, cfg: &Config, symbol: &str) -> Result<f64, String> {
    match sup.request(Request::Positions, cfg.request_timeout()) {
        Ok(Reply::Positions(ps)) => Ok(ps
            .iter()
            .filter(|p| p.symbol == symbol)
            .map(|p| p.quantity)
            .sum()),
        Ok(Reply::Error(e)) => Err(format!("positions not available: {}", e.message)),
        Ok(other) => Err(format!("unexpected answer to positions: {other:?}")),
        Err(e) => Err(format!("positions not available: {e}")),
    }
}

/// `runner order modify --ref ID [--quantity Q] [--limit P]`: changes a working order.
pub fn modify(
    cfg: &Config,
    setup: WorkerSetup,
    change: OrderChange,
    say: &mut dyn FnMut(&str),
) -> Result<Ended> {
    with_worker(setup, |sup, _| {
        let mut trader = Trader::new(sup, cfg)?;
        let current = match sup.request(Request::Orders, cfg.request_timeout())? {
            Reply::Orders(orders) => orders
                .into_iter()
                .find(|o| o.request.order_ref == change.order_ref),
            Reply::Error(e) => return Ok(Ended::Failed(format!("orders: {}", e.message))),
            other => return Err(anyhow!("unexpected answer to orders: {other:?}")),
        };
        let Some(current) = current else {
            return Ok(Ended::Failed(format!(
                "modify {}: no order with reference {:?}",
                change.order_ref, change.order_ref
            )));
        };
        let symbol = current.request.symbol.clone();
        let last = match current.request.order_type {
            OrderType::Limit { .. } => None,
            OrderType::Market => last_price(sup, cfg, &symbol),
        };
        match held_at_broker(sup, cfg, &symbol) {
            Ok(held) => trader.held_before(&symbol, held),
            Err(why) => {
                return Ok(Ended::Failed(format!(
                    "cannot check trading.max_position: {why}"
                )))
            }
        }
        let order_ref = change.order_ref.clone();
        match trader.modify(&current, change, last) {
            Ok(report) => {
                say(&describe(&report));
                Ok(Ended::Done)
            }
            Err(TradeError::Supervisor(e)) => Err(e.into()),
            Err(e) => Ok(Ended::Failed(format!("modify {order_ref}: {e}"))),
        }
    })
}

/// The last close of `symbol` in the last week of hourly bars, to value a market order
/// against the limits: `None` if the week has no bar with a price.
pub fn last_close(
    sup: &Supervisor,
    cfg: &Config,
    symbol: &str,
) -> Result<Option<f64>, SupervisorError> {
    let req = HistoryRequest {
        symbol: symbol.to_string(),
        bar_seconds: 3600,
        duration_seconds: 7 * 86_400,
        end: None,
    };
    let bars = sup.history(&req, Duration::from_secs(cfg.history.timeout_seconds))?;
    Ok(bars
        .last()
        .map(|b| b.close)
        .filter(|p| p.is_finite() && *p > 0.0))
}

/// [`last_close`], a failure logged (the risk check then refuses the market order).
fn last_price(sup: &Supervisor, cfg: &Config, symbol: &str) -> Option<f64> {
    last_close(sup, cfg, symbol).unwrap_or_else(|e| {
        tracing::warn!(%symbol, "no last price: {e}");
        None
    })
}

/// One line for an order's state.
pub fn describe(o: &OrderReport) -> String {
    let r = &o.request;
    let mut line = format!(
        "order {} (broker #{}): {} {} {} {} {}: {}",
        r.order_ref, o.broker_id, r.side, r.quantity, r.symbol, r.order_type, r.tif, o.status
    );
    if o.filled > 0.0 {
        line.push_str(&format!(", {} filled", o.filled));
        if let Some(p) = o.avg_price {
            line.push_str(&format!(" @ {p:.4}"));
        }
    }
    if let Some(why) = &o.reason {
        line.push_str(&format!(" ({why})"));
    }
    line
}

/// `runner order cancel --ref ID`, or `--all` (`order_ref` `None`).
pub fn cancel(
    cfg: &Config,
    setup: WorkerSetup,
    order_ref: Option<&str>,
    say: &mut dyn FnMut(&str),
) -> Result<Ended> {
    with_worker(setup, |sup, _| {
        let mut trader = Trader::new(sup, cfg)?;
        let Some(order_ref) = order_ref else {
            return match sup.request(Request::CancelAll, cfg.request_timeout())? {
                Reply::CancelledAll { count } => {
                    say(&format!("cancelled {count} working orders"));
                    Ok(Ended::Done)
                }
                Reply::Error(e) => Ok(Ended::Failed(format!("cancel all: {}", e.message))),
                other => Err(anyhow!("unexpected answer to cancel all: {other:?}")),
            };
        };
        match trader.cancel(order_ref) {
            Ok(report) => {
                say(&describe(&report));
                Ok(Ended::Done)
            }
            Err(TradeError::Remote(e)) => {
                Ok(Ended::Failed(format!("cancel {order_ref}: {}", e.message)))
            }
            Err(e) => Err(e.into()),
        }
    })
}

/// `runner orders`: every order the broker knows with a reference.
pub fn orders(cfg: &Config, setup: WorkerSetup, say: &mut dyn FnMut(&str)) -> Result<Ended> {
    with_worker(setup, |sup, _| {
        match sup.request(Request::Orders, cfg.request_timeout())? {
            Reply::Orders(orders) => {
                let folded = match sup.request(Request::FoldedOrders, cfg.request_timeout())? {
                    Reply::Folded(runs) => runs,
                    Reply::Error(e) => {
                        return Ok(Ended::Failed(format!("folded orders: {}", e.message)))
                    }
                    other => return Err(anyhow!("unexpected answer to folded orders: {other:?}")),
                };
                if orders.is_empty() && folded.is_empty() {
                    say("no orders");
                }
                for o in &orders {
                    say(&describe(o));
                }
                if !folded.is_empty() {
                    say(&describe_folded(&folded));
                }
                Ok(Ended::Done)
            }
            Reply::Error(e) => Ok(Ended::Failed(format!("orders: {}", e.message))),
            other => Err(anyhow!("unexpected answer to orders: {other:?}")),
        }
    })
}

/// The orders folded out of the broker's book, in a line: how many, and their references
/// (the first few runs of them).
fn describe_folded(runs: &[bridge::protocol::RefRun]) -> String {
    const SHOWN: usize = 3;
    let count: u64 = runs.iter().map(|r| r.len()).sum();
    let mut refs: Vec<String> = runs.iter().take(SHOWN).map(|r| r.to_string()).collect();
    if runs.len() > SHOWN {
        refs.push(format!("{} more runs", runs.len() - SHOWN));
    }
    format!(
        "{count} earlier order{} final and settled, folded into the book's totals: {}",
        if count == 1 { "" } else { "s" },
        refs.join(", ")
    )
}

/// `runner positions`: the positions and the account's figures.
pub fn positions(cfg: &Config, setup: WorkerSetup, say: &mut dyn FnMut(&str)) -> Result<Ended> {
    with_worker(setup, |sup, _| {
        match sup.request(Request::Positions, cfg.request_timeout())? {
            Reply::Positions(ps) => {
                if ps.is_empty() {
                    say("no positions");
                } else {
                    say(&format!(
                        "{:<12} {:<8} {:>12} {:>12}",
                        "account", "symbol", "position", "avg cost"
                    ));
                }
                for p in &ps {
                    say(&format!(
                        "{:<12} {:<8} {:>12} {:>12.4}",
                        p.account, p.symbol, p.quantity, p.avg_cost
                    ));
                }
            }
            Reply::Error(e) => return Ok(Ended::Failed(format!("positions: {}", e.message))),
            other => return Err(anyhow!("unexpected answer to positions: {other:?}")),
        }
        match sup.request(Request::Account, cfg.request_timeout())? {
            Reply::Account(a) => say(&format!(
                "account {}: net liquidation {:.2} {cur}, cash {:.2} {cur}, buying power {:.2} {cur}",
                a.account,
                a.net_liquidation,
                a.cash,
                a.buying_power,
                cur = a.currency
            )),
            Reply::Error(e) => return Ok(Ended::Failed(format!("account: {}", e.message))),
            other => return Err(anyhow!("unexpected answer to account: {other:?}")),
        }
        Ok(Ended::Done)
    })
}
