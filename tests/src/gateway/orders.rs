//! The broker behind the fake gateway: one book shared by every connection and surviving them
//! all, as a real broker's is. It holds every order placed at the gateway by any client, the
//! executions that filled them, the positions those built and each account's cash; and it
//! answers the order requests (place, modify, cancel, cancel all, next valid id, open and
//! completed orders, executions, positions, account summary, managed accounts).
//!
//! The market is one constant price per symbol ([`price`]): 100 + (the sum of the symbol's
//! bytes mod 100). A market order fills in full at once at that price. A limit order fills the
//! same way, at that price, when it is marketable (a buy limit at or above it, a sell limit at
//! or below it); otherwise it rests, Submitted, until it is modified or cancelled. Any other
//! order type rests. Commission: max(1, 0.005 × shares) USD per execution. An order on a
//! symbol of [`Behaviour::reject_orders`](super::Behaviour::reject_orders) is rejected: error
//! 201, then status Inactive.
//!
//! An order's life: PendingSubmit (received, not yet acknowledged; only while
//! `order_ack_delay` holds the acknowledgement back), Submitted (acknowledged: OpenOrder, then
//! OrderStatus), then Filled (ExecutionDetails with request id -1, OrderStatus, OpenOrder, the
//! commission report) or Cancelled (OrderStatus, then error 202); or Inactive (error 201, then
//! OrderStatus) when rejected. A PlaceOrder for an order id the same client already used is a
//! modification of a working order (quantity, limit, time in force), acknowledged again; for
//! a filled order it is error 104, for a cancelled or rejected one error 103.
//!
//! Positions: signed shares per (account, symbol), and their average cost, the average fill
//! price of the shares held (commissions not included; a position reversed through flat
//! starts again at the fill price). Cash starts at 1,000,000 per account and moves by each
//! fill's value and commission. Account summary: TotalCashValue = cash, NetLiquidation = cash
//! + Σ position × price, BuyingPower = 4 × NetLiquidation.
//!
//! Who is told: an order's events go to every live connection of the client that placed it
//! (the real gateway also copies them to client 0 and the master client; this one does not);
//! answers to requests and refusals go to the connection that asked.
//!
//! Invariants:
//! - an order is keyed by (client id, order id) and is never removed; the next valid id is
//!   above every order id ever received, by any client, so ids are never reused;
//! - statuses only move forward (PendingSubmit → Submitted → Filled or Cancelled;
//!   PendingSubmit → Inactive); only PendingSubmit and Submitted orders are working;
//! - execution ids are unique; an execution's commission report is always written after it;
//! - a position is the sum of its executions' signed shares;
//! - the book changes and the frames reporting the change are made under the book's one lock
//!   and written before it is released, so every connection sees an order's events in the
//!   order they happened (lock order: book, then the connection registry, then one
//!   connection).

use super::calendar;
use super::wire::{
    codes, con_id, error_frame, incoming, proto_frame, texts, AccountSummary, AccountSummaryEnd,
    AccountSummaryRequest, CommissionAndFeesReport, CompletedOrder, Contract, Empty, Execution,
    ExecutionDetails, ExecutionDetailsEnd, ExecutionRequest, OpenOrder, Order, OrderState,
    OrderStatus, PlaceOrderRequest, Position,
};

/// Every account's cash before its first trade.
pub const STARTING_CASH: f64 = 1_000_000.0;

/// The account summary tags the gateway answers, in the order it sends them.
pub const SUMMARY_TAGS: [&str; 3] = ["NetLiquidation", "TotalCashValue", "BuyingPower"];

/// Order statuses, as IB spells them.
pub mod status {
    pub const PENDING_SUBMIT: &str = "PendingSubmit";
    pub const SUBMITTED: &str = "Submitted";
    pub const FILLED: &str = "Filled";
    pub const CANCELLED: &str = "Cancelled";
    pub const INACTIVE: &str = "Inactive";
}

/// The fill price of `symbol`: 100 + (the sum of its bytes mod 100), constant.
pub fn price(symbol: &str) -> f64 {
    100.0 + (symbol.bytes().map(u32::from).sum::<u32>() % 100) as f64
}

/// The commission of an execution of `shares`: max(1, 0.005 × shares) USD.
pub fn commission(shares: f64) -> f64 {
    (0.005 * shares).max(1.0)
}

/// An order in the broker's book (see [`Gateway::orders`](super::Gateway::orders)).
#[derive(Debug, Clone, PartialEq)]
pub struct BookOrder {
    pub order_id: i32,
    /// The client that placed it (0 for a connection without a client id).
    pub client_id: i32,
    pub perm_id: i64,
    pub order_ref: String,
    /// The order's account, or the first managed account when it named none.
    pub account: String,
    pub symbol: String,
    /// The contract as placed, with the gateway's defaults: a contract id, STK, SMART, USD.
    pub contract: Contract,
    /// "BUY", "SELL", "SSHORT" or "SLONG" (anything but "BUY" sells).
    pub action: String,
    pub quantity: f64,
    /// "MKT", "LMT", ...
    pub order_type: String,
    pub limit: Option<f64>,
    /// "DAY", "GTC", ...
    pub tif: String,
    /// One of [`status`].
    pub status: String,
    pub filled: f64,
    /// The average fill price (0 until filled).
    pub avg_price: f64,
}

impl BookOrder {
    /// Whether it is still working (PendingSubmit or Submitted).
    pub fn is_working(&self) -> bool {
        self.status == status::PENDING_SUBMIT || self.status == status::SUBMITTED
    }

    fn buys(&self) -> bool {
        self.action == "BUY"
    }

    /// Whether it fills at `price` now.
    fn marketable(&self, price: f64) -> bool {
        match (self.order_type.as_str(), self.limit) {
            ("MKT", _) => true,
            ("LMT", Some(limit)) if self.buys() => limit >= price,
            ("LMT", Some(limit)) => limit <= price,
            _ => false,
        }
    }
}

/// An execution in the broker's book (see [`Gateway::executions`](super::Gateway::executions)).
#[derive(Debug, Clone, PartialEq)]
pub struct BookExecution {
    /// Unique.
    pub exec_id: String,
    /// The order it filled, as it stood after this execution: its ids, reference, account,
    /// symbol and contract, its filled quantity and its average fill price.
    pub order: BookOrder,
    /// "BOT" or "SLD".
    pub side: String,
    pub shares: f64,
    pub price: f64,
    /// `yyyymmdd hh:mm:ss US/Eastern`.
    pub time: String,
    /// USD.
    pub commission: f64,
}

/// A position in the broker's book (see [`Gateway::positions`](super::Gateway::positions)).
#[derive(Debug, Clone, PartialEq)]
pub struct BookPosition {
    pub account: String,
    pub symbol: String,
    pub contract: Contract,
    /// Signed shares (negative: short); 0 once closed.
    pub quantity: f64,
    /// The average fill price of the shares held.
    pub avg_cost: f64,
}

/// Where a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum To {
    /// Every live connection of this client id.
    Client(i32),
    /// The connection whose request this answers.
    Requester,
}

/// The frames an operation on the book produced, in the order they are to be written.
#[derive(Debug, Default)]
pub(super) struct Mail(pub(super) Vec<(To, Vec<u8>)>);

impl Mail {
    pub(super) fn push(&mut self, to: To, frame: Vec<u8>) {
        self.0.push((to, frame));
    }
}

struct Entry {
    order: BookOrder,
    /// When it became final, `yyyymmdd hh:mm:ss US/Eastern`.
    completed_time: Option<String>,
}

/// The broker's book.
#[derive(Default)]
pub(super) struct Book {
    orders: Vec<Entry>,
    executions: Vec<BookExecution>,
    positions: Vec<BookPosition>,
    /// Cash per account that traded (others have [`STARTING_CASH`]).
    cash: Vec<(String, f64)>,
    /// The highest order id ever received.
    max_order_id: i32,
}

/// A decimal as IB writes it ("10", "0.5").
fn decimal(x: f64) -> String {
    format!("{x}")
}

fn now_text() -> String {
    calendar::eastern_text(base::unix_time::now().as_secs() as i64)
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

impl Book {
    /// The next valid order id: above every order id ever received, at least 1.
    pub(super) fn next_valid_id(&self) -> i32 {
        self.max_order_id.max(0) + 1
    }

    pub(super) fn orders(&self) -> Vec<BookOrder> {
        self.orders.iter().map(|e| e.order.clone()).collect()
    }

    pub(super) fn executions(&self) -> Vec<BookExecution> {
        self.executions.clone()
    }

    pub(super) fn positions(&self) -> Vec<BookPosition> {
        self.positions.clone()
    }

    fn find(&self, client_id: i32, order_id: i32) -> Option<usize> {
        self.orders
            .iter()
            .position(|e| e.order.client_id == client_id && e.order.order_id == order_id)
    }

    fn cash(&self, account: &str) -> f64 {
        self.cash
            .iter()
            .find(|(a, _)| a == account)
            .map_or(STARTING_CASH, |(_, c)| *c)
    }

    /// Records a PlaceOrder from `client_id`: a new order (PendingSubmit) or a modification
    /// of a working one. `Ok(order id)` when it is to be acknowledged ([`Book::submit`]);
    /// `Err` with the refusal (103, 104) otherwise.
    pub(super) fn receive(
        &mut self,
        client_id: i32,
        req: &PlaceOrderRequest,
        accounts: &[String],
    ) -> Result<i32, Mail> {
        let order_id = req.order_id.unwrap_or(0);
        self.max_order_id = self.max_order_id.max(order_id);
        let placed = req.order.clone().unwrap_or_default();
        let quantity = placed
            .total_quantity
            .as_deref()
            .and_then(|q| q.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        let tif = placed
            .tif
            .clone()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "DAY".into());
        if let Some(i) = self.find(client_id, order_id) {
            let order = &mut self.orders[i].order;
            if order.is_working() {
                order.quantity = quantity;
                order.limit = placed.lmt_price;
                order.tif = tif;
                return Ok(order_id);
            }
            let mut refusal = Mail::default();
            let (code, text) = if order.status == status::FILLED {
                (
                    codes::CANNOT_MODIFY_FILLED_ORDER,
                    texts::CANNOT_MODIFY_FILLED_ORDER,
                )
            } else {
                (codes::DUPLICATE_ORDER_ID, texts::DUPLICATE_ORDER_ID)
            };
            refusal.push(To::Requester, error_frame(order_id, code, text));
            return Err(refusal);
        }
        let mut contract = req.contract.clone().unwrap_or_default();
        let symbol = contract.symbol.clone().unwrap_or_default();
        if contract.con_id.is_none_or(|id| id == 0) {
            let exchange = contract
                .primary_exchange
                .clone()
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "NASDAQ".into());
            contract.con_id = Some(con_id(&symbol, &exchange));
        }
        for (field, default) in [
            (&mut contract.sec_type, "STK"),
            (&mut contract.exchange, "SMART"),
            (&mut contract.currency, "USD"),
        ] {
            if field.as_deref().is_none_or(str::is_empty) {
                *field = Some(default.into());
            }
        }
        let account = placed
            .account
            .clone()
            .filter(|a| !a.is_empty())
            .or_else(|| accounts.first().cloned())
            .unwrap_or_default();
        self.orders.push(Entry {
            order: BookOrder {
                order_id,
                client_id,
                perm_id: 1_000_000_000 + self.orders.len() as i64 + 1,
                order_ref: placed.order_ref.clone().unwrap_or_default(),
                account,
                symbol,
                contract,
                action: placed.action.clone().unwrap_or_else(|| "BUY".into()),
                quantity,
                order_type: placed.order_type.clone().unwrap_or_else(|| "MKT".into()),
                limit: placed.lmt_price,
                tif,
                status: status::PENDING_SUBMIT.into(),
                filled: 0.0,
                avg_price: 0.0,
            },
            completed_time: None,
        });
        Ok(order_id)
    }

    /// Acknowledges order `order_id` of `client_id` if it is still working: rejected (201,
    /// Inactive) when its symbol is in `rejected` or its quantity is not positive; otherwise
    /// Submitted (OpenOrder, OrderStatus), then filled at once when marketable.
    pub(super) fn submit(&mut self, client_id: i32, order_id: i32, rejected: &[String]) -> Mail {
        let mut mail = Mail::default();
        let Some(i) = self.find(client_id, order_id) else {
            return mail;
        };
        if !self.orders[i].order.is_working() {
            return mail; // cancelled while its acknowledgement was held back
        }
        let order = &self.orders[i].order;
        let to = To::Client(client_id);
        if rejected.contains(&order.symbol) || order.quantity <= 0.0 {
            mail.push(
                to,
                error_frame(
                    order_id,
                    codes::ORDER_REJECTED,
                    texts::INSUFFICIENT_BUYING_POWER,
                ),
            );
            self.finish(i, status::INACTIVE);
            mail.push(to, order_status_frame(&self.orders[i].order));
            return mail;
        }
        self.orders[i].order.status = status::SUBMITTED.into();
        let order = &self.orders[i].order;
        mail.push(to, open_order_frame(order));
        mail.push(to, order_status_frame(order));
        if order.marketable(price(&order.symbol)) {
            self.fill(i, &mut mail);
        }
        mail
    }

    /// Marks order `i` final with `status`.
    fn finish(&mut self, i: usize, status: &str) {
        let e = &mut self.orders[i];
        e.order.status = status.into();
        e.completed_time = Some(now_text());
    }

    /// Fills what is left of order `i` at its symbol's price.
    fn fill(&mut self, i: usize, mail: &mut Mail) {
        let order = self.orders[i].order.clone();
        let to = To::Client(order.client_id);
        let price = price(&order.symbol);
        let shares = order.quantity - order.filled;
        let filled = order.filled + shares;
        let avg_price = (order.filled * order.avg_price + shares * price) / filled;
        let commission = commission(shares);
        let time = now_text();
        let signed = if order.buys() { shares } else { -shares };
        self.move_position(&order, signed, price);
        let cash = self.cash(&order.account) - signed * price - commission;
        match self.cash.iter_mut().find(|(a, _)| *a == order.account) {
            Some((_, c)) => *c = cash,
            None => self.cash.push((order.account.clone(), cash)),
        }
        {
            let o = &mut self.orders[i].order;
            o.filled = filled;
            o.avg_price = avg_price;
        }
        self.finish(i, status::FILLED);
        let order = &self.orders[i].order;
        let execution = BookExecution {
            exec_id: format!(
                "{:08x}.{:08x}.01.01",
                order.perm_id,
                self.executions.len() + 1
            ),
            order: order.clone(),
            side: if order.buys() { "BOT" } else { "SLD" }.into(),
            shares,
            price,
            time,
            commission,
        };
        mail.push(to, execution_frame(-1, &execution));
        mail.push(to, order_status_frame(order));
        mail.push(to, open_order_frame(order));
        mail.push(to, commission_frame(&execution));
        self.executions.push(execution);
    }

    fn move_position(&mut self, order: &BookOrder, signed: f64, price: f64) {
        let found = self
            .positions
            .iter()
            .position(|p| p.account == order.account && p.symbol == order.symbol);
        let i = match found {
            Some(i) => i,
            None => {
                self.positions.push(BookPosition {
                    account: order.account.clone(),
                    symbol: order.symbol.clone(),
                    contract: order.contract.clone(),
                    quantity: 0.0,
                    avg_cost: 0.0,
                });
                self.positions.len() - 1
            }
        };
        let p = &mut self.positions[i];
        let after = p.quantity + signed;
        if p.quantity == 0.0 || p.quantity.signum() == signed.signum() {
            p.avg_cost = (p.quantity.abs() * p.avg_cost + signed.abs() * price) / after.abs();
        } else if after != 0.0 && after.signum() != p.quantity.signum() {
            p.avg_cost = price; // reversed through flat
        } else if after == 0.0 {
            p.avg_cost = 0.0;
        }
        p.quantity = after;
    }

    /// Cancels order `order_id` of `client_id`: OrderStatus Cancelled and 202 to its client
    /// if it is working; 10147 (not found) or 10148 (final) to the requester otherwise.
    pub(super) fn cancel(&mut self, client_id: i32, order_id: i32) -> Mail {
        let mut mail = Mail::default();
        match self.find(client_id, order_id) {
            None => mail.push(
                To::Requester,
                error_frame(
                    order_id,
                    codes::CANCEL_NOT_FOUND,
                    &texts::cancel_not_found(order_id),
                ),
            ),
            Some(i) if self.orders[i].order.is_working() => self.cancel_working(i, &mut mail),
            Some(i) => mail.push(
                To::Requester,
                error_frame(
                    order_id,
                    codes::CANNOT_CANCEL,
                    &texts::cannot_cancel(order_id, &self.orders[i].order.status),
                ),
            ),
        }
        mail
    }

    fn cancel_working(&mut self, i: usize, mail: &mut Mail) {
        self.finish(i, status::CANCELLED);
        let order = &self.orders[i].order;
        let to = To::Client(order.client_id);
        mail.push(to, order_status_frame(order));
        mail.push(
            to,
            error_frame(
                order.order_id,
                codes::ORDER_CANCELLED,
                texts::ORDER_CANCELLED,
            ),
        );
    }

    /// Cancels every working order of every client.
    pub(super) fn cancel_all(&mut self) -> Mail {
        let mut mail = Mail::default();
        for i in 0..self.orders.len() {
            if self.orders[i].order.is_working() {
                self.cancel_working(i, &mut mail);
            }
        }
        mail
    }

    /// The working orders of `client` (every client's when `None`): OpenOrder and
    /// OrderStatus each, then OpenOrderEnd.
    pub(super) fn answer_open_orders(&self, client: Option<i32>) -> Mail {
        let mut mail = Mail::default();
        for e in &self.orders {
            let o = &e.order;
            if o.is_working() && client.is_none_or(|c| c == o.client_id) {
                mail.push(To::Requester, open_order_frame(o));
                mail.push(To::Requester, order_status_frame(o));
            }
        }
        mail.push(
            To::Requester,
            proto_frame(incoming::OPEN_ORDER_END, &Empty {}),
        );
        mail
    }

    /// Every client's final orders (Filled, Cancelled, Inactive): CompletedOrder each, then
    /// CompletedOrdersEnd. As IB does, a completed order's total quantity is what was left
    /// unfilled, its filled quantity what was filled.
    pub(super) fn answer_completed_orders(&self) -> Mail {
        let mut mail = Mail::default();
        for e in self.orders.iter().filter(|e| !e.order.is_working()) {
            let o = &e.order;
            let mut order = wire_order(o);
            order.total_quantity = Some(decimal(o.quantity - o.filled));
            let completed_status = match o.status.as_str() {
                status::CANCELLED => "Cancelled by Trader",
                status::INACTIVE => "Rejected",
                other => other,
            };
            mail.push(
                To::Requester,
                proto_frame(
                    incoming::COMPLETED_ORDER,
                    &CompletedOrder {
                        contract: Some(o.contract.clone()),
                        order: Some(order),
                        order_state: Some(OrderState {
                            status: Some(o.status.clone()),
                            completed_time: e.completed_time.clone(),
                            completed_status: Some(completed_status.into()),
                            ..OrderState::default()
                        }),
                    },
                ),
            );
        }
        mail.push(
            To::Requester,
            proto_frame(incoming::COMPLETED_ORDERS_END, &Empty {}),
        );
        mail
    }

    /// Every execution the request's filter lets through (account, symbol, security type
    /// and side when given; the client id and times are not looked at), each followed by
    /// its commission report, then ExecutionDetailsEnd.
    pub(super) fn answer_executions(&self, req: &ExecutionRequest) -> Mail {
        let req_id = req.req_id.unwrap_or(-1);
        let filter = req.execution_filter.clone().unwrap_or_default();
        let given = |f: &Option<String>| f.clone().filter(|s| !s.is_empty());
        let (account, symbol, sec_type, side) = (
            given(&filter.acct_code),
            given(&filter.symbol),
            given(&filter.sec_type),
            given(&filter.side),
        );
        let mut mail = Mail::default();
        for x in &self.executions {
            let side_matches = side.as_deref().is_none_or(|s| match s {
                "BUY" | "BOT" => x.side == "BOT",
                _ => x.side == "SLD",
            });
            let o = &x.order;
            if account.as_ref().is_none_or(|a| *a == o.account)
                && symbol.as_ref().is_none_or(|s| *s == o.symbol)
                && sec_type
                    .as_ref()
                    .is_none_or(|t| Some(t) == o.contract.sec_type.as_ref())
                && side_matches
            {
                mail.push(To::Requester, execution_frame(req_id, x));
                mail.push(To::Requester, commission_frame(x));
            }
        }
        mail.push(
            To::Requester,
            proto_frame(
                incoming::EXECUTION_DATA_END,
                &ExecutionDetailsEnd {
                    req_id: Some(req_id),
                },
            ),
        );
        mail
    }

    /// Every open (nonzero) position, then PositionEnd.
    pub(super) fn answer_positions(&self) -> Mail {
        let mut mail = Mail::default();
        for p in self.positions.iter().filter(|p| p.quantity != 0.0) {
            mail.push(
                To::Requester,
                proto_frame(
                    incoming::POSITION,
                    &Position {
                        account: Some(p.account.clone()),
                        contract: Some(p.contract.clone()),
                        position: Some(decimal(p.quantity)),
                        avg_cost: Some(p.avg_cost),
                    },
                ),
            );
        }
        mail.push(
            To::Requester,
            proto_frame(incoming::POSITION_END, &Empty {}),
        );
        mail
    }

    /// The account figures of every managed account for the requested tags among
    /// [`SUMMARY_TAGS`] (all of them when the request names none), then AccountSummaryEnd.
    pub(super) fn answer_account_summary(
        &self,
        req: &AccountSummaryRequest,
        accounts: &[String],
    ) -> Mail {
        let req_id = req.req_id.unwrap_or(-1);
        let asked: Vec<&str> = req
            .tags
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        let mut mail = Mail::default();
        for account in accounts {
            let cash = self.cash(account);
            let held: f64 = self
                .positions
                .iter()
                .filter(|p| p.account == *account)
                .map(|p| p.quantity * price(&p.symbol))
                .sum();
            let net = cash + held;
            for (tag, value) in SUMMARY_TAGS.into_iter().zip([net, cash, 4.0 * net]) {
                if !asked.is_empty() && !asked.contains(&tag) {
                    continue;
                }
                mail.push(
                    To::Requester,
                    proto_frame(
                        incoming::ACCOUNT_SUMMARY,
                        &AccountSummary {
                            req_id: Some(req_id),
                            account: Some(account.clone()),
                            tag: Some(tag.into()),
                            value: Some(format!("{value:.2}")),
                            currency: Some("USD".into()),
                        },
                    ),
                );
            }
        }
        mail.push(
            To::Requester,
            proto_frame(
                incoming::ACCOUNT_SUMMARY_END,
                &AccountSummaryEnd {
                    req_id: Some(req_id),
                },
            ),
        );
        mail
    }
}

fn wire_order(o: &BookOrder) -> Order {
    Order {
        client_id: Some(o.client_id),
        order_id: Some(o.order_id),
        perm_id: Some(o.perm_id),
        parent_id: None,
        action: Some(o.action.clone()),
        total_quantity: Some(decimal(o.quantity)),
        order_type: Some(o.order_type.clone()),
        lmt_price: o.limit,
        aux_price: None,
        tif: Some(o.tif.clone()),
        account: non_empty(&o.account),
        order_ref: non_empty(&o.order_ref),
        transmit: Some(true),
        filled_quantity: Some(decimal(o.filled)),
    }
}

fn open_order_frame(o: &BookOrder) -> Vec<u8> {
    proto_frame(
        incoming::OPEN_ORDER,
        &OpenOrder {
            order_id: Some(o.order_id),
            contract: Some(o.contract.clone()),
            order: Some(wire_order(o)),
            order_state: Some(OrderState {
                status: Some(o.status.clone()),
                ..OrderState::default()
            }),
        },
    )
}

fn order_status_frame(o: &BookOrder) -> Vec<u8> {
    proto_frame(
        incoming::ORDER_STATUS,
        &OrderStatus {
            order_id: Some(o.order_id),
            status: Some(o.status.clone()),
            filled: Some(decimal(o.filled)),
            remaining: Some(decimal(o.quantity - o.filled)),
            avg_fill_price: Some(o.avg_price),
            perm_id: Some(o.perm_id),
            parent_id: Some(0),
            last_fill_price: Some(if o.filled > 0.0 { o.avg_price } else { 0.0 }),
            client_id: Some(o.client_id),
            why_held: None,
        },
    )
}

fn execution_frame(req_id: i32, x: &BookExecution) -> Vec<u8> {
    let o = &x.order;
    proto_frame(
        incoming::EXECUTION_DATA,
        &ExecutionDetails {
            req_id: Some(req_id),
            contract: Some(o.contract.clone()),
            execution: Some(Execution {
                order_id: Some(o.order_id),
                exec_id: Some(x.exec_id.clone()),
                time: Some(x.time.clone()),
                acct_number: Some(o.account.clone()),
                exchange: Some("ISLAND".into()),
                side: Some(x.side.clone()),
                shares: Some(decimal(x.shares)),
                price: Some(x.price),
                perm_id: Some(o.perm_id),
                client_id: Some(o.client_id),
                cum_qty: Some(decimal(o.filled)),
                avg_price: Some(o.avg_price),
                order_ref: non_empty(&o.order_ref),
                last_liquidity: Some(2),
            }),
        },
    )
}

fn commission_frame(x: &BookExecution) -> Vec<u8> {
    proto_frame(
        incoming::COMMISSION_REPORT,
        &CommissionAndFeesReport {
            exec_id: Some(x.exec_id.clone()),
            commission_and_fees: Some(x.commission),
            currency: Some("USD".into()),
            realized_pnl: None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::PROTOBUF;

    /// The message ids of `mail`'s frames, with their destinations.
    fn ids(mail: &Mail) -> Vec<(To, i32)> {
        mail.0
            .iter()
            .map(|(to, f)| (*to, i32::from_be_bytes([f[4], f[5], f[6], f[7]]) - PROTOBUF))
            .collect()
    }

    fn place_req(
        order_id: i32,
        symbol: &str,
        action: &str,
        qty: &str,
        limit: Option<f64>,
    ) -> PlaceOrderRequest {
        PlaceOrderRequest {
            order_id: Some(order_id),
            contract: Some(Contract {
                symbol: Some(symbol.into()),
                ..Contract::default()
            }),
            order: Some(Order {
                action: Some(action.into()),
                total_quantity: Some(qty.into()),
                order_type: Some(if limit.is_some() { "LMT" } else { "MKT" }.into()),
                lmt_price: limit,
                order_ref: Some(format!("ref-{order_id}")),
                ..Order::default()
            }),
        }
    }

    #[test]
    fn prices_are_the_documented_rule() {
        // "AB": 65 + 66 = 131 -> 31.
        assert_eq!(price("AB"), 131.0);
        assert_eq!(price(""), 100.0);
        assert_eq!(commission(100.0), 1.0);
        assert_eq!(commission(1000.0), 5.0);
    }

    #[test]
    fn a_market_order_is_acknowledged_then_filled_and_moves_position_and_cash() {
        let mut book = Book::default();
        let accounts = vec!["DU1".to_string()];
        assert_eq!(book.next_valid_id(), 1);
        let id = book
            .receive(3, &place_req(7, "AB", "BUY", "10", None), &accounts)
            .unwrap();
        assert_eq!(book.next_valid_id(), 8);
        assert_eq!(book.orders()[0].status, status::PENDING_SUBMIT);
        let mail = book.submit(3, id, &[]);
        let c = To::Client(3);
        assert_eq!(
            ids(&mail),
            [
                (c, incoming::OPEN_ORDER),
                (c, incoming::ORDER_STATUS),
                (c, incoming::EXECUTION_DATA),
                (c, incoming::ORDER_STATUS),
                (c, incoming::OPEN_ORDER),
                (c, incoming::COMMISSION_REPORT),
            ]
        );
        let order = &book.orders()[0];
        assert_eq!(
            (order.status.as_str(), order.filled, order.avg_price),
            (status::FILLED, 10.0, 131.0)
        );
        assert_eq!(order.account, "DU1");
        let x = &book.executions()[0];
        assert_eq!(
            (x.side.as_str(), x.shares, x.commission),
            ("BOT", 10.0, 1.0)
        );
        assert_eq!(book.cash("DU1"), STARTING_CASH - 1310.0 - 1.0);
        let p = &book.positions()[0];
        assert_eq!((p.quantity, p.avg_cost), (10.0, 131.0));
        // Sold through flat: short 5 at the price.
        let id = book
            .receive(3, &place_req(8, "AB", "SELL", "15", None), &accounts)
            .unwrap();
        book.submit(3, id, &[]);
        let p = &book.positions()[0];
        assert_eq!((p.quantity, p.avg_cost), (-5.0, 131.0));
        // A filled order is not modified, nor cancelled.
        let refused = book
            .receive(3, &place_req(8, "AB", "SELL", "20", None), &accounts)
            .unwrap_err();
        assert_eq!(ids(&refused), [(To::Requester, incoming::ERROR)]);
        assert_eq!(ids(&book.cancel(3, 8)), [(To::Requester, incoming::ERROR)]);
    }

    #[test]
    fn a_limit_order_rests_unless_marketable_and_is_modified_in_place() {
        let mut book = Book::default();
        let accounts = vec!["DU1".to_string()];
        let id = book
            .receive(1, &place_req(1, "AB", "BUY", "10", Some(100.0)), &accounts)
            .unwrap();
        assert_eq!(book.submit(1, id, &[]).0.len(), 2);
        assert_eq!(book.orders()[0].status, status::SUBMITTED);
        // Another client's order 1 is another order.
        book.receive(2, &place_req(1, "AB", "SELL", "10", Some(200.0)), &accounts)
            .unwrap();
        assert_eq!(book.orders().len(), 2);
        // Modified to a marketable limit: filled at the price, not the limit.
        book.receive(1, &place_req(1, "AB", "BUY", "10", Some(140.0)), &accounts)
            .unwrap();
        book.submit(1, 1, &[]);
        assert_eq!(book.orders().len(), 2);
        assert_eq!(book.orders()[0].status, status::FILLED);
        assert_eq!(book.orders()[0].avg_price, 131.0);
        // Cancel all: client 2's resting order.
        let mail = book.cancel_all();
        assert_eq!(
            ids(&mail),
            [
                (To::Client(2), incoming::ORDER_STATUS),
                (To::Client(2), incoming::ERROR)
            ]
        );
        assert_eq!(book.orders()[1].status, status::CANCELLED);
        assert_eq!(ids(&book.cancel(2, 9)), [(To::Requester, incoming::ERROR)]);
    }

    #[test]
    fn a_rejected_symbol_is_inactive_and_its_id_is_not_reused() {
        let mut book = Book::default();
        let id = book
            .receive(1, &place_req(4, "BAD", "BUY", "1", None), &[])
            .unwrap();
        let mail = book.submit(1, id, &["BAD".to_string()]);
        assert_eq!(
            ids(&mail),
            [
                (To::Client(1), incoming::ERROR),
                (To::Client(1), incoming::ORDER_STATUS)
            ]
        );
        assert_eq!(book.orders()[0].status, status::INACTIVE);
        assert!(book.executions().is_empty());
        assert_eq!(book.next_valid_id(), 5);
    }
}
