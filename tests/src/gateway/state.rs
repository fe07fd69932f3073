//! What the acceptor and every connection's threads share: the knobs, the record of each
//! connection, the counters, the live connections, what was seen, and the broker's book.
//!
//! Invariants: one `GatewayState` per gateway, behind an `Arc`; each part that changes has
//! its own lock (taken with [`lock`](super::connections::lock), which outlives a poisoned
//! lock), and the book's lock is taken before the connection registry's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::behaviour::Behaviour;
use super::connections::{lock, Connections};
use super::orders::Book;
use super::seen::Seen;
use super::wire::Contract;

/// The life of one client connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRecord {
    /// The client id sent with start-API, if any.
    pub client_id: Option<i32>,
    /// When the client's socket was seen closed (EOF or error), if it was.
    pub closed_after: Option<Duration>,
    /// Whether the gateway closed it (client id in use, dropped, outage, shutdown).
    pub closed_by_gateway: bool,
}

/// What the acceptor and every connection's threads share.
pub(super) struct GatewayState {
    pub(super) behaviour: Mutex<Behaviour>,
    pub(super) records: Mutex<Vec<ConnectionRecord>>,
    pub(super) stop: AtomicBool,
    pub(super) history_requests: AtomicU32,
    pub(super) realtime_bars: AtomicU32,
    pub(super) realtime_requests: AtomicU32,
    pub(super) contracts: Mutex<Vec<Contract>>,
    pub(super) connections: Arc<Connections>,
    pub(super) seen: Mutex<Seen>,
    /// The broker's book, shared by every connection.
    pub(super) book: Mutex<Book>,
    /// PlaceOrder messages received so far, on every connection.
    pub(super) place_orders: AtomicU32,
    /// Symbols whose real-time data stopped without a word ([`SilentFeed`](super::behaviour::SilentFeed)), and when.
    pub(super) silenced: Mutex<HashMap<String, Instant>>,
}

impl GatewayState {
    /// Whether a real-time stream of `symbol` opened at `opened` sends nothing now: its
    /// symbol fell silent ([`SilentFeed`](super::behaviour::SilentFeed)) while it was open, or not long enough ago.
    pub(super) fn silenced(&self, symbol: &str, opened: Instant) -> bool {
        let Some(stop) = lock(&self.silenced).get(symbol).copied() else {
            return false;
        };
        let lasts = lock(&self.behaviour)
            .silent_feeds
            .iter()
            .find(|f| f.symbol == symbol)
            .and_then(|f| f.lasts);
        opened <= stop || lasts.is_none_or(|lasts| Instant::now() < stop + lasts)
    }
}
