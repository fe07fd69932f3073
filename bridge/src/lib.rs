//! The shared-memory bridge between the trading runner and its broker worker.
//!
//! Layers, bottom up (each a module; docs/bridge.md describes them, docs/layout.md names
//! every file):
//! - [`segment`]: the shared memory itself (`segment/`: its layout and header, the two roles,
//!   the mapping, the take-once claims on ring ends, names and their sweep, errors), with
//!   `sys` the only OS-facing layer (one file per concept, Linux and macOS side by side;
//!   [`platform`] is its face to the rest of the system);
//! - [`ring`]: a single-producer single-consumer ring of byte frames, one per direction
//!   (`ring/`: control block, frame format, geometry, region, each end, errors);
//! - `doorbell`: futex wakeups without lost wakeups and without idle spinning;
//! - [`codec`]: bincode 2 (derived `Encode`/`Decode`), with a size limit tied to the frame;
//! - [`protocol`]: the messages both sides speak (orders in `protocol/orders.rs`), and
//!   [`pages`]: lists longer than a frame, cut into pages and joined again;
//! - [`channel`]: start a worker process and attach it, with liveness in both directions
//!   (`channel/`: settings, environment, start, hello, link, control, sender, receiver,
//!   errors);
//! - [`client`] / [`server`]: requests from many threads matched to replies by id (`client/`:
//!   settings, errors, counters, log sink, slots, shared state, the dispatcher and timer
//!   threads, the reply stream and future);
//! - [`backoff`]: how a busy-poll backs off (spin hints, periodic yields), used by the client's
//!   spinning dispatcher and by the runner's spinning event reader.
//! - [`Allocator`]: the heap allocator the project's programs install (the system's, small
//!   zeroed allocations through glibc's per-thread cache: `sys/alloc.rs`).
//!
//! Invariants: `unsafe` code lives only in `ring/region.rs`, `segment/mapping.rs` and `sys/`, and in two
//! modules built only for the benchmarks (feature `bench`) and the bridge's own tests:
//! `alloc_count.rs` (a counting allocator) and `floor.rs` (raw shared words, the machine's
//! floor); every other module forbids it.

#![warn(missing_debug_implementations)]
#![deny(missing_docs)]

#[cfg(not(loom))]
pub use channel::{ChannelConfig, GoneReason, RecvError, SendError, StartError};
#[cfg(not(loom))]
pub use client::{Client, ClientConfig, ClientStats, EventTap, Events, RequestError};
#[cfg(not(loom))]
pub use server::{Incoming, Responder, Server};

pub use backoff::Backoff;
#[cfg(not(loom))]
pub use sys::alloc::Allocator;

#[cfg(all(not(loom), any(test, feature = "bench")))]
pub mod alloc_count;
pub mod backoff;
#[cfg(not(loom))]
pub mod channel;
#[cfg(not(loom))]
pub mod client;
pub mod codec;
#[cfg(all(not(loom), any(test, feature = "bench")))]
pub mod floor;
#[cfg(not(loom))]
pub mod pages;
#[cfg(not(loom))]
pub mod platform;
pub mod protocol;
pub mod ring;
#[cfg(not(loom))]
pub mod segment;
#[cfg(not(loom))]
pub mod server;

mod doorbell;
#[cfg(all(test, loom))]
mod loom_tests;
mod sync;
#[cfg(not(loom))]
mod sys;
#[cfg(all(test, not(loom)))]
mod test_alloc;
