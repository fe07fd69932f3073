//! What a broker must offer the worker.

use std::sync::Arc;
use std::time::Duration;

use bridge::protocol::{Bar, ErrorKind, Event, HistoryRequest, RemoteError, SubscribeRequest};

/// Where a backend sends unsolicited news: real-time bars, connection status, notices.
pub type EventSink = Arc<dyn Fn(Event) + Send + Sync>;

/// A broker connection. Calls may come from many threads at once.
pub trait Backend: Send + Sync {
    /// Short name for logs.
    fn name(&self) -> &'static str;

    /// Connects, and returns only once the connection is ready: managed accounts and the next
    /// order id are both known. Fails with [`ErrorKind::Timeout`] if that takes longer than
    /// `timeout`. Connecting again while connected returns the same answer at once.
    fn connect(&self, timeout: Duration) -> Result<(Vec<String>, i64), RemoteError>;

    /// The managed accounts.
    fn accounts(&self) -> Result<Vec<String>, RemoteError>;

    /// Historical bars, oldest first, handed to `emit` in batches; returns how many bars were
    /// sent. Stops early (with an error) when `emit` returns `false`.
    fn history(
        &self,
        request: &HistoryRequest,
        emit: &mut dyn FnMut(Vec<Bar>) -> bool,
    ) -> Result<u64, RemoteError>;

    /// Starts real-time bars for a symbol, delivered as [`Event::Bar`].
    fn subscribe(&self, request: &SubscribeRequest) -> Result<(), RemoteError>;

    /// Stops real-time bars for a symbol.
    fn unsubscribe(&self, symbol: &str) -> Result<(), RemoteError>;

    /// Disconnects cleanly. Idempotent.
    fn disconnect(&self);
}

/// Shorthand for a [`RemoteError`].
pub fn error(kind: ErrorKind, message: impl Into<String>) -> RemoteError {
    RemoteError {
        kind,
        message: message.into(),
    }
}

/// Whether `symbol` is a well-formed ticker: 1 to 12 of `A-Z`, `0-9`, `.` and `-`, starting
/// with a letter.
pub fn valid_symbol(symbol: &str) -> bool {
    (1..=12).contains(&symbol.len())
        && symbol.as_bytes()[0].is_ascii_uppercase()
        && symbol
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}
