//! `runner run --backend ibkr` against the fake TWS gateway on loopback.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tests::gateway::{Behaviour, ConnectivityLoss, Gateway, Outage};
use tests::{kill_and_wait, within, XorShift};

mod common;
use common::{fast_bars, gateway, row};

/// `runner run --backend ibkr --gateway <address> --client-id 9 EXTRA`.
fn ibkr_at(address: &str, extra: &[&str]) -> Command {
    let mut cmd = common::runner(&[
        "run",
        "--backend",
        "ibkr",
        "--gateway",
        address,
        "--client-id",
        "9",
    ]);
    cmd.args(extra);
    cmd
}

/// `runner run --backend ibkr --gateway <gw> --client-id 9 EXTRA`.
fn ibkr(gw: &Gateway, extra: &[&str]) -> Command {
    ibkr_at(&gw.address(), extra)
}

fn run(cmd: Command) -> (i32, String, String) {
    common::output(cmd)
}

/// `runner run --history-only EXTRA` against `gw`: exit code, stdout, stderr.
fn history(gw: &Gateway, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["--history-only"];
    args.extend(extra);
    run(ibkr(gw, &args))
}

/// [`history`], checked to exit with 0: stdout, stderr.
#[track_caller]
fn history_ok(gw: &Gateway, extra: &[&str]) -> (String, String) {
    let (code, stdout, stderr) = history(gw, extra);
    assert_eq!(code, 0, "{stderr}");
    (stdout, stderr)
}

/// symbol -> history bars, from the summary table.
fn history_counts(stdout: &str) -> Vec<(String, usize)> {
    common::table_rows(stdout)
        .into_iter()
        .map(|cols| (cols[0].to_string(), cols[1].parse().unwrap()))
        .collect()
}

/// Asserts that every symbol of the summary table has its whole history (1440 bars).
#[track_caller]
fn all_complete(stdout: &str) {
    assert!(
        history_counts(stdout).iter().all(|(_, n)| *n == 1440),
        "{stdout}"
    );
}

#[test]
fn history_for_7_symbols_through_the_gateway_is_complete() {
    let gw = gateway(Behaviour::default());
    let (stdout, stderr) = history_ok(&gw, &[]);
    assert_eq!(history_counts(&stdout).len(), 7, "{stdout}");
    all_complete(&stdout);
    assert_eq!(gw.history_requests(), 7);
    assert!(stderr.contains("gateway ready"), "{stderr}");
    // The worker disconnected cleanly: the gateway saw the client close its socket.
    let records = gw.connections();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].client_id, Some(9));
    assert!(records[0].closed_after.is_some() && !records[0].closed_by_gateway);
}

#[test]
fn history_for_50_symbols_at_once_without_a_pacing_error() {
    let gw = gateway(Behaviour::default());
    let symbols: Vec<String> = (0..50).map(|i| format!("S{i:03}")).collect();
    let (stdout, stderr) = history_ok(&gw, &["--symbols", &symbols.join(",")]);
    assert_eq!(history_counts(&stdout).len(), 50);
    all_complete(&stdout);
    assert!(!stderr.contains("pacing"), "{stderr}");
}

#[test]
fn a_pacing_violation_is_retried_and_the_fetch_completes() {
    let gw = gateway(Behaviour {
        pacing_violations: 1,
        ..Behaviour::default()
    });
    let (stdout, stderr) = history_ok(&gw, &["--symbols", "SPY,QQQ"]);
    all_complete(&stdout);
    assert!(stderr.contains("pacing violation; retrying"), "{stderr}");
    assert_eq!(gw.history_requests(), 3);
}

#[test]
fn a_client_id_in_use_is_one_clear_error() {
    let gw = gateway(Behaviour {
        ids_in_use: vec![9],
        ..Behaviour::default()
    });
    let (code, _, stderr) = history(&gw, &[]);
    assert_eq!(code, 1, "{stderr}");
    let last = common::last_line(&stderr);
    assert!(
        last.starts_with("error: cannot connect to the broker: ClientIdInUse"),
        "{last}"
    );
    assert!(last.contains("client id 9"), "{last}");
}

#[test]
fn accounts_delayed_3_s_are_waited_for() {
    let gw = gateway(Behaviour {
        accounts_delay: Duration::from_secs(3),
        ..Behaviour::default()
    });
    let start = Instant::now();
    let (stdout, _) = history_ok(&gw, &["--symbols", "SPY"]);
    assert!(start.elapsed() >= Duration::from_secs(3));
    assert_eq!(history_counts(&stdout), vec![("SPY".to_string(), 1440)]);
}

#[test]
fn an_unknown_contract_is_reported_per_symbol() {
    let gw = gateway(Behaviour {
        unknown_symbols: vec!["ZZZZ".into()],
        ..Behaviour::default()
    });
    let (stdout, _) = history_ok(&gw, &["--symbols", "SPY,ZZZZ"]);
    let row = stdout.lines().find(|l| l.starts_with("ZZZZ")).unwrap();
    assert!(row.contains("NoSecurityDefinition"), "{row}");
}

#[test]
fn a_killed_runner_closes_the_gateway_socket_within_2_s() {
    let gw = gateway(Behaviour::default());
    let mut child = ibkr(&gw, &["--duration", "0", "--symbols", "SPY"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = BufReader::new(child.stderr.take().unwrap());
    for line in log.lines() {
        if line.unwrap().contains("live phase") {
            break;
        }
    }
    assert_eq!(gw.connections().len(), 1);
    assert!(gw.connections()[0].closed_after.is_none());
    let killed = kill_and_wait(&mut child).unwrap();
    within(Duration::from_secs(10), || {
        gw.connections()[0].closed_after.is_some()
    });
    let took = killed.elapsed();
    assert!(
        gw.connections()[0].closed_after.is_some(),
        "socket never closed"
    );
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
}

#[test]
fn the_gateway_dropping_the_connection_mid_fetch_does_not_lose_a_symbol() {
    let gw = gateway(Behaviour {
        drop_on_history: vec![3],
        ..Behaviour::default()
    });
    let (stdout, stderr) = history_ok(&gw, &[]);
    let counts = history_counts(&stdout);
    assert_eq!(counts.len(), 7);
    assert!(counts.iter().all(|(_, n)| *n == 1440), "{stdout}\n{stderr}");
    // The dropped request was answered on a second connection.
    assert!(gw.connections().len() >= 2, "{:?}", gw.connections());
    assert!(gw.history_requests() >= 8, "{}", gw.history_requests());
}

/// Runs a live phase of `seconds` against `gw`; returns stdout and stderr.
fn live(gw: &Gateway, seconds: &str) -> (String, String) {
    let (code, stdout, stderr) = run(ibkr(gw, &["--duration", seconds, "--symbols", "SPY,QQQ"]));
    assert_eq!(code, 0, "{stderr}");
    (stdout, stderr)
}

fn live_counts(stdout: &str) -> Vec<usize> {
    common::table_rows(stdout)
        .into_iter()
        .map(|cols| cols[2].parse().unwrap())
        .collect()
}

#[test]
fn live_bars_are_built_from_five_second_bars() {
    // A 5-second bar every 50 ms: a minute bar every 0.6 s.
    let gw = gateway(fast_bars());
    let (stdout, stderr) = live(&gw, "3");
    let counts = live_counts(&stdout);
    assert_eq!(counts.len(), 2);
    assert!(counts.iter().all(|n| *n >= 2), "{stdout}\n{stderr}");
    assert_eq!(gw.realtime_requests(), 2);
    // The farm notices of the handshake reached the runner as events.
    for code in ["code=2104", "code=2106", "code=2158"] {
        assert!(stderr.contains(code), "{code} in {stderr}");
    }
}

#[test]
fn live_bars_resume_after_the_gateway_drops_the_connection_mid_stream() {
    let gw = gateway(Behaviour {
        drop_after_realtime_bars: Some(30),
        ..fast_bars()
    });
    // Long enough for a second reconnection attempt (1 s, then 2 s later) on a slow machine.
    let (stdout, stderr) = live(&gw, "8");
    assert!(gw.connections().len() >= 2, "{:?}", gw.connections());
    // Two symbols subscribed, then each made again once: no duplicate.
    assert_eq!(gw.realtime_requests(), 4, "{stderr}");
    // The loss and the return were reported, and the subscriptions made again once each.
    assert!(
        stderr.contains(
            "connection to the gateway back: live subscriptions made again resubscribed=2"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("broker connection lost"), "{stderr}");
    assert!(stderr.contains("broker connection restored"), "{stderr}");
    assert!(
        stdout.contains(&format!(
            "broker connection: lost 1, reconnection attempts {}, restored 1",
            attempts(&stderr)
        )),
        "{stdout}"
    );
    let counts = live_counts(&stdout);
    assert!(counts.iter().all(|n| *n >= 3), "{stdout}\n{stderr}");
}

fn config_file(name: &str, text: &str) -> String {
    common::temp_file("ibkr", name, text)
}

/// `runner run --history-only` of `symbols` against `gw`, with the configuration `toml`
/// (written to the file `name`), checked to exit with 0: stdout, stderr.
#[track_caller]
fn history_with(gw: &Gateway, symbols: &str, name: &str, toml: &str) -> (String, String) {
    let cfg = config_file(name, toml);
    history_ok(gw, &["--symbols", symbols, "--config", &cfg])
}

#[test]
fn contracts_follow_the_per_symbol_configuration() {
    let gw = gateway(Behaviour::default());
    history_with(
        &gw,
        "SPY,SHOP",
        "contracts.toml",
        "[ibkr.contracts.SHOP]\ncurrency = \"CAD\"\nprimary_exchange = \"TSE\"\n",
    );
    let contracts = gw.history_contracts();
    let of = |s: &str| {
        contracts
            .iter()
            .find(|c| c.symbol.as_deref() == Some(s))
            .unwrap()
            .clone()
    };
    let (spy, shop) = (of("SPY"), of("SHOP"));
    assert_eq!(spy.sec_type.as_deref(), Some("STK"));
    assert_eq!(spy.exchange.as_deref(), Some("SMART"));
    assert_eq!(spy.currency.as_deref(), Some("USD"));
    assert_eq!(shop.currency.as_deref(), Some("CAD"));
    assert_eq!(shop.primary_exchange.as_deref(), Some("TSE"));
}

#[test]
fn a_slow_gateway_is_waited_for() {
    let gw = gateway(Behaviour {
        reply_delay: Duration::from_millis(300),
        ..Behaviour::default()
    });
    let (stdout, _) = history_ok(&gw, &[]);
    all_complete(&stdout);
}

#[test]
fn a_gateway_that_never_sends_the_next_valid_id_is_a_timeout_not_a_connection() {
    let gw = gateway(Behaviour {
        no_next_valid_id: true,
        ..Behaviour::default()
    });
    let cfg = config_file("handshake.toml", "[bridge]\nhandshake_timeout_ms = 1000\n");
    let (code, _, stderr) = history(&gw, &["--config", &cfg]);
    assert_eq!(code, 1, "{stderr}");
    let last = common::last_line(&stderr);
    assert!(
        last.starts_with("error: cannot connect to the broker: Timeout: handshake with"),
        "{last}"
    );
    assert_eq!(gw.history_requests(), 0);
    // The socket given up on mid-handshake was closed by the worker, not left open.
    let records = gw.connections();
    assert!(!records.is_empty());
    assert!(
        records
            .iter()
            .all(|r| r.closed_after.is_some() && !r.closed_by_gateway),
        "{records:?}"
    );
}

#[test]
fn every_request_completes_or_fails_declared_while_the_gateway_drops_at_random() {
    // 100 symbols; the gateway drops the connection on 8 requests picked at random.
    let mut rng = XorShift::new(u64::from(std::process::id()) | 1);
    let mut drops = Vec::new();
    while drops.len() < 8 {
        let n = rng.below(100) as u32;
        if !drops.contains(&n) {
            drops.push(n);
        }
    }
    let gw = gateway(Behaviour {
        drop_on_history: drops.clone(),
        ..Behaviour::default()
    });
    let symbols: Vec<String> = (0..100).map(|i| format!("D{i:03}")).collect();
    let (stdout, _) = history_ok(&gw, &["--symbols", &symbols.join(",")]);
    let rows: Vec<&str> = stdout
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(rows.len(), 100);
    for row in rows {
        let cols: Vec<&str> = row.split_whitespace().collect();
        let complete = cols[1] == "1440";
        let declared = row.contains("no data:");
        assert!(complete || declared, "drops {drops:?}: {row}");
    }
    assert!(gw.connections().len() >= 2, "{:?}", gw.connections());
}

#[test]
fn the_next_client_ids_are_tried_when_allowed() {
    let gw = gateway(Behaviour {
        ids_in_use: vec![9, 10],
        ..Behaviour::default()
    });
    let (stdout, _) = history_with(
        &gw,
        "SPY",
        "attempts.toml",
        "[ibkr]\nclient_id_attempts = 3\n",
    );
    assert_eq!(history_counts(&stdout), vec![("SPY".to_string(), 1440)]);
    let ids: Vec<Option<i32>> = gw.connections().iter().map(|c| c.client_id).collect();
    assert_eq!(ids, vec![Some(9), Some(10), Some(11)]);
}

/// `ibapi` logs through the `log` crate: its lines reach the runner's log under the target
/// `ibapi`, filterable on their own, and stay out of it by default.
#[test]
fn ibapi_lines_reach_the_runner_log_under_their_own_target() {
    let gw = gateway(Behaviour::default());
    let mut cmd = ibkr(&gw, &["--history-only", "--symbols", "SPY"]);
    cmd.env("RUNNER_LOG", "info,ibapi=debug");
    let (code, _stdout, stderr) = run(cmd);
    assert_eq!(code, 0, "{stderr}");
    let ibapi: Vec<&str> = stderr.lines().filter(|l| l.contains(" ibapi: ")).collect();
    assert!(!ibapi.is_empty(), "no ibapi line in {stderr}");
    assert!(
        ibapi.iter().all(|l| l.contains("origin=\"ibapi")),
        "{ibapi:?}"
    );
    assert!(
        !stderr
            .lines()
            .any(|l| l.contains(" worker: ") && l.contains("origin=\"ibapi")),
        "ibapi lines under the worker target: {stderr}"
    );
    // At the default level, ibapi's debug lines are not shown.
    let (_, stderr) = history_ok(&gw, &["--symbols", "SPY"]);
    assert!(
        !stderr.lines().any(|l| l.contains("DEBUG ibapi:")),
        "{stderr}"
    );
}

/// A free loopback address nobody listens on (yet).
fn unused_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// IB Gateway takes a minute or more to log in after its restart and is often started by the
/// same script as the runner: with `ibkr.connect_wait_seconds`, a gateway not up yet is waited
/// for, with a line each attempt.
#[test]
fn a_gateway_that_is_not_up_yet_is_waited_for() {
    let address = unused_address();
    let config = config_file("connect-wait.toml", "[ibkr]\nconnect_wait_seconds = 30\n");
    let mut cmd = ibkr_at(
        &address,
        &[
            "--history-only",
            "--symbols",
            "SPY,QQQ",
            "--config",
            &config,
        ],
    );
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let gw = Gateway::start_on(&address, Behaviour::default()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        history_counts(&stdout),
        vec![("SPY".to_string(), 1440), ("QQQ".to_string(), 1440)]
    );
    let waits = stderr
        .lines()
        .filter(|l| l.contains("gateway not ready yet"))
        .count();
    assert!(waits >= 2, "{stderr}");
    assert!(stderr.contains("attempt=1"), "{stderr}");
    assert_eq!(gw.connections().len(), 1);
}

/// Without a wait, a gateway that is down is a clear error at once, which says how to wait.
#[test]
fn a_gateway_that_is_down_fails_at_once_and_says_how_to_wait() {
    let address = unused_address();
    let (code, _stdout, stderr) = run(common::runner(&[
        "run",
        "--backend",
        "ibkr",
        "--gateway",
        &address,
        "--history-only",
    ]));
    assert_eq!(code, 1, "{stderr}");
    let last = common::last_line(&stderr);
    assert!(
        last.starts_with("error: cannot connect to the broker: NotConnected"),
        "{last}"
    );
    assert!(last.contains("ibkr.connect_wait_seconds"), "{last}");
}

/// `runner run EXTRA` against `gw` with ibapi's log shown: exit code, stdout, stderr.
fn run_logged(gw: &Gateway, extra: &[&str]) -> (i32, String, String) {
    let mut cmd = ibkr(gw, extra);
    cmd.env("RUNNER_LOG", "info,ibapi=info");
    run(cmd)
}

/// [`run_logged`], checked to exit with 0: stdout, stderr.
#[track_caller]
fn run_logged_ok(gw: &Gateway, extra: &[&str]) -> (String, String) {
    let (code, stdout, stderr) = run_logged(gw, extra);
    assert_eq!(code, 0, "{stdout}{stderr}");
    (stdout, stderr)
}

/// Runs `runner run` for `seconds` of live bars on SPY and QQQ against `gw`, with ibapi's log
/// shown; returns stdout and stderr after checking the exit code is 0.
#[track_caller]
fn live_day(gw: &Gateway, seconds: &str) -> (String, String) {
    run_logged_ok(gw, &["--duration", seconds, "--symbols", "SPY,QQQ"])
}

/// Fast bars, and the gateway's link to IB lost after 24 bars for 600 ms, with the market
/// data lost (1101) or kept (1102).
fn link_lost_after_24_bars(data_lost: bool) -> Gateway {
    gateway(Behaviour {
        connectivity_loss: Some(ConnectivityLoss {
            after_bars: 24,
            lasts: Duration::from_millis(600),
            data_lost,
        }),
        ..fast_bars()
    })
}

/// Fast bars, and the gateway itself gone after 24 bars for `lasts`.
fn outage_after_24_bars(lasts: Duration) -> Gateway {
    gateway(Behaviour {
        outage: Some(Outage {
            after_bars: 24,
            lasts,
        }),
        ..fast_bars()
    })
}

/// Fast bars, and QQQ's refused for want of a market data subscription (354).
fn qqq_not_subscribed() -> Gateway {
    gateway(Behaviour {
        realtime_refused: vec![Behaviour::not_subscribed("QQQ")],
        ..fast_bars()
    })
}

/// Asserts the gateway received exactly `times` real-time bar requests for each of `symbols`.
fn subscribed_times(gw: &Gateway, symbols: &[&str], times: u32) {
    let seen = gw.seen();
    for symbol in symbols {
        assert_eq!(
            seen.realtime_requests_for(symbol),
            times,
            "{symbol}: {seen:?}"
        );
    }
}

/// IB 1100 then 1101: the gateway cancelled every real-time stream server-side. The runner
/// says so, the worker makes each subscription again exactly once, and bars resume.
#[test]
fn after_1101_every_live_subscription_is_made_again_once_and_bars_resume() {
    let gw = link_lost_after_24_bars(true);
    let (stdout, stderr) = live_day(&gw, "6");
    assert!(
        stderr.contains("broker connection lost (Connectivity between IB and"),
        "{stderr}"
    );
    assert!(
        stderr.contains("market data lost: live subscriptions made again code=1101 resubscribed=2"),
        "{stderr}"
    );
    subscribed_times(&gw, &["SPY", "QQQ"], 2);
    // 24 five-second bars over two symbols make at most one minute bar each before the loss;
    // the rest came after it.
    for symbol in ["SPY", "QQQ"] {
        let (live, _) = row(&stdout, symbol);
        assert!(live >= 3, "{symbol}: {live} live bars\n{stdout}");
    }
    assert!(
        stdout.contains(
            "broker connection: lost 1, reconnection attempts 0, restored 1 (market data lost and subscriptions made again 1, kept 0)"
        ),
        "{stdout}"
    );
}

/// IB 1100 then 1102: market data kept, nothing to make again; bars resume on their own.
#[test]
fn after_1102_the_subscriptions_are_kept() {
    let gw = link_lost_after_24_bars(false);
    let (stdout, stderr) = live_day(&gw, "5");
    assert!(stderr.contains("live subscriptions kept"), "{stderr}");
    subscribed_times(&gw, &["SPY", "QQQ"], 1);
    assert!(row(&stdout, "SPY").0 >= 3, "{stdout}");
    assert!(
        stdout.contains("restored 1 (market data lost and subscriptions made again 0, kept 1)"),
        "{stdout}"
    );
}

/// A subscription the gateway accepts and then refuses (354): the refusal reaches the runner
/// with its code, and the symbol's row says why instead of "stale".
#[test]
fn a_refused_live_subscription_is_explained_in_its_row() {
    let gw = qqq_not_subscribed();
    let (stdout, stderr) = live_day(&gw, "3");
    let (live, why) = row(&stdout, "QQQ");
    assert_eq!(live, 0, "{stdout}");
    assert!(
        why.contains("refused: no market data permission or subscription")
            && why.contains("354")
            && why.contains("Requested market data is not subscribed."),
        "{why}"
    );
    assert!(!why.contains("stale"), "{why}");
    assert!(row(&stdout, "SPY").0 >= 2, "{stdout}");
    assert!(stderr.contains("live data refused"), "{stderr}");
    assert!(
        stdout.contains("live data refused for 1 symbol(s)"),
        "{stdout}"
    );
}

/// 10197: another session of the same user holds the market data.
#[test]
fn a_competing_live_session_is_named() {
    let gw = gateway(Behaviour {
        realtime_refused: vec![Behaviour::competing_session("SPY")],
        ..fast_bars()
    });
    let (stdout, _stderr) = live_day(&gw, "2");
    let (_, why) = row(&stdout, "SPY");
    assert!(
        why.contains("refused: a competing live session holds the market data")
            && why.contains("10197"),
        "{why}"
    );
}

/// The gateway process goes away (its daily restart) and comes back: the runner says so,
/// `ibapi` reconnects, every subscription is made again once, and bars resume.
#[test]
fn an_outage_of_the_gateway_is_ridden_out_and_bars_resume() {
    let gw = outage_after_24_bars(Duration::from_secs(2));
    let (stdout, stderr) = live_day(&gw, "10");
    assert!(
        stderr.contains("broker connection lost (the connection to the gateway closed)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("live subscriptions made again resubscribed=2"),
        "{stderr}"
    );
    assert!(gw.seen().refused_connections >= 1, "{:?}", gw.seen());
    // Each attempt is reported: the first (after 1 s) finds the gateway still down.
    assert!(
        stderr.contains("reconnecting to the gateway: attempt 1"),
        "{stderr}"
    );
    subscribed_times(&gw, &["SPY", "QQQ"], 2);
    for symbol in ["SPY", "QQQ"] {
        assert!(row(&stdout, symbol).0 >= 3, "{symbol}\n{stdout}\n{stderr}");
    }
    // ibapi's own account of its reconnect is in the log.
    assert!(stderr.lines().any(|l| l.contains(" ibapi: ")), "{stderr}");
}

/// With `ibkr.reconnect_attempts`, a gateway that stays away is given up on after that many
/// attempts: each attempt is reported, then the run ends at once with exit 1 and says why.
#[test]
fn reconnection_attempts_and_giving_up_reach_the_runner() {
    let gw = outage_after_24_bars(Duration::from_secs(120));
    let cfg = config_file("give-up.toml", "[ibkr]\nreconnect_attempts = 2\n");
    let started = Instant::now();
    let (code, stdout, stderr) = run_logged(
        &gw,
        &["--duration", "60", "--symbols", "SPY,QQQ", "--config", &cfg],
    );
    // Attempts 1 s and 2 s after the loss, then the run ends: long before its 60 s.
    assert!(started.elapsed() < Duration::from_secs(30), "{stderr}");
    assert_eq!(code, 1, "{stdout}{stderr}");
    for attempt in 1..=2 {
        assert!(
            stderr.contains(&format!("reconnecting to the gateway: attempt {attempt}")),
            "{stderr}"
        );
    }
    assert!(!stderr.contains("attempt 3"), "{stderr}");
    assert!(
        stdout.contains("broker connection: lost 1, reconnection attempts 2, restored 0"),
        "{stdout}"
    );
    let last = common::last_line(&stderr);
    assert!(
        last.contains("gave up reconnecting after 2 attempt(s)"),
        "{last}"
    );
}

/// With `ibkr.delayed_fallback`, a symbol whose live bars are refused for want of a
/// subscription (354) gets bars built from the delayed feed: the connection asks for delayed
/// data, the row says so and why, and the permitted symbol keeps its live bars.
#[test]
fn a_symbol_without_live_data_falls_back_to_delayed_data_and_says_so() {
    let gw = qqq_not_subscribed();
    let cfg = config_file(
        "delayed-fallback.toml",
        "[history]\nbar_seconds = 5\nduration_seconds = 3600\n[ibkr]\ndelayed_fallback = true\n",
    );
    let (stdout, stderr) = run_logged_ok(
        &gw,
        &["--duration", "20", "--symbols", "SPY,QQQ", "--config", &cfg],
    );
    let seen = gw.seen();
    // Delayed data asked for once, at connect; ticks asked for QQQ alone, once.
    assert_eq!(seen.market_data_types, vec![3], "{seen:?}");
    assert_eq!(seen.market_data_requests.get("QQQ"), Some(&1), "{seen:?}");
    assert_eq!(seen.market_data_requests.get("SPY"), None, "{seen:?}");
    assert!(
        stderr.contains("bars built from delayed data instead"),
        "{stderr}"
    );
    // 20 s of 5-second windows on the worker's clock: the joined one is not sent, at least
    // one whole one is.
    let (live, rest) = row(&stdout, "QQQ");
    assert!(live >= 1, "{stdout}\n{stderr}");
    assert!(
        rest.contains(
            "delayed data, live refused: no market data permission or subscription: [354]"
        ),
        "{rest}"
    );
    let (spy_live, spy_rest) = row(&stdout, "SPY");
    assert!(spy_live >= 3, "{stdout}");
    assert!(!spy_rest.contains("delayed"), "{spy_rest}");
    assert!(
        stdout.contains("live data refused for 0 symbol(s), delayed data for 1"),
        "{stdout}"
    );
}

/// A paper account without live data subscriptions asks for delayed data: the gateway is told
/// once at connect (`ibapi` repeats it after a reconnect), and the history comes.
#[test]
fn delayed_market_data_is_asked_for_at_connect() {
    let gw = gateway(Behaviour::default());
    let (stdout, stderr) = history_with(
        &gw,
        "SPY",
        "delayed.toml",
        "[ibkr]\nmarket_data_type = \"delayed\"\n",
    );
    assert_eq!(history_counts(&stdout), vec![("SPY".to_string(), 1440)]);
    assert_eq!(gw.seen().market_data_types, vec![3], "{stderr}");
    // Live (the default) is not sent: the gateway starts with it.
    let gw = gateway(Behaviour::default());
    history_ok(&gw, &["--symbols", "SPY"]);
    assert_eq!(gw.seen().market_data_types, Vec::<i32>::new());
}

/// A request the runner gives up on (its deadline passed) is cancelled in the worker and at
/// the gateway, so a slow symbol cannot hold a slot for ever.
#[test]
fn a_history_request_past_its_deadline_is_cancelled_at_the_gateway() {
    let gw = gateway(Behaviour {
        reply_delay: Duration::from_secs(4),
        ..Behaviour::default()
    });
    let cfg = config_file("short-history.toml", "[history]\ntimeout_seconds = 1\n");
    // A live phase keeps the connection open while the cancels go out.
    let mut cmd = ibkr(
        &gw,
        &["--duration", "2", "--symbols", "SPY,QQQ", "--config", &cfg],
    );
    cmd.env("RUNNER_LOG", "info,worker=debug");
    let (code, stdout, stderr) = run(cmd);
    assert_eq!(code, 0, "{stderr}");
    for symbol in ["SPY", "QQQ"] {
        let (_, why) = row(&stdout, symbol);
        assert!(
            why.contains("no reply before the deadline"),
            "{symbol}: {why}"
        );
    }
    assert_eq!(
        stderr.matches("history cancelled by the runner").count(),
        2,
        "{stderr}"
    );
    let seen = gw.seen();
    assert_eq!(seen.history_cancels.len(), 2, "{seen:?}\n{stderr}");
}

/// The real gateway answers history in the exchange's time zone
/// (`YYYYMMDD HH:MM:SS US/Eastern`) and, for regular trading hours, only within sessions: a
/// day of one-minute bars ending on a Friday evening is that Friday's 390 bars.
#[test]
fn history_the_way_the_real_gateway_answers_it() {
    // Friday 2023-11-17 21:00 UTC (16:00 US/Eastern, the close).
    let gw = gateway(Behaviour {
        realistic_history: true,
        history_end: Some(1_700_254_800),
        ..Behaviour::default()
    });
    let (stdout, stderr) = history_ok(&gw, &["--symbols", "SPY"]);
    assert_eq!(
        history_counts(&stdout),
        vec![("SPY".to_string(), 390)],
        "{stderr}"
    );
}

/// After a worker dies the gateway keeps its client id taken for a few seconds (326): the new
/// worker waits for it (`ibkr.connect_wait_seconds`) and live bars come back.
#[test]
fn a_client_id_still_taken_after_a_worker_died_is_waited_for() {
    let gw = gateway(Behaviour {
        client_id_linger: Duration::from_secs(2),
        ..fast_bars()
    });
    let cfg = config_file("linger.toml", "[ibkr]\nconnect_wait_seconds = 20\n");
    let (child, mut log) = common::spawn_logged(ibkr(
        &gw,
        &["--duration", "10", "--symbols", "SPY", "--config", &cfg],
    ));
    let (worker, mut seen) = common::wait_for_worker(&mut log, 0);
    seen.extend(common::wait_for_line(&mut log, "live phase"));
    tests::signal(worker, tests::ProcessSignal::Kill).unwrap();
    let (code, stdout, rest) = common::finish(child, log);
    assert_eq!(code, Some(0), "{stdout}{seen:?}{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("gateway not ready yet") && l.contains("client id")),
        "{rest:?}"
    );
    assert!(
        rest.iter()
            .any(|l| l.contains("worker started generation=1")),
        "{rest:?}"
    );
    assert!(
        rest.iter().any(|l| l.contains("subscriptions restored")),
        "{rest:?}"
    );
    let (live, _) = row(&stdout, "SPY");
    assert!(live >= 3, "{stdout}");
}

/// A gateway's bad day in one run: its link to IB lost and restored with data lost (1101),
/// then an outage of the gateway itself, and a symbol without a market data subscription. The
/// run ends with exit code 0, live bars for every permitted symbol after each interruption,
/// the refused symbol explained, and `ibapi`'s own lines in the log.
#[test]
fn a_bad_day_at_the_gateway_is_ridden_out() {
    let gw = gateway(Behaviour {
        connectivity_loss: Some(ConnectivityLoss {
            after_bars: 40,
            lasts: Duration::from_millis(800),
            data_lost: true,
        }),
        outage: Some(Outage {
            after_bars: 120,
            lasts: Duration::from_secs(2),
        }),
        realtime_refused: vec![Behaviour::not_subscribed("QQQ")],
        ..fast_bars()
    });
    let (stdout, stderr) = run_logged_ok(&gw, &["--duration", "16", "--symbols", "SPY,AAPL,QQQ"]);
    // Both interruptions, each followed by the subscriptions made again.
    let summary = format!("broker connection: lost 2, reconnection attempts {}, restored 2 (market data lost and subscriptions made again 2, kept 0), live data refused for 1 symbol(s), delayed data for 0", attempts(&stderr));
    assert!(stdout.contains(&summary), "{stdout}");
    let seen = gw.seen();
    for symbol in ["SPY", "AAPL"] {
        assert_eq!(seen.realtime_requests_for(symbol), 3, "{symbol}: {seen:?}");
        // Bars came after the last interruption too: more than the first two phases allow.
        let (live, _) = row(&stdout, symbol);
        assert!(live >= 6, "{symbol}: {live}\n{stdout}");
    }
    let (live, why) = row(&stdout, "QQQ");
    assert_eq!(live, 0);
    assert!(
        why.contains("refused: no market data permission or subscription"),
        "{why}"
    );
    assert!(stderr.lines().any(|l| l.contains(" ibapi: ")), "{stderr}");
}

/// The reconnection attempts the runner logged.
fn attempts(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.contains("reconnecting to the gateway: attempt"))
        .count()
}

/// The ISO time of the signals file (`YYYY-MM-DDTHH:MM:SSZ`) of Unix second `t`.
fn iso(t: i64) -> String {
    let (y, mo, d, h, mi, s) = base::unix_time::civil_time(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// A gateway's day at the speed of the clock, over four and a half minutes: real-time bars
/// every 5 s of real time, the link to IB lost and restored with data lost (1101), then the
/// gateway itself gone for two minutes (its daily restart: `ibapi` reconnects with backoff,
/// its attempts 30 s apart by then), a symbol without a subscription on delayed data and one
/// refused outright. Exit code 0; every attempt reported; live bars for every permitted symbol
/// and for the delayed one after the outage; the refused one explained; `ibapi`'s lines in
/// the log.
#[test]
fn a_day_with_a_two_minute_outage_is_ridden_out() {
    let gw = gateway(Behaviour {
        realtime_interval: Duration::from_secs(5),
        connectivity_loss: Some(ConnectivityLoss {
            after_bars: 8,
            lasts: Duration::from_secs(5),
            data_lost: true,
        }),
        outage: Some(Outage {
            after_bars: 24,
            lasts: Duration::from_secs(120),
        }),
        realtime_refused: vec![
            Behaviour::not_subscribed("QQQ"),
            Behaviour::competing_session("MSFT"),
        ],
        ..Behaviour::default()
    });
    let cfg = config_file(
        "day.toml",
        "[history]\nbar_seconds = 10\nduration_seconds = 3600\n[ibkr]\ndelayed_fallback = true\n",
    );
    let signals = common::temp("ibkr", "day.csv");
    let (stdout, stderr) = run_logged_ok(
        &gw,
        &[
            "--duration",
            "270",
            "--symbols",
            "SPY,AAPL,QQQ,MSFT",
            "--config",
            &cfg,
            "--signals",
            signals.to_str().unwrap(),
        ],
    );
    let seen = gw.seen();
    assert_eq!(seen.outage_ends.len(), 1, "{seen:?}");
    // Two minutes of backoff (1, 2, 3, 5, 8, 13, 21, 30, 30 s ...): eight attempts at least.
    let attempts = attempts(&stderr);
    assert!(attempts >= 8, "{attempts}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "broker connection: lost 2, reconnection attempts {attempts}, restored 2 (market data lost and subscriptions made again 2, kept 0), live data refused for 1 symbol(s), delayed data for 1"
        )),
        "{stdout}"
    );
    for symbol in ["SPY", "AAPL"] {
        assert_eq!(seen.realtime_requests_for(symbol), 3, "{symbol}: {seen:?}");
    }
    // Bars after the outage, for the live symbols and the delayed one.
    let after = iso(seen.outage_ends[0]);
    let csv = std::fs::read_to_string(&signals).unwrap();
    for symbol in ["SPY", "AAPL", "QQQ"] {
        let later = csv
            .lines()
            .filter(|l| l.split(',').nth(1) == Some(symbol))
            .filter(|l| l.split(',').next().is_some_and(|t| t > after.as_str()))
            .count();
        assert!(later >= 1, "{symbol}: no signal after {after}\n{stdout}");
    }
    let (live, why) = row(&stdout, "MSFT");
    assert_eq!(live, 0);
    assert!(
        why.contains("refused: a competing live session holds the market data"),
        "{why}"
    );
    let (_, qqq) = row(&stdout, "QQQ");
    assert!(qqq.contains("delayed data, live refused"), "{qqq}");
    assert!(stderr.lines().any(|l| l.contains(" ibapi: ")), "{stderr}");
}

/// The broker paces historical requests whichever worker sent them: a worker that replaces a
/// dead one is told what was sent in the last ten minutes.
#[test]
fn pacing_survives_a_worker_replacement() {
    let gw = gateway(Behaviour {
        reply_delay: Duration::from_secs(2),
        ..Behaviour::default()
    });
    let (child, mut log) =
        common::spawn_logged(ibkr(&gw, &["--history-only", "--symbols", "SPY,QQQ,AAPL"]));
    let (worker, _) = common::wait_for_worker(&mut log, 0);
    // The rest of the log is read meanwhile, so that the runner never waits on it.
    let finished = std::thread::spawn(move || common::finish(child, log));
    // Every request is at the gateway, unanswered (answers take 2 s): the worker dies.
    assert!(within(Duration::from_secs(10), || gw.history_requests() >= 3).is_some());
    tests::signal(worker, tests::ProcessSignal::Kill).unwrap();
    let (code, stdout, rest) = finished.join().unwrap();
    assert_eq!(code, Some(0), "{stdout}{rest:?}");
    let resumed = rest
        .iter()
        .find(|l| l.contains("pacing resumed"))
        .unwrap_or_else(|| panic!("{rest:?}"));
    assert!(resumed.contains("count=3"), "{resumed}");
    all_complete(&stdout);
}

/// History refused by the gateway (162) says which refusal in the symbol's row: no data for
/// the request, or no permission for the data.
#[test]
fn history_refusals_are_told_apart_in_the_rows() {
    let gw = gateway(Behaviour {
        history_no_data: vec!["QQQ".into()],
        history_no_permissions: vec!["AAPL".into()],
        ..Behaviour::default()
    });
    let (stdout, _) = history_ok(&gw, &["--symbols", "SPY,QQQ,AAPL"]);
    let (_, qqq) = row(&stdout, "QQQ");
    assert!(
        qqq.contains("no data: NoData:") && qqq.contains("HMDS query returned no data"),
        "{qqq}"
    );
    let (_, aapl) = row(&stdout, "AAPL");
    assert!(
        aapl.contains("no data: NotPermitted:") && aapl.contains("No market data permissions"),
        "{aapl}"
    );
    assert_eq!(history_counts(&stdout)[0], ("SPY".to_string(), 1440));
}

/// A name IB knows several instruments by is an error that lists them, never a guess; naming
/// the primary exchange (or the contract id) picks one.
#[test]
fn an_ambiguous_contract_lists_its_candidates_and_a_primary_exchange_picks_one() {
    let gw = gateway(Behaviour {
        ambiguous_symbols: vec!["SPY".into()],
        ..Behaviour::default()
    });
    let (stdout, _) = history_ok(&gw, &["--symbols", "SPY,QQQ"]);
    let (_, why) = row(&stdout, "SPY");
    assert!(
        why.contains("no data: AmbiguousContract: SPY names 2 instruments: con_id")
            && why.contains("on NASDAQ")
            && why.contains("on NYSE")
            && why.contains("[ibkr.contracts.SPY]"),
        "{why}"
    );
    assert_eq!(history_counts(&stdout)[1], ("QQQ".to_string(), 1440));
    // No history request for the ambiguous name went out.
    let asked: Vec<Option<String>> = gw
        .history_contracts()
        .into_iter()
        .map(|c| c.symbol)
        .collect();
    assert_eq!(asked, vec![Some("QQQ".to_string())]);

    let gw = gateway(Behaviour {
        ambiguous_symbols: vec!["SPY".into()],
        ..Behaviour::default()
    });
    let (stdout, _) = history_with(
        &gw,
        "SPY",
        "spy-nyse.toml",
        "[ibkr.contracts.SPY]\nprimary_exchange = \"NYSE\"\n",
    );
    assert_eq!(history_counts(&stdout), vec![("SPY".to_string(), 1440)]);
    let spy = &gw.history_contracts()[0];
    assert_eq!(spy.primary_exchange.as_deref(), Some("NYSE"));
    assert!(spy.con_id.is_some_and(|id| id > 0), "{spy:?}");
}

/// Contracts beyond SMART-routed stocks: a future by month and local symbol, a name with a
/// space at IB, and one named by contract id (nothing looked up).
#[test]
fn futures_names_with_spaces_and_contract_ids_reach_the_gateway_as_configured() {
    let gw = gateway(Behaviour::default());
    let (stdout, _) = history_with(
        &gw,
        "ES,BRK.B,AAPL",
        "contracts-kinds.toml",
        "[ibkr.contracts.ES]\nsec_type = \"FUT\"\nexchange = \"CME\"\nexpiry = \"202612\"\nlocal_symbol = \"ESZ6\"\n\
         [ibkr.contracts.\"BRK.B\"]\nib_symbol = \"BRK B\"\n\
         [ibkr.contracts.AAPL]\ncon_id = 265598\n",
    );
    all_complete(&stdout);
    let contracts = gw.history_contracts();
    let of = |s: &str| {
        contracts
            .iter()
            .find(|c| c.symbol.as_deref() == Some(s))
            .unwrap_or_else(|| panic!("no request for {s:?}: {contracts:?}"))
            .clone()
    };
    let es = of("ES");
    assert_eq!(es.sec_type.as_deref(), Some("FUT"));
    assert_eq!(es.exchange.as_deref(), Some("CME"));
    assert_eq!(
        es.last_trade_date_or_contract_month.as_deref(),
        Some("202612")
    );
    assert_eq!(es.local_symbol.as_deref(), Some("ESZ6"));
    assert!(of("BRK B").con_id.is_some_and(|id| id > 0));
    assert_eq!(of("AAPL").con_id, Some(265_598));
    // AAPL was named by its id: not looked up.
    assert!(
        !gw.seen().contract_details.contains(&"AAPL".to_string()),
        "{:?}",
        gw.seen()
    );
}

/// IB answers a few thousand bars per request and refuses longer ones (162 "Time length
/// exceed max."): three hours of 5-second bars come in three paced pages of an hour, every
/// bar once.
#[test]
fn a_long_history_is_fetched_in_pages_ib_accepts() {
    let gw = gateway(Behaviour {
        step_sizes: true,
        history_end: Some(1_700_254_800),
        ..Behaviour::default()
    });
    let (stdout, stderr) = history_with(
        &gw,
        "SPY",
        "paging.toml",
        "[history]\nbar_seconds = 5\nduration_seconds = 10800\n",
    );
    assert_eq!(
        history_counts(&stdout),
        vec![("SPY".to_string(), 2160)],
        "{stderr}"
    );
    assert_eq!(gw.history_requests(), 3);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("history fetched in pages") && l.contains("pages=3")),
        "{stderr}"
    );
    assert!(!stderr.contains("Time length exceed max"), "{stderr}");
}
