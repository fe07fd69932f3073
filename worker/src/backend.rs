//! What a broker must offer the worker ([`Backend`]), and what every backend does alike:
//! refuse a malformed symbol the same way, and hand historical bars to the bridge in batches
//! of [`BATCH`].
//!
//! Invariants: every backend answers every request (an error is an answer); a history's bars
//! leave in time order, in batches of at most [`BATCH`], and stop at the first one the runner
//! does not take; a malformed symbol never reaches a broker.

use std::sync::Arc;
use std::time::Duration;

use bridge::protocol::{
    AccountSummary, Bar, ErrorKind, Event, Fill, HistoryRequest, OrderChange, OrderReport,
    OrderRequest, Position, RefRun, RemoteError, SubscribeRequest,
};

/// Where a backend sends unsolicited news: real-time bars, connection status, notices.
/// Returns whether the event was delivered (put in the ring to the runner).
pub type EventSink = Arc<dyn Fn(Event) -> bool + Send + Sync>;

/// Set when the runner gives up on a request: the backend stops working on it as soon as it
/// can (and cancels it at the broker). Cheap to clone; all clones are one token.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<CancelState>);

#[derive(Debug, Default)]
struct CancelState {
    cancelled: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Cancel {
    /// Gives up on the request: wakes whatever waits in [`cancelled`](Self::cancelled).
    pub fn cancel(&self) {
        self.0
            .cancelled
            .store(true, std::sync::atomic::Ordering::Release);
        self.0.notify.notify_waiters();
    }

    /// Whether the request was given up.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Completes once the request is given up.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// Runs `work` until it completes, or until the request is given up (`None`; `work` is
    /// dropped then, which cancels what it had under way).
    pub async fn or_cancelled<F: std::future::Future>(&self, work: F) -> Option<F::Output> {
        use std::future::Future as _;
        let mut work = std::pin::pin!(work);
        let mut cancelled = std::pin::pin!(self.cancelled());
        std::future::poll_fn(|cx| {
            // The token first: work given up is not started, nor continued.
            if cancelled.as_mut().poll(cx).is_ready() {
                return std::task::Poll::Ready(None);
            }
            if let std::task::Poll::Ready(v) = work.as_mut().poll(cx) {
                return std::task::Poll::Ready(Some(v));
            }
            std::task::Poll::Pending
        })
        .await
    }
}

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
    /// sent. Stops early (with an error) when `emit` returns `false` or `cancel` is set
    /// ([`ErrorKind::Cancelled`]); a request cancelled is cancelled at the broker too.
    fn history(
        &self,
        request: &HistoryRequest,
        cancel: &Cancel,
        emit: &mut dyn FnMut(Vec<Bar>) -> bool,
    ) -> Result<u64, RemoteError>;

    /// Starts real-time bars for a symbol, delivered as [`Event::Bar`].
    fn subscribe(&self, request: &SubscribeRequest) -> Result<(), RemoteError>;

    /// Stops real-time bars for a symbol.
    fn unsubscribe(&self, symbol: &str) -> Result<(), RemoteError>;

    /// Places an order unless the broker already has one with its reference (then that order
    /// is answered, and nothing is placed): returns once the broker has acknowledged it, with
    /// its state then. A malformed order is refused ([`ErrorKind::BadRequest`]) before
    /// anything reaches the broker. Later changes come as [`Event::Order`], [`Event::Fill`]
    /// and [`Event::Position`].
    fn place_order(&self, order: &OrderRequest) -> Result<OrderReport, RemoteError>;

    /// Changes a working order's quantity or limit price ([`ErrorKind::UnknownOrder`] if the
    /// broker has no order with its reference, [`ErrorKind::BadRequest`] if the change cannot
    /// apply); returns its state after.
    fn modify_order(&self, change: &OrderChange) -> Result<OrderReport, RemoteError>;

    /// Cancels the order with this reference ([`ErrorKind::UnknownOrder`] if the broker has
    /// none); returns its state after the cancel. An order already final is left as it is.
    fn cancel_order(&self, order_ref: &str) -> Result<OrderReport, RemoteError>;

    /// Cancels every working order; returns how many.
    fn cancel_all(&self) -> Result<u32, RemoteError>;

    /// Every order the broker knows with a reference, working or final.
    fn orders(&self) -> Result<Vec<OrderReport>, RemoteError>;

    /// The references of the orders the broker folded out of its book (kept only as
    /// totals); none unless the broker folds.
    fn folded_orders(&self) -> Result<Vec<RefRun>, RemoteError> {
        Ok(Vec::new())
    }

    /// Today's executions of orders with a reference, oldest first.
    fn executions(&self) -> Result<Vec<Fill>, RemoteError>;

    /// The positions held.
    fn positions(&self) -> Result<Vec<Position>, RemoteError>;

    /// The account's figures.
    fn account(&self) -> Result<AccountSummary, RemoteError>;

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

/// Bars per [`Reply::Bars`](bridge::protocol::Reply::Bars) batch on the bridge (about 48 KiB
/// encoded, well under a frame).
pub const BATCH: usize = 1000;

/// Whether `symbol` is a well-formed ticker: 1 to 12 of `A-Z`, `0-9`, `.` and `-`, starting
/// with a letter.
pub fn valid_symbol(symbol: &str) -> bool {
    (1..=12).contains(&symbol.len())
        && symbol.as_bytes()[0].is_ascii_uppercase()
        && symbol
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

/// Refuses a symbol that is not a well-formed ticker ([`valid_symbol`]) as
/// [`ErrorKind::UnknownSymbol`].
pub fn check_symbol(symbol: &str) -> Result<(), RemoteError> {
    if valid_symbol(symbol) {
        Ok(())
    } else {
        Err(error(
            ErrorKind::UnknownSymbol,
            format!("unknown symbol {symbol:?}"),
        ))
    }
}

/// Hands `bars` to `emit` in batches of [`BATCH`] (the last one shorter), calling
/// `after_batch` after each batch sent; returns how many bars were sent. Fails with
/// [`ErrorKind::Internal`] as soon as `emit` returns `false` (the runner stopped listening).
pub fn emit_in_batches(
    bars: impl IntoIterator<Item = Bar>,
    emit: &mut dyn FnMut(Vec<Bar>) -> bool,
    mut after_batch: impl FnMut(),
) -> Result<u64, RemoteError> {
    let mut bars = bars.into_iter();
    let mut sent = 0u64;
    loop {
        let batch: Vec<Bar> = bars.by_ref().take(BATCH).collect();
        if batch.is_empty() {
            return Ok(sent);
        }
        let n = batch.len() as u64;
        if !emit(batch) {
            return Err(error(ErrorKind::Internal, "the runner stopped listening"));
        }
        sent += n;
        after_batch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(n: usize) -> Vec<Bar> {
        (0..n)
            .map(|i| Bar {
                time: i as i64,
                open: 1.0,
                high: 1.0,
                low: 1.0,
                close: 1.0,
                volume: 1.0,
            })
            .collect()
    }

    #[test]
    fn symbols_are_tickers() {
        for ok in ["SPY", "BRK.B", "A", "ABCDEFGHIJKL", "X-1"] {
            assert!(valid_symbol(ok), "{ok}");
            assert!(check_symbol(ok).is_ok(), "{ok}");
        }
        for bad in ["", "spy", "1AB", "ABCDEFGHIJKLM", "A B", ".A"] {
            assert!(!valid_symbol(bad), "{bad}");
            let e = check_symbol(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::UnknownSymbol);
            assert_eq!(e.message, format!("unknown symbol {bad:?}"));
        }
    }

    #[test]
    fn bars_go_out_in_full_batches_then_the_rest() {
        let mut sizes = Vec::new();
        let mut after = 0;
        let sent = emit_in_batches(
            bars(2 * BATCH + 7),
            &mut |b| {
                sizes.push(b.len());
                true
            },
            || after += 1,
        )
        .unwrap();
        assert_eq!(sent, 2 * BATCH as u64 + 7);
        assert_eq!(sizes, vec![BATCH, BATCH, 7]);
        assert_eq!(after, 3);
        let sent = emit_in_batches(bars(0), &mut |_| panic!("nothing to send"), || {}).unwrap();
        assert_eq!(sent, 0);
    }

    #[test]
    fn a_runner_that_stops_listening_ends_the_batches() {
        let mut calls = 0;
        let e = emit_in_batches(
            bars(3 * BATCH),
            &mut |_| {
                calls += 1;
                calls < 2
            },
            || {},
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Internal);
        assert_eq!(calls, 2);
    }
}
