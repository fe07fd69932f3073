//! The simulated broker's order watcher: the thread that brings the book up to the market
//! clock at every fill bar and tells what changed ([`watch_orders`]), and that tells the
//! gateway's restarts of the calendar as the connection's loss and restoration (a re-login's
//! reconnection attempts near its end refused with 326: the old session holds the client id).
//!
//! Invariants: the watcher polls at least every second (orders other processes add to the
//! journal are seen within it) and wakes at the calendar's next restart or its end; nothing
//! of the book is told while the gateway is down (what changed meanwhile is told once it is
//! back, after the restoration); a loss is told once per outage and its restoration once; no
//! lock is held while events are handed over; the loop ends once the market stops.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bridge::protocol::{ConnectionStatus, Event};

use super::calendar::{Downtime, Outage};
use super::market::Market;

/// How often (market seconds) a re-login's reconnection attempts are told.
const ATTEMPT_EVERY: i64 = 60;

/// The part of a re-login, at its end, during which the gateway still holds the client id of
/// the session before it: each reconnection attempt then is refused with error 326, as IB's
/// is (1 of 3).
const CLIENT_ID_HELD_PART: i64 = 3;

/// Where the gateway stands, as last told.
struct Gateway {
    /// The outage told as a loss, if the gateway is down.
    down: Option<Outage>,
    /// Reconnection attempts told in this outage, and when the last was.
    attempts: u32,
    last_attempt: i64,
}

impl Gateway {
    /// Tells the change at market time `now` (the last look was at `before`), if there is
    /// one; returns whether the gateway is down. An outage that began and ended between the
    /// two looks (a late wake at high speed) is told all the same, as lost and restored.
    fn follow(&mut self, market: &Market, before: i64, now: i64) -> bool {
        let calendar = &market.opts.calendar;
        let outage = calendar.outage_at(now);
        let tell = |status| (market.events)(Event::Connection(status));
        if let (None, None, Some(began)) = (self.down, outage, calendar.next_change(before)) {
            if began <= now {
                if let Some(missed) = calendar.outage_at(began) {
                    tracing::warn!(reason = missed.reason(), "simulated gateway was down");
                    tell(ConnectionStatus::Lost {
                        reason: missed.reason(),
                    });
                    tell(ConnectionStatus::Restored { data_lost: true });
                }
            }
        }
        match (self.down, outage) {
            (None, Some(o)) => {
                tracing::warn!(reason = o.reason(), "simulated gateway down");
                tell(ConnectionStatus::Lost { reason: o.reason() });
                self.down = Some(o);
                self.attempts = 0;
                self.last_attempt = now;
            }
            (Some(_), None) => {
                tracing::info!(
                    "simulated gateway back: market data lost, subscriptions made again"
                );
                tell(ConnectionStatus::Restored { data_lost: true });
                self.down = None;
            }
            (Some(o), Some(_))
                if o.why == Downtime::Relogin && now - self.last_attempt >= ATTEMPT_EVERY =>
            {
                self.attempts += 1;
                self.last_attempt = now;
                if now >= o.until - (o.until - o.from) / CLIENT_ID_HELD_PART {
                    tracing::warn!(
                        attempt = self.attempts,
                        "simulated gateway refused the reconnection: error 326, client id is \
                         already in use (the session before the re-login still holds it)"
                    );
                }
                tell(ConnectionStatus::Reconnecting {
                    attempt: self.attempts,
                });
            }
            _ => {}
        }
        self.down.is_some()
    }
}

/// Brings the broker's book up to the market clock at every fill bar (and at least every
/// second, for orders other processes add to the journal) until the market stops; tells the
/// calendar's outages of the gateway as they begin and end.
pub(super) fn watch_orders(market: &Market) {
    let size = i64::from(market.opts.broker.fill_seconds.max(1));
    let mut gateway = Gateway {
        down: None,
        attempts: 0,
        last_attempt: 0,
    };
    let mut guard = market.watch.lock();
    let mut before = market.clock.now();
    while !market.stop.load(Ordering::Acquire) {
        let now = market.clock.now();
        drop(guard);
        let down = gateway.follow(market, before, now);
        before = now;
        if !down {
            market.poll_and_tell(true);
        }
        guard = market.watch.lock();
        if market.stop.load(Ordering::Acquire) {
            break;
        }
        let mut next = (now.div_euclid(size) + 1) * size;
        if let Some(change) = market.opts.calendar.next_change(now) {
            next = next.min(change);
        }
        let wait = market
            .clock
            .until(next)
            .clamp(Duration::from_millis(1), Duration::from_secs(1));
        market.watch_cv.wait_for(&mut guard, wait);
    }
}
