//! `fan_out`: one live-bar stream from the worker through a hub to 1, 4 or 16 clients. The
//! hub is a process of its own (this harness started as `bridge-bench --serve-hub DIR NAME`,
//! its worker the harness too), the clients are threads of the harness, each attached to the
//! hub over a segment of its own and subscribed to the same symbol. The simulated market
//! stamps each bar with the monotonic clock as it hands it to the bridge (one one-second bar
//! per millisecond); each client takes the time as it reads the bar from its events. Then,
//! the clients still attached and nothing streamed, the hub's CPU is measured while idle.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge::protocol::{Event, Request, SubscribeRequest};

use crate::cpu_ns;
use crate::results::Row;

/// The case's name for `clients` clients.
pub fn case(clients: usize) -> &'static str {
    match clients {
        1 => "fan_out_1",
        4 => "fan_out_4",
        _ => "fan_out_16",
    }
}

/// The clients of each case.
pub const CLIENTS: [usize; 3] = [1, 4, 16];

/// The hub's configuration: the simulated market at 1000× (a one-second bar per
/// millisecond), stamped bars, its directory `dir`.
fn config(dir: &Path) -> runner::config::Config {
    let mut cfg = runner::config::Config::default();
    cfg.sim.speed = 1000.0;
    cfg.symbols = vec!["SPY".into()];
    cfg.hub.dir = Some(dir.to_path_buf());
    cfg
}

/// `bridge-bench --serve-hub DIR NAME [NATS_URL]`: serves as the hub until SIGTERM
/// (publishing to NATS JetStream at NATS_URL, if given).
pub fn serve_hub(exe: &Path, args: &[String]) -> Result<(), String> {
    let (Some(dir), Some(name)) = (args.first(), args.get(1)) else {
        return Err("--serve-hub DIR NAME [NATS_URL]".into());
    };
    let mut cfg = config(Path::new(dir));
    cfg.nats.url = args.get(2).cloned();
    let mut setup = runner::worker_setup::WorkerSetup::from_config(
        &cfg,
        exe.to_path_buf(),
        worker::SimFaults::default(),
    );
    if let worker::BackendOptions::Sim(sim) = &mut setup.options.backend {
        sim.stamp_bars = true;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| e.to_string())?;
    }
    runner::hub::serve(&cfg, setup, &stop, name).map_err(|e| format!("{e:#}"))
}

/// The hub of one case: its process, removed with its directory when dropped.
pub struct Hub {
    child: std::process::Child,
    /// Its directory.
    pub dir: PathBuf,
    /// Its name.
    pub name: String,
}

impl Hub {
    /// Starts the harness as a hub (publishing to NATS at `nats`, if given).
    pub fn start(exe: &Path, nats: Option<&str>) -> Hub {
        let dir = std::env::temp_dir().join(format!("bridge-bench-hub-{}", std::process::id()));
        let name = "bench".to_string();
        let mut args = vec![
            "--serve-hub".to_string(),
            dir.to_string_lossy().into_owned(),
            name.clone(),
        ];
        args.extend(nats.map(str::to_string));
        let mut cmd = Command::new(exe);
        cmd.args(&args).stdout(Stdio::null()).stderr(Stdio::null());
        // The hub and its worker on the peers' CPU, the clients on the harness's.
        if let Ok(cpu) = std::env::var("BRIDGE_BENCH_PEER_CPU") {
            cmd = Command::new("taskset");
            cmd.args(["-c", &cpu])
                .arg(exe)
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        }
        let child = cmd.spawn().expect("the hub starts");
        let until = Instant::now() + Duration::from_secs(30);
        while runner::hub::read_status(&dir, &name).is_err() {
            assert!(Instant::now() < until, "the hub did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Hub { child, dir, name }
    }

    fn worker_pid(&self) -> Option<u32> {
        runner::hub::read_status(&self.dir, &self.name)
            .ok()
            .and_then(|s| s.worker_pid)
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = base::signal::send(self.child.id(), base::signal::ProcessSignal::Terminate);
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One client: attaches, subscribes, and times every bar after the warm-up until `until`;
/// then unsubscribes and stays attached until `leave`.
pub fn client(
    dir: PathBuf,
    name: String,
    i: usize,
    until: Instant,
    leave: Arc<AtomicBool>,
) -> (Vec<u64>, u64) {
    let cfg = bridge::ClientConfig::default();
    let channel = bridge::channel::attach_to_hub(&dir, &name, &format!("fan-{i}"), &cfg.channel)
        .expect("attached");
    let (client, events) = bridge::Client::over(channel, &cfg).expect("client");
    let sub = SubscribeRequest {
        symbol: "SPY".into(),
        id: 0,
        bar_seconds: 1,
    };
    client
        .request(Request::Subscribe(sub), Duration::from_secs(10))
        .expect("subscribed");
    let warm_up = 200;
    let mut seen = 0u64;
    let mut samples = Vec::new();
    while Instant::now() < until {
        let Ok(Event::Bar { bar, .. }) = events.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        let ns = bridge::platform::monotonic_ns().saturating_sub(bar.volume as u64);
        seen += 1;
        if seen > warm_up {
            samples.push(ns);
        }
    }
    let unsubscribe = Request::Unsubscribe {
        symbol: "SPY".into(),
    };
    let _ = client.request(unsubscribe, Duration::from_secs(10));
    while !leave.load(std::sync::atomic::Ordering::Acquire) {
        // Drain what was on its way; then the client sits idle, attached.
        let _ = events.recv_timeout(Duration::from_millis(50));
    }
    let _ = client.request(Request::Shutdown, Duration::from_secs(2));
    (samples, seen)
}

/// The `p` quantile of `sorted`.
pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0) as f64
}

/// The case with `clients` clients, streaming for `secs` seconds, idle for `idle_secs`.
pub fn run(exe: &Path, clients: usize, secs: f64, idle_secs: f64) -> Row {
    let hub = Hub::start(exe, None);
    let leave = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(secs.max(2.0));
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let (dir, name, leave) = (hub.dir.clone(), hub.name.clone(), leave.clone());
            std::thread::spawn(move || client(dir, name, i, until, leave))
        })
        .collect();
    // Once every client streamed and let go of its subscription: the hub idle, its clients
    // attached.
    let mut streamed = until.saturating_duration_since(Instant::now());
    std::thread::sleep(streamed + Duration::from_millis(500));
    let pids: Vec<u32> = [Some(hub.child.id()), hub.worker_pid()]
        .into_iter()
        .flatten()
        .collect();
    let before: Vec<u64> = pids.iter().map(|&p| cpu_ns(p)).collect();
    let idle_from = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(idle_secs));
    let wall = idle_from.elapsed().as_nanos() as f64;
    let used: Vec<f64> = pids
        .iter()
        .zip(&before)
        .map(|(&p, &b)| cpu_ns(p).saturating_sub(b) as f64 / wall * 100.0)
        .collect();
    leave.store(true, std::sync::atomic::Ordering::Release);
    let mut samples = Vec::new();
    let mut received = 0;
    for t in threads {
        let (s, seen) = t.join().expect("a client");
        samples.extend(s);
        received += seen;
    }
    streamed = until.saturating_duration_since(started);
    samples.sort_unstable();
    let mut figures = vec![
        ("p50_ns", percentile(&samples, 0.5)),
        ("p99_ns", percentile(&samples, 0.99)),
        ("bars", samples.len() as f64),
        ("bars_per_s", received as f64 / streamed.as_secs_f64()),
    ];
    if let Some(cpu) = used.first() {
        figures.push(("hub_idle_cpu_pct", *cpu));
    }
    if let Some(cpu) = used.get(1) {
        figures.push(("worker_idle_cpu_pct", *cpu));
    }
    Row {
        transport: "shm",
        case: case(clients),
        msg_bytes: None,
        figures,
    }
}
