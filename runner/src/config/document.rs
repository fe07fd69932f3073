//! The configuration as it is written ([`Config`] and one struct per section, with their
//! defaults): what a TOML file, the environment and the command line fill in, and what
//! `runner check-config` prints.
//!
//! Invariants: every section refuses unknown keys; a missing key takes the section's
//! default; the defaults of the bridge and the simulated broker are the bridge's and the
//! worker's own (one source for each); a `Config` is fit to run once
//! [`Config::validate`](crate::config::Config::validate) passed.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::text::{as_text, option_as_text, tif_from_text, HistoryEnd};
use bridge::protocol::TimeInForce;
use worker::options::{MarketDataKind, SecType, WhatToShow};

/// Which broker the worker talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The built-in simulated market.
    Sim,
    /// Interactive Brokers TWS / IB Gateway.
    Ibkr,
    /// A recorded run replayed (`[replay]`): its bars are the market, its prices the
    /// simulated broker's.
    Replay,
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sim" => Ok(BackendKind::Sim),
            "ibkr" => Ok(BackendKind::Ibkr),
            "replay" => Ok(BackendKind::Replay),
            other => Err(format!(
                "unknown backend {other:?} (expected sim, ibkr or replay)"
            )),
        }
    }
}

/// Everything the runner can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `sim`, `ibkr` or `replay`.
    pub backend: BackendKind,
    /// Symbols to trade.
    pub symbols: Vec<String>,
    /// CSV file the signals are written to (none: not written).
    pub signals: Option<PathBuf>,
    /// File every bar of the run (history and live), its configuration and its strategy's
    /// signals are recorded to, for a replay (none: not recorded).
    pub record: Option<PathBuf>,
    pub history: HistoryConfig,
    pub live: LiveConfig,
    pub strategy: StrategyConfig,
    pub sim: SimConfig,
    pub replay: ReplayConfig,
    pub ibkr: IbkrConfig,
    pub bridge: BridgeConfig,
    pub supervisor: SupervisorConfig,
    pub trading: TradingConfig,
    pub dashboard: DashboardConfig,
    pub hub: HubConfig,
    pub nats: NatsConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Bar size, seconds.
    pub bar_seconds: u32,
    /// How much history, seconds.
    pub duration_seconds: u64,
    /// Deadline of one symbol's fetch, seconds.
    pub timeout_seconds: u64,
    /// Symbols fetched at once.
    pub concurrency: usize,
    /// End of the history: Unix seconds or `YYYY-MM-DDTHH:MM:SSZ` (UTC); unset: now. The bar
    /// still forming at the end is never included.
    #[serde(with = "option_as_text")]
    pub end: Option<HistoryEnd>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveConfig {
    /// Length of the live phase, wall seconds; 0 runs until Ctrl-C.
    pub duration_seconds: u64,
    /// Skip the live phase.
    pub disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StrategyConfig {
    /// Bars in the fast moving average.
    pub fast: usize,
    /// Bars in the slow moving average.
    pub slow: usize,
    /// A symbol whose last bar lags the newest bar of any symbol by more than this many bars
    /// is stale: no signal.
    pub stale_after_bars: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Seed of the price paths.
    pub seed: u64,
    /// Simulated seconds per real second.
    pub speed: f64,
    /// Market clock at start (Unix seconds); absent: the wall clock.
    pub start: Option<i64>,
    /// The account the simulated broker manages (a paper account, `D…`, unless set).
    pub account: String,
    /// The simulated broker's book of orders, kept across runs (absent: one for each run,
    /// removed at its end).
    pub orders_file: Option<PathBuf>,
    /// The simulated account's cash at the start.
    pub cash: f64,
    /// Slippage of each fill against the bar's open, basis points.
    pub slippage_bps: f64,
    /// Commission per share.
    pub commission_per_share: f64,
    /// Least commission per fill.
    pub min_commission: f64,
    /// Most shares filled per bar; a larger order fills in parts.
    pub max_fill_per_bar: f64,
    /// Orders fill at the open of the next bar of this many seconds.
    pub fill_seconds: u32,
    /// Finished orders the simulated broker keeps whole; older ones, told and settled, are
    /// folded into totals and their journal lines removed.
    pub keep_orders: u32,
    /// Keep a gateway's and an exchange's calendar (US/Eastern): bars only in sessions on
    /// weekdays, the gateway down for its daily restart and weekly re-login below.
    pub calendar: bool,
    /// With `calendar`: sessions are 09:30-16:00 (else 04:00-20:00).
    pub regular_hours_only: bool,
    /// With `calendar`: when the gateway restarts each day, `HH:MM` US/Eastern ("": never).
    pub daily_restart: String,
    /// With `calendar`: how long a daily restart keeps the gateway down, market seconds.
    pub restart_seconds: u32,
    /// With `calendar`: the day whose restart is the weekly re-login (`monday` ..
    /// `sunday`; "": none).
    pub relogin_day: String,
    /// With `calendar`: how long the weekly re-login keeps the gateway down, market seconds.
    pub relogin_seconds: u32,
    /// As IB's real-time bars: a live subscription's first bar is the first that starts after
    /// it is made (the bar then forming is never sent), so that the bars between a history
    /// and the live ones come only from the runner's seam fill.
    pub skip_forming_bar: bool,
}

/// A recorded run replayed (`backend = "replay"`): its bars through the bridge and a worker at
/// a chosen speed, the simulated broker filling orders against the recorded prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayConfig {
    /// The recording (`runner run --record FILE` made it).
    pub file: Option<PathBuf>,
    /// Recorded seconds per real second.
    pub speed: f64,
    /// Replay hub `stream`'s JetStream stream on `nats.url` instead of a file (`--replay
    /// nats://HOST:PORT/HUB`; `""`: a file).
    pub stream: String,
    /// Where a stream's live bars begin (before: the history); unset: after the first
    /// `history.duration_seconds` it holds (`--from`).
    #[serde(with = "option_as_text")]
    pub from: Option<HistoryEnd>,
    /// Where a stream's live bars end; unset: its last (`--to`).
    #[serde(with = "option_as_text")]
    pub to: Option<HistoryEnd>,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            file: None,
            speed: 60.0,
            stream: String::new(),
            from: None,
            to: None,
        }
    }
}

/// A hub's streams on NATS JetStream (`runner hub` with `url` set): its bars and events
/// published, the stream made if missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// The server, `nats://HOST:PORT` (unset: no NATS).
    pub url: Option<String>,
    /// A credentials file (`.creds`) the server wants.
    pub creds_file: Option<PathBuf>,
    /// A token the server wants (never printed, nor recorded).
    #[serde(skip_serializing)]
    pub token: Option<String>,
    /// How long the stream keeps what it holds, seconds.
    pub retention_seconds: u64,
    /// How long the server remembers a message id to drop a duplicate, seconds.
    pub duplicate_window_seconds: u64,
    /// Messages kept while the server is away, published when it is back (the oldest lost
    /// beyond, counted).
    pub buffer: usize,
    /// Most programs a hub serves over NATS at once (of its `hub.max_clients`).
    pub max_remote_clients: u32,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: None,
            creds_file: None,
            token: None,
            retention_seconds: 7 * 86_400,
            duplicate_window_seconds: 600,
            buffer: 100_000,
            max_remote_clients: 16,
        }
    }
}

/// Days of the week as `sim.relogin_day` names them, Monday first.
pub(super) const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

impl SimConfig {
    /// The minute of the day `sim.daily_restart` names, if it names one (`HH:MM`).
    pub(super) fn restart_minute(&self) -> Option<Result<u32, ()>> {
        let text = self.daily_restart.trim();
        if text.is_empty() {
            return None;
        }
        let parsed = text.split_once(':').and_then(|(h, m)| {
            let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
            (h < 24 && m < 60 && text.len() == 5).then_some(h * 60 + m)
        });
        Some(parsed.ok_or(()))
    }

    /// The day of the week `sim.relogin_day` names (0 Monday), if it names one.
    pub(super) fn relogin_weekday(&self) -> Option<Result<u8, ()>> {
        let text = self.relogin_day.trim().to_ascii_lowercase();
        if text.is_empty() {
            return None;
        }
        Some(
            WEEKDAYS
                .iter()
                .position(|d| *d == text)
                .map(|d| d as u8)
                .ok_or(()),
        )
    }

    /// The simulated market's calendar as the worker takes it (all off without `calendar`).
    pub fn calendar_options(&self) -> worker::options::SimCalendar {
        if !self.calendar {
            return worker::options::SimCalendar::default();
        }
        worker::options::SimCalendar {
            sessions: true,
            regular_hours_only: self.regular_hours_only,
            daily_restart_minute: self.restart_minute().and_then(Result::ok),
            restart_seconds: self.restart_seconds,
            relogin_weekday: self.relogin_weekday().and_then(Result::ok),
            relogin_seconds: self.relogin_seconds,
        }
    }
}

/// Trading: off unless asked for (`runner run --trade`), and checked against these limits in
/// the runner before an order leaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TradingConfig {
    /// The strategy's signals become orders (`--trade`).
    pub enabled: bool,
    /// Shares per order the strategy places.
    pub quantity: f64,
    /// Buy signals open or add to a long position, sell signals close it; never short.
    pub long_only: bool,
    /// Time in force of the strategy's orders: `day` or `gtc`.
    #[serde(
        serialize_with = "as_text::serialize",
        deserialize_with = "tif_from_text"
    )]
    pub tif: TimeInForce,
    /// Trade on an account that is not a paper account (IB: ids not starting with `D`).
    pub allow_live: bool,
    /// On Ctrl-C or at the end of a run, cancel the run's working orders before the worker
    /// disconnects.
    pub cancel_on_exit: bool,
    /// Most shares in one order.
    pub max_order_quantity: f64,
    /// Most value of one order (shares × limit or last price).
    pub max_order_value: f64,
    /// Most shares held in one symbol, long or short, counting the order.
    pub max_position: f64,
    /// Most orders sent in any 60 seconds.
    pub max_orders_per_minute: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IbkrConfig {
    /// `host:port` of TWS (7497 paper, 7496 live) or IB Gateway (4002 paper, 4001 live).
    pub gateway: String,
    /// API client id; must be unique among the gateway's connections.
    pub client_id: i32,
    /// Ids tried, from `client_id` up, while the gateway says one is in use (1: only it).
    pub client_id_attempts: u32,
    /// How long a gateway that is not up yet (connection refused, or the client id still
    /// taken by a connection that just died) is waited for, retrying with backoff; 0: fail
    /// at once.
    pub connect_wait_seconds: u64,
    /// What bars are made of: TRADES, MIDPOINT, BID or ASK.
    #[serde(with = "as_text")]
    pub what_to_show: WhatToShow,
    /// Regular trading hours only (IB's `useRTH`).
    pub use_rth: bool,
    /// Which market data the gateway sends: live, frozen, delayed or delayed-frozen.
    #[serde(with = "as_text")]
    pub market_data_type: MarketDataKind,
    /// Reconnection attempts after the socket to the gateway closes (1 s, 2 s, 3 s, 5 s, ...
    /// up to 30 s apart) before the run gives up and fails; 0: for ever.
    pub reconnect_attempts: u32,
    /// A symbol whose live bars are refused for want of a market data subscription gets bars
    /// built from IB's delayed feed instead (15-20 minutes late), reported as such.
    pub delayed_fallback: bool,
    /// A live feed that sends nothing for this many of its 5-second bars while its market
    /// is open is asked for again (once per silence, then every 10 silences while it stays
    /// silent); 1..=720.
    pub silent_bars: u32,
    /// Symbols that are not SMART-routed USD stocks, by symbol.
    pub contracts: std::collections::BTreeMap<String, ContractConfig>,
}

/// How one symbol is traded at IB, as written under `[ibkr.contracts.SYMBOL]`: text that is
/// checked and turned into the worker's [`ContractSpec`](worker::options::ContractSpec),
/// whose fields say what each one names. Only what differs in the writing is told here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContractConfig {
    pub exchange: String,
    pub currency: String,
    pub primary_exchange: Option<String>,
    /// `TRADES`, `MIDPOINT`, `BID` or `ASK`; unset: `ibkr.what_to_show`.
    #[serde(with = "option_as_text")]
    pub what_to_show: Option<WhatToShow>,
    /// Unset: `ibkr.use_rth`.
    pub use_rth: Option<bool>,
    /// `STK`, `FUT`, `CASH` (forex) or `IND`.
    #[serde(with = "as_text")]
    pub sec_type: SecType,
    pub con_id: Option<i32>,
    pub ib_symbol: Option<String>,
    pub local_symbol: Option<String>,
    pub expiry: Option<String>,
}

impl Default for ContractConfig {
    fn default() -> Self {
        ContractConfig {
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeConfig {
    /// Bytes of each ring; a power of two.
    pub ring_capacity: usize,
    /// Largest message, bytes; at most half a ring.
    pub max_frame: usize,
    /// Heartbeat period, ms.
    pub heartbeat_ms: u64,
    /// A side silent this long is declared hung, ms.
    pub hang_timeout_ms: u64,
    /// Deadline of one request, seconds.
    pub request_timeout_seconds: u64,
    /// How long connecting to the broker may take, ms.
    pub handshake_timeout_ms: u64,
    /// The runner's receiving threads busy-poll instead of sleeping, so that a live bar
    /// reaches the strategy without a wake: the bridge's dispatcher for as long as a worker is
    /// connected, the job's event loop during the live phase (and the soak's), each keeping a
    /// core busy meanwhile. For machines with cores to dedicate; off by default.
    pub spin: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisorConfig {
    /// Worker restarts allowed within `restart_window_seconds` before giving up (a restart
    /// intensity, as OTP supervisors have: restarts further apart never add up).
    pub max_restarts: u32,
    /// The window `max_restarts` counts over, seconds.
    pub restart_window_seconds: u64,
    /// First delay before a restart, ms; doubles on each consecutive failure.
    pub backoff_ms: u64,
    /// Longest delay before a restart, ms.
    pub max_backoff_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            backend: BackendKind::Sim,
            symbols: ["SPY", "QQQ", "AAPL", "MSFT", "NVDA", "TSLA", "AMZN"]
                .map(String::from)
                .to_vec(),
            signals: None,
            record: None,
            history: HistoryConfig::default(),
            live: LiveConfig::default(),
            strategy: StrategyConfig::default(),
            sim: SimConfig::default(),
            replay: ReplayConfig::default(),
            ibkr: IbkrConfig::default(),
            bridge: BridgeConfig::default(),
            supervisor: SupervisorConfig::default(),
            trading: TradingConfig::default(),
            dashboard: DashboardConfig::default(),
            hub: HubConfig::default(),
            nats: NatsConfig::default(),
        }
    }
}

impl Default for TradingConfig {
    fn default() -> Self {
        TradingConfig {
            enabled: false,
            quantity: 10.0,
            long_only: true,
            tif: TimeInForce::Day,
            allow_live: false,
            cancel_on_exit: true,
            max_order_quantity: 1_000.0,
            max_order_value: 100_000.0,
            max_position: 1_000.0,
            max_orders_per_minute: 60,
        }
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            bar_seconds: 60,
            duration_seconds: 86_400,
            timeout_seconds: 60,
            concurrency: 16,
            end: None,
        }
    }
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            duration_seconds: 5,
            disabled: false,
        }
    }
}

impl Default for StrategyConfig {
    fn default() -> Self {
        StrategyConfig {
            fast: 10,
            slow: 30,
            stale_after_bars: 3,
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        let broker = worker::options::SimBrokerOptions::default();
        SimConfig {
            seed: 42,
            speed: 60.0,
            start: None,
            account: broker.account,
            orders_file: None,
            cash: broker.cash,
            slippage_bps: broker.slippage_bps,
            commission_per_share: broker.commission_per_share,
            min_commission: broker.min_commission,
            max_fill_per_bar: broker.max_fill_per_bar,
            fill_seconds: broker.fill_seconds,
            keep_orders: 1000,
            calendar: false,
            regular_hours_only: true,
            daily_restart: "23:45".into(),
            restart_seconds: 120,
            relogin_day: "sunday".into(),
            relogin_seconds: 1800,
            skip_forming_bar: false,
        }
    }
}

impl Default for IbkrConfig {
    fn default() -> Self {
        IbkrConfig {
            gateway: "127.0.0.1:4002".into(),
            client_id: 1,
            client_id_attempts: 1,
            connect_wait_seconds: 0,
            what_to_show: WhatToShow::Trades,
            use_rth: true,
            market_data_type: MarketDataKind::Live,
            reconnect_attempts: 0,
            delayed_fallback: false,
            silent_bars: worker::options::DEFAULT_SILENT_BARS,
            contracts: std::collections::BTreeMap::new(),
        }
    }
}

impl Default for BridgeConfig {
    /// The bridge's own defaults (ring sizes, heartbeat, hang timeout) and the worker's
    /// handshake timeout: one source for each.
    fn default() -> Self {
        let geometry = bridge::segment::Geometry::default();
        let channel = bridge::channel::ChannelConfig::default();
        BridgeConfig {
            ring_capacity: geometry.ring_capacity,
            max_frame: geometry.max_frame,
            heartbeat_ms: channel.heartbeat_interval.as_millis() as u64,
            hang_timeout_ms: channel.hang_timeout.as_millis() as u64,
            request_timeout_seconds: 30,
            handshake_timeout_ms: worker::options::DEFAULT_HANDSHAKE_TIMEOUT_MS,
            spin: false,
        }
    }
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            max_restarts: 10,
            restart_window_seconds: 60,
            backoff_ms: 100,
            max_backoff_ms: 5000,
        }
    }
}

/// The live dashboard in the browser and the run's report file (`runner run`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Serve the dashboard while the run lasts (`--dashboard`).
    pub enabled: bool,
    /// Address it listens on: loopback unless another is given.
    pub listen: String,
    /// Bars held per symbol for its chart (at least the strategy's window is kept): a
    /// trading day of 5-second bars by default.
    pub bars: usize,
    /// Write the run's report, one self-contained HTML file, here when the run ends
    /// (`--report`).
    pub report: Option<PathBuf>,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            enabled: false,
            listen: "127.0.0.1:8787".into(),
            bars: 4_680,
            report: None,
        }
    }
}

/// A hub: one worker, and so one broker connection, shared by many local programs. Its own
/// settings (`runner hub`) and a client's (`--hub`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    /// Attach to the hub of this name instead of starting a worker (`--hub`; `""`: start
    /// one); the hub's name (`runner hub --name`).
    pub name: String,
    /// This program's name at the hub, the namespace of its order references (`--client`;
    /// `""`: `run-<pid>` for a run, `hand` for the commands by hand).
    pub client: String,
    /// How long a client waits for a lost hub to come back before it fails, seconds.
    pub wait_seconds: u64,
    /// Most clients a hub serves at once.
    pub max_clients: u32,
    /// What a hub does with the working orders of a client that went away without
    /// cancelling them: `keep` or `cancel`.
    pub departed_orders: String,
    /// Directory hubs are found in (`""`: `ibbridge-<uid>/hubs` in the temporary directory;
    /// `IBBRIDGE_HUB_DIR` overrides).
    pub dir: Option<PathBuf>,
    /// Reach the hub on another machine through NATS (`nats.url`) instead of on this one
    /// (`--nats URL`): its bars from its stream through durable consumers named after
    /// `client`, requests and orders over request/reply.
    pub over_nats: bool,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            name: String::new(),
            client: String::new(),
            wait_seconds: 60,
            max_clients: 32,
            departed_orders: "keep".into(),
            dir: None,
            over_nats: false,
        }
    }
}
