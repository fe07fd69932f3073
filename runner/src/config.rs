//! The runner's configuration: defaults, then a TOML file, then environment variables, then
//! command-line flags. Unknown keys, wrong types and invalid values are errors that name the
//! problem in one line.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which broker the worker talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The built-in simulated market.
    Sim,
    /// Interactive Brokers TWS / IB Gateway.
    Ibkr,
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sim" => Ok(BackendKind::Sim),
            "ibkr" => Ok(BackendKind::Ibkr),
            other => Err(format!("unknown backend {other:?} (expected sim or ibkr)")),
        }
    }
}

/// Everything the runner can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `sim` or `ibkr`.
    pub backend: BackendKind,
    /// Symbols to trade.
    pub symbols: Vec<String>,
    /// CSV file the signals are written to (none: not written).
    pub signals: Option<PathBuf>,
    pub history: HistoryConfig,
    pub live: LiveConfig,
    pub strategy: StrategyConfig,
    pub sim: SimConfig,
    pub ibkr: IbkrConfig,
    pub bridge: BridgeConfig,
    pub supervisor: SupervisorConfig,
    pub trading: TradingConfig,
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
    pub end: Option<String>,
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
    pub tif: String,
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
    pub what_to_show: String,
    /// Regular trading hours only (IB's `useRTH`).
    pub use_rth: bool,
    /// Which market data the gateway sends: live, frozen, delayed or delayed-frozen.
    pub market_data_type: String,
    /// Reconnection attempts after the socket to the gateway closes (1 s, 2 s, 3 s, 5 s, ...
    /// up to 30 s apart) before the run gives up and fails; 0: for ever.
    pub reconnect_attempts: u32,
    /// A symbol whose live bars are refused for want of a market data subscription gets bars
    /// built from IB's delayed feed instead (15-20 minutes late), reported as such.
    pub delayed_fallback: bool,
    /// Symbols that are not SMART-routed USD stocks, by symbol.
    pub contracts: std::collections::BTreeMap<String, ContractConfig>,
}

/// How one symbol is traded at IB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContractConfig {
    pub exchange: String,
    pub currency: String,
    pub primary_exchange: Option<String>,
    /// What this symbol's bars are made of, if not `ibkr.what_to_show`.
    pub what_to_show: Option<String>,
    /// Regular trading hours only for this symbol, if not `ibkr.use_rth`.
    pub use_rth: Option<bool>,
    /// The kind of instrument: STK, FUT, CASH (forex) or IND.
    pub sec_type: String,
    /// IB's contract id: names the instrument exactly.
    pub con_id: Option<i32>,
    /// IB's symbol, where it differs from the runner's name (`BRK B` for `BRK.B`).
    pub ib_symbol: Option<String>,
    /// The symbol at the exchange (`ESZ6`), spaces included.
    pub local_symbol: Option<String>,
    /// A future's contract month (`YYYYMM`) or last trading day (`YYYYMMDD`).
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
            sec_type: "STK".into(),
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
            history: HistoryConfig::default(),
            live: LiveConfig::default(),
            strategy: StrategyConfig::default(),
            sim: SimConfig::default(),
            ibkr: IbkrConfig::default(),
            bridge: BridgeConfig::default(),
            supervisor: SupervisorConfig::default(),
            trading: TradingConfig::default(),
        }
    }
}

impl Default for TradingConfig {
    fn default() -> Self {
        TradingConfig {
            enabled: false,
            quantity: 10.0,
            long_only: true,
            tif: "day".into(),
            allow_live: false,
            cancel_on_exit: true,
            max_order_quantity: 1_000.0,
            max_order_value: 100_000.0,
            max_position: 1_000.0,
            max_orders_per_minute: 60,
        }
    }
}

impl TradingConfig {
    /// The time in force, once validated.
    pub fn time_in_force(&self) -> Result<bridge::protocol::TimeInForce, ConfigError> {
        parse_tif(&self.tif).map_err(|e| err(format!("trading.tif: {e}")))
    }
}

/// `day` or `gtc`.
pub fn parse_tif(text: &str) -> Result<bridge::protocol::TimeInForce, String> {
    match text {
        "day" => Ok(bridge::protocol::TimeInForce::Day),
        "gtc" => Ok(bridge::protocol::TimeInForce::Gtc),
        other => Err(format!("time in force must be day or gtc, got {other:?}")),
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
            what_to_show: "TRADES".into(),
            use_rth: true,
            market_data_type: "live".into(),
            reconnect_attempts: 0,
            delayed_fallback: false,
            contracts: std::collections::BTreeMap::new(),
        }
    }
}

impl Default for BridgeConfig {
    /// The bridge's own defaults (ring sizes, heartbeat, hang timeout) and the worker's
    /// handshake timeout: one source for each.
    fn default() -> Self {
        let geometry = bridge::segment::Geometry::default();
        let channel = bridge::channel::Config::default();
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

/// A configuration problem, in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// Overrides from the command line (or anywhere else); `None` leaves a value alone.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub backend: Option<String>,
    pub symbols: Option<String>,
    pub duration: Option<String>,
    pub signals: Option<PathBuf>,
    pub seed: Option<String>,
    pub gateway: Option<String>,
    pub client_id: Option<String>,
    pub history_only: bool,
    pub end: Option<String>,
    pub trade: bool,
}

/// Environment variables read, with the setting each overrides.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("RUNNER_BACKEND", "backend"),
    ("RUNNER_SYMBOLS", "symbols (comma-separated)"),
    ("RUNNER_DURATION", "live.duration_seconds"),
    ("RUNNER_SIGNALS", "signals"),
    ("RUNNER_SEED", "sim.seed"),
    ("RUNNER_GATEWAY", "ibkr.gateway"),
    ("RUNNER_CLIENT_ID", "ibkr.client_id"),
    ("RUNNER_END", "history.end"),
];

impl Config {
    /// Parses a TOML document.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| {
                text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1
            });
            let msg = e.message().trim().replace('\n', " ");
            match line {
                Some(l) => err(format!("{origin}, line {l}: {msg}")),
                None => err(format!("{origin}: {msg}")),
            }
        })
    }

    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(format!(
                "config file {}: {}",
                path.display(),
                match e.kind() {
                    std::io::ErrorKind::NotFound => "not found".to_string(),
                    _ => e.to_string(),
                }
            ))
        })?;
        Config::parse(&text, &format!("config file {}", path.display()))
    }

    /// Defaults, then `file`, then the environment (`env` looks a variable up), then `flags`;
    /// then validation.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut cfg = match file {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        let from_env = Overrides {
            backend: env("RUNNER_BACKEND"),
            symbols: env("RUNNER_SYMBOLS"),
            duration: env("RUNNER_DURATION"),
            signals: env("RUNNER_SIGNALS").map(PathBuf::from),
            seed: env("RUNNER_SEED"),
            gateway: env("RUNNER_GATEWAY"),
            client_id: env("RUNNER_CLIENT_ID"),
            history_only: false,
            end: env("RUNNER_END"),
            trade: false,
        };
        cfg.apply(&from_env, "environment")?;
        cfg.apply(flags, "command line")?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply(&mut self, o: &Overrides, origin: &str) -> Result<(), ConfigError> {
        fn num<T: std::str::FromStr>(v: &str, what: &str, origin: &str) -> Result<T, ConfigError> {
            v.trim()
                .parse()
                .map_err(|_| err(format!("{origin}: {what} must be a number, got {v:?}")))
        }
        if let Some(b) = &o.backend {
            self.backend = b.parse().map_err(|e| err(format!("{origin}: {e}")))?;
        }
        if let Some(s) = &o.symbols {
            self.symbols = s
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if let Some(d) = &o.duration {
            self.live.duration_seconds = num(d, "duration", origin)?;
        }
        if let Some(s) = &o.signals {
            self.signals = Some(s.clone());
        }
        if let Some(s) = &o.seed {
            self.sim.seed = num(s, "seed", origin)?;
        }
        if let Some(g) = &o.gateway {
            self.ibkr.gateway = g.clone();
        }
        if let Some(c) = &o.client_id {
            self.ibkr.client_id = num(c, "client id", origin)?;
        }
        if o.history_only {
            self.live.disabled = true;
        }
        if let Some(e) = &o.end {
            self.history.end = Some(e.clone());
        }
        if o.trade {
            self.trading.enabled = true;
        }
        Ok(())
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.symbols.is_empty() {
            return Err(err("symbols: at least one symbol is needed"));
        }
        let mut seen = std::collections::HashSet::new();
        for s in &self.symbols {
            if !worker::backend::valid_symbol(s) {
                return Err(err(format!(
                    "symbols: invalid symbol {s:?} (1 to 12 of A-Z, 0-9, '.', '-', starting with a letter)"
                )));
            }
            if !seen.insert(s) {
                return Err(err(format!("symbols: {s} is listed twice")));
            }
        }
        let h = &self.history;
        self.history_end()?;
        if h.bar_seconds == 0 {
            return Err(err("history.bar_seconds must be at least 1"));
        }
        if h.duration_seconds < u64::from(h.bar_seconds) {
            return Err(err("history.duration_seconds must cover at least one bar"));
        }
        if h.timeout_seconds == 0 || h.concurrency == 0 {
            return Err(err(
                "history.timeout_seconds and history.concurrency must be at least 1",
            ));
        }
        let s = &self.strategy;
        if s.slow > 100_000 {
            return Err(err(format!(
                "strategy: slow ({}) must be at most 100000 bars",
                s.slow
            )));
        }
        if s.fast == 0 || s.fast >= s.slow {
            return Err(err(format!(
                "strategy: fast ({}) must be at least 1 and less than slow ({})",
                s.fast, s.slow
            )));
        }
        if !(self.sim.speed.is_finite() && self.sim.speed > 0.0) {
            return Err(err("sim.speed must be a positive number"));
        }
        let sim = &self.sim;
        for (name, v) in [
            ("cash", sim.cash),
            ("slippage_bps", sim.slippage_bps),
            ("commission_per_share", sim.commission_per_share),
            ("min_commission", sim.min_commission),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(err(format!("sim.{name} must be a number of at least 0")));
            }
        }
        if !(sim.max_fill_per_bar.is_finite() && sim.max_fill_per_bar >= 1.0) {
            return Err(err("sim.max_fill_per_bar must be at least 1"));
        }
        if sim.fill_seconds == 0 {
            return Err(err("sim.fill_seconds must be at least 1"));
        }
        let t = &self.trading;
        t.time_in_force()?;
        for (name, v) in [
            ("quantity", t.quantity),
            ("max_order_quantity", t.max_order_quantity),
            ("max_order_value", t.max_order_value),
            ("max_position", t.max_position),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(err(format!("trading.{name} must be a positive number")));
            }
        }
        if t.max_orders_per_minute == 0 {
            return Err(err("trading.max_orders_per_minute must be at least 1"));
        }
        if self.backend == BackendKind::Ibkr {
            let g = &self.ibkr.gateway;
            let ok = g
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                return Err(err(format!("ibkr.gateway must be HOST:PORT, got {g:?}")));
            }
            if self.ibkr.client_id < 0 {
                return Err(err("ibkr.client_id must not be negative"));
            }
            self.ibkr
                .what_to_show
                .parse::<worker::options::WhatToShow>()
                .map_err(|e| err(format!("ibkr.{e}")))?;
            self.ibkr
                .market_data_type
                .parse::<worker::options::MarketDataKind>()
                .map_err(|e| err(format!("ibkr.{e}")))?;
            for (symbol, c) in &self.ibkr.contracts {
                if let Some(w) = &c.what_to_show {
                    w.parse::<worker::options::WhatToShow>()
                        .map_err(|e| err(format!("ibkr.contracts.{symbol}.{e}")))?;
                }
                c.sec_type
                    .parse::<worker::options::SecType>()
                    .map_err(|e| err(format!("ibkr.contracts.{symbol}.{e}")))?;
                if c.con_id.is_some_and(|id| id <= 0) {
                    return Err(err(format!(
                        "ibkr.contracts.{symbol}.con_id must be a positive IB contract id"
                    )));
                }
            }
        }
        let b = &self.bridge;
        bridge::ring::check_geometry(b.ring_capacity, b.max_frame)
            .map_err(|e| err(format!("bridge: {e}")))?;
        if b.heartbeat_ms == 0 || b.hang_timeout_ms <= b.heartbeat_ms * 2 {
            return Err(err(
                "bridge.hang_timeout_ms must be more than twice bridge.heartbeat_ms (and both above 0)",
            ));
        }
        if b.request_timeout_seconds == 0 || b.handshake_timeout_ms == 0 {
            return Err(err(
                "bridge.request_timeout_seconds and bridge.handshake_timeout_ms must be above 0",
            ));
        }
        let sup = &self.supervisor;
        if sup.restart_window_seconds == 0 {
            return Err(err("supervisor.restart_window_seconds must be at least 1"));
        }
        if sup.backoff_ms > sup.max_backoff_ms {
            return Err(err(
                "supervisor.backoff_ms must not be more than supervisor.max_backoff_ms",
            ));
        }
        Ok(())
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }

    /// `history.end` in Unix seconds (`None`: now).
    pub fn history_end(&self) -> Result<Option<i64>, ConfigError> {
        let Some(text) = &self.history.end else {
            return Ok(None);
        };
        let t = text.trim();
        if let Ok(secs) = t.parse::<i64>() {
            return Ok(Some(secs));
        }
        base::unix_time::parse_utc(t).map(Some).ok_or_else(|| {
            err(format!(
                "history.end must be Unix seconds or YYYY-MM-DDTHH:MM:SSZ, got {text:?}"
            ))
        })
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.bridge.request_timeout_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml() {
        let cfg = Config::default();
        cfg.validate().unwrap();
        assert_eq!(Config::parse(&cfg.to_toml(), "x").unwrap(), cfg);
        assert_eq!(cfg.symbols.len(), 7);
    }

    #[test]
    fn bridge_defaults_are_the_documented_ones() {
        let b = BridgeConfig::default();
        assert_eq!(b.ring_capacity, 1 << 20);
        assert_eq!(b.max_frame, 256 << 10);
        assert_eq!(b.heartbeat_ms, 100);
        assert_eq!(b.hang_timeout_ms, 3000);
        assert!(!b.spin, "spinning is asked for, never the default");
        assert_eq!(b.request_timeout_seconds, 30);
        assert_eq!(b.handshake_timeout_ms, 10_000);
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let e =
            Config::parse("backend = \"sim\"\n[history]\nbar_secs = 5\n", "f.toml").unwrap_err();
        assert!(e.0.starts_with("f.toml, line 3:"), "{e}");
        assert!(e.0.contains("bar_secs"), "{e}");
        assert!(!e.0.contains('\n'));
    }

    #[test]
    fn contracts_are_configured_per_symbol() {
        let cfg = Config::parse(
            "[ibkr.contracts.SHOP]\ncurrency = \"CAD\"\nprimary_exchange = \"TSE\"\n",
            "f.toml",
        )
        .unwrap();
        let shop = &cfg.ibkr.contracts["SHOP"];
        assert_eq!(shop.exchange, "SMART");
        assert_eq!(shop.currency, "CAD");
        assert_eq!(shop.primary_exchange.as_deref(), Some("TSE"));
        assert!(Config::parse("[ibkr.contracts.SHOP]\ncurency = \"CAD\"\n", "f.toml").is_err());
    }

    #[test]
    fn wrong_types_are_named() {
        let e = Config::parse("symbols = \"SPY\"\n", "f.toml").unwrap_err();
        assert!(e.0.contains("line 1"), "{e}");
        assert!(e.0.contains("sequence"), "{e}");
    }

    #[test]
    fn flags_override_environment_which_overrides_the_file() {
        let env = |k: &str| match k {
            "RUNNER_SYMBOLS" => Some("AAA,BBB".to_string()),
            "RUNNER_SEED" => Some("7".to_string()),
            _ => None,
        };
        let flags = Overrides {
            symbols: Some("CCC".into()),
            ..Overrides::default()
        };
        let cfg = Config::load(None, env, &flags).unwrap();
        assert_eq!(cfg.symbols, vec!["CCC".to_string()]);
        assert_eq!(cfg.sim.seed, 7);
    }

    #[test]
    fn invalid_values_are_refused() {
        let bad = |o: Overrides| Config::load(None, no_env, &o).unwrap_err().0;
        assert!(bad(Overrides {
            symbols: Some("SPY,spy".into()),
            ..Default::default()
        })
        .contains("invalid symbol \"spy\""));
        assert!(bad(Overrides {
            backend: Some("tws".into()),
            ..Default::default()
        })
        .contains("unknown backend"));
        assert!(bad(Overrides {
            duration: Some("soon".into()),
            ..Default::default()
        })
        .contains("duration must be a number"));
        assert!(bad(Overrides {
            backend: Some("ibkr".into()),
            gateway: Some("localhost".into()),
            ..Default::default()
        })
        .contains("HOST:PORT"));
    }

    #[test]
    fn market_data_choices_and_the_history_end_are_checked() {
        let load = |toml: &str, end: Option<&str>| {
            let cfg = Config::parse(toml, "test")?;
            let mut cfg = cfg;
            cfg.apply(
                &Overrides {
                    end: end.map(String::from),
                    ..Default::default()
                },
                "flags",
            )?;
            cfg.validate().map(|()| cfg)
        };
        let bad = load("backend = \"ibkr\"\n[ibkr]\nwhat_to_show = \"FOO\"\n", None);
        assert!(bad
            .unwrap_err()
            .0
            .contains("ibkr.what_to_show must be one of"));
        let bad = load(
            "backend = \"ibkr\"\n[ibkr.contracts.EUR]\nwhat_to_show = \"bids\"\n",
            None,
        );
        assert!(bad
            .unwrap_err()
            .0
            .contains("ibkr.contracts.EUR.what_to_show must be one of"));
        let ok = load(
            "backend = \"ibkr\"\n[ibkr]\nwhat_to_show = \"midpoint\"\nuse_rth = false\n",
            Some("2023-11-14T22:13:20Z"),
        )
        .unwrap();
        assert_eq!(ok.history_end().unwrap(), Some(1_700_000_000));
        assert!(!ok.ibkr.use_rth);
        let ok = load("", Some("1700000000")).unwrap();
        assert_eq!(ok.history_end().unwrap(), Some(1_700_000_000));
        let bad = load("", Some("yesterday"));
        assert!(bad
            .unwrap_err()
            .0
            .contains("history.end must be Unix seconds"));
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = Config::from_file(Path::new("/nonexistent/runner.toml")).unwrap_err();
        assert_eq!(e.0, "config file /nonexistent/runner.toml: not found");
    }
}
