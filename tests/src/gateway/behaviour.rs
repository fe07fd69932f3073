//! The fake gateway's knobs ([`Behaviour`]): how it departs from a well-behaved gateway, and
//! when (after a number of real-time bars, for a loss of connectivity or an outage).
//!
//! Invariants: with every knob at its default the gateway behaves as a real one does on a
//! quiet day; a knob that acts after a number of bars counts the bars sent on every
//! connection together.

use std::time::Duration;

use super::wire::{codes, texts};

/// The link between the gateway and IB's servers is lost after the gateway has sent
/// `after_bars` real-time bars in all, and restored `lasts` later (see
/// [`Gateway::lose_connectivity`](super::Gateway::lose_connectivity)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectivityLoss {
    pub after_bars: u32,
    pub lasts: Duration,
    /// Restored with 1101 "data lost" (every real-time stream ended), else 1102 "data
    /// maintained" (the streams resume).
    pub data_lost: bool,
}

/// The gateway process goes down after it has sent `after_bars` real-time bars in all, for
/// `lasts` (see [`Gateway::outage`](super::Gateway::outage)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    pub after_bars: u32,
    pub lasts: Duration,
}

/// A flap of the market data farm after the gateway has sent `after_bars` real-time bars in
/// all: 2103 "Market data farm connection is broken:usfarm" to every connection, no real-time
/// data for `lasts`, then 2104 "Market data farm connection is OK:usfarm" (see
/// [`Gateway::farm_flap`](super::Gateway::farm_flap)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FarmFlap {
    pub after_bars: u32,
    pub lasts: Duration,
    /// As IB's gateway does at times: the real-time streams open at the flap never send
    /// again (no error, no notice) until cancelled; a new request is served. Off: they
    /// resume after the 2104.
    pub silent_streams: bool,
}

/// One symbol's real-time data stops with no notice at all after the gateway has sent
/// `after_bars` real-time bars in all: the symbol's streams open then never send again (until
/// cancelled); one requested later sends nothing until `lasts` after the stop (`None`: ever).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilentFeed {
    pub symbol: String,
    pub after_bars: u32,
    pub lasts: Option<Duration>,
}

/// How the gateway behaves.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Managed accounts.
    pub accounts: Vec<String>,
    /// Managed accounts are sent this long after start-API.
    pub accounts_delay: Duration,
    /// Never send the next valid id.
    pub no_next_valid_id: bool,
    /// Refuse these client ids as already in use (error 326, then close).
    pub ids_in_use: Vec<i32>,
    /// A client id stays taken this long after its connection ended: a connection with it
    /// meanwhile, or while another live connection holds it, gets error 326 and is closed.
    /// `ZERO`: client ids are not checked (several connections may share one).
    pub client_id_linger: Duration,
    /// Send the farm status notices after the handshake.
    pub farm_notices: bool,
    /// Symbols without a security definition (error 200, for history and contract details).
    pub unknown_symbols: Vec<String>,
    /// The first this many historical requests get a pacing violation (error 162).
    pub pacing_violations: u32,
    /// Historical requests for these symbols get error 162 "HMDS query returned no data".
    pub history_no_data: Vec<String>,
    /// Historical requests for these symbols get error 162 "No market data permissions".
    pub history_no_permissions: Vec<String>,
    /// Answer history as the real gateway does: the end marker's times in US/Eastern, and
    /// bars only in trading sessions (09:30-16:00 US/Eastern on weekdays when the request asks
    /// for regular trading hours, 04:00-20:00 otherwise; no holidays), error 162 "no data"
    /// when none is left. Off: every bar of the span, times in UTC.
    pub realistic_history: bool,
    /// End of every historical answer, Unix seconds (`None`: now).
    pub history_end: Option<i64>,
    /// Close the connection, unanswered, on these historical requests (0 = the first the
    /// gateway receives).
    pub drop_on_history: Vec<u32>,
    /// Real time between two 5-second real-time bars (a fast market clock).
    pub realtime_interval: Duration,
    /// Real-time bar requests for these symbols are accepted, then refused with this error
    /// (code, message) bound to the request; no bar follows. Market data (tick) requests are
    /// refused the same way, except that a symbol refused as not subscribed (354) gets
    /// delayed ticks when the client has asked for delayed data. See [`Behaviour::not_subscribed`]
    /// and [`Behaviour::competing_session`].
    pub realtime_refused: Vec<(String, i32, String)>,
    /// Close the connection after sending this many real-time bars in all (mid-stream).
    pub drop_after_realtime_bars: Option<u32>,
    /// Lose the link to IB's servers after this many real-time bars in all.
    pub connectivity_loss: Option<ConnectivityLoss>,
    /// Go down after this many real-time bars in all.
    pub outage: Option<Outage>,
    /// Flap the market data farm after this many real-time bars in all.
    pub farm_flap: Option<FarmFlap>,
    /// Symbols whose real-time data stops without a word.
    pub silent_feeds: Vec<SilentFeed>,
    /// Contract details tell trading hours (04:00-20:00 US/Eastern) and liquid hours
    /// (09:30-16:00) for the days around now, weekends and `holidays` `CLOSED`, as the real
    /// gateway does; and real-time data comes only in those sessions (regular hours for a
    /// request with useRTH), as at IB. Off: no hours told, data at every hour.
    pub trading_hours: bool,
    /// US/Eastern dates (days since 1970-01-01) without a session, with `trading_hours` (see
    /// [`Gateway::exchange_today`](super::Gateway::exchange_today)).
    pub holidays: Vec<i64>,
    /// Contract details requests for these symbols find two contracts (primary exchanges
    /// NASDAQ and NYSE, different contract ids); other symbols find one (NASDAQ). A request
    /// naming a primary exchange or a contract id finds only the contracts that match it.
    pub ambiguous_symbols: Vec<String>,
    /// Historical answers are sent this much later (a slow gateway).
    pub reply_delay: Duration,
    /// Refuse a historical request longer than IB answers at once for its bar size (162
    /// "Time length exceed max."), as the real gateway does.
    pub step_sizes: bool,
    /// Close the connection right after receiving the PlaceOrder message with this number
    /// (0 = the first the gateway receives, on any connection): the order is recorded in the
    /// book and goes on (a market order fills) as at a real broker, but this connection gets
    /// no acknowledgement of it (it is recorded as closed by the gateway).
    pub drop_after_order: Option<u32>,
    /// Orders on these symbols are rejected: error 201 "Order rejected - reason:The account
    /// has insufficient buying power." bound to the order id, then OrderStatus Inactive.
    pub reject_orders: Vec<String>,
    /// An order's acknowledgement (and what follows it: fill, rejection) is sent this long
    /// after the order was recorded, while the gateway goes on reading; the order is
    /// PendingSubmit meanwhile, and one cancelled meanwhile is never acknowledged.
    pub order_ack_delay: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            accounts: vec!["DU1234567".into()],
            accounts_delay: Duration::ZERO,
            no_next_valid_id: false,
            ids_in_use: Vec::new(),
            client_id_linger: Duration::ZERO,
            farm_notices: true,
            unknown_symbols: Vec::new(),
            pacing_violations: 0,
            history_no_data: Vec::new(),
            history_no_permissions: Vec::new(),
            realistic_history: false,
            history_end: None,
            drop_on_history: Vec::new(),
            realtime_interval: Duration::from_millis(100),
            realtime_refused: Vec::new(),
            drop_after_realtime_bars: None,
            connectivity_loss: None,
            outage: None,
            farm_flap: None,
            silent_feeds: Vec::new(),
            trading_hours: false,
            holidays: Vec::new(),
            ambiguous_symbols: Vec::new(),
            reply_delay: Duration::ZERO,
            step_sizes: false,
            drop_after_order: None,
            reject_orders: Vec::new(),
            order_ack_delay: Duration::ZERO,
        }
    }
}

impl Behaviour {
    /// The refusal of real-time bars for `symbol` without a market data subscription (354).
    pub fn not_subscribed(symbol: &str) -> (String, i32, String) {
        (
            symbol.into(),
            codes::NOT_SUBSCRIBED,
            texts::NOT_SUBSCRIBED.into(),
        )
    }

    /// The refusal of real-time bars for `symbol` while the account's live session is open
    /// elsewhere (10197).
    pub fn competing_session(symbol: &str) -> (String, i32, String) {
        (
            symbol.into(),
            codes::COMPETING_LIVE_SESSION,
            texts::COMPETING_LIVE_SESSION.into(),
        )
    }
}
