//! What a soak runs ([`SoakSettings`]): how long, how fast, with what chaos and orders.
//!
//! Invariants: plain values, set once before the soak starts; the soak's threads and its
//! verdict read the same settings.

use std::time::Duration;

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakSettings {
    pub duration: Duration,
    /// Requests per second.
    pub rate: u64,
    /// Kill and stop the worker at random moments.
    pub chaos: bool,
    /// Symbols with real-time bars (one bar per symbol per simulated second).
    pub symbols: usize,
    /// Allowed growth of the runner's resident memory after the first 5 s, MiB.
    pub memory_bound_mb: u64,
    /// Place orders too, this many per second (0: none).
    pub order_rate: u64,
}
