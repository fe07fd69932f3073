//! What a running hub is: its one supervisor, its settings, its clients and feeds, the
//! history requests under way, and what it counts; shared by the hub's threads.
//!
//! Invariants: everything here is behind its own lock or atomic, and no lock of it is held
//! while a client or the supervisor is waited for.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::clients::Clients;
use super::feeds::Feeds;
use super::history::Coalescer;
use crate::supervisor::Supervisor;

/// What a hub is told.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) max_clients: usize,
    pub(crate) cancel_departed: bool,
    pub(crate) request_timeout: Duration,
    pub(crate) history_timeout: Duration,
}

/// What a hub counts.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) attached: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) departed: AtomicU64,
    pub(crate) history_upstream: AtomicU64,
    pub(crate) history_shared: AtomicU64,
    pub(crate) bars_in: AtomicU64,
    pub(crate) bars_out: AtomicU64,
}

/// A running hub.
pub(crate) struct Hub {
    pub(crate) sup: Arc<Supervisor>,
    pub(crate) settings: Settings,
    pub(crate) clients: Clients,
    pub(crate) feeds: Feeds,
    pub(crate) history: Coalescer,
    pub(crate) counters: Counters,
    /// The broker connection as the worker last told it.
    pub(crate) gateway: Mutex<String>,
    pub(crate) backend: String,
    pub(crate) started: u64,
    pub(crate) stopping: AtomicBool,
    /// Its streams on NATS JetStream, if configured.
    pub(crate) nats: Option<Arc<crate::nats::Publisher>>,
}
