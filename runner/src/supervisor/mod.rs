//! Keeps a live, connected worker behind the runner's requests.
//!
//! When the worker dies or hangs, the bridge fails every request in flight with `PeerGone`.
//! The supervisor then starts a new worker (with exponential backoff), connects it, restores
//! the real-time subscriptions, and retries the idempotent requests that failed. Restarts and
//! failed requests are counted for the summary.
//!
//! Its life (idle, starting a worker, shutting down, stopped) is one value, `lifecycle`'s
//! `Life`, kept with the current worker under one lock; its errors are typed (`error`).
//!
//! Invariants: one worker at a time (starts are serialised; a request that finds its worker
//! already replaced uses the new one); only idempotent requests are retried; a history fetch
//! is retried whole, never stitched from two workers; after [`Supervisor::shutdown`] no worker
//! is started, a start under way ends at once and stops the worker it started. The events of
//! all workers are read through one [`WorkerEvents`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge::protocol::{
    Bar, ErrorKind, HistoryRequest, RemoteError, Reply, Request, SubscribeRequest,
};

use bridge::segment::SegmentError;
use bridge::{Client, ClientStats, RequestError, StartError};
use parking_lot::{Condvar, Mutex};

mod error;
mod lifecycle;
mod ping;
mod replacements;

pub use error::{EnvironmentFailure, ProtocolError, StartFailure, SupervisorError};
use replacements::Replacements;
pub use replacements::{Replacement, REPLACEMENTS_KEPT};

use lifecycle::{Claimed, Life};

use crate::pacing_log::PacingLog;
use crate::restart_intensity::RestartIntensity;
use crate::worker_events::{BookHeard, EventChannels, WorkerEvents};
use crate::worker_setup::{HubTarget, WorkerSetup};

/// Longest silence of a hub's (or a hub client's) heartbeat before it is declared hung.
pub const HUB_HANG_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest pause between two attempts to attach to a hub that went away, ms.
const HUB_RETRY_MS: u64 = 500;
use worker::Handover;

/// Counters for the summary.
#[derive(Debug, Clone, Default)]
pub struct SupervisorStats {
    /// Workers started after the first.
    pub restarts: u32,
    /// Requests that failed because a worker died or hung (and were retried if idempotent).
    pub failed_requests: u64,
    /// The current worker's bridge counters.
    pub bridge: ClientStats,
    /// The current worker's pid.
    pub worker_pid: Option<u32>,
}

struct State {
    /// Where the supervisor is in its life: changed only by `Life`'s transitions, under this
    /// lock; [`Supervisor::changed`] wakes whoever waits for a change.
    life: Life<Arc<Client>>,
    client: Option<Arc<Client>>,
    generation: u32,
    subscriptions: BTreeMap<String, SubscribeRequest>,
    /// Every subscription id given out in this run, with its symbol: an id names one symbol
    /// for the whole run (bars of an old subscription may still be on their way).
    ids: BTreeMap<u32, String>,
}

/// Replaces a dead worker as soon as it is declared gone, until the supervisor stops or is
/// dropped.
fn watch(sup: std::sync::Weak<Supervisor>, period: Duration) {
    loop {
        std::thread::sleep(period);
        let Some(sup) = sup.upgrade() else {
            return;
        };
        let dead = {
            let st = sup.state.lock();
            if st.life.is_shut_down() || st.life.gave_up().is_some() {
                return;
            }
            match &st.client {
                Some(c) if c.control().is_gone() => Some(st.generation),
                _ => None,
            }
        };
        if let Some(generation) = dead {
            match sup.replace(generation) {
                Ok(_) | Err(SupervisorError::Stopped) => {}
                Err(e) => {
                    tracing::error!("worker not replaced: {e}");
                    return;
                }
            }
        }
    }
}

/// One history fetch from `client`: the batches gathered until the end marker, whose count
/// must match.
fn history_from(
    client: &Client,
    request: &HistoryRequest,
    timeout: Duration,
) -> Result<Vec<Bar>, SupervisorError> {
    let stream = client
        .stream(Request::History(request.clone()), timeout)
        .map_err(SupervisorError::Request)?;
    let mut bars = Vec::new();
    for item in stream {
        match item.map_err(SupervisorError::Request)? {
            Reply::Bars(batch) => bars.extend(batch),
            Reply::HistoryEnd { count } => {
                if count != bars.len() as u64 {
                    return Err(SupervisorError::Protocol(ProtocolError::HistoryCount {
                        symbol: request.symbol.clone(),
                        announced: count,
                        arrived: bars.len(),
                    }));
                }
                return Ok(bars);
            }
            Reply::Error(e) => return Err(SupervisorError::Remote(e)),
            other => {
                return Err(SupervisorError::Protocol(ProtocolError::unexpected(
                    other, "history",
                )))
            }
        }
    }
    Err(SupervisorError::Protocol(ProtocolError::HistoryEndedEarly))
}

/// Owns the current worker.
pub struct Supervisor {
    setup: WorkerSetup,
    state: Mutex<State>,
    /// Wakes whoever waits for `State::life` to change: a start under way to end, a backoff
    /// to be cut short by a shutdown.
    changed: Condvar,
    /// Where each new worker's event channel goes.
    events: EventChannels,
    restarts: AtomicU32,
    /// Restarts allowed per window; taken by the start under way.
    intensity: Mutex<RestartIntensity>,
    /// Why the supervisor gave up, once it has: the run must end with an error.
    failed_requests: AtomicU64,
    /// Historical requests the broker's pacing still counts, handed to each new worker: the
    /// broker paces them whichever worker sent them.
    history_log: PacingLog,
    /// What the run's events reader has read of the simulated broker's book: handed to
    /// each new worker, so that a replacement tells only what changed since.
    book_heard: BookHeard,
    /// The managed accounts, as the last worker to connect reported them.
    accounts: Mutex<Vec<String>>,
    /// The most recent replacements of a worker.
    replacements: Mutex<Replacements>,
}

/// Now, in Unix milliseconds.
fn now_ms() -> u64 {
    base::unix_time::now().as_millis() as u64
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("generation", &self.state.lock().generation)
            .finish()
    }
}

impl Supervisor {
    /// Starts and connects the first worker. Returns the supervisor and the stream of events
    /// of all its workers.
    pub fn start(setup: WorkerSetup) -> Result<(Arc<Supervisor>, WorkerEvents), SupervisorError> {
        let (sup, events) = Supervisor::begin(setup);
        sup.connect_first()?;
        Ok((sup, events))
    }

    /// A supervisor with no worker yet ([`connect_first`](Self::connect_first) starts it),
    /// and the stream of events of all its workers. Until then it can be shut down, which
    /// ends a `connect_first` under way at once.
    pub fn begin(setup: WorkerSetup) -> (Arc<Supervisor>, WorkerEvents) {
        let (events, events_rx) = WorkerEvents::with_spin(setup.client.spin);
        let book_heard = events_rx.book_heard();
        let intensity = RestartIntensity::new(
            setup.policy.max_restarts,
            Duration::from_secs(setup.policy.restart_window_seconds),
        );
        let sup = Arc::new(Supervisor {
            setup,
            state: Mutex::new(State {
                life: Life::Idle,
                client: None,
                generation: 0,
                subscriptions: BTreeMap::new(),
                ids: BTreeMap::new(),
            }),
            changed: Condvar::new(),
            events,
            restarts: AtomicU32::new(0),
            intensity: Mutex::new(intensity),
            failed_requests: AtomicU64::new(0),
            history_log: PacingLog::default(),
            accounts: Mutex::new(Vec::new()),
            replacements: Mutex::new(Replacements::default()),
            book_heard,
        });
        (sup, events_rx)
    }

    /// Starts and connects the first worker, then watches it. Call it once.
    pub fn connect_first(self: &Arc<Self>) -> Result<(), SupervisorError> {
        // Not awaited by `shutdown`: this start learns of it at its next step and stops the
        // worker it started.
        let start = self.claim_start(false)?;
        let client = self.start_worker(0, &BTreeMap::new())?;
        self.adopt(client)?;
        drop(start);
        // A worker that dies while nothing is asked of it (the live phase) is replaced too, so
        // that its subscriptions come back without waiting for the next request.
        let weak = Arc::downgrade(self);
        let period = self.setup.client.channel.heartbeat_interval;
        let spawned = std::thread::Builder::new()
            .name("supervisor".into())
            .spawn(move || watch(weak, period));
        if let Err(e) = spawned {
            return Err(SupervisorError::Start(StartFailure::Thread(Arc::new(e))));
        }
        Ok(())
    }

    /// Claims the next start of a worker ([`Life::claim`]), waiting for one under way to end;
    /// `Stopped` once shut down. The start ends when the claim is dropped.
    fn claim_start(&self, awaited: bool) -> Result<StartClaim<'_>, SupervisorError> {
        let mut st = self.state.lock();
        loop {
            match st.life.claim(awaited) {
                Claimed::Granted => return Ok(StartClaim { sup: self }),
                Claimed::Wait => self.changed.wait(&mut st),
                // Given up and not shut down: why; shut down: stopped.
                Claimed::Stopped => match st.life.gave_up() {
                    Some(why) if !st.life.is_shut_down() => return Err(why.clone()),
                    _ => return Err(SupervisorError::Stopped),
                },
            }
        }
    }

    /// Starts worker `generation`, connects it and restores `subscriptions`; the caller holds
    /// the start's claim.
    fn start_worker(
        &self,
        generation: u32,
        subscriptions: &BTreeMap<String, SubscribeRequest>,
    ) -> Result<Arc<Client>, SupervisorError> {
        if self.state.lock().life.is_shut_down() {
            return Err(SupervisorError::Stopped);
        }
        let started = match &self.setup.hub {
            Some(hub) => self.attach_hub(hub),
            None => {
                let mut options = self.setup.options.clone();
                options.generation = generation;
                options.inherit(self.history_log.handover(now_ms()));
                if let Some(through) = self.book_heard.through() {
                    options.inherit(Handover::book_told_through(through));
                }
                let cmd = worker::command_with(&self.setup.exe, &self.setup.exe_args, &options)
                    .map_err(|e| SupervisorError::Start(StartFailure::Options(e)))?;
                Client::spawn(cmd, &self.setup.client)
            }
        };
        let (client, events) = started.map_err(|e| match e {
            StartError::Segment(
                SegmentError::NoSpace { .. }
                | SegmentError::NoMemory { .. }
                | SegmentError::Registry { .. },
            )
            | StartError::BuildMismatch { .. }
            | StartError::ProtocolMismatch { .. } => {
                SupervisorError::Environment(EnvironmentFailure::Bridge(Arc::new(e)))
            }
            e => SupervisorError::Start(StartFailure::Spawn(Arc::new(e))),
        })?;
        let client = Arc::new(client);
        // Nobody reading events (the job or soak has ended) is not an error.
        let _ = self.events.send(events);
        // From here `shutdown` can end this start: it closes the worker being started (or, if
        // it came first, this start learns of it here and stops the worker).
        let up = self.state.lock().life.spawned(client.clone());
        let started = match up {
            false => Err(SupervisorError::Stopped),
            true => self.connect_worker(generation, &client, subscriptions),
        };
        if !self.state.lock().life.connected() {
            Self::stop(&client);
            return Err(SupervisorError::Stopped);
        }
        started.map(|()| client)
    }

    /// Attaches to `hub`, whose worker stands in for one of our own: the same requests and
    /// events, over a segment handed to the hub. A hub connection is watched more closely
    /// than a worker (its hang timeout is [`HUB_HANG_TIMEOUT`] at most), so a hub that goes
    /// away is noticed within a second.
    fn attach_hub(&self, hub: &HubTarget) -> Result<(Client, bridge::Events), StartError> {
        let mut cfg = self.setup.client.clone();
        cfg.channel.hang_timeout = cfg.channel.hang_timeout.min(HUB_HANG_TIMEOUT);
        let channel =
            bridge::channel::attach_to_hub(&hub.dir, &hub.name, &hub.client, &cfg.channel)?;
        Client::over(channel, &cfg)
    }

    /// Asks a worker to disconnect and exit, and closes its bridge.
    fn stop(client: &Client) {
        if !client.control().is_gone() {
            let _ = client.request(Request::Shutdown, Duration::from_secs(2));
        }
        client.control().close();
    }

    /// Connects a started worker to the broker and restores `subscriptions`.
    fn connect_worker(
        &self,
        generation: u32,
        client: &Client,
        subscriptions: &BTreeMap<String, SubscribeRequest>,
    ) -> Result<(), SupervisorError> {
        tracing::info!(
            generation,
            pid = client.control().peer_pid(),
            "worker started"
        );
        let started = Instant::now();
        match client.request(
            Request::Connect,
            self.setup.handshake + Duration::from_secs(1),
        ) {
            Ok(Reply::Connected {
                accounts,
                next_order_id,
            }) => {
                tracing::info!(
                    ?accounts,
                    next_order_id,
                    ms = started.elapsed().as_millis() as u64,
                    "broker connected"
                );
                *self.accounts.lock() = accounts;
            }
            Ok(Reply::Error(e)) => return Err(SupervisorError::Connect(e)),
            Ok(other) => {
                return Err(SupervisorError::Protocol(ProtocolError::unexpected(
                    other, "connect",
                )))
            }
            Err(e) => return Err(SupervisorError::Start(StartFailure::Connect(e))),
        }
        for sub in subscriptions.values() {
            match client.request(Request::Subscribe(sub.clone()), self.setup.handshake) {
                Ok(Reply::Subscribed) => {}
                Ok(Reply::Error(e)) => {
                    tracing::warn!(symbol = %sub.symbol, "subscription not restored: {e}")
                }
                Ok(other) => {
                    return Err(SupervisorError::Protocol(ProtocolError::unexpected(
                        other,
                        "subscribe",
                    )))
                }
                Err(e) => return Err(SupervisorError::Start(StartFailure::Resubscribe(e))),
            }
        }
        if !subscriptions.is_empty() {
            tracing::info!(count = subscriptions.len(), "subscriptions restored");
        }
        Ok(())
    }

    /// Makes `client`, just started, the current worker; if the supervisor was shut down
    /// while it was starting, `shutdown` found no worker to stop, so this one is stopped here
    /// (both look under the state lock: one of the two sees the other).
    fn adopt(&self, client: Arc<Client>) -> Result<(), SupervisorError> {
        let mut st = self.state.lock();
        if st.life.is_shut_down() {
            drop(st);
            Self::stop(&client);
            return Err(SupervisorError::Stopped);
        }
        st.client = Some(client);
        Ok(())
    }

    /// The current worker if it lives, else a new one.
    fn client(&self) -> Result<(u32, Arc<Client>), SupervisorError> {
        let generation = {
            let st = self.state.lock();
            if st.life.is_shut_down() {
                return Err(SupervisorError::Stopped);
            }
            if let Some(e) = st.life.gave_up() {
                return Err(e.clone());
            }
            if let Some(c) = &st.client {
                if !c.control().is_gone() {
                    return Ok((st.generation, c.clone()));
                }
            }
            st.generation
        };
        self.replace(generation)
    }

    /// Replaces worker `dead` (unless another thread already did) and returns the new one.
    fn replace(&self, dead: u32) -> Result<(u32, Arc<Client>), SupervisorError> {
        // One start at a time; `shutdown` waits for this one to end.
        let _start = self.claim_start(true)?;
        {
            let st = self.state.lock();
            if st.generation != dead {
                if let Some(c) = &st.client {
                    return Ok((st.generation, c.clone()));
                }
            }
        }
        let policy = &self.setup.policy;
        let mut failures = 0u32;
        let mut last: Option<Box<SupervisorError>> = None;
        let lost_at = Instant::now();
        loop {
            if self.state.lock().life.is_shut_down() {
                return Err(SupervisorError::Stopped);
            }
            let permitted = match &self.setup.hub {
                Some(_) => Ok(()),
                None => self.intensity.lock().permit(Instant::now()),
            };
            if let Some(hub) = &self.setup.hub {
                // A hub is waited for, however often it refuses or is not there yet.
                if lost_at.elapsed() >= hub.wait {
                    let e = SupervisorError::HubGone {
                        hub: hub.name.clone(),
                        waited: hub.wait,
                        last,
                    };
                    tracing::error!("{e}");
                    self.state.lock().life.give_up(e.clone());
                    return Err(e);
                }
            } else if let Err(restarts) = permitted {
                let window = self.intensity.lock().window();
                let e = SupervisorError::GaveUp {
                    restarts,
                    window,
                    last,
                };
                tracing::error!("{e}");
                self.state.lock().life.give_up(e.clone());
                return Err(e);
            }
            // A hub that comes back is attached to within half a second.
            let most = match &self.setup.hub {
                Some(_) => policy.max_backoff_ms.min(HUB_RETRY_MS),
                None => policy.max_backoff_ms,
            };
            let backoff = Duration::from_millis(
                policy
                    .backoff_ms
                    .saturating_mul(1u64 << failures.min(16))
                    .min(most),
            );
            {
                // Asleep until the backoff is over, or the supervisor shuts down.
                let deadline = Instant::now() + backoff;
                let mut st = self.state.lock();
                while !st.life.is_shut_down() {
                    if self.changed.wait_until(&mut st, deadline).timed_out() {
                        break;
                    }
                }
                if st.life.is_shut_down() {
                    return Err(SupervisorError::Stopped);
                }
            }
            self.restarts.fetch_add(1, Ordering::Relaxed);
            let (generation, subs, old) = {
                let mut st = self.state.lock();
                st.generation += 1;
                (st.generation, st.subscriptions.clone(), st.client.take())
            };
            if let Some(old) = old {
                let reason = match old.control().gone() {
                    Some(r) => r.to_string(),
                    None => "worker gone".to_string(),
                };
                tracing::warn!(reason = %reason, "replacing worker");
                self.replacements.lock().record(Replacement {
                    at_ms: now_ms(),
                    generation,
                    reason,
                });
            }
            match self.start_worker(generation, &subs) {
                Ok(client) => {
                    self.adopt(client.clone())?;
                    return Ok((generation, client));
                }
                Err(e) => {
                    tracing::warn!(generation, "worker restart failed: {e}");
                    last = Some(Box::new(e));
                    failures += 1;
                }
            }
        }
    }

    fn count_failure(&self, what: &str, reason: &impl fmt::Display) {
        self.failed_requests.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("{what} failed: worker gone ({reason}); retrying on a new worker");
    }

    /// Runs `attempt` on the current worker; when it fails because the worker is gone and
    /// `retry` allows, counts the failure, replaces the worker and runs it again on the new
    /// one.
    fn on_a_live_worker<T>(
        &self,
        what: &str,
        retry: bool,
        mut attempt: impl FnMut(&Client) -> Result<T, SupervisorError>,
    ) -> Result<T, SupervisorError> {
        loop {
            let (generation, client) = self.client()?;
            match attempt(&client) {
                Err(SupervisorError::Request(RequestError::PeerGone(reason))) if retry => {
                    self.count_failure(what, &reason);
                    self.replace(generation)?;
                }
                other => return other,
            }
        }
    }

    /// Sends a request; if the worker dies meanwhile and the request is idempotent, retries it
    /// on a new worker.
    pub fn request(&self, request: Request, timeout: Duration) -> Result<Reply, SupervisorError> {
        self.on_a_live_worker("request", request.is_idempotent(), |client| {
            client
                .request(request.clone(), timeout)
                .map_err(SupervisorError::Request)
        })
    }

    /// Fetches historical bars, whole: if the worker dies mid-stream, the partial answer is
    /// discarded and the request is sent again to a new worker.
    pub fn history(
        &self,
        request: &HistoryRequest,
        timeout: Duration,
    ) -> Result<Vec<Bar>, SupervisorError> {
        self.on_a_live_worker("history", true, |client| {
            let token = self.history_log.sent(request, now_ms());
            let fetched = history_from(client, request, timeout);
            self.history_log.ended(token, now_ms());
            fetched
        })
    }

    /// Starts real-time bars; the subscription is restored on every new worker. Its bars
    /// carry `sub.id`: one id per symbol for the whole run, never another symbol's (refused
    /// as a bad request otherwise, before anything is sent).
    pub fn subscribe(
        &self,
        sub: SubscribeRequest,
        timeout: Duration,
    ) -> Result<(), SupervisorError> {
        {
            let mut st = self.state.lock();
            let taken = st
                .ids
                .get(&sub.id)
                .filter(|symbol| **symbol != sub.symbol)
                .map(|symbol| format!("subscription id {} is already {symbol}'s", sub.id))
                .or_else(|| {
                    st.ids
                        .iter()
                        .find(|(id, symbol)| **symbol == sub.symbol && **id != sub.id)
                        .map(|(id, _)| format!("{} already has subscription id {id}", sub.symbol))
                });
            if let Some(why) = taken {
                return Err(SupervisorError::Remote(RemoteError {
                    kind: ErrorKind::BadRequest,
                    message: why,
                }));
            }
            st.ids.insert(sub.id, sub.symbol.clone());
            st.subscriptions.insert(sub.symbol.clone(), sub.clone());
        }
        match self.request(Request::Subscribe(sub.clone()), timeout) {
            Ok(Reply::Subscribed) => Ok(()),
            Ok(Reply::Error(e)) => {
                self.state.lock().subscriptions.remove(&sub.symbol);
                Err(SupervisorError::Remote(e))
            }
            // Never sent (too large for a frame, the ring full until the deadline): not a
            // subscription to restore on the next worker.
            Err(e @ SupervisorError::Request(RequestError::Send(_))) => {
                self.state.lock().subscriptions.remove(&sub.symbol);
                Err(e)
            }
            Err(e) => Err(e),
            Ok(other) => Err(SupervisorError::Protocol(ProtocolError::unexpected(
                other,
                "subscribe",
            ))),
        }
    }

    /// Stops real-time bars of `symbol`: no new worker restores it from now on, whatever the
    /// current one answers. Its subscription id stays the symbol's (a later subscribe reuses
    /// it). A worker that dies meanwhile takes the subscription with it: that is success.
    pub fn unsubscribe(&self, symbol: &str, timeout: Duration) -> Result<(), SupervisorError> {
        self.state.lock().subscriptions.remove(symbol);
        let request = Request::Unsubscribe {
            symbol: symbol.to_string(),
        };
        match self.request(request, timeout) {
            Ok(Reply::Unsubscribed) => Ok(()),
            Ok(Reply::Error(e)) => Err(SupervisorError::Remote(e)),
            Err(e) => Err(e),
            Ok(other) => Err(SupervisorError::Protocol(ProtocolError::unexpected(
                other,
                "unsubscribe",
            ))),
        }
    }

    /// The managed accounts the broker reported when the current worker connected.
    pub fn accounts(&self) -> Vec<String> {
        self.accounts.lock().clone()
    }

    /// Why the supervisor gave up replacing workers, if it has (the run then ends with an
    /// error, whatever phase it was in).
    pub fn gave_up(&self) -> Option<SupervisorError> {
        self.state.lock().life.gave_up().cloned()
    }

    /// The most recent replacements of a worker, oldest first.
    pub fn replacements(&self) -> Vec<Replacement> {
        self.replacements.lock().list()
    }

    /// Counters for the summary.
    pub fn stats(&self) -> SupervisorStats {
        let st = self.state.lock();
        SupervisorStats {
            restarts: self.restarts.load(Ordering::Relaxed),
            failed_requests: self.failed_requests.load(Ordering::Relaxed),
            bridge: st.client.as_ref().map(|c| c.stats()).unwrap_or_default(),
            worker_pid: st.client.as_ref().map(|c| c.control().peer_pid()),
        }
    }

    /// Asks the worker to disconnect and exit, then closes the bridge (killing the worker if it
    /// does not exit within the grace period). No restarts after this; a start or replacement
    /// under way ends at once (the worker it started is closed, its backoff cut short) and is
    /// waited for, so no worker outlives this.
    pub fn shutdown(&self) {
        let (starting, client) = {
            let mut st = self.state.lock();
            let starting = st.life.shut_down();
            // A backoff is cut short.
            self.changed.notify_all();
            (starting, st.client.take())
        };
        // A worker being started is closed (its connect fails at once).
        if let Some(starting) = starting {
            starting.control().close();
        }
        if let Some(client) = client {
            if !client.control().is_gone() {
                match client.request(Request::Shutdown, Duration::from_secs(2)) {
                    Ok(_) => tracing::info!("worker disconnected from the broker"),
                    Err(e) => tracing::warn!("worker did not confirm shutdown: {e}"),
                }
            }
            client.control().close();
        }
        // A replacement under way finishes (and stops the worker it started) before this
        // returns: no worker outlives the shutdown.
        let mut st = self.state.lock();
        while st.life.shutdown_waits() {
            self.changed.wait(&mut st);
        }
    }
}

/// The claim of the start under way ([`Supervisor::claim_start`]): when dropped, the start
/// has ended ([`Life::release`]) and whoever waits for it is woken.
struct StartClaim<'a> {
    sup: &'a Supervisor,
}

impl Drop for StartClaim<'_> {
    fn drop(&mut self) {
        self.sup.state.lock().life.release();
        self.sup.changed.notify_all();
    }
}
