//! Record and replay: a run recorded to a file (`--record`) and replayed through the bridge
//! and a worker (`--replay`) gives the strategy the same bars and the same signals; a
//! recording that is cut short, damaged, of another version or of other symbols is one clear
//! error naming the file (and the offset).

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::process::Stdio;

use common::{output, runner, temp, temp_file};
use worker::recording::Recording;

/// The signals file's rows (without its header).
fn rows(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().skip(1).map(str::to_string).collect()
}

/// `runner run` of SPY and QQQ for `seconds` with the configuration `config` (written to
/// `name`.toml) and `args`; it must exit 0. Its stdout and stderr.
fn run(name: &str, config: &str, seconds: &str, args: &[&str]) -> (String, String) {
    let cfg = temp_file("replay", &format!("{name}.toml"), config);
    let mut all = vec!["run", "--config", &cfg, "--symbols", "SPY,QQQ"];
    all.extend(["--duration", seconds]);
    all.extend(args);
    let (code, stdout, stderr) = output(runner(&all).stdin(Stdio::null()));
    assert_eq!(code, 0, "{stdout}{stderr}");
    (stdout, stderr)
}

/// Records a sim run of SPY and QQQ (4 s at 600x: about 40 live bars each) to `name`.
fn record(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let recording = temp("replay", &format!("{name}.rec"));
    let signals = temp("replay", &format!("{name}-recorded.csv"));
    let args = [
        "--signals",
        signals.to_str().unwrap(),
        "--record",
        recording.to_str().unwrap(),
    ];
    run(name, "[sim]\nspeed = 600\n", "4", &args);
    (recording, signals)
}

#[test]
fn a_recorded_run_replayed_gives_the_strategy_the_same_bars_and_signals() {
    let (recording, recorded) = record("day");
    let read = Recording::open(&recording).unwrap();
    assert_eq!(read.symbols().collect::<Vec<_>>(), vec!["QQQ", "SPY"]);
    assert_eq!(read.bar_seconds, 60);
    assert!(
        read.config.contains("symbols = [\"SPY\", \"QQQ\"]"),
        "{}",
        read.config
    );
    for symbol in ["SPY", "QQQ"] {
        let live = read.live.iter().filter(|l| l.symbol == symbol).count();
        assert!(live >= 10, "{symbol}: {live} live bars recorded");
    }
    // Replayed at 1,000x: the live phase ends with the recording, long before its 60 s.
    let replayed = temp("replay", "day-replayed.csv");
    let args = [
        "--replay",
        recording.to_str().unwrap(),
        "--signals",
        replayed.to_str().unwrap(),
    ];
    let (_, stderr) = run("replay", "[replay]\nspeed = 1000\n", "60", &args);
    assert!(
        stderr.contains("every symbol's bars are over: the live phase ends"),
        "{stderr}"
    );
    let (original, again) = (rows(&recorded), rows(&replayed));
    assert!(original.len() > 2 * (1440 - 30), "{}", original.len());
    assert_eq!(original.len(), again.len());
    // Row by row, per symbol: the bars of different symbols may interleave otherwise (the
    // bars between a history and the first live bar come when their fetch does).
    for symbol in ["SPY", "QQQ"] {
        let of = |rows: &[String]| -> Vec<String> {
            let prefix_free = |r: &&String| r.split(',').nth(1) == Some(symbol);
            rows.iter().filter(prefix_free).cloned().collect()
        };
        let (a, b) = (of(&original), of(&again));
        assert!(a.len() > 1440 - 30 + 10, "{symbol}: {} rows", a.len());
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(x, y, "{symbol}: row {i}");
        }
        assert_eq!(a.len(), b.len(), "{symbol}");
    }
    // The recording holds the strategy's signal on each live bar: the signals file's.
    for l in &read.live {
        let row = original
            .iter()
            .find(|r| {
                let cols: Vec<&str> = r.split(',').collect();
                base::unix_time::parse_utc(cols[0]) == Some(l.bar.time) && cols[1] == l.symbol
            })
            .unwrap_or_else(|| panic!("no row for {} at {}", l.symbol, l.bar.time));
        assert_eq!(row.split(',').nth(5), Some(l.signal.as_str()), "{row}");
        assert_eq!(l.order, None);
    }
}

#[test]
fn a_damaged_recording_is_one_clear_error_naming_the_file_and_offset() {
    let (recording, _) = record("damaged");
    let bytes = std::fs::read(&recording).unwrap();
    let cut = temp("replay", "cut.rec");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    let other = temp("replay", "other.rec");
    let mut v = bytes.clone();
    v[8] = 9;
    std::fs::write(&other, &v).unwrap();
    let cut_text = cut.display().to_string();
    let other_text = other.display().to_string();
    for (file, symbols, expected) in [
        (
            cut_text.as_str(),
            "SPY",
            "is truncated: it ends inside a record at offset",
        ),
        (
            other_text.as_str(),
            "SPY",
            "is of format version 9; this program reads version 1",
        ),
        (
            recording.to_str().unwrap(),
            "SPY,AAPL",
            "AAPL not in the recording",
        ),
    ] {
        let (code, stdout, stderr) =
            output(runner(&["run", "--symbols", symbols, "--replay", file]).stdin(Stdio::null()));
        assert_eq!(code, 2, "{stdout}{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(stderr.contains(file), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}

/// A replay trades on the simulated broker against the recorded prices: with short averages
/// the strategy's signals become orders, every one filled but perhaps the last (placed on the
/// last bar, it may still be working when the run ends and cancels it), none failed.
#[test]
fn a_replay_trades_against_the_recorded_prices() {
    let (recording, _) = record("trading");
    let config =
        "[replay]\nspeed = 1000\n[strategy]\nfast = 2\nslow = 4\n[sim]\nslippage_bps = 0\n";
    let args = ["--replay", recording.to_str().unwrap(), "--trade"];
    let (stdout, _) = run("trading-replay", config, "60", &args);
    let trading = stdout
        .lines()
        .find(|l| l.starts_with("trading: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let orders: usize = trading
        .trim_start_matches("trading: ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(orders >= 2, "{trading}");
    let all_filled = format!("({orders} filled, 0 working, 0 cancelled");
    let last_cancelled = format!("({} filled, 0 working, 1 cancelled", orders - 1);
    assert!(
        (trading.contains(&all_filled) || trading.contains(&last_cancelled))
            && trading.ends_with(" 0 failed"),
        "{trading}"
    );
}
