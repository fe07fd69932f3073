//! End-to-end tests of the runner and its worker: real processes, real segments.
//!
//! Each failure of the pipe-based design it replaces has a test here that shows it cannot
//! happen: commands stuck behind a blocked pipe (`ten_thousand_commands_…`), `connect`
//! answered before the handshake (`connect_waits_…`), worker logs lost (`worker_log_lines_…`),
//! timeouts fetching symbols concurrently (`history_for_7_…`, `history_for_200_…`), signals
//! from a price of 0 (`a_symbol_without_data_…`, `signals_never_carry_…`), and a mismatched
//! worker build (the bridge's `a_build_mismatch_is_refused`; here the worker is the runner's
//! own executable).

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{
    finish, output, runner, spawn_logged, table_rows, wait_for_line, wait_for_worker, Log, RUNNER,
};

use bridge::protocol::{ErrorKind, Event, Reply, Request};
use bridge::Client;
use runner::worker_setup::WorkerSetup;
use tests::{alive, kill_and_wait, segments_of, signal, ProcessSignal};
use worker::SimFaults;

/// The summary table's rows: symbol -> (history, live, the rest of the row).
fn table(stdout: &str) -> HashMap<String, (usize, usize, String)> {
    table_rows(stdout)
        .into_iter()
        .map(|cols| {
            (
                cols[0].to_string(),
                (
                    cols[1].parse().unwrap(),
                    cols[2].parse().unwrap(),
                    cols[3..].join(" "),
                ),
            )
        })
        .collect()
}

fn counter(stdout: &str, label: &str) -> u64 {
    let at = stdout
        .find(label)
        .unwrap_or_else(|| panic!("{label} in {stdout}"));
    stdout[at + label.len()..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn temp(name: &str) -> PathBuf {
    common::temp("e2e", name)
}

/// A worker started directly over the bridge, as the runner starts it (the runner's own
/// setup, from its default configuration).
fn worker_client(faults: SimFaults, handshake_ms: u64) -> Client {
    let mut cfg = runner::config::Config::default();
    cfg.bridge.handshake_timeout_ms = handshake_ms;
    let setup = WorkerSetup::from_config(&cfg, PathBuf::from(RUNNER), faults);
    let cmd = worker::command(&setup.exe, &setup.options).unwrap();
    Client::spawn(cmd, &setup.client).expect("worker starts").0
}

/// The worker presents the build id of the file it runs, not the one it was told: a worker
/// file replaced by another build after the runner set up (a new build installed mid-run;
/// on macOS a restarted worker runs whatever file is at the path now) is refused at its hello
/// with both ids, instead of running beside a runner of another build.
#[test]
fn a_worker_file_replaced_by_another_build_is_refused() {
    let exe = temp("replaced-runner");
    std::fs::copy(RUNNER, &exe).unwrap();
    let setup = WorkerSetup::from_config(
        &runner::config::Config::default(),
        exe.clone(),
        SimFaults::default(),
    );
    // A file just written may still be open for writing in a child another test thread
    // forked meanwhile: exec fails with ETXTBSY until that child has exec'd.
    let spawn = || {
        for _ in 0..100 {
            let cmd = worker::command(&setup.exe, &setup.options).unwrap();
            match Client::spawn(cmd, &setup.client) {
                Err(bridge::StartError::Spawn(e)) if e.to_string().contains("Text file busy") => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                other => return other,
            }
        }
        panic!("{} stayed busy for 5 s", setup.exe.display());
    };
    // The same file untouched is the same build.
    let (client, _) = spawn().expect("the same file is accepted");
    drop(client);
    // Another file in its place (same bytes, another file: another build as far as anyone
    // can tell without reading it all).
    let next = temp("replaced-runner.next");
    std::fs::copy(RUNNER, &next).unwrap();
    std::fs::rename(&next, &exe).unwrap();
    match spawn() {
        Err(bridge::StartError::BuildMismatch { ours, theirs }) => {
            assert_eq!(ours, setup.client.channel.build_id);
            assert_ne!(ours, theirs);
            assert_eq!(theirs, worker::build_id_of(&exe));
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a replaced worker file was accepted"),
    }
    let _ = std::fs::remove_file(&exe);
}

fn symbols(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("S{i:03}")).collect()
}

#[test]
fn the_default_run_prints_a_table_and_writes_signals() {
    let signals = temp("default.csv");
    let (code, stdout, stderr) = output(
        runner(&[
            "run",
            "--duration",
            "2",
            "--signals",
            signals.to_str().unwrap(),
        ])
        .stdin(Stdio::null()),
    );
    assert_eq!(code, 0, "{stderr}");
    let rows = table(&stdout);
    let expected = ["SPY", "QQQ", "AAPL", "MSFT", "NVDA", "TSLA", "AMZN"];
    assert_eq!(rows.len(), 7, "{stdout}");
    for s in expected {
        let (history, live, rest) = &rows[s];
        assert_eq!(*history, 1440, "{s}");
        assert!(*live >= 1, "{s} got live bars: {stdout}");
        let signal = rest.split_whitespace().last().unwrap();
        assert!(["buy", "sell", "hold"].contains(&signal), "{rest}");
    }
    assert!(stdout.contains("bridge round trip: p50 "), "{stdout}");
    assert!(stdout.contains("(2000 pings)"), "{stdout}");
    assert_eq!(counter(&stdout, "worker restarts:"), 0);
    let csv = std::fs::read_to_string(&signals).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("time,symbol,price,fast_sma,slow_sma,signal,order")
    );
    let rows: Vec<&str> = lines.collect();
    // History rows: 1440 - 30 per symbol; live rows on top.
    assert!(rows.len() >= 7 * (1440 - 30), "{}", rows.len());
    assert_eq!(rows.len() as u64, counter(&stdout, "signals written:"));
    // Every row, live ones included, carries its own symbol's price: the simulated market's
    // path of that symbol (seed 42, one-minute bars) at that time. A live bar routed to
    // another row (subscription ids mixed up) would carry another symbol's price.
    for row in &rows {
        let cols: Vec<&str> = row.split(',').collect();
        assert_eq!(cols.len(), 7, "{row}");
        assert_eq!(cols[6], "", "no order without --trade: {row}");
        let t = base::unix_time::parse_utc(cols[0]).unwrap();
        let close = worker::sim::PricePath::new(42, cols[1]).bar(t, 60).close;
        assert_eq!(cols[2], format!("{close:.4}"), "{row}");
    }
}

/// `bridge.spin`: the receiving threads busy-poll; the run is the same run (live bars, the
/// summary, exit 0) and ends on time.
#[test]
fn a_spinning_run_gets_its_live_bars_and_ends_on_time() {
    let config = temp("spin.toml");
    std::fs::write(&config, "[bridge]\nspin = true\n").unwrap();
    let mut child = runner(&[
        "run",
        "--duration",
        "2",
        "--symbols",
        "SPY,QQQ",
        "--config",
        config.to_str().unwrap(),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // A spinning thread that never saw the end would keep the runner alive: 30 s at most.
    let ended = tests::within(Duration::from_secs(30), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if ended.is_none() {
        kill_and_wait(&mut child).unwrap();
        panic!("a spinning run did not end within 30 s");
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let rows = table(&stdout);
    for s in ["SPY", "QQQ"] {
        assert_eq!(rows[s].0, 1440, "{stdout}");
        assert!(rows[s].1 >= 1, "{s}: {stdout}");
    }
}

/// Subscription ids name one symbol for the whole run: an id already another symbol's, or a
/// second id for a symbol, is refused before anything is sent.
#[test]
fn a_subscription_id_names_one_symbol_for_the_run() {
    let setup = WorkerSetup::from_config(
        &runner::config::Config::default(),
        PathBuf::from(RUNNER),
        SimFaults::default(),
    );
    let (sup, _events) = runner::supervisor::Supervisor::start(setup).unwrap();
    let sub = |symbol: &str, id: u32| {
        sup.subscribe(
            bridge::protocol::SubscribeRequest {
                symbol: symbol.into(),
                id,
                bar_seconds: 60,
            },
            Duration::from_secs(10),
        )
    };
    sub("SPY", 0).unwrap();
    // The same subscription again is no change.
    sub("SPY", 0).unwrap();
    for (symbol, id, why) in [
        ("QQQ", 0, "subscription id 0 is already SPY's"),
        ("SPY", 5, "SPY already has subscription id 0"),
    ] {
        match sub(symbol, id) {
            Err(runner::supervisor::SupervisorError::Remote(e)) => {
                assert_eq!(e.kind, ErrorKind::BadRequest);
                assert_eq!(e.message, why);
            }
            other => panic!("{symbol} {id}: {other:?}"),
        }
    }
    sub("QQQ", 1).unwrap();
    sup.shutdown();
}

#[test]
fn signals_never_carry_a_zero_or_empty_price() {
    let signals = temp("prices.csv");
    let (code, _, stderr) = output(runner(&[
        "run",
        "--history-only",
        "--symbols",
        "SPY,QQQ",
        "--signals",
        signals.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{stderr}");
    let csv = std::fs::read_to_string(&signals).unwrap();
    for row in csv.lines().skip(1) {
        let cols: Vec<&str> = row.split(',').collect();
        assert_eq!(cols.len(), 7, "{row}");
        for c in &cols[2..5] {
            let v: f64 = c.parse().unwrap_or_else(|_| panic!("{row}"));
            assert!(v > 0.0 && v.is_finite(), "{row}");
        }
        assert!(["buy", "sell", "hold"].contains(&cols[5]), "{row}");
    }
}

#[test]
fn ten_thousand_commands_sent_as_fast_as_possible_are_all_answered() {
    let client = worker_client(SimFaults::default(), 5000);
    match client
        .request(Request::Connect, Duration::from_secs(10))
        .unwrap()
    {
        Reply::Connected { accounts, .. } => assert!(!accounts.is_empty()),
        other => panic!("{other:?}"),
    }
    // All sent before any is awaited: nothing can block the sender.
    let streams: Vec<_> = (0..10_000u32)
        .map(|i| {
            let request = if i % 10 == 0 {
                Request::Accounts
            } else {
                Request::Ping {
                    payload: i.to_le_bytes().to_vec(),
                }
            };
            (i, client.stream(request, Duration::from_secs(60)).unwrap())
        })
        .collect();
    let mut answered = 0;
    for (i, stream) in streams {
        let replies: Vec<Reply> = stream.map(Result::unwrap).collect();
        let expected = if i % 10 == 0 {
            Reply::Accounts(vec![worker::sim::ACCOUNT.to_string()])
        } else {
            Reply::Pong {
                payload: i.to_le_bytes().to_vec(),
            }
        };
        assert_eq!(replies, vec![expected], "command {i}");
        answered += 1;
    }
    assert_eq!(answered, 10_000);
    assert_eq!(client.stats().stray_replies, 0);
}

#[test]
fn ten_thousand_commands_from_eight_threads_are_matched() {
    let client = Arc::new(worker_client(SimFaults::default(), 5000));
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                for i in 0..1250u32 {
                    let payload = (t * 1_000_000 + i).to_le_bytes().to_vec();
                    let reply = client
                        .request(
                            Request::Ping {
                                payload: payload.clone(),
                            },
                            Duration::from_secs(30),
                        )
                        .unwrap();
                    assert_eq!(reply, Reply::Pong { payload });
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn connect_waits_for_accounts_that_arrive_late() {
    let client = worker_client(
        SimFaults {
            accounts_delay_ms: 2000,
            ..SimFaults::default()
        },
        10_000,
    );
    let start = Instant::now();
    let reply = client
        .request(Request::Connect, Duration::from_secs(15))
        .unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(2),
        "answered after {waited:?}"
    );
    assert_eq!(
        reply,
        Reply::Connected {
            accounts: vec![worker::sim::ACCOUNT.to_string()],
            next_order_id: 1
        }
    );
}

#[test]
fn connect_without_accounts_is_a_timeout_error_never_connected() {
    let client = worker_client(
        SimFaults {
            accounts_never: true,
            ..SimFaults::default()
        },
        500,
    );
    match client
        .request(Request::Connect, Duration::from_secs(10))
        .unwrap()
    {
        Reply::Error(e) => {
            assert_eq!(e.kind, ErrorKind::Timeout);
            assert!(e.message.contains("managed accounts"), "{}", e.message);
        }
        other => panic!("expected a timeout error, got {other:?}"),
    }
    // And the runner says so and exits non-zero.
    let cfg = temp("handshake.toml");
    std::fs::write(&cfg, "[bridge]\nhandshake_timeout_ms = 500\n").unwrap();
    let (code, stdout, stderr) = output(
        runner(&["run", "--config", cfg.to_str().unwrap()])
            .env("RUNNER_SIM_FAULTS", "accounts_never"),
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("error: cannot connect to the broker: Timeout: managed accounts"),
        "{last}"
    );
}

#[test]
fn history_for_7_symbols_at_once_is_complete() {
    let (code, stdout, stderr) = output(runner(&["run", "--history-only"]));
    assert_eq!(code, 0, "{stderr}");
    let rows = table(&stdout);
    assert_eq!(rows.len(), 7);
    assert!(
        rows.values().all(|(h, l, _)| *h == 1440 && *l == 0),
        "{stdout}"
    );
    // Progress was shown, one line per symbol (stderr is not a terminal here).
    assert_eq!(stderr.matches("1440 bars").count(), 7, "{stderr}");
}

#[test]
fn history_for_200_symbols_at_once_is_complete() {
    let list = symbols(200).join(",");
    let (code, stdout, stderr) = output(runner(&["run", "--history-only", "--symbols", &list]));
    assert_eq!(code, 0, "{stderr}");
    let rows = table(&stdout);
    assert_eq!(rows.len(), 200);
    for s in symbols(200) {
        assert_eq!(rows[&s].0, 1440, "{s}");
    }
    assert_eq!(counter(&stdout, "worker restarts:"), 0);
}

#[test]
fn a_worker_killed_mid_fetch_is_replaced_and_the_fetch_completes() {
    let (code, stdout, stderr) = output(
        runner(&["run", "--history-only", "--symbols", &symbols(20).join(",")])
            .env("RUNNER_SIM_FAULTS", "crash_after_batches=5"),
    );
    assert_eq!(code, 0, "{stderr}");
    let rows = table(&stdout);
    assert_eq!(rows.len(), 20);
    assert!(rows.values().all(|(h, _, _)| *h == 1440), "{stdout}");
    assert_eq!(counter(&stdout, "worker restarts:"), 1, "{stdout}");
    assert!(counter(&stdout, "retried:") >= 1, "{stdout}");
    assert!(stderr.contains("was killed by signal 9"), "{stderr}");
}

#[test]
fn a_stopped_worker_is_detected_as_hung_and_replaced() {
    let cfg = temp("hang.toml");
    std::fs::write(&cfg, "[bridge]\nhang_timeout_ms = 1000\n").unwrap();
    let (code, stdout, stderr) = output(
        runner(&[
            "run",
            "--history-only",
            "--config",
            cfg.to_str().unwrap(),
            "--symbols",
            &symbols(20).join(","),
        ])
        .env("RUNNER_SIM_FAULTS", "hang_after_batches=5"),
    );
    assert_eq!(code, 0, "{stderr}");
    let rows = table(&stdout);
    assert!(rows.values().all(|(h, _, _)| *h == 1440), "{stdout}");
    assert_eq!(counter(&stdout, "worker restarts:"), 1, "{stdout}");
    assert!(stderr.contains("hung"), "{stderr}");
}

/// Starts `runner run --duration 0` and reads its log until the live phase: returns the
/// runner, its worker's pid, and the rest of its log.
fn live_run(stdout: Stdio) -> (Child, u32, Log) {
    use std::os::unix::process::CommandExt;
    // Its own process group, as a shell gives a foreground job.
    let mut child = runner(&["run", "--duration", "0"])
        .stdout(stdout)
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (worker_pid, _) = wait_for_worker(&mut lines, 0);
    wait_for_line(&mut lines, "live phase");
    (child, worker_pid, lines)
}

#[test]
fn a_killed_runner_leaves_no_worker_and_no_segment() {
    let (mut child, worker_pid, _log) = live_run(Stdio::null());
    let runner_pid = child.id();
    assert!(alive(worker_pid));
    let killed = kill_and_wait(&mut child).unwrap();
    tests::within(Duration::from_secs(10), || !alive(worker_pid));
    let took = killed.elapsed();
    assert!(!alive(worker_pid), "the worker is still running");
    assert!(
        took < Duration::from_secs(2),
        "the worker took {took:?} to exit"
    );
    assert_eq!(segments_of(runner_pid).unwrap(), Vec::<String>::new());
}

#[test]
fn ctrl_c_stops_the_worker_prints_the_summary_and_exits_zero() {
    let (child, worker_pid, lines) = live_run(Stdio::piped());
    std::thread::sleep(Duration::from_millis(300));
    let (code, stdout, rest) = interrupt(child, lines);
    assert_eq!(code, 0, "{rest:?}");
    assert!(stdout.contains("(interrupted)"), "{stdout}");
    assert_eq!(table(&stdout).len(), 7);
    assert!(
        rest.iter()
            .any(|l| l.contains("disconnected from the simulated market")),
        "{rest:?}"
    );
    assert!(!alive(worker_pid));
}

#[test]
fn worker_log_lines_appear_in_the_runner_log() {
    let (code, _, stderr) = output(runner(&["run", "--history-only", "--symbols", "SPY"]));
    assert_eq!(code, 0, "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("connected to the simulated market"))
        .unwrap_or_else(|| panic!("no worker line in {stderr}"));
    assert!(line.contains("INFO worker:"), "{line}");
    assert!(line.contains("origin=\"worker::sim\""), "{line}");
}

#[test]
fn a_symbol_without_data_is_reported_and_gets_no_signal() {
    let signals = temp("nodata.csv");
    let (code, stdout, stderr) = output(
        runner(&[
            "run",
            "--history-only",
            "--symbols",
            "SPY,TSLA",
            "--signals",
            signals.to_str().unwrap(),
        ])
        .env("RUNNER_SIM_FAULTS", "no_data=TSLA"),
    );
    assert_eq!(code, 0, "{stderr}");
    let rows = table(&stdout);
    assert_eq!(rows["TSLA"].0, 0);
    assert!(
        rows["TSLA"]
            .2
            .starts_with("- - - no data: NoData: no data for TSLA"),
        "{stdout}"
    );
    assert_eq!(rows["SPY"].0, 1440);
    let csv = std::fs::read_to_string(&signals).unwrap();
    assert!(!csv.contains(",TSLA,"));
    assert!(csv.contains(",SPY,"));
}

fn one_error_line(args: &[&str], expected: &str) {
    let (code, stdout, stderr) = output(runner(args));
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert_eq!(stdout, "");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[0].contains(expected), "{stderr}");
}

#[test]
fn bad_configuration_is_one_clear_line_and_a_nonzero_exit() {
    let unknown = temp("unknown.toml");
    std::fs::write(
        &unknown,
        "backend = \"sim\"\n\n[live]\nduraton_seconds = 3\n",
    )
    .unwrap();
    one_error_line(
        &["run", "--config", unknown.to_str().unwrap()],
        "line 4: unknown field `duraton_seconds`",
    );
    let wrong = temp("wrong.toml");
    std::fs::write(&wrong, "[history]\nbar_seconds = \"sixty\"\n").unwrap();
    one_error_line(
        &["run", "--config", wrong.to_str().unwrap()],
        "line 2: invalid type: string \"sixty\", expected u32",
    );
    one_error_line(
        &["run", "--config", "/nonexistent/runner.toml"],
        "config file /nonexistent/runner.toml: not found",
    );
    one_error_line(
        &["run", "--symbols", "SPY,no way"],
        "invalid symbol \"no way\"",
    );
    one_error_line(
        &["check-config", "--backend", "tws"],
        "unknown backend \"tws\"",
    );
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let file = temp("check.toml");
    std::fs::write(&file, "symbols = [\"SPY\"]\n[sim]\nseed = 9\n").unwrap();
    let (code, stdout, stderr) = output(
        runner(&[
            "check-config",
            "--config",
            file.to_str().unwrap(),
            "--duration",
            "12",
        ])
        .env("RUNNER_SEED", "11"),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("symbols = [\"SPY\"]"), "{stdout}");
    assert!(stdout.contains("seed = 11"), "{stdout}");
    assert!(stdout.contains("duration_seconds = 12"), "{stdout}");
}

/// Presses Ctrl-C: SIGINT to the runner's whole process group, as a terminal does. Returns
/// the runner's exit code, its summary (stdout) and the rest of its log.
fn interrupt(child: Child, log: Log) -> (i32, String, Vec<String>) {
    let status = Command::new("kill")
        .args(["-INT", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, stdout, rest) = finish(child, log);
    (code.unwrap_or(-1), stdout, rest)
}

#[test]
fn a_worker_killed_during_the_live_phase_is_replaced_and_its_subscriptions_restored() {
    let (child, worker_pid, mut log) = live_run(Stdio::piped());
    signal(worker_pid, ProcessSignal::Kill).unwrap();
    let seen = wait_for_line(&mut log, "subscriptions restored");
    assert!(
        seen.iter()
            .any(|l| l.contains("worker started generation=1")),
        "{seen:?}"
    );
    // Bars flow again from the new worker.
    std::thread::sleep(Duration::from_millis(2500));
    let (code, stdout, rest) = interrupt(child, log);
    assert_eq!(code, 0, "{rest:?}");
    assert_eq!(counter(&stdout, "worker restarts:"), 1, "{stdout}");
    let rows = table(&stdout);
    assert!(rows.values().all(|(_, live, _)| *live >= 1), "{stdout}");
}

/// Whether a line of `/proc/<pid>/maps` is the bridge segment: a sealed memfd (what a runner
/// gives its worker on Linux), or a named segment in /dev/shm.
#[cfg(target_os = "linux")]
fn is_segment_mapping(line: &str) -> bool {
    line.contains("/memfd:ibbridge-") || line.contains("/dev/shm/ibbridge-")
}

/// The address range of the bridge segment in `pid`'s memory map.
#[cfg(target_os = "linux")]
fn segment_mapping(pid: u32) -> String {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let line = maps
        .lines()
        .find(|l| is_segment_mapping(l))
        .unwrap_or_else(|| panic!("no segment mapped in {pid}: {maps}"));
    line.split_whitespace().next().unwrap().to_string()
}

#[cfg(target_os = "linux")] // reads /proc or mounts a tmpfs on /dev/shm
#[test]
fn garbage_written_into_the_live_segment_is_survived_by_a_new_worker() {
    use std::io::{Seek, SeekFrom, Write};
    let (child, worker_pid, mut log) = live_run(Stdio::piped());
    // Open the worker's mapping of the (already unlinked) segment from outside.
    let range = segment_mapping(worker_pid);
    let mut seg = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{worker_pid}/map_files/{range}"))
        .unwrap();
    let mut rng = tests::XorShift::new(0x9E37_79B9_7F4A_7C15u64 ^ u64::from(worker_pid));
    let mut next = move || rng.next_u64();
    // Random bytes over the first 64 KiB of both data areas (8 KiB header and control
    // blocks come first, each data area is 1 MiB) ...
    for area in [8192u64, 8192 + (1 << 20)] {
        let junk: Vec<u8> = (0..64 * 1024).map(|_| next() as u8).collect();
        seg.seek(SeekFrom::Start(area)).unwrap();
        seg.write_all(&junk).unwrap();
    }
    // ... and random positions into both rings' control blocks (tail, then head one line on).
    for at in [4096u64, 4096 + 128, 4096 + 512, 4096 + 512 + 128] {
        seg.seek(SeekFrom::Start(at)).unwrap();
        seg.write_all(&next().to_le_bytes()).unwrap();
    }
    drop(seg);
    let seen = wait_for_line(&mut log, "worker started generation=1");
    std::thread::sleep(Duration::from_millis(500));
    let (code, stdout, rest) = interrupt(child, log);
    assert_eq!(code, 0, "{rest:?}");
    // Whichever side found the corruption first, it is reported: by the runner, or by the
    // worker on its way out (on stderr, drained into the runner's log).
    assert!(
        seen.iter()
            .chain(&rest)
            .any(|l| l.contains("shared memory corrupt")),
        "{seen:?}{rest:?}"
    );
    assert!(counter(&stdout, "worker restarts:") >= 1, "{stdout}");
    assert!(!rest.iter().any(|l| l.contains("panicked")), "{rest:?}");
    assert!(!alive(worker_pid));
}

#[test]
fn a_short_soak_checks_every_message_and_reports_json() {
    let (code, stdout, stderr) = output(runner(&[
        "soak",
        "--duration",
        "3",
        "--rate",
        "500",
        "--symbols",
        "4",
        "--json",
    ]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let json = stdout.trim();
    assert!(json.starts_with('{') && json.ends_with('}'), "{json}");
    assert_eq!(json.lines().count(), 1);
    for field in [
        "\"passed\": true",
        "\"mismatched\": 0",
        "\"lost\": 0",
        "\"bar_duplicates\": 0",
        "\"bar_reordered\": 0",
        "\"bar_gaps_undeclared\": 0",
        "\"restarts\": 0",
        "\"rtt_per_minute\": [{\"minute\": 0",
        "\"memory_kib\"",
    ] {
        assert!(json.contains(field), "{field} in {json}");
    }
    let sent = counter(json, "\"sent\":");
    assert!(sent >= 1000, "{json}");
    assert_eq!(counter(json, "\"answered\":"), sent);
}

/// `soak --orders`: orders beside the traffic, and at the end the broker holds each one once.
#[test]
fn a_soak_with_orders_finds_each_order_once_at_the_broker() {
    let (code, stdout, stderr) = output(runner(&[
        "soak",
        "--duration",
        "3",
        "--rate",
        "200",
        "--symbols",
        "2",
        "--orders",
        "--order-rate",
        "5",
        "--json",
    ]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let json = stdout.trim();
    assert!(json.contains("\"passed\": true"), "{json}");
    let sent = counter(json, "\"orders_sent\":");
    assert!(sent >= 5, "{json}");
    assert_eq!(counter(json, "\"orders_acknowledged\":"), sent, "{json}");
    assert_eq!(counter(json, "\"orders_at_broker\":"), sent, "{json}");
    assert_eq!(counter(json, "\"orders_duplicated\":"), 0, "{json}");
    assert_eq!(counter(json, "\"orders_lost\":"), 0, "{json}");
}

/// `soak --orders` with frames of 2 KiB: the broker's list of orders outgrows a frame within
/// seconds (orders are placed one after the other, about ten a second), travels in pages,
/// and every order is found once at the end.
#[test]
fn a_soak_whose_order_book_outgrows_a_frame_still_finds_each_order_once() {
    let cfg = common::temp_file("e2e", "small-frames.toml", "[bridge]\nmax_frame = 2048\n");
    let (code, stdout, stderr) = output(runner(&[
        "soak",
        "--duration",
        "6",
        "--rate",
        "200",
        "--symbols",
        "2",
        "--orders",
        "--order-rate",
        "50",
        "--json",
        "--config",
        &cfg,
    ]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let json = stdout.trim();
    assert!(json.contains("\"passed\": true"), "{json}");
    let sent = counter(json, "\"orders_sent\":");
    // An order's report takes 60 bytes or more: 2 KiB holds fewer than 35.
    assert!(sent >= 40, "{json}");
    assert_eq!(counter(json, "\"orders_at_broker\":"), sent, "{json}");
    assert_eq!(counter(json, "\"orders_duplicated\":"), 0, "{json}");
    assert_eq!(counter(json, "\"orders_lost\":"), 0, "{json}");
    assert!(!stderr.contains("not delivered"), "{stderr}");
}

/// Runners killed (SIGKILL) at random points of their run leave their simulated broker's
/// journal in the temporary directory; the next run removes every one of them, and its own
/// at its end: nothing is left.
#[test]
fn journals_of_runners_killed_at_random_points_are_removed_by_the_next_run() {
    let tmp = common::temp("e2e", "killed-runs");
    std::fs::create_dir_all(&tmp).unwrap();
    let files = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let mut rng = tests::XorShift::new(u64::from(std::process::id()) | 1);
    let mut left = 0;
    for _ in 0..4 {
        let mut cmd = runner(&["run", "--duration", "3"]);
        cmd.env("TMPDIR", &tmp)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        // Once its journal is made (earlier runs' are swept by then), somewhere between
        // there and the end of its live phase.
        let made = tests::within(Duration::from_secs(20), || {
            files()
                .iter()
                .any(|f| f.contains(&format!("-{}-", child.id())))
        });
        std::thread::sleep(Duration::from_millis(rng.below(2500)));
        kill_and_wait(&mut child).unwrap();
        assert!(
            made.is_some(),
            "run {} made no journal: {:?}",
            child.id(),
            files()
        );
        left = files().len();
    }
    assert!(
        left >= 2,
        "a killed run leaves its journal and lock: {:?}",
        files()
    );
    // A lock file is swept once it is 2 s old (younger, its run may be taking the lock).
    std::thread::sleep(Duration::from_millis(2100));
    let mut next = runner(&["run", "--duration", "1"]);
    next.env("TMPDIR", &tmp);
    let (code, stdout, stderr) = output(next);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(files(), Vec::<String>::new(), "left in {}", tmp.display());
}

/// The order and fill events of `events` for the references starting with `prefix`, read
/// until `done` holds of them (or 20 s pass), then until nothing more comes for 300 ms.
fn book_events(
    events: &mut runner::worker_events::WorkerEvents,
    prefix: &str,
    done: impl Fn(&[Event]) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut quiet_since = None::<Instant>;
    while Instant::now() < deadline {
        match events.recv_timeout(Duration::from_millis(50)) {
            Ok(e @ Event::Order(_)) | Ok(e @ Event::Fill(_)) => {
                let ours = match &e {
                    Event::Order(o) => o.request.order_ref.starts_with(prefix),
                    Event::Fill(f) => f.order_ref.starts_with(prefix),
                    _ => false,
                };
                if ours {
                    seen.push(e);
                    quiet_since = None;
                }
            }
            Ok(_) => {}
            Err(_) if done(&seen) => {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_millis(300) {
                    break;
                }
            }
            Err(_) => {}
        }
    }
    seen
}

fn fills(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Fill(_)))
        .count()
}

/// A worker that replaces a dead one tells the run only what changed since the run last heard
/// of the book: the orders settled before the death are not told again, a new one is.
#[test]
fn a_replacement_worker_tells_only_what_changed_since_the_run_last_heard() {
    use bridge::protocol::{OrderRequest, OrderType, Side, TimeInForce};
    let mut cfg = runner::config::Config::default();
    let run = runner::worker_setup::prepare(
        &mut cfg,
        runner::worker_setup::WorkerProgram::executable(PathBuf::from(RUNNER)),
        SimFaults::default(),
    )
    .unwrap();
    let (sup, mut events) = runner::supervisor::Supervisor::start(run.setup).unwrap();
    let place = |r: String| {
        let order = OrderRequest {
            order_ref: r,
            symbol: "SPY".into(),
            side: Side::Buy,
            quantity: 1.0,
            order_type: OrderType::Market,
            tif: TimeInForce::Day,
        };
        match sup.request(Request::PlaceOrder(order), Duration::from_secs(10)) {
            Ok(Reply::Order(_)) => {}
            other => panic!("{other:?}"),
        }
    };
    for i in 0..10 {
        place(format!("heard-{i}"));
    }
    let first = book_events(&mut events, "heard-", |e| fills(e) == 10);
    assert_eq!(fills(&first), 10, "{first:?}");

    // Reading on past the margin a replacement allows for clocks that differ (half a real
    // second): the worker's marks move on while nothing changes.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        let _ = events.recv_timeout(Duration::from_millis(50));
    }
    let pid = sup.stats().worker_pid.unwrap();
    signal(pid, ProcessSignal::Kill).unwrap();
    match sup.request(Request::Ping { payload: vec![1] }, Duration::from_secs(20)) {
        Ok(Reply::Pong { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(sup.stats().restarts, 1);
    place("later-0".into());
    let after = book_events(&mut events, "", |e| fills(e) == 1);
    let told_again: Vec<&Event> = after
        .iter()
        .filter(|e| match e {
            Event::Order(o) => o.request.order_ref.starts_with("heard-"),
            Event::Fill(f) => f.order_ref.starts_with("heard-"),
            _ => false,
        })
        .collect();
    assert!(told_again.is_empty(), "told again: {told_again:?}");
    assert_eq!(fills(&after), 1, "the new order's fill: {after:?}");
    sup.shutdown();
    drop(run.journal);
}

/// A long weekend on the simulated market's calendar at 14,400 times real time (80 market
/// hours from Friday 10:00 US/Eastern in 20 s, ending on Monday at 18:00, hours before its
/// restart): bars only in sessions, the gateway's daily
/// restarts (Friday and Saturday 23:45) and weekly re-login (Sunday) each told as the
/// connection's loss and restoration, live bars again on Monday for every symbol, and trading
/// on throughout with every order placed once and nothing failed.
#[test]
fn a_long_weekend_of_restarts_and_a_re_login_is_ridden_through() {
    // Friday 2026-12-04 15:00 UTC.
    let cfg = common::temp_file(
        "e2e",
        "weekend.toml",
        "[sim]\nspeed = 14400\nstart = 1796396400\ncalendar = true\n[trading]\nenabled = true\n",
    );
    let (code, stdout, stderr) = output(runner(&[
        "run",
        "--config",
        &cfg,
        "--duration",
        "20",
        "--symbols",
        "SPY,QQQ,AAPL",
    ]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let rows = table(&stdout);
    for symbol in ["SPY", "QQQ", "AAPL"] {
        let (history, live, _) = &rows[symbol];
        // Thursday 10:00-16:00 and Friday 09:30-10:00: the day before the start.
        assert_eq!(*history, 390, "{symbol}: {stdout}");
        // Friday 10:00-16:00 (most of it) and all of Monday's session, after every restart.
        assert!(
            (360 + 390 - 30..=750).contains(live),
            "{symbol}: {live} live bars\n{stdout}"
        );
    }
    let line = stdout
        .lines()
        .find(|l| l.starts_with("broker connection:"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.starts_with("broker connection: lost 3, reconnection attempts ")
            && line
                .contains("restored 3 (market data lost and subscriptions made again 3, kept 0)"),
        "{line}"
    );
    assert_eq!(
        stderr.matches("reason=the gateway's daily restart").count(),
        2,
        "{stderr}"
    );
    assert_eq!(
        stderr
            .matches("reason=the gateway's weekly re-login")
            .count(),
        1,
        "{stderr}"
    );
    // Near the re-login's end the old session still holds the client id.
    assert!(
        stderr.contains("error 326, client id is already in use"),
        "{stderr}"
    );
    let trading = trading_line(&stdout);
    assert!(trading.ends_with(", 0 failed"), "{trading}");
    assert!(!trading.starts_with("trading: 0 orders"), "{trading}");
}

/// The summary's trading line.
fn trading_line(stdout: &str) -> &str {
    stdout
        .lines()
        .find(|l| l.starts_with("trading: "))
        .unwrap_or_else(|| panic!("{stdout}"))
}

/// Resident memory of `pid` in KiB (0 if it is gone).
fn rss_kib(pid: u32) -> u64 {
    bridge::platform::resident_bytes(pid).map_or(0, |b| b / 1024)
}

/// Least-squares slope of `points` (x, y).
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

/// Market seconds per real second in [`three_simulated_days_with_chaos_and_orders`].
const WEEK_SPEED: f64 = 14_400.0;

/// Three simulated days of a gateway's calendar (Monday 10:00 to Thursday 10:00 US/Eastern at
/// 14,400 times real time, 18 s) with the worker killed every 3 s and trading on: every
/// symbol's live bars on every trading day, each daily restart told and ridden through, every
/// order the run placed at the broker exactly once, and the runner's resident memory, sampled
/// every simulated hour, flat after the first day (the slope is printed and bounded).
/// `E2E_SIM_DAYS=7` runs the whole week (42 s), its weekend and re-login included.
#[test]
fn three_simulated_days_with_chaos_and_orders() {
    use std::os::unix::process::CommandExt;
    let days: u64 = std::env::var("E2E_SIM_DAYS")
        .ok()
        .and_then(|d| d.parse().ok())
        .filter(|d| (1..=7).contains(d))
        .unwrap_or(3);
    let seconds = days * 86_400 / WEEK_SPEED as u64;
    let journal = temp("week.journal");
    let _ = std::fs::remove_file(&journal);
    let signals = temp("week.csv");
    // Monday 2026-11-30 15:00 UTC.
    let start = 1_796_050_800;
    let cfg = common::temp_file(
        "e2e",
        "week.toml",
        &format!(
            "[sim]\nspeed = {WEEK_SPEED}\nstart = {start}\ncalendar = true\norders_file = \"{}\"\n\
             [trading]\nenabled = true\n\
             # A worker killed every 3 s: more than the default 10 restarts a minute.\n\
             [supervisor]\nmax_restarts = 30\n",
            journal.display()
        ),
    );
    let symbols = ["SPY", "QQQ", "AAPL"];
    let mut child = runner(&[
        "run",
        "--config",
        &cfg,
        "--duration",
        &seconds.to_string(),
        "--symbols",
        &symbols.join(","),
        "--signals",
        signals.to_str().unwrap(),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0)
    .spawn()
    .unwrap();
    let runner_pid = child.id();
    let began = Instant::now();
    // The log, read as it comes: each worker's pid.
    let worker = Arc::new(parking_lot::Mutex::new(None::<u32>));
    let log = {
        let worker = worker.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(pid) = line
                    .split("worker started generation=")
                    .nth(1)
                    .and_then(|rest| rest.split("pid=").nth(1))
                    .and_then(|p| p.split_whitespace().next())
                    .and_then(|p| p.parse().ok())
                {
                    *worker.lock() = Some(pid);
                }
                lines.push(line);
            }
            lines
        })
    };
    // Every simulated hour (250 ms): the runner's memory and the current worker's; every 3 s
    // (12 simulated hours) the worker is killed.
    let mut samples = Vec::new();
    let mut kills = 0;
    let mut next_kill = Duration::from_secs(3);
    while child.try_wait().unwrap().is_none() && began.elapsed() < Duration::from_secs(60) {
        let at = began.elapsed();
        let current = *worker.lock();
        samples.push((
            at.as_secs_f64() * WEEK_SPEED / 86_400.0,
            rss_kib(runner_pid),
            current.map_or(0, rss_kib),
        ));
        if at >= next_kill && at + Duration::from_secs(2) < Duration::from_secs(seconds) {
            if let Some(pid) = current {
                if signal(pid, ProcessSignal::Kill).is_ok() {
                    kills += 1;
                }
            }
            next_kill += Duration::from_secs(3);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = log.join().unwrap().join("\n");
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(kills, (seconds - 3) / 3);
    assert_eq!(counter(&stdout, "worker restarts:"), kills, "{stdout}");

    // Live bars for every symbol on each of Monday, Tuesday and Wednesday (a kill costs up to
    // about an hour of bars at this speed, so a day is not whole).
    let csv = std::fs::read_to_string(&signals).unwrap();
    // Times are ISO 8601 in UTC: the live phase began at 2026-11-30T15:00:00Z.
    let mut per_day: HashMap<(String, String), usize> = HashMap::new();
    for line in csv.lines().skip(1) {
        let mut cols = line.split(',');
        let (Some(time), Some(symbol)) = (cols.next(), cols.next()) else {
            continue;
        };
        if time >= "2026-11-30T15:00:00Z" {
            let day = time.split('T').next().unwrap_or_default().to_string();
            *per_day.entry((symbol.to_string(), day)).or_default() += 1;
        }
    }
    let weekdays = [
        "2026-11-30",
        "2026-12-01",
        "2026-12-02",
        "2026-12-03",
        "2026-12-04",
    ];
    let count = |symbol: &str, day: &str| {
        per_day
            .get(&(symbol.to_string(), day.to_string()))
            .copied()
            .unwrap_or(0)
    };
    for symbol in symbols {
        for day in weekdays.iter().take(days.min(5) as usize) {
            let n = count(symbol, day);
            assert!(n >= 150, "{symbol} {day}: {n} live bars\n{per_day:?}");
        }
        for day in ["2026-12-05", "2026-12-06"] {
            assert_eq!(count(symbol, day), 0, "{symbol}: bars on {day}");
        }
    }
    // Each night's restart (Monday to Saturday) and Sunday's re-login was lost and restored.
    let (restarts, relogins) = match days {
        0..=5 => (days, 0),
        6 => (6, 0),
        _ => (6, 1),
    };
    assert_eq!(
        stderr.matches("reason=the gateway's daily restart").count() as u64,
        restarts,
        "{stderr}"
    );
    assert_eq!(
        stderr
            .matches("reason=the gateway's weekly re-login")
            .count() as u64,
        relogins,
        "{stderr}"
    );

    // Every order of the run at the broker once.
    let trading = trading_line(&stdout);
    assert!(trading.ends_with(", 0 failed"), "{trading}");
    let placed: usize = trading["trading: ".len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{trading}"));
    let text = std::fs::read_to_string(&journal).unwrap();
    let refs: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("P\t"))
        .filter_map(|l| l.split('\t').nth(3))
        .collect();
    let unique: std::collections::HashSet<_> = refs.iter().collect();
    assert_eq!(unique.len(), refs.len(), "an order placed twice: {refs:?}");
    assert_eq!(refs.len(), placed, "{trading}");
    assert!(placed > 0, "{trading}");

    // Memory after the first day: its slope per simulated day.
    let after: Vec<(f64, f64)> = samples
        .iter()
        .filter(|(day, ..)| *day >= 1.0)
        .map(|(day, runner, _)| (*day, *runner as f64))
        .collect();
    let per_day_kib = slope(&after);
    let worker_peak = samples.iter().map(|s| s.2).max().unwrap_or(0);
    println!(
        "{days} simulated days, {kills} workers killed, {placed} orders; runner RSS: {} KiB at \
         the start, {} KiB after day 1, {} KiB at the end; {per_day_kib:.0} KiB per simulated \
         day after day 1; worker RSS at most {worker_peak} KiB; {} samples",
        samples.iter().map(|s| s.1).find(|&k| k > 1024).unwrap_or(0),
        after.first().map_or(0.0, |s| s.1),
        after.last().map_or(0.0, |s| s.1),
        samples.len()
    );
    assert!(after.len() >= 40, "{} samples after day 1", after.len());
    assert!(
        per_day_kib < 1024.0,
        "the runner grows {per_day_kib:.0} KiB per simulated day: {samples:?}"
    );
    let _ = std::fs::remove_file(&journal);
}

/// A peer that corrupts both rings of every new worker, over and over: each corruption is
/// reported, a new worker takes over, and the run ends on time with exit code 0. Neither side
/// may hang (a worker that finds its receiving ring corrupt logs it, and the log record finds
/// the sending ring corrupt too).
#[cfg(target_os = "linux")] // reads /proc or mounts a tmpfs on /dev/shm
#[test]
fn both_rings_corrupted_over_and_over_never_hang_the_run() {
    use std::io::{Seek, SeekFrom, Write};
    const ROUNDS: u32 = 4;
    const DURATION: u64 = 15;
    let started = Instant::now();
    let (child, mut log) = spawn_logged(runner(&["run", "--duration", &DURATION.to_string()]));
    let mut seen = Vec::new();
    let mut corrupted = 0;
    let mut first = None;
    for line in log.by_ref() {
        let line = line.unwrap();
        let started_worker = line
            .find("worker started generation=")
            .and_then(|at| line[at..].rsplit('=').next())
            .and_then(|p| p.trim().parse::<u32>().ok());
        let live = line.contains("live phase");
        seen.push(line);
        // The first worker once the live phase runs (a run whose first worker never
        // connects ends with an error); its successors as soon as they start.
        let pid = match (started_worker, first) {
            (Some(pid), None) => {
                first = Some(pid);
                continue;
            }
            (Some(pid), Some(_)) => pid,
            (None, Some(pid)) if live => pid,
            _ => continue,
        };
        if corrupted == ROUNDS {
            break;
        }
        // Wait until the worker has mapped its segment, then scribble over both rings:
        // positions (tail, head) of each, then the first bytes of each data area.
        let until = Instant::now() + Duration::from_secs(10);
        let range = loop {
            let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
            if let Some(l) = maps.lines().find(|l| is_segment_mapping(l)) {
                break l.split_whitespace().next().unwrap().to_string();
            }
            assert!(
                Instant::now() < until,
                "worker {pid} never mapped its segment"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let Ok(mut seg) = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{pid}/map_files/{range}"))
        else {
            continue;
        };
        for round in 0..20u64 {
            for (at, value) in [
                (4096u64, 0xFFFF_FFFF_FFFF_FFF8u64 - round * 8),
                (4096 + 128, 77 * 8),
                (4096 + 512, 1 << 61),
                (4096 + 512 + 128, 0xFFFF_FFFF_FFFF_FFF8 - round * 8),
            ] {
                let _ = seg.seek(SeekFrom::Start(at));
                let _ = seg.write_all(&value.to_le_bytes());
            }
            for area in [8192u64, 8192 + (1 << 20)] {
                let _ = seg.seek(SeekFrom::Start(area));
                let _ = seg.write_all(&[0xEE; 256]);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        corrupted += 1;
    }
    assert_eq!(corrupted, ROUNDS, "{seen:?}");
    let (code, stdout, rest) = finish(child, log);
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{stdout}{seen:?}{rest:?}");
    assert!(
        took < Duration::from_secs(DURATION + 30),
        "the run took {took:?}"
    );
    assert!(
        seen.iter()
            .chain(&rest)
            .any(|l| l.contains("shared memory corrupt")),
        "{seen:?}"
    );
    assert!(
        counter(&stdout, "worker restarts:") >= u64::from(ROUNDS),
        "{stdout}"
    );
    assert!(
        !seen.iter().chain(&rest).any(|l| l.contains("panicked")),
        "{rest:?}"
    );
}

fn run_with_config(toml: &str, name: &str, duration: u64) -> (Child, Log) {
    let path = temp(name);
    std::fs::write(&path, toml).unwrap();
    spawn_logged(runner(&[
        "run",
        "--config",
        path.to_str().unwrap(),
        "--duration",
        &duration.to_string(),
    ]))
}

/// `max_restarts` is a restart intensity: a worker death every few seconds, in a run that
/// allows one restart per 2 s, never adds up to giving up.
#[test]
fn restarts_far_apart_never_add_up_to_giving_up() {
    let (child, mut log) = run_with_config(
        "[supervisor]\nmax_restarts = 1\nrestart_window_seconds = 2\n",
        "intensity.toml",
        12,
    );
    let (mut pid, _) = wait_for_worker(&mut log, 0);
    wait_for_line(&mut log, "live phase");
    for generation in 1..=3 {
        std::thread::sleep(Duration::from_millis(2500));
        signal(pid, ProcessSignal::Kill).unwrap();
        (pid, _) = wait_for_worker(&mut log, generation);
    }
    let (code, stdout, rest) = finish(child, log);
    assert_eq!(code, Some(0), "{stdout}{rest:?}");
    assert_eq!(counter(&stdout, "worker restarts:"), 3, "{stdout}");
    assert!(!rest.iter().any(|l| l.contains("gave up")), "{rest:?}");
}

/// When the supervisor gives up, the run still ends and reports, but with exit code 1 and
/// the reason, whatever phase it was in.
#[test]
fn a_supervisor_that_gives_up_fails_the_run_with_the_reason() {
    let (child, mut log) = run_with_config(
        "[supervisor]\nmax_restarts = 1\nrestart_window_seconds = 600\n",
        "gives-up.toml",
        4,
    );
    let (pid, _) = wait_for_worker(&mut log, 0);
    wait_for_line(&mut log, "live phase");
    signal(pid, ProcessSignal::Kill).unwrap();
    let (pid, _) = wait_for_worker(&mut log, 1);
    signal(pid, ProcessSignal::Kill).unwrap();
    let (code, stdout, rest) = finish(child, log);
    assert_eq!(code, Some(1), "{stdout}{rest:?}");
    let last = rest.last().cloned().unwrap_or_default();
    assert!(
        last.starts_with("error: gave up after 1 worker restarts within 600 s; last failure:"),
        "{rest:?}"
    );
    assert!(stdout.contains("worker restarts: 1"), "{stdout}");
}

/// A /dev/shm too small for the configured rings does not matter on Linux: the rings live in
/// sealed anonymous memory, not in /dev/shm, and nothing is put there.
#[cfg(target_os = "linux")] // mounts a tmpfs on /dev/shm
#[test]
fn a_short_dev_shm_does_not_stop_a_run() {
    let config = temp("big-rings.toml");
    std::fs::write(
        &config,
        "[bridge]\nring_capacity = 8388608\nmax_frame = 262144\n",
    )
    .unwrap();
    let script = format!(
        "mount -t tmpfs -o size=4m tmpfs /dev/shm && {RUNNER} run --history-only --config {}; \
         echo \"exit=$?\"; echo \"left=$(ls -A /dev/shm | wc -l)\"",
        config.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .or_else(|_| {
            Command::new("unshare")
                .args(["-rm", "sh", "-c", &script])
                .output()
        })
        .expect("this test needs `unshare -m` or `unshare -rm` to make a short /dev/shm");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("exit=0"), "{stdout}{stderr}");
    assert!(stdout.contains("left=0"), "{stdout}");
    assert_eq!(table(&stdout).len(), 7, "{stdout}");
}

/// `--end` asks for history ending at a given time: the last bar is the last one complete by
/// then, never the one still forming.
#[test]
fn history_ending_at_a_given_time_ends_with_the_last_complete_bar() {
    let signals = temp("end-signals.csv");
    let (code, stdout, stderr) = output(runner(&[
        "run",
        "--history-only",
        "--symbols",
        "SPY",
        "--end",
        "2023-11-14T22:13:20Z",
        "--signals",
        signals.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(table(&stdout)["SPY"].0, 1440, "{stdout}");
    let csv = std::fs::read_to_string(&signals).unwrap();
    let last = csv.lines().last().unwrap();
    // The minute bar of 22:12 ended at 22:13; the one of 22:13 was still forming at 22:13:20.
    assert!(last.starts_with("2023-11-14T22:12:00Z,SPY,"), "{last}");
}

/// A symbol unsubscribed stops streaming, and a worker that replaces the one it was
/// unsubscribed on is not given it again; the one still subscribed is.
#[test]
fn an_unsubscribed_symbol_stops_and_is_not_restored_on_a_replacement() {
    use bridge::protocol::SubscribeRequest;
    let mut cfg = runner::config::Config::default();
    cfg.sim.speed = 600.0;
    let run = runner::worker_setup::prepare(
        &mut cfg,
        runner::worker_setup::WorkerProgram::executable(PathBuf::from(RUNNER)),
        SimFaults::default(),
    )
    .unwrap();
    let (sup, mut events) = runner::supervisor::Supervisor::start(run.setup).unwrap();
    let timeout = Duration::from_secs(10);
    for (id, symbol) in [(0, "SPY"), (1, "QQQ")] {
        let sub = SubscribeRequest {
            symbol: symbol.into(),
            id,
            bar_seconds: 5,
        };
        sup.subscribe(sub, timeout).unwrap();
    }
    // Bars of both, then of QQQ alone once SPY is unsubscribed.
    let bars_of = |events: &mut runner::worker_events::WorkerEvents, for_ms: u64| {
        let mut seen = [0usize; 2];
        let until = Instant::now() + Duration::from_millis(for_ms);
        while Instant::now() < until {
            if let Ok(Event::Bar { sub, .. }) = events.recv_timeout(Duration::from_millis(20)) {
                seen[sub as usize] += 1;
            }
        }
        seen
    };
    let both = bars_of(&mut events, 500);
    assert!(both[0] > 0 && both[1] > 0, "{both:?}");
    sup.unsubscribe("SPY", timeout).unwrap();
    // What was sent before the answer may still be on its way.
    let _ = bars_of(&mut events, 200);
    let after = bars_of(&mut events, 500);
    assert_eq!(after[0], 0, "{after:?}");
    assert!(after[1] > 0, "{after:?}");

    let pid = sup.stats().worker_pid.unwrap();
    signal(pid, ProcessSignal::Kill).unwrap();
    match sup.request(Request::Ping { payload: vec![1] }, Duration::from_secs(20)) {
        Ok(Reply::Pong { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(sup.stats().restarts, 1);
    let replaced = bars_of(&mut events, 700);
    assert_eq!(replaced[0], 0, "SPY came back: {replaced:?}");
    assert!(replaced[1] > 0, "QQQ was not restored: {replaced:?}");
    // Unsubscribing again is harmless.
    sup.unsubscribe("SPY", timeout).unwrap();
    sup.shutdown();
    drop(run.journal);
}
