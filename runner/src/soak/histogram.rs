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

/// One minute's round trips as the report gives them: (count, p50 µs, p99 µs, max µs).
pub(super) type MinuteRow = (usize, f64, f64, f64);

/// Round trips minute by minute, in memory that grows by one row per minute: only the
/// current minute is a histogram; a minute over is kept as its row.
#[derive(Debug, Default)]
pub(super) struct Minutes {
    rows: Vec<MinuteRow>,
    current: Option<(usize, Histogram)>,
}

impl Histogram {
    fn row(&self) -> MinuteRow {
        (
            self.count as usize,
            self.quantile_us(0.5),
            self.quantile_us(0.99),
            self.max_us(),
        )
    }

    fn clear(&mut self) {
        self.buckets.fill(0);
        self.count = 0;
        self.max_ns = 0;
    }
}

impl Minutes {
    /// Adds a round trip of `ns` nanoseconds to minute `minute` (never an earlier one than
    /// the last given; an earlier one counts in the current minute).
    pub(super) fn record(&mut self, minute: usize, ns: u64) {
        let (at, histogram) = self
            .current
            .get_or_insert_with(|| (0, Histogram::default()));
        if minute > *at {
            self.rows.push(histogram.row());
            // Minutes with no round trip at all: empty rows.
            self.rows
                .extend(std::iter::repeat_n((0, 0.0, 0.0, 0.0), minute - *at - 1));
            histogram.clear();
            *at = minute;
        }
        histogram.record(ns);
    }

    /// Every minute's row, from the soak's first minute to the last with a round trip.
    pub(super) fn rows(mut self) -> Vec<MinuteRow> {
        if let Some((_, histogram)) = self.current.take() {
            self.rows.push(histogram.row());
        }
        self.rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_over_are_rows_and_a_silent_minute_is_an_empty_one() {
        let mut m = Minutes::default();
        for ns in [1_000, 2_000, 3_000] {
            m.record(0, ns);
        }
        m.record(2, 5_000);
        m.record(2, 7_000);
        let rows = m.rows();
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[0].0, rows[0].3), (3, 3.0));
        assert_eq!(rows[1], (0, 0.0, 0.0, 0.0));
        assert_eq!((rows[2].0, rows[2].3), (2, 7.0));
        assert!((rows[2].1 - 5.0).abs() < 5.0 / 64.0, "{rows:?}");
        assert!(Minutes::default().rows().is_empty());
    }

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
