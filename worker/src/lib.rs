//! The broker worker: attaches to the runner over the bridge, owns the broker connection
//! (the simulated market or Interactive Brokers), and answers the runner's requests.
//!
//! The worker is the runner's own executable started with its hidden `worker` subcommand, so
//! the code that runs is always the code that was built. Its options travel in the environment
//! ([`OPTIONS_ENV`]); its `tracing` events travel over the bridge and appear in the runner's log.
//!
//! The face the runner uses: the options ([`options`]: [`WorkerOptions`] and the backends'
//! settings), what a new worker inherits from the ones before it ([`Handover`]), how a worker
//! is started ([`command_with`], [`build_id_of`]) and run ([`entry`], [`run`], [`run_as`]), the pacing
//! IB counts ([`pacing::requests_counted`]), and a symbol's form
//! ([`backend::valid_symbol`]).
//!
//! Modules: the way into a worker process ([`entry`]), the main loop (`serve`), what a broker offers ([`backend`]) and the two brokers
//! ([`sim`], [`ibkr`], with IB's [`pacing`]), the options ([`options`]), the handover
//! (`handover`), starting a worker (`launch`), and log forwarding (`logging`). Unix time, the
//! small PRNG and process signals are the workspace's `base` crate's.
//!
//! Invariants: no file of this crate uses one that uses it (no import cycle); the runner
//! never looks inside a backend's options to hand something over.
#![forbid(unsafe_code)]

pub mod backend;
pub mod entry;
mod handover;
pub mod ibkr;
mod launch;
mod logging;
pub mod options;
pub mod pacing;
pub mod recording;
pub mod remote;
mod serve;
pub mod sim;

pub use entry::serve_if_started_as_worker;
pub use handover::Handover;
pub use launch::{build_id, build_id_of, command, command_with};
pub use options::{BackendOptions, SimFaults, SimOptions, WorkerOptions, OPTIONS_ENV};
pub use serve::{run, run_as, OptionsError, WorkerError};
pub use sim::journal::JournalError;
