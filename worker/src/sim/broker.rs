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
//! the next append.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use bridge::protocol::{
    AccountSummary, ErrorKind, Fill, OrderChange, OrderReport, OrderRequest, OrderStatus,
    OrderType, Position, RemoteError, Side, TimeInForce,
};
use parking_lot::Mutex;

use super::PricePath;
use crate::backend::error;
use crate::options::SimBrokerOptions;

/// The simulated account's currency.
pub const CURRENCY: &str = "USD";

/// The market clock a journal's times are read on: market time `start` (Unix seconds) at
/// wall-clock Unix milliseconds `anchor_ms`, running `speed` times real time. A journal
/// starts with it, and every run that uses the journal runs its market on it, so that the
/// times of the book mean the same to every process that reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JournalClock {
    /// Market time at `anchor_ms`.
    pub start: i64,
    /// Wall-clock Unix milliseconds.
    pub anchor_ms: u64,
    /// Simulated seconds per real second.
    pub speed: f64,
    /// The seed of the market's prices: the book's fills are worked out from them.
    pub seed: u64,
}

/// The clock of the journal at `path`: the one it starts with, or, for a new or empty
/// journal, `proposed`, which is written as its first line.
pub fn claim_clock(path: &std::path::Path, proposed: JournalClock) -> Result<JournalClock, String> {
    let named = |what: &str, e: std::io::Error| {
        format!(
            "simulated broker's orders file {}: {what}: {e}",
            path.display()
        )
    };
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| named("cannot open", e))?;
    lock_within(&file, true, LOCK_WAIT).map_err(|e| named("cannot lock", e))?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| named("cannot read", e))?;
    if !text.contains('\n') && !text.is_empty() {
        // A first line cut short by a writer killed mid-write: nothing was ever in the book.
        file.set_len(0).map_err(|e| named("cannot truncate", e))?;
        text.clear();
    }
    if let Some(first) = text.lines().next() {
        return match Entry::parse(first) {
            Some(Entry::Clock(clock)) => Ok(clock),
            _ => Err(format!(
                "simulated broker's orders file {}: does not start with its clock line; \
                 not an orders file?",
                path.display()
            )),
        };
    }
    let line = Entry::Clock(proposed).to_line();
    file.write_all(line.as_bytes())
        .and_then(|_| file.sync_data())
        .map_err(|e| named("cannot write", e))?;
    Ok(proposed)
}

/// How long a process waits for another to release the journal.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Most bars of one order looked at in one pass (the rest in the next): a journal with a
/// time far in the past cannot keep the book locked for long.
const BARS_PER_PASS: u32 = 100_000;

/// Times a journal may hold: about 35,000 years either side of 1970, so that no arithmetic on
/// them overflows.
const TIME_BOUND: i64 = 1 << 40;

/// Locks `file` (exclusively or shared), waiting at most `wait` for another holder.
fn lock_within(file: &File, exclusive: bool, wait: std::time::Duration) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let tried = if exclusive {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match tried {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("held by another process for more than {} s", wait.as_secs()),
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    /// The journal's clock (its first line).
    Clock(JournalClock),
    /// The broker took an order at `time` (Unix seconds of the market clock) as `id`,
    /// rejecting it with a reason or not.
    Place {
        time: i64,
        id: i64,
        request: OrderRequest,
        rejected: Option<String>,
    },
    /// The order with this reference was cancelled at `time`.
    Cancel { time: i64, order_ref: String },
    /// The order with this reference was changed at `time`: its quantity, its limit, or both.
    Modify {
        time: i64,
        order_ref: String,
        quantity: Option<f64>,
        limit: Option<f64>,
    },
}

impl Entry {
    fn to_line(&self) -> String {
        match self {
            Entry::Place {
                time,
                id,
                request: r,
                rejected,
            } => {
                let (kind, limit) = match r.order_type {
                    OrderType::Market => ("M", "-".to_string()),
                    OrderType::Limit { price } => ("L", price.to_string()),
                };
                let side = match r.side {
                    Side::Buy => "B",
                    Side::Sell => "S",
                };
                let tif = match r.tif {
                    TimeInForce::Day => "D",
                    TimeInForce::Gtc => "G",
                };
                let reason = rejected
                    .as_deref()
                    .map(|s| s.replace(['\t', '\n', '\r'], " "))
                    .unwrap_or_default();
                format!(
                    "P\t{time}\t{id}\t{}\t{}\t{side}\t{}\t{kind}\t{limit}\t{tif}\t{}\t{reason}\n",
                    r.order_ref,
                    r.symbol,
                    r.quantity,
                    if rejected.is_some() { "R" } else { "A" },
                )
            }
            Entry::Cancel { time, order_ref } => format!("C\t{time}\t{order_ref}\n"),
            Entry::Modify {
                time,
                order_ref,
                quantity,
                limit,
            } => {
                let or_dash = |v: &Option<f64>| v.map_or("-".to_string(), |v| v.to_string());
                format!(
                    "M\t{time}\t{order_ref}\t{}\t{}\n",
                    or_dash(quantity),
                    or_dash(limit)
                )
            }
            Entry::Clock(c) => {
                format!("T\t{}\t{}\t{}\t{}\n", c.start, c.anchor_ms, c.speed, c.seed)
            }
        }
    }

    fn parse(line: &str) -> Option<Entry> {
        let bounded = |t: &str| t.parse::<i64>().ok().filter(|t| t.abs() <= TIME_BOUND);
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["P", time, id, order_ref, symbol, side, qty, kind, limit, tif, decision, reason] => {
                let order_type = match *kind {
                    "M" => OrderType::Market,
                    "L" => OrderType::Limit {
                        price: limit.parse().ok()?,
                    },
                    _ => return None,
                };
                let request = OrderRequest {
                    order_ref: order_ref.to_string(),
                    symbol: symbol.to_string(),
                    side: match *side {
                        "B" => Side::Buy,
                        "S" => Side::Sell,
                        _ => return None,
                    },
                    quantity: qty.parse().ok()?,
                    order_type,
                    tif: match *tif {
                        "D" => TimeInForce::Day,
                        "G" => TimeInForce::Gtc,
                        _ => return None,
                    },
                };
                if request.problem().is_some() {
                    return None;
                }
                let rejected = match *decision {
                    "A" => None,
                    "R" => Some(reason.to_string()),
                    _ => return None,
                };
                Some(Entry::Place {
                    time: bounded(time)?,
                    id: id.parse().ok()?,
                    request,
                    rejected,
                })
            }
            ["T", start, anchor_ms, speed, seed] => Some(Entry::Clock(JournalClock {
                seed: seed.parse().ok()?,
                start: bounded(start)?,
                anchor_ms: anchor_ms.parse().ok()?,
                speed: speed
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)?,
            })),
            ["M", time, order_ref, quantity, limit] => {
                let value = |v: &str| -> Option<Option<f64>> {
                    match v {
                        "-" => Some(None),
                        v => v
                            .parse()
                            .ok()
                            .filter(|v: &f64| v.is_finite() && *v > 0.0)
                            .map(Some),
                    }
                };
                Some(Entry::Modify {
                    time: bounded(time)?,
                    order_ref: order_ref.to_string(),
                    quantity: value(quantity)?,
                    limit: value(limit)?,
                })
            }
            ["C", time, order_ref] => Some(Entry::Cancel {
                time: bounded(time)?,
                order_ref: order_ref.to_string(),
            }),
            _ => None,
        }
    }
}

/// One order in the book, with what has been worked out of it so far.
#[derive(Debug, Clone)]
struct Order {
    id: i64,
    request: OrderRequest,
    rejected: Option<String>,
    cancelled_at: Option<i64>,
    /// A day order's end: no fill at or after it.
    expires: Option<i64>,
    /// Start of the next bar not yet looked at.
    next_bar: i64,
    fills: Vec<Fill>,
    /// The quantity and type as placed, and each change since with its time: a bar fills by
    /// the last change made before it began.
    placed_as: (f64, OrderType),
    changes: Vec<(i64, f64, OrderType)>,
    /// The status and number of fills last told by [`SimBroker::poll`].
    told: Option<(OrderStatus, usize)>,
}

impl Order {
    fn filled(&self) -> f64 {
        self.fills.iter().map(|f| f.quantity).sum()
    }

    fn remaining(&self) -> f64 {
        (self.request.quantity - self.filled()).max(0.0)
    }

    /// The quantity and type in force for the bar starting at `bar`.
    fn terms_at(&self, bar: i64) -> (f64, OrderType) {
        self.changes
            .iter()
            .rev()
            .find(|(t, _, _)| *t < bar)
            .map_or(self.placed_as, |&(_, q, k)| (q, k))
    }

    /// The status at market time `now` (fills up to `now` already worked out).
    fn status(&self, now: i64) -> (OrderStatus, Option<String>) {
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

    fn report(&self, now: i64) -> OrderReport {
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

/// The book: every order of the journal, in the order the broker took them.
#[derive(Debug, Default)]
struct Book {
    orders: Vec<Order>,
    by_ref: HashMap<String, usize>,
    /// Bytes of the journal read (complete lines only).
    read_to: u64,
    /// Orders taken by this worker (for the injected crash).
    taken_here: u64,
    /// The latest time of an entry, and of a pass over the book.
    last_time: i64,
}

/// The simulated broker. Calls may come from many threads.
pub struct SimBroker {
    opts: SimBrokerOptions,
    seed: u64,
    account: String,
    book: Mutex<Book>,
}

impl std::fmt::Debug for SimBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimBroker")
            .field("orders_file", &self.opts.orders_file)
            .finish()
    }
}

/// An open journal, locked for as long as it lives.
struct Locked {
    file: File,
}

impl SimBroker {
    /// A broker over the journal of `opts` (or memory), for the market of `seed`.
    pub fn new(opts: SimBrokerOptions, seed: u64, account: &str) -> Self {
        SimBroker {
            opts,
            seed,
            account: account.to_string(),
            book: Mutex::new(Book::default()),
        }
    }

    fn path(&self) -> Option<PathBuf> {
        self.opts.orders_file.as_ref().map(PathBuf::from)
    }

    fn journal_error(&self, what: &str, e: impl std::fmt::Display) -> RemoteError {
        error(
            ErrorKind::Internal,
            format!(
                "simulated broker's orders file {}: {what}: {e}",
                self.opts.orders_file.as_deref().unwrap_or("-")
            ),
        )
    }

    /// Opens and locks the journal (exclusively to write, shared to read), and reads what
    /// other writers appended into `book`.
    fn open(&self, book: &mut Book, exclusive: bool) -> Result<Option<Locked>, RemoteError> {
        let Some(path) = self.path() else {
            return Ok(None);
        };
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| self.journal_error("cannot open", e))?;
        lock_within(&file, exclusive, LOCK_WAIT)
            .map_err(|e| self.journal_error("cannot lock", e))?;
        let mut locked = Locked { file };
        self.read_new(book, &mut locked)?;
        Ok(Some(locked))
    }

    /// Applies the complete lines appended since `book.read_to`.
    fn read_new(&self, book: &mut Book, j: &mut Locked) -> Result<(), RemoteError> {
        let mut text = Vec::new();
        j.file
            .seek(SeekFrom::Start(book.read_to))
            .and_then(|_| j.file.read_to_end(&mut text))
            .map_err(|e| self.journal_error("cannot read", e))?;
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let mut at = 0;
        for line in text[..complete].split(|&b| b == b'\n') {
            if at >= complete {
                break;
            }
            let start = book.read_to + at as u64;
            at += line.len() + 1;
            let entry = std::str::from_utf8(line).ok().and_then(Entry::parse);
            match entry {
                Some(e) => self.apply(book, e),
                None => {
                    return Err(self.journal_error(
                        "malformed line",
                        format!("at byte {start}: {:?}", String::from_utf8_lossy(line)),
                    ))
                }
            }
        }
        book.read_to += complete as u64;
        Ok(())
    }

    /// Appends `entry` (cutting off a line left half-written by a killed writer first) and
    /// applies it.
    fn append(
        &self,
        book: &mut Book,
        j: Option<&mut Locked>,
        entry: Entry,
    ) -> Result<(), RemoteError> {
        if let Some(j) = j {
            let len = j
                .file
                .metadata()
                .map_err(|e| self.journal_error("cannot read", e))?
                .len();
            if len > book.read_to {
                tracing::warn!(
                    bytes = len - book.read_to,
                    "simulated broker: cutting off a line left half-written"
                );
                j.file
                    .set_len(book.read_to)
                    .map_err(|e| self.journal_error("cannot truncate", e))?;
            }
            let line = entry.to_line();
            j.file
                .write_all(line.as_bytes())
                .and_then(|_| j.file.sync_data())
                .map_err(|e| self.journal_error("cannot write", e))?;
            book.read_to += line.len() as u64;
        }
        self.apply(book, entry);
        Ok(())
    }

    fn apply(&self, book: &mut Book, entry: Entry) {
        match &entry {
            Entry::Place { time, .. } | Entry::Cancel { time, .. } | Entry::Modify { time, .. } => {
                book.last_time = book.last_time.max(*time)
            }
            Entry::Clock(_) => {}
        }
        match entry {
            Entry::Clock(_) => {}
            Entry::Place {
                time,
                id,
                request,
                rejected,
            } => {
                let size = self.fill_seconds();
                let expires = (request.tif == TimeInForce::Day)
                    .then(|| (time.div_euclid(86_400) + 1) * 86_400);
                book.by_ref
                    .insert(request.order_ref.clone(), book.orders.len());
                let placed_as = (request.quantity, request.order_type);
                book.orders.push(Order {
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
                });
            }
            Entry::Cancel { time, order_ref } => {
                if let Some(&i) = book.by_ref.get(&order_ref) {
                    let o = &mut book.orders[i];
                    o.cancelled_at = Some(o.cancelled_at.map_or(time, |c| c.min(time)));
                }
            }
            Entry::Modify {
                time,
                order_ref,
                quantity,
                limit,
            } => {
                if let Some(&i) = book.by_ref.get(&order_ref) {
                    let o = &mut book.orders[i];
                    if let Some(q) = quantity {
                        o.request.quantity = q;
                    }
                    if let (Some(price), OrderType::Limit { .. }) = (limit, o.request.order_type) {
                        o.request.order_type = OrderType::Limit { price };
                    }
                    o.changes
                        .push((time, o.request.quantity, o.request.order_type));
                }
            }
        }
    }

    fn fill_seconds(&self) -> i64 {
        i64::from(self.opts.fill_seconds.max(1))
    }

    /// Works out every fill due at bars up to market time `now`.
    fn advance(&self, book: &mut Book, now: i64) {
        book.last_time = book.last_time.max(now);
        let size = self.fill_seconds();
        let slip = self.opts.slippage_bps / 10_000.0;
        for o in &mut book.orders {
            if o.rejected.is_some() {
                continue;
            }
            let path = PricePath::new(self.seed, &o.request.symbol);
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
                o.next_bar += size;
                let open = path.price(bar);
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
    }

    /// What changed since the last call (at market time `now`), marked as told.
    fn collect(&self, book: &mut Book, now: i64) -> Changes {
        let mut changes = Changes::default();
        let mut traded = Vec::new();
        for o in &mut book.orders {
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
        }
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
    /// everything in the journal, which is how a replacement worker catches the runner up.
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
            let rejected = b.buying_power_problem(book, request, now);
            let id = book.orders.iter().map(|o| o.id).max().unwrap_or(0) + 1;
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
                return Err(error(
                    ErrorKind::UnknownOrder,
                    format!("no order with reference {:?}", change.order_ref),
                ));
            };
            let current = book.orders[i].report(now);
            let changed = change
                .applied_to(&current)
                .map_err(|why| error(ErrorKind::BadRequest, why))?;
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
                        order_ref: change.order_ref.clone(),
                        quantity: change.quantity,
                        limit: change.limit,
                    },
                )?;
            }
            Ok(book.orders[i].report(now))
        })
    }

    /// Cancels every working order at market time `now`; returns how many.
    pub fn cancel_all(&self, now: i64) -> Result<u32, RemoteError> {
        self.with_book(now, true, |b, book, mut j, now| {
            let working: Vec<String> = book
                .orders
                .iter()
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
                .map(|(s, (q, _))| q * PricePath::new(b.seed, s).price(now))
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

    fn cash(&self, book: &Book) -> f64 {
        let flows: f64 = book
            .orders
            .iter()
            .flat_map(|o| &o.fills)
            .map(|f| -f.side.sign() * f.quantity * f.price - f.commission.unwrap_or(0.0))
            .sum();
        self.opts.cash + flows
    }

    /// Cash promised to working buys: their remaining shares at their limit, or at the price
    /// at `now` for market orders.
    fn committed(&self, book: &Book, now: i64) -> f64 {
        book.orders
            .iter()
            .filter(|o| o.request.side == Side::Buy && !o.status(now).0.is_final())
            .map(|o| o.remaining() * self.reference_price(&o.request, now))
            .sum()
    }

    fn reference_price(&self, r: &OrderRequest, now: i64) -> f64 {
        match r.order_type {
            OrderType::Limit { price } => price,
            OrderType::Market => PricePath::new(self.seed, &r.symbol).price(now),
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

/// Net shares and average cost per symbol, from every fill in time order.
fn positions(book: &Book) -> BTreeMap<String, (f64, f64)> {
    let mut fills: Vec<&Fill> = book.orders.iter().flat_map(|o| &o.fills).collect();
    fills.sort_by(|a, b| (a.time, &a.exec_id).cmp(&(b.time, &b.exec_id)));
    let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for f in fills {
        let (q, avg) = out.entry(f.symbol.clone()).or_default();
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
    out
}

#[cfg(test)]
mod tests;
