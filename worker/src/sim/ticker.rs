//! The simulated market's real-time bars: the ticker thread's loop ([`tick`]).
//!
//! Invariants: each subscription's bars are sent in time order, each once, and only when
//! complete on the market clock, those of one time in the order of their subscriptions' ids;
//! a replayed recording's symbol is told ended
//! ([`FeedState::Ended`]) once, after its last bar; a bar outside the calendar's sessions, or in a span the
//! gateway is down (its restart), is never sent; no lock is held while an event is handed
//! over; the loop ends once the market stops (it wakes at least every 200 ms to look).

use std::sync::atomic::Ordering;
use std::time::Duration;

use bridge::protocol::{Event, FeedState};

use super::market::Market;

/// Emits due real-time bars until stopped.
pub(super) fn tick(market: &Market) {
    let mut subs = market.subscriptions.lock();
    while !market.stop.load(Ordering::Acquire) {
        let now = market.clock.now();
        let mut due = Vec::new();
        let mut next_due = None::<i64>;
        for (symbol, sub) in subs.iter_mut() {
            let size = i64::from(sub.bar_seconds);
            let calendar = &market.opts.calendar;
            while sub.next + size <= now {
                let closed = !calendar.in_session(sub.next);
                let down = calendar.outage_at(sub.next).is_some()
                    || calendar.outage_at(sub.next + size - 1).is_some();
                if !closed && !down {
                    if let Some(bar) = market.prices.bar(symbol, sub.next, sub.bar_seconds) {
                        due.push(Event::Bar { sub: sub.id, bar });
                    }
                }
                sub.next += size;
            }
            // A replayed recording's bars of it are over: said once.
            let over = market
                .prices
                .last_end(symbol)
                .is_some_and(|end| sub.next >= end);
            if over && !sub.ended {
                sub.ended = true;
                due.push(Event::Feed {
                    symbol: symbol.clone(),
                    state: FeedState::Ended,
                });
            }
            let d = sub.next + size;
            next_due = Some(next_due.map_or(d, |n| n.min(d)));
        }
        if !due.is_empty() {
            // Bars of one time go in the order of their subscriptions' ids (the runner's
            // symbols' order), whatever order the subscriptions are kept in; a feed's end
            // after its bars.
            due.sort_by_key(|e| match e {
                Event::Bar { sub, bar } => (bar.time, *sub),
                _ => (i64::MAX, 0),
            });
            drop(subs);
            for mut e in due {
                if let (true, Event::Bar { bar, .. }) = (market.opts.stamp_bars, &mut e) {
                    bar.volume = bridge::platform::monotonic_ns() as f64;
                }
                (market.events)(e);
            }
            subs = market.subscriptions.lock();
            continue;
        }
        let wait = next_due
            .map(|t| market.clock.until(t))
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_millis(1), Duration::from_millis(200));
        market.subscriptions_cv.wait_for(&mut subs, wait);
    }
}
