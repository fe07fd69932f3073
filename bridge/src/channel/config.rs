//! The settings of a connection, and how a timeout becomes a deadline.
//!
//! Invariants: both sides should use the same values (the worker reads the ring sizes from the
//! segment, not from its own settings); a deadline made from a timeout never overflows.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use crate::protocol::PROTOCOL_VERSION;
use crate::segment::Geometry;

/// Settings of a bridge connection. Both sides should use the same values.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Ring sizes (runner side; the worker reads them from the segment).
    pub geometry: Geometry,
    /// How often each side bumps its heartbeat and probes its peer.
    pub heartbeat_interval: Duration,
    /// A peer whose heartbeat stays still this long is declared hung.
    pub hang_timeout: Duration,
    /// How long the hello exchange may take.
    pub start_timeout: Duration,
    /// How long the runner waits for the worker to exit after closing, before killing it.
    pub exit_grace: Duration,
    /// Identifies this build; both sides must present the same.
    pub build_id: String,
    /// The protocol version announced; differs from [`PROTOCOL_VERSION`] only in tests.
    pub protocol_version: u32,
}

impl ChannelConfig {
    /// Default heartbeat period of both sides.
    pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(100);
    /// Default silence after which a peer is declared hung.
    pub const DEFAULT_HANG_TIMEOUT: Duration = Duration::from_secs(3);
    /// Default deadline of the hello exchange.
    pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default grace a closing worker has to exit before it is killed.
    pub const DEFAULT_EXIT_GRACE: Duration = Duration::from_secs(2);
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            geometry: Geometry::default(),
            heartbeat_interval: Self::DEFAULT_HEARTBEAT,
            hang_timeout: Self::DEFAULT_HANG_TIMEOUT,
            start_timeout: Self::DEFAULT_START_TIMEOUT,
            exit_grace: Self::DEFAULT_EXIT_GRACE,
            build_id: concat!("bridge-", env!("CARGO_PKG_VERSION")).to_string(),
            protocol_version: PROTOCOL_VERSION,
        }
    }
}

/// The instant `timeout` from now; a timeout too long to represent (`Duration::MAX` as
/// "forever") gives a deadline a century away instead of overflowing.
pub fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}
