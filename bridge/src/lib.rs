//! The shared-memory bridge between the trading runner and its broker worker.
//!
//! Layers, bottom up (each a module; the README's layer list names the same files):
//! - [`segment`]: the shared memory itself and its header (with `sys`, the only OS-facing
//!   layer: one file per concept, Linux and macOS side by side; [`platform`] is its face to
//!   the rest of the system);
//! - [`ring`]: a single-producer single-consumer ring of byte frames, one per direction;
//! - `doorbell`: futex wakeups without lost wakeups and without idle spinning;
//! - [`codec`]: bincode 2 (derived `Encode`/`Decode`), with a size limit tied to the frame;
//! - [`protocol`]: the messages both sides speak;
//! - [`channel`]: start a worker process and attach it, with liveness in both directions;
//! - [`client`] / [`server`]: requests from many threads matched to replies by id.
//!
//! `unsafe` code lives only in `ring/region.rs`, `segment.rs` and `sys/`, and in two modules
//! built only for the benchmarks and tests (feature `bench`): `alloc_count.rs` (a counting
//! allocator) and `floor.rs` (raw shared words, the machine's floor); every other module
//! forbids it.

#![warn(missing_debug_implementations)]
#![deny(missing_docs)]

#[cfg(not(loom))]
pub use channel::{Config, GoneReason, RecvError, SendError, StartError};
#[cfg(not(loom))]
pub use client::{Client, ClientConfig, ClientStats, RequestError};
#[cfg(not(loom))]
pub use server::{Incoming, Responder, Server};

pub mod alloc_count;
#[cfg(not(loom))]
pub mod channel;
#[cfg(not(loom))]
pub mod client;
pub mod codec;
#[cfg(not(loom))]
pub mod floor;
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
