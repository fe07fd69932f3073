//! The checks of what Python passes a session: its configuration ([`config`]), symbols, bar
//! sizes, history requests and timeouts.
//!
//! Invariants: an argument that cannot be used is refused before anything is sent or
//! started, as a [`FailureKind::Config`] failure naming it; a session's configuration is what
//! its arguments and file say, never the environment's `RUNNER_*` variables (the runner
//! binary's).

use std::path::PathBuf;
use std::time::Duration;

use bridge::protocol::HistoryRequest;
use runner::config::{Config, Overrides};

use crate::failure::{Failure, FailureKind};

/// The longest symbol taken (IB's longest local symbols, options', are about 21).
const MAX_SYMBOL: usize = 128;
/// The longest timeout taken, in seconds: a week.
const MAX_TIMEOUT: f64 = 7.0 * 86400.0;
/// The latest end of a history request: the end of year 9999, a time the brokers' own
/// arithmetic takes.
const MAX_END: i64 = 253_402_300_799;

/// The configuration of a session: `file` if given, overridden by the other arguments, and
/// validated.
pub(super) fn config(
    file: Option<PathBuf>,
    flags: Overrides,
    speed: Option<f64>,
) -> Result<Config, Failure> {
    // The environment's RUNNER_* variables are the binary's; a library session is what its
    // arguments say.
    let mut cfg = Config::load(file.as_deref(), |_| None, &flags)?;
    if let Some(speed) = speed {
        cfg.sim.speed = speed;
    }
    cfg.validate()?;
    Ok(cfg)
}

/// The overrides of a session's arguments.
pub(super) fn overrides(
    backend: Option<String>,
    gateway: Option<String>,
    client_id: Option<i64>,
    seed: Option<i64>,
    trade: bool,
    hub: Option<String>,
    client: Option<String>,
) -> Overrides {
    Overrides {
        backend,
        gateway,
        client_id: client_id.map(|c| c.to_string()),
        seed: seed.map(|s| s.to_string()),
        trade,
        hub,
        client,
        ..Overrides::default()
    }
}

fn config_error(message: impl Into<String>) -> Failure {
    Failure::new(FailureKind::Config, message)
}

/// The live bars buffered for the stream: at least one.
pub(super) fn check_buffer(buffer: usize) -> Result<(), Failure> {
    match buffer {
        0 => Err(config_error("buffer: at least 1 bar")),
        _ => Ok(()),
    }
}

pub(super) fn check_symbol(symbol: &str) -> Result<(), Failure> {
    if symbol.trim().is_empty() {
        return Err(config_error("symbol: empty"));
    }
    if symbol.len() > MAX_SYMBOL {
        return Err(config_error(format!(
            "symbol: {} bytes, at most {MAX_SYMBOL}",
            symbol.len()
        )));
    }
    Ok(())
}

/// A subscription's symbols and bar size.
pub(super) fn check_subscription(symbols: &[String], bar_seconds: u32) -> Result<(), Failure> {
    if bar_seconds == 0 {
        return Err(config_error("bar_seconds must be above 0"));
    }
    symbols.iter().try_for_each(|s| check_symbol(s))
}

pub(super) fn history_request(
    symbol: String,
    bar_seconds: u32,
    duration_seconds: u64,
    end: Option<i64>,
) -> Result<HistoryRequest, Failure> {
    check_symbol(&symbol)?;
    if bar_seconds == 0 || duration_seconds == 0 {
        return Err(config_error(
            "bar_seconds and duration_seconds must be above 0",
        ));
    }
    if end.is_some_and(|e| !(0..=MAX_END).contains(&e)) {
        return Err(config_error(
            "end: Unix seconds between 1970 and the year 9999",
        ));
    }
    Ok(HistoryRequest {
        symbol,
        bar_seconds,
        duration_seconds,
        end,
    })
}

/// A call's timeout: `seconds`, or the configuration's history timeout.
pub(super) fn timeout(cfg: &Config, seconds: Option<f64>) -> Result<Duration, Failure> {
    match seconds {
        None => Ok(Duration::from_secs(cfg.history.timeout_seconds)),
        Some(s) if s.is_finite() && s > 0.0 && s <= MAX_TIMEOUT => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(config_error(format!(
            "timeout: {s} is not a number of seconds above 0 and within a week"
        ))),
    }
}

/// How long a wait for bars may last: `seconds`, at most a week.
pub(super) fn wait_timeout(seconds: f64) -> Result<Duration, Failure> {
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(config_error("timeout: not a number of seconds"));
    }
    Ok(Duration::from_secs_f64(seconds.min(MAX_TIMEOUT)))
}
