//! What the runner tells a worker it starts: [`WorkerOptions`], carried as hex text in the
//! environment ([`OPTIONS_ENV`]), with the backend's settings and, for the simulated market,
//! the faults to inject ([`SimFaults`], which also parses its own text form). What a worker
//! inherits from the workers before it is not set here but handed over whole
//! ([`crate::Handover`], through `WorkerOptions::inherit`).
//!
//! Invariants: the bridge timings default to the bridge's own defaults
//! (`bridge::channel::ChannelConfig::default()`), so there is one source for them; options survive
//! [`WorkerOptions::encode`] and [`WorkerOptions::decode`] unchanged.

use std::time::Duration;

use bincode::{Decode, Encode};
use bridge::codec::{self, CodecError};

/// Environment variable carrying the encoded [`WorkerOptions`].
pub const OPTIONS_ENV: &str = "IBBRIDGE_WORKER_OPTIONS";

/// The simulated account, unless configured otherwise.
pub const SIM_ACCOUNT: &str = "DU0000001";

/// Default of [`WorkerOptions::handshake_timeout_ms`]: how long connecting to the broker may
/// take (accounts and next order id both known).
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// Everything a worker needs to know.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct WorkerOptions {
    /// Which broker to talk to.
    pub backend: BackendOptions,
    /// How often the liveness thread beats and probes (ms).
    pub heartbeat_ms: u64,
    /// A runner silent this long is declared hung (ms).
    pub hang_timeout_ms: u64,
    /// How long `connect` may wait for the broker to be ready (ms).
    pub handshake_timeout_ms: u64,
    /// Threads serving requests concurrently.
    pub handler_threads: usize,
    /// How many workers the runner started before this one (0 for the first). Injected
    /// crash and hang faults apply to the first worker only.
    pub generation: u32,
    /// Most verbose level forwarded to the runner: 0 error … 4 trace.
    pub log_level: u8,
    /// Historical requests the workers before this one sent in the last 10 minutes: symbol,
    /// bar size, and when (Unix milliseconds). IB paces them whichever worker sent them.
    /// Handed over ([`crate::Handover`]), never set one by one.
    pub(crate) paced_history: Vec<(String, u32, u64)>,
}

impl WorkerOptions {
    /// Options with defaults around a backend: the bridge's default timings, and
    /// [`DEFAULT_HANDSHAKE_TIMEOUT_MS`].
    pub fn new(backend: BackendOptions) -> Self {
        let bridge = bridge::channel::ChannelConfig::default();
        WorkerOptions {
            backend,
            heartbeat_ms: bridge.heartbeat_interval.as_millis() as u64,
            hang_timeout_ms: bridge.hang_timeout.as_millis() as u64,
            handshake_timeout_ms: DEFAULT_HANDSHAKE_TIMEOUT_MS,
            handler_threads: 16,
            generation: 0,
            log_level: 2,
            paced_history: Vec::new(),
        }
    }

    /// Hex text of the bincode encoding, for the environment.
    pub fn encode(&self) -> Result<String, CodecError> {
        let bytes = codec::encode(self)?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Reads [`encode`](Self::encode)'s output back.
    pub fn decode(text: &str) -> Result<Self, CodecError> {
        let text = text.trim();
        if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CodecError::Invalid("options are not hex text"));
        }
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap_or(0))
            .collect();
        // A contract spec with empty fields decodes to about six times its encoding, more
        // than the bridge's messages ever do.
        codec::decode_at_most(&bytes, bytes.len().saturating_mul(16))
    }

    pub(crate) fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
}

/// The broker behind the worker.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
// Made once per worker started and read in place: the size of a variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum BackendOptions {
    /// The built-in simulated market.
    Sim(SimOptions),
    /// Interactive Brokers TWS or IB Gateway.
    Ibkr(IbkrOptions),
    /// A hub on another machine, reached over NATS ([`crate::remote`]).
    Remote(RemoteOptions),
}

/// Settings of a hub reached over NATS: its server, its name, and this program's name there.
#[derive(Clone, PartialEq, Encode, Decode)]
pub struct RemoteOptions {
    /// The server, `nats://HOST:PORT`.
    pub url: String,
    /// A credentials file (`.creds`) the server wants.
    pub creds_file: Option<String>,
    /// A token the server wants (never printed).
    pub token: Option<String>,
    /// The hub's name.
    pub hub: String,
    /// This program's name at the hub: the namespace of its order references, and the name
    /// of its durable consumers (a restarted program of the same name resumes where it left).
    pub client: String,
    /// How long one request to the hub may wait for an answer, milliseconds.
    pub request_timeout_ms: u64,
    /// How long a history request may wait for each batch, milliseconds.
    pub history_timeout_ms: u64,
    /// The program's run, the same for every worker it starts: the hub serves one run of a
    /// client name at a time.
    pub instance: String,
}

impl std::fmt::Debug for RemoteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteOptions")
            .field("url", &self.url)
            .field("creds_file", &self.creds_file)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("hub", &self.hub)
            .field("client", &self.client)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("history_timeout_ms", &self.history_timeout_ms)
            .field("instance", &self.instance)
            .finish()
    }
}

/// Settings of the simulated market.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct SimOptions {
    /// Seed of the price paths: same seed, same prices.
    pub seed: u64,
    /// Simulated seconds per real second for real-time bars.
    pub speed: f64,
    /// The market clock (Unix seconds) at wall-clock time `anchor_ms`; `None` is the wall
    /// clock.
    pub start: Option<i64>,
    /// Wall-clock Unix milliseconds at which the market clock read `start` (`None`: when this
    /// worker started). The runner sets it once, so every worker it starts, first or
    /// replacement, continues the same market clock.
    pub anchor_ms: Option<u64>,
    /// Injected faults (for tests).
    pub faults: SimFaults,
    /// For the benchmark harness, never set by a run: each live bar's `volume` is replaced by
    /// the monotonic clock ([`bridge::platform::monotonic_ns`]) when the bar is handed to the
    /// bridge, so the receiver can time its way.
    pub stamp_bars: bool,
    /// The simulated broker's account and fills.
    pub broker: SimBrokerOptions,
    /// The last [`Event::BookTold`](bridge::protocol::Event::BookTold) the runner received
    /// from the workers before this one: orders final by then, with every fill by then, are
    /// not told again (`None`: the whole book is told, as to a first worker).
    pub book_told_through: Option<i64>,
    /// The days of a gateway and an exchange: sessions, the gateway's daily restart and
    /// weekly re-login (off by default: bars at every hour, the connection never down).
    pub calendar: SimCalendar,
    /// As IB's real-time bars: a live subscription's first bar is the first one that starts
    /// at or after the subscription; the bar forming when it was made is never sent (off: it
    /// is, from its start).
    pub skip_forming_bar: bool,
    /// A recording (its path) whose bars are the market's prices instead of the price paths:
    /// a replay. Only its symbols and its bar size exist.
    pub replay: Option<String>,
}

/// A gateway's and an exchange's calendar on the simulated market, in US/Eastern time as at
/// the US exchanges: bars only in sessions (weekdays), and the gateway down once a day for its
/// restart, for longer once a week (its re-login). All off by default.
#[derive(Debug, Clone, Default, PartialEq, Encode, Decode)]
pub struct SimCalendar {
    /// Bars (live and history) only in sessions: weekdays, 09:30-16:00 with
    /// `regular_hours_only`, else 04:00-20:00.
    pub sessions: bool,
    /// Sessions are the regular hours only.
    pub regular_hours_only: bool,
    /// Minute of the day (US/Eastern) the gateway restarts at, daily: the connection is lost,
    /// every live subscription dropped, then the connection restored with market data lost
    /// (as IB's 1101), and the subscriptions made again. `None`: never.
    pub daily_restart_minute: Option<u32>,
    /// How long a daily restart keeps the gateway down, market seconds.
    pub restart_seconds: u32,
    /// Day of the week (0 Monday .. 6 Sunday) whose restart is the weekly re-login: down for
    /// `relogin_seconds`, reconnection attempts told meanwhile. `None`: none.
    pub relogin_weekday: Option<u8>,
    /// How long the weekly re-login keeps the gateway down, market seconds.
    pub relogin_seconds: u32,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            seed: 42,
            speed: 1.0,
            start: None,
            anchor_ms: None,
            faults: SimFaults::default(),
            stamp_bars: false,
            broker: SimBrokerOptions::default(),
            book_told_through: None,
            calendar: SimCalendar::default(),
            skip_forming_bar: false,
            replay: None,
        }
    }
}

/// The simulated broker: where its book is kept, its account, and how it fills.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct SimBrokerOptions {
    /// The account the broker manages.
    pub account: String,
    /// The broker's journal of orders (placements and cancels), shared by every worker of a
    /// run so that an order outlives the worker that placed it, as at a real broker. `None`:
    /// kept in the worker's memory, lost with it.
    pub orders_file: Option<String>,
    /// The account's cash at the start.
    pub cash: f64,
    /// Slippage of each fill against the bar's open, in basis points (against the order).
    pub slippage_bps: f64,
    /// Commission per share.
    pub commission_per_share: f64,
    /// Least commission per fill.
    pub min_commission: f64,
    /// Most shares filled per bar: a larger order fills in parts over several bars.
    pub max_fill_per_bar: f64,
    /// Bar size of the fills, seconds: an order fills at the open of the next bar.
    pub fill_seconds: u32,
    /// Fold the book (the run's own workers only): orders final, told and settled are kept
    /// only as totals and references once more than this many of them are kept whole, and
    /// the journal is rewritten without them. `None`: never folded.
    pub keep_orders: Option<u32>,
}

impl Default for SimBrokerOptions {
    fn default() -> Self {
        SimBrokerOptions {
            account: SIM_ACCOUNT.to_string(),
            orders_file: None,
            cash: 1_000_000.0,
            slippage_bps: 1.0,
            commission_per_share: 0.005,
            min_commission: 1.0,
            max_fill_per_bar: 1_000.0,
            fill_seconds: 5,
            keep_orders: None,
        }
    }
}

/// Faults the simulated market can inject, for tests.
#[derive(Debug, Clone, Default, PartialEq, Encode, Decode)]
pub struct SimFaults {
    /// Managed accounts arrive this long after the connection starts (ms).
    pub accounts_delay_ms: u64,
    /// Managed accounts never arrive.
    pub accounts_never: bool,
    /// Every request the market answers (all but `ping` and `shutdown`, which the worker
    /// answers itself) is held back this long (ms).
    pub reply_delay_ms: u64,
    /// The first worker kills itself (SIGKILL) after sending this many history batches.
    pub crash_after_batches: Option<u64>,
    /// The first worker stops itself (SIGSTOP) after sending this many history batches.
    pub hang_after_batches: Option<u64>,
    /// Symbols for which the market has no data.
    pub no_data: Vec<String>,
    /// The first worker kills itself (SIGKILL) right after the broker has taken this many
    /// orders, before it acknowledges the last one.
    pub crash_after_orders: Option<u64>,
    /// Every order's acknowledgement is held back this long after the broker has taken it
    /// (ms): a window in which a worker killed leaves an order placed but unanswered.
    pub order_ack_delay_ms: u64,
    /// Fills are not told as events (as a connection that missed the broker's execution
    /// reports): they are known only from the broker's list of executions.
    pub fill_events_dropped: bool,
}

impl std::str::FromStr for SimFaults {
    type Err = String;

    /// Reads comma-separated `key=value` pairs: `accounts_delay_ms=N`, `accounts_never` (or
    /// `accounts_never=true`), `reply_delay_ms=N`, `crash_after_batches=N`,
    /// `hang_after_batches=N`, `no_data=SYM1+SYM2`, `crash_after_orders=N`,
    /// `order_ack_delay_ms=N`, `fill_events_dropped`. Empty text is no fault.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut f = SimFaults::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, "true"));
            let num = || {
                v.parse::<u64>()
                    .map_err(|_| format!("{k} needs a number, got {v:?}"))
            };
            match k {
                "accounts_delay_ms" => f.accounts_delay_ms = num()?,
                "accounts_never" => f.accounts_never = v == "true",
                "reply_delay_ms" => f.reply_delay_ms = num()?,
                "crash_after_batches" => f.crash_after_batches = Some(num()?),
                "hang_after_batches" => f.hang_after_batches = Some(num()?),
                "no_data" => f.no_data = v.split('+').map(String::from).collect(),
                "crash_after_orders" => f.crash_after_orders = Some(num()?),
                "order_ack_delay_ms" => f.order_ack_delay_ms = num()?,
                "fill_events_dropped" => f.fill_events_dropped = v == "true",
                other => return Err(format!("unknown fault {other:?}")),
            }
        }
        Ok(f)
    }
}

/// IB's 5-second bar intervals a live stream may deliver nothing in before it is made again:
/// a minute.
pub const DEFAULT_SILENT_BARS: u32 = 12;

/// Settings of the Interactive Brokers connection.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct IbkrOptions {
    /// `host:port` of TWS or IB Gateway.
    pub gateway: String,
    /// The API client id.
    pub client_id: i32,
    /// Client ids tried, from `client_id` up, while the gateway says one is in use.
    pub client_id_attempts: u32,
    /// How long a gateway that refuses the connection (not up yet), or still holds the client
    /// id, is retried with backoff before `connect` fails; milliseconds, 0: no retry.
    pub connect_wait_ms: u64,
    /// What bars are made of, unless a contract says otherwise.
    pub what_to_show: WhatToShow,
    /// Regular trading hours only, unless a contract says otherwise.
    pub use_rth: bool,
    /// Which market data the gateway sends (IB's market data type).
    pub market_data_type: MarketDataKind,
    /// Reconnection attempts after the socket to the gateway closes before giving up; 0:
    /// for ever.
    pub reconnect_attempts: u32,
    /// When the gateway refuses a symbol's live bars for want of a market data permission or
    /// subscription, build its bars from IB's delayed feed instead (reported as such).
    pub delayed_fallback: bool,
    /// A live stream that delivers nothing for this many of IB's 5-second bar intervals while
    /// the gateway is connected and the symbol in session is cancelled and made again; still
    /// silent as long again after that, it is reported stalled.
    pub silent_bars: u32,
    /// Contracts that are not SMART-routed USD stocks.
    pub contracts: Vec<ContractSpec>,
    /// Orders on a live (non-paper) account are allowed.
    pub allow_live: bool,
}

impl Default for IbkrOptions {
    /// IB Gateway's paper port on this machine, client id 1, live trades in regular hours,
    /// reconnecting for ever.
    fn default() -> Self {
        IbkrOptions {
            gateway: "127.0.0.1:4002".into(),
            client_id: 1,
            client_id_attempts: 1,
            connect_wait_ms: 0,
            what_to_show: WhatToShow::default(),
            use_rth: true,
            market_data_type: MarketDataKind::default(),
            reconnect_attempts: 0,
            delayed_fallback: false,
            silent_bars: DEFAULT_SILENT_BARS,
            contracts: Vec::new(),
            allow_live: false,
        }
    }
}

/// How a symbol is traded, where it is not a SMART-routed USD stock.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ContractSpec {
    pub symbol: String,
    /// Routing exchange, e.g. `SMART`.
    pub exchange: String,
    /// Currency, e.g. `CAD`.
    pub currency: String,
    /// Primary listing exchange, to disambiguate, e.g. `TSE`.
    pub primary_exchange: Option<String>,
    /// What this symbol's bars are made of, if not the run's.
    pub what_to_show: Option<WhatToShow>,
    /// Regular trading hours only for this symbol, if not the run's choice.
    pub use_rth: Option<bool>,
    /// What kind of instrument.
    pub sec_type: SecType,
    /// IB's contract id: names the contract exactly (nothing is looked up).
    pub con_id: Option<i32>,
    /// IB's symbol where it differs from the runner's name for it (`BRK B` for `BRK.B`).
    pub ib_symbol: Option<String>,
    /// The contract's symbol at its exchange (`ESZ6`, `EUR.USD`), spaces included.
    pub local_symbol: Option<String>,
    /// A future's contract month (`YYYYMM`) or last trading day (`YYYYMMDD`).
    pub expiry: Option<String>,
}

impl ContractSpec {
    /// `symbol` as a SMART-routed USD stock, every other choice the run's.
    pub fn smart_stock(symbol: &str) -> ContractSpec {
        ContractSpec {
            symbol: symbol.into(),
            exchange: "SMART".into(),
            currency: "USD".into(),
            primary_exchange: None,
            what_to_show: None,
            use_rth: None,
            sec_type: SecType::Stock,
            con_id: None,
            ib_symbol: None,
            local_symbol: None,
            expiry: None,
        }
    }
}

/// What kind of instrument a contract is (IB's `secType`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Encode, Decode)]
pub enum SecType {
    /// A stock or ETF (`STK`).
    #[default]
    Stock,
    /// A future (`FUT`).
    Future,
    /// A currency pair (`CASH`).
    Forex,
    /// An index (`IND`).
    Index,
}

impl std::str::FromStr for SecType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "STK" | "STOCK" => Ok(SecType::Stock),
            "FUT" | "FUTURE" => Ok(SecType::Future),
            "CASH" | "FOREX" => Ok(SecType::Forex),
            "IND" | "INDEX" => Ok(SecType::Index),
            _ => Err(format!(
                "sec_type must be one of STK, FUT, CASH, IND, got {s:?}"
            )),
        }
    }
}

impl std::fmt::Display for SecType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SecType::Stock => "STK",
            SecType::Future => "FUT",
            SecType::Forex => "CASH",
            SecType::Index => "IND",
        })
    }
}

/// Which market data the gateway sends (IB's `reqMarketDataType`): live needs a market data
/// subscription; frozen is the last data at the close; delayed is 15 to 20 minutes late and
/// needs none (most paper accounts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Encode, Decode)]
pub enum MarketDataKind {
    /// Live data (IB's default).
    #[default]
    Live,
    /// The last data at the close.
    Frozen,
    /// Delayed data.
    Delayed,
    /// The last delayed data at the close.
    DelayedFrozen,
}

impl std::str::FromStr for MarketDataKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "live" => Ok(MarketDataKind::Live),
            "frozen" => Ok(MarketDataKind::Frozen),
            "delayed" => Ok(MarketDataKind::Delayed),
            "delayed-frozen" => Ok(MarketDataKind::DelayedFrozen),
            _ => Err(format!(
                "market_data_type must be one of live, frozen, delayed, delayed-frozen, got {s:?}"
            )),
        }
    }
}

impl std::fmt::Display for MarketDataKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MarketDataKind::Live => "live",
            MarketDataKind::Frozen => "frozen",
            MarketDataKind::Delayed => "delayed",
            MarketDataKind::DelayedFrozen => "delayed-frozen",
        })
    }
}

/// What prices bars are made of (IB's `whatToShow`): the kinds both historical and real-time
/// bars offer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Encode, Decode)]
pub enum WhatToShow {
    /// Trades (IB's default).
    #[default]
    Trades,
    /// The midpoint between bid and ask.
    Midpoint,
    /// Bids.
    Bid,
    /// Asks.
    Ask,
}

impl WhatToShow {
    /// IB's name of it.
    pub fn as_str(self) -> &'static str {
        match self {
            WhatToShow::Trades => "TRADES",
            WhatToShow::Midpoint => "MIDPOINT",
            WhatToShow::Bid => "BID",
            WhatToShow::Ask => "ASK",
        }
    }
}

impl std::fmt::Display for WhatToShow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for WhatToShow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "TRADES" => Ok(WhatToShow::Trades),
            "MIDPOINT" => Ok(WhatToShow::Midpoint),
            "BID" => Ok(WhatToShow::Bid),
            "ASK" => Ok(WhatToShow::Ask),
            _ => Err(format!(
                "what_to_show must be one of TRADES, MIDPOINT, BID, ASK, got {s:?}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip_through_the_environment_form() {
        let mut o = WorkerOptions::new(BackendOptions::Sim(SimOptions::default()));
        o.generation = 3;
        let text = o.encode().unwrap();
        assert!(text.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(WorkerOptions::decode(&text).unwrap(), o);
        let not_hex = WorkerOptions::decode("zz").unwrap_err();
        assert_eq!(
            not_hex.to_string(),
            "cannot decode message: options are not hex text"
        );
        assert!(WorkerOptions::decode("abc").is_err());
    }

    /// Contract specs with every field empty are the options' largest decoded form for their
    /// encoding; a list of them still decodes.
    #[test]
    fn many_empty_contract_specs_round_trip() {
        let empty = ContractSpec {
            symbol: String::new(),
            exchange: String::new(),
            currency: String::new(),
            primary_exchange: None,
            what_to_show: None,
            use_rth: None,
            sec_type: SecType::default(),
            con_id: None,
            ib_symbol: None,
            local_symbol: None,
            expiry: None,
        };
        for n in [1, 10, 1000] {
            let o = WorkerOptions::new(BackendOptions::Ibkr(IbkrOptions {
                contracts: vec![empty.clone(); n],
                ..IbkrOptions::default()
            }));
            assert_eq!(
                WorkerOptions::decode(&o.encode().unwrap()).unwrap(),
                o,
                "{n}"
            );
        }
    }

    #[test]
    fn defaults_are_the_bridges() {
        let o = WorkerOptions::new(BackendOptions::Sim(SimOptions::default()));
        let bridge = bridge::channel::ChannelConfig::default();
        assert_eq!(
            Duration::from_millis(o.heartbeat_ms),
            bridge.heartbeat_interval
        );
        assert_eq!(
            Duration::from_millis(o.hang_timeout_ms),
            bridge.hang_timeout
        );
        assert_eq!(o.handshake_timeout(), Duration::from_secs(10));
    }

    #[test]
    fn faults_parse_from_text() {
        let f: SimFaults = "accounts_delay_ms=20, accounts_never,reply_delay_ms=5,\
                            crash_after_batches=3,hang_after_batches=4,no_data=A+B,\
                            crash_after_orders=2,order_ack_delay_ms=30,fill_events_dropped"
            .parse()
            .unwrap();
        assert_eq!(
            f,
            SimFaults {
                accounts_delay_ms: 20,
                accounts_never: true,
                reply_delay_ms: 5,
                crash_after_batches: Some(3),
                hang_after_batches: Some(4),
                no_data: vec!["A".into(), "B".into()],
                crash_after_orders: Some(2),
                order_ack_delay_ms: 30,
                fill_events_dropped: true,
            }
        );
        assert_eq!("".parse::<SimFaults>().unwrap(), SimFaults::default());
        assert_eq!(
            "accounts_never=false".parse::<SimFaults>().unwrap(),
            SimFaults::default()
        );
        assert_eq!(
            "crash_after_batches=soon".parse::<SimFaults>().unwrap_err(),
            "crash_after_batches needs a number, got \"soon\""
        );
        assert_eq!(
            "explode".parse::<SimFaults>().unwrap_err(),
            "unknown fault \"explode\""
        );
    }
}
