//! The hub's streams on NATS JetStream ([`Publisher`]): every live bar the hub receives on
//! `ibbridge.<hub>.bars.<SYMBOL>`, its message id the symbol, bar size and bar time (a bar
//! published again, after a worker's replacement or a lost acknowledgement, is dropped by the
//! server as a duplicate), and the broker connection's changes and refusals on
//! `ibbridge.<hub>.events`. The stream (`IBBRIDGE_<HUB>`, file storage, the configured
//! retention and duplicate window) is made if missing: it is the day's recording.
//!
//! The publishing runs on a thread of its own ("hub-nats", its own single-threaded runtime):
//! the hub hands a message over without waiting ([`Publisher::bar`], [`Publisher::event`]),
//! the thread publishes them in order, each acknowledged by the server before the next. While
//! the server is away (down at start, or gone mid-run) the thread keeps what comes in a
//! bounded buffer and connects again every second; when it is back the buffer is published
//! first. A buffer full drops its oldest message, counted as lost and said in the log.
//!
//! The hub's door ([`Door`], a thread of its own too) serves programs on other machines
//! (`runner run --nats URL --hub NAME`, whose worker is [`worker::remote`]'s): their requests
//! on `ibbridge-rpc.<hub>.<client>`, each such client attached to the hub as a local one of its
//! name, its events but bars on `ibbridge.<hub>.clients.<client>.events` in the stream.
//!
//! Invariants: the hub never waits for NATS; messages of the hub are published in the order
//! handed over; a message is dropped from the buffer only once the server acknowledged it (or
//! the buffer overflowed, counted); credentials are never logged (the token is not even part of
//! the printed configuration).

#[cfg(feature = "nats")]
mod door;
#[cfg(feature = "nats")]
mod publish;
mod publisher;
#[cfg(feature = "nats")]
pub mod replay;
mod wire;

#[cfg(test)]
mod tests;

#[cfg(feature = "nats")]
pub use door::{Door, DoorSettings};
pub use publisher::{NatsView, Publisher};
pub use wire::{bar_id, stream_name, subject_prefix, symbol_token, valid_hub_token, PublishedBar};
