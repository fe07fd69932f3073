//! The simulated market's prices: a deterministic price path per symbol ([`PricePath`]) and
//! the bars cut from it.
//!
//! The log-price of a symbol at second `t` is a sum of smooth value-noise octaves with periods
//! from one minute to about two years, each with an amplitude growing with the square root of
//! its period (as a random walk's range does).
//!
//! Invariants: a price is a pure function of (seed, symbol, t), always finite and positive, so
//! any range and any bar size agree with each other, and the same seed gives the same market;
//! a bar's close is the next bar's open.

use base::random::mix;
use bridge::protocol::Bar;

const OCTAVES: u32 = 12;

/// Uniform in [-1, 1).
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

fn symbol_seed(seed: u64, symbol: &str) -> u64 {
    symbol.bytes().fold(mix(seed), |h, b| mix(h ^ u64::from(b)))
}

/// Deterministic prices of one symbol.
#[derive(Debug, Clone, Copy)]
pub struct PricePath {
    seed: u64,
    base: f64,
}

impl PricePath {
    pub fn new(seed: u64, symbol: &str) -> Self {
        let s = symbol_seed(seed, symbol);
        // Base price between 20 and 500.
        let base = 20.0 + (unit(mix(s)) + 1.0) * 240.0;
        PricePath { seed: s, base }
    }

    /// Price at Unix second `t`; always finite and positive.
    pub fn price(&self, t: i64) -> f64 {
        let mut log = 0.0;
        let mut period = 60.0f64;
        for k in 0..OCTAVES {
            let x = t as f64 / period;
            let i = x.floor();
            let f = x - i;
            let key = self.seed ^ u64::from(k).wrapping_mul(0xA24B_AED4_963E_E407);
            let a = unit(mix(key ^ (i as i64 as u64)));
            let b = unit(mix(key ^ ((i as i64 + 1) as u64)));
            let s = f * f * (3.0 - 2.0 * f);
            log += (a + (b - a) * s) * (0.0003 * period.sqrt()).min(0.12);
            period *= 3.0;
        }
        self.base * log.exp()
    }

    /// The bar starting at `start` lasting `seconds`.
    pub fn bar(&self, start: i64, seconds: u32) -> Bar {
        let seconds = i64::from(seconds.max(1));
        let open = self.price(start);
        let close = self.price(start + seconds);
        let (mut high, mut low) = (open.max(close), open.min(close));
        for q in 1..4 {
            let p = self.price(start + seconds * q / 4);
            high = high.max(p);
            low = low.min(p);
        }
        let vol = 100.0 + (mix(self.seed ^ start as u64) % 10_000) as f64;
        Bar {
            time: start,
            open,
            high,
            low,
            close,
            volume: (vol * seconds as f64 / 60.0).round().max(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_deterministic_positive_and_differ_between_symbols() {
        let a = PricePath::new(42, "SPY");
        let b = PricePath::new(42, "SPY");
        let c = PricePath::new(42, "QQQ");
        let d = PricePath::new(43, "SPY");
        for t in (1_700_000_000..1_700_086_400).step_by(97) {
            assert_eq!(a.price(t), b.price(t));
            assert!(a.price(t) > 0.0 && a.price(t).is_finite());
        }
        assert_ne!(a.price(1_700_000_000), c.price(1_700_000_000));
        assert_ne!(a.price(1_700_000_000), d.price(1_700_000_000));
    }

    #[test]
    fn bars_are_consistent() {
        let p = PricePath::new(1, "AAPL");
        for i in 0..500 {
            let bar = p.bar(1_700_000_000 + i * 60, 60);
            assert!(bar.low <= bar.open.min(bar.close));
            assert!(bar.high >= bar.open.max(bar.close));
            assert!(bar.low > 0.0 && bar.volume >= 1.0);
            let next = p.bar(1_700_000_000 + (i + 1) * 60, 60);
            assert_eq!(bar.close, next.open);
        }
    }

    #[test]
    fn prices_move_enough_for_a_strategy() {
        let p = PricePath::new(42, "NVDA");
        let prices: Vec<f64> = (0..1440).map(|i| p.price(1_700_000_000 + i * 60)).collect();
        let max = prices.iter().cloned().fold(f64::MIN, f64::max);
        let min = prices.iter().cloned().fold(f64::MAX, f64::min);
        assert!(max / min > 1.005, "a day moves: {min}..{max}");
        assert!(max / min < 2.0, "but not absurdly: {min}..{max}");
    }
}
