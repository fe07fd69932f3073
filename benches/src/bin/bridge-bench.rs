//! The comparison harness: the bridge against pipes and Unix sockets, same messages, same
//! codec, in one run; and a hub's fan-out of live bars to 1, 4 and 16 clients (`fan_out`).
//!
//! ```text
//! bridge-bench [--json] [--quick] [--runs N] [--case PREFIX] [--threaded]
//! ```
//!
//! `--threaded` gives every case's process one more thread, idle: as a real client has
//! besides the thread that reads (the bridge's side has its liveness thread anyway). glibc's
//! `malloc` takes no lock while a process has one thread, so without it the baselines'
//! consumers allocate each message's payload more cheaply than any real client does.
//!
//! The harness pins itself to CPU 0 and its peers to CPU 1 (`--no-pin` leaves placement to
//! the scheduler). `--case` runs only the cases whose name (`rtt_hot/shm`, `stream/pipe/64`, `idle/uds`, …)
//! starts with PREFIX.
//!
//! Prints one JSON object (`--json`) or a table. With `--runs N` every case runs N times and
//! each figure is the median of the N runs.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use benches::results::{json, medians, parse_row, row_line, table, Row};

/// Counts the receiving thread's allocations for `allocs_per_msg`.
#[global_allocator]
static ALLOCATOR: bridge::alloc_count::CountingAllocator = bridge::alloc_count::CountingAllocator;
use benches::transport::{Connection, Kind};
use benches::{cpu_ns, request};

const PAYLOAD: usize = 64;
const LARGE: usize = 16 * 1024;

/// The request/reply transports.
const REQ_REPLY: [Kind; 3] = [Kind::Shm, Kind::Pipe, Kind::Uds];
/// `rtt_hot` adds the floor.
const HOT: [Kind; 5] = [
    Kind::Shm,
    Kind::Pipe,
    Kind::Uds,
    Kind::Floor,
    Kind::Iceoryx2,
];
/// `stream_bars`: the bridge against the best baseline, same messages (and the baseline with
/// the bridge's fixed layout for bars).
const BARS: [Kind; 3] = [Kind::Shm, Kind::PipeBuffered, Kind::PipeBufferedFixed];

/// The transports of `stream` for messages of `len` bytes (the floor's slots are 64 bytes).
fn stream_kinds(len: usize) -> Vec<Kind> {
    let mut kinds = vec![
        Kind::Shm,
        Kind::Pipe,
        Kind::PipeBuffered,
        Kind::Uds,
        Kind::Iceoryx2,
    ];
    if len == PAYLOAD {
        kinds.push(Kind::Floor);
    }
    kinds
}

struct Plan {
    hot_iters: usize,
    cold_iters: usize,
    stream_secs: f64,
    idle_secs: f64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64
}

fn rtt(exe: &Path, kind: Kind, iters: usize, idle_before: Option<Duration>) -> Vec<u64> {
    let mut c = Connection::start(exe, kind, "echo", PAYLOAD, 0.0);
    let mut req = request(0, PAYLOAD);
    let warmup = if idle_before.is_some() { 5 } else { iters / 10 };
    let mut samples = Vec::with_capacity(iters);
    for i in 0..warmup + iters {
        if let Some(idle) = idle_before {
            std::thread::sleep(idle);
        }
        req.id = i as u64;
        let start = Instant::now();
        let reply = c.round_trip(&req);
        let ns = start.elapsed().as_nanos() as u64;
        if let Some(reply) = reply {
            assert_eq!(reply.id, req.id);
        }
        if i >= warmup {
            samples.push(ns);
        }
    }
    c.close();
    samples.sort_unstable();
    samples
}

fn rtt_hot(exe: &Path, kind: Kind, plan: &Plan) -> Row {
    let s = rtt(exe, kind, plan.hot_iters, None);
    Row {
        transport: kind.name(),
        case: "rtt_hot",
        msg_bytes: None,
        figures: vec![
            ("p50_ns", percentile(&s, 0.5)),
            ("p99_ns", percentile(&s, 0.99)),
            ("p999_ns", percentile(&s, 0.999)),
            ("iters", s.len() as f64),
        ],
    }
}

fn rtt_cold(exe: &Path, kind: Kind, plan: &Plan) -> Row {
    let s = rtt(exe, kind, plan.cold_iters, Some(Duration::from_millis(6)));
    Row {
        transport: kind.name(),
        case: "rtt_cold",
        msg_bytes: None,
        figures: vec![
            ("p50_ns", percentile(&s, 0.5)),
            ("p99_ns", percentile(&s, 0.99)),
            ("iters", s.len() as f64),
        ],
    }
}

fn stream(exe: &Path, kind: Kind, len: usize, plan: &Plan) -> Row {
    let mut c = Connection::start(exe, kind, "produce", len, plan.stream_secs);
    let before = c.shm_stats();
    let s = c.consume();
    let after = c.shm_stats();
    c.close();
    let secs = s.elapsed.as_secs_f64();
    let mut figures = vec![
        ("msgs_per_s", s.messages as f64 / secs),
        ("bytes_per_s", (s.messages * len as u64) as f64 / secs),
        ("messages", s.messages as f64),
    ];
    if let (Some(b), Some(a)) = (before, after) {
        figures.push((
            "wakes",
            (a.sent.wakes + a.received.wakes - b.sent.wakes - b.received.wakes + s.peer_wakes)
                as f64,
        ));
    }
    Row {
        transport: kind.name(),
        case: "stream",
        msg_bytes: Some(len),
        figures,
    }
}

/// Live bar events one way, as fast as they go: the bridge's real hot message.
fn stream_bars(exe: &Path, kind: Kind, plan: &Plan) -> Row {
    let mut c = Connection::start(exe, kind, "produce_bars", 0, plan.stream_secs);
    let s = c.consume();
    c.close();
    let secs = s.elapsed.as_secs_f64();
    let mut figures = vec![
        ("msgs_per_s", s.messages as f64 / secs),
        ("messages", s.messages as f64),
    ];
    if kind == Kind::Shm && s.counted > 0 {
        figures.push(("allocs", s.allocations as f64));
        figures.push(("allocs_per_msg", s.allocations as f64 / s.counted as f64));
    }
    Row {
        transport: kind.name(),
        case: "stream_bars",
        msg_bytes: None,
        figures,
    }
}

/// A live bar from the worker's backend to the strategy, through everything a run goes
/// through: the simulated market stamps each bar with the monotonic clock as it hands it to
/// the bridge (one one-second bar per millisecond), the runner's client and supervisor carry
/// it, and the job's loop (`WorkerEvents::recv_timeout`) takes it; the time is read as the
/// crossover is called on it. Also counted: the runner's sleeps on the ring's doorbell (each
/// needs a futex wake from the worker; the job's loop sleeps there itself while it waits,
/// `bridge::Events`), the job loop's waits for the events channel (each a futex wake from the
/// dispatcher, when the dispatcher reads the ring), per bar, and the times the dispatcher
/// handed the ring to the job's loop. [`Mode::Spin`]: with `bridge.spin` (both
/// busy-poll); [`Mode::Dashboard`]: with the dashboard on, each bar handed to it as a run's
/// live loop does, and a browser reading its event stream.
fn bar_to_strategy(exe: &Path, plan: &Plan, mode: Mode) -> Row {
    use bridge::protocol::{Event, SubscribeRequest};
    use runner::session::Observer;
    let mut cfg = runner::config::Config::default();
    cfg.sim.speed = 1000.0;
    cfg.bridge.spin = mode == Mode::Spin;
    cfg.symbols = vec!["SPY".into()];
    cfg.dashboard.enabled = mode == Mode::Dashboard;
    cfg.dashboard.listen = "127.0.0.1:0".into();
    let mut setup = runner::worker_setup::WorkerSetup::from_config(
        &cfg,
        exe.to_path_buf(),
        worker::SimFaults::default(),
    );
    if let worker::BackendOptions::Sim(sim) = &mut setup.options.backend {
        sim.stamp_bars = true;
    }
    let (sup, mut events) = runner::supervisor::Supervisor::start(setup).unwrap();
    let dashboard = (mode == Mode::Dashboard)
        .then(|| runner::dashboard::Dashboard::start(&cfg, sup.clone()).unwrap());
    let browser = dashboard
        .as_ref()
        .and_then(|d| d.address())
        .map(|addr| std::thread::spawn(move || browse(addr)));
    let mut feed = dashboard.as_ref().map(|d| d.updates());
    sup.subscribe(
        SubscribeRequest {
            symbol: "SPY".into(),
            id: 0,
            bar_seconds: 1,
        },
        Duration::from_secs(10),
    )
    .unwrap();
    let strategy = runner::strategy::Crossover {
        fast: cfg.strategy.fast,
        slow: cfg.strategy.slow,
    };
    let mut window = Vec::with_capacity(4 * strategy.slow + 4);
    let mut samples = Vec::new();
    let warm_up = 200;
    let (mut sleeps_from, mut waits_from, mut restarts_from, mut handovers_from) = (0, 0, 0, 0);
    let until = Instant::now() + Duration::from_secs_f64(plan.stream_secs.max(2.0));
    while Instant::now() < until {
        let Ok(Event::Bar { bar, .. }) = events.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        let ns = bridge::platform::monotonic_ns().saturating_sub(bar.volume as u64);
        window.push(bar);
        if window.len() > 2 * strategy.slow + 2 {
            window.drain(..window.len() - strategy.slow - 1);
        }
        let signal = std::hint::black_box(strategy.evaluate(&window))
            .map(|e| e.signal)
            .unwrap_or(runner::strategy::Signal::Hold);
        samples.push(ns);
        if let Some(f) = feed.as_mut() {
            f.on_live_bar("SPY", &window, signal, None).unwrap();
        }
        if samples.len() == warm_up {
            let stats = sup.stats();
            sleeps_from = stats.bridge.channel.received.sleeps;
            handovers_from = stats.bridge.handovers;
            restarts_from = stats.restarts;
            waits_from = events.waits();
        }
    }
    let stats = sup.stats();
    if let Some(d) = dashboard {
        d.finish(&[]).unwrap();
    }
    // What the browser read of the event stream, to the run's end.
    let browser_bytes = browser.map(|b| b.join().unwrap());
    sup.shutdown();
    let case = match mode {
        Mode::Plain => "bar_to_strategy",
        Mode::Spin => "bar_to_strategy_spin",
        Mode::Dashboard => "bar_to_strategy_dashboard",
    };
    let mut timed: Vec<u64> = samples.split_off(warm_up.min(samples.len()));
    // Counters of one worker only: a replacement starts its own from zero.
    if timed.is_empty() || stats.restarts != restarts_from {
        eprintln!(
            "bridge-bench: {case}: {} bars after the warm-up, {} worker restarts: no figures",
            timed.len(),
            stats.restarts - restarts_from
        );
        return Row {
            transport: "shm",
            case,
            msg_bytes: None,
            figures: vec![("bars", timed.len() as f64)],
        };
    }
    let sleeps = stats
        .bridge
        .channel
        .received
        .sleeps
        .saturating_sub(sleeps_from);
    let waits = events.waits().saturating_sub(waits_from);
    let handovers = stats.bridge.handovers.saturating_sub(handovers_from);
    timed.sort_unstable();
    let bars = timed.len() as f64;
    Row {
        transport: "shm",
        case,
        msg_bytes: None,
        figures: vec![
            ("p50_ns", percentile(&timed, 0.5)),
            ("p99_ns", percentile(&timed, 0.99)),
            ("bars", bars),
            ("ring_sleeps_per_bar", sleeps as f64 / bars),
            ("job_waits_per_bar", waits as f64 / bars),
            // The ring handed from the dispatcher to the job's loop (each a wake or two).
            ("handovers", handovers as f64),
        ]
        .into_iter()
        .chain(browser_bytes.map(|b| ("browser_bytes", b as f64)))
        .collect(),
    }
}

/// How `bar_to_strategy` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Spin,
    Dashboard,
}

/// A browser on the dashboard at `addr`: reads its event stream to the end; returns the
/// bytes read.
fn browse(addr: std::net::SocketAddr) -> usize {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET /api/events HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut read = 0;
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        read += n;
    }
    read
}

fn idle(exe: &Path, kind: Kind, plan: &Plan) -> Row {
    let c = Connection::start(exe, kind, "idle", PAYLOAD, 0.0);
    // Let start-up settle (spinning phases end, threads park).
    std::thread::sleep(Duration::from_millis(300));
    let pids = c.pids();
    let before: u64 = pids.iter().map(|&p| cpu_ns(p)).sum();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(plan.idle_secs));
    let used = pids.iter().map(|&p| cpu_ns(p)).sum::<u64>() - before;
    let wall = start.elapsed().as_nanos() as f64;
    c.close();
    Row {
        transport: kind.name(),
        case: "idle",
        msg_bytes: None,
        figures: vec![("cpu_pct", used as f64 / wall * 100.0)],
    }
}

/// Every case's name, in the order they run.
fn case_names() -> Vec<String> {
    let mut names = Vec::new();
    for k in HOT {
        names.push(format!("rtt_hot/{}", k.name()));
    }
    for k in REQ_REPLY {
        names.push(format!("rtt_cold/{}", k.name()));
    }
    for len in [PAYLOAD, LARGE] {
        for k in stream_kinds(len) {
            names.push(format!("stream/{}/{len}", k.name()));
        }
    }
    for k in BARS {
        names.push(format!("stream_bars/{}", k.name()));
    }
    names.push("bar_to_strategy/shm".into());
    names.push("bar_to_strategy_spin/shm".into());
    names.push("bar_to_strategy_dashboard/shm".into());
    for n in benches::fan_out::CLIENTS {
        names.push(format!("{}/shm", benches::fan_out::case(n)));
    }
    if cfg!(feature = "nats") {
        names.push("hub_to_remote".into());
    }
    for k in REQ_REPLY {
        names.push(format!("idle/{}", k.name()));
    }
    names
}

/// Runs each case in a process of its own, so that no case inherits another's heap layout
/// (a 16 KiB `memmove` between two buffers whose addresses alias modulo 4 KiB runs several
/// times slower, whichever transport is measured).
fn run_isolated(exe: &Path, args: &[String], only: Option<&str>) -> Vec<Row> {
    let mut rows = Vec::new();
    for name in case_names() {
        if only.is_some_and(|o| !o.split('+').any(|o| name.starts_with(o))) {
            continue;
        }
        let mut cmd = std::process::Command::new(exe);
        cmd.args(["--case-rows", &name]);
        for flag in ["--quick", "--no-pin", "--threaded"] {
            if args.iter().any(|a| a == flag) {
                cmd.arg(flag);
            }
        }
        let out = cmd.output().expect("harness runs");
        if !out.status.success() {
            eprintln!(
                "bridge-bench: case {name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        }
        rows.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(parse_row),
        );
    }
    rows
}

fn run_once(exe: &Path, plan: &Plan, only: Option<&str>) -> Vec<Row> {
    let mut rows = Vec::new();
    let wanted = |name: String| only.is_none_or(|o| o.split('+').any(|o| name == o));
    for k in HOT {
        if wanted(format!("rtt_hot/{}", k.name())) {
            rows.push(rtt_hot(exe, k, plan));
        }
    }
    for k in REQ_REPLY {
        if wanted(format!("rtt_cold/{}", k.name())) {
            rows.push(rtt_cold(exe, k, plan));
        }
    }
    for len in [PAYLOAD, LARGE] {
        for k in stream_kinds(len) {
            if wanted(format!("stream/{}/{len}", k.name())) {
                rows.push(stream(exe, k, len, plan));
            }
        }
    }
    for k in BARS {
        if wanted(format!("stream_bars/{}", k.name())) {
            rows.push(stream_bars(exe, k, plan));
        }
    }
    if wanted("bar_to_strategy/shm".into()) {
        rows.push(bar_to_strategy(exe, plan, Mode::Plain));
    }
    if wanted("bar_to_strategy_spin/shm".into()) {
        rows.push(bar_to_strategy(exe, plan, Mode::Spin));
    }
    if wanted("bar_to_strategy_dashboard/shm".into()) {
        rows.push(bar_to_strategy(exe, plan, Mode::Dashboard));
    }
    for n in benches::fan_out::CLIENTS {
        if wanted(format!("{}/shm", benches::fan_out::case(n))) {
            rows.push(benches::fan_out::run(
                exe,
                n,
                plan.stream_secs,
                plan.idle_secs,
            ));
        }
    }
    #[cfg(feature = "nats")]
    if wanted("hub_to_remote".into()) {
        rows.extend(benches::remote::run(exe, plan.stream_secs));
    }
    for k in REQ_REPLY {
        if wanted(format!("idle/{}", k.name())) {
            rows.push(idle(exe, k, plan));
        }
    }
    rows
}

/// Re-runs this harness under `taskset` on CPU 0 with its peers on CPU 1. `None` if this
/// machine has fewer than two CPUs or no `taskset` (then the harness runs unpinned).
fn repin(args: &[String]) -> Option<ExitCode> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if cpus < 2 {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let status = std::process::Command::new("taskset")
        .args(["-c", "0"])
        .arg(exe)
        .args(args)
        .env("BRIDGE_BENCH_PEER_CPU", "1")
        .status()
        .ok()?;
    Some(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}

/// This harness is also the worker of `bar_to_strategy` (as the `runner` binary is a run's):
/// started as `bridge-bench worker`, on the peers' CPU.
fn run_worker() -> ExitCode {
    use std::os::unix::process::CommandExt;
    if let (Ok(cpu), None) = (
        std::env::var("BRIDGE_BENCH_PEER_CPU"),
        std::env::var_os("BRIDGE_BENCH_PINNED"),
    ) {
        if let Ok(exe) = std::env::current_exe() {
            // Replaces this process (same pid) with itself pinned; returns only on failure.
            let e = std::process::Command::new("taskset")
                .args(["-c", &cpu])
                .arg(exe)
                .arg("worker")
                .env("BRIDGE_BENCH_PINNED", "1")
                .exec();
            eprintln!("bridge-bench worker: not pinned ({e})");
        }
    }
    match worker::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bridge-bench worker: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("worker") {
        return run_worker();
    }
    if args.first().map(String::as_str) == Some("--serve-hub") {
        let served = std::env::current_exe()
            .map_err(|e| e.to_string())
            .and_then(|exe| benches::fan_out::serve_hub(&exe, &args[1..]));
        return match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bridge-bench hub: {e}");
                ExitCode::from(2)
            }
        };
    }
    if args.first().map(String::as_str) == Some("--peer") {
        return match benches::peer::run(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bridge-bench peer: {e}");
                ExitCode::from(2)
            }
        };
    }
    // Placement matters on a 2-vCPU machine: a producer and consumer that the scheduler puts
    // on one vCPU share it and every transport slows down unevenly from run to run. Unless
    // told otherwise, run the harness on the first CPU and every peer on the second.
    if !args.iter().any(|a| a == "--no-pin") && std::env::var_os("BRIDGE_BENCH_PEER_CPU").is_none()
    {
        if let Some(code) = repin(&args) {
            return code;
        }
    }
    let quick = args.iter().any(|a| a == "--quick");
    let as_json = args.iter().any(|a| a == "--json");
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    let plan = if quick {
        Plan {
            hot_iters: 20_000,
            cold_iters: 100,
            stream_secs: 1.0,
            idle_secs: 2.0,
        }
    } else {
        Plan {
            hot_iters: 200_000,
            cold_iters: 400,
            stream_secs: 3.0,
            idle_secs: 2.0,
        }
    };
    let exe: PathBuf = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bridge-bench: cannot find its own executable: {e}");
            return ExitCode::from(1);
        }
    };
    let only = args
        .iter()
        .position(|a| a == "--case")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str);
    if let Some(i) = args.iter().position(|a| a == "--case-rows") {
        // A child of `run_isolated`: run one case here, print its rows as lines.
        let name = args.get(i + 1).map(String::as_str);
        if args.iter().any(|a| a == "--threaded") {
            std::thread::spawn(|| loop {
                std::thread::park();
            });
        }
        for row in run_once(&exe, &plan, name) {
            println!("{}", row_line(&row));
        }
        return ExitCode::SUCCESS;
    }
    let all: Vec<Vec<Row>> = (0..runs).map(|_| run_isolated(&exe, &args, only)).collect();
    let rows = medians(all);
    if as_json {
        println!("{}", json(&rows));
    } else {
        print!("{}", table(&rows));
    }
    ExitCode::SUCCESS
}
