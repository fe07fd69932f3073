//! The signals file: one CSV row per evaluated bar,
//! `time,symbol,price,fast_sma,slow_sma,signal,order`, time as `YYYY-MM-DDTHH:MM:SSZ`;
//! `order` is the reference of the order the signal placed (with `--trade`), else empty.
//!
//! Invariants: the header is written first, whatever follows; prices have four decimals; a
//! row is only ever written from an [`Evaluation`], so it never carries a missing or zero
//! price; [`Signals::flush`] flushes and says how many rows were written.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};

use crate::strategy::Evaluation;

/// The CSV header line.
pub const HEADER: &str = "time,symbol,price,fast_sma,slow_sma,signal,order";

/// Writes signal rows as CSV.
pub struct Signals<W: Write> {
    out: W,
    rows: u64,
}

impl Signals<BufWriter<File>> {
    /// Creates (or truncates) the file at `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path)
            .with_context(|| format!("cannot create signals file {}", path.display()))?;
        Signals::new(BufWriter::new(file))
    }
}

impl<W: Write> Signals<W> {
    /// Signals written to `out`, header first.
    pub fn new(mut out: W) -> Result<Self> {
        writeln!(out, "{HEADER}")?;
        Ok(Signals { out, rows: 0 })
    }

    /// Writes the row of `e` for `symbol`, with the reference of the order it placed.
    pub fn row(&mut self, symbol: &str, e: &Evaluation, order: Option<&str>) -> Result<()> {
        writeln!(
            self.out,
            "{},{symbol},{:.4},{:.4},{:.4},{},{}",
            iso_time(e.time),
            e.price,
            e.fast,
            e.slow,
            e.signal,
            order.unwrap_or("")
        )?;
        self.rows += 1;
        Ok(())
    }

    /// Flushes the rows out; returns how many were written (header not counted) and the
    /// writer.
    pub fn flush(mut self) -> Result<(u64, W)> {
        self.out.flush().context("cannot write signals file")?;
        Ok((self.rows, self.out))
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time.
pub fn iso_time(t: i64) -> String {
    let (year, month, day, h, m, s) = base::unix_time::civil_time(t);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::Signal;

    #[test]
    fn iso_times() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(iso_time(951_825_600), "2000-02-29T12:00:00Z");
    }

    #[test]
    fn rows_follow_the_header_and_are_counted() {
        let mut s = Signals::new(Vec::new()).unwrap();
        let e = Evaluation {
            time: 1_700_000_000,
            price: 12.0,
            fast: 11.0,
            slow: 10.5,
            signal: Signal::Buy,
        };
        s.row("SPY", &e, Some("ab12cd34-1")).unwrap();
        s.row(
            "QQQ",
            &Evaluation {
                signal: Signal::Hold,
                ..e
            },
            None,
        )
        .unwrap();
        let (rows, out) = s.flush().unwrap();
        assert_eq!(rows, 2);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "time,symbol,price,fast_sma,slow_sma,signal,order\n\
             2023-11-14T22:13:20Z,SPY,12.0000,11.0000,10.5000,buy,ab12cd34-1\n\
             2023-11-14T22:13:20Z,QQQ,12.0000,11.0000,10.5000,hold,\n"
        );
    }
}
