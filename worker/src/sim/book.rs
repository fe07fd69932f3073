//! The simulated broker's book: the orders of the journal with what has been worked out of
//! them so far ([`Book`], [`Order`]), what changed since it was last told ([`Changes`]), and
//! the positions the fills add up to.
//!
//! Invariants: an order's fills only grow; its status is a function of its fills, its
//! cancel, its expiry and the time asked about; positions are worked out from every fill in
//! time order, so every process that reads the same journal finds the same. The book's
//! indexes only skip work: an order out of `open` fills no more, one out of `untold` has
//! nothing left to tell, until a cancel or change of it is applied (which puts it back), so
//! a pass over them finds exactly what a pass over every order would.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use bridge::protocol::{Fill, OrderReport, OrderRequest, OrderStatus, OrderType, Position};

use super::folded::Fold;
use super::journal::JournalClock;

/// One order in the book, with what has been worked out of it so far.
#[derive(Debug, Clone)]
pub(super) struct Order {
    pub(super) id: i64,
    /// When the broker took it.
    pub(super) placed_at: i64,
    pub(super) request: OrderRequest,
    pub(super) rejected: Option<String>,
    pub(super) cancelled_at: Option<i64>,
    /// A day order's end: no fill at or after it.
    pub(super) expires: Option<i64>,
    /// Start of the next bar not yet looked at.
    pub(super) next_bar: i64,
    pub(super) fills: Vec<Fill>,
    /// The quantity and type as placed, and each change since with its time: a bar fills by
    /// the last change made before it began.
    pub(super) placed_as: (f64, OrderType),
    pub(super) changes: Vec<(i64, f64, OrderType)>,
    /// The status and number of fills last told by the broker's poll.
    pub(super) told: Option<(OrderStatus, usize)>,
    /// When it was found told final with every fill (it left `untold`).
    pub(super) told_at: Option<Instant>,
}

impl Order {
    pub(super) fn filled(&self) -> f64 {
        self.fills.iter().map(|f| f.quantity).sum()
    }

    /// Whether everything about it was known at market time `t`: taken by then, final by
    /// then, every fill of it by then.
    pub(super) fn settled_by(&self, t: i64) -> bool {
        self.placed_at <= t && self.fills.iter().all(|f| f.time <= t) && self.status(t).0.is_final()
    }

    /// Whether a bar may still fill it: not rejected, shares left on its next bar's terms,
    /// not cancelled or expired by then. Once false it stays false until a cancel or change
    /// of it is applied (fills only grow, its next bar only moves on).
    pub(super) fn may_fill(&self) -> bool {
        let bar = self.next_bar;
        let (quantity, _) = self.terms_at(bar);
        self.rejected.is_none()
            && quantity - self.filled() > 0.0
            && self.cancelled_at.is_none_or(|c| bar <= c)
            && self.expires.is_none_or(|e| bar < e)
    }

    pub(super) fn remaining(&self) -> f64 {
        (self.request.quantity - self.filled()).max(0.0)
    }

    /// The quantity and type in force for the bar starting at `bar`.
    pub(super) fn terms_at(&self, bar: i64) -> (f64, OrderType) {
        self.changes
            .iter()
            .rev()
            .find(|(t, _, _)| *t < bar)
            .map_or(self.placed_as, |&(_, q, k)| (q, k))
    }

    /// The status at market time `now` (fills up to `now` already worked out).
    pub(super) fn status(&self, now: i64) -> (OrderStatus, Option<String>) {
        if let Some(why) = &self.rejected {
            return (OrderStatus::Rejected, Some(why.clone()));
        }
        if self.remaining() <= 0.0 {
            return (OrderStatus::Filled, None);
        }
        if self.cancelled_at.is_some_and(|c| c <= now) {
            return (OrderStatus::Cancelled, Some("cancelled".into()));
        }
        if self.expires.is_some_and(|e| e <= now) {
            return (
                OrderStatus::Cancelled,
                Some("day order expired at the end of the day".into()),
            );
        }
        if self.fills.is_empty() {
            (OrderStatus::Working, None)
        } else {
            (OrderStatus::PartiallyFilled, None)
        }
    }

    pub(super) fn report(&self, now: i64) -> OrderReport {
        let (status, reason) = self.status(now);
        let filled = self.filled();
        let avg_price = (filled > 0.0)
            .then(|| self.fills.iter().map(|f| f.quantity * f.price).sum::<f64>() / filled);
        OrderReport {
            request: self.request.clone(),
            broker_id: self.id,
            status,
            filled,
            avg_price,
            reason,
        }
    }
}

/// What changed while the book was brought up to date: to be sent as events.
#[derive(Debug, Default)]
pub struct Changes {
    /// The market time they were worked out at.
    pub at: i64,
    /// New executions, oldest first.
    pub fills: Vec<Fill>,
    /// Orders whose status or fills changed.
    pub orders: Vec<OrderReport>,
    /// Positions of the symbols that traded.
    pub positions: Vec<Position>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.fills.is_empty() && self.orders.is_empty()
    }
}

/// The book: every order of the journal not folded, in the order the broker took them, and
/// the totals of the folded ones.
#[derive(Debug, Default)]
pub(super) struct Book {
    /// The journal's clock, once read.
    pub(super) clock: Option<JournalClock>,
    /// The device and inode of the journal file read, if known: another file at its path
    /// is read again from the start.
    pub(super) file_id: Option<(u64, u64)>,
    /// What the orders folded out of the book add up to.
    pub(super) fold: Fold,
    pub(super) orders: Vec<Order>,
    pub(super) by_ref: HashMap<String, usize>,
    /// Bytes of the journal read (complete lines only).
    pub(super) read_to: u64,
    /// Orders taken by this worker (for the injected crash).
    pub(super) taken_here: u64,
    /// The latest time of an entry, and of a pass over the book.
    pub(super) last_time: i64,
    /// What the runner heard already (the market time of the last changes told to it by an
    /// earlier worker): taken by the first pass that tells changes, which tells none of the
    /// orders settled by then.
    pub(super) heard_through: Option<i64>,
    /// Orders a bar may still fill, by index ([`Order::may_fill`]).
    pub(super) open: BTreeSet<usize>,
    /// Orders that may still have something to tell, by index: every other one was told
    /// final with all its fills. Holds every order that is not final.
    pub(super) untold: BTreeSet<usize>,
    /// The largest broker id taken.
    pub(super) max_id: i64,
    /// The cash flows of the folded orders and of the first `.0` orders' fills, added up in
    /// order: orders out of `open`, whose fills are all there.
    pub(super) settled_flows: Cell<(usize, f64)>,
}

impl Book {
    /// A cancel or change of order `i` was applied: it is looked at again by every pass.
    pub(super) fn reopen(&mut self, i: usize) {
        self.open.insert(i);
        self.untold.insert(i);
        if i < self.settled_flows.get().0 {
            self.settled_flows.set((0, self.fold.cash_flows));
        }
    }
}

/// Net shares and average cost per symbol: the folded orders' positions, then every fill of
/// the book in time order.
pub(super) fn positions(book: &Book) -> BTreeMap<String, (f64, f64)> {
    let mut fills: Vec<&Fill> = book.orders.iter().flat_map(|o| &o.fills).collect();
    fills.sort_by(|a, b| fill_key(a).cmp(&fill_key(b)));
    let mut out = book.fold.base.clone();
    for f in fills {
        add_fill(out.entry(f.symbol.clone()).or_default(), f);
    }
    out
}

/// What fill `f` brings to the account's cash (a buy takes, a sell brings; commission
/// taken).
pub(super) fn cash_flow(f: &Fill) -> f64 {
    -f.side.sign() * f.quantity * f.price - f.commission.unwrap_or(0.0)
}

/// The order in which fills add up to positions.
pub(super) fn fill_key(f: &Fill) -> (i64, &str) {
    (f.time, &f.exec_id)
}

/// Adds fill `f` to the position `(shares, average cost)` of its symbol.
pub(super) fn add_fill((q, avg): &mut (f64, f64), f: &Fill) {
    let delta = f.side.sign() * f.quantity;
    let next = *q + delta;
    if *q == 0.0 || (*q > 0.0) == (delta > 0.0) {
        // Opening or adding: the average moves.
        *avg = (*avg * q.abs() + f.price * f.quantity) / next.abs();
    } else if next == 0.0 {
        *avg = 0.0;
    } else if (next > 0.0) != (*q > 0.0) {
        // Through zero: what is left was opened at this fill's price.
        *avg = f.price;
    }
    *q = next;
}
