//! The simulated broker: orders, fills, positions and an account on the simulated market.
//!
//! Like a real broker, its book outlives the worker that placed an order. The book is a
//! journal of what the broker was told (placements, with the broker's decision, and cancels),
//! appended under a file lock by whichever worker (or `runner order`) talks to it; everything
//! else is a pure function of that journal and the market's deterministic prices:
//!
//! - an order fills at the open of the next bar of [`fill_seconds`](SimBrokerOptions) after it
//!   was placed (a buy limit when that open is at or below its price, a sell limit at or above),
//!   with the configured slippage against it, capped at the limit; at most
//!   `max_fill_per_bar` shares per bar, so a large order fills in parts;
//! - a cancel stops fills at bars after its time; a day order expires at the end of its UTC
//!   day;
//! - a buy whose value (at its limit, or the price when placed) exceeds the cash not already
//!   committed to working buys is rejected (the simulated account's buying power).
//!
//! So any worker, first or replacement, computes the same fills with the same execution ids
//! (`<broker id>.<n>`), and an order found in the journal by its reference is never placed
//! twice. A line cut short by a writer killed mid-write is not an order; it is cut off before
//! the next append. The journal's format is in `journal`, the book worked out of it in `book`,
//! how the broker reads and appends to the file in `file`, and how the run's own worker folds
//! settled orders into totals, so that the journal does not grow with time, in `fold`.
//!
//! Invariants: the journal is read and written only under its file lock (exclusive to write);
//! the book is never brought back before a time it was already worked out to; an order's
//! reference is placed at most once, whichever process asks.

use std::path::PathBuf;

use bridge::protocol::{
    AccountSummary, ErrorKind, Fill, OrderChange, OrderReport, OrderRequest, OrderType, Position,
    RemoteError, Side, TimeInForce,
};
use parking_lot::Mutex;

pub use super::book::Changes;
use super::book::{cash_flow, positions, Book, Order};
use super::journal::{file_error, Entry, Locked};
use super::prices::Prices;
use crate::backend::error;
use crate::options::SimBrokerOptions;

/// The simulated account's currency.
pub const CURRENCY: &str = "USD";

/// Most bars of one order looked at in one pass (the rest in the next): a journal with a
/// time far in the past cannot keep the book locked for long.
const BARS_PER_PASS: u32 = 100_000;

/// The simulated broker. Calls may come from many threads.
pub struct SimBroker {
    opts: SimBrokerOptions,
    /// The market's prices, which fills are worked out from.
    prices: Prices,
    account: String,
    book: Mutex<Book>,
    /// When the book was last looked at for orders to fold.
    fold_checked: Mutex<Option<std::time::Instant>>,
}

impl std::fmt::Debug for SimBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimBroker")
            .field("orders_file", &self.opts.orders_file)
            .finish()
    }
}

impl SimBroker {
    /// A broker over the journal of `opts` (or memory), for the market of `prices`; the runner
    /// heard every change of the book up to market time `heard_through` already, if given
    /// (from the workers before this one): orders settled by then are not told again.
    pub fn new(
        opts: SimBrokerOptions,
        prices: Prices,
        account: &str,
        heard_through: Option<i64>,
    ) -> Self {
        SimBroker {
            opts,
            prices,
            account: account.to_string(),
            book: Mutex::new(Book {
                heard_through,
                ..Book::default()
            }),
            fold_checked: Mutex::new(None),
        }
    }

    fn path(&self) -> Option<PathBuf> {
        self.opts.orders_file.as_ref().map(PathBuf::from)
    }

    fn journal_error(&self, what: &str, e: impl std::fmt::Display) -> RemoteError {
        let path = self.opts.orders_file.as_deref().unwrap_or("-");
        error(ErrorKind::Internal, file_error(path, what, e))
    }

    fn apply(&self, book: &mut Book, entry: Entry) {
        match &entry {
            Entry::Place { time, .. } | Entry::Cancel { time, .. } | Entry::Modify { time, .. } => {
                book.last_time = book.last_time.max(*time)
            }
            Entry::Fold { time, .. } => book.last_time = book.last_time.max(*time),
            Entry::Clock(_) | Entry::Base { .. } | Entry::Folded(_) => {}
        }
        match entry {
            Entry::Clock(clock) => book.clock = Some(clock),
            Entry::Fold {
                gen,
                orders,
                max_id,
                cash_flows,
                ..
            } => {
                book.fold.gen = gen;
                book.fold.orders = orders;
                book.fold.cash_flows = cash_flows;
                book.settled_flows.set((0, cash_flows));
                book.max_id = book.max_id.max(max_id);
            }
            Entry::Base {
                symbol,
                quantity,
                avg,
            } => {
                book.fold.base.insert(symbol, (quantity, avg));
            }
            Entry::Folded(run) => book.fold.refs.insert_run(&run),
            Entry::Place {
                time,
                id,
                request,
                rejected,
            } => {
                let size = self.fill_seconds();
                let expires = (request.tif == TimeInForce::Day)
                    .then(|| (time.div_euclid(86_400) + 1) * 86_400);
                let i = book.orders.len();
                book.by_ref.insert(request.order_ref.clone(), i);
                book.open.insert(i);
                book.untold.insert(i);
                book.max_id = book.max_id.max(id);
                let placed_as = (request.quantity, request.order_type);
                book.orders.push(Order {
                    placed_at: time,
                    placed_as,
                    changes: Vec::new(),
                    id,
                    request,
                    rejected,
                    cancelled_at: None,
                    expires,
                    next_bar: (time.div_euclid(size) + 1) * size,
                    fills: Vec::new(),
                    told: None,
                    told_at: None,
                });
            }
            Entry::Cancel { time, order_ref } => {
                if let Some(&i) = book.by_ref.get(&order_ref) {
                    let o = &mut book.orders[i];
                    o.cancelled_at = Some(o.cancelled_at.map_or(time, |c| c.min(time)));
                    book.reopen(i);
                }
            }
            Entry::Modify { time, change } => {
                if let Some(&i) = book.by_ref.get(&change.order_ref) {
                    let o = &mut book.orders[i];
                    if let Some(q) = change.quantity {
                        o.request.quantity = q;
                    }
                    let limit = change.limit;
                    if let (Some(price), OrderType::Limit { .. }) = (limit, o.request.order_type) {
                        o.request.order_type = OrderType::Limit { price };
                    }
                    o.changes
                        .push((time, o.request.quantity, o.request.order_type));
                    book.reopen(i);
                }
            }
        }
    }

    fn fill_seconds(&self) -> i64 {
        i64::from(self.opts.fill_seconds.max(1))
    }

    /// Works out every fill due at bars up to market time `now`. Only the orders a bar may
    /// still fill are looked at; one that can fill no more leaves `open`, one that filled
    /// joins `untold`.
    fn advance(&self, book: &mut Book, now: i64) {
        book.last_time = book.last_time.max(now);
        let size = self.fill_seconds();
        let slip = self.opts.slippage_bps / 10_000.0;
        let Book {
            orders,
            open,
            untold,
            ..
        } = book;
        open.retain(|&i| {
            let Some(o) = orders.get_mut(i) else {
                return false;
            };
            let filled_before = o.fills.len();
            self.fill(o, now, size, slip);
            if o.fills.len() > filled_before {
                untold.insert(i);
            }
            o.may_fill()
        });
    }

    /// Works out the fills of order `o` due at bars up to `now` (at most [`BARS_PER_PASS`]).
    fn fill(&self, o: &mut Order, now: i64, size: i64, slip: f64) {
        if o.rejected.is_some() {
            return;
        }
        let symbol = o.request.symbol.clone();
        for _ in 0..BARS_PER_PASS {
            let bar = o.next_bar;
            let (quantity, kind) = o.terms_at(bar);
            let remaining = quantity - o.filled();
            let open_for_fills = bar <= now
                && remaining > 0.0
                && o.cancelled_at.is_none_or(|c| bar <= c)
                && o.expires.is_none_or(|e| bar < e);
            // A change that raised the quantity of a filled order reopens it only for bars
            // after the change; none before `now` can be missed, as bars are looked at in
            // order.
            if !open_for_fills {
                break;
            }
            // No price (a symbol a recording lacks): the order waits.
            let Some(open) = self.prices.price(&symbol, bar) else {
                break;
            };
            o.next_bar += size;
            let slipped = open * (1.0 + o.request.side.sign() * slip);
            let price = match kind {
                OrderType::Market => slipped,
                OrderType::Limit { price: limit } => match o.request.side {
                    Side::Buy if open <= limit => slipped.min(limit),
                    Side::Sell if open >= limit => slipped.max(limit),
                    _ => continue,
                },
            };
            let quantity = remaining.min(self.opts.max_fill_per_bar.max(1.0));
            o.fills.push(Fill {
                order_ref: o.request.order_ref.clone(),
                exec_id: format!("{:08}.{}", o.id, o.fills.len() + 1),
                symbol: o.request.symbol.clone(),
                side: o.request.side,
                quantity,
                price,
                commission: Some(
                    (quantity * self.opts.commission_per_share).max(self.opts.min_commission),
                ),
                time: bar,
            });
        }
    }

    /// What changed since the last call (at market time `now`), marked as told.
    fn collect(&self, book: &mut Book, now: i64) -> Changes {
        let mut changes = Changes {
            at: now,
            ..Changes::default()
        };
        if let Some(heard) = book.heard_through.take() {
            // Told by an earlier worker: as they stand now, with nothing to tell.
            for o in book.orders.iter_mut().filter(|o| o.settled_by(heard)) {
                o.told = Some((o.status(now).0, o.fills.len()));
            }
        }
        let mut traded = Vec::new();
        let Book {
            orders,
            open,
            untold,
            ..
        } = book;
        // In index order, as a pass over every order would tell them.
        untold.retain(|&i| {
            let Some(o) = orders.get_mut(i) else {
                return false;
            };
            let told_fills = o.told.map_or(0, |(_, n)| n);
            if o.fills.len() > told_fills {
                changes.fills.extend(o.fills[told_fills..].iter().cloned());
                traded.push(o.request.symbol.clone());
            }
            let state = (o.status(now).0, o.fills.len());
            if o.told != Some(state) {
                o.told = Some(state);
                changes.orders.push(o.report(now));
            }
            // Told final with every fill, and no bar fills it: nothing of it changes.
            let untold = !state.0.is_final() || open.contains(&i);
            if !untold {
                o.told_at = Some(std::time::Instant::now());
            }
            untold
        });
        changes
            .fills
            .sort_by(|a, b| (a.time, &a.exec_id).cmp(&(b.time, &b.exec_id)));
        traded.sort();
        traded.dedup();
        let positions = positions(book);
        changes.positions = traded
            .iter()
            .map(|s| self.position(s, positions.get(s).copied().unwrap_or_default()))
            .collect();
        changes
    }

    fn position(&self, symbol: &str, (quantity, avg_cost): (f64, f64)) -> Position {
        Position {
            account: self.account.clone(),
            symbol: symbol.to_string(),
            quantity,
            avg_cost,
        }
    }

    /// Opens the journal (if any), reads it, brings the book to `now` and runs `f`.
    fn with_book<T>(
        &self,
        now: i64,
        exclusive: bool,
        f: impl FnOnce(&Self, &mut Book, Option<&mut Locked>, i64) -> Result<T, RemoteError>,
    ) -> Result<T, RemoteError> {
        let mut book = self.book.lock();
        let mut journal = self.open(&mut book, exclusive)?;
        // Never before what the journal already holds: two processes' clocks may differ a
        // little, and an entry must not reach back before fills already worked out and told.
        let now = now.max(book.last_time);
        self.advance(&mut book, now);
        f(self, &mut book, journal.as_mut(), now)
    }

    /// Brings the book up to market time `now`: what changed since the last poll (whichever
    /// call worked it out), to be told as events. The first poll of a new broker object tells
    /// everything in the journal the runner has not heard (all of it without
    /// `heard_through`), which is how a replacement worker catches the runner up.
    pub fn poll(&self, now: i64) -> Result<Changes, RemoteError> {
        self.with_book(now, false, |b, book, _, now| Ok(b.collect(book, now)))
    }

    /// Takes `request` at market time `now`, unless an order with its reference is already
    /// in the book: then that order is answered and nothing is placed. Returns the report,
    /// whether this call placed it, and how many orders this broker object has taken.
    pub fn place(
        &self,
        request: &OrderRequest,
        now: i64,
    ) -> Result<(OrderReport, bool, u64), RemoteError> {
        self.with_book(now, true, |b, book, j, now| {
            if let Some(&i) = book.by_ref.get(&request.order_ref) {
                let found = &book.orders[i].request;
                if found.symbol != request.symbol || found.side != request.side {
                    return Err(error(
                        ErrorKind::BadRequest,
                        format!(
                            "reference {} is already another order's: {} {} {}",
                            request.order_ref, found.side, found.quantity, found.symbol
                        ),
                    ));
                }
                return Ok((book.orders[i].report(now), false, book.taken_here));
            }
            if book.fold.refs.contains(&request.order_ref) {
                return Err(folded(&request.order_ref));
            }
            let rejected = b.buying_power_problem(book, request, now);
            let Some(id) = book.max_id.checked_add(1) else {
                return Err(b.journal_error("cannot place", "broker ids are used up"));
            };
            b.append(
                book,
                j,
                Entry::Place {
                    time: now,
                    id,
                    request: request.clone(),
                    rejected,
                },
            )?;
            book.taken_here += 1;
            let report = book.orders[book.orders.len() - 1].report(now);
            Ok((report, true, book.taken_here))
        })
    }

    /// Cancels the order with this reference at market time `now` (an order already final
    /// stays as it is). Returns its report.
    pub fn cancel(&self, order_ref: &str, now: i64) -> Result<OrderReport, RemoteError> {
        self.with_book(now, true, |b, book, j, now| {
            let Some(&i) = book.by_ref.get(order_ref) else {
                if book.fold.refs.contains(order_ref) {
                    return Err(folded(order_ref));
                }
                return Err(error(
                    ErrorKind::UnknownOrder,
                    format!("no order with reference {order_ref:?}"),
                ));
            };
            if !book.orders[i].status(now).0.is_final() {
                b.append(
                    book,
                    j,
                    Entry::Cancel {
                        time: now,
                        order_ref: order_ref.to_string(),
                    },
                )?;
            }
            Ok(book.orders[i].report(now))
        })
    }

    /// Changes the quantity or limit of a working order at market time `now`; returns its
    /// report after the change.
    pub fn modify(&self, change: &OrderChange, now: i64) -> Result<OrderReport, RemoteError> {
        self.with_book(now, true, |b, book, j, now| {
            let Some(&i) = book.by_ref.get(&change.order_ref) else {
                if book.fold.refs.contains(&change.order_ref) {
                    return Err(folded(&change.order_ref));
                }
                return Err(error(
                    ErrorKind::UnknownOrder,
                    format!("no order with reference {:?}", change.order_ref),
                ));
            };
            let current = book.orders[i].report(now);
            let changed = change
                .applied_to(&current)
                .map_err(|why| error(ErrorKind::BadRequest, why.to_string()))?;
            if changed.side == Side::Buy {
                // The raised commitment must fit the buying power, as a new buy's would.
                let price = b.reference_price(&changed, now);
                let unfilled = changed.quantity - current.filled;
                let others = b.committed(book, now)
                    - book.orders[i].remaining() * b.reference_price(&current.request, now);
                let available = b.cash(book) - others;
                if unfilled * price > available {
                    return Err(error(
                        ErrorKind::BadRequest,
                        format!(
                            "insufficient buying power: the order would be worth {:.2} \
                             {CURRENCY}, {:.2} available",
                            unfilled * price,
                            available.max(0.0),
                        ),
                    ));
                }
            }
            if changed != current.request {
                b.append(
                    book,
                    j,
                    Entry::Modify {
                        time: now,
                        change: change.clone(),
                    },
                )?;
            }
            Ok(book.orders[i].report(now))
        })
    }

    /// Cancels every working order at market time `now`; returns how many.
    pub fn cancel_all(&self, now: i64) -> Result<u32, RemoteError> {
        self.with_book(now, true, |b, book, mut j, now| {
            // `untold` holds every order that is not final.
            let working: Vec<String> = book
                .untold
                .iter()
                .map(|&i| &book.orders[i])
                .filter(|o| !o.status(now).0.is_final())
                .map(|o| o.request.order_ref.clone())
                .collect();
            for order_ref in &working {
                b.append(
                    book,
                    j.as_deref_mut(),
                    Entry::Cancel {
                        time: now,
                        order_ref: order_ref.clone(),
                    },
                )?;
            }
            Ok(working.len() as u32)
        })
    }

    /// Every order in the book, at market time `now`.
    pub fn orders(&self, now: i64) -> Result<Vec<OrderReport>, RemoteError> {
        self.with_book(now, false, |_, book, _, now| {
            Ok(book.orders.iter().map(|o| o.report(now)).collect())
        })
    }

    /// Every execution up to market time `now`, oldest first.
    pub fn executions(&self, now: i64) -> Result<Vec<Fill>, RemoteError> {
        self.with_book(now, false, |_, book, _, _| {
            let mut fills: Vec<Fill> = book
                .orders
                .iter()
                .flat_map(|o| o.fills.iter().cloned())
                .collect();
            fills.sort_by(|a, b| (a.time, &a.exec_id).cmp(&(b.time, &b.exec_id)));
            Ok(fills)
        })
    }

    /// The positions at market time `now` (symbols traded back to flat are left out).
    pub fn positions(&self, now: i64) -> Result<Vec<Position>, RemoteError> {
        self.with_book(now, false, |b, book, _, _| {
            Ok(positions(book)
                .into_iter()
                .filter(|(_, (q, _))| *q != 0.0)
                .map(|(s, p)| b.position(&s, p))
                .collect())
        })
    }

    /// The account at market time `now`, positions valued at that moment's prices.
    pub fn account(&self, now: i64) -> Result<AccountSummary, RemoteError> {
        self.with_book(now, false, |b, book, _, now| {
            let cash = b.cash(book);
            let value: f64 = positions(book)
                .iter()
                .map(|(s, (q, cost))| q * b.prices.price(s, now).unwrap_or(*cost))
                .sum();
            Ok(AccountSummary {
                account: b.account.clone(),
                net_liquidation: cash + value,
                cash,
                buying_power: (cash - b.committed(book, now)).max(0.0),
                currency: CURRENCY.to_string(),
            })
        })
    }

    /// The starting cash and every fill's flow, added up in order: the flows of the orders
    /// that fill no more, from the first on, are kept added up.
    fn cash(&self, book: &Book) -> f64 {
        let (mut settled, mut sum) = book.settled_flows.get();
        while settled < book.orders.len() && !book.open.contains(&settled) {
            sum = book.orders[settled]
                .fills
                .iter()
                .map(cash_flow)
                .fold(sum, |a, b| a + b);
            settled += 1;
        }
        book.settled_flows.set((settled, sum));
        let flows = book.orders[settled..]
            .iter()
            .flat_map(|o| &o.fills)
            .map(cash_flow)
            .fold(sum, |a, b| a + b);
        self.opts.cash + flows
    }

    /// Cash promised to working buys: their remaining shares at their limit, or at the price
    /// at `now` for market orders.
    fn committed(&self, book: &Book, now: i64) -> f64 {
        // `untold` holds every order that is not final, in index order.
        book.untold
            .iter()
            .map(|&i| &book.orders[i])
            .filter(|o| o.request.side == Side::Buy && !o.status(now).0.is_final())
            .map(|o| o.remaining() * self.reference_price(&o.request, now))
            .sum()
    }

    fn reference_price(&self, r: &OrderRequest, now: i64) -> f64 {
        match r.order_type {
            OrderType::Limit { price } => price,
            OrderType::Market => self.prices.price(&r.symbol, now).unwrap_or(0.0),
        }
    }

    /// Why a buy exceeds the account's buying power, if it does.
    fn buying_power_problem(&self, book: &Book, r: &OrderRequest, now: i64) -> Option<String> {
        if r.side != Side::Buy {
            return None;
        }
        let value = r.quantity * self.reference_price(r, now);
        let available = self.cash(book) - self.committed(book, now);
        (value > available).then(|| {
            format!(
                "insufficient buying power: the order is worth {value:.2} {CURRENCY}, \
                 {:.2} available",
                available.max(0.0)
            )
        })
    }
}

mod file;
pub mod fold;
/// The answer about an order folded out of the book.
fn folded(order_ref: &str) -> RemoteError {
    error(
        ErrorKind::BadRequest,
        format!(
            "order {order_ref} is final and settled long ago: it was folded out of the book \
             (kept only in the totals), and is not placed again"
        ),
    )
}

#[cfg(test)]
mod tests;
