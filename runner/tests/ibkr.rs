//! `runner run --backend ibkr` against the fake TWS gateway on loopback.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tests::gateway::{Behaviour, Gateway};
use tests::{kill_and_wait, within, XorShift};

mod common;

fn ibkr(gw: &Gateway, client_id: &str, extra: &[&str]) -> Command {
    let address = gw.address();
    let mut cmd = common::runner(&[
        "run",
        "--backend",
        "ibkr",
        "--gateway",
        &address,
        "--client-id",
        client_id,
    ]);
    cmd.args(extra);
    cmd
}

fn run(cmd: Command) -> (i32, String, String) {
    common::output(cmd)
}

/// symbol -> history bars, from the summary table.
fn history_counts(stdout: &str) -> Vec<(String, usize)> {
    common::table_rows(stdout)
        .into_iter()
        .map(|cols| (cols[0].to_string(), cols[1].parse().unwrap()))
        .collect()
}

#[test]
fn history_for_7_symbols_through_the_gateway_is_complete() {
    let gw = Gateway::start(Behaviour::default()).unwrap();
    let (code, stdout, stderr) = run(ibkr(&gw, "9", &["--history-only"]));
    assert_eq!(code, 0, "{stderr}");
    let counts = history_counts(&stdout);
    assert_eq!(counts.len(), 7, "{stdout}");
    assert!(counts.iter().all(|(_, n)| *n == 1440), "{stdout}");
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
    let gw = Gateway::start(Behaviour::default()).unwrap();
    let symbols: Vec<String> = (0..50).map(|i| format!("S{i:03}")).collect();
    let (code, stdout, stderr) = run(ibkr(
        &gw,
        "9",
        &["--history-only", "--symbols", &symbols.join(",")],
    ));
    assert_eq!(code, 0, "{stderr}");
    let counts = history_counts(&stdout);
    assert_eq!(counts.len(), 50);
    assert!(counts.iter().all(|(_, n)| *n == 1440), "{stdout}");
    assert!(!stderr.contains("pacing"), "{stderr}");
}

#[test]
fn a_pacing_violation_is_retried_and_the_fetch_completes() {
    let gw = Gateway::start(Behaviour {
        pacing_violations: 1,
        ..Behaviour::default()
    })
    .unwrap();
    let (code, stdout, stderr) = run(ibkr(&gw, "9", &["--history-only", "--symbols", "SPY,QQQ"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        history_counts(&stdout).iter().all(|(_, n)| *n == 1440),
        "{stdout}"
    );
    assert!(stderr.contains("pacing violation; retrying"), "{stderr}");
    assert_eq!(gw.history_requests(), 3);
}

#[test]
fn a_client_id_in_use_is_one_clear_error() {
    let gw = Gateway::start(Behaviour {
        ids_in_use: vec![9],
        ..Behaviour::default()
    })
    .unwrap();
    let (code, _, stderr) = run(ibkr(&gw, "9", &["--history-only"]));
    assert_eq!(code, 1, "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("error: cannot connect to the broker: ClientIdInUse"),
        "{last}"
    );
    assert!(last.contains("client id 9"), "{last}");
}

#[test]
fn accounts_delayed_3_s_are_waited_for() {
    let gw = Gateway::start(Behaviour {
        accounts_delay: Duration::from_secs(3),
        ..Behaviour::default()
    })
    .unwrap();
    let start = Instant::now();
    let (code, stdout, stderr) = run(ibkr(&gw, "9", &["--history-only", "--symbols", "SPY"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(start.elapsed() >= Duration::from_secs(3));
    assert_eq!(history_counts(&stdout), vec![("SPY".to_string(), 1440)]);
}

#[test]
fn an_unknown_contract_is_reported_per_symbol() {
    let gw = Gateway::start(Behaviour {
        unknown_symbols: vec!["ZZZZ".into()],
        ..Behaviour::default()
    })
    .unwrap();
    let (code, stdout, stderr) = run(ibkr(&gw, "9", &["--history-only", "--symbols", "SPY,ZZZZ"]));
    assert_eq!(code, 0, "{stderr}");
    let row = stdout.lines().find(|l| l.starts_with("ZZZZ")).unwrap();
    assert!(row.contains("NoSecurityDefinition"), "{row}");
}

#[test]
fn a_killed_runner_closes_the_gateway_socket_within_2_s() {
    let gw = Gateway::start(Behaviour::default()).unwrap();
    let mut child = ibkr(&gw, "9", &["--duration", "0", "--symbols", "SPY"])
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
    let gw = Gateway::start(Behaviour {
        drop_on_history: vec![3],
        ..Behaviour::default()
    })
    .unwrap();
    let (code, stdout, stderr) = run(ibkr(&gw, "9", &["--history-only"]));
    assert_eq!(code, 0, "{stderr}");
    let counts = history_counts(&stdout);
    assert_eq!(counts.len(), 7);
    assert!(counts.iter().all(|(_, n)| *n == 1440), "{stdout}\n{stderr}");
    // The dropped request was answered on a second connection.
    assert!(gw.connections().len() >= 2, "{:?}", gw.connections());
    assert!(gw.history_requests() >= 8, "{}", gw.history_requests());
}

/// Runs a live phase of `seconds` against `gw`; returns stdout and stderr.
fn live(gw: &Gateway, seconds: &str) -> (String, String) {
    let (code, stdout, stderr) = run(ibkr(
        gw,
        "9",
        &["--duration", seconds, "--symbols", "SPY,QQQ"],
    ));
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
    let gw = Gateway::start(Behaviour {
        realtime_interval: Duration::from_millis(50),
        ..Behaviour::default()
    })
    .unwrap();
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
    let gw = Gateway::start(Behaviour {
        realtime_interval: Duration::from_millis(50),
        drop_after_realtime_bars: Some(30),
        ..Behaviour::default()
    })
    .unwrap();
    let (stdout, stderr) = live(&gw, "5");
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
        stdout.contains("broker connection: lost 1, restored 1"),
        "{stdout}"
    );
    let counts = live_counts(&stdout);
    assert!(counts.iter().all(|n| *n >= 3), "{stdout}\n{stderr}");
}

fn config_file(name: &str, text: &str) -> String {
    common::temp_file("ibkr", name, text)
}

#[test]
fn contracts_follow_the_per_symbol_configuration() {
    let gw = Gateway::start(Behaviour::default()).unwrap();
    let cfg = config_file(
        "contracts.toml",
        "[ibkr.contracts.SHOP]\ncurrency = \"CAD\"\nprimary_exchange = \"TSE\"\n",
    );
    let (code, _, stderr) = run(ibkr(
        &gw,
        "9",
        &["--history-only", "--symbols", "SPY,SHOP", "--config", &cfg],
    ));
    assert_eq!(code, 0, "{stderr}");
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
    let gw = Gateway::start(Behaviour {
        reply_delay: Duration::from_millis(300),
        ..Behaviour::default()
    })
    .unwrap();
    let (code, stdout, stderr) = run(ibkr(&gw, "9", &["--history-only"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        history_counts(&stdout).iter().all(|(_, n)| *n == 1440),
        "{stdout}"
    );
}

#[test]
fn a_gateway_that_never_sends_the_next_valid_id_is_a_timeout_not_a_connection() {
    let gw = Gateway::start(Behaviour {
        no_next_valid_id: true,
        ..Behaviour::default()
    })
    .unwrap();
    let cfg = config_file("handshake.toml", "[bridge]\nhandshake_timeout_ms = 1000\n");
    let (code, _, stderr) = run(ibkr(&gw, "9", &["--history-only", "--config", &cfg]));
    assert_eq!(code, 1, "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("error: cannot connect to the broker: Timeout: handshake with"),
        "{last}"
    );
    assert_eq!(gw.history_requests(), 0);
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
    let gw = Gateway::start(Behaviour {
        drop_on_history: drops.clone(),
        ..Behaviour::default()
    })
    .unwrap();
    let symbols: Vec<String> = (0..100).map(|i| format!("D{i:03}")).collect();
    let (code, stdout, stderr) = run(ibkr(
        &gw,
        "9",
        &["--history-only", "--symbols", &symbols.join(",")],
    ));
    assert_eq!(code, 0, "{stderr}");
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
    let gw = Gateway::start(Behaviour {
        ids_in_use: vec![9, 10],
        ..Behaviour::default()
    })
    .unwrap();
    let cfg = config_file("attempts.toml", "[ibkr]\nclient_id_attempts = 3\n");
    let (code, stdout, stderr) = run(ibkr(
        &gw,
        "9",
        &["--history-only", "--symbols", "SPY", "--config", &cfg],
    ));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(history_counts(&stdout), vec![("SPY".to_string(), 1440)]);
    let ids: Vec<Option<i32>> = gw.connections().iter().map(|c| c.client_id).collect();
    assert_eq!(ids, vec![Some(9), Some(10), Some(11)]);
}

/// `ibapi` logs through the `log` crate: its lines reach the runner's log under the target
/// `ibapi`, filterable on their own, and stay out of it by default.
#[test]
fn ibapi_lines_reach_the_runner_log_under_their_own_target() {
    let gw = Gateway::start(Behaviour::default()).unwrap();
    let mut cmd = ibkr(&gw, "9", &["--history-only", "--symbols", "SPY"]);
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
    let (code, _stdout, stderr) = run(ibkr(&gw, "9", &["--history-only", "--symbols", "SPY"]));
    assert_eq!(code, 0, "{stderr}");
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
    let config = common::temp("ibkr", "connect-wait.toml");
    std::fs::write(&config, "[ibkr]\nconnect_wait_seconds = 30\n").unwrap();
    let cmd = {
        let mut cmd = common::runner(&[
            "run",
            "--backend",
            "ibkr",
            "--gateway",
            &address,
            "--client-id",
            "9",
            "--history-only",
            "--symbols",
            "SPY,QQQ",
            "--config",
            config.to_str().unwrap(),
        ]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    };
    let child = { cmd }.spawn().unwrap();
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
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: cannot connect to the broker: NotConnected"),
        "{last}"
    );
    assert!(last.contains("ibkr.connect_wait_seconds"), "{last}");
}
