//! Frame-level endpoints: the runner starts a worker process over a fresh segment
//! ([`spawn`]), the worker attaches from what the runner put in its environment ([`attach`]).
//! Each side gets a [`Sender`], a [`Receiver`] and a [`Control`].
//!
//! Files: `start.rs` (spawn, attach, the in-process [`pair`]), `hello.rs` (the version and
//! build check), `link.rs` (liveness and the gone state shared by a side's parts),
//! `sender.rs`, `receiver.rs`, `error.rs`.
//!
//! Contracts: every send and receive has a deadline; while both sides live each direction is
//! FIFO with no loss; when the peer dies, hangs, closes or corrupts the segment, every waiter
//! wakes, what it sent before is still delivered, and then every operation fails with
//! [`GoneReason`].

#![forbid(unsafe_code)]

mod error;
mod hello;
mod link;
mod receiver;
mod sender;
mod start;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use error::{GoneReason, RecvError, SendError, StartError};
pub use receiver::Receiver;
pub use sender::{Batch, Sender};
pub use start::{attach, pair, spawn, ENV_PARENT_PID, ENV_SEGMENT};

use crate::protocol::PROTOCOL_VERSION;
use crate::ring::RingStats;
use crate::segment::{Geometry, Side};
use link::CloseOnDrop;

/// Settings of a bridge connection. Both sides should use the same values.
#[derive(Debug, Clone)]
pub struct Config {
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

impl Config {
    /// Default heartbeat period of both sides.
    pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(100);
    /// Default silence after which a peer is declared hung.
    pub const DEFAULT_HANG_TIMEOUT: Duration = Duration::from_secs(3);
    /// Default deadline of the hello exchange.
    pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default grace a closing worker has to exit before it is killed.
    pub const DEFAULT_EXIT_GRACE: Duration = Duration::from_secs(2);
}

impl Default for Config {
    fn default() -> Self {
        Config {
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

/// Both directions of one side plus its control.
#[derive(Debug)]
pub struct Channel {
    /// Writes to the peer.
    pub sender: Sender,
    /// Reads from the peer.
    pub receiver: Receiver,
    /// Liveness, identity, counters, closing.
    pub control: Control,
}

/// What one side of a connection sent and received, counted in its own process (never read
/// from the shared segment, which the peer could have scribbled over).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Frames and bytes this side published, its full events and the wakes it issued.
    pub sent: RingStats,
    /// Frames and bytes this side took, and the wakes it issued to the peer's producer.
    pub received: RingStats,
}

/// Management of a side's connection: peer identity, liveness, counters, closing.
#[derive(Clone)]
pub struct Control {
    close: Arc<CloseOnDrop>,
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Control")
            .field("side", &self.side())
            .field("peer_pid", &self.peer_pid())
            .field("gone", &self.gone())
            .finish()
    }
}

impl Control {
    pub(crate) fn new(close: Arc<CloseOnDrop>) -> Self {
        Control { close }
    }

    fn link(&self) -> &link::Link {
        &self.close.link
    }

    /// Which side this is.
    pub fn side(&self) -> Side {
        self.link().side
    }

    /// The peer's process id.
    pub fn peer_pid(&self) -> u32 {
        self.link().peer_pid()
    }

    /// Why the peer is gone, if it is.
    pub fn gone(&self) -> Option<GoneReason> {
        self.link().gone_reason()
    }

    /// Whether the peer is gone (cheap).
    pub fn is_gone(&self) -> bool {
        self.link().is_gone()
    }

    /// Declares the peer gone for a reason found above this layer (a protocol violation, a
    /// request that proves the worker hung). Wakes every waiter. On the runner side the worker
    /// and its process group are killed.
    pub fn declare_gone(&self, reason: GoneReason) -> GoneReason {
        let reason = self.link().declare_gone(reason);
        self.link().kill_peer();
        reason
    }

    /// Closes the connection now (also done when the last handle is dropped).
    pub fn close(&self) {
        self.link().close();
    }

    /// The segment's name (already unlinked once the worker attached).
    pub fn segment_name(&self) -> &str {
        self.link().segment.name()
    }

    /// What this side sent and received.
    pub fn stats(&self) -> ChannelStats {
        ChannelStats {
            sent: self.link().sent.load(),
            received: self.link().received.load(),
        }
    }

    /// Reaches into the segment's memory, for tests that play a hostile peer.
    #[cfg(test)]
    pub(crate) fn segment(&self) -> &Arc<crate::segment::Segment> {
        &self.link().segment
    }
}

#[cfg(test)]
mod tests;
