//! The settings of a [`Client`](super::Client).
//!
//! Invariants: the defaults sleep rather than spin, and re-emit worker logs with [`emit`].

#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;

use super::log::{emit, LogSink};
use crate::channel;
use crate::protocol::Event;

/// Settings of a [`Client`](super::Client).
#[derive(Clone)]
pub struct ClientConfig {
    /// The connection's settings.
    pub channel: channel::ChannelConfig,
    /// Events buffered for the application before new ones are dropped (and counted).
    pub event_capacity: usize,
    /// What to do with each log record of the worker (called on the thread that reads the
    /// ring, the dispatcher or the one waiting in [`Events`](super::Events): it must not
    /// block).
    pub log_sink: LogSink,
    /// The dispatcher busy-polls the ring instead of sleeping on its doorbell, and keeps it
    /// (the thread waiting for events never reads it): no wake is needed to deliver a frame,
    /// at the price of a core kept busy for as long as the client lives (off by default).
    pub spin: bool,
    /// Sees each event on the thread that reads the ring (the dispatcher, or the one waiting
    /// in [`Events`](super::Events)) before it is queued for the application:
    /// what it returns is queued, `None` means it took the event (a hub hands live bars on
    /// to its clients so, without a thread in between). It must not block.
    pub event_tap: Option<EventTap>,
}

/// What [`ClientConfig::event_tap`] is: called with each event, and `true` for the first event
/// this client hands it (a client is one worker: a tap shared by a supervisor's clients learns
/// so that a new worker speaks, whichever thread routes).
pub type EventTap = Arc<dyn Fn(Event, bool) -> Option<Event> + Send + Sync>;

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("channel", &self.channel)
            .field("event_capacity", &self.event_capacity)
            .field("spin", &self.spin)
            .field("event_tap", &self.event_tap.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            channel: channel::ChannelConfig::default(),
            event_capacity: 1 << 16,
            log_sink: Arc::new(emit),
            spin: false,
            event_tap: None,
        }
    }
}
