//! The simulated broker's order watcher: the thread that brings the book up to the market
//! clock at every fill bar and tells what changed ([`watch_orders`]).
//!
//! Invariants: the watcher polls at least every second (orders other processes add to the
//! journal are seen within it); no lock is held while events are handed over; the loop ends
//! once the market stops.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::market::Market;

/// Brings the broker's book up to the market clock at every fill bar (and at least every
/// second, for orders other processes add to the journal) until the market stops.
pub(super) fn watch_orders(market: &Market) {
    let size = i64::from(market.opts.broker.fill_seconds.max(1));
    let mut guard = market.watch.lock();
    while !market.stop.load(Ordering::Acquire) {
        let now = market.clock.now();
        match market.broker.poll(now) {
            Ok(changes) => {
                drop(guard);
                market.tell(changes);
                guard = market.watch.lock();
            }
            Err(e) => tracing::warn!("simulated broker: {}", e.message),
        }
        let next_bar = (now.div_euclid(size) + 1) * size;
        let wait = market
            .clock
            .until(next_bar)
            .clamp(Duration::from_millis(1), Duration::from_secs(1));
        market.watch_cv.wait_for(&mut guard, wait);
    }
}
