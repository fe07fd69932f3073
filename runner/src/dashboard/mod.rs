//! The run seen from a browser ([`Dashboard`]): a live page while the run lasts
//! (`runner run --dashboard`) and a report file when it ends (`--report`).
//!
//! The run's live loop hands its updates to an [`Updates`] (its [`Observer`](crate::session::Observer)),
//! which queues them without waiting; the `dashboard` thread applies them to the [`Board`]
//! and tells the browsers through a broadcast channel; the `dashboard-ping` thread measures
//! the bridge's round trip now and then; the `dashboard-http` thread serves the page and its
//! API (`server`) on a tokio runtime of its own. [`Dashboard::finish`] ends all three and
//! writes the report (`report`).
//!
//! Invariants: the live loop never waits for the dashboard (a full queue drops the update
//! and counts it); the server answers `GET` only and nothing it serves can change the run;
//! it listens on loopback unless told another address; [`Dashboard::finish`] returns within
//! a bounded time whatever the browsers do (one that stops reading is cut off).

mod assets;
mod board;
mod feed;
mod listener;
mod report;
mod server;
mod shared;
#[cfg(test)]
mod tests;
mod views;
mod warnings;

pub use board::{Board, BoardSetup, KEPT};
pub use feed::{Updates, QUEUE};
pub use warnings::WarningLayer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::config::Config;
use crate::strategy::Crossover;
use crate::supervisor::Supervisor;
use feed::Update;
use shared::Shared;

/// Events a browser may fall behind by before it is told to read the state again.
const BROWSER_BACKLOG: usize = 4_096;
/// How often the worker's counters are looked at.
const HEALTH_EVERY: Duration = Duration::from_secs(1);
/// How often the bridge's round trip is measured.
const PING_EVERY: Duration = Duration::from_secs(2);
/// How long a ping waits for its answer: the end joins the pinger, so this bounds it.
const PING_WAIT: Duration = Duration::from_secs(1);
/// The dashboard takes its updates in batches, at most this often.
const PACE: Duration = Duration::from_millis(25);
/// Updates in one batch, at most: what the queue holds.
const BATCH: usize = QUEUE;
/// How long the end waits for the queue to take its last update.
const END_WAIT: Duration = Duration::from_secs(5);

/// A running dashboard: the board, its threads, and the server if one was asked for.
pub struct Dashboard {
    feed: Updates,
    shared: Arc<Shared>,
    applier: Option<JoinHandle<()>>,
    /// Tells the applier to stop without its end (the end could not be queued).
    stop: Arc<AtomicBool>,
    pinger: Option<(crossbeam_channel::Sender<()>, JoinHandle<()>)>,
    pinging: Arc<AtomicBool>,
    server: Option<server::HttpServer>,
    report: Option<PathBuf>,
}

impl Dashboard {
    /// Starts the dashboard of the run `cfg` describes, whose workers `sup` supervises: the
    /// server if `dashboard.enabled` (an address that cannot be bound is an error here,
    /// before the run), the report at the end if `dashboard.report` is set.
    pub fn start(cfg: &Config, sup: Arc<Supervisor>) -> Result<Dashboard> {
        let board = Board::new(BoardSetup {
            symbols: cfg.symbols.clone(),
            crossover: Crossover {
                fast: cfg.strategy.fast,
                slow: cfg.strategy.slow,
            },
            stale_after: cfg.strategy.stale_after_bars,
            bar_seconds: cfg.history.bar_seconds,
            trading: cfg.trading.enabled,
            backend: format!("{:?}", cfg.backend).to_lowercase(),
            bars: cfg.dashboard.bars,
        });
        let (feed, rx) = Updates::new(board.bars);
        let shared = Arc::new(Shared::new(board, BROWSER_BACKLOG));
        let server = match cfg.dashboard.enabled {
            true => {
                let addr: SocketAddr = cfg
                    .dashboard
                    .listen
                    .parse()
                    .with_context(|| format!("dashboard.listen {:?}", cfg.dashboard.listen))?;
                Some(server::HttpServer::start(addr, shared.clone())?)
            }
            false => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let applier = {
            let (shared, sup, stop) = (shared.clone(), sup.clone(), stop.clone());
            // Not a sender of its own: the queue ends when the run's senders are gone.
            let dropped = feed.dropped_counter();
            std::thread::Builder::new()
                .name("dashboard".into())
                .spawn(move || apply(rx, &shared, &sup, &dropped, &stop))?
        };
        let pinging = Arc::new(AtomicBool::new(true));
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
        let pinger = {
            let (feed, pinging) = (feed.clone(), pinging.clone());
            std::thread::Builder::new()
                .name("dashboard-ping".into())
                .spawn(move || ping(&stop_rx, &sup, &feed, &pinging))?
        };
        warnings::attach(feed.clone());
        Ok(Dashboard {
            feed,
            shared,
            applier: Some(applier),
            stop,
            pinger: Some((stop_tx, pinger)),
            pinging,
            server,
            report: cfg.dashboard.report.clone(),
        })
    }

    /// The run's observer for the dashboard.
    pub fn updates(&self) -> Updates {
        self.feed.clone()
    }

    /// Where the server listens, if it does.
    pub fn address(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(|s| s.address)
    }

    /// Stops measuring the round trip (the run measures its own at the end, undisturbed).
    pub fn quiet(&self) {
        self.pinging.store(false, Ordering::Relaxed);
    }

    /// Ends the dashboard: applies what is queued, tells the browsers the run is over, stops
    /// the server (cutting off a browser that does not read), and writes the report if one
    /// was asked for, with the run's final round trips (microseconds, sorted). Returns the
    /// report's path, if written.
    pub fn finish(mut self, round_trips_us: &[f64]) -> Result<Option<PathBuf>> {
        warnings::detach();
        self.quiet();
        if !self.feed.send_waiting(Update::End, END_WAIT) {
            self.stop.store(true, Ordering::Relaxed);
            tracing::warn!("the dashboard's last updates were not taken in");
        }
        self.stop_threads();
        if let Some(server) = self.server.take() {
            server.stop();
        }
        match self.report.take() {
            Some(path) => {
                let board = self.shared.board.lock();
                report::write(&path, &board, round_trips_us)
                    .with_context(|| format!("report {}", path.display()))?;
                Ok(Some(path))
            }
            None => Ok(None),
        }
    }

    fn stop_threads(&mut self) {
        if let Some((stop, pinger)) = self.pinger.take() {
            let _ = stop.try_send(());
            let _ = pinger.join();
        }
        if let Some(applier) = self.applier.take() {
            let _ = applier.join();
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        warnings::detach();
        if self.applier.is_some() && !self.feed.send_waiting(Update::End, END_WAIT) {
            self.stop.store(true, Ordering::Relaxed);
        }
        self.stop_threads();
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

/// The `dashboard` thread: applies each update to the board and tells the browsers, until
/// the run's end (or `stop`); looks at the worker's counters every [`HEALTH_EVERY`].
fn apply(
    rx: Receiver<Update>,
    shared: &Shared,
    sup: &Supervisor,
    dropped: &AtomicU64,
    stop: &AtomicBool,
) {
    let mut next_health = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next_health {
            next_health = Instant::now() + HEALTH_EVERY;
            let (stats, replaced) = (sup.stats(), sup.replacements());
            let dropped = dropped.load(Ordering::Relaxed);
            shared.apply(|board| board.observe_worker(&stats, replaced, dropped));
        }
        let wait = next_health.saturating_duration_since(Instant::now());
        let first = match rx.recv_timeout(wait) {
            Ok(update) => update,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // What is queued by now goes in one batch, under one lock.
        let mut batch = vec![first];
        batch.extend(rx.try_iter().take(BATCH - 1));
        let end = batch.iter().any(|u| matches!(u, Update::End));
        // The final counters, before the end is told.
        let last = end.then(|| (sup.stats(), sup.replacements()));
        shared.apply_each(batch, |board, update| {
            let mut changes = Vec::new();
            if let (Update::End, Some((stats, replaced))) = (&update, &last) {
                let dropped = dropped.load(Ordering::Relaxed);
                changes.extend(board.observe_worker(stats, replaced.clone(), dropped));
            }
            changes.extend(board.apply(update));
            changes
        });
        if end {
            return;
        }
        // The browsers are told in batches at most every PACE: the dashboard's threads
        // wake a few dozen times a second however fast the bars come.
        std::thread::sleep(PACE);
    }
}

/// The `dashboard-ping` thread: one round trip every [`PING_EVERY`] while `pinging`, on
/// the worker that lives (it never starts one), waiting [`PING_WAIT`] at most.
fn ping(stop: &Receiver<()>, sup: &Supervisor, feed: &Updates, pinging: &AtomicBool) {
    loop {
        match stop.recv_timeout(PING_EVERY) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        if !pinging.load(Ordering::Relaxed) {
            continue;
        }
        if let Ok(d) = sup.ping_if_alive(PING_WAIT) {
            feed.send(Update::RoundTrip {
                at_ms: base::unix_time::now().as_millis() as u64,
                us: d.as_secs_f64() * 1e6,
            });
        }
    }
}
