//! Round trips of one minute of a soak, in constant memory: a log-linear histogram, 64 steps
//! per power of two.
//!
//! Invariants: a recorded value falls in the bucket whose lowest value is at most the value
//! and within 1/64 (under 1.6 %) of it; quantiles are read as a bucket's lowest value, so they
//! never overstate; the maximum is kept exactly; memory does not grow with the count.

/// Round trips of one minute.
#[derive(Debug, Clone)]
pub(super) struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; 64 * 64],
            count: 0,
            max_ns: 0,
        }
    }
}

impl Histogram {
    fn bucket(ns: u64) -> usize {
        if ns < 64 {
            return ns as usize;
        }
        let p = 63 - u64::from(ns.leading_zeros()); // floor(log2), at least 6
        ((p - 5) * 64 + ((ns >> (p - 6)) & 63)) as usize
    }

    /// The lowest value of a bucket.
    fn value(bucket: usize) -> u64 {
        let (p, sub) = ((bucket / 64) as u64, (bucket % 64) as u64);
        if p == 0 {
            sub
        } else {
            (64 + sub) << (p - 1)
        }
    }

    /// Adds one round trip of `ns` nanoseconds.
    pub(super) fn record(&mut self, ns: u64) {
        let i = Self::bucket(ns).min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.count += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    /// Round trips recorded.
    pub(super) fn count(&self) -> u64 {
        self.count
    }

    /// The longest round trip, µs.
    pub(super) fn max_us(&self) -> f64 {
        self.max_ns as f64 / 1000.0
    }

    /// The round trip at quantile `q`, µs.
    pub(super) fn quantile_us(&self, q: f64) -> f64 {
        let rank = (self.count as f64 * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::value(i) as f64 / 1000.0;
            }
        }
        self.max_ns as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_two_percent() {
        let mut m = Histogram::default();
        for ns in 1..=100_000u64 {
            m.record(ns * 10);
        }
        let p50 = m.quantile_us(0.5);
        let p99 = m.quantile_us(0.99);
        assert!((p50 - 500.0).abs() / 500.0 < 0.02, "{p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.02, "{p99}");
        assert_eq!(m.max_ns, 1_000_000);
        for ns in [0u64, 1, 63, 64, 65, 1000, 1 << 40] {
            assert!(Histogram::value(Histogram::bucket(ns)) <= ns, "{ns}");
        }
    }
}
