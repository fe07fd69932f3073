//! Orders: what the runner asks the broker to do, and what the broker reports back.
//!
//! Invariants: every order carries a reference chosen by the runner ([`OrderRequest::order_ref`], IB's
//! `orderRef`), unique and the same on every retry: it is how a worker that never saw an
//! order (a replacement, or the same one after a reconnect) finds it at the broker instead of
//! placing it again. Broker order ids are the broker's and are never chosen by the runner.

#![forbid(unsafe_code)]

use std::fmt;

use bincode::{Decode, Encode};

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub enum Side {
    /// Buy.
    Buy,
    /// Sell.
    Sell,
}

impl Side {
    /// +1 for a buy, -1 for a sell: the sign of the position change.
    pub fn sign(self) -> f64 {
        match self {
            Side::Buy => 1.0,
            Side::Sell => -1.0,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        })
    }
}

/// How the order is priced.
#[derive(Debug, Clone, Copy, PartialEq, Encode, Decode)]
pub enum OrderType {
    /// At the market.
    Market,
    /// At this price or better.
    Limit {
        /// The limit price.
        price: f64,
    },
}

impl fmt::Display for OrderType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderType::Market => f.write_str("market"),
            OrderType::Limit { price } => write!(f, "limit {price}"),
        }
    }
}

/// How long an order stays working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub enum TimeInForce {
    /// Until the end of the trading day.
    Day,
    /// Until cancelled.
    Gtc,
}

impl fmt::Display for TimeInForce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeInForce::Day => "day",
            TimeInForce::Gtc => "gtc",
        })
    }
}

/// An order to place.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct OrderRequest {
    /// The runner's reference for the order: unique, and the same on every retry.
    pub order_ref: String,
    /// The instrument.
    pub symbol: String,
    /// Buy or sell.
    pub side: Side,
    /// How many shares; positive.
    pub quantity: f64,
    /// Market or limit.
    pub order_type: OrderType,
    /// Day or good till cancelled.
    pub tif: TimeInForce,
}

impl OrderRequest {
    /// Whether the order is well formed: the checks every backend makes before anything
    /// reaches the broker.
    pub fn check(&self) -> Result<(), OrderProblem> {
        if !valid_order_ref(&self.order_ref) {
            return Err(OrderProblem::Reference(self.order_ref.clone()));
        }
        if !(self.quantity.is_finite() && self.quantity > 0.0) {
            return Err(OrderProblem::Quantity(self.quantity));
        }
        if let OrderType::Limit { price } = self.order_type {
            if !(price.is_finite() && price > 0.0) {
                return Err(OrderProblem::LimitPrice(price));
            }
        }
        Ok(())
    }
}

/// A change to a working order.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct OrderChange {
    /// The order's reference.
    pub order_ref: String,
    /// The new total quantity (filled shares included), if it changes.
    pub quantity: Option<f64>,
    /// The new limit price of a limit order, if it changes.
    pub limit: Option<f64>,
}

impl OrderChange {
    /// What `order` becomes, or why the change cannot apply to it (a final order, a limit
    /// for a market order, a quantity not above what already filled, a value that is not a
    /// positive number, nothing to change).
    pub fn applied_to(&self, order: &OrderReport) -> Result<OrderRequest, OrderProblem> {
        let r = &order.request;
        if order.status.is_final() {
            return Err(OrderProblem::Final {
                order_ref: r.order_ref.clone(),
                status: order.status,
            });
        }
        if self.quantity.is_none() && self.limit.is_none() {
            return Err(OrderProblem::NothingToChange);
        }
        let mut changed = r.clone();
        if let Some(q) = self.quantity {
            if !(q.is_finite() && q > order.filled) {
                return Err(OrderProblem::NotAboveFilled {
                    quantity: q,
                    filled: order.filled,
                });
            }
            changed.quantity = q;
        }
        if let Some(price) = self.limit {
            match changed.order_type {
                OrderType::Limit { .. } if price.is_finite() && price > 0.0 => {
                    changed.order_type = OrderType::Limit { price }
                }
                OrderType::Limit { .. } => return Err(OrderProblem::LimitPrice(price)),
                OrderType::Market => return Err(OrderProblem::NoLimit(r.order_ref.clone())),
            }
        }
        Ok(changed)
    }
}

/// Why an order or a change to one is malformed; nothing of it reached the broker.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum OrderProblem {
    /// The reference is not 1 to 40 of `A-Z`, `a-z`, `0-9`, `-`, `_`, `.`.
    Reference(String),
    /// The quantity is not a positive number.
    Quantity(f64),
    /// The limit price is not a positive number.
    LimitPrice(f64),
    /// The order is final: it cannot change.
    Final {
        /// The order's reference.
        order_ref: String,
        /// Where it ended.
        status: OrderStatus,
    },
    /// The change changes nothing.
    NothingToChange,
    /// The new quantity is not above what already filled.
    NotAboveFilled {
        /// The quantity asked for.
        quantity: f64,
        /// The shares already filled.
        filled: f64,
    },
    /// A limit price for this market order.
    NoLimit(String),
}

impl fmt::Display for OrderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderProblem::Reference(r) => write!(
                f,
                "order reference {r:?} must be 1 to 40 of A-Z, a-z, 0-9, '-', '_' and '.'"
            ),
            OrderProblem::Quantity(q) => write!(f, "quantity {q} must be positive"),
            OrderProblem::LimitPrice(p) => write!(f, "limit price {p} must be positive"),
            OrderProblem::Final { order_ref, status } => {
                write!(f, "order {order_ref} is {status}: it cannot change")
            }
            OrderProblem::NothingToChange => {
                f.write_str("nothing to change: give a quantity, a limit price or both")
            }
            OrderProblem::NotAboveFilled { quantity, filled } => write!(
                f,
                "quantity {quantity} must be more than the {filled} shares already filled"
            ),
            OrderProblem::NoLimit(r) => write!(f, "order {r} is a market order: it has no limit"),
        }
    }
}

impl std::error::Error for OrderProblem {}

/// Whether `r` is a usable order reference: 1 to 40 of `A-Z`, `a-z`, `0-9`, `-`, `_`, `.`.
pub fn valid_order_ref(r: &str) -> bool {
    (1..=40).contains(&r.len())
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// References of orders a broker folded out of its book (final, told, and long settled: kept
/// only as totals): the numbered references `<prefix>-<first>` to `<prefix>-<last>`, or one
/// reference whole (`numbers` is `None`). An order whose reference is folded is never placed
/// again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub struct RefRun {
    /// What comes before the number (without the `-`), or the whole reference.
    pub prefix: String,
    /// The first and last number of the run, both in it.
    pub numbers: Option<(u64, u64)>,
}

impl RefRun {
    /// A reference cut into what comes before its number and the number: `a1-17` is
    /// (`a1`, 17); one without a plain number at its end (`x`, `a-07`) is itself.
    pub fn split(order_ref: &str) -> (&str, Option<u64>) {
        let numbered = order_ref.rsplit_once('-').and_then(|(prefix, n)| {
            let plain = !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && (n == "0" || !n.starts_with('0'));
            let n = n.parse().ok().filter(|_| plain && !prefix.is_empty())?;
            Some((prefix, Some(n)))
        });
        numbered.unwrap_or((order_ref, None))
    }

    /// How many references the run holds.
    pub fn len(&self) -> u64 {
        self.numbers
            .map_or(1, |(a, b)| b.saturating_sub(a).saturating_add(1))
    }

    /// Whether it holds none (never, for a run a broker reports).
    pub fn is_empty(&self) -> bool {
        self.numbers.is_some_and(|(a, b)| b < a)
    }

    /// Whether `order_ref` is one of the run's references.
    pub fn contains(&self, order_ref: &str) -> bool {
        match (RefRun::split(order_ref), self.numbers) {
            ((prefix, Some(n)), Some((a, b))) => prefix == self.prefix && (a..=b).contains(&n),
            ((_, None), None) => order_ref == self.prefix,
            _ => false,
        }
    }
}

impl fmt::Display for RefRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.numbers {
            Some((a, b)) if a == b => write!(f, "{}-{a}", self.prefix),
            Some((a, b)) => write!(f, "{}-{a} to {}-{b}", self.prefix, self.prefix),
            None => f.write_str(&self.prefix),
        }
    }
}

/// Where an order stands. The order of the variants is the order of progress: a report never
/// moves an order back to an earlier one, and the last three are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub enum OrderStatus {
    /// Sent, not yet acknowledged by the broker.
    Pending,
    /// Accepted and working at the broker.
    Working,
    /// Partly filled, the rest still working.
    PartiallyFilled,
    /// Filled in full.
    Filled,
    /// Cancelled (by the runner, by the broker at the end of its time in force, or with the
    /// rest of a partial fill).
    Cancelled,
    /// Refused by the broker; the reason is in [`OrderReport::reason`].
    Rejected,
}

impl OrderStatus {
    /// Every status, in the order of progress (the order of the variants): first the three
    /// an order passes through, then the three it ends in.
    #[rustfmt::skip]
    pub const ALL: [OrderStatus; 6] = [
        Self::Pending, Self::Working, Self::PartiallyFilled,
        Self::Filled, Self::Cancelled, Self::Rejected,
    ];

    /// Whether nothing more will happen to the order.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OrderStatus::Filled | OrderStatus::Cancelled | OrderStatus::Rejected
        )
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Working => "working",
            OrderStatus::PartiallyFilled => "partially filled",
            OrderStatus::Filled => "filled",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Rejected => "rejected",
        })
    }
}

/// An order as the broker knows it.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct OrderReport {
    /// What was asked, with the runner's reference.
    pub request: OrderRequest,
    /// The broker's id of the order.
    pub broker_id: i64,
    /// Where it stands.
    pub status: OrderStatus,
    /// Shares filled so far.
    pub filled: f64,
    /// Average price of what filled, if anything did.
    pub avg_price: Option<f64>,
    /// Why the broker rejected or cancelled it, when it says.
    pub reason: Option<String>,
}

/// One execution of an order.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Fill {
    /// The order's reference.
    pub order_ref: String,
    /// The broker's id of this execution: a fill is the same fill wherever it is reported.
    pub exec_id: String,
    /// The instrument.
    pub symbol: String,
    /// Bought or sold.
    pub side: Side,
    /// Shares; positive.
    pub quantity: f64,
    /// Price per share.
    pub price: f64,
    /// Commission, once the broker has reported it.
    pub commission: Option<f64>,
    /// When it executed, Unix seconds.
    pub time: i64,
}

/// A position the broker holds.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Position {
    /// The account.
    pub account: String,
    /// The instrument.
    pub symbol: String,
    /// Shares: positive long, negative short.
    pub quantity: f64,
    /// Average cost per share.
    pub avg_cost: f64,
}

/// The account's figures.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct AccountSummary {
    /// The account.
    pub account: String,
    /// Net liquidation value.
    pub net_liquidation: f64,
    /// Cash.
    pub cash: f64,
    /// Buying power.
    pub buying_power: f64,
    /// Currency of the figures.
    pub currency: String,
}

/// Whether `account` is a paper-trading account by Interactive Brokers' naming (paper
/// accounts start with `D`: `DU…`, `DF…`). A convention, not a guarantee: anything else is
/// treated as live.
pub fn is_paper_account(account: &str) -> bool {
    account.starts_with('D')
}

#[cfg(test)]
mod tests;
