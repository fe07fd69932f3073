//! The runner's view of its orders, fills and positions ([`OrderBook`]).
//!
//! Invariants: reports come from several places (the reply to a placement, order events, a replacement
//! worker catching up on what happened while no worker watched, a listing of the broker's
//! orders), in any order and some more than once. The book takes them all and keeps, for each
//! order, a state that never goes backwards: a status only ever moves forward in
//! [`OrderStatus`]'s order and stops at the first final one, and the filled quantity only
//! grows. A fill is counted once, by its execution id, whichever way and however often it
//! arrives; a later report of the same fill may only add its commission.
//!
//! Positions and profit are the book's own, from the fills it counted: average cost per
//! symbol, realised profit when a position is reduced, unrealised at the last price seen.
//!
//! Nothing grows with the number of orders: an order that is final, whose fills are all
//! counted and carry their commission, is finished (a filled one once its fills add up to its
//! whole quantity, whatever a report says it filled: an open-order update may say `Filled`
//! with nothing filled yet); the book keeps the latest [`FINISHED_KEPT`] finished orders with
//! their fills and folds older ones, finished at least [`FOLD_GRACE`] ago, into totals
//! (orders by status, shares traded by symbol, fills counted). A report or fill of a folded
//! order can only be a repeat: the book does not know it any more, and the trader ignores
//! what the book does not know.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bridge::protocol::{Fill, OrderReport, OrderStatus};

/// What applying a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The order was not known: this is its first state.
    New,
    /// The order moved forward (status or fills).
    Advanced,
    /// Nothing new (an older or repeated report).
    Unchanged,
}

/// One symbol's position, from the fills the book counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Holding {
    /// Shares: positive long, negative short.
    pub quantity: f64,
    /// Average cost per share of what is held.
    pub avg_cost: f64,
    /// Profit taken by reducing the position, before commissions.
    pub realised: f64,
    /// Commissions paid.
    pub commissions: f64,
    /// Fills counted.
    pub fills: u64,
}

impl Holding {
    /// Profit of what is held at `price`.
    pub fn unrealised(&self, price: f64) -> f64 {
        self.quantity * (price - self.avg_cost)
    }

    fn add(&mut self, signed: f64, price: f64) {
        let q = self.quantity;
        let next = q + signed;
        if q == 0.0 || (q > 0.0) == (signed > 0.0) {
            self.avg_cost = (self.avg_cost * q.abs() + price * signed.abs()) / next.abs();
        } else {
            // Reducing (and perhaps going through zero): profit on the part closed.
            let closed = signed.abs().min(q.abs());
            self.realised += closed * (price - self.avg_cost) * q.signum();
            if next == 0.0 {
                self.avg_cost = 0.0;
            } else if (next > 0.0) != (q > 0.0) {
                self.avg_cost = price;
            }
        }
        self.quantity = next;
        self.fills += 1;
    }
}

/// Finished orders (final, every fill counted with its commission) the book keeps whole;
/// older ones are folded into totals.
pub const FINISHED_KEPT: usize = 1024;

/// A finished order is folded only once it has been finished this long: a fill of a cancelled
/// or rejected order that was on its way is still counted (IB may fill an order it called
/// inactive).
pub const FOLD_GRACE: Duration = Duration::from_secs(300);

/// Orders by reference, fills by execution id, holdings by symbol.
#[derive(Debug)]
pub struct OrderBook {
    orders: BTreeMap<String, OrderReport>,
    fills: HashMap<String, Fill>,
    /// Execution ids in the order the fills were counted (ids of folded fills are dropped
    /// from time to time).
    fill_order: VecDeque<String>,
    /// Shares filled per order reference, from the fills counted, and their execution ids.
    filled_by_fills: HashMap<String, (f64, Vec<String>)>,
    holdings: BTreeMap<String, Holding>,
    /// Finished orders, oldest first, with when each was found finished, and the same as a set.
    finished: VecDeque<(String, Instant)>,
    finished_set: HashSet<String>,
    /// How many finished orders are kept whole, and how long each at least.
    keep_finished: usize,
    fold_grace: Duration,
    /// What the folded orders add up to.
    folded: Folded,
    /// Fills counted, folded ones included.
    fills_counted: u64,
    /// Reports refused because they would have moved an order back.
    stale_reports: u64,
    /// Fills seen again (counted once).
    repeated_fills: u64,
}

/// The totals of finished orders the book no longer keeps whole.
#[derive(Debug, Default)]
struct Folded {
    by_status: BTreeMap<OrderStatus, usize>,
    /// Shares bought (positive) or sold, by symbol.
    traded: HashMap<String, f64>,
}

impl Default for OrderBook {
    fn default() -> Self {
        OrderBook::with_history(FINISHED_KEPT, FOLD_GRACE)
    }
}

impl OrderBook {
    /// An empty book keeping [`FINISHED_KEPT`] finished orders whole, each at least
    /// [`FOLD_GRACE`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty book keeping `finished` finished orders whole, each at least `grace`.
    pub fn with_history(finished: usize, grace: Duration) -> Self {
        OrderBook {
            orders: BTreeMap::new(),
            fills: HashMap::new(),
            fill_order: VecDeque::new(),
            filled_by_fills: HashMap::new(),
            holdings: BTreeMap::new(),
            finished: VecDeque::new(),
            finished_set: HashSet::new(),
            keep_finished: finished,
            fold_grace: grace,
            folded: Folded::default(),
            fills_counted: 0,
            stale_reports: 0,
            repeated_fills: 0,
        }
    }

    /// Takes a report of an order; never moves it back.
    pub fn apply_report(&mut self, report: OrderReport) -> Applied {
        let order_ref = report.request.order_ref.clone();
        let applied = self.apply_report_inner(report);
        if applied != Applied::Unchanged {
            self.settle(&order_ref);
        }
        applied
    }

    fn apply_report_inner(&mut self, report: OrderReport) -> Applied {
        let Some(current) = self.orders.get_mut(&report.request.order_ref) else {
            self.orders.insert(report.request.order_ref.clone(), report);
            return Applied::New;
        };
        if current.status.is_final() {
            if report != *current {
                self.stale_reports += 1;
            }
            return Applied::Unchanged;
        }
        let forward = report.status > current.status || report.filled > current.filled;
        let backward = report.status < current.status || report.filled < current.filled;
        if backward {
            self.stale_reports += 1;
        }
        if !forward {
            return Applied::Unchanged;
        }
        if report.status >= current.status {
            current.status = report.status;
            if report.reason.is_some() {
                current.reason = report.reason;
            }
        }
        if report.filled > current.filled {
            current.filled = report.filled;
            current.avg_price = report.avg_price;
        }
        if report.broker_id != 0 {
            current.broker_id = report.broker_id;
        }
        Applied::Advanced
    }

    /// Takes the new terms (quantity, limit) of an order that was changed, unless it is final
    /// by now; `false` if it was not known or is final.
    pub fn amend(&mut self, report: &OrderReport) -> bool {
        match self.orders.get_mut(&report.request.order_ref) {
            Some(o) if !o.status.is_final() => {
                o.request = report.request.clone();
                true
            }
            _ => false,
        }
    }

    /// Takes a fill; `false` if it was already counted (only a commission it adds is kept).
    pub fn apply_fill(&mut self, fill: Fill) -> bool {
        let order_ref = fill.order_ref.clone();
        if let Some(known) = self.fills.get_mut(&fill.exec_id) {
            self.repeated_fills += 1;
            if known.commission.is_none() {
                if let Some(c) = fill.commission {
                    known.commission = Some(c);
                    self.holdings.entry(fill.symbol).or_default().commissions += c;
                    self.settle(&order_ref);
                }
            }
            return false;
        }
        let h = self.holdings.entry(fill.symbol.clone()).or_default();
        h.add(fill.side.sign() * fill.quantity, fill.price);
        h.commissions += fill.commission.unwrap_or(0.0);
        self.fill_order.push_back(fill.exec_id.clone());
        self.fills_counted += 1;
        let by_fills = self.filled_by_fills.entry(order_ref.clone()).or_default();
        by_fills.0 += fill.quantity;
        by_fills.1.push(fill.exec_id.clone());
        self.fills.insert(fill.exec_id.clone(), fill);
        self.settle(&order_ref);
        true
    }

    /// Notes order `order_ref` as finished if it is final and every fill of it is counted
    /// with its commission; folds the oldest finished orders beyond those kept.
    fn settle(&mut self, order_ref: &str) {
        let Some(o) = self.orders.get(order_ref) else {
            return;
        };
        if !o.status.is_final() || self.finished_set.contains(order_ref) {
            return;
        }
        let (by_fills, ids) = self
            .filled_by_fills
            .get(order_ref)
            .map_or((0.0, &[][..]), |(q, ids)| (*q, ids.as_slice()));
        // Shares are whole or fractional to a few places: a millionth of a share is noise. A
        // filled order is complete when its fills make its whole quantity.
        let due = match o.status {
            OrderStatus::Filled => o.request.quantity.max(o.filled),
            _ => o.filled,
        };
        let complete = by_fills + 1e-6 >= due
            && ids
                .iter()
                .all(|id| self.fills.get(id).is_some_and(|f| f.commission.is_some()));
        if !complete {
            return;
        }
        let now = Instant::now();
        self.finished.push_back((order_ref.to_string(), now));
        self.finished_set.insert(order_ref.to_string());
        while self.finished.len() > self.keep_finished
            && self
                .finished
                .front()
                .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= self.fold_grace)
        {
            let Some((oldest, _)) = self.finished.pop_front() else {
                break;
            };
            self.fold(&oldest);
        }
    }

    /// Folds finished order `order_ref` into the totals, forgetting it and its fills.
    fn fold(&mut self, order_ref: &str) {
        self.finished_set.remove(order_ref);
        let Some(o) = self.orders.remove(order_ref) else {
            return;
        };
        let (by_fills, ids) = self.filled_by_fills.remove(order_ref).unwrap_or_default();
        *self.folded.by_status.entry(o.status).or_default() += 1;
        *self
            .folded
            .traded
            .entry(o.request.symbol.clone())
            .or_default() += o.request.side.sign() * o.filled.max(by_fills);
        for id in ids {
            self.fills.remove(&id);
        }
        if self.fill_order.len() > 2 * self.fills.len() + 64 {
            let fills = &self.fills;
            self.fill_order.retain(|id| fills.contains_key(id));
        }
    }

    /// Shares of order `o` filled as far as anything tells: the larger of what its reports
    /// say and what its counted fills add up to (a fill may come before its order's report,
    /// the report before the fill, or the fill not at all, its event lost).
    pub fn filled(&self, o: &OrderReport) -> f64 {
        let by_fills = self
            .filled_by_fills
            .get(&o.request.order_ref)
            .map_or(0.0, |(q, _)| *q);
        o.filled.max(by_fills)
    }

    /// Shares of `symbol` this book's orders bought (positive) or sold, by [`filled`](Self::filled):
    /// what trading decides on, never less than the fills or the reports tell.
    pub fn traded(&self, symbol: &str) -> f64 {
        let kept: f64 = self
            .orders
            .values()
            .filter(|o| o.request.symbol == symbol)
            .map(|o| o.request.side.sign() * self.filled(o))
            .sum();
        kept + self.folded.traded.get(symbol).copied().unwrap_or(0.0)
    }

    /// The order with this reference, if the book keeps it (every working order, and the
    /// latest finished ones).
    pub fn order(&self, order_ref: &str) -> Option<&OrderReport> {
        self.orders.get(order_ref)
    }

    /// Every order kept (working ones and the latest finished), by reference; [`counts`]
    /// counts the folded ones too.
    ///
    /// [`counts`]: Self::counts
    pub fn orders(&self) -> impl Iterator<Item = &OrderReport> {
        self.orders.values()
    }

    /// Orders not yet final.
    pub fn working(&self) -> impl Iterator<Item = &OrderReport> {
        self.orders.values().filter(|o| !o.status.is_final())
    }

    /// Every fill kept (those of the orders kept), in the order counted;
    /// [`fills_counted`](Self::fills_counted) counts the folded ones too.
    pub fn fills(&self) -> impl Iterator<Item = &Fill> {
        self.fill_order.iter().filter_map(|id| self.fills.get(id))
    }

    /// The holding of `symbol` (empty if it never traded).
    pub fn holding(&self, symbol: &str) -> Holding {
        self.holdings.get(symbol).cloned().unwrap_or_default()
    }

    /// Every symbol that traded, with its holding.
    pub fn holdings(&self) -> &BTreeMap<String, Holding> {
        &self.holdings
    }

    /// Fills counted, those of folded orders included.
    pub fn fills_counted(&self) -> u64 {
        self.fills_counted
    }

    /// Reports refused because they were older than what the book knew.
    pub fn stale_reports(&self) -> u64 {
        self.stale_reports
    }

    /// Fills reported more than once (each counted once).
    pub fn repeated_fills(&self) -> u64 {
        self.repeated_fills
    }

    /// Orders of each final status, and working ones (`None`), folded ones included.
    pub fn counts(&self) -> BTreeMap<Option<OrderStatus>, usize> {
        let mut out: BTreeMap<Option<OrderStatus>, usize> = self
            .folded
            .by_status
            .iter()
            .map(|(s, n)| (Some(*s), *n))
            .collect();
        for o in self.orders.values() {
            let key = o.status.is_final().then_some(o.status);
            *out.entry(key).or_default() += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge::protocol::{OrderRequest, OrderType, Side, TimeInForce};

    fn report(status: OrderStatus, filled: f64) -> OrderReport {
        OrderReport {
            request: OrderRequest {
                order_ref: "r1".into(),
                symbol: "SPY".into(),
                side: Side::Buy,
                quantity: 100.0,
                order_type: OrderType::Market,
                tif: TimeInForce::Day,
            },
            broker_id: 7,
            status,
            filled,
            avg_price: (filled > 0.0).then_some(10.0),
            reason: None,
        }
    }

    fn fill(exec_id: &str, side: Side, quantity: f64, price: f64) -> Fill {
        Fill {
            order_ref: "r1".into(),
            exec_id: exec_id.into(),
            symbol: "SPY".into(),
            side,
            quantity,
            price,
            commission: Some(1.0),
            time: 0,
        }
    }

    #[test]
    fn what_was_traded_counts_whichever_of_report_and_fill_came_first() {
        let mut book = OrderBook::new();
        book.apply_report(report(OrderStatus::Working, 0.0));
        assert_eq!(book.traded("SPY"), 0.0);
        // The report of a fill whose event never comes.
        book.apply_report(report(OrderStatus::PartiallyFilled, 40.0));
        assert_eq!(book.traded("SPY"), 40.0);
        assert_eq!(book.holding("SPY").quantity, 0.0, "holdings are the fills'");
        // Fills ahead of the reports.
        book.apply_fill(fill("e1", Side::Buy, 40.0, 10.0));
        book.apply_fill(fill("e2", Side::Buy, 30.0, 10.0));
        assert_eq!(book.traded("SPY"), 70.0);
        book.apply_fill(fill("e2", Side::Buy, 30.0, 10.0));
        assert_eq!(book.traded("SPY"), 70.0, "a fill counted once");
        assert_eq!(book.traded("QQQ"), 0.0);
    }

    #[test]
    fn an_order_never_goes_back_whatever_order_reports_come_in() {
        use OrderStatus::*;
        let mut book = OrderBook::new();
        assert_eq!(book.apply_report(report(Working, 0.0)), Applied::New);
        assert_eq!(
            book.apply_report(report(PartiallyFilled, 40.0)),
            Applied::Advanced
        );
        // An older report (the placement's reply, arriving late) changes nothing.
        assert_eq!(book.apply_report(report(Working, 0.0)), Applied::Unchanged);
        assert_eq!(book.order("r1").unwrap().status, PartiallyFilled);
        assert_eq!(book.order("r1").unwrap().filled, 40.0);
        assert_eq!(book.apply_report(report(Filled, 100.0)), Applied::Advanced);
        // Final is final: a cancel after the fill, or a repeat, changes nothing.
        assert_eq!(
            book.apply_report(report(Cancelled, 100.0)),
            Applied::Unchanged
        );
        assert_eq!(book.apply_report(report(Filled, 100.0)), Applied::Unchanged);
        assert_eq!(book.order("r1").unwrap().status, Filled);
        assert_eq!(book.stale_reports(), 2);
        assert_eq!(book.working().count(), 0);
    }

    #[test]
    fn more_fills_at_the_same_status_move_the_order_forward() {
        let mut book = OrderBook::new();
        book.apply_report(report(OrderStatus::PartiallyFilled, 10.0));
        assert_eq!(
            book.apply_report(report(OrderStatus::PartiallyFilled, 30.0)),
            Applied::Advanced
        );
        assert_eq!(book.order("r1").unwrap().filled, 30.0);
        let mut cancelled = report(OrderStatus::Cancelled, 30.0);
        cancelled.reason = Some("cancelled".into());
        book.apply_report(cancelled);
        assert_eq!(
            book.order("r1").unwrap().reason.as_deref(),
            Some("cancelled")
        );
    }

    #[test]
    fn a_changed_order_takes_its_new_terms_unless_final() {
        let mut book = OrderBook::new();
        book.apply_report(report(OrderStatus::Working, 0.0));
        let mut changed = report(OrderStatus::Working, 0.0);
        changed.request.quantity = 250.0;
        assert_eq!(book.apply_report(changed.clone()), Applied::Unchanged);
        assert!(book.amend(&changed));
        assert_eq!(book.order("r1").unwrap().request.quantity, 250.0);
        book.apply_report(report(OrderStatus::Filled, 100.0));
        assert!(!book.amend(&changed), "a final order keeps its terms");
        assert_eq!(book.order("r1").unwrap().request.quantity, 250.0);
    }

    #[test]
    fn a_fill_is_counted_once_and_may_gain_its_commission_later() {
        let mut book = OrderBook::new();
        let mut first = fill("e1", Side::Buy, 10.0, 100.0);
        first.commission = None;
        assert!(book.apply_fill(first));
        assert!(!book.apply_fill(fill("e1", Side::Buy, 10.0, 100.0)));
        assert!(!book.apply_fill(fill("e1", Side::Buy, 10.0, 100.0)));
        let h = book.holding("SPY");
        assert_eq!(h.quantity, 10.0);
        assert_eq!(h.fills, 1);
        assert_eq!(h.commissions, 1.0, "the commission, once");
        assert_eq!(book.repeated_fills(), 2);
        assert_eq!(book.fills().count(), 1);
    }

    fn numbered(n: u32, status: OrderStatus, filled: f64) -> OrderReport {
        let mut r = report(status, filled);
        r.request.order_ref = format!("r{n}");
        r
    }

    fn numbered_fill(n: u32, quantity: f64) -> Fill {
        let mut f = fill(&format!("e{n}"), Side::Buy, quantity, 10.0);
        f.order_ref = format!("r{n}");
        f
    }

    #[test]
    fn only_the_latest_finished_orders_are_kept_whole_and_the_rest_add_up() {
        let mut book = OrderBook::with_history(3, Duration::ZERO);
        for n in 1..=10 {
            book.apply_report(numbered(n, OrderStatus::Working, 0.0));
            assert!(book.apply_fill(numbered_fill(n, 100.0)));
            book.apply_report(numbered(n, OrderStatus::Filled, 100.0));
        }
        // One more, still working, and one cancelled without a fill.
        book.apply_report(numbered(11, OrderStatus::Working, 0.0));
        book.apply_report(numbered(12, OrderStatus::Cancelled, 0.0));
        let kept: Vec<_> = book.orders().map(|o| o.request.order_ref.clone()).collect();
        assert_eq!(kept, ["r10", "r11", "r12", "r9"]);
        assert_eq!(
            book.fills().map(|f| f.exec_id.as_str()).collect::<Vec<_>>(),
            ["e9", "e10"]
        );
        assert!(book.order("r1").is_none() && book.order("r8").is_none());
        assert_eq!(
            book.counts(),
            BTreeMap::from([
                (None, 1),
                (Some(OrderStatus::Filled), 10),
                (Some(OrderStatus::Cancelled), 1)
            ])
        );
        assert_eq!(book.fills_counted(), 10);
        assert_eq!(book.traded("SPY"), 1000.0);
        let h = book.holding("SPY");
        assert_eq!((h.quantity, h.fills, h.commissions), (1000.0, 10, 10.0));
        // Many more: the book stays at its size.
        for n in 13..=5000 {
            let one_share = |status, filled| {
                let mut r = numbered(n, status, filled);
                r.request.quantity = 1.0;
                r
            };
            book.apply_report(one_share(OrderStatus::Working, 0.0));
            book.apply_fill(numbered_fill(n, 1.0));
            book.apply_report(one_share(OrderStatus::Filled, 1.0));
        }
        assert_eq!(book.orders().count(), 4);
        assert_eq!(book.fills().count(), 3);
        assert!(book.fill_order.len() <= 2 * 3 + 64 + 1);
        assert_eq!(book.fills_counted(), 4998);
        assert_eq!(book.traded("SPY"), 1000.0 + 4988.0);
    }

    #[test]
    fn a_final_order_is_kept_until_every_fill_is_counted_with_its_commission() {
        let mut book = OrderBook::with_history(0, Duration::ZERO);
        book.apply_report(numbered(1, OrderStatus::Filled, 100.0));
        assert!(book.order("r1").is_some(), "its fills are still to come");
        book.apply_fill(numbered_fill(1, 40.0));
        let mut rest = numbered_fill(1, 60.0);
        rest.exec_id = "e1b".into();
        rest.commission = None;
        book.apply_fill(rest.clone());
        assert!(book.order("r1").is_some(), "a commission is still to come");
        assert_eq!(book.traded("SPY"), 100.0);
        rest.commission = Some(2.5);
        assert!(!book.apply_fill(rest));
        assert!(book.order("r1").is_none(), "folded once complete");
        assert_eq!(book.traded("SPY"), 100.0);
        assert_eq!(book.holding("SPY").commissions, 3.5);
        assert_eq!(
            book.counts(),
            BTreeMap::from([(Some(OrderStatus::Filled), 1)])
        );
        // A working order is never folded.
        book.apply_report(numbered(2, OrderStatus::PartiallyFilled, 10.0));
        book.apply_fill(numbered_fill(2, 10.0));
        assert!(book.order("r2").is_some());
        assert_eq!(book.traded("SPY"), 110.0);
    }

    #[test]
    fn a_filled_report_ahead_of_its_fills_does_not_finish_the_order() {
        let mut book = OrderBook::with_history(0, Duration::ZERO);
        // An open-order update: filled, with nothing filled yet.
        book.apply_report(numbered(1, OrderStatus::Filled, 0.0));
        assert!(book.order("r1").is_some());
        book.apply_fill(numbered_fill(1, 60.0));
        assert!(book.order("r1").is_some(), "40 of 100 shares still to come");
        let mut rest = numbered_fill(1, 40.0);
        rest.exec_id = "e1b".into();
        book.apply_fill(rest);
        assert!(book.order("r1").is_none());
        assert_eq!(book.traded("SPY"), 100.0);
    }

    #[test]
    fn a_finished_order_is_folded_only_after_the_grace() {
        let mut book = OrderBook::with_history(0, Duration::from_secs(3600));
        book.apply_report(numbered(1, OrderStatus::Cancelled, 0.0));
        book.apply_report(numbered(2, OrderStatus::Cancelled, 0.0));
        assert_eq!(book.orders().count(), 2, "finished a moment ago: kept");
        // A fill of a cancelled order that was on its way still counts.
        assert!(book.apply_fill(numbered_fill(1, 10.0)));
        assert_eq!(book.traded("SPY"), 10.0);
    }

    #[test]
    fn profit_is_realised_when_a_position_shrinks_and_unrealised_at_the_last_price() {
        let mut book = OrderBook::new();
        book.apply_fill(fill("a", Side::Buy, 10.0, 100.0));
        book.apply_fill(fill("b", Side::Buy, 10.0, 110.0));
        let h = book.holding("SPY");
        assert_eq!(h.avg_cost, 105.0);
        assert_eq!(h.unrealised(120.0), 300.0);
        book.apply_fill(fill("c", Side::Sell, 5.0, 125.0));
        let h = book.holding("SPY");
        assert_eq!(h.quantity, 15.0);
        assert_eq!(h.avg_cost, 105.0);
        assert_eq!(h.realised, 100.0);
        // Through zero: short 5 opened at 90.
        book.apply_fill(fill("d", Side::Sell, 20.0, 90.0));
        let h = book.holding("SPY");
        assert_eq!(h.quantity, -5.0);
        assert_eq!(h.avg_cost, 90.0);
        assert_eq!(h.realised, 100.0 - 15.0 * 15.0);
        assert_eq!(h.unrealised(80.0), 50.0);
        assert_eq!(h.commissions, 4.0);
    }
}
