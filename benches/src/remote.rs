//! `hub_to_remote`: one live-bar stream from the worker through a hub, to a client attached
//! over shared memory (`shm`) and, in the same run, to a NATS subscriber of the hub's stream
//! subject through a local nats-server (`nats`), and to a remote runner's worker
//! (`nats_remote`: the hub's door, and a durable consumer acknowledging each bar before the
//! next comes, as `runner run --nats URL --hub NAME` reads them): what a runner on another
//! machine would read, less the network. The simulated market stamps each bar with the monotonic clock as
//! it hands it to the bridge (a one-second bar per millisecond); each reader takes the time
//! as it has the bar. Needs nats-server (`NATS_SERVER`, or on the PATH; `.ci/run` installs it
//! in `target/nats-venv`): without one the case says so and gives no row.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::fan_out::{client, percentile, Hub};
use crate::results::Row;

/// A nats-server on a loopback port, its store in a directory of its own.
struct Server {
    child: Child,
    store: PathBuf,
    url: String,
}

impl Server {
    fn start() -> Option<Server> {
        let program = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let store = std::env::temp_dir().join(format!("bridge-bench-nats-{}", std::process::id()));
        let child = Command::new(&program)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| eprintln!("bridge-bench: hub_to_remote skipped: {program}: {e}"))
            .ok()?;
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > until {
                eprintln!("bridge-bench: hub_to_remote skipped: nats-server did not listen");
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Server {
            child,
            store,
            url: format!("nats://127.0.0.1:{port}"),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// Subscribes to the hub's bars of SPY and times each after the warm-up until `until`.
fn subscriber(url: String, subject: String, until: Instant, ready: Arc<AtomicBool>) -> Vec<u64> {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    runtime.block_on(async move {
        let Ok(client) = async_nats::connect(url.as_str()).await else {
            return Vec::new();
        };
        let Ok(mut sub) = client.subscribe(subject).await else {
            return Vec::new();
        };
        ready.store(true, std::sync::atomic::Ordering::Release);
        let (warm_up, mut seen, mut samples) = (200, 0, Vec::new());
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return samples;
            }
            let Ok(Some(m)) = tokio::time::timeout(left, sub.next()).await else {
                return samples;
            };
            let now = bridge::platform::monotonic_ns();
            let Ok(bar) = serde_json::from_slice::<runner::nats::PublishedBar>(&m.payload) else {
                continue;
            };
            seen += 1;
            if seen > warm_up {
                samples.push(now.saturating_sub(bar.volume as u64));
            }
        }
    })
}

/// A remote runner's worker backend (`worker::remote`) of the hub, subscribed to SPY; times
/// each bar it hands over after the warm-up until `until`.
fn remote_runner(url: String, hub: String, until: Instant) -> Vec<u64> {
    use bridge::protocol::{Event, SubscribeRequest};
    use worker::backend::Backend;
    let samples = Arc::new(parking_lot::Mutex::new((0u64, Vec::new())));
    let sink: worker::backend::EventSink = {
        let samples = samples.clone();
        Arc::new(move |event| {
            if let Event::Bar { bar, .. } = event {
                let now = bridge::platform::monotonic_ns();
                let mut s = samples.lock();
                s.0 += 1;
                if s.0 > 200 {
                    s.1.push(now.saturating_sub(bar.volume as u64));
                }
            }
            true
        })
    };
    let opts = worker::options::RemoteOptions {
        url,
        creds_file: None,
        token: None,
        hub,
        client: "bench-remote".into(),
        request_timeout_ms: 10_000,
        history_timeout_ms: 10_000,
        instance: format!("bench-{}", std::process::id()),
    };
    let Ok(backend) = worker::remote::RemoteBackend::new(opts, 0, sink) else {
        return Vec::new();
    };
    let subscribed = backend.connect(Duration::from_secs(10)).and_then(|_| {
        backend.subscribe(&SubscribeRequest {
            symbol: "SPY".into(),
            id: 0,
            bar_seconds: 1,
        })
    });
    if let Err(e) = subscribed {
        eprintln!("bridge-bench: hub_to_remote's remote runner: {}", e.message);
        return Vec::new();
    }
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
    backend.disconnect();
    let mut s = samples.lock();
    std::mem::take(&mut s.1)
}

fn row(transport: &'static str, mut samples: Vec<u64>, secs: f64) -> Row {
    samples.sort_unstable();
    Row {
        transport,
        case: "hub_to_remote",
        msg_bytes: None,
        figures: vec![
            ("p50_ns", percentile(&samples, 0.5)),
            ("p99_ns", percentile(&samples, 0.99)),
            ("bars", samples.len() as f64),
            ("bars_per_s", samples.len() as f64 / secs),
        ],
    }
}

/// The case, streaming for `secs` seconds: a row for the shared-memory client and one for
/// the NATS subscriber (none without a nats-server).
pub fn run(exe: &Path, secs: f64) -> Vec<Row> {
    let Some(server) = Server::start() else {
        return Vec::new();
    };
    let hub = Hub::start(exe, Some(&server.url));
    let secs = secs.max(2.0);
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let ready = Arc::new(AtomicBool::new(false));
    let nats = {
        let (url, ready) = (server.url.clone(), ready.clone());
        let subject = format!("ibbridge.{}.bars.SPY", hub.name);
        std::thread::spawn(move || subscriber(url, subject, until, ready))
    };
    let wait = Instant::now() + Duration::from_secs(10);
    while !ready.load(std::sync::atomic::Ordering::Acquire) && Instant::now() < wait {
        std::thread::sleep(Duration::from_millis(10));
    }
    let remote = {
        let (url, hub) = (server.url.clone(), hub.name.clone());
        std::thread::spawn(move || remote_runner(url, hub, until))
    };
    let leave = Arc::new(AtomicBool::new(true));
    let shm = {
        let (dir, name) = (hub.dir.clone(), hub.name.clone());
        std::thread::spawn(move || client(dir, name, 0, until, leave))
    };
    let (shm_samples, _) = shm.join().unwrap_or_default();
    let nats_samples = nats.join().unwrap_or_default();
    let remote_samples = remote.join().unwrap_or_default();
    // The warm-up's bars are not timed; the rate counts the timed ones over the whole time.
    vec![
        row("shm", shm_samples, secs),
        row("nats", nats_samples, secs),
        row("nats_remote", remote_samples, secs),
    ]
}
