//! A live feed that goes silent, against the fake TWS gateway: through `runner run --backend
//! ibkr` (a market data farm's flap that leaves the streams dead, a silence without any
//! notice, a feed that stays silent after it was made again and one that recovers, a holiday)
//! and through a `Session` with a strategy of one's own.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use bridge::protocol::{Bar, Event, FeedState};
use runner::config::{BackendKind, Config};
use runner::session::{Observer, Session};
use runner::strategy::{Signal, Strategy};
use tests::gateway::{Behaviour, FarmFlap, Gateway, SilentFeed};

mod common;
use common::{fast_bars, gateway, row};

/// The streams open when the gateway has sent 24 real-time bars (a second or so into the live
/// phase) never send again after the farm's 2103 and, 300 ms later, its 2104.
fn flap_after_24_bars() -> Behaviour {
    Behaviour {
        farm_flap: Some(FarmFlap {
            after_bars: 24,
            lasts: Duration::from_millis(300),
            silent_streams: true,
        }),
        ..fast_bars()
    }
}

/// QQQ's data stops without a word once the gateway has sent 24 real-time bars; a request made
/// later is served `lasts` after the stop (`None`: never).
fn qqq_silent_after_24_bars(lasts: Option<Duration>) -> Behaviour {
    Behaviour {
        silent_feeds: vec![SilentFeed {
            symbol: "QQQ".into(),
            after_bars: 24,
            lasts,
        }],
        ..fast_bars()
    }
}

/// `runner run --backend ibkr` on SPY and QQQ for `seconds` against `gw`, with `[ibkr]`
/// holding `ibkr` (the watchdog's silence, say): exit code, stdout, stderr.
fn run(gw: &Gateway, seconds: &str, ibkr: &str) -> (i32, String, String) {
    let cfg = common::temp_file(
        "feeds",
        &format!("{}.toml", std::thread::current().name().unwrap_or("run")),
        &format!("[ibkr]\n{ibkr}\n"),
    );
    let mut cmd = common::runner(&[
        "run",
        "--backend",
        "ibkr",
        "--gateway",
        &gw.address(),
        "--client-id",
        "9",
        "--symbols",
        "SPY,QQQ",
        "--duration",
        seconds,
        "--config",
        &cfg,
    ]);
    cmd.env("RUNNER_LOG", "info");
    common::output(cmd)
}

/// [`run`], checked to exit with 0: stdout, stderr.
#[track_caller]
fn run_ok(gw: &Gateway, seconds: &str, ibkr: &str) -> (String, String) {
    let (code, stdout, stderr) = run(gw, seconds, ibkr);
    assert_eq!(code, 0, "{stdout}{stderr}");
    (stdout, stderr)
}

/// The log lines of `stderr` that name `symbol` and contain `text`.
fn lines_of<'a>(stderr: &'a str, symbol: &str, text: &str) -> Vec<&'a str> {
    stderr
        .lines()
        .filter(|l| l.contains(&format!("symbol={symbol}")) && l.contains(text))
        .collect()
}

/// The line a silence without a notice is logged with, for a silence of 5 s (one bar).
const SILENCE: &str = "no live data for 5 s while the gateway is connected and the market \
                       open: the subscription is cancelled and made again";

/// The line a symbol's stream made again after a flap is logged with.
const FLAP: &str =
    "live bars made again: market data farm usfarm broke and came back (IB 2103, 2104)";

/// A 2103/2104 flap with silent streams: every symbol's stream is cancelled and requested
/// again at once (the default silence is a minute, the run 5 s), the log says why for each,
/// and bars come again for every symbol.
#[test]
fn after_a_farm_flap_every_stream_is_made_again_at_once_and_bars_resume() {
    let gw = gateway(flap_after_24_bars());
    let (stdout, stderr) = run_ok(&gw, "5", "");
    let seen = gw.seen();
    for symbol in ["SPY", "QQQ"] {
        assert_eq!(seen.realtime_requests_for(symbol), 2, "{symbol}: {seen:?}");
        assert_eq!(
            lines_of(&stderr, symbol, FLAP).len(),
            1,
            "{symbol}: {stderr}"
        );
        // At most one minute bar each before the flap (24 five-second bars over two symbols).
        let (live, rest) = row(&stdout, symbol);
        assert!(live >= 3, "{symbol}: {live} live bars\n{stdout}\n{stderr}");
        assert!(!rest.contains("stalled"), "{rest}");
    }
    for symbol in ["SPY", "QQQ"] {
        // The stream open at the flap, once (the one made again may be cancelled at the end).
        assert_eq!(seen.realtime_cancels_of(symbol, 0), 1, "{symbol}: {seen:?}");
    }
    assert!(stderr.contains("code=2103"), "{stderr}");
    assert!(
        stdout.contains("silent live feeds made again 2, stalled at the end 0"),
        "{stdout}"
    );
}

/// A stream that stops without any notice is made again after the configured silence (one
/// 5-second bar here), once, with a line saying which symbol and why; the other symbol's
/// stream is left alone.
#[test]
fn a_silence_without_a_notice_is_noticed_and_the_stream_made_again() {
    let gw = gateway(qqq_silent_after_24_bars(Some(Duration::ZERO)));
    let (stdout, stderr) = run_ok(&gw, "9", "silent_bars = 1");
    let seen = gw.seen();
    assert_eq!(seen.realtime_requests_for("QQQ"), 2, "{seen:?}");
    assert_eq!(seen.realtime_requests_for("SPY"), 1, "{seen:?}");
    assert_eq!(seen.realtime_cancels_of("QQQ", 0), 1, "{seen:?}");
    assert_eq!(lines_of(&stderr, "QQQ", SILENCE).len(), 1, "{stderr}");
    assert!(
        lines_of(&stderr, "SPY", "made again").is_empty(),
        "{stderr}"
    );
    // About 3 s of bars after the stream was made again: a minute bar every 0.6 s.
    let (live, rest) = row(&stdout, "QQQ");
    assert!(live >= 3, "{live} live bars\n{stdout}\n{stderr}");
    assert!(!rest.contains("stalled"), "{rest}");
    assert!(
        stdout.contains("silent live feeds made again 1, stalled at the end 0"),
        "{stdout}"
    );
}

/// `HH:MM:SS UTC` of Unix time `t`, as seconds of its day.
fn clock_seconds(text: &str) -> i64 {
    let parts: Vec<i64> = text.split(':').map(|p| p.parse().unwrap()).collect();
    parts[0] * 3600 + parts[1] * 60 + parts[2]
}

/// A stream still silent after it was made again is stalled: its row says since when (its
/// last data), it has no signal, the summary counts it, and the run exits with 0.
#[test]
fn a_stream_silent_after_it_was_made_again_is_shown_stalled() {
    let gw = gateway(qqq_silent_after_24_bars(None));
    let started = base::unix_time::now().as_secs() as i64;
    let (stdout, stderr) = run_ok(&gw, "13", "silent_bars = 1");
    let ended = base::unix_time::now().as_secs() as i64;
    let (_, rest) = row(&stdout, "QQQ");
    let since = rest
        .split_once("stalled since ")
        .and_then(|(_, r)| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{rest}\n{stderr}"));
    // Its last data came during the run, before the silence was noticed (5 s before the end
    // at the latest, 10 s at the latest in fact).
    let since = clock_seconds(since);
    let day = |t: i64| t.rem_euclid(86_400);
    let in_run = if day(started) <= day(ended) {
        (day(started)..=day(ended) - 5).contains(&since)
    } else {
        since >= day(started) || since <= day(ended)
    };
    assert!(
        in_run,
        "stalled since {since} s of the day, run {started}..{ended}"
    );
    assert!(
        rest.contains("no live data, even after the subscription was made again"),
        "{rest}"
    );
    // No price, averages or signal: the reason instead.
    assert!(rest.starts_with("- - - stalled since "), "{rest}");
    assert_eq!(
        lines_of(
            &stderr,
            "QQQ",
            "still no live data after the subscription was made again"
        )
        .len(),
        1,
        "{stderr}"
    );
    let (live, rest) = row(&stdout, "SPY");
    assert!(
        live >= 10 && !rest.contains("stalled"),
        "SPY: {live} {rest}"
    );
    assert!(
        stdout.contains("silent live feeds made again 1, stalled at the end 1"),
        "{stdout}"
    );
    assert_eq!(gw.seen().realtime_requests_for("QQQ"), 2);
}

/// A stalled stream recovers by itself when data comes again: said in the log, and its row is
/// an ordinary one at the end.
#[test]
fn a_stalled_stream_recovers_when_data_comes_again() {
    // Stopped about 1 s in; made again about 6 s in (silent until 14 s); stalled about 11 s
    // in; flowing again about 14 s in.
    let gw = gateway(qqq_silent_after_24_bars(Some(Duration::from_secs(13))));
    let (stdout, stderr) = run_ok(&gw, "18", "silent_bars = 1");
    let stalled = lines_of(&stderr, "QQQ", "stalled since");
    let flows = lines_of(&stderr, "QQQ", "live data flows again after a stall");
    assert_eq!((stalled.len(), flows.len()), (1, 1), "{stderr}");
    let at = |line: &str| stderr.lines().position(|l| l == line).unwrap();
    assert!(at(stalled[0]) < at(flows[0]), "{stderr}");
    let (live, rest) = row(&stdout, "QQQ");
    assert!(
        live >= 1 && !rest.contains("stalled"),
        "{live} {rest}\n{stderr}"
    );
    assert!(
        stdout.contains("silent live feeds made again 1, stalled at the end 0"),
        "{stdout}"
    );
}

/// On a market holiday (as the contract's hours at the gateway tell it) no data is no
/// silence: nothing is cancelled or made again, nothing is stalled.
#[test]
fn no_stream_is_made_again_outside_the_symbols_hours() {
    let gw = gateway(Behaviour {
        trading_hours: true,
        holidays: vec![Gateway::exchange_today()],
        ..fast_bars()
    });
    let (stdout, stderr) = run_ok(&gw, "12", "silent_bars = 1");
    let seen = gw.seen();
    for symbol in ["SPY", "QQQ"] {
        assert_eq!(seen.realtime_requests_for(symbol), 1, "{symbol}: {seen:?}");
        let (live, rest) = row(&stdout, symbol);
        assert_eq!(live, 0, "{stdout}");
        assert!(!rest.contains("stalled"), "{rest}");
    }
    // None but at the end of the run, if any.
    assert!(seen.realtime_cancels.len() <= 2, "{seen:?}");
    assert!(!stderr.contains("made again"), "{stderr}");
    assert!(!stdout.contains("silent live feeds"), "{stdout}");
}

/// What a session's observer was told of the feeds, and live bars per symbol when it was.
#[derive(Default)]
struct FeedLog {
    live_bars: BTreeMap<String, usize>,
    /// (symbol, state, live bars of that symbol by then).
    feeds: Vec<(String, FeedState, usize)>,
}

impl Observer for FeedLog {
    fn on_live_bar(
        &mut self,
        symbol: &str,
        _bars: &[Bar],
        _signal: Signal,
        _order: Option<&str>,
    ) -> anyhow::Result<()> {
        *self.live_bars.entry(symbol.to_string()).or_default() += 1;
        Ok(())
    }

    fn on_event(&mut self, event: &Event) -> bool {
        if let Event::Feed { symbol, state } = event {
            let seen = self.live_bars.get(symbol).copied().unwrap_or(0);
            self.feeds.push((symbol.clone(), state.clone(), seen));
        }
        true
    }
}

/// Counts the bars it is shown per symbol; holds.
#[derive(Default)]
struct Counter {
    calls: BTreeMap<String, usize>,
}

impl Strategy for Counter {
    fn window(&self) -> usize {
        5
    }

    fn on_bars(&mut self, symbol: &str, _bars: &[Bar]) -> Signal {
        *self.calls.entry(symbol.to_string()).or_default() += 1;
        Signal::Hold
    }
}

/// A session on SPY and QQQ through `gw` for `seconds`, its watchdog's silence `silent_bars`.
fn session_config(gw: &Gateway, seconds: u64, silent_bars: u32) -> Config {
    let mut cfg = Config {
        symbols: vec!["SPY".into(), "QQQ".into()],
        backend: BackendKind::Ibkr,
        ..Config::default()
    };
    cfg.ibkr.gateway = gw.address();
    cfg.ibkr.client_id = 9;
    cfg.ibkr.silent_bars = silent_bars;
    cfg.live.duration_seconds = seconds;
    cfg
}

/// Through a `Session`: after a flap the observer is told each stream was made again, and the
/// strategy of one's own sees bars again for every symbol.
#[test]
fn a_sessions_strategy_sees_bars_again_after_a_farm_flap() {
    let gw = gateway(flap_after_24_bars());
    let mut session =
        Session::start(session_config(&gw, 5, 12), PathBuf::from(common::RUNNER)).unwrap();
    let (mut strategy, mut log) = (Counter::default(), FeedLog::default());
    let report = session
        .run_observed(&mut strategy, &mut log, &AtomicBool::new(false))
        .unwrap();
    let mut resubscribed: Vec<&str> = log
        .feeds
        .iter()
        .filter(|(_, state, _)| matches!(state, FeedState::Resubscribed { reason } if reason.contains("2103, 2104")))
        .map(|(symbol, ..)| symbol.as_str())
        .collect();
    resubscribed.sort();
    assert_eq!(resubscribed, ["QQQ", "SPY"], "{:?}", log.feeds);
    for (symbol, _, before) in &log.feeds {
        let after = log.live_bars[symbol] - before;
        assert!(after >= 2, "{symbol}: {after} live bars after the flap");
        assert_eq!(
            strategy.calls[symbol],
            1 + log.live_bars[symbol],
            "{symbol}"
        );
    }
    assert!(report.symbols.iter().all(|s| s.stalled_since.is_none()));
}

/// Through a `Session`: a stream that stays silent is made again, then reported stalled; the
/// strategy sees nothing of it meanwhile and its last signal is cleared, while the other
/// symbol goes on.
#[test]
fn a_session_is_told_of_a_stalled_stream_and_its_signal_is_cleared() {
    let gw = gateway(qqq_silent_after_24_bars(None));
    let mut session =
        Session::start(session_config(&gw, 13, 1), PathBuf::from(common::RUNNER)).unwrap();
    let (mut strategy, mut log) = (Counter::default(), FeedLog::default());
    let started = Instant::now();
    let report = session
        .run_observed(&mut strategy, &mut log, &AtomicBool::new(false))
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(12));
    let qqq: Vec<_> = log.feeds.iter().filter(|(s, ..)| s == "QQQ").collect();
    assert_eq!(qqq.len(), 2, "{:?}", log.feeds);
    assert!(
        matches!(qqq[0].1, FeedState::Resubscribed { .. }),
        "{qqq:?}"
    );
    assert!(matches!(qqq[1].1, FeedState::Stalled { .. }), "{qqq:?}");
    assert_eq!(
        qqq[1].2,
        log.live_bars.get("QQQ").copied().unwrap_or(0),
        "no bar after"
    );
    assert!(
        log.feeds.iter().all(|(s, ..)| s == "QQQ"),
        "{:?}",
        log.feeds
    );
    let row = |symbol: &str| report.symbols.iter().find(|s| s.symbol == symbol).unwrap();
    assert!(row("QQQ").stalled_since.is_some());
    assert_eq!(
        row("QQQ").last_signal,
        None,
        "no signal from a stalled feed"
    );
    assert_eq!(row("SPY").stalled_since, None);
    assert_eq!(row("SPY").last_signal, Some(Signal::Hold));
    assert!(row("SPY").live_bars >= 10, "{:?}", row("SPY"));
}
