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

pub use channel::{AttachError, Config, GoneReason, RecvError, SendError, StartError};
pub use client::{Client, ClientConfig, RequestError};
pub use server::{Incoming, Responder, Server};

pub mod channel;
pub mod client;
pub mod codec;
pub mod protocol;
pub mod ring;
pub mod segment;
pub mod server;

mod doorbell;
mod sync;
mod sys;
