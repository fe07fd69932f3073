//! What the hub publishes, by name: its subjects, its stream, a bar's message id and payload,
//! and the messages and counters the publisher shares with its thread.

use std::sync::atomic::{AtomicBool, AtomicU64};

use bridge::protocol::Bar;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Subjects of hub `hub`: its bars and events.
pub fn subject_prefix(hub: &str) -> String {
    format!("ibbridge.{hub}")
}

/// The JetStream stream of hub `hub` (a stream name allows no `.`, space or wildcard; its
/// case is kept: hubs `desk` and `Desk` have streams of their own).
pub fn stream_name(hub: &str) -> String {
    let name: String = hub
        .chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                true => c,
                false => '_',
            },
        )
        .collect();
    format!("IBBRIDGE_{name}")
}

/// The subject token of `symbol`: a `.` (as in `BRK.B`) would split it in two, so it is `_`.
pub fn symbol_token(symbol: &str) -> String {
    symbol.replace(['.', '*', '>', ' '], "_")
}

/// Whether `hub` can be a subject token (NATS refuses `.`, `*`, `>` and whitespace in one).
pub fn valid_hub_token(hub: &str) -> bool {
    !hub.is_empty()
        && hub
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The message id of a bar: it names the bar whoever publishes it again.
pub fn bar_id(symbol: &str, bar_seconds: u32, time: i64) -> String {
    format!("{symbol}.{bar_seconds}.{time}")
}

/// A bar as published: JSON any NATS client reads.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PublishedBar {
    pub bar_seconds: u32,
    pub time: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

impl PublishedBar {
    /// The bar of `bar_seconds` seconds.
    pub fn of(bar_seconds: u32, bar: &Bar) -> PublishedBar {
        PublishedBar {
            bar_seconds,
            time: bar.time,
            open: bar.open,
            high: bar.high,
            low: bar.low,
            close: bar.close,
            volume: bar.volume,
        }
    }

    /// The protocol's bar.
    pub fn bar(&self) -> Bar {
        Bar {
            time: self.time,
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            volume: self.volume,
        }
    }
}

/// One message for the server.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(super) struct Message {
    pub(super) subject: String,
    /// Its `Nats-Msg-Id`, if the server is to de-duplicate it.
    pub(super) id: Option<String>,
    pub(super) payload: String,
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
    pub(super) stop: AtomicBool,
}
