//! What a session's run did ([`SessionReport`]), one row per symbol ([`SymbolRun`]), and why a
//! symbol had no history ([`NoHistory`]).
//!
//! Invariants: a report has one row per configured symbol, in configuration order; a row
//! with an `error` had no data and took no live bars.

use std::fmt;
use std::time::Duration;

use bridge::protocol::Bar;

use crate::strategy::Signal;
use crate::supervisor::SupervisorError;
use crate::trader::TradingSummary;

/// How one symbol fared in a session.
#[derive(Debug, Clone)]
pub struct SymbolRun {
    pub symbol: String,
    /// Bars of history fetched.
    pub history_bars: usize,
    /// Live bars taken.
    pub live_bars: usize,
    /// The strategy's last signal for it.
    pub last_signal: Option<Signal>,
    /// Why it had no data, if it had none.
    pub error: Option<NoHistory>,
    /// Since when (Unix seconds) its live feed was stalled at the end, if it was: silent
    /// even after its subscription was made again.
    pub stalled_since: Option<i64>,
    /// Its most recent bars at the end (at most twice the strategy's window).
    pub recent: Vec<Bar>,
}

/// What a session's run did.
#[derive(Debug, Clone)]
pub struct SessionReport {
    /// One per configured symbol, in configuration order.
    pub symbols: Vec<SymbolRun>,
    /// What trading did, with trading on.
    pub trading: Option<TradingSummary>,
    /// Workers started after the first.
    pub restarts: u32,
    /// Whether `stop` ended the run.
    pub interrupted: bool,
    /// How long the history took, and the live phase.
    pub history_elapsed: Duration,
    pub live_elapsed: Duration,
}

/// Why a symbol has no history.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum NoHistory {
    /// The request failed.
    Failed(SupervisorError),
    /// The run was stopped before it was asked for.
    Interrupted,
}

impl fmt::Display for NoHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoHistory::Failed(e) => e.fmt(f),
            NoHistory::Interrupted => f.write_str("not fetched (interrupted)"),
        }
    }
}

impl std::error::Error for NoHistory {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NoHistory::Failed(e) => Some(e),
            NoHistory::Interrupted => None,
        }
    }
}
