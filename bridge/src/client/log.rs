//! The log sink: where the worker's log records go in the runner.
//!
//! Invariants: a sink is called on the thread that reads the ring (the dispatcher, or the
//! thread waiting for events: `seat.rs`), with no lock of the client held but the ring's own,
//! and must not block (it would hold up every reply behind the record).

#![forbid(unsafe_code)]

use std::sync::Arc;

use crate::protocol::{LogLevel, LogRecord};

/// Where the worker's log records go in the runner: by default [`emit`], which re-emits each
/// in this process's `tracing` log with target `worker`.
pub type LogSink = Arc<dyn Fn(&LogRecord) + Send + Sync>;

/// Re-emits a worker log record in this process's log, with `worker` as its target and the
/// record's own target as the field `origin`.
pub fn emit(r: &LogRecord) {
    let origin = r.target.as_str();
    let msg = r.message.as_str();
    match r.level {
        LogLevel::Error => tracing::error!(target: "worker", origin, "{msg}"),
        LogLevel::Warn => tracing::warn!(target: "worker", origin, "{msg}"),
        LogLevel::Info => tracing::info!(target: "worker", origin, "{msg}"),
        LogLevel::Debug => tracing::debug!(target: "worker", origin, "{msg}"),
        LogLevel::Trace => tracing::trace!(target: "worker", origin, "{msg}"),
    }
}
