//! The shared-memory bridge between the trading runner and its broker worker.
//!
//! Layers, bottom up:
//! - [`segment`]: the shared memory itself and its header (the only OS-facing layer, with `sys`);
//! - [`ring`]: a single-producer single-consumer ring of byte frames, one per direction;
//! - `doorbell`: futex wakeups without lost wakeups and without idle spinning;
//! - [`codec`]: bincode through serde, with a size limit;
//! - [`protocol`]: the messages both sides speak;
//! - [`channel`]: start a worker process and attach it, with liveness in both directions;
//! - [`client`] / [`server`]: requests from many threads matched to replies by id.

#![warn(missing_debug_implementations)]

#[cfg(not(loom))]
pub use channel::{AttachError, Config, GoneReason, RecvError, SendError, StartError};
#[cfg(not(loom))]
pub use client::{Client, ClientConfig, RequestError};
#[cfg(not(loom))]
pub use server::{Incoming, Responder, Server};

#[cfg(not(loom))]
pub mod channel;
#[cfg(not(loom))]
pub mod client;
pub mod codec;
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
