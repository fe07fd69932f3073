//! The dashboard through the `runner` binary on the simulated market: every endpoint
//! against a running run, the event stream against the run's own signals file and summary,
//! its read-only contract, and the report file.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::process::Child;
use std::time::Duration;

use common::http::{events, json, request, request_as, Sse};
use common::{finish, runner, spawn_logged, table_rows, wait_for_line, Log};

fn temp(name: &str) -> std::path::PathBuf {
    common::temp("dashboard", name)
}

/// Starts `runner run ARGS --dashboard 127.0.0.1:0`; returns it, its log and the address
/// the dashboard listens on.
fn start(args: &[&str]) -> (Child, Log, SocketAddr) {
    let (child, log, addr, _) = start_seeing(args);
    (child, log, addr)
}

/// [`start`], with the log's lines read up to the dashboard's address.
fn start_seeing(args: &[&str]) -> (Child, Log, SocketAddr, Vec<String>) {
    let mut all = vec!["run", "--dashboard", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let (child, mut log) = spawn_logged(runner(&all));
    let seen = wait_for_line(&mut log, "dashboard: http://");
    let line = seen.last().unwrap();
    let addr = line
        .trim()
        .trim_start_matches("dashboard: http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|e| panic!("{line:?}: {e}"));
    (child, log, addr, seen)
}

/// The figures of a symbol's row in `state`, as the summary prints them.
fn printed(row: &serde_json::Value) -> Vec<String> {
    let two = |v: &serde_json::Value| format!("{:.2}", v.as_f64().expect("a figure"));
    vec![
        row["history_bars"].to_string(),
        row["live_bars"].to_string(),
        two(&row["last_price"]),
        two(&row["fast"]),
        two(&row["slow"]),
        row["signal"].as_str().expect("a signal").to_string(),
    ]
}

#[test]
fn the_event_stream_tells_every_live_bar_in_order_and_ends_with_the_summarys_figures() {
    let signals = temp("signals.csv");
    let (child, log, addr) = start(&[
        "--symbols",
        "SPY,QQQ",
        "--duration",
        "8",
        "--signals",
        signals.to_str().unwrap(),
    ]);
    let stream =
        std::thread::spawn(move || events(addr, "/api/events", "end", Duration::from_secs(60)));
    let (code, stdout, rest) = finish(child, log);
    assert_eq!(code, Some(0), "{stdout}{rest:?}");
    let got: Vec<Sse> = stream.join().unwrap();
    assert_eq!(got[0].event, "state", "{got:?}");
    let end = got.last().unwrap();
    assert_eq!(end.event, "end");
    assert_eq!(end.data["ended"], true);
    // Ids (the board's sequence number after the change each tells) never go back.
    let ids: Vec<u64> = got.iter().map(|e| e.id.expect("an id")).collect();
    assert!(ids.windows(2).all(|w| w[0] <= w[1]), "{ids:?}");

    let csv = std::fs::read_to_string(&signals).unwrap();
    for symbol in ["SPY", "QQQ"] {
        let row = |state: &serde_json::Value| {
            state["symbols"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["symbol"] == symbol)
                .cloned()
                .unwrap()
        };
        let (first, last) = (row(&got[0].data), row(&end.data));
        // The end's figures are the summary's.
        let summary = table_rows(&stdout)
            .into_iter()
            .find(|c| c[0] == symbol)
            .map(|c| c[1..7].iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(printed(&last), summary, "{symbol}: {stdout}");
        assert_eq!(last["state"], "live");

        // Every live bar after the stream began, in order, each once: with those before it
        // (counted in the first state) they are the run's live bars, and their closes are
        // the last rows of the signals file.
        let bars: Vec<&serde_json::Value> = got
            .iter()
            .filter(|e| e.event == "bar" && e.data["symbol"] == symbol)
            .map(|e| &e.data["point"])
            .collect();
        let before = first["live_bars"].as_u64().unwrap() as usize;
        let live = last["live_bars"].as_u64().unwrap() as usize;
        assert!(live >= 4, "{symbol}: {live} live bars");
        assert_eq!(before + bars.len(), live, "{symbol}");
        let times: Vec<i64> = bars.iter().map(|b| b["time"].as_i64().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
        let rows: Vec<&str> = csv
            .lines()
            .filter(|l| l.split(',').nth(1) == Some(symbol))
            .collect();
        let closes: Vec<String> = rows[rows.len() - bars.len()..]
            .iter()
            .map(|l| l.split(',').nth(2).unwrap().to_string())
            .collect();
        let streamed: Vec<String> = bars
            .iter()
            .map(|b| format!("{:.4}", b["close"].as_f64().unwrap()))
            .collect();
        assert_eq!(streamed, closes, "{symbol}");
        assert!(bars.iter().all(|b| b["live"] == true));
    }
}

#[test]
fn each_endpoint_answers_and_nothing_but_get_is_taken() {
    let report = temp("endpoints.html");
    let (child, log, addr) = start(&[
        "--symbols",
        "SPY,AAPL",
        "--duration",
        "6",
        "--trade",
        "--report",
        report.to_str().unwrap(),
    ]);
    // The state: every symbol, in configuration order, with its figures, once the
    // histories are in.
    let mut state = json(addr, "/api/state");
    for _ in 0..200 {
        if state["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] != "waiting")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        state = json(addr, "/api/state");
    }
    let symbols: Vec<&str> = state["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(symbols, ["SPY", "AAPL"]);
    for key in ["positions", "orders", "fills", "health", "run", "seq"] {
        assert!(!state[key].is_null(), "{key} in {state}");
    }
    assert_eq!(state["run"]["trading"], true);
    assert_eq!(state["health"]["broker"], "connected");

    // The bars: the history's (1440 minutes) with the averages from the slow window on.
    let bars = json(addr, "/api/bars/SPY");
    let held = bars["bars"].as_array().unwrap();
    assert!(held.len() >= 1440, "{}", held.len());
    assert!(held[0]["slow"].is_null() && !held[30]["slow"].is_null());
    assert!(held
        .windows(2)
        .all(|w| w[0]["time"].as_i64() < w[1]["time"].as_i64()));

    // Unknown symbols and malformed paths: 404 with a message.
    let (status, body) = request(addr, "GET", "/api/bars/NOPE");
    assert_eq!(status, 404);
    assert!(
        body.contains("unknown symbol \\\"NOPE\\\"") && body.contains("SPY, AAPL"),
        "{body}"
    );
    for path in [
        "/api/bars/",
        "/api/bars/SPY/x",
        "/api/nothing",
        "/api/bars/%FF%FE",
    ] {
        let (status, body) = request(addr, "GET", path);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains("\"error\""), "{path}: {body}");
    }

    // Read-only: any other method, on any path, is a 405 and changes nothing.
    let paths = [
        "/",
        "/api/state",
        "/api/bars/SPY",
        "/api/events",
        "/api/orders",
        "/api/cancel",
        "/nothing",
    ];
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for path in paths {
            let (status, body) = request(addr, method, path);
            assert_eq!(status, 405, "{method} {path}: {body}");
            assert!(body.contains("read-only"), "{method} {path}: {body}");
        }
    }
    // A page elsewhere whose name was pointed at 127.0.0.1 (DNS rebinding) reads nothing;
    // the loopback names of the port do.
    let (status, body) = request_as(
        addr,
        &format!("attacker.example:{}", addr.port()),
        "GET",
        "/api/state",
    );
    assert_eq!(status, 403, "{body}");
    let (status, _) = request_as(
        addr,
        &format!("localhost:{}", addr.port()),
        "GET",
        "/api/state",
    );
    assert_eq!(status, 200);
    // The page and its parts.
    for (path, needle) in [
        ("/", "<title>ibbridge dashboard</title>"),
        ("/app.js", "api/events"),
        ("/lightweight-charts.js", "Lightweight Charts"),
        ("/style.css", "body"),
    ] {
        let (status, body) = request(addr, "GET", path);
        assert_eq!(status, 200, "{path}");
        assert!(body.contains(needle), "{path}");
    }
    let (code, stdout, rest) = finish(child, log);
    assert_eq!(code, Some(0), "{stdout}{rest:?}");
    // What the strategy ordered is all that was ordered.
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("window.IBBRIDGE_REPORT = {"));
    assert!(text.contains("TradingView Lightweight Charts"));
    assert!(!text.contains("src=\"app.js\""), "the script is inlined");
    assert!(rest.iter().any(|l| l.contains("report: ")), "{rest:?}");
}

#[test]
fn an_address_that_cannot_be_bound_is_a_clear_error_before_the_run() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stdout, stderr) = common::output(runner(&[
        "run",
        "--symbols",
        "SPY",
        "--duration",
        "1",
        "--dashboard",
        &addr,
    ]));
    assert_ne!(code, 0, "{stdout}");
    assert!(
        stderr.contains(&format!("the dashboard cannot listen on {addr}")),
        "{stderr}"
    );
    let (code, _, stderr) = common::output(runner(&["check-config", "--dashboard", "localhost"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("dashboard.listen"), "{stderr}");
}

#[test]
fn a_report_is_written_after_ctrl_c_too() {
    let report = temp("interrupted.html");
    let (child, mut log) = spawn_logged(runner(&[
        "run",
        "--symbols",
        "SPY",
        "--duration",
        "0",
        "--report",
        report.to_str().unwrap(),
    ]));
    wait_for_line(&mut log, "live phase");
    // Ctrl-C.
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, stdout, rest) = finish(child, log);
    assert_eq!(code, Some(0), "{stdout}{rest:?}");
    let text = std::fs::read_to_string(&report).expect("the report is written");
    assert!(text.contains("\"ended\":true"));
    assert!(text.contains("\"symbol\":\"SPY\""));
}

/// The health tells a worker's replacement and why, to the page and in the report; a run
/// whose supervisor gives up still leaves its report, and fails.
#[test]
fn a_worker_replaced_is_told_with_its_reason_and_a_failed_run_leaves_its_report() {
    use tests::{signal, ProcessSignal};
    let report = temp("failed.html");
    let config = common::temp_file(
        "dashboard",
        "gives-up.toml",
        "[supervisor]\nmax_restarts = 1\nrestart_window_seconds = 600\n",
    );
    let (child, mut log, addr, seen) = start_seeing(&[
        "--config",
        &config,
        "--symbols",
        "SPY",
        "--duration",
        "20",
        "--report",
        report.to_str().unwrap(),
    ]);
    let stream =
        std::thread::spawn(move || events(addr, "/api/events", "end", Duration::from_secs(60)));
    let pid = seen
        .iter()
        .find_map(|l| common::started_worker(l, 0))
        .expect("the first worker started before the dashboard");
    wait_for_line(&mut log, "live phase");
    signal(pid, ProcessSignal::Kill).unwrap();
    let (pid, _) = common::wait_for_worker(&mut log, 1);
    // The page hears of it within the dashboard's look at the worker (every second).
    let mut health = serde_json::Value::Null;
    for _ in 0..100 {
        health = json(addr, "/api/state")["health"].clone();
        if health["worker_restarts"] == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(health["worker_restarts"], 1, "{health}");
    let replaced = &health["replacements"][0];
    assert_eq!(replaced["generation"], 1, "{health}");
    assert!(
        !replaced["reason"].as_str().unwrap_or_default().is_empty(),
        "{health}"
    );
    signal(pid, ProcessSignal::Kill).unwrap();
    let (code, stdout, rest) = finish(child, log);
    assert_eq!(code, Some(1), "{stdout}{rest:?}");
    let got = stream.join().unwrap();
    let end = got.last().unwrap();
    assert_eq!(end.event, "end", "{got:?}");
    // The log's warnings reached the page as they happened.
    let warned: Vec<&Sse> = got.iter().filter(|e| e.event == "warning").collect();
    assert!(
        warned.iter().any(|w| w.data["text"]
            .as_str()
            .unwrap_or_default()
            .contains("replacing worker")),
        "{warned:?}"
    );
    assert_eq!(end.data["health"]["worker_restarts"], 1, "{}", end.data);
    let text = std::fs::read_to_string(&report).expect("the report is written");
    assert!(
        text.contains("\"worker_restarts\":1"),
        "the report tells the restart"
    );
    assert!(text.contains("\"ended\":true"));
}

/// Clients that connect and never send a byte (or never read) take at most the dashboard's
/// connections: the run goes on, ends on time, and the page still answers once they leave.
#[test]
fn idle_connections_do_not_hold_the_run_up() {
    let (child, log, addr) = start(&["--symbols", "SPY", "--duration", "4"]);
    let idle: Vec<std::net::TcpStream> = (0..100)
        .filter_map(|_| std::net::TcpStream::connect(addr).ok())
        .collect();
    assert!(idle.len() >= 32, "{} connections", idle.len());
    let started = std::time::Instant::now();
    let (code, stdout, rest) = finish(child, log);
    assert_eq!(code, Some(0), "{stdout}{rest:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the run's end waited {:?}",
        started.elapsed()
    );
    assert_eq!(table_rows(&stdout).len(), 1, "{stdout}");
    drop(idle);
}

/// A browser that opens the event stream and never reads it cannot hold the run or its end
/// up: the run ends on time with every live bar, and the stream is cut after the end.
#[test]
fn a_browser_that_never_reads_its_events_holds_nothing_up() {
    use std::io::Write;
    let (child, log, addr) = start(&["--symbols", "SPY,QQQ", "--duration", "5"]);
    let mut stuck = std::net::TcpStream::connect(addr).unwrap();
    write!(stuck, "GET /api/events HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let started = std::time::Instant::now();
    let (code, stdout, rest) = finish(child, log);
    assert_eq!(code, Some(0), "{stdout}{rest:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the run's end waited {:?}",
        started.elapsed()
    );
    for cols in table_rows(&stdout) {
        assert!(cols[2].parse::<usize>().unwrap() >= 3, "{stdout}");
    }
    drop(stuck);
}
