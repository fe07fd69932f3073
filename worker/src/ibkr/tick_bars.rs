//! Live bars built from last-trade ticks (IB's level-1 feed, live or delayed), for a symbol
//! whose 5-second real-time bars the gateway refused and whose delayed feed the worker fell
//! back to. A [`TickBars`] is the pure state machine: it takes trade prices and sizes with
//! the time they arrived and hands back each bar once the clock has passed its end.
//!
//! Invariants:
//! - A bar covers `[start, start + size)` of the worker's clock, with `start` a multiple of
//!   `size` in Unix seconds, like every other bar; the ticks carry no time of their own, so a
//!   delayed bar is timed when its (15 to 20 minutes old) trades arrived.
//! - The bar the feed was joined in is never sent (joined midway); a bar without a trade
//!   price is never sent (no trade, no bar: never a bar of zeros).
//! - A price that is not finite and positive (IB sends -1 for "none") is ignored; so is a
//!   size that is not finite and positive.
//! - Bars go out in time order, each once: a clock that steps back never sends a bar at or
//!   before one already sent.
//! - Open is the first price, close the last, high and low the extremes, volume the sum of
//!   the trade sizes that arrived in the bar's window.

use bridge::protocol::Bar;

/// The bar whose window is open.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    prices: Option<Bar>,
    volume: f64,
}

/// Builds `size`-second bars out of trade ticks, for one symbol.
#[derive(Debug, Clone)]
pub(crate) struct TickBars {
    size: i64,
    /// Start of the window the feed was joined in.
    joined: i64,
    window: Option<Window>,
    /// Start of the last bar sent.
    sent: Option<i64>,
}

impl TickBars {
    /// A builder of `size`-second bars for a feed joined at `now` (Unix seconds).
    pub(crate) fn new(size: i64, now: i64) -> Self {
        let size = size.max(1);
        TickBars {
            size,
            joined: now.div_euclid(size) * size,
            window: None,
            sent: None,
        }
    }

    /// Closes the open window if `now` is past its end: its bar, if it is to be sent.
    pub(crate) fn tick(&mut self, now: i64) -> Option<Bar> {
        let end = self.window.as_ref()?.start.saturating_add(self.size);
        if now < end {
            return None;
        }
        let w = self.window.take()?;
        if w.start <= self.joined || self.sent.is_some_and(|sent| w.start <= sent) {
            return None;
        }
        let mut bar = w.prices?;
        bar.volume = w.volume;
        self.sent = Some(bar.time);
        Some(bar)
    }

    /// A trade at `price` arrived at `now`; returns the bar it closed, if any.
    pub(crate) fn price(&mut self, now: i64, price: f64) -> Option<Bar> {
        let done = self.tick(now);
        if price.is_finite() && price > 0.0 {
            let w = self.window_at(now);
            match &mut w.prices {
                Some(b) => {
                    b.high = b.high.max(price);
                    b.low = b.low.min(price);
                    b.close = price;
                }
                None => {
                    w.prices = Some(Bar {
                        time: w.start,
                        open: price,
                        high: price,
                        low: price,
                        close: price,
                        volume: 0.0,
                    })
                }
            }
        }
        done
    }

    /// A trade of `size` arrived at `now`; returns the bar it closed, if any.
    pub(crate) fn size(&mut self, now: i64, size: f64) -> Option<Bar> {
        let done = self.tick(now);
        if size.is_finite() && size > 0.0 {
            self.window_at(now).volume += size;
        }
        done
    }

    /// The window of `now`, opened if need be (a clock that went back starts it again).
    fn window_at(&mut self, now: i64) -> &mut Window {
        let start = now.div_euclid(self.size) * self.size;
        let w = self.window.get_or_insert(Window {
            start,
            prices: None,
            volume: 0.0,
        });
        if w.start != start {
            *w = Window {
                start,
                prices: None,
                volume: 0.0,
            };
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(time: i64, o: f64, h: f64, l: f64, c: f64, volume: f64) -> Bar {
        Bar {
            time,
            open: o,
            high: h,
            low: l,
            close: c,
            volume,
        }
    }

    #[test]
    fn the_window_joined_midway_is_never_sent() {
        let mut b = TickBars::new(5, 102);
        assert_eq!(b.price(102, 10.0), None);
        assert_eq!(b.size(103, 100.0), None);
        // 105 closes the joined window [100, 105): not sent.
        assert_eq!(b.price(105, 11.0), None);
        assert_eq!(b.tick(109), None);
        assert_eq!(b.tick(110), Some(bar(105, 11.0, 11.0, 11.0, 11.0, 0.0)));
    }

    #[test]
    fn a_bar_has_first_last_extremes_and_the_sum_of_sizes() {
        let mut b = TickBars::new(60, 59);
        for (t, p, s) in [
            (60, 10.0, 100.0),
            (70, 12.0, 200.0),
            (80, 9.0, 50.0),
            (119, 11.0, 1.0),
        ] {
            assert_eq!(b.price(t, p), None);
            assert_eq!(b.size(t, s), None);
        }
        assert_eq!(
            b.price(120, 11.5),
            Some(bar(60, 10.0, 12.0, 9.0, 11.0, 351.0))
        );
    }

    #[test]
    fn no_trade_no_bar_and_hostile_values_are_ignored() {
        let mut b = TickBars::new(5, 0);
        assert_eq!(b.price(5, -1.0), None);
        assert_eq!(b.price(6, f64::NAN), None);
        assert_eq!(b.size(7, 100.0), None);
        // Only a size came in [5, 10): no bar.
        assert_eq!(b.tick(10), None);
        assert_eq!(b.price(11, f64::INFINITY), None);
        assert_eq!(b.price(12, 0.0), None);
        assert_eq!(b.size(12, f64::NAN), None);
        assert_eq!(b.price(13, 7.0), None);
        assert_eq!(b.tick(15), Some(bar(10, 7.0, 7.0, 7.0, 7.0, 0.0)));
        // Nothing open any more: ticking again sends nothing twice.
        assert_eq!(b.tick(30), None);
    }

    #[test]
    fn a_gap_of_several_windows_sends_the_bar_before_it_once() {
        let mut b = TickBars::new(5, 0);
        assert_eq!(b.price(5, 1.0), None);
        // The next trade comes 20 s later: the bar of [5, 10) goes, the silent windows make
        // nothing.
        assert_eq!(b.price(27, 2.0), Some(bar(5, 1.0, 1.0, 1.0, 1.0, 0.0)));
        assert_eq!(b.tick(30), Some(bar(25, 2.0, 2.0, 2.0, 2.0, 0.0)));
    }

    #[test]
    fn a_clock_that_goes_back_never_sends_a_bar_twice_or_out_of_order() {
        let mut b = TickBars::new(5, 0);
        assert_eq!(b.price(12, 3.0), None);
        assert_eq!(b.tick(15), Some(bar(10, 3.0, 3.0, 3.0, 3.0, 0.0)));
        // Back to windows already sent or before them: nothing of them goes out.
        assert_eq!(b.price(11, 4.0), None);
        assert_eq!(b.tick(15), None);
        assert_eq!(b.price(7, 4.0), None);
        assert_eq!(b.tick(10), None);
        // Before the feed was joined: nothing either.
        let mut b = TickBars::new(5, 20);
        assert_eq!(b.price(12, 3.0), None);
        assert_eq!(b.tick(15), None);
        assert_eq!(b.price(26, 5.0), None);
        assert_eq!(b.tick(30), Some(bar(25, 5.0, 5.0, 5.0, 5.0, 0.0)));
    }
}
