//! The trading runner. Its rooms:
//!
//! - the command line and how a command starts and ends: [`cli`], [`launch`] (`main.rs` only
//!   dispatches);
//! - the configuration: [`config`] (the document, overrides, validation by section);
//! - the workers: what they are started with and the one set-up before they start
//!   ([`worker_setup`]), their supervisor with its lifecycle and typed errors ([`supervisor`]),
//!   the events of all of them in one stream ([`worker_events`]), the IB pacing record handed
//!   from one to the next ([`pacing_log`]) and the restart intensity ([`restart_intensity`]);
//! - a session, the runner as a library ([`session`]): history, the live loop with the
//!   monotonic-bar rule, an [`session::Observer`], over a [`strategy::Strategy`];
//! - trading: the runner's book of orders ([`orders`]), its risk limits ([`risk`]), placing
//!   orders exactly once and the order a signal calls for ([`trader`]), orders by hand
//!   ([`by_hand`]);
//! - the `run` command ([`run_command`]) with its progress display, signals file
//!   ([`signals`]), record of the broker connection ([`broker_connection`]) and summary
//!   ([`summary`]); the soak ([`soak`]).
//!
//! Invariants: no import cycle between its files (`.ci/cycles.py`); it reaches the worker
//! only through the worker crate's face (options, entry, the handover).
//!
//! A live bar's way: the worker's `Event::Bar` reaches [`worker_events::WorkerEvents`], the
//! session's live loop drops it unless it is newer than the last
//! ([`session::MonotonicBars`]), adds it to its symbol's window and calls
//! [`strategy::Strategy::on_bars`]; with trading on, the signal goes to
//! [`trader::trade_on`].
#![forbid(unsafe_code)]

pub mod broker_connection;
pub mod by_hand;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod hub;
pub mod launch;
pub mod nats;
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
