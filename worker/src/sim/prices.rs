//! Where the simulated market's prices come from ([`Prices`]): its own deterministic price
//! paths, or a recorded run's bars, replayed.
//!
//! Invariants: with paths every bar of any size exists; with a recording only the recorded
//! bars do, of the recorded size, and a price between them is read off them (a bar's open at
//! its start, moving to its close at its end, the last close after it), so the broker fills
//! against the recorded prices; a symbol the recording lacks has no bars and no price.

use std::sync::Arc;

use bridge::protocol::{Bar, ErrorKind, RemoteError};

use super::price_path::PricePath;
use crate::backend::error;
use crate::recording::Recording;

/// The market's prices.
#[derive(Debug, Clone)]
pub enum Prices {
    /// The price paths of this seed.
    Paths { seed: u64 },
    /// A recording's bars.
    Recorded(Arc<Recording>),
}

impl Prices {
    /// Whether `symbol` has prices at all (with a recording: whether it was recorded), and if
    /// not, why.
    pub fn check(&self, symbol: &str) -> Result<(), RemoteError> {
        match self {
            Prices::Paths { .. } => Ok(()),
            Prices::Recorded(r) if r.bars(symbol).is_some() => Ok(()),
            Prices::Recorded(r) => Err(error(
                ErrorKind::NoData,
                format!("{symbol} is not in the recording {}", r.file.display()),
            )),
        }
    }

    /// Whether bars of `seconds` exist (with a recording: only of its bars' size).
    pub fn check_size(&self, seconds: u32) -> Result<(), RemoteError> {
        match self {
            Prices::Recorded(r) if r.bar_seconds != seconds => Err(error(
                ErrorKind::BadRequest,
                format!(
                    "the recording {} holds bars of {} s, not {seconds} s",
                    r.file.display(),
                    r.bar_seconds
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The bar of `symbol` starting at `start` and lasting `seconds`, if there is one.
    pub fn bar(&self, symbol: &str, start: i64, seconds: u32) -> Option<Bar> {
        match self {
            Prices::Paths { seed } => Some(PricePath::new(*seed, symbol).bar(start, seconds)),
            Prices::Recorded(r) if r.bar_seconds == seconds => {
                let bars = r.bars(symbol)?;
                let i = bars.binary_search_by_key(&start, |b| b.time).ok()?;
                bars.get(i).copied()
            }
            Prices::Recorded(_) => None,
        }
    }

    /// The bars of `symbol` of `seconds` starting in `from..to`, in time order.
    pub fn bars(&self, symbol: &str, from: i64, to: i64, seconds: u32) -> Vec<Bar> {
        match self {
            Prices::Paths { seed } => {
                let path = PricePath::new(*seed, symbol);
                let size = i64::from(seconds.max(1));
                let n = (to - from).max(0) / size;
                (0..n).map(|i| path.bar(from + i * size, seconds)).collect()
            }
            Prices::Recorded(r) if r.bar_seconds == seconds => {
                let bars = r.bars(symbol).unwrap_or_default();
                let lo = bars.partition_point(|b| b.time < from);
                let hi = bars.partition_point(|b| b.time < to);
                bars[lo..hi.max(lo)].to_vec()
            }
            Prices::Recorded(_) => Vec::new(),
        }
    }

    /// The price of `symbol` at Unix second `t`, if it has one.
    pub fn price(&self, symbol: &str, t: i64) -> Option<f64> {
        match self {
            Prices::Paths { seed } => Some(PricePath::new(*seed, symbol).price(t)),
            Prices::Recorded(r) => {
                let bars = r.bars(symbol)?;
                let size = i64::from(r.bar_seconds);
                // The last bar starting at or before `t`.
                let i = bars.partition_point(|b| b.time <= t);
                let Some(bar) = i.checked_sub(1).and_then(|i| bars.get(i)) else {
                    return bars.first().map(|b| b.open);
                };
                let into = t - bar.time;
                if into >= size {
                    return Some(bar.close);
                }
                let f = into as f64 / size as f64;
                Some(bar.open + (bar.close - bar.open) * f)
            }
        }
    }

    /// The end of `symbol`'s last recorded bar: no bar comes after it (`None` with paths; the
    /// earliest time for a recorded symbol without bars).
    pub fn last_end(&self, symbol: &str) -> Option<i64> {
        match self {
            Prices::Paths { .. } => None,
            Prices::Recorded(r) => {
                let size = i64::from(r.bar_seconds);
                Some(r.bars(symbol)?.last().map_or(i64::MIN, |b| b.time + size))
            }
        }
    }

    /// When a history of `symbol` that ends now ends, while a replay's clock is held: where
    /// the recorded run's history of it ended (histories asked at once may end a bar apart),
    /// so that each symbol's history is the recorded one. `None`: now.
    pub fn recorded_history_end(&self, symbol: &str) -> Option<i64> {
        match self {
            Prices::Paths { .. } => None,
            Prices::Recorded(r) => r.history_end(symbol),
        }
    }
}
