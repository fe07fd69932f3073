//! A session's history: every symbol's bars fetched at once ([`fetch_history`]), and each
//! symbol's bounded window of bars ([`Series`], [`trim`], [`tail`]).
//!
//! Invariants: one series per configured symbol, in configuration order, with its bars or why
//! it has none; a series holds at most twice the bars it keeps (trimmed in bulk), so a
//! session of any length holds a bounded amount of data; `stop` ends the fetching before the
//! next symbol is asked for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bridge::protocol::{Bar, HistoryRequest};
use parking_lot::Mutex;

use crate::config::Config;
use crate::progress::Progress;
use crate::strategy::Signal;
use crate::supervisor::{Supervisor, SupervisorError};

use super::report::{NoHistory, SymbolRun};

/// One symbol's bars so far (history, then live; only the most recent once the history was
/// evaluated), or why it has none.
pub(crate) struct Series {
    pub(crate) symbol: String,
    pub(crate) bars: Vec<Bar>,
    pub(crate) history_bars: usize,
    pub(crate) live_bars: usize,
    pub(crate) error: Option<NoHistory>,
    /// Since when (Unix seconds) its live feed has been stalled: silent even after its
    /// subscription was made again. Cleared when data comes again.
    pub(crate) stalled_since: Option<i64>,
}

impl Series {
    /// Adds a live bar, keeping at most `keep` bars (trimmed in bulk: at most twice as many
    /// are ever held).
    pub(crate) fn push(&mut self, bar: Bar, keep: usize) {
        self.bars.push(bar);
        self.live_bars += 1;
        self.stalled_since = None;
        trim(&mut self.bars, keep);
    }

    fn fetched(symbol: &str, result: Option<Result<Vec<Bar>, SupervisorError>>) -> Series {
        let (bars, error) = match result {
            Some(Ok(bars)) => (bars, None),
            Some(Err(e)) => (Vec::new(), Some(NoHistory::Failed(e))),
            None => (Vec::new(), Some(NoHistory::Interrupted)),
        };
        Series {
            symbol: symbol.to_string(),
            history_bars: bars.len(),
            bars,
            live_bars: 0,
            error,
            stalled_since: None,
        }
    }

    /// The report's row of this series, whose strategy last said `last_signal`.
    pub(crate) fn into_run(self, last_signal: Option<Signal>) -> SymbolRun {
        SymbolRun {
            symbol: self.symbol,
            history_bars: self.history_bars,
            live_bars: self.live_bars,
            last_signal,
            error: self.error,
            stalled_since: self.stalled_since,
            recent: self.bars,
        }
    }
}

/// Keeps the last `keep` of `bars` once they are twice as many (amortised: a bar is moved at
/// most once per `keep` bars added).
pub(crate) fn trim(bars: &mut Vec<Bar>, keep: usize) {
    let keep = keep.max(1);
    if bars.len() > keep.saturating_mul(2) {
        bars.drain(..bars.len() - keep);
        // A long history's allocation is given back too.
        if bars.capacity() > keep.saturating_mul(4) {
            bars.shrink_to(keep.saturating_mul(2).saturating_add(1));
        }
    }
}

/// The last `n` of `bars`.
pub(crate) fn tail(bars: &[Bar], n: usize) -> &[Bar] {
    &bars[bars.len().saturating_sub(n)..]
}

/// History for every symbol, `history.concurrency` at a time, with progress on stderr; one
/// series per configured symbol, in order.
pub(crate) fn fetch_history(cfg: &Config, sup: &Supervisor, stop: &AtomicBool) -> Vec<Series> {
    let progress = Progress::new(cfg.symbols.len());
    let next = AtomicUsize::new(0);
    let results: Mutex<HashMap<String, Result<Vec<Bar>, SupervisorError>>> =
        Mutex::new(HashMap::new());
    let threads = cfg.history.concurrency.min(cfg.symbols.len()).max(1);
    let timeout = Duration::from_secs(cfg.history.timeout_seconds);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(symbol) = cfg.symbols.get(i) else {
                    return;
                };
                let req = HistoryRequest {
                    symbol: symbol.clone(),
                    bar_seconds: cfg.history.bar_seconds,
                    duration_seconds: cfg.history.duration_seconds,
                    end: cfg.history_end(),
                };
                let r = sup.history(&req, timeout);
                progress.symbol_done(symbol, r.as_ref().map(Vec::len));
                results.lock().insert(symbol.clone(), r);
            });
        }
    });
    let mut results = results.into_inner();
    let series: Vec<Series> = cfg
        .symbols
        .iter()
        .map(|s| Series::fetched(s, results.remove(s)))
        .collect();
    for s in &series {
        if let Some(e) = &s.error {
            tracing::warn!(symbol = %s.symbol, "no data: {e}");
        }
    }
    series
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of any length holds at most twice the bars it keeps per symbol: a week of
    /// five-second bars (120,960) never grows the series past that.
    #[test]
    fn a_series_keeps_a_bounded_window_however_many_bars_come() {
        let mut s = Series::fetched("SPY", Some(Ok(Vec::new())));
        let keep = 34;
        let mut longest = 0;
        for t in 0..120_960i64 {
            s.push(
                Bar {
                    time: t * 5,
                    open: 1.0,
                    high: 1.0,
                    low: 1.0,
                    close: 1.0,
                    volume: 1.0,
                },
                keep,
            );
            longest = longest.max(s.bars.len());
            assert!(
                s.bars.capacity() <= 4 * keep + 4,
                "capacity {}",
                s.bars.capacity()
            );
        }
        assert_eq!(longest, 2 * keep);
        assert_eq!(s.live_bars, 120_960);
        assert!(s.bars.len() >= keep);
        assert_eq!(s.bars.last().unwrap().time, 120_959 * 5);
        let times: Vec<i64> = s.bars.iter().map(|b| b.time).collect();
        assert!(
            times.windows(2).all(|w| w[1] == w[0] + 5),
            "the most recent, in order"
        );
    }
}
