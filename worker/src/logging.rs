//! Forwards the worker's `tracing` events over the bridge, so they appear in the runner's log
//! with `worker` as their origin. Records of the `log` crate (`ibapi` logs through it) become
//! `tracing` events too and travel the same way, with their own target (`ibapi::…`).
//!
//! Invariants: forwarding never blocks: a record that finds the ring full is dropped and
//! counted (the count travels with the next record that gets through); the subscriber is
//! installed once per process; `ibapi`'s announcements of reconnection attempts are counted
//! whatever level is forwarded.

use std::cell::Cell;
use std::fmt::Write as _;

use bridge::protocol::{LogLevel, LogRecord};
use bridge::Responder;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{filter::LevelFilter, Layer};

thread_local! {
    /// Set while a record is being forwarded, so events raised by the forwarding itself are
    /// not forwarded again.
    static FORWARDING: Cell<bool> = const { Cell::new(false) };
}

struct Forward {
    responder: Responder,
}

#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name().starts_with("log.") {
            // Where a `log` record came from; its target is taken from the normalised
            // metadata instead.
            return;
        }
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name().starts_with("log.") {
            return;
        }
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for Forward {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if FORWARDING.with(|f| f.replace(true)) {
            return;
        }
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut text = Text::default();
        event.record(&mut text);
        text.message.push_str(&text.fields);
        let level = match *meta.level() {
            Level::ERROR => LogLevel::Error,
            Level::WARN => LogLevel::Warn,
            Level::INFO => LogLevel::Info,
            Level::DEBUG => LogLevel::Debug,
            Level::TRACE => LogLevel::Trace,
        };
        self.responder.log(LogRecord {
            level,
            target: meta.target().to_string(),
            message: text.message,
            dropped_before: 0,
        });
        FORWARDING.with(|f| f.set(false));
    }
}

/// Counts `ibapi`'s announcements of reconnection attempts (it reports them nowhere else);
/// see [`crate::ibkr::lifecycle`].
struct ReconnectAttempts;

impl<S: Subscriber> Layer<S> for ReconnectAttempts {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        if !crate::ibkr::announces_attempts(meta.target()) {
            return;
        }
        let mut text = Text::default();
        event.record(&mut text);
        crate::ibkr::ibapi_logged(&text.message);
    }
}

/// Installs the forwarding subscriber for this process. `level`: 0 error … 4 trace.
pub(crate) fn install(responder: Responder, level: u8) {
    let filter = match level {
        0 => LevelFilter::ERROR,
        1 => LevelFilter::WARN,
        2 => LevelFilter::INFO,
        3 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let _ = tracing_subscriber::registry()
        .with(Forward { responder }.with_filter(filter))
        // Whatever the level forwarded: `ibapi` announces its attempts at info.
        .with(ReconnectAttempts.with_filter(LevelFilter::INFO))
        .try_init();
}
