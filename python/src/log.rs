//! The log of a Python process's sessions and their workers, in Python's `logging`: each
//! record under `ibbridge.<target>` (`ibbridge.worker`, `ibbridge.ibapi`, `ibbridge.runner`,
//! `ibbridge.bridge`), at the levels the logger `ibbridge` is enabled for when the first
//! session is made.
//!
//! Invariants: the thread that logs never waits: a record is queued (bounded; when full it
//! is dropped and counted, and the count logged once there is room); only the log thread
//! takes the GIL, to hand records over in batches.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use pyo3::prelude::*;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// Records waiting for the log thread.
const QUEUE: usize = 10_000;

/// A record for Python: level (as `logging` counts), logger name, text.
type Record = (u8, String, String);

static DROPPED: AtomicU64 = AtomicU64::new(0);
static INSTALLED: OnceLock<()> = OnceLock::new();

struct ToPython {
    tx: Sender<Record>,
    max: Level,
}

#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

/// `logging`'s number for a level.
fn python_level(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG | Level::TRACE => 10,
    }
}

/// The logger for a target: its first part, under `ibbridge`.
fn logger_name(target: &str) -> String {
    match target.split("::").next().unwrap_or(target) {
        // This library's own records: the session's.
        "_native" => "ibbridge".to_string(),
        root => format!("ibbridge.{root}"),
    }
}

impl<S: Subscriber> Layer<S> for ToPython {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        *metadata.level() <= self.max
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > self.max {
            return;
        }
        let mut text = Text::default();
        event.record(&mut text);
        let record = (
            python_level(meta.level()),
            logger_name(meta.target()),
            text.0,
        );
        if let Err(TrySendError::Full(_)) = self.tx.try_send(record) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The most verbose level `logging.getLogger("ibbridge")` shows.
fn enabled_level(py: Python<'_>) -> Level {
    let level = py
        .import("logging")
        .and_then(|l| l.call_method1("getLogger", ("ibbridge",)))
        .and_then(|l| l.call_method0("getEffectiveLevel"))
        .and_then(|l| l.extract::<i64>())
        .unwrap_or(30);
    match level {
        l if l <= 5 => Level::TRACE,
        l if l <= 10 => Level::DEBUG,
        l if l <= 20 => Level::INFO,
        l if l <= 30 => Level::WARN,
        _ => Level::ERROR,
    }
}

/// Sends this process's log to Python's `logging` (once per process).
pub(crate) fn install(py: Python<'_>) {
    INSTALLED.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let layer = ToPython {
            tx,
            max: enabled_level(py),
        };
        let subscriber = tracing_subscriber::registry().with(layer);
        if tracing::subscriber::set_global_default(subscriber).is_err() {
            // Another library set one: the records go there.
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("ibbridge-log".into())
            .spawn(move || forward(rx));
        if let Err(e) = spawned {
            eprintln!("ibbridge: no log thread ({e}); the log goes nowhere");
        }
    });
}

/// Hands the records over to `logging`, a batch per taking of the GIL.
fn forward(rx: Receiver<Record>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter().take(QUEUE));
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            batch.push((
                30,
                "ibbridge".into(),
                format!("{dropped} log records dropped: the log thread fell behind"),
            ));
        }
        let delivered = crate::interpreter::attach(|py| {
            let Ok(logging) = py.import("logging") else {
                return;
            };
            for (level, name, text) in batch {
                let logged = logging
                    .call_method1("getLogger", (name,))
                    .and_then(|l| l.call_method1("log", (level, text)));
                if let Err(e) = logged {
                    e.print(py);
                }
            }
        });
        if delivered.is_none() {
            // The interpreter is finishing: nobody reads the log any more.
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_go_to_the_logger_of_their_crate() {
        assert_eq!(logger_name("worker::ibkr::orders"), "ibbridge.worker");
        assert_eq!(logger_name("ibapi"), "ibbridge.ibapi");
        assert_eq!(logger_name("_native::stream"), "ibbridge");
        assert_eq!(python_level(&Level::WARN), 30);
        assert_eq!(python_level(&Level::TRACE), 10);
    }
}
