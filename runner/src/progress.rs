//! Progress of the history fetch on stderr: a bar on a terminal, one line per symbol
//! otherwise (a log file, a test).
//!
//! Invariants: callable from every fetching thread at once; lines never interleave; the
//! counts shown only grow, and the bar ends with a newline once every symbol is done.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

/// Width of the terminal bar, in characters.
const BAR_WIDTH: usize = 30;

/// Shows history progress.
pub(crate) struct Progress {
    total: usize,
    done: AtomicUsize,
    bars: AtomicU64,
    tty: bool,
    out: Mutex<()>,
}

impl Progress {
    /// Progress over `total` symbols, drawn as a bar if stderr is a terminal.
    pub(crate) fn new(total: usize) -> Self {
        Progress {
            total,
            done: AtomicUsize::new(0),
            bars: AtomicU64::new(0),
            tty: std::io::stderr().is_terminal(),
            out: Mutex::new(()),
        }
    }

    /// Records that `symbol` is done: `Ok(bars received)` or why it failed.
    pub(crate) fn symbol_done<E: fmt::Display>(&self, symbol: &str, result: Result<usize, E>) {
        let _guard = self.out.lock();
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let n = *result.as_ref().unwrap_or(&0);
        let bars = self.bars.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        let text = if self.tty {
            bar(done, self.total, bars)
        } else {
            line(done, self.total, symbol, &result)
        };
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

/// The terminal bar after `done` of `total` symbols and `bars` bars: redrawn in place, and
/// ended with a newline when all are done.
fn bar(done: usize, total: usize, bars: u64) -> String {
    let filled = BAR_WIDTH * done / total.max(1);
    let mut s = format!(
        "\rhistory [{}{}] {done}/{total} symbols, {bars} bars",
        "#".repeat(filled),
        "-".repeat(BAR_WIDTH - filled),
    );
    if done == total {
        s.push('\n');
    }
    s
}

/// The plain line for one symbol.
fn line<E: fmt::Display>(
    done: usize,
    total: usize,
    symbol: &str,
    result: &Result<usize, E>,
) -> String {
    let what = match result {
        Ok(n) => format!("{n} bars"),
        Err(e) => format!("failed: {e}"),
    };
    format!("history {done}/{total}: {symbol} {what}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_name_the_symbol_and_its_outcome() {
        assert_eq!(
            line(1, 7, "QQQ", &Ok::<_, &str>(1440)),
            "history 1/7: QQQ 1440 bars\n"
        );
        assert_eq!(
            line(2, 7, "TSLA", &Err::<usize, _>("NoData: no data for TSLA")),
            "history 2/7: TSLA failed: NoData: no data for TSLA\n"
        );
    }

    #[test]
    fn the_bar_fills_up_and_ends_its_line_when_done() {
        let half = bar(1, 2, 1440);
        assert_eq!(
            half,
            format!(
                "\rhistory [{}{}] 1/2 symbols, 1440 bars",
                "#".repeat(15),
                "-".repeat(15)
            )
        );
        let full = bar(2, 2, 2880);
        assert!(full.ends_with("] 2/2 symbols, 2880 bars\n"), "{full:?}");
        assert!(full.contains(&"#".repeat(BAR_WIDTH)));
        // No symbols at all: no division by zero.
        assert_eq!(bar(0, 0, 0).chars().filter(|&c| c == '#').count(), 0);
    }
}
