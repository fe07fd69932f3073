//! The dashboard and the report in a real browser: headless Chromium, driven through its
//! DevTools protocol, opens the live page of a run on the simulated market, waits until
//! every symbol's chart has candles, compares the numbers on the page with `/api/state`,
//! checks that nothing was logged as an error, and saves screenshots under `target/`; then
//! opens the run's report file the same way.
//!
//! It needs `chromium` (or the browser `CHROMIUM` names), so a plain `cargo test` skips it;
//! `.ci/run` installs Chromium and runs it.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::http::{json, request};
use common::{finish, runner, spawn_logged, table_rows, wait_for_line};
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// Where the screenshots go.
fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

/// Headless Chromium, killed when dropped.
struct Browser {
    child: Child,
    _profile: PathBuf,
}

impl Browser {
    /// Starts the browser; returns it and the DevTools port.
    fn launch() -> (Browser, u16) {
        let program = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = common::temp("browser", "profile");
        let mut child = Command::new(&program)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=1400,2200",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} starts: {e}"));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut port = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.split("DevTools listening on ws://127.0.0.1:").nth(1) {
                port = rest.split('/').next().and_then(|p| p.parse().ok());
                break;
            }
        }
        // The rest of its log is drained, so that it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let port = port.expect("the browser tells its DevTools port");
        (
            Browser {
                child,
                _profile: profile,
            },
            port,
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A page of the browser, driven through the DevTools protocol.
struct Page {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next: u64,
    /// Errors the page logged: console errors, exceptions, failed loads.
    errors: Vec<String>,
}

impl Page {
    /// The browser's first page.
    fn open(port: u16) -> Page {
        let devtools: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let (status, body) = request(devtools, "GET", "/json/list");
        assert_eq!(status, 200, "{body}");
        let targets: Value = serde_json::from_str(&body).unwrap();
        let url = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page")
            .to_string();
        let (ws, _) = tungstenite::connect(url).expect("DevTools connects");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        }
        let mut page = Page {
            ws,
            next: 0,
            errors: Vec::new(),
        };
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            page.call(domain, json!({}));
        }
        page
    }

    /// Calls `method`; returns its result, noting the events that came meanwhile.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let text = json!({ "id": id, "method": method, "params": params }).to_string();
        self.ws.send(Message::text(text)).unwrap();
        loop {
            let msg = self.ws.read().expect("DevTools answers");
            let Message::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"] == id {
                assert!(v["error"].is_null(), "{method}: {v}");
                return v["result"].clone();
            }
            self.note(&v);
        }
    }

    fn note(&mut self, event: &Value) {
        let p = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.consoleAPICalled") if p["type"] == "error" => {
                self.errors.push(format!("console: {}", p["args"]))
            }
            Some("Runtime.exceptionThrown") => self
                .errors
                .push(format!("exception: {}", p["exceptionDetails"])),
            Some("Log.entryAdded") if p["entry"]["level"] == "error" => {
                self.errors.push(format!("log: {}", p["entry"]))
            }
            _ => {}
        }
    }

    fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
    }

    /// What the page shows (`window.__dashboard.snapshot()`), `null` before its script ran.
    fn snapshot(&mut self) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({
                "expression": "JSON.stringify(window.__dashboard ? window.__dashboard.snapshot() : null)",
                "returnByValue": true,
            }),
        );
        serde_json::from_str(r["result"]["value"].as_str().unwrap_or("null")).unwrap()
    }

    /// The snapshot once every one of `symbols` has candles on its chart.
    fn wait_for_candles(&mut self, symbols: &[&str]) -> Value {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.snapshot();
            if symbols
                .iter()
                .all(|sym| s["symbols"][sym]["candles"].as_u64().unwrap_or(0) > 0)
            {
                return s;
            }
            assert!(Instant::now() < until, "no candles for every symbol: {s}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Saves what the page shows as a PNG at `path`, and says where.
    fn screenshot(&mut self, path: &Path) {
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64(r["data"].as_str().unwrap());
        assert_eq!(&png[1..4], b"PNG");
        std::fs::write(path, png).unwrap();
        println!("screenshot: {}", path.display());
    }
}

fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            other => panic!("not base64: {other}"),
        }
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.as_bytes().chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').collect();
        let mut n = 0u32;
        for (i, &c) in data.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..data.len().saturating_sub(1)]);
    }
    out
}

/// A figure on the page (two decimals) against the state's.
fn same_figure(shown: &Value, value: &Value) -> bool {
    match (shown.as_str(), value.as_f64()) {
        (Some("-"), None) => true,
        (Some(text), Some(v)) => text
            .parse::<f64>()
            .is_ok_and(|t| (t - v).abs() <= 0.005 + 1e-9),
        _ => false,
    }
}

/// Whether the page shows `state`'s figures for every symbol.
fn shows(page: &Value, state: &Value) -> Result<(), String> {
    for row in state["symbols"].as_array().unwrap() {
        let sym = row["symbol"].as_str().unwrap();
        let shown = &page["symbols"][sym];
        for key in ["last_price", "fast", "slow"] {
            if !same_figure(&shown[key], &row[key]) {
                return Err(format!(
                    "{sym} {key}: page {} state {}",
                    shown[key], row[key]
                ));
            }
        }
        let signal = row["signal"].as_str().unwrap_or("-");
        if shown["signal"] != signal
            || shown["live_bars"].as_str() != Some(row["live_bars"].to_string().as_str())
            || shown["history_bars"].as_str() != Some(row["history_bars"].to_string().as_str())
        {
            return Err(format!("{sym}: page {shown} state {row}"));
        }
    }
    Ok(())
}

#[test]
#[ignore = "needs chromium: `.ci/run` installs it and runs `cargo test -p runner --test browser -- --ignored`"]
fn the_dashboard_and_the_report_show_the_run_in_a_real_browser() {
    let symbols = ["SPY", "QQQ", "AAPL"];
    let report = common::temp("browser", "report.html");
    let (child, mut log) = spawn_logged(runner(&[
        "run",
        "--symbols",
        &symbols.join(","),
        "--duration",
        "20",
        "--trade",
        "--dashboard",
        "127.0.0.1:0",
        "--report",
        report.to_str().unwrap(),
    ]));
    let seen = wait_for_line(&mut log, "dashboard: http://");
    let addr: SocketAddr = seen
        .last()
        .unwrap()
        .trim()
        .trim_start_matches("dashboard: http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let (_browser, port) = Browser::launch();
    let mut page = Page::open(port);
    page.navigate(&format!("http://{addr}/"));
    page.wait_for_candles(&symbols);

    // The page's numbers are the state's, read when both are at the same change.
    let mut last = String::new();
    let mut matched = false;
    for _ in 0..100 {
        let shown = page.snapshot();
        let state = json(addr, "/api/state");
        if shown["seq"] == state["seq"] {
            match shows(&shown, &state) {
                Ok(()) => {
                    matched = true;
                    break;
                }
                Err(e) => last = e,
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(matched, "the page never showed /api/state: {last}");
    page.screenshot(&shots().join("dashboard.png"));
    let shown = page.snapshot();
    assert_eq!(shown["errors"], json!([]), "{shown}");
    assert!(page.errors.is_empty(), "{:?}", page.errors);

    let (code, stdout, rest) = finish(child, log);
    assert_eq!(code, Some(0), "{stdout}{rest:?}");

    // The report, offline: the run's charts, with the summary's figures.
    page.navigate(&format!(
        "file://{}",
        report.canonicalize().unwrap().display()
    ));
    let shown = page.wait_for_candles(&symbols);
    assert_eq!(shown["report"], true);
    for cols in table_rows(&stdout) {
        let row = &shown["symbols"][cols[0]];
        assert_eq!(row["history_bars"], cols[1], "{row}");
        assert_eq!(row["live_bars"], cols[2], "{row}");
        assert_eq!(row["last_price"], cols[3], "{row}");
        assert_eq!(row["fast"], cols[4], "{row}");
        assert_eq!(row["slow"], cols[5], "{row}");
    }
    page.screenshot(&shots().join("report.png"));
    let shown = page.snapshot();
    assert_eq!(shown["errors"], json!([]), "{shown}");
    assert!(page.errors.is_empty(), "{:?}", page.errors);
}
