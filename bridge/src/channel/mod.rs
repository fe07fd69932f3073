//! Frame-level endpoints: the runner starts a worker process over a fresh segment
//! ([`spawn`]), the worker attaches from what the runner put in its environment ([`attach`]).
//! Each side gets a [`Sender`], a [`Receiver`] and a [`Control`].
//!
//! Files: `config.rs` (the settings), `env.rs` (what the worker finds in its environment),
//! `start.rs` (spawn, attach, the in-process [`pair`]), `hello.rs` (the version and build
//! check), `link.rs` (liveness and the gone state shared by a side's parts), `control.rs` (a
//! side's [`Channel`] and [`Control`]), `sender.rs`, `receiver.rs`, `error.rs`. This file only
//! names them.
//!
//! Invariants: every send and receive has a deadline; while both sides live each direction is
//! FIFO with no loss; when the peer dies, hangs, closes or corrupts the segment, every waiter
//! wakes, what it sent before is still delivered, and then every operation fails with
//! [`GoneReason`].

#![forbid(unsafe_code)]

mod config;
mod control;
mod env;
mod error;
mod hello;
mod hub;
mod link;
mod receiver;
mod sender;
mod start;

pub use config::{deadline_after, ChannelConfig};
pub use control::{Channel, ChannelStats, Control};
pub use env::{ENV_PARENT_PID, ENV_SEGMENT};
pub use error::{Damage, GoneReason, HelloError, RecvError, SendError, StartError};
pub use hub::{
    attach_to_hub, default_hub_dir, ensure_private_dir, hub_running, socket_path, valid_name,
    AttachRequest, HubError, HubListener, Knock, KnockError, ENV_HUB_DIR, MAX_NAME,
};
pub use receiver::Receiver;
pub use sender::{Batch, Sender};
pub use start::{attach, pair, spawn};

#[cfg(test)]
mod tests;
