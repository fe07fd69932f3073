//! A hub's names on NATS, shared by the hub that serves them and the programs that reach it:
//! its subjects, its stream, its consumers, a bar's message id and payload.
//!
//! Subjects of hub `H`: `ibbridge.H.bars.<SYMBOL>` (live bars, JSON, in the stream),
//! `ibbridge.H.events` (the broker connection's news, JSON, in the stream),
//! `ibbridge.H.clients.<CLIENT>.events` (a remote client's own events: its orders' news, the
//! broker connection, bincode, in the stream) and `ibbridge-rpc.H.<CLIENT>` (a remote
//! client's requests, bincode, answered on the request's inbox; outside the stream's
//! subjects, so never kept).

use bridge::protocol::Bar;
use serde::{Deserialize, Serialize};

/// Subjects of hub `hub`: its bars and events.
pub fn subject_prefix(hub: &str) -> String {
    format!("ibbridge.{hub}")
}

/// The subject a remote client's requests go to (`client` `*`: all of them).
pub fn rpc_subject(hub: &str, client: &str) -> String {
    format!("ibbridge-rpc.{hub}.{client}")
}

/// The subject of a remote client's own events.
pub fn client_events_subject(hub: &str, client: &str) -> String {
    format!("{}.clients.{client}.events", subject_prefix(hub))
}

/// The subject of `symbol`'s live bars.
pub fn bars_subject(hub: &str, symbol: &str) -> String {
    format!("{}.bars.{}", subject_prefix(hub), symbol_token(symbol))
}

/// The durable consumer of client `client` for `symbol`'s bars (`None`: its events).
pub fn consumer_name(client: &str, symbol: Option<&str>) -> String {
    match symbol {
        Some(s) => format!("{client}_bars_{}", symbol_token(s)),
        None => format!("{client}_events"),
    }
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

/// Whether `name` can be a subject token (NATS refuses `.`, `*`, `>` and whitespace in one).
pub fn valid_hub_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The message id of a bar: it names the bar whoever publishes it again.
pub fn bar_id(symbol: &str, bar_seconds: u32, time: i64) -> String {
    format!("{symbol}.{bar_seconds}.{time}")
}

/// The header naming an order's reference on a request that places it: the same
/// `Nats-Msg-Id` however often the request is sent.
pub const MSG_ID: &str = "Nats-Msg-Id";

/// The header naming the run of the program a request comes from
/// ([`RemoteOptions::instance`](crate::options::RemoteOptions::instance)).
pub const INSTANCE: &str = "Ibbridge-Instance";

/// The header naming the generation of the worker a request comes from (in its run).
pub const WORKER: &str = "Ibbridge-Worker";

/// The header of a request's deadline (Unix milliseconds): the hub drops a request whose
/// deadline passed before its turn came.
pub const DEADLINE: &str = "Ibbridge-Deadline";

/// The header numbering a request's answers from 0: one missing was lost in transit.
pub const SEQ: &str = "Ibbridge-Seq";

/// The header of a [`Request::Cancel`](bridge::protocol::Request::Cancel) naming the inbox
/// of the request given up.
pub const CANCELS: &str = "Ibbridge-Cancels";

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
