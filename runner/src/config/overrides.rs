//! Overrides of the configuration from the environment ([`ENV_VARS`]) and the command line
//! ([`Overrides`]), applied over the file in that order.
//!
//! Invariants: an override that is absent leaves its setting alone; one that does not fit its
//! setting is refused naming where it came from; the environment is read only through the
//! lookup function given, so tests never depend on the process's own.

use std::path::PathBuf;

use super::document::{BackendKind, Config};
use super::error::ConfigError;

/// Overrides from the command line (or anywhere else); `None` leaves a value alone.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub backend: Option<String>,
    pub symbols: Option<String>,
    pub duration: Option<String>,
    pub signals: Option<PathBuf>,
    /// Record the run to this file (`record`).
    pub record: Option<PathBuf>,
    /// Replay this recording (`backend = "replay"`, `replay.file`), or this hub's stream
    /// (`nats://HOST:PORT/HUB`: `nats.url`, `replay.stream`).
    pub replay: Option<PathBuf>,
    /// Where a replayed stream's live bars begin and end (`replay.from`, `replay.to`).
    pub replay_range: (Option<String>, Option<String>),
    pub seed: Option<String>,
    pub gateway: Option<String>,
    pub client_id: Option<String>,
    pub history_only: bool,
    pub end: Option<String>,
    pub trade: bool,
    /// Serve the dashboard: at the configured address (`Some(None)`) or at this one.
    pub dashboard: Option<Option<String>>,
    pub report: Option<PathBuf>,
    /// Attach to this hub (`hub.name`).
    pub hub: Option<String>,
    /// This program's name at the hub (`hub.client`).
    pub client: Option<String>,
    /// Reach the hub over this NATS server (`nats.url`, `hub.over_nats`).
    pub nats: Option<String>,
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
    ("RUNNER_HUB", "hub.name"),
];

impl Overrides {
    /// The overrides the environment holds (`env` looks a variable up; see [`ENV_VARS`]).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Overrides {
        Overrides {
            backend: env("RUNNER_BACKEND"),
            symbols: env("RUNNER_SYMBOLS"),
            duration: env("RUNNER_DURATION"),
            signals: env("RUNNER_SIGNALS").map(PathBuf::from),
            record: None,
            replay: None,
            replay_range: (None, None),
            seed: env("RUNNER_SEED"),
            gateway: env("RUNNER_GATEWAY"),
            client_id: env("RUNNER_CLIENT_ID"),
            history_only: false,
            end: env("RUNNER_END"),
            trade: false,
            dashboard: None,
            report: None,
            hub: env("RUNNER_HUB"),
            client: None,
            nats: None,
        }
    }
}

impl Config {
    /// Applies `o`, which came from `origin` (`environment`, `command line`).
    pub(super) fn apply(&mut self, o: &Overrides, origin: &str) -> Result<(), ConfigError> {
        fn num<T: std::str::FromStr>(v: &str, what: &str, origin: &str) -> Result<T, ConfigError> {
            v.trim().parse().map_err(|_| ConfigError::Override {
                origin: origin.to_string(),
                problem: format!("{what} must be a number, got {v:?}"),
            })
        }
        if let Some(b) = &o.backend {
            self.backend = b.parse().map_err(|problem| ConfigError::Override {
                origin: origin.to_string(),
                problem,
            })?;
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
        if let Some(r) = &o.record {
            self.record = Some(r.clone());
        }
        if let Some(r) = &o.replay {
            self.backend = BackendKind::Replay;
            match r.to_str().and_then(|t| t.strip_prefix("nats://")) {
                Some(rest) => {
                    let (server, hub) =
                        rest.split_once('/').ok_or_else(|| ConfigError::Override {
                            origin: origin.to_string(),
                            problem: format!(
                                "--replay {}: a stream is nats://HOST:PORT/HUB",
                                r.display()
                            ),
                        })?;
                    self.nats.url = Some(format!("nats://{server}"));
                    self.replay.stream = hub.to_string();
                }
                None => self.replay.file = Some(r.clone()),
            }
        }
        for (text, slot) in [
            (&o.replay_range.0, &mut self.replay.from),
            (&o.replay_range.1, &mut self.replay.to),
        ] {
            if let Some(t) = text {
                *slot = Some(t.parse().map_err(|problem| ConfigError::Override {
                    origin: origin.to_string(),
                    problem,
                })?);
            }
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
            self.history.end = Some(e.parse().map_err(|problem| ConfigError::Override {
                origin: origin.to_string(),
                problem,
            })?);
        }
        if o.trade {
            self.trading.enabled = true;
        }
        if let Some(listen) = &o.dashboard {
            self.dashboard.enabled = true;
            if let Some(addr) = listen {
                self.dashboard.listen = addr.clone();
            }
        }
        if let Some(r) = &o.report {
            self.dashboard.report = Some(r.clone());
        }
        if let Some(h) = &o.hub {
            self.hub.name = h.trim().to_string();
        }
        if let Some(c) = &o.client {
            self.hub.client = c.trim().to_string();
        }
        if let Some(url) = &o.nats {
            self.nats.url = Some(url.trim().to_string());
            self.hub.over_nats = true;
        }
        Ok(())
    }
}
