//! The faults the simulated market injects ([`SimFaults`](crate::options::SimFaults)), for
//! tests: a late or missing handshake, replies held back, a crash or hang after some history
//! batches, symbols without data, a crash right after an order was taken, acknowledgements of
//! orders held back (and, in `market.rs`, fill events dropped).
//!
//! Invariants: faults are injected here and nowhere else; a crash or hang applies to the
//! first worker of a run (generation 0) only, so a replacement recovers; signals go to this
//! process only.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base::signal::{self, ProcessSignal};

use super::market::Market;

/// When the handshake that began at `started` completes: the next valid id after 20 ms, the
/// managed accounts after the configured delay; `None`: the accounts never come.
pub(super) fn accounts_ready_at(market: &Market, started: Instant) -> Option<Instant> {
    let faults = &market.opts.faults;
    (!faults.accounts_never).then(|| {
        started + Duration::from_millis(20).max(Duration::from_millis(faults.accounts_delay_ms))
    })
}

/// The injected reply delay: every request but `ping` (answered by the worker itself) is
/// held back this long before the market looks at it.
pub(super) fn delay_reply(market: &Market) {
    let delay = Duration::from_millis(market.opts.faults.reply_delay_ms);
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
}

/// Whether the market has no data for `symbol`.
pub(super) fn no_data(market: &Market, symbol: &str) -> bool {
    market.opts.faults.no_data.iter().any(|s| s == symbol)
}

/// After a history batch was sent: the first worker kills or stops itself after the
/// configured number.
pub(super) fn after_batch(market: &Market) {
    let n = market.batches.fetch_add(1, Ordering::Relaxed) + 1;
    if market.generation != 0 {
        return;
    }
    let f = &market.opts.faults;
    let signal = if f.crash_after_batches == Some(n) {
        ProcessSignal::Kill
    } else if f.hang_after_batches == Some(n) {
        ProcessSignal::Stop
    } else {
        return;
    };
    tracing::warn!("injected fault: kill {signal} self after {n} batches");
    let _ = signal::send(std::process::id(), signal);
}

/// After the broker took an order, the `taken`-th of this worker, before it is acknowledged:
/// the first worker kills itself after the configured number.
pub(super) fn after_order_taken(market: &Market, taken: u64) {
    if market.generation == 0 && market.opts.faults.crash_after_orders == Some(taken) {
        tracing::warn!("injected fault: kill self after taking {taken} orders");
        let _ = signal::send(std::process::id(), ProcessSignal::Kill);
    }
}

/// Holds an order's acknowledgement back for the configured time.
pub(super) fn hold_ack(market: &Market) {
    let delay = market.opts.faults.order_ack_delay_ms;
    if delay > 0 {
        std::thread::sleep(Duration::from_millis(delay));
    }
}
