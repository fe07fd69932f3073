//! The seam between a symbol's history and its live bars: the bars that neither brings are
//! fetched on their own ([`Seams`]), so that a strategy sees a symbol's bars without a hole
//! where history meets live.
//!
//! Why there is a hole: a history that ends now holds the bars complete when it was asked
//! for; a live subscription begins with the bar forming when it is made (the simulated market)
//! or with the next one to start (IB's real-time bars, built from 5-second bars: a bar joined
//! midway is never sent). A bar that completes between the two requests, and at IB the bar
//! forming at the subscription, come from neither.
//!
//! How it is filled: [`Seams::on_bar`] looks at each symbol's first live bar. If it follows
//! the history's newest bar (or is older), there is no hole. Otherwise the bars between are
//! asked for as history on a thread of the seams' own (at most `history.concurrency` at once,
//! each given [`FILL_WAIT`] at most), and the symbol's live bars are held meanwhile; other
//! symbols go on. [`Seams::filled`] hands the fetched bars, then the held ones; only the last
//! of them is [`Ready::newest`] (a signal from an older one would trade on a stale price). A
//! fill that fails is logged and the held bars are handed as they are: the hole stays, and the
//! log says so.
//!
//! Invariants: a symbol's bars leave in the order they came, its fetched ones before them; at
//! most one fill per symbol per run, and only for a history that ends now and has bars; a fill
//! never blocks the caller, and holds a symbol's bars for [`FILL_WAIT`] and a worker's
//! replacement at most; the bars fetched are newer than the history's newest and older than
//! the first live bar, at most [`max_fill_seconds`] of them; every hole left is in the log.

use std::sync::Arc;
use std::time::Duration;

use bridge::protocol::{Bar, ErrorKind, HistoryRequest};
use crossbeam_channel::{Receiver, Sender};

use crate::config::Config;
use crate::supervisor::SupervisorError;

use super::history::Series;

/// How a fill fetches its bars (the supervisor's history, within the timeout given).
pub(crate) type Fetch =
    Arc<dyn Fn(&HistoryRequest, Duration) -> Result<Vec<Bar>, SupervisorError> + Send + Sync>;

/// The longest a fill may take (or the history's timeout, if shorter): a symbol's live bars
/// are held meanwhile. A broker pacing its history requests would otherwise hold them for
/// minutes.
pub(crate) const FILL_WAIT: Duration = Duration::from_secs(10);

/// The longest span a fill asks for: the history's own duration, or four of the broker's
/// pages of bars of this size (a long weekend of minute bars), whichever is longer.
pub(crate) fn max_fill_seconds(bar_seconds: u32, history_seconds: u64) -> u64 {
    history_seconds.max(4 * worker::pacing::max_request_span(bar_seconds))
}

/// A bar the seams hand on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Ready {
    /// The subscription (row).
    pub(crate) sub: u32,
    pub(crate) bar: Bar,
    /// Whether it is the newest bar of its symbol known now: only such a bar may lead to an
    /// order (a fetched bar, or a live one held behind a fill, is older than the market).
    pub(crate) newest: bool,
}

impl Ready {
    fn newest(sub: u32, bar: Bar) -> Ready {
        Ready {
            sub,
            bar,
            newest: true,
        }
    }
}

/// Where one symbol's seam stands.
#[derive(Debug)]
enum Seam {
    /// No live bar yet; the history's newest bar was at `newest`.
    Open { newest: i64 },
    /// The bars between `newest` and `first` (the first live bar) are being fetched; the live
    /// bars that came meanwhile are held.
    Filling {
        newest: i64,
        first: i64,
        held: Vec<Bar>,
    },
    /// Live bars pass through.
    Closed,
}

/// One fill's answer: the subscription (row) and what its fetch brought.
type Done = (u32, Result<Vec<Bar>, SupervisorError>);

/// Every symbol's seam, by subscription id (its row), and the threads that fill them.
pub(crate) struct Seams {
    seams: Vec<Seam>,
    symbols: Vec<String>,
    bar_seconds: u32,
    /// The most a fill asks for ([`max_fill_seconds`]).
    max_seconds: u64,
    /// The most a fill may take.
    wait: Duration,
    fetch: Fetch,
    jobs: Option<Sender<(u32, HistoryRequest)>>,
    jobs_rx: Receiver<(u32, HistoryRequest)>,
    done_tx: Sender<Done>,
    done: Receiver<Done>,
    threads: usize,
    max_threads: usize,
    in_flight: usize,
}

impl Seams {
    /// A seam for every series with history bars, when the history ends now (one with a fixed
    /// end is meant to stop there).
    pub(crate) fn new(cfg: &Config, series: &[Series], fetch: Fetch) -> Seams {
        let ends_now = cfg.history_end().is_none();
        let seams = series
            .iter()
            .map(|s| match s.bars.last() {
                Some(newest) if ends_now && s.error.is_none() => Seam::Open {
                    newest: newest.time,
                },
                _ => Seam::Closed,
            })
            .collect();
        let (jobs, jobs_rx) = crossbeam_channel::unbounded();
        let (done_tx, done) = crossbeam_channel::unbounded();
        Seams {
            seams,
            symbols: series.iter().map(|s| s.symbol.clone()).collect(),
            bar_seconds: cfg.history.bar_seconds,
            max_seconds: max_fill_seconds(cfg.history.bar_seconds, cfg.history.duration_seconds),
            wait: FILL_WAIT.min(Duration::from_secs(cfg.history.timeout_seconds.max(1))),
            fetch,
            jobs: Some(jobs),
            jobs_rx,
            done_tx,
            done,
            threads: 0,
            max_threads: cfg.history.concurrency.max(1),
            in_flight: 0,
        }
    }

    /// Takes live bar `bar` of subscription `sub`; appends to `out` the bars to hand on now,
    /// in order (none while the symbol's seam is being filled).
    pub(crate) fn on_bar(&mut self, sub: u32, bar: Bar, out: &mut Vec<Ready>) {
        let size = i64::from(self.bar_seconds.max(1));
        let Some(seam) = self.seams.get_mut(sub as usize) else {
            out.push(Ready::newest(sub, bar));
            return;
        };
        match seam {
            Seam::Closed => out.push(Ready::newest(sub, bar)),
            Seam::Filling { held, .. } => held.push(bar),
            Seam::Open { newest } => {
                let newest = *newest;
                // Older than the history (a stream's backlog): dropped, the seam left open for
                // the first newer bar.
                if bar.time <= newest {
                    return;
                }
                let missing = bar.time.saturating_sub(newest).saturating_sub(size);
                if missing <= 0 {
                    *seam = Seam::Closed;
                    out.push(Ready::newest(sub, bar));
                    return;
                }
                let symbol = self.symbols.get(sub as usize).cloned().unwrap_or_default();
                let seconds = (missing as u64).min(self.max_seconds);
                if seconds < missing as u64 {
                    tracing::warn!(
                        symbol,
                        after = newest,
                        before = bar.time,
                        "bars between the history and the first live bar are missing: only \
                         the last {seconds} s of the {missing} s between are fetched"
                    );
                }
                if seconds < size as u64 {
                    *seam = Seam::Closed;
                    out.push(Ready::newest(sub, bar));
                    return;
                }
                let request = HistoryRequest {
                    symbol,
                    bar_seconds: self.bar_seconds,
                    duration_seconds: seconds,
                    end: Some(bar.time),
                };
                tracing::debug!(
                    symbol = %request.symbol,
                    from = newest + size,
                    to = bar.time - size,
                    "fetching the bars between the history and the first live bar"
                );
                *seam = Seam::Filling {
                    newest,
                    first: bar.time,
                    held: vec![bar],
                };
                self.send(sub, request);
            }
        }
    }

    /// Whether a fill is under way.
    pub(crate) fn filling(&self) -> bool {
        self.in_flight > 0
    }

    /// Appends to `out` the bars of every fill that came back since the last call (without
    /// waiting): per symbol its fetched bars, then the live bars held meanwhile.
    pub(crate) fn filled(&mut self, out: &mut Vec<Ready>) {
        while let Ok((sub, fetched)) = self.done.try_recv() {
            self.in_flight = self.in_flight.saturating_sub(1);
            let Some(seam) = self.seams.get_mut(sub as usize) else {
                continue;
            };
            let Seam::Filling {
                newest,
                first,
                held,
            } = std::mem::replace(seam, Seam::Closed)
            else {
                continue;
            };
            let symbol = self.symbols.get(sub as usize).map_or("", String::as_str);
            match fetched {
                Ok(bars) => {
                    let between = bars
                        .into_iter()
                        .filter(|b| b.time > newest && b.time < first)
                        .map(|bar| Ready {
                            sub,
                            bar,
                            newest: false,
                        });
                    let before = out.len();
                    out.extend(between);
                    tracing::debug!(
                        symbol,
                        bars = out.len() - before,
                        "bars between the history and the first live bar"
                    );
                }
                // A market closed between, or a broker that says so of another problem: said
                // either way, as the hole may be real.
                Err(SupervisorError::Remote(e)) if e.kind == ErrorKind::NoData => tracing::info!(
                    symbol,
                    after = newest,
                    before = first,
                    "no bars between the history and the first live bar: {}",
                    e.message
                ),
                Err(e) => tracing::warn!(
                    symbol,
                    after = newest,
                    before = first,
                    "bars between the history and the first live bar are missing: {e}"
                ),
            }
            let last = held.len().saturating_sub(1);
            out.extend(held.into_iter().enumerate().map(|(i, bar)| Ready {
                sub,
                bar,
                newest: i == last,
            }));
        }
    }

    /// Queues a fill, starting a thread for it while fewer than `max_threads` run and every
    /// one is busy.
    fn send(&mut self, sub: u32, request: HistoryRequest) {
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send((sub, request)).is_ok());
        if !sent {
            self.release(sub);
            return;
        }
        self.in_flight += 1;
        if self.in_flight > self.threads && self.threads < self.max_threads {
            let (jobs, done, fetch, wait) = (
                self.jobs_rx.clone(),
                self.done_tx.clone(),
                self.fetch.clone(),
                self.wait,
            );
            let spawned = std::thread::Builder::new()
                .name("seam-fill".into())
                .spawn(move || {
                    while let Ok((sub, request)) = jobs.recv() {
                        if done.send((sub, fetch(&request, wait))).is_err() {
                            return;
                        }
                    }
                });
            match spawned {
                Ok(_) => self.threads += 1,
                Err(e) if self.threads == 0 => {
                    tracing::warn!("no thread to fetch the bars between history and live: {e}");
                    // Nobody would take the job: every queued seam is given up.
                    self.jobs = None;
                    while let Ok((sub, _)) = self.jobs_rx.try_recv() {
                        self.in_flight = self.in_flight.saturating_sub(1);
                        self.release(sub);
                    }
                }
                // The running threads take it in turn.
                Err(e) => tracing::debug!("no further seam-fill thread: {e}"),
            }
        }
    }

    /// Gives up filling `sub`'s seam: its held bars are handed on at the next [`filled`]
    /// (Self::filled) as a fill that brought nothing.
    fn release(&mut self, sub: u32) {
        self.in_flight += 1;
        let _ = self.done_tx.send((sub, Ok(Vec::new())));
    }
}

impl Drop for Seams {
    /// Says which symbols' bars were still held behind a fill when the live phase ended.
    fn drop(&mut self) {
        for (seam, symbol) in self.seams.iter().zip(&self.symbols) {
            if let Seam::Filling { held, .. } = seam {
                tracing::info!(
                    symbol,
                    bars = held.len(),
                    "live bars not handed on: the run ended while the bars before them were \
                     fetched"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use bridge::protocol::RemoteError;
    use parking_lot::Mutex;
    use std::time::Instant;

    fn bar(time: i64) -> Bar {
        Bar {
            time,
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume: 1.0,
        }
    }

    fn series(symbol: &str, times: &[i64]) -> Series {
        Series {
            symbol: symbol.into(),
            bars: times.iter().map(|&t| bar(t)).collect(),
            history_bars: times.len(),
            live_bars: 0,
            error: None,
            stalled_since: None,
        }
    }

    fn cfg() -> Config {
        let mut cfg = Config::default();
        cfg.history.bar_seconds = 60;
        cfg.history.duration_seconds = 3600;
        cfg.history.concurrency = 2;
        cfg.history.timeout_seconds = 5;
        cfg
    }

    type Asked = Arc<Mutex<Vec<(HistoryRequest, Duration)>>>;

    /// A fetch answering from a market with a bar every minute, and the requests it saw.
    fn market() -> (Fetch, Asked) {
        let asked: Asked = Arc::default();
        let seen = asked.clone();
        let fetch: Fetch = Arc::new(move |r: &HistoryRequest, wait| {
            seen.lock().push((r.clone(), wait));
            let end = r.end.unwrap_or(0);
            let n = (r.duration_seconds / 60) as i64;
            Ok((1..=n).rev().map(|k| bar(end - k * 60)).collect())
        });
        (fetch, asked)
    }

    /// Everything handed on until `want` bars came (fills waited for, 5 s at most).
    fn collect(seams: &mut Seams, out: &mut Vec<Ready>, want: usize) {
        let until = Instant::now() + Duration::from_secs(5);
        while out.len() < want && Instant::now() < until {
            seams.filled(out);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn times(out: &[Ready], sub: u32) -> Vec<i64> {
        out.iter()
            .filter(|r| r.sub == sub)
            .map(|r| r.bar.time)
            .collect()
    }

    /// The times of `sub`'s bars that may trade.
    fn newest(out: &[Ready], sub: u32) -> Vec<i64> {
        out.iter()
            .filter(|r| r.sub == sub && r.newest)
            .map(|r| r.bar.time)
            .collect()
    }

    #[test]
    fn a_first_live_bar_that_follows_the_history_passes_without_a_fill() {
        let (fetch, asked) = market();
        let mut seams = Seams::new(&cfg(), &[series("A", &[60, 120])], fetch.clone());
        let mut out = Vec::new();
        seams.on_bar(0, bar(180), &mut out);
        seams.on_bar(0, bar(240), &mut out);
        assert_eq!(times(&out, 0), vec![180, 240]);
        assert_eq!(newest(&out, 0), vec![180, 240]);
        assert!(asked.lock().is_empty());
        assert!(!seams.filling());
    }

    #[test]
    fn bars_older_than_the_history_leave_the_seam_open_for_the_first_newer_one() {
        // A stream's backlog comes first: bars the history has already.
        let (fetch, asked) = market();
        let mut seams = Seams::new(&cfg(), &[series("A", &[60, 120])], fetch);
        let mut out = Vec::new();
        seams.on_bar(0, bar(60), &mut out);
        seams.on_bar(0, bar(120), &mut out);
        assert!(out.is_empty(), "dropped");
        // The first newer one still finds the hole after the history, and fills it.
        seams.on_bar(0, bar(300), &mut out);
        collect(&mut seams, &mut out, 3);
        assert_eq!(times(&out, 0), vec![180, 240, 300]);
        assert_eq!(asked.lock().len(), 1);
    }

    #[test]
    fn the_bars_between_history_and_live_come_first_and_other_symbols_go_on() {
        let (fetch, asked) = market();
        let mut seams = Seams::new(
            &cfg(),
            &[series("A", &[60, 120]), series("B", &[120])],
            fetch,
        );
        let mut out = Vec::new();
        // A's first live bar is three bars after its history's newest: 180 and 240 missing.
        seams.on_bar(0, bar(300), &mut out);
        seams.on_bar(1, bar(180), &mut out);
        seams.on_bar(0, bar(360), &mut out);
        seams.on_bar(1, bar(240), &mut out);
        assert_eq!(times(&out, 1), vec![180, 240], "B is not held up");
        collect(&mut seams, &mut out, 6);
        assert_eq!(times(&out, 0), vec![180, 240, 300, 360]);
        // Only the newest of what was held may lead to an order.
        assert_eq!(newest(&out, 0), vec![360]);
        let request = HistoryRequest {
            symbol: "A".into(),
            bar_seconds: 60,
            duration_seconds: 120,
            end: Some(300),
        };
        // Waited for as long as the history's timeout, below the seams' own bound.
        assert_eq!(*asked.lock(), vec![(request, Duration::from_secs(5))]);
        // Filled once: later bars pass through.
        seams.on_bar(0, bar(420), &mut out);
        assert_eq!(times(&out, 0), vec![180, 240, 300, 360, 420]);
        assert_eq!(newest(&out, 0), vec![360, 420]);
        assert!(!seams.filling());
    }

    #[test]
    fn more_fills_than_threads_are_each_answered_to_their_own_symbol() {
        let (fetch, asked) = market();
        let mut one = cfg();
        one.history.concurrency = 1;
        let rows: Vec<Series> = ["A", "B", "C", "D"]
            .iter()
            .map(|s| series(s, &[0]))
            .collect();
        let mut seams = Seams::new(&one, &rows, fetch);
        let mut out = Vec::new();
        for (sub, first) in [(0, 180), (1, 240), (2, 300), (3, 120)] {
            seams.on_bar(sub, bar(first), &mut out);
        }
        collect(&mut seams, &mut out, 4 + 2 + 3 + 4 + 1);
        assert_eq!(times(&out, 0), vec![60, 120, 180]);
        assert_eq!(times(&out, 1), vec![60, 120, 180, 240]);
        assert_eq!(times(&out, 2), vec![60, 120, 180, 240, 300]);
        assert_eq!(times(&out, 3), vec![60, 120]);
        assert_eq!(asked.lock().len(), 4);
        assert_eq!(seams.threads, 1);
    }

    #[test]
    fn a_fill_asks_for_at_most_four_broker_pages_and_keeps_only_bars_between() {
        let (fetch, asked) = market();
        // A long weekend of minute bars is fetched whole: beyond the history's hour.
        let mut seams = Seams::new(&cfg(), &[series("A", &[0]), series("B", &[0])], fetch);
        let mut out = Vec::new();
        let weekend = 3 * 86_400;
        seams.on_bar(0, bar(weekend), &mut out);
        // Beyond four days of minute bars only the newest four days are.
        let beyond = 5 * 86_400;
        seams.on_bar(1, bar(beyond), &mut out);
        collect(&mut seams, &mut out, 3 * 1440 + 4 * 1440 + 1);
        let asked: Vec<u64> = asked
            .lock()
            .iter()
            .map(|(r, _)| r.duration_seconds)
            .collect();
        assert_eq!(asked, vec![weekend as u64 - 60, 4 * 86_400]);
        assert_eq!(times(&out, 0).len(), 3 * 1440);
        assert_eq!(times(&out, 1).first(), Some(&86_400));
        assert_eq!(max_fill_seconds(5, 3600), 4 * 3600);
        assert_eq!(max_fill_seconds(60, 30 * 86_400), 30 * 86_400);
        // A source that also answers bars outside the hole (older, and the live one).
        let fetch: Fetch =
            Arc::new(|_: &HistoryRequest, _| Ok(vec![bar(0), bar(60), bar(7_140), bar(7_200)]));
        let mut seams = Seams::new(&cfg(), &[series("A", &[0])], fetch);
        let mut out = Vec::new();
        seams.on_bar(0, bar(7_200), &mut out);
        collect(&mut seams, &mut out, 3);
        assert_eq!(times(&out, 0), vec![60, 7_140, 7_200]);
    }

    #[test]
    fn a_failed_fill_hands_the_held_bars_on_and_no_data_is_no_hole() {
        let fetch: Fetch = Arc::new(|r: &HistoryRequest, _| {
            Err(SupervisorError::Remote(RemoteError {
                kind: match r.symbol.as_str() {
                    "A" => ErrorKind::NoData,
                    _ => ErrorKind::Timeout,
                },
                message: "nothing".into(),
            }))
        });
        let mut seams = Seams::new(&cfg(), &[series("A", &[0]), series("B", &[0])], fetch);
        let mut out = Vec::new();
        seams.on_bar(0, bar(600), &mut out);
        seams.on_bar(1, bar(600), &mut out);
        seams.on_bar(1, bar(660), &mut out);
        collect(&mut seams, &mut out, 3);
        assert_eq!(times(&out, 0), vec![600]);
        assert_eq!(times(&out, 1), vec![600, 660]);
        assert_eq!(newest(&out, 1), vec![660]);
    }

    #[test]
    fn no_seam_for_a_history_with_a_fixed_end_or_without_bars() {
        let (fetch, asked) = market();
        let mut fixed = cfg();
        fixed.history.end = Some(crate::config::HistoryEnd(0));
        let mut seams = Seams::new(&fixed, &[series("A", &[0])], fetch.clone());
        let mut empty = Seams::new(&cfg(), &[series("A", &[])], fetch);
        let mut out = Vec::new();
        seams.on_bar(0, bar(600), &mut out);
        empty.on_bar(0, bar(600), &mut out);
        // A subscription that is no row passes too.
        empty.on_bar(7, bar(600), &mut out);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|r| r.newest));
        assert!(asked.lock().is_empty());
    }
}
