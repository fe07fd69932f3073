//! A hub and its clients as processes: one worker shared by runners and commands by hand,
//! one subscription per symbol however many clients stream it, order references in each
//! client's namespace, and each party killed or stopped: a client, the hub's worker, the hub.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base::signal::ProcessSignal;
use common::{output, row, runner};
use runner::hub::{read_status, HubStatus};

/// How long the tests' clients wait for a hub that went away.
const WAIT: &str = "wait_seconds = 20\n";

/// A hub of its own for one test: its directory, its configuration, its process.
struct TestHub {
    dir: PathBuf,
    name: String,
    config: String,
    journal: PathBuf,
    child: Option<Child>,
}

impl TestHub {
    /// Starts hub `name` (simulated market, a journal of its own) with `extra` settings of
    /// the `[hub]` section (its clients read the same file) and waits for its status.
    fn start(name: &str, extra: &str) -> TestHub {
        TestHub::start_with(name, "", extra)
    }

    /// [`TestHub::start`], with `top` at the head of its configuration (before any section).
    fn start_with(name: &str, top: &str, extra: &str) -> TestHub {
        TestHub::start_full(name, top, "", extra)
    }

    /// [`TestHub::start_with`], with `sim` settings of the `[sim]` section.
    fn start_full(name: &str, top: &str, sim: &str, extra: &str) -> TestHub {
        let dir = common::temp("hub", &format!("{name}-dir"));
        let _ = std::fs::remove_dir_all(&dir);
        let journal = common::temp("hub", &format!("{name}.journal"));
        let _ = std::fs::remove_file(&journal);
        let config = common::temp_file(
            "hub",
            &format!("{name}.toml"),
            &format!(
                "{top}[sim]\n{sim}orders_file = \"{}\"\n[hub]\n{extra}",
                journal.display()
            ),
        );
        let mut hub = TestHub {
            dir,
            name: name.to_string(),
            config,
            journal,
            child: None,
        };
        hub.spawn();
        hub
    }

    fn spawn(&mut self) {
        let child = self
            .command(&["hub", "--name", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("hub starts");
        self.child = Some(child);
        self.wait_for("the hub's first status", |_| true);
    }

    /// `runner ARGS --config <the hub's>` with the hub's directory.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = runner(args);
        cmd.args(["--config", &self.config])
            .env("IBBRIDGE_HUB_DIR", &self.dir);
        cmd
    }

    /// A client's command: `ARGS --hub <name> --client CLIENT`.
    fn client(&self, client: &str, args: &[&str]) -> Command {
        let mut cmd = self.command(args);
        cmd.args(["--hub", &self.name, "--client", client]);
        cmd
    }

    fn status(&self) -> Option<HubStatus> {
        read_status(&self.dir, &self.name).ok()
    }

    /// Waits (at most 20 s) for a status that `ok` accepts.
    fn wait_for(&self, what: &str, ok: impl Fn(&HubStatus) -> bool) -> HubStatus {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.status().filter(|s| ok(s)) {
                return s;
            }
            assert!(Instant::now() < until, "{what}: {:?}", self.status());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("hub running").id()
    }

    /// Kills the hub with SIGKILL and reaps it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            let _ = base::signal::send(child.id(), ProcessSignal::Terminate);
        }
        if let Some(mut child) = self.child.take() {
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn sig(pid: u32, signal: ProcessSignal) {
    base::signal::send(pid, signal).expect("signal sent");
}

fn term(pid: u32) {
    sig(pid, ProcessSignal::Terminate);
}

fn stop(pid: u32) {
    sig(pid, ProcessSignal::Stop);
}

fn resume(pid: u32) {
    sig(pid, ProcessSignal::Continue);
}

fn feeds(s: &HubStatus) -> BTreeSet<String> {
    s.feeds.iter().map(|f| f.symbol.clone()).collect()
}

fn set(symbols: &[&str]) -> BTreeSet<String> {
    symbols.iter().map(|s| s.to_string()).collect()
}

/// Times of `symbol`'s rows in a signals file, each 60 s after the one before: no bar
/// missing, repeated or out of order, history and live alike.
fn contiguous_times(signals: &Path, symbol: &str) -> usize {
    let text = std::fs::read_to_string(signals).expect("signals written");
    let times: Vec<i64> = text
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(1) == Some(symbol))
        .map(|l| {
            let t = l.split(',').next().unwrap_or_default();
            base::unix_time::parse_utc(t).unwrap_or_else(|| panic!("time {t}"))
        })
        .collect();
    for pair in times.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            60,
            "{symbol}: {} then {}",
            pair[0],
            pair[1]
        );
    }
    times.len()
}

fn wait_exit(child: &mut Child, within: Duration) -> i32 {
    let until = Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < until, "client did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn clients_share_one_subscription_per_symbol_and_each_gets_every_bar_in_order() {
    // As at IB, a subscription's first bar is the next to start: the runner fetches the bars
    // between its history and that one, so none is missing where history meets live.
    let hub = TestHub::start_full("share", "", "skip_forming_bar = true\n", WAIT);
    let sig_a = common::temp("hub", "share-a.csv");
    let sig_b = common::temp("hub", "share-b.csv");
    let mut a = hub
        .client(
            "a",
            &["run", "--duration", "4", "--symbols", "SPY,QQQ,AAPL"],
        )
        .args(["--signals", &sig_a.to_string_lossy()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut b = hub
        .client("b", &["run", "--duration", "4", "--symbols", "AAPL,MSFT"])
        .args(["--signals", &sig_b.to_string_lossy()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let both = hub.wait_for("both clients streaming", |s| {
        s.clients.len() == 2 && feeds(s).len() == 4
    });
    assert_eq!(feeds(&both), set(&["AAPL", "MSFT", "QQQ", "SPY"]));
    let aapl = both.feeds.iter().find(|f| f.symbol == "AAPL").unwrap();
    assert_eq!(
        aapl.clients.iter().cloned().collect::<BTreeSet<_>>(),
        set(&["a", "b"])
    );
    assert_eq!(wait_exit(&mut a, Duration::from_secs(60)), 0);
    assert_eq!(wait_exit(&mut b, Duration::from_secs(60)), 0);
    let out_a = std::io::read_to_string(a.stdout.take().unwrap()).unwrap();
    let out_b = std::io::read_to_string(b.stdout.take().unwrap()).unwrap();
    for (out, symbols) in [
        (&out_a, &["SPY", "QQQ", "AAPL"][..]),
        (&out_b, &["AAPL", "MSFT"]),
    ] {
        for symbol in symbols {
            let (live, _) = row(out, symbol);
            assert!(live >= 2, "{symbol}: {live} live bars\n{out}");
        }
    }
    for symbol in ["SPY", "QQQ", "AAPL"] {
        assert!(contiguous_times(&sig_a, symbol) > 1000);
    }
    for symbol in ["AAPL", "MSFT"] {
        assert!(contiguous_times(&sig_b, symbol) > 1000);
    }
    // The last client gone, nothing is streamed at the broker. Five histories were asked for
    // (AAPL's fetched once for both, asked at once, or twice, one after the other), and at
    // most one fill of the seam per client and symbol (each, unless a subscription was made
    // just as a bar started): never more.
    let after = hub.wait_for("everything released", |s| {
        s.clients.is_empty() && s.feeds.is_empty()
    });
    assert_eq!(after.attached, 2);
    let asked = after.history_upstream + after.history_shared;
    assert!((5..=10).contains(&asked), "{asked} history requests");
    assert_eq!(after.worker_restarts, 0);
}

#[test]
fn a_client_killed_or_stopped_is_let_go_and_the_others_go_on() {
    let hub = TestHub::start("kill", WAIT);
    let mut doomed = hub
        .client(
            "doomed",
            &["run", "--duration", "0", "--symbols", "SPY,QQQ"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stays = hub
        .client(
            "stays",
            &["run", "--duration", "0", "--symbols", "QQQ,MSFT"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    hub.wait_for("both streaming", |s| {
        s.clients.len() == 2 && feeds(s).len() == 3
    });

    // Stopped: its heartbeat stands still; the hub lets it go within a second (its status
    // a second later at most) and releases SPY.
    stop(doomed.id());
    let stopped = Instant::now();
    let alone = hub.wait_for("the stopped client let go", |s| {
        s.clients.len() == 1 && feeds(s) == set(&["MSFT", "QQQ"])
    });
    assert!(
        stopped.elapsed() < Duration::from_secs(3),
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(alone.clients[0].name, "stays");
    // Woken, it finds the hub gone from its connection, attaches again and streams again.
    resume(doomed.id());
    hub.wait_for("the woken client back", |s| {
        s.clients.len() == 2 && feeds(s).len() == 3
    });

    // Killed: its socket closes; the same.
    let _ = doomed.kill();
    let _ = doomed.wait();
    let killed = Instant::now();
    hub.wait_for("the killed client let go", |s| {
        s.clients.len() == 1 && feeds(s) == set(&["MSFT", "QQQ"])
    });
    assert!(
        killed.elapsed() < Duration::from_secs(3),
        "{:?}",
        killed.elapsed()
    );
    let before = hub.status().unwrap().bars_out;
    hub.wait_for("bars still flowing to the other", |s| {
        s.bars_out >= before + 2
    });
    term(stays.id());
    assert_eq!(wait_exit(&mut stays, Duration::from_secs(30)), 0);
    let out = std::io::read_to_string(stays.stdout.take().unwrap()).unwrap();
    assert!(row(&out, "MSFT").0 >= 2, "{out}");
}

#[test]
fn a_hub_that_goes_away_is_waited_for_and_attached_to_again() {
    let mut hub = TestHub::start("away", WAIT);
    let signals = common::temp("hub", "away.csv");
    let mut client = hub
        .client("patient", &["run", "--duration", "0", "--symbols", "SPY"])
        .args(["--signals", &signals.to_string_lossy()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    hub.wait_for("the client streaming", |s| {
        s.clients.len() == 1 && !s.feeds.is_empty()
    });
    let first = hub.pid();
    hub.kill();
    std::thread::sleep(Duration::from_secs(2));
    hub.spawn();
    assert_ne!(hub.pid(), first);
    let back = hub.wait_for("the client attached again", |s| {
        s.clients.len() == 1 && feeds(s) == set(&["SPY"])
    });
    assert_eq!(back.clients[0].name, "patient");
    hub.wait_for("its bars flowing again", |s| s.bars_out >= 2);
    term(client.id());
    assert_eq!(wait_exit(&mut client, Duration::from_secs(30)), 0);
    let err = std::io::read_to_string(client.stderr.take().unwrap()).unwrap();
    assert!(err.contains("replacing worker"), "{err}");
    // What it streamed across the hub's absence: no bar repeated or out of order (the ones
    // of the absence are missing: that is a gap, not an error).
    let text = std::fs::read_to_string(&signals).unwrap();
    let times: Vec<&str> = text.lines().skip(1).map(|l| &l[..20]).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
}

#[test]
fn a_hub_that_does_not_come_back_fails_the_client_with_a_clear_error() {
    let mut hub = TestHub::start("gone", "wait_seconds = 2\n");
    let mut client = hub
        .client("waits", &["run", "--duration", "0", "--symbols", "SPY"])
        .env("RUNNER_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    hub.wait_for("the client streaming", |s| s.clients.len() == 1);
    hub.kill();
    let code = wait_exit(&mut client, Duration::from_secs(40));
    assert_eq!(code, 1);
    let err = std::io::read_to_string(client.stderr.take().unwrap()).unwrap();
    assert!(
        err.lines()
            .last()
            .is_some_and(|l| l.starts_with("error: hub gone did not come back within 2 s")),
        "{err}"
    );
}

#[test]
fn orders_of_two_clients_with_one_reference_are_two_orders_each_seen_only_by_its_own() {
    let hub = TestHub::start("orders", WAIT);
    for client in ["alice", "bob"] {
        let (code, stdout, stderr) = output(hub.client(
            client,
            &[
                "order", "buy", "SPY", "5", "--ref", "same-1", "--limit", "1000",
            ],
        ));
        assert_eq!(code, 0, "{stdout}\n{stderr}");
    }
    // Again: the same order, found, not placed twice.
    let (code, stdout, _) = output(hub.client(
        "alice",
        &[
            "order", "buy", "SPY", "5", "--ref", "same-1", "--limit", "1000",
        ],
    ));
    assert_eq!(code, 0);
    let journal = std::fs::read_to_string(&hub.journal).unwrap();
    let placed: Vec<&str> = journal
        .lines()
        .filter(|l| l.starts_with("P\t"))
        .map(|l| l.split('\t').nth(3).unwrap())
        .collect();
    assert_eq!(placed, ["alice.same-1", "bob.same-1"], "{stdout}");
    let (code, listed, _) = output(hub.client("alice", &["orders"]));
    assert_eq!(code, 0);
    assert!(listed.contains("same-1"), "{listed}");
    assert!(
        !listed.contains("bob") && !listed.contains("alice."),
        "{listed}"
    );
    assert_eq!(listed.matches("same-1").count(), 1, "{listed}");
    // A reference too long for the namespace is refused before anything leaves.
    let long = "r".repeat(40);
    let (code, _, stderr) = output(hub.client(
        "alice",
        &[
            "order", "buy", "SPY", "5", "--ref", &long, "--limit", "1000",
        ],
    ));
    assert_ne!(code, 0);
    assert!(
        stderr.contains("through a hub, as client alice, a reference is 1 to 34"),
        "{stderr}"
    );
}

#[test]
fn the_hubs_worker_killed_is_replaced_and_its_clients_go_on() {
    let hub = TestHub::start("worker", WAIT);
    let mut client = hub
        .client(
            "steady",
            &["run", "--duration", "0", "--symbols", "SPY,QQQ"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = hub.wait_for("streaming", |s| s.clients.len() == 1 && s.feeds.len() == 2);
    let worker = up.worker_pid.expect("a worker");
    sig(worker, ProcessSignal::Kill);
    let replaced = hub.wait_for("the worker replaced", |s| {
        s.worker_restarts == 1 && s.worker_pid.is_some_and(|p| p != worker)
    });
    hub.wait_for("bars flowing again", |s| {
        s.bars_out >= replaced.bars_out + 2
    });
    term(client.id());
    assert_eq!(wait_exit(&mut client, Duration::from_secs(30)), 0);
    let out = std::io::read_to_string(client.stdout.take().unwrap()).unwrap();
    assert!(
        out.contains("worker restarts: 0"),
        "the client saw no restart:\n{out}"
    );
    let after = hub.wait_for("let go", |s| s.clients.is_empty());
    assert_eq!(after.refused, 0);
    let _ = hub.pid();
}

/// A client of this test process, attached through the bridge itself.
fn attach(hub: &TestHub, client: &str) -> bridge::Client {
    let cfg = bridge::ClientConfig::default();
    let channel = bridge::channel::attach_to_hub(&hub.dir, &hub.name, client, &cfg.channel)
        .expect("attached");
    bridge::Client::over(channel, &cfg).expect("client").0
}

fn resting_order(order_ref: &str) -> bridge::protocol::Request {
    use bridge::protocol::{OrderRequest, OrderType, Side, TimeInForce};
    bridge::protocol::Request::PlaceOrder(OrderRequest {
        order_ref: order_ref.to_string(),
        symbol: "SPY".into(),
        side: Side::Buy,
        quantity: 1.0,
        // Far under the market: it rests.
        order_type: OrderType::Limit { price: 1.0 },
        tif: TimeInForce::Gtc,
    })
}

fn journal_lines(hub: &TestHub, kind: &str) -> Vec<String> {
    std::fs::read_to_string(&hub.journal)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(kind))
        .map(|l| {
            l.split('\t')
                .nth(if kind == "C\t" { 2 } else { 3 })
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[test]
fn a_client_that_writes_garbage_is_cut_off_and_the_others_are_not() {
    use bridge::protocol::{Reply, Request};
    let hub = TestHub::start("garbage", WAIT);
    let good = attach(&hub, "good");
    let (mut bad_tx, _bad_rx, _bad_control) = {
        let cfg = bridge::ClientConfig::default();
        let c = bridge::channel::attach_to_hub(&hub.dir, &hub.name, "bad", &cfg.channel).unwrap();
        (c.sender, c.receiver, c.control)
    };
    hub.wait_for("both attached", |s| s.clients.len() == 2);
    // A frame that is no message at all.
    bad_tx.send_bytes(&[0xff; 64], None).unwrap();
    let cut = hub.wait_for("the bad client cut off", |s| s.clients.len() == 1);
    assert_eq!(cut.clients[0].name, "good");
    let reply = good
        .request(
            Request::Ping {
                payload: vec![1, 2],
            },
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(
        reply,
        Reply::Pong {
            payload: vec![1, 2]
        }
    );
}

#[test]
fn a_departed_clients_working_orders_are_kept_or_cancelled_as_configured() {
    use bridge::protocol::Reply;
    for (policy, cancelled) in [("keep", false), ("cancel", true)] {
        let hub = TestHub::start(
            &format!("departed-{policy}"),
            &format!("{WAIT}departed_orders = \"{policy}\"\n"),
        );
        let client = attach(&hub, "leaver");
        let placed = client
            .request(resting_order("rest-1"), Duration::from_secs(10))
            .unwrap();
        assert!(
            matches!(placed, Reply::Order(ref r) if r.request.order_ref == "rest-1"),
            "{placed:?}"
        );
        // Gone without a word (no cancel, no shutdown): the hub sees its end closed.
        drop(client);
        hub.wait_for("the client gone", |s| s.clients.is_empty());
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(journal_lines(&hub, "P\t"), ["leaver.rest-1"]);
        let cancels = journal_lines(&hub, "C\t");
        assert_eq!(!cancels.is_empty(), cancelled, "{policy}: {cancels:?}");
    }
}

#[test]
fn many_attaches_and_detaches_some_cut_short_leave_nothing_and_the_hub_does_not_grow() {
    let hub = TestHub::start("churn", WAIT);
    let rss = |pid: u32| -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        text.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|k| k.parse().ok())
            .unwrap_or(0)
    };
    let socket = bridge::channel::socket_path(&hub.dir, &hub.name);
    let cycle = |i: usize| match i % 4 {
        // Knocks and goes before saying anything.
        0 => drop(std::os::unix::net::UnixStream::connect(&socket).unwrap()),
        // Says something that is not an attach request.
        1 => {
            use std::io::Write;
            let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
            let _ = s.write_all(b"hello?\n");
        }
        // Attaches and closes at once, or after a round trip.
        _ => {
            let client = attach(&hub, &format!("churn-{}", i % 8));
            if i % 4 == 3 {
                client
                    .request(
                        bridge::protocol::Request::Ping { payload: vec![] },
                        Duration::from_secs(5),
                    )
                    .unwrap();
            }
        }
    };
    for i in 0..50 {
        cycle(i);
    }
    // Processes killed at random points of their attach.
    for i in 0..10u64 {
        let mut child = hub
            .client("killed", &["positions"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(5 + 13 * i));
        let _ = child.kill();
        let _ = child.wait();
    }
    hub.wait_for("all gone", |s| s.attached >= 25 && s.clients.is_empty());
    let warm = rss(hub.pid());
    for i in 50..200 {
        cycle(i);
    }
    // 100 of the 200 cycles attached (and some of the killed processes did).
    hub.wait_for("all counted and gone", |s| {
        s.attached >= 100 && s.clients.is_empty()
    });
    let grown = rss(hub.pid()).saturating_sub(warm);
    assert!(
        grown < 4096,
        "the hub grew by {grown} KiB over 150 attaches"
    );
    let mut left: Vec<String> = std::fs::read_dir(&hub.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["churn.lock", "churn.sock", "churn.status.json"]);
    let shm: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("ibbridge-{}-", hub.pid())))
                .collect()
        })
        .unwrap_or_default();
    assert!(shm.is_empty(), "{shm:?}");
}

/// Through the fake TWS gateway: two runners streaming overlapping symbols, a third program
/// fetching history again and again, and orders by hand, all on one hub: the gateway sees one
/// connection, one real-time subscription per symbol, one order per reference.
#[test]
fn through_the_gateway_a_desk_of_programs_is_one_connection_and_one_subscription_per_symbol() {
    let gw = common::gateway(common::fast_bars());
    let top = format!(
        "backend = \"ibkr\"\n[ibkr]\ngateway = \"{}\"\nclient_id = 9\n",
        gw.address()
    );
    let hub = TestHub::start_with("desk", &top, WAIT);
    let spawn = |client: &str, symbols: &str| {
        hub.client(client, &["run", "--duration", "4", "--symbols", symbols])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut a = spawn("a", "SPY,QQQ,AAPL");
    let mut b = spawn("b", "AAPL,MSFT");
    hub.wait_for("both streaming", |s| feeds(s).len() == 4);
    for _ in 0..3 {
        let (code, stdout, stderr) = output(hub.client(
            "notebook",
            &["run", "--history-only", "--symbols", "SPY,MSFT"],
        ));
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        assert_eq!(row(&stdout, "SPY").0, 0);
    }
    for _ in 0..2 {
        let (code, stdout, stderr) = output(hub.client(
            "hand",
            &[
                "order", "buy", "SPY", "1", "--ref", "gw-1", "--limit", "1", "--wait", "0",
            ],
        ));
        assert_eq!(code, 0, "{stdout}\n{stderr}");
    }
    assert_eq!(wait_exit(&mut a, Duration::from_secs(60)), 0);
    assert_eq!(wait_exit(&mut b, Duration::from_secs(60)), 0);
    let out_a = std::io::read_to_string(a.stdout.take().unwrap()).unwrap();
    let out_b = std::io::read_to_string(b.stdout.take().unwrap()).unwrap();
    for (out, symbols) in [
        (&out_a, &["SPY", "QQQ", "AAPL"][..]),
        (&out_b, &["AAPL", "MSFT"]),
    ] {
        for symbol in symbols {
            assert!(row(out, symbol).0 >= 1, "{symbol}\n{out}");
        }
    }
    hub.wait_for("everything released", |s| {
        s.clients.is_empty() && s.feeds.is_empty()
    });
    assert_eq!(gw.connections().len(), 1, "one connection for the desk");
    let seen = gw.seen();
    for symbol in ["SPY", "QQQ", "AAPL", "MSFT"] {
        assert_eq!(seen.realtime_requests_for(symbol), 1, "{symbol}: {seen:?}");
    }
    assert_eq!(gw.place_order_messages("hand.gw-1"), 1);
}

#[test]
fn a_hub_refuses_clients_beyond_its_limit_with_the_limit_named() {
    let hub = TestHub::start("full", &format!("{WAIT}max_clients = 1\n"));
    let first = attach(&hub, "first");
    hub.wait_for("the first attached", |s| s.clients.len() == 1);
    let cfg = bridge::ClientConfig::default();
    let e =
        bridge::channel::attach_to_hub(&hub.dir, &hub.name, "second", &cfg.channel).unwrap_err();
    assert_eq!(
        e.to_string(),
        "hub full refused: the hub serves at most 1 clients (hub.max_clients)"
    );
    drop(first);
    hub.wait_for("the first gone", |s| s.clients.is_empty());
    // Room again.
    let _second = attach(&hub, "second");
    let after = hub.wait_for("the second attached", |s| s.clients.len() == 1);
    assert_eq!(
        (after.clients[0].name.as_str(), after.refused),
        ("second", 1)
    );
}

/// A long weekend of the simulated market's calendar behind a hub, at 14,400 times real time
/// (Friday 11:00 US/Eastern to Monday past the close in 20 s): the gateway's daily restarts
/// (Friday and Saturday 23:45) and its weekly re-login (Sunday) are the hub's alone. Two
/// clients trading and streaming overlapping symbols are told of each loss and restoration,
/// get every bar of every session in order (Monday's whole session after the restarts, no bar
/// repeated, none outside a session), and every order they placed exists once.
#[test]
fn a_hubs_clients_ride_through_a_long_weekend_of_restarts() {
    // Friday 2026-12-04 16:00 UTC.
    let hub = TestHub::start_full(
        "weekend",
        "[trading]\nenabled = true\n",
        "speed = 14400\nstart = 1796400000\ncalendar = true\nskip_forming_bar = true\n",
        WAIT,
    );
    let sig_a = common::temp("hub", "weekend-a.csv");
    let sig_b = common::temp("hub", "weekend-b.csv");
    let spawn = |client: &str, symbols: &str, signals: &Path| {
        hub.client(client, &["run", "--duration", "20", "--symbols", symbols])
            .args(["--signals", &signals.to_string_lossy()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut a = spawn("a", "SPY,QQQ,AAPL", &sig_a);
    let mut b = spawn("b", "AAPL,MSFT", &sig_b);
    for (child, signals, symbols) in [
        (&mut a, &sig_a, &["SPY", "QQQ", "AAPL"][..]),
        (&mut b, &sig_b, &["AAPL", "MSFT"]),
    ] {
        let code = wait_exit(child, Duration::from_secs(90));
        let stdout = std::io::read_to_string(child.stdout.take().unwrap()).unwrap();
        let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
        assert_eq!(code, 0, "{stdout}{stderr}");
        for symbol in symbols {
            let monday = session_times(signals, symbol)
                .iter()
                .filter(|t| (1796601600..1796601600 + 86_400).contains(*t))
                .count();
            assert_eq!(monday, 390, "{symbol}: Monday's bars\n{stdout}");
        }
        let line = stdout
            .lines()
            .find(|l| l.starts_with("broker connection:"))
            .unwrap_or_else(|| panic!("{stdout}"));
        assert!(
            line.starts_with("broker connection: lost 3, ") && line.contains("restored 3 "),
            "{line}"
        );
        assert!(stdout.contains("worker restarts: 0"), "{stdout}");
        let trading = stdout
            .lines()
            .find(|l| l.starts_with("trading: "))
            .unwrap_or_else(|| panic!("{stdout}"));
        assert!(
            trading.ends_with(", 0 failed") && !trading.starts_with("trading: 0 orders"),
            "{trading}"
        );
    }
    let placed = journal_lines(&hub, "P\t");
    let once: BTreeSet<&String> = placed.iter().collect();
    assert_eq!(
        once.len(),
        placed.len(),
        "an order placed twice: {placed:?}"
    );
    assert!(placed.iter().any(|r| r.starts_with("a.")), "{placed:?}");
    assert!(placed.iter().any(|r| r.starts_with("b.")), "{placed:?}");
    let after = hub.wait_for("both let go", |s| {
        s.clients.is_empty() && s.feeds.is_empty()
    });
    assert_eq!(after.worker_restarts, 0);
}

/// Times of `symbol`'s rows in a signals file, checked to lie in the regular sessions of
/// December (14:30 to 21:00 UTC, Monday to Friday), each 60 s after the one before within a
/// session and a session's first after the last of an earlier one: none repeated or out of
/// order, history and live alike, and none missing within a session, where the history meets
/// the live bars too (the subscription takes some market minutes at this speed: the runner
/// fetches the bars between).
fn session_times(signals: &Path, symbol: &str) -> Vec<i64> {
    let text = std::fs::read_to_string(signals).expect("signals written");
    let times: Vec<i64> = text
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(1) == Some(symbol))
        .map(|l| {
            let t = l.split(',').next().unwrap_or_default();
            base::unix_time::parse_utc(t).unwrap_or_else(|| panic!("time {t}"))
        })
        .collect();
    let (open, close) = (14 * 3600 + 1800, 21 * 3600);
    for &t in &times {
        // 1970-01-01 was a Thursday: day 0 is weekday 3 counted from Monday.
        let weekday = (t.div_euclid(86_400) + 3) % 7;
        let second = t.rem_euclid(86_400);
        assert!(
            weekday < 5 && (open..close).contains(&second),
            "{symbol}: a bar at {t}, outside every session"
        );
    }
    for pair in times.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let next_session =
            a.rem_euclid(86_400) == close - 60 && b.rem_euclid(86_400) == open && b > a;
        assert!(b - a == 60 || next_session, "{symbol}: {a} then {b}");
    }
    times
}

/// Connections that say nothing are awaited 16 at a time: one more is refused at once with
/// the reason, and once they are closed a client attaches as before.
#[test]
fn connections_that_say_nothing_cannot_pile_up_at_a_hub() {
    let hub = TestHub::start("silent", WAIT);
    let socket = hub.dir.join("silent.sock");
    let silent: Vec<std::os::unix::net::UnixStream> = (0..16)
        .map(|_| std::os::unix::net::UnixStream::connect(&socket).unwrap())
        .collect();
    // Each is taken by the hub (accept runs every 200 ms at the longest) before the next.
    std::thread::sleep(Duration::from_millis(500));
    let cfg = bridge::ClientConfig::default();
    let e = bridge::channel::attach_to_hub(&hub.dir, &hub.name, "late", &cfg.channel).unwrap_err();
    assert_eq!(
        e.to_string(),
        "hub silent refused: 16 attaches already under way at the hub"
    );
    drop(silent);
    let until = Instant::now() + Duration::from_secs(10);
    let client = loop {
        match bridge::channel::attach_to_hub(&hub.dir, &hub.name, "late", &cfg.channel) {
            Ok(channel) => break bridge::Client::over(channel, &cfg).unwrap().0,
            Err(e) => assert!(Instant::now() < until, "{e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let after = hub.wait_for("the late one attached", |s| s.clients.len() == 1);
    assert_eq!(after.clients[0].name, "late");
    drop(client);
}

/// A subscription the worker refuses (a bar of 0 seconds) is refused to its client and leaves
/// no feed at the hub, each time; the symbol is then streamed as if nothing had happened.
#[test]
fn a_refused_subscription_leaves_no_feed_behind() {
    use bridge::protocol::{Reply, Request, SubscribeRequest};
    let hub = TestHub::start("refused", WAIT);
    let client = attach(&hub, "asker");
    for id in [1, 2] {
        let reply = client
            .request(
                Request::Subscribe(SubscribeRequest {
                    symbol: "SPY".into(),
                    id,
                    bar_seconds: 0,
                }),
                Duration::from_secs(10),
            )
            .unwrap();
        assert!(
            matches!(&reply, Reply::Error(e) if e.message == "bar size must be at least 1 second"),
            "{reply:?}"
        );
        let s = hub.wait_for("a status", |_| true);
        assert!(s.feeds.is_empty(), "{:?}", s.feeds);
    }
    let reply = client
        .request(
            Request::Subscribe(SubscribeRequest {
                symbol: "SPY".into(),
                id: 3,
                bar_seconds: 60,
            }),
            Duration::from_secs(10),
        )
        .unwrap();
    assert!(matches!(reply, Reply::Subscribed), "{reply:?}");
    hub.wait_for("SPY streamed", |s| feeds(s) == set(&["SPY"]));
}

/// A client's subscriptions and cancellations sent one after the other without waiting are
/// made in the order sent: twenty of each, alternating, leave nothing streamed at the end.
#[test]
fn subscriptions_and_cancellations_sent_at_once_are_made_in_order() {
    use bridge::protocol::{Reply, Request, SubscribeRequest};
    let hub = TestHub::start("order", WAIT);
    let client = attach(&hub, "hasty");
    let timeout = Duration::from_secs(30);
    let mut pending = Vec::new();
    for _ in 0..20 {
        pending.push(client.request_async(
            Request::Subscribe(SubscribeRequest {
                symbol: "SPY".into(),
                id: 1,
                bar_seconds: 60,
            }),
            timeout,
        ));
        pending.push(client.request_async(
            Request::Unsubscribe {
                symbol: "SPY".into(),
            },
            timeout,
        ));
    }
    // The first poll of each, in order, sends it.
    let replies = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(futures_util::future::join_all(pending));
    for (i, reply) in replies.into_iter().enumerate() {
        let reply = reply.unwrap();
        if i % 2 == 0 {
            assert!(matches!(reply, Reply::Subscribed), "{i}: {reply:?}");
        } else {
            assert!(matches!(reply, Reply::Unsubscribed), "{i}: {reply:?}");
        }
    }
    // Within 20 s, or the last cancellation came before a subscription.
    hub.wait_for("nothing streamed", |s| {
        s.clients.len() == 1 && s.feeds.is_empty()
    });
    drop(client);
}
