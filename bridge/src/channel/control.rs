//! What each side gets from a connection: a [`Channel`] (its sender, its receiver and its
//! [`Control`]), and what the control counts ([`ChannelStats`]).
//!
//! Invariants: every `Control` of a side shares one link, so liveness, the gone state and
//! closing are the same whichever handle asks; the counters are this process's own, never
//! read from the shared segment.

#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;

use super::error::GoneReason;
use super::link::{CloseOnDrop, Link};
use super::receiver::Receiver;
use super::sender::Sender;
use crate::ring::RingStats;
use crate::segment::Role;

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
            .field("role", &self.role())
            .field("peer_pid", &self.peer_pid())
            .field("gone", &self.gone())
            .finish()
    }
}

impl Control {
    pub(crate) fn new(close: Arc<CloseOnDrop>) -> Self {
        Control { close }
    }

    fn link(&self) -> &Link {
        &self.close.link
    }

    /// Which role this side plays: the runner or the worker.
    pub fn role(&self) -> Role {
        self.link().role
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

    /// Wakes a thread of this process asleep on the ring this side reads, so that it looks at
    /// what it waits for again (the client hands its reading end from thread to thread).
    pub(crate) fn interrupt_reader(&self) {
        self.link().segment.wake_reader(self.link().role);
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

    /// This side's link, for tests that play its process dying.
    #[cfg(test)]
    pub(crate) fn link_for_tests(&self) -> &Link {
        self.link()
    }

    /// Reaches into the segment's memory, for tests that play a hostile peer.
    #[cfg(test)]
    pub(crate) fn segment(&self) -> &Arc<crate::segment::Segment> {
        &self.link().segment
    }
}
