//! What the hub publishes, by name: its subjects, its stream, a bar's message id and payload,
//! and the messages and counters the publisher shares with its thread.

use std::sync::atomic::{AtomicBool, AtomicU64};

use parking_lot::Mutex;

pub use worker::remote::wire::{
    bar_id, stream_name, subject_prefix, symbol_token, valid_hub_token, PublishedBar,
};

/// One message for the server.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(super) struct Message {
    pub(super) subject: String,
    /// Its `Nats-Msg-Id`, if the server is to de-duplicate it.
    pub(super) id: Option<String>,
    pub(super) payload: Vec<u8>,
}

/// What the publisher counts and where it stands, shared with its thread.
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(super) struct Shared {
    /// `connected`, `connecting`, or `down: why`.
    pub(super) state: Mutex<String>,
    pub(super) published: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) lost: AtomicU64,
    pub(super) buffered: AtomicU64,
    /// Messages at the hub's door that were not ours, ignored.
    pub(super) not_ours: AtomicU64,
    pub(super) stop: AtomicBool,
}
