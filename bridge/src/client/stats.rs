//! What a client counts: the counters its threads bump, and the snapshot handed out.
//!
//! Invariants: counters only grow; they are `Relaxed` (statistics, ordering nothing).

#![forbid(unsafe_code)]

use std::sync::atomic::AtomicU64;

use crate::channel::ChannelStats;

/// What the client counted, in this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// The connection's frames, bytes, full events and wakes.
    pub channel: ChannelStats,
    /// Replies whose request id was not (or no longer) awaited; dropped.
    pub stray_replies: u64,
    /// Events dropped because the application did not drain them.
    pub dropped_events: u64,
    /// Worker log records the worker reported dropped (its ring was full).
    pub dropped_logs: u64,
    /// Times the dispatcher woke with no frame to route.
    pub dispatcher_idle_wakes: u64,
    /// Requests given up (deadline passed, or dropped unfinished) that the worker was told to
    /// cancel.
    pub cancels: u64,
    /// Times the dispatcher handed the ring to the event reader ([`Events`](super::Events)),
    /// which then read it itself while waiting: each costs a wake or two (the dispatcher's,
    /// and the reader's when the dispatcher lets go); a bar read that way costs one.
    pub handovers: u64,
}

/// The live counters behind [`ClientStats`].
#[derive(Default)]
pub(super) struct Counters {
    pub(super) stray_replies: AtomicU64,
    pub(super) dropped_events: AtomicU64,
    pub(super) dropped_logs: AtomicU64,
    pub(super) idle_wakes: AtomicU64,
    pub(super) cancels: AtomicU64,
    pub(super) handovers: AtomicU64,
}
