//! The strategy trait ([`Strategy`]) and the moving-average crossover ([`Crossover`]).
//!
//! Invariants: the crossover never signals from absent, invalid or stale data.

use std::fmt;

use bridge::protocol::Bar;

/// What the strategy says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Buy,
    Sell,
    Hold,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Buy => "buy",
            Signal::Sell => "sell",
            Signal::Hold => "hold",
        })
    }
}

/// A signal and what it was computed from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Start of the bar evaluated, Unix seconds.
    pub time: i64,
    /// Its close.
    pub price: f64,
    pub fast: f64,
    pub slow: f64,
    pub signal: Signal,
}

/// Why there is no signal.
#[derive(Debug, Clone, PartialEq)]
pub enum NoSignal {
    /// Fewer bars than the slow average needs, plus one to see a crossing.
    Insufficient { have: usize, need: usize },
    /// A bar with a price that is not positive and finite ([`Bar::has_valid_prices`]).
    InvalidPrice { time: i64 },
    /// The last bar lags the market by this many bars.
    Stale { behind_bars: i64 },
}

impl fmt::Display for NoSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoSignal::Insufficient { have, need } => {
                write!(f, "insufficient data ({have} of {need} bars)")
            }
            NoSignal::InvalidPrice { time } => write!(f, "invalid price in bar {time}"),
            NoSignal::Stale { behind_bars } => write!(f, "stale ({behind_bars} bars behind)"),
        }
    }
}

/// The crossover of a `fast`- and a `slow`-bar simple moving average of closes.
/// A trading strategy the runner drives: it sees each symbol's most recent bars and says what
/// to do. The runner keeps [`window`](Self::window) bars per symbol and no more, so a run of
/// any length holds a bounded amount of data.
///
/// ```
/// use runner::strategy::{Signal, Strategy};
/// use bridge::protocol::Bar;
///
/// /// Buys after three rising closes, sells after three falling ones.
/// struct Momentum;
///
/// impl Strategy for Momentum {
///     fn window(&self) -> usize {
///         4
///     }
///     fn on_bars(&mut self, _symbol: &str, bars: &[Bar]) -> Signal {
///         let rising = bars.windows(2).filter(|w| w[1].close > w[0].close).count();
///         match (bars.len(), rising) {
///             (4, 3) => Signal::Buy,
///             (4, 0) => Signal::Sell,
///             _ => Signal::Hold,
///         }
///     }
/// }
/// ```
pub trait Strategy {
    /// How many of a symbol's most recent bars the strategy looks at.
    fn window(&self) -> usize;

    /// A symbol's bars changed (its history arrived, or a live bar was added): `bars` are its
    /// most recent ones, oldest first, at most [`window`](Self::window) of them. Returns what
    /// to do; with trading on, a buy or sell becomes an order.
    fn on_bars(&mut self, symbol: &str, bars: &[Bar]) -> Signal;

    /// One of the run's orders executed (in part or in full). By default nothing is done.
    fn on_fill(&mut self, _fill: &bridge::protocol::Fill) {}
}

#[derive(Debug, Clone, Copy)]
pub struct Crossover {
    pub fast: usize,
    pub slow: usize,
}

fn mean(xs: &[Bar]) -> f64 {
    xs.iter().map(|b| b.close).sum::<f64>() / xs.len() as f64
}

impl Strategy for Crossover {
    fn window(&self) -> usize {
        self.slow.saturating_add(1)
    }

    fn on_bars(&mut self, _symbol: &str, bars: &[Bar]) -> Signal {
        self.evaluate(bars).map_or(Signal::Hold, |e| e.signal)
    }
}

impl Crossover {
    /// Evaluates the last bar of `bars` (oldest first).
    pub fn evaluate(&self, bars: &[Bar]) -> Result<Evaluation, NoSignal> {
        if self.fast == 0 || self.fast >= self.slow {
            // Not a crossover (the configuration refuses it; a library user may build one).
            return Err(NoSignal::Insufficient {
                have: bars.len(),
                need: usize::MAX,
            });
        }
        let need = self.slow + 1;
        if bars.len() < need {
            return Err(NoSignal::Insufficient {
                have: bars.len(),
                need,
            });
        }
        let window = &bars[bars.len() - need..];
        if let Some(bad) = window.iter().find(|b| !b.has_valid_prices()) {
            return Err(NoSignal::InvalidPrice { time: bad.time });
        }
        let n = window.len();
        let fast = mean(&window[n - self.fast..]);
        let slow = mean(&window[n - self.slow..]);
        let fast_prev = mean(&window[n - 1 - self.fast..n - 1]);
        let slow_prev = mean(&window[..n - 1]);
        let signal = if fast_prev <= slow_prev && fast > slow {
            Signal::Buy
        } else if fast_prev >= slow_prev && fast < slow {
            Signal::Sell
        } else {
            Signal::Hold
        };
        let last = window[n - 1];
        Ok(Evaluation {
            time: last.time,
            price: last.close,
            fast,
            slow,
            signal,
        })
    }

    /// Like [`evaluate`](Self::evaluate), but refuses a series whose last bar is more than
    /// `stale_after` bars older than `market_time` (the newest bar seen on any symbol).
    pub fn evaluate_fresh(
        &self,
        bars: &[Bar],
        bar_seconds: u32,
        market_time: i64,
        stale_after: u32,
    ) -> Result<Evaluation, NoSignal> {
        if let Some(last) = bars.last() {
            let behind = (market_time - last.time) / i64::from(bar_seconds.max(1));
            if behind > i64::from(stale_after) {
                return Err(NoSignal::Stale {
                    behind_bars: behind,
                });
            }
        }
        self.evaluate(bars)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(closes: &[f64]) -> Vec<Bar> {
        closes
            .iter()
            .enumerate()
            .map(|(i, &c)| Bar {
                time: i as i64 * 60,
                open: c,
                high: c,
                low: c,
                close: c,
                volume: 1.0,
            })
            .collect()
    }

    const X: Crossover = Crossover { fast: 2, slow: 4 };

    #[test]
    fn too_few_bars_give_no_signal() {
        assert_eq!(
            X.evaluate(&bars(&[1.0, 2.0, 3.0, 4.0])),
            Err(NoSignal::Insufficient { have: 4, need: 5 })
        );
        assert_eq!(
            X.evaluate(&[]),
            Err(NoSignal::Insufficient { have: 0, need: 5 })
        );
    }

    #[test]
    fn a_rise_through_the_slow_average_is_a_buy_and_a_fall_a_sell() {
        // Flat, then up: fast crosses above slow on the last bar.
        let e = X.evaluate(&bars(&[10.0, 10.0, 10.0, 10.0, 12.0])).unwrap();
        assert_eq!(e.signal, Signal::Buy);
        assert_eq!(e.price, 12.0);
        assert_eq!(e.fast, 11.0);
        assert_eq!(e.slow, 10.5);
        let e = X.evaluate(&bars(&[10.0, 10.0, 10.0, 10.0, 8.0])).unwrap();
        assert_eq!(e.signal, Signal::Sell);
        let e = X.evaluate(&bars(&[10.0, 12.0, 14.0, 16.0, 18.0])).unwrap();
        assert_eq!(e.signal, Signal::Hold);
    }

    #[test]
    fn a_zero_or_missing_price_is_never_used() {
        assert_eq!(
            X.evaluate(&bars(&[10.0, 10.0, 0.0, 10.0, 12.0])),
            Err(NoSignal::InvalidPrice { time: 120 })
        );
        assert_eq!(
            X.evaluate(&bars(&[10.0, 10.0, f64::NAN, 10.0, 12.0])),
            Err(NoSignal::InvalidPrice { time: 120 })
        );
    }

    #[test]
    fn a_lagging_series_is_stale() {
        let b = bars(&[10.0, 10.0, 10.0, 10.0, 12.0]);
        // Last bar at 240; market at 240 + 4 bars.
        assert_eq!(
            X.evaluate_fresh(&b, 60, 240 + 4 * 60, 3),
            Err(NoSignal::Stale { behind_bars: 4 })
        );
        assert!(X.evaluate_fresh(&b, 60, 240 + 3 * 60, 3).is_ok());
    }
}
