//! Validation: each section checks the values that parse but make no sense
//! (`HistoryConfig::validate`, ...), and [`Config::validate`] runs them in the order the
//! sections are documented, the symbols first; the first problem found is the error.
//!
//! Invariants: a configuration that passes can be run: its symbols are valid and distinct,
//! its history covers at least one bar, its bridge geometry fits the rings, and its restart
//! policy can act; validation changes nothing. Choices written as text (`history.end`,
//! `trading.tif`, IB's market data choices) are typed values already: the document refused
//! what does not parse when it was read (`text`).

use std::time::Duration;

use super::document::{
    BackendKind, BridgeConfig, Config, DashboardConfig, HistoryConfig, HubConfig, IbkrConfig,
    NatsConfig, ReplayConfig, SimConfig, StrategyConfig, SupervisorConfig, TradingConfig,
};
use super::error::{invalid, ConfigError};
use worker::recording::Recording;

impl Config {
    /// Checks values that parse but make no sense, section by section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_symbols(&self.symbols)?;
        self.history.validate()?;
        self.strategy.validate()?;
        self.sim.validate()?;
        self.trading.validate()?;
        if self.backend == BackendKind::Ibkr {
            self.ibkr.validate()?;
        }
        if self.backend == BackendKind::Replay {
            if !self.hub.name.is_empty() {
                return Err(invalid(format!(
                    "a replay runs a worker of its own: hub.name ({}, or RUNNER_HUB, --hub) \
                     cannot be set with it",
                    self.hub.name
                )));
            }
            if self.replay.stream.is_empty() {
                self.replay
                    .validate(&self.symbols, self.history.bar_seconds)?;
            } else {
                self.replay.validate_stream(self.nats.url.is_some())?;
            }
        }
        self.bridge.validate()?;
        self.supervisor.validate()?;
        self.dashboard.validate()?;
        self.hub.validate()?;
        if self.hub.over_nats {
            if self.hub.name.is_empty() {
                return Err(invalid(
                    "hub.over_nats needs the hub's name: hub.name (--hub NAME)",
                ));
            }
            if self.nats.url.is_none() {
                return Err(invalid(
                    "hub.over_nats needs the hub's NATS server: nats.url (--nats URL)",
                ));
            }
        }
        self.nats.validate()
    }

    /// `history.end` in Unix seconds (`None`: now).
    pub fn history_end(&self) -> Option<i64> {
        self.history.end.map(|e| e.0)
    }

    /// The deadline of one request.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.bridge.request_timeout_seconds)
    }
}

/// At least one symbol, each valid, none twice.
fn validate_symbols(symbols: &[String]) -> Result<(), ConfigError> {
    if symbols.is_empty() {
        return Err(invalid("symbols: at least one symbol is needed"));
    }
    let mut seen = std::collections::HashSet::new();
    for s in symbols {
        if !worker::backend::valid_symbol(s) {
            return Err(invalid(format!(
                "symbols: invalid symbol {s:?} (1 to 12 of A-Z, 0-9, '.', '-', starting with a letter)"
            )));
        }
        if !seen.insert(s) {
            return Err(invalid(format!("symbols: {s} is listed twice")));
        }
    }
    Ok(())
}

impl HistoryConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.bar_seconds == 0 {
            return Err(invalid("history.bar_seconds must be at least 1"));
        }
        if self.duration_seconds < u64::from(self.bar_seconds) {
            return Err(invalid(
                "history.duration_seconds must cover at least one bar",
            ));
        }
        if self.timeout_seconds == 0 || self.concurrency == 0 {
            return Err(invalid(
                "history.timeout_seconds and history.concurrency must be at least 1",
            ));
        }
        Ok(())
    }
}

impl StrategyConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.slow > 100_000 {
            return Err(invalid(format!(
                "strategy: slow ({}) must be at most 100000 bars",
                self.slow
            )));
        }
        if self.fast == 0 || self.fast >= self.slow {
            return Err(invalid(format!(
                "strategy: fast ({}) must be at least 1 and less than slow ({})",
                self.fast, self.slow
            )));
        }
        Ok(())
    }
}

impl SimConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(self.speed.is_finite() && self.speed > 0.0) {
            return Err(invalid("sim.speed must be a positive number"));
        }
        for (name, v) in [
            ("cash", self.cash),
            ("slippage_bps", self.slippage_bps),
            ("commission_per_share", self.commission_per_share),
            ("min_commission", self.min_commission),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(format!(
                    "sim.{name} must be a number of at least 0"
                )));
            }
        }
        if !(self.max_fill_per_bar.is_finite() && self.max_fill_per_bar >= 1.0) {
            return Err(invalid("sim.max_fill_per_bar must be at least 1"));
        }
        if self.fill_seconds == 0 {
            return Err(invalid("sim.fill_seconds must be at least 1"));
        }
        if self.keep_orders > MAX_KEEP_ORDERS {
            return Err(invalid(format!(
                "sim.keep_orders must be at most {MAX_KEEP_ORDERS}, got {}",
                self.keep_orders
            )));
        }
        if let Some(Err(())) = self.restart_minute() {
            return Err(invalid(format!(
                "sim.daily_restart must be HH:MM (US/Eastern) or empty, got {:?}",
                self.daily_restart
            )));
        }
        if let Some(Err(())) = self.relogin_weekday() {
            return Err(invalid(format!(
                "sim.relogin_day must be a day of the week (monday .. sunday) or empty, got {:?}",
                self.relogin_day
            )));
        }
        for (name, v) in [
            ("restart_seconds", self.restart_seconds),
            ("relogin_seconds", self.relogin_seconds),
        ] {
            if v > 86_400 {
                return Err(invalid(format!(
                    "sim.{name} must be a day at most, got {v}"
                )));
            }
        }
        Ok(())
    }
}

impl NatsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.url {
            let scheme_ok = ["nats://", "tls://"].iter().any(|s| url.starts_with(s));
            if !scheme_ok || url.len() <= "nats://".len() {
                return Err(invalid(format!(
                    "nats.url must be nats://HOST:PORT (or tls://), got {url:?}"
                )));
            }
            // Never printed with credentials in it: they have keys of their own.
            if url.contains('@') {
                return Err(invalid(
                    "nats.url must not hold credentials: use nats.creds_file or nats.token",
                ));
            }
        }
        if self.duplicate_window_seconds == 0 || self.retention_seconds == 0 {
            return Err(invalid(
                "nats.retention_seconds and nats.duplicate_window_seconds must be at least 1",
            ));
        }
        if self.duplicate_window_seconds > self.retention_seconds {
            return Err(invalid(
                "nats.duplicate_window_seconds must not exceed nats.retention_seconds",
            ));
        }
        if self.buffer == 0 {
            return Err(invalid("nats.buffer must be at least 1"));
        }
        if !(1..=1024).contains(&self.max_remote_clients) {
            return Err(invalid("nats.max_remote_clients must be 1 to 1024"));
        }
        Ok(())
    }
}

impl ReplayConfig {
    /// A replay of a hub's stream (read at the run's start): a server to read it from, a
    /// hub's name, a range that is one.
    fn validate_stream(&self, server: bool) -> Result<(), ConfigError> {
        if !(self.speed.is_finite() && self.speed > 0.0) {
            return Err(invalid("replay.speed must be a positive number"));
        }
        if !server {
            return Err(invalid(
                "replay.stream needs the server: nats.url (or --replay nats://HOST:PORT/HUB)",
            ));
        }
        if !bridge::channel::valid_name(&self.stream) {
            return Err(invalid(
                "replay.stream is a hub's name: 1 to 40 letters, digits, '-' or '_'",
            ));
        }
        if let (Some(from), Some(to)) = (self.from, self.to) {
            if from.0 > to.0 {
                return Err(invalid(format!(
                    "replay.from ({from}) is after replay.to ({to})"
                )));
            }
        }
        Ok(())
    }

    /// Checked only when the backend is `replay`: the recording reads, holds `symbols`, and
    /// its bars are of `bar_seconds`.
    fn validate(&self, symbols: &[String], bar_seconds: u32) -> Result<(), ConfigError> {
        if !(self.speed.is_finite() && self.speed > 0.0) {
            return Err(invalid("replay.speed must be a positive number"));
        }
        let Some(file) = &self.file else {
            return Err(invalid(
                "the replay backend needs a recording: replay.file or --replay FILE",
            ));
        };
        let recording = Recording::open(file).map_err(|e| invalid(e.to_string()))?;
        if recording.bar_seconds != bar_seconds {
            return Err(invalid(format!(
                "history.bar_seconds is {bar_seconds}, but the recording {} holds bars of {} s",
                file.display(),
                recording.bar_seconds
            )));
        }
        let missing: Vec<&str> = symbols
            .iter()
            .map(String::as_str)
            .filter(|s| recording.bars(s).is_none())
            .collect();
        if !missing.is_empty() {
            let held: Vec<&str> = recording.symbols().collect();
            return Err(invalid(format!(
                "{} not in the recording {} (it holds {})",
                missing.join(", "),
                file.display(),
                held.join(", ")
            )));
        }
        Ok(())
    }
}

impl TradingConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (name, v) in [
            ("quantity", self.quantity),
            ("max_order_quantity", self.max_order_quantity),
            ("max_order_value", self.max_order_value),
            ("max_position", self.max_position),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(format!("trading.{name} must be a positive number")));
            }
        }
        if self.max_orders_per_minute == 0 {
            return Err(invalid("trading.max_orders_per_minute must be at least 1"));
        }
        Ok(())
    }
}

impl IbkrConfig {
    /// Checked only when the backend is `ibkr`.
    fn validate(&self) -> Result<(), ConfigError> {
        let g = &self.gateway;
        let ok = g
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !ok {
            return Err(invalid(format!(
                "ibkr.gateway must be HOST:PORT, got {g:?}"
            )));
        }
        if self.client_id < 0 {
            return Err(invalid("ibkr.client_id must not be negative"));
        }
        if !(1..=720).contains(&self.silent_bars) {
            return Err(invalid(format!(
                "ibkr.silent_bars must be 1 to 720 (5-second bars: 5 s to an hour), got {}",
                self.silent_bars
            )));
        }
        for (symbol, c) in &self.contracts {
            if c.con_id.is_some_and(|id| id <= 0) {
                return Err(invalid(format!(
                    "ibkr.contracts.{symbol}.con_id must be a positive IB contract id"
                )));
            }
        }
        Ok(())
    }
}

impl BridgeConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        bridge::ring::check_geometry(self.ring_capacity, self.max_frame)
            .map_err(|e| invalid(format!("bridge: {e}")))?;
        if self.heartbeat_ms == 0 || self.hang_timeout_ms <= self.heartbeat_ms * 2 {
            return Err(invalid(
                "bridge.hang_timeout_ms must be more than twice bridge.heartbeat_ms (and both above 0)",
            ));
        }
        if self.request_timeout_seconds == 0 || self.handshake_timeout_ms == 0 {
            return Err(invalid(
                "bridge.request_timeout_seconds and bridge.handshake_timeout_ms must be above 0",
            ));
        }
        Ok(())
    }
}

impl SupervisorConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.restart_window_seconds == 0 {
            return Err(invalid(
                "supervisor.restart_window_seconds must be at least 1",
            ));
        }
        if self.backoff_ms > self.max_backoff_ms {
            return Err(invalid(
                "supervisor.backoff_ms must not be more than supervisor.max_backoff_ms",
            ));
        }
        Ok(())
    }
}

/// Bars a dashboard may hold per symbol: a chart's bars are served in one answer.
const MAX_DASHBOARD_BARS: usize = 50_000;

/// Most finished orders the simulated broker may be told to keep whole.
const MAX_KEEP_ORDERS: u32 = 1_000_000;

/// Longest client name at a hub: its order references are `<client>.<reference>`, at most
/// 40 characters in all.
pub(crate) const MAX_CLIENT_NAME: usize = 24;

impl HubConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.name.is_empty() && !bridge::channel::valid_name(&self.name) {
            return Err(invalid(
                "hub.name must be 1 to 40 letters, digits, '-' or '_'",
            ));
        }
        if !self.client.is_empty()
            && (!bridge::channel::valid_name(&self.client) || self.client.len() > MAX_CLIENT_NAME)
        {
            return Err(invalid(
                "hub.client must be 1 to 24 letters, digits, '-' or '_'",
            ));
        }
        if !(1..=86_400).contains(&self.wait_seconds) {
            return Err(invalid("hub.wait_seconds must be 1 to 86400"));
        }
        if !(1..=1024).contains(&self.max_clients) {
            return Err(invalid("hub.max_clients must be 1 to 1024"));
        }
        if !matches!(self.departed_orders.as_str(), "keep" | "cancel") {
            return Err(invalid("hub.departed_orders must be keep or cancel"));
        }
        Ok(())
    }

    /// Whether a departed client's working orders are cancelled.
    pub fn cancel_departed(&self) -> bool {
        self.departed_orders == "cancel"
    }

    /// The directory hubs are found in.
    pub fn directory(&self) -> std::path::PathBuf {
        match &self.dir {
            Some(d)
                if !d.as_os_str().is_empty()
                    && std::env::var_os(bridge::channel::ENV_HUB_DIR).is_none() =>
            {
                d.clone()
            }
            _ => bridge::channel::default_hub_dir(),
        }
    }
}

impl DashboardConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled {
            self.listen.parse::<std::net::SocketAddr>().map_err(|_| {
                invalid("dashboard.listen must be an address and port, as 127.0.0.1:8787")
            })?;
        }
        if !(1..=MAX_DASHBOARD_BARS).contains(&self.bars) {
            return Err(invalid(
                "dashboard.bars must be 1 to 50000 (a chart's bars are served whole)",
            ));
        }
        Ok(())
    }
}
