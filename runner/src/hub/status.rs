//! What a hub shows of itself: a status file beside its socket (`<name>.status.json`),
//! rewritten every second while it runs, and `runner hub status`, which prints it.
//!
//! Invariants: the file is replaced whole (written aside, then renamed), so a reader never
//! sees half of one; it is removed when the hub stops; `runner hub status` says a hub is not
//! running when nothing holds its lock, whatever file is left.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::state::Hub;
use crate::launch::{fail, EXIT_FAILED};

/// One client, as the status shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientView {
    /// Its name.
    pub name: String,
    /// Its process.
    pub pid: u32,
    /// Unix seconds it attached.
    pub since: u64,
    /// The symbols it streams.
    pub symbols: Vec<String>,
    /// Requests it sent.
    pub requests: u64,
    /// Events delivered to it.
    pub delivered: u64,
    /// Events dropped for it (it did not read in time).
    pub dropped: u64,
    /// Events waiting for room in its ring.
    pub waiting: usize,
}

/// One symbol's stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeedView {
    /// The symbol.
    pub symbol: String,
    /// Its bar size, seconds.
    pub bar_seconds: u32,
    /// The clients that stream it.
    pub clients: Vec<String>,
}

/// A hub's status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HubStatus {
    /// The hub's name.
    pub name: String,
    /// Its process.
    pub pid: u32,
    /// Unix seconds it started.
    pub started: u64,
    /// Unix seconds this status was written.
    pub written: u64,
    /// `sim` or `ibkr`.
    pub backend: String,
    /// The broker connection as its worker last told it.
    pub gateway: String,
    /// Its worker's pid.
    pub worker_pid: Option<u32>,
    /// Workers it started after the first.
    pub worker_restarts: u32,
    /// The clients attached now.
    pub clients: Vec<ClientView>,
    /// The live streams.
    pub feeds: Vec<FeedView>,
    /// Clients attached since it started.
    pub attached: u64,
    /// Attaches refused.
    pub refused: u64,
    /// Clients gone.
    pub departed: u64,
    /// History requests sent to its worker.
    pub history_upstream: u64,
    /// History requests answered with another client's identical one.
    pub history_shared: u64,
    /// Live bars from its worker.
    pub bars_in: u64,
    /// Live bars handed to clients.
    pub bars_out: u64,
    /// Its publishing to NATS JetStream, if configured.
    #[serde(default)]
    pub nats: Option<crate::nats::NatsView>,
}

fn path_of(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.status.json"))
}

fn snapshot(hub: &Hub) -> HubStatus {
    let stats = hub.sup.stats();
    let c = &hub.counters;
    HubStatus {
        name: hub.settings.name.clone(),
        pid: std::process::id(),
        started: hub.started,
        written: base::unix_time::now().as_secs(),
        backend: hub.backend.clone(),
        gateway: hub.gateway.lock().clone(),
        worker_pid: stats.worker_pid,
        worker_restarts: stats.restarts,
        clients: hub
            .clients
            .all()
            .iter()
            .map(|client| ClientView {
                name: client.name.clone(),
                pid: client.pid,
                since: client.since,
                symbols: client.subs.lock().keys().cloned().collect(),
                requests: client.requests.load(Ordering::Relaxed),
                delivered: client.delivered.load(Ordering::Relaxed),
                dropped: client.dropped.load(Ordering::Relaxed),
                waiting: client.waiting(),
            })
            .collect(),
        feeds: hub
            .feeds
            .view()
            .into_iter()
            .map(|f| FeedView {
                symbol: f.symbol,
                bar_seconds: f.bar_seconds,
                clients: f.clients,
            })
            .collect(),
        attached: c.attached.load(Ordering::Relaxed),
        refused: c.refused.load(Ordering::Relaxed),
        departed: c.departed.load(Ordering::Relaxed),
        history_upstream: c.history_upstream.load(Ordering::Relaxed),
        history_shared: c.history_shared.load(Ordering::Relaxed),
        bars_in: c.bars_in.load(Ordering::Relaxed),
        bars_out: c.bars_out.load(Ordering::Relaxed),
        nats: hub.nats.as_deref().map(crate::nats::Publisher::view),
    }
}

/// Writes the status every second until the hub stops.
pub(super) fn keep_written(hub: &Hub) {
    let path = path_of(&hub.settings.dir, &hub.settings.name);
    let aside = path.with_extension("json.new");
    while !hub.stopping.load(Ordering::Acquire) {
        if let Ok(text) = serde_json::to_vec_pretty(&snapshot(hub)) {
            let written =
                std::fs::write(&aside, text).and_then(|()| std::fs::rename(&aside, &path));
            if let Err(e) = written {
                tracing::debug!("status not written: {e}");
            }
        }
        for _ in 0..10 {
            if hub.stopping.load(Ordering::Acquire) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Removes the status file of a hub that stopped.
pub(super) fn remove(hub: &Hub) {
    let _ = std::fs::remove_file(path_of(&hub.settings.dir, &hub.settings.name));
}

/// Reads the status of hub `name` in `dir`, if it runs.
pub fn read(dir: &Path, name: &str) -> Result<HubStatus, String> {
    if !running(dir, name) {
        return Err(format!(
            "no hub named {name} is running (in {})",
            dir.display()
        ));
    }
    let text = std::fs::read_to_string(path_of(dir, name))
        .map_err(|e| format!("hub {name} runs but its status cannot be read: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("hub {name}'s status is not readable: {e}"))
}

fn running(dir: &Path, name: &str) -> bool {
    bridge::channel::hub_running(dir, name)
}

/// `runner hub status`.
pub fn status_command(dir: &Path, name: &str, json: bool) -> ExitCode {
    let status = match read(dir, name) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_FAILED, e),
    };
    if json {
        match serde_json::to_string_pretty(&status) {
            Ok(text) => println!("{text}"),
            Err(e) => return fail(EXIT_FAILED, e),
        }
        return ExitCode::SUCCESS;
    }
    let now = base::unix_time::now().as_secs();
    println!(
        "hub {} (pid {}), up {} s, {} backend; broker connection: {}",
        status.name,
        status.pid,
        now.saturating_sub(status.started),
        status.backend,
        status.gateway
    );
    println!(
        "worker: pid {}, {} restarts",
        status
            .worker_pid
            .map_or_else(|| "none".to_string(), |p| p.to_string()),
        status.worker_restarts
    );
    println!(
        "clients: {} attached ({} since start, {} refused, {} gone)",
        status.clients.len(),
        status.attached,
        status.refused,
        status.departed
    );
    for c in &status.clients {
        println!(
            "  {} (pid {}): {} symbols, {} requests, {} events delivered, {} dropped, {} waiting",
            c.name,
            c.pid,
            c.symbols.len(),
            c.requests,
            c.delivered,
            c.dropped,
            c.waiting
        );
    }
    println!("subscriptions: {} at the broker", status.feeds.len());
    for f in &status.feeds {
        println!(
            "  {} ({} s bars): {}",
            f.symbol,
            f.bar_seconds,
            f.clients.join(", ")
        );
    }
    println!(
        "history: {} requests sent upstream, {} answered with another client's; live bars: {} in, {} out",
        status.history_upstream, status.history_shared, status.bars_in, status.bars_out
    );
    if let Some(n) = &status.nats {
        println!(
            "nats: {} ({}), stream {}: {} published ({} again), {} waiting, {} lost; {} not ours",
            n.url, n.state, n.stream, n.published, n.duplicates, n.buffered, n.lost, n.not_ours
        );
    }
    ExitCode::SUCCESS
}
