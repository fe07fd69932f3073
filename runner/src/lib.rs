//! The trading runner: configuration ([`config`]), what its workers are started with
//! ([`worker_setup`]), the worker supervisor ([`supervisor`]) and the events of its workers
//! ([`worker_events`]), the strategy ([`strategy`]), the main job ([`job`]) with its progress
//! display, signals file and summary, the soak ([`soak`]); and trading: the runner's book of
//! orders ([`orders`]), its risk limits ([`risk`]), placing orders exactly once ([`trader`]),
//! and orders by hand ([`by_hand`]). A strategy of one's own runs in a [`session`]: the same
//! worker, supervision and trading, with a [`strategy::Strategy`] of one's own.
#![forbid(unsafe_code)]

pub mod broker_connection;
pub mod by_hand;
pub mod config;
pub mod orders;
pub mod pacing_log;
mod progress;
pub mod restart_intensity;
pub mod risk;
pub mod run_command;
pub mod session;
pub mod signals;
pub mod soak;
pub mod strategy;
pub mod summary;
pub mod supervisor;
pub mod trader;
pub mod worker_events;
pub mod worker_setup;
