//! Live bars of N seconds built from Interactive Brokers' 5-second real-time bars.
//!
//! IB streams one bar every 5 seconds; the runner asks for bars of any multiple of 5 s. A
//! [`BarBuilder`] is the pure state machine between the two: it takes the 5-second bars of
//! one symbol in the order they arrive and hands back each N-second bar once its last
//! 5-second bar is in.
//!
//! Invariants:
//! - A built bar starts at a multiple of its size in Unix seconds (`time.div_euclid(size) *
//!   size`), like IB's and the simulated market's bars.
//! - A bar is sent only if it was followed from its first 5-second bar: a bar joined midway
//!   (the first one after subscribing, or the one after a gap that crosses a bar boundary)
//!   is never sent.
//! - A bar is sent only if every one of its 5-second bars came, once and in order: a bar in
//!   progress that the stream moves past before its last 5-second bar (a gap at its end), or
//!   with a 5-second bar missing from its middle (a gap while the gateway lost its data
//!   connection) or repeated (sent again after a resubscription), is abandoned, never sent,
//!   and reported as such. A bar that spans a gap is never passed off as complete.
//! - Open is the first 5-second open, close the last close, high and low the extremes, volume
//!   the sum.
//! - Prices are not checked here: the caller drops 5-second bars without valid prices first.

use bridge::protocol::Bar;

/// Seconds of one IB real-time bar.
pub(crate) const FIVE_SECONDS: i64 = 5;

/// What one 5-second bar brought.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Pushed {
    /// The bar it completed, if that bar was followed from its start.
    pub(crate) complete: Option<Bar>,
    /// Whether a bar was abandoned: the bar in progress, because this 5-second bar belongs to
    /// a later one, or the bar this 5-second bar ended, because a 5-second bar of it was
    /// missing or repeated.
    pub(crate) abandoned: bool,
}

/// The bar being built: whether it was joined at its first 5-second bar, whether every
/// 5-second bar of it so far came once and in order, and the start of the one expected next.
#[derive(Debug, Clone, Copy)]
struct InProgress {
    bar: Bar,
    from_start: bool,
    whole: bool,
    next: i64,
}

/// Builds `size`-second bars out of 5-second bars, for one symbol.
#[derive(Debug, Clone)]
pub(crate) struct BarBuilder {
    size: i64,
    building: Option<InProgress>,
    /// Start of the last 5-second bar taken: one at or before it is a repeat.
    last: Option<i64>,
}

impl BarBuilder {
    /// A builder of bars of `size` seconds (a multiple of 5; the backend refuses others).
    pub(crate) fn new(size: i64) -> Self {
        BarBuilder {
            size: size.max(1),
            building: None,
            last: None,
        }
    }

    /// Adds the 5-second bar starting at `five.time`.
    pub(crate) fn push(&mut self, five: &Bar) -> Pushed {
        let t = five.time;
        if self.last.is_some_and(|last| t <= last) {
            // A repeat (or a bar from the past): not counted twice. The bar it belongs to, if
            // still in progress, is not whole any more.
            if let Some(b) = self.building.as_mut() {
                b.whole = false;
            }
            return Pushed {
                complete: None,
                abandoned: false,
            };
        }
        self.last = Some(t);
        let start = t.div_euclid(self.size) * self.size;
        let mut abandoned = self.building.take_if(|b| b.bar.time != start).is_some();
        let current = self.building.get_or_insert(InProgress {
            bar: Bar {
                time: start,
                volume: 0.0,
                ..*five
            },
            from_start: t == start,
            whole: true,
            next: start,
        });
        if t != current.next {
            // Joined midway, a 5-second bar missing, or one repeated.
            current.whole = false;
        }
        current.next = t + FIVE_SECONDS;
        let bar = &mut current.bar;
        bar.high = bar.high.max(five.high);
        bar.low = bar.low.min(five.low);
        bar.close = five.close;
        bar.volume += five.volume;
        let mut complete = None;
        if t + FIVE_SECONDS >= start + self.size {
            match self.building.take() {
                Some(InProgress {
                    bar, whole: true, ..
                }) => complete = Some(bar),
                // A hole or a repeat: not a bar to pass on. (A bar joined midway, the first
                // after subscribing, is expected and not reported.)
                Some(InProgress { from_start, .. }) => abandoned |= from_start,
                None => {}
            }
        }
        Pushed {
            complete,
            abandoned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 5-second bar at `time` whose prices say where it is: open `o`, close `o + 0.5`,
    /// high `o + 1`, low `o - 1`, volume `v`.
    fn five(time: i64, o: f64, v: f64) -> Bar {
        Bar {
            time,
            open: o,
            high: o + 1.0,
            low: o - 1.0,
            close: o + 0.5,
            volume: v,
        }
    }

    /// Pushes every bar; returns the completed bars and how many were abandoned.
    fn feed(b: &mut BarBuilder, bars: &[Bar]) -> (Vec<Bar>, usize) {
        let mut out = Vec::new();
        let mut abandoned = 0;
        for bar in bars {
            let p = b.push(bar);
            out.extend(p.complete);
            abandoned += usize::from(p.abandoned);
        }
        (out, abandoned)
    }

    /// Twelve 5-second bars from `from`, with opens 10, 11, ... and volume 1 each.
    fn minute_of(from: i64) -> Vec<Bar> {
        (0..12)
            .map(|i| five(from + i * 5, 10.0 + i as f64, 1.0))
            .collect()
    }

    const T0: i64 = 1_700_000_040; // a multiple of 60 (and of 5)

    #[test]
    fn a_whole_minute_is_one_bar_sent_with_its_last_five_seconds() {
        assert_eq!(T0 % 60, 0);
        let mut b = BarBuilder::new(60);
        let bars = minute_of(T0);
        for bar in &bars[..11] {
            assert_eq!(
                b.push(bar),
                Pushed {
                    complete: None,
                    abandoned: false
                }
            );
        }
        let last = b.push(&bars[11]);
        assert!(!last.abandoned);
        assert_eq!(
            last.complete,
            Some(Bar {
                time: T0,
                open: 10.0,
                high: 22.0,
                low: 9.0,
                close: 21.5,
                volume: 12.0,
            })
        );
    }

    #[test]
    fn high_low_close_and_volume_aggregate_over_the_bar() {
        let mut b = BarBuilder::new(15);
        let bars = [
            Bar {
                time: 0,
                open: 5.0,
                high: 6.0,
                low: 4.0,
                close: 5.5,
                volume: 100.0,
            },
            Bar {
                time: 5,
                open: 5.5,
                high: 9.0,
                low: 5.0,
                close: 8.0,
                volume: 250.0,
            },
            Bar {
                time: 10,
                open: 8.0,
                high: 8.5,
                low: 2.0,
                close: 3.0,
                volume: 0.5,
            },
        ];
        let (out, abandoned) = feed(&mut b, &bars);
        assert_eq!(abandoned, 0);
        assert_eq!(
            out,
            vec![Bar {
                time: 0,
                open: 5.0,
                high: 9.0,
                low: 2.0,
                close: 3.0,
                volume: 350.5,
            }]
        );
    }

    #[test]
    fn bars_are_aligned_to_multiples_of_their_size() {
        // 30-second bars from a stream that starts on a 30-second boundary.
        let mut b = BarBuilder::new(30);
        let start = 1_700_000_010; // a multiple of 30
        assert_eq!(start % 30, 0);
        let stream: Vec<Bar> = (0..18).map(|i| five(start + i * 5, 1.0, 1.0)).collect();
        let (out, _) = feed(&mut b, &stream);
        let times: Vec<i64> = out.iter().map(|b| b.time).collect();
        assert_eq!(times, vec![start, start + 30, start + 60]);
        // Negative times align downwards too.
        let mut b = BarBuilder::new(10);
        let (out, _) = feed(&mut b, &[five(-10, 1.0, 1.0), five(-5, 1.0, 1.0)]);
        assert_eq!(out.iter().map(|b| b.time).collect::<Vec<_>>(), vec![-10]);
    }

    #[test]
    fn the_first_bar_joined_midway_is_not_sent_the_next_one_is() {
        let mut b = BarBuilder::new(60);
        // Subscribed 20 s into a minute: 8 five-second bars of it, then a whole minute.
        let mut stream: Vec<Bar> = minute_of(T0)[4..].to_vec();
        stream.extend(minute_of(T0 + 60));
        let (out, abandoned) = feed(&mut b, &stream);
        assert_eq!(abandoned, 0, "the partial minute ran to its end");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].time, T0 + 60);
        assert_eq!(out[0].open, 10.0);
        assert_eq!(out[0].volume, 12.0);
    }

    #[test]
    fn a_stream_joined_on_the_last_five_seconds_sends_nothing_for_that_bar() {
        let mut b = BarBuilder::new(60);
        let p = b.push(&five(T0 + 55, 1.0, 1.0));
        assert_eq!(
            p,
            Pushed {
                complete: None,
                abandoned: false
            }
        );
        // The next minute starts afresh.
        let (out, _) = feed(&mut b, &minute_of(T0 + 60));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].time, T0 + 60);
    }

    #[test]
    fn a_gap_across_a_bar_boundary_abandons_the_bar_in_progress_and_the_one_joined_midway() {
        let mut b = BarBuilder::new(60);
        let first = minute_of(T0);
        let second = minute_of(T0 + 60);
        let third = minute_of(T0 + 120);
        // The first minute loses its last 10 s, the second its first 10 s.
        let mut stream: Vec<Bar> = first[..10].to_vec();
        stream.extend_from_slice(&second[2..]);
        stream.extend_from_slice(&third);
        let mut abandoned_at = Vec::new();
        let mut out = Vec::new();
        for bar in &stream {
            let p = b.push(bar);
            if p.abandoned {
                abandoned_at.push(bar.time);
            }
            out.extend(p.complete);
        }
        assert_eq!(
            abandoned_at,
            vec![T0 + 70],
            "the first minute, when the stream resumed"
        );
        assert_eq!(
            out.iter().map(|b| b.time).collect::<Vec<_>>(),
            vec![T0 + 120]
        );
    }

    /// Feeds `stream` to a builder of one-minute bars: the first minute, with a gap, is
    /// abandoned; the second, whole, is sent.
    fn first_minute_abandoned_second_sent(stream: &[Bar]) {
        let mut b = BarBuilder::new(60);
        let (out, abandoned) = feed(&mut b, stream);
        assert_eq!(abandoned, 1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].time, T0 + 60);
    }

    #[test]
    fn a_gap_at_the_end_of_a_bar_abandons_it_even_if_the_next_bar_is_whole() {
        let mut stream: Vec<Bar> = minute_of(T0)[..11].to_vec();
        stream.extend(minute_of(T0 + 60));
        first_minute_abandoned_second_sent(&stream);
    }

    #[test]
    fn a_gap_inside_a_bar_abandons_it_and_the_next_whole_bar_is_sent() {
        let mut stream = minute_of(T0);
        // The 5-second bar at +25 s never came (the gateway's data connection was down).
        stream.remove(5);
        stream.extend(minute_of(T0 + 60));
        first_minute_abandoned_second_sent(&stream);
    }

    #[test]
    fn a_gap_of_whole_bars_sends_the_bars_on_either_side() {
        let mut b = BarBuilder::new(60);
        let mut stream = minute_of(T0);
        stream.extend(minute_of(T0 + 600));
        let (out, abandoned) = feed(&mut b, &stream);
        assert_eq!(abandoned, 0);
        assert_eq!(
            out.iter().map(|b| b.time).collect::<Vec<_>>(),
            vec![T0, T0 + 600]
        );
    }

    #[test]
    fn five_second_bars_pass_through_as_they_are() {
        let mut b = BarBuilder::new(5);
        let stream: Vec<Bar> = (0..4)
            .map(|i| five(T0 + i * 5, 3.0 + i as f64, 2.0))
            .collect();
        let (out, abandoned) = feed(&mut b, &stream);
        assert_eq!(abandoned, 0);
        assert_eq!(out, stream);
    }

    #[test]
    fn every_multiple_of_five_seconds_builds_whole_bars() {
        for size in [5i64, 10, 15, 20, 30, 45, 60, 120, 300] {
            let mut b = BarBuilder::new(size);
            // Three bars' worth, starting on a boundary of this size.
            let start = (T0 / size + 1) * size;
            let n = 3 * size / 5;
            let stream: Vec<Bar> = (0..n).map(|i| five(start + i * 5, 7.0, 1.0)).collect();
            let (out, abandoned) = feed(&mut b, &stream);
            assert_eq!(abandoned, 0, "size {size}");
            assert_eq!(
                out.iter().map(|b| b.time).collect::<Vec<_>>(),
                vec![start, start + size, start + 2 * size],
                "size {size}"
            );
            assert!(
                out.iter().all(|b| b.volume == (size / 5) as f64),
                "size {size}: {out:?}"
            );
        }
    }

    #[test]
    fn a_repeated_five_second_bar_abandons_its_bar() {
        // After a resubscription IB may send the current 5-second bar again: the bar would
        // count it twice, so it is not sent.
        let mut b = BarBuilder::new(10);
        let (out, abandoned) = feed(
            &mut b,
            &[
                five(0, 1.0, 1.0),
                five(0, 1.0, 1.0),
                five(5, 2.0, 1.0),
                five(10, 3.0, 1.0),
                five(15, 4.0, 1.0),
            ],
        );
        assert_eq!(abandoned, 1);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].time, out[0].volume), (10, 2.0));
    }

    #[test]
    fn a_repeated_five_second_bar_is_not_sent_twice_as_a_five_second_bar() {
        let mut b = BarBuilder::new(5);
        let (out, abandoned) = feed(
            &mut b,
            &[five(0, 1.0, 1.0), five(0, 1.0, 1.0), five(5, 2.0, 1.0)],
        );
        assert_eq!(abandoned, 0);
        assert_eq!(out.iter().map(|b| b.time).collect::<Vec<_>>(), vec![0, 5]);
    }
}
