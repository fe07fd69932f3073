//! The messages both sides speak. Every frame on the bridge is one [`Envelope`].
//!
//! Requests carry an id chosen by the runner; every reply carries the id of its request, so
//! replies are matched by id and never by order. Results too big for one frame (years of bars)
//! come as [`Reply::Bars`] batches followed by one final reply ([`Reply::HistoryEnd`]).
//! Invariants: prices are never defaulted: absent data is an error reply or `None`, never `0.0`.

#![forbid(unsafe_code)]

use std::fmt;

use bincode::{Decode, Encode};

use crate::codec::{Wire, FIXED_MAX};

mod decode;
mod orders;
pub use orders::*;

/// Version of this message set. Both sides must agree; the hello exchange checks it.
pub const PROTOCOL_VERSION: u32 = 11;

/// One frame.
#[derive(Debug, Clone, PartialEq, Encode)]
pub struct Envelope {
    /// Request id for requests and their replies; 0 for everything else.
    pub id: u64,
    /// What the frame carries.
    pub body: Body,
}

/// The kinds of frame.
#[derive(Debug, Clone, PartialEq, Encode)]
pub enum Body {
    /// First frame in each direction: who is speaking, and which protocol and build.
    Hello(Hello),
    /// Runner → worker.
    Request(Request),
    /// Worker → runner, answering the request with the envelope's id.
    Reply(Reply),
    /// Worker → runner, unsolicited: bars, connection status, broker notices.
    Event(Event),
    /// Worker → runner: a `tracing` event of the worker, re-emitted in the runner's log.
    Log(LogRecord),
}

/// Bytes of a live bar event's fixed layout.
pub const BAR_FIXED_LEN: usize = 56;
/// The class word of a bar event's fixed layout.
const CLASS_BAR: u32 = 1;

/// The hot message's fixed layout: a live bar event (`id` 0) crosses the ring as 56 bytes
/// (one 64-byte frame, a cache line) instead of a codec envelope, and is read back by a few
/// loads. Little-endian: `sub: u32`, `class: u32` (1: a bar event), `time: i64`, then `open`,
/// `high`, `low`, `close`, `volume` as `f64`. Every other message goes through the codec;
/// bytes of another length or class are not a fixed layout (`from_fixed` says `None`, and the
/// channel treats the frame as corruption).
impl Wire for Envelope {
    #[inline]
    fn to_fixed(&self, out: &mut [u8; FIXED_MAX]) -> Option<usize> {
        let Envelope {
            id: 0,
            body: Body::Event(Event::Bar { sub, bar }),
        } = self
        else {
            return None;
        };
        // The subscription and the class in one 8-byte store, like every other word: the
        // sender reads the layout back a word at a time, and a load that spans two narrower
        // stores waits for them to reach the cache.
        let first = u64::from(*sub) | (u64::from(CLASS_BAR) << 32);
        out[0..8].copy_from_slice(&first.to_le_bytes());
        out[8..16].copy_from_slice(&bar.time.to_le_bytes());
        let prices = [bar.open, bar.high, bar.low, bar.close, bar.volume];
        for (k, v) in prices.iter().enumerate() {
            out[16 + 8 * k..24 + 8 * k].copy_from_slice(&v.to_le_bytes());
        }
        Some(BAR_FIXED_LEN)
    }

    #[inline]
    fn from_fixed(bytes: &[u8]) -> Option<Self> {
        let b: &[u8; BAR_FIXED_LEN] = bytes.try_into().ok()?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            w
        };
        let half = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if half(4) != CLASS_BAR {
            return None;
        }
        let price = |k: usize| f64::from_le_bytes(word(16 + 8 * k));
        Some(Envelope {
            id: 0,
            body: Body::Event(Event::Bar {
                sub: half(0),
                bar: Bar {
                    time: i64::from_le_bytes(word(8)),
                    open: price(0),
                    high: price(1),
                    low: price(2),
                    close: price(3),
                    volume: price(4),
                },
            }),
        })
    }
}

/// The hello each side sends first.
#[derive(Debug, Clone, PartialEq, Eq, Encode)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub protocol_version: u32,
    /// Identifies the sender's build; the two sides must be the same build.
    pub build_id: String,
    /// The sender's process id.
    pub pid: u32,
}

/// What the runner asks of the worker.
#[derive(Debug, Clone, PartialEq, Encode)]
pub enum Request {
    /// Echoed back as [`Reply::Pong`].
    Ping {
        /// Bytes echoed back.
        payload: Vec<u8>,
    },
    /// Connect to the broker; answered only once the connection is ready.
    Connect,
    /// The managed accounts.
    Accounts,
    /// Historical bars, streamed as batches and an end marker.
    History(HistoryRequest),
    /// Start real-time bars for a symbol, delivered as [`Event::Bar`].
    Subscribe(SubscribeRequest),
    /// Stop real-time bars for a symbol.
    Unsubscribe {
        /// The symbol subscribed before.
        symbol: String,
    },
    /// Disconnect from the broker and exit.
    Shutdown,
    /// The runner gave up on request `id` (its deadline passed, or nobody waits for it any
    /// more): stop working on it, cancel it at the broker, send nothing more for it. Never
    /// answered.
    Cancel {
        /// The request given up.
        id: u64,
    },
    /// Place an order, unless the broker already has one with the same reference: answered
    /// with [`Reply::Order`] once the broker has acknowledged it (or with the order found).
    /// Safe to send again: the reference makes it the same order.
    PlaceOrder(OrderRequest),
    /// Change a working order: its quantity, its limit price, or both; answered with
    /// [`Reply::Order`], its state after the change. Safe to send again: the second change
    /// changes nothing.
    ModifyOrder(OrderChange),
    /// Cancel the order with this reference; answered with [`Reply::Order`], its state after
    /// the cancel (an order already final is left as it is).
    CancelOrder {
        /// The order's reference.
        order_ref: String,
    },
    /// Cancel every working order; answered with [`Reply::CancelledAll`].
    CancelAll,
    /// Every order the broker knows with a reference, working or final: [`Reply::Orders`].
    Orders,
    /// The references of the orders the broker folded out of its book (final and long
    /// settled, kept only as totals): [`Reply::Folded`]. A broker that folds nothing answers
    /// an empty list.
    FoldedOrders,
    /// Today's executions with a reference: [`Reply::Fills`].
    Executions,
    /// The positions: [`Reply::Positions`].
    Positions,
    /// The account's figures: [`Reply::Account`].
    Account,
}

impl Request {
    /// Whether sending the request twice is harmless, so it may be retried on a new worker.
    /// An order is: its reference makes a second placement find the first.
    pub fn is_idempotent(&self) -> bool {
        !matches!(self, Request::Shutdown | Request::Cancel { .. })
    }
}

/// A request for historical bars.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub struct HistoryRequest {
    /// The instrument, as the backend names it (`SPY`).
    pub symbol: String,
    /// Bar size in seconds.
    pub bar_seconds: u32,
    /// How far back from `end`, in seconds.
    pub duration_seconds: u64,
    /// End of the range (Unix seconds); `None` means now.
    pub end: Option<i64>,
}

/// A request for real-time bars.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub struct SubscribeRequest {
    /// The instrument, as the backend names it.
    pub symbol: String,
    /// The subscription's id, chosen by the runner (one per symbol for the whole run, the
    /// same on every worker): live bars carry it instead of the symbol, so that a bar is a
    /// fixed-size message that decodes without a heap allocation.
    pub id: u32,
    /// Bar size in seconds.
    pub bar_seconds: u32,
}

/// What the worker answers.
#[derive(Debug, Clone, PartialEq, Encode)]
pub enum Reply {
    /// Answers [`Request::Ping`].
    Pong {
        /// The ping's bytes.
        payload: Vec<u8>,
    },
    /// The broker connection is ready: accounts and the next order id are known.
    Connected {
        /// The managed accounts.
        accounts: Vec<String>,
        /// The broker's next valid order id.
        next_order_id: i64,
    },
    /// The managed accounts.
    Accounts(Vec<String>),
    /// One batch of a historical answer; more follow.
    Bars(Vec<Bar>),
    /// The end of a historical answer, with the total number of bars sent.
    HistoryEnd {
        /// Bars sent in all the batches.
        count: u64,
    },
    /// Real-time bars will follow as events.
    Subscribed,
    /// Real-time bars for the symbol stopped.
    Unsubscribed,
    /// The worker is disconnecting and will exit.
    ShuttingDown,
    /// An order's state at the broker (boxed, so that the rare large replies do not make
    /// every reply as large).
    Order(Box<OrderReport>),
    /// How many working orders a [`Request::CancelAll`] cancelled.
    CancelledAll {
        /// Orders cancelled.
        count: u32,
    },
    /// Answers [`Request::Orders`] (its last page, when pages came before it).
    Orders(Vec<OrderReport>),
    /// Answers [`Request::Executions`] (its last page, when pages came before it).
    Fills(Vec<Fill>),
    /// Answers [`Request::Positions`] (its last page, when pages came before it).
    Positions(Vec<Position>),
    /// Answers [`Request::FoldedOrders`] (its last page, when pages came before it).
    Folded(Vec<RefRun>),
    /// A page of a [`Reply::Folded`] too long for one frame; more follow.
    FoldedPage(Vec<RefRun>),
    /// A page of a [`Reply::Orders`] too long for one frame; more follow.
    OrdersPage(Vec<OrderReport>),
    /// A page of a [`Reply::Fills`] too long for one frame; more follow.
    FillsPage(Vec<Fill>),
    /// A page of a [`Reply::Positions`] too long for one frame; more follow.
    PositionsPage(Vec<Position>),
    /// Answers [`Request::Account`].
    Account(Box<AccountSummary>),
    /// The request failed.
    Error(RemoteError),
}

impl Reply {
    /// Whether this reply ends its request (every reply but a batch or a page does).
    pub fn is_final(&self) -> bool {
        !matches!(self, Reply::Bars(_)) && !self.is_page()
    }

    /// Whether this reply is a page of a list, more of which follow
    /// ([`pages`](crate::pages)).
    pub fn is_page(&self) -> bool {
        matches!(
            self,
            Reply::OrdersPage(_)
                | Reply::FillsPage(_)
                | Reply::PositionsPage(_)
                | Reply::FoldedPage(_)
        )
    }
}

/// One bar. All prices are real observed prices; a bar with no trades is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Encode)]
pub struct Bar {
    /// Start of the bar, Unix seconds.
    pub time: i64,
    /// First price of the bar.
    pub open: f64,
    /// Highest price.
    pub high: f64,
    /// Lowest price.
    pub low: f64,
    /// Last price.
    pub close: f64,
    /// Volume traded in the bar.
    pub volume: f64,
}

impl Bar {
    /// A sample bar with round prices (a rising minute on 2023-11-14), for the tests and the
    /// benchmarks (feature `bench`): one value both measure the codec with.
    #[cfg(any(test, feature = "bench"))]
    pub fn sample() -> Bar {
        Bar {
            time: 1_700_000_000,
            open: 1.0,
            high: 2.0,
            low: 0.5,
            close: 1.5,
            volume: 100.0,
        }
    }

    /// Whether open, high, low and close are all real prices: finite and above zero. A bar
    /// that fails this carries a missing price (a broker may send 0 for one) and must never
    /// reach a strategy.
    pub fn has_valid_prices(&self) -> bool {
        [self.open, self.high, self.low, self.close]
            .iter()
            .all(|p| p.is_finite() && *p > 0.0)
    }
}

/// A failed request, as reported by the worker.
#[derive(Debug, Clone, PartialEq, Eq, Encode)]
pub struct RemoteError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The details, for people.
    pub message: String,
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for RemoteError {}

/// Kinds of failure the worker tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The broker did not answer in time.
    Timeout,
    /// Not connected to the broker.
    NotConnected,
    /// The symbol is not known.
    UnknownSymbol,
    /// The broker has no data for the request.
    NoData,
    /// The broker refused the request for pacing.
    Pacing,
    /// The broker found no contract for the request.
    NoSecurityDefinition,
    /// The broker knows several instruments by the name given.
    AmbiguousContract,
    /// A broker data farm is down.
    FarmDown,
    /// The broker connection was lost.
    Disconnected,
    /// The client id is already used by another connection.
    ClientIdInUse,
    /// The account has no permission or subscription for this data (IB 354, 10089, 420, 162
    /// "no market data permissions").
    NotPermitted,
    /// Live data is taken by another session of the same user (IB 10197).
    CompetingSession,
    /// The request itself is invalid.
    BadRequest,
    /// The runner gave up on the request.
    Cancelled,
    /// No order with this reference.
    UnknownOrder,
    /// The account is a live one and trading on it was not allowed (`allow_live`).
    LiveAccount,
    /// The answer does not fit in a frame (an item of a list, or a reply that is not a list,
    /// larger than `bridge.max_frame`).
    TooLarge,
    /// Anything else.
    Internal,
}

/// Unsolicited news from the worker.
#[derive(Debug, Clone, PartialEq, Encode)]
pub enum Event {
    /// A real-time bar.
    Bar {
        /// The subscription's id ([`SubscribeRequest::id`]).
        sub: u32,
        /// The completed bar.
        bar: Bar,
    },
    /// The broker connection changed state.
    Connection(ConnectionStatus),
    /// The broker refused live data for a subscribed symbol after accepting the request (no
    /// market data permission or subscription, a competing live session, ...): no bars come
    /// for it until it is subscribed again.
    Refused {
        /// The subscription's symbol.
        symbol: String,
        /// Why, with the broker's code in the message.
        error: RemoteError,
    },
    /// The broker refused live data for a subscribed symbol, and the worker fell back to
    /// delayed data for it (as configured): its bars from now on are built from the broker's
    /// delayed feed (IB: 15 to 20 minutes late), timed when they arrive.
    Delayed {
        /// The subscription's symbol.
        symbol: String,
        /// The refusal of live data, with the broker's code in the message.
        refused: RemoteError,
    },
    /// What the worker's watchdog saw of a subscribed symbol's live stream: made again after
    /// a silence or a market data farm's flap, stalled (still silent after that), flowing
    /// again.
    Feed {
        /// The subscription's symbol.
        symbol: String,
        /// What became of its stream.
        state: FeedState,
    },
    /// An order's state changed. (Boxed, as are fills and positions: every event, live bars
    /// included, is as large as the largest variant in the runner's event queue.)
    Order(Box<OrderReport>),
    /// An order executed (in part or in full).
    Fill(Box<Fill>),
    /// A position changed.
    Position(Box<Position>),
    /// The worker told every change of the broker's book up to market time `through`
    /// (Unix seconds) that it knows of: orders, fills, positions. Whoever starts a worker to
    /// replace this one hands it the last `through` it received, so that the new worker tells
    /// only what changed since, not the whole book again.
    BookTold {
        /// Market time the changes were worked out at.
        through: i64,
    },
    /// A hub dropped `count` events meant for this client, right before this one: the
    /// client's ring stayed full (it did not read in time) and the hub waits for no client.
    /// Bars among them are missing from the client's streams.
    Dropped {
        /// Events dropped.
        count: u64,
    },
    /// A broker notice (farm status and the like).
    Notice {
        /// The broker's code (IB: 2104 market data farm OK, ...).
        code: i32,
        /// The broker's text.
        message: String,
    },
}

/// What became of one symbol's live stream while the broker connection was up ([`Event::Feed`]).
#[derive(Debug, Clone, PartialEq, Eq, Encode)]
pub enum FeedState {
    /// The stream was cancelled and requested again, for `reason` (in words: how long it was
    /// silent, or which market data farm broke and came back).
    Resubscribed {
        /// Why, in words.
        reason: String,
    },
    /// Still silent after it was made again: no bars come for it, and none are made up. It
    /// stays so until bars come again ([`FeedState::Flowing`]).
    Stalled {
        /// When the silence began: the last data the stream delivered (or when it was made),
        /// Unix seconds.
        since: i64,
    },
    /// Bars come again after a stall.
    Flowing,
    /// No bar will come any more: the backend has none after the last one sent (a replayed
    /// recording reached its end).
    Ended,
}

/// State of the worker's broker connection, as it changes.
#[derive(Debug, Clone, PartialEq, Eq, Encode)]
pub enum ConnectionStatus {
    /// Connected and ready.
    Connected,
    /// The broker connection is down: the gateway lost its link to the broker's servers (IB
    /// 1100), or the socket to the gateway closed. No live data comes until `Restored`.
    Lost {
        /// Why, in words (the broker's own text where it gave one).
        reason: String,
    },
    /// Back. `data_lost`: the broker dropped every market data request meanwhile (IB 1101, or
    /// a new socket to the gateway), and the worker made the live subscriptions again.
    Restored {
        /// Whether the broker's market data requests were lost (and so made again).
        data_lost: bool,
    },
    /// The socket to the gateway is down and the worker is trying to connect again: attempt
    /// `attempt` (from 1 for each loss) is scheduled, to be made after a backoff (IB: 1 s,
    /// 2 s, 3 s, 5 s, ... up to 30 s).
    Reconnecting {
        /// Which attempt since the connection was lost.
        attempt: u32,
    },
    /// The worker stopped trying to reconnect (its configured number of attempts is spent):
    /// the connection stays down.
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// Why, in words.
        reason: String,
    },
}

/// A log line of the worker.
#[derive(Debug, Clone, PartialEq, Eq, Encode)]
pub struct LogRecord {
    /// Severity.
    pub level: LogLevel,
    /// The module or component that logged it.
    pub target: String,
    /// The text, fields included.
    pub message: String,
    /// Records the worker dropped since the last one it delivered (the ring was full or busy);
    /// set by the worker's [`Responder::log`](crate::Responder::log), counted by the runner.
    pub dropped_before: u64,
}

/// Severity of a [`LogRecord`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Encode)]
pub enum LogLevel {
    /// `tracing`'s ERROR.
    Error,
    /// WARN.
    Warn,
    /// INFO.
    Info,
    /// DEBUG.
    Debug,
    /// TRACE.
    Trace,
}

#[cfg(test)]
mod tests;
