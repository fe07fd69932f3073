//! What the acceptor and every connection's threads share: the knobs, the record of each
//! connection, the counters, the live connections, what was seen, and the broker's book.
//!
//! Invariants: one `GatewayState` per gateway, behind an `Arc`; each part that changes has
//! its own lock (taken with [`lock`](super::connections::lock), which outlives a poisoned
//! lock), and the book's lock is taken before the connection registry's.

use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::behaviour::Behaviour;
use super::connections::Connections;
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
}
