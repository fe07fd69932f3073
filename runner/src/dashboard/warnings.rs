//! The run's warnings and errors, as the dashboard shows them ([`WarningLayer`]): a layer of
//! the runner's log that hands each record at `WARN` or above to the dashboard's feed while
//! one is attached.
//!
//! Invariants: a record is handed on without waiting (the feed drops it if its queue is
//! full); with no dashboard attached the layer does nothing; the layer never logs itself.

use std::fmt::Write as _;

use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use super::feed::{Update, Updates};

/// The feed records go to, while a dashboard runs.
static SINK: Mutex<Option<Updates>> = Mutex::new(None);

/// Sends the log's warnings and errors to `feed` from now on.
pub(crate) fn attach(feed: Updates) {
    *SINK.lock() = Some(feed);
}

/// Stops sending them.
pub(crate) fn detach() {
    *SINK.lock() = None;
}

/// The log layer that hands warnings and errors to the dashboard.
#[derive(Debug, Default, Clone, Copy)]
pub struct WarningLayer;

/// A record's message and fields as one line.
#[derive(Default)]
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for WarningLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let sink = SINK.lock();
        let Some(feed) = sink.as_ref() else {
            return;
        };
        let mut line = Line::default();
        event.record(&mut line);
        feed.send(Update::Warning {
            at_ms: base::unix_time::now().as_millis() as u64,
            level: if level == Level::ERROR {
                "error"
            } else {
                "warning"
            },
            text: line.0,
        });
    }
}
