//! The hub's door on NATS ([`Door`]): programs on other machines (`runner run --nats URL
//! --hub NAME`) send their requests to `ibbridge-rpc.<hub>.<client>` and get the answers on
//! the request's inbox, numbered (`Ibbridge-Seq`). Each such client is attached to the hub as
//! a local client of its name, over a segment of its own from this process, so that
//! everything a hub does for a client (order references in its namespace, shared feeds and
//! history, a client gone released, its orders kept or cancelled) is done for it alike; its
//! events but bars go to `ibbridge.<hub>.clients.<client>.events` in the hub's stream (the bars
//! are on the symbols' subjects already).
//!
//! Invariants: every request with an inbox is answered (an error is an answer), one whose
//! deadline passed before its turn with a timeout; a client's order requests carry their
//! reference as `Nats-Msg-Id` and go to the hub one after the other, so an order sent twice
//! (a retry) reaches the broker once and is answered with the order already placed; one run
//! of a client name at a time, and only its newest worker's word lets it go; a client silent
//! for [`SILENCE`] while the door's own connection is up is let go (its keepalive, answered
//! "not attached", brings it back); at most `nats.max_remote_clients` at once; a message that
//! is not ours (undecodable, a name no hub takes, no inbox) is ignored and counted; the hub
//! never waits for NATS, and the door never waits on a lock while attaching.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use bridge::protocol::{ErrorKind, Event, RemoteError, Reply, Request};
use bridge::{Client, ClientConfig};
use futures_util::StreamExt;
use parking_lot::Mutex;
use worker::remote::wire::{rpc_subject, CANCELS, DEADLINE, INSTANCE, MSG_ID, SEQ, WORKER};

use super::publisher::Publisher;
use crate::config::{NatsConfig, MAX_CLIENT_NAME};

/// A remote client not heard of for this long is let go.
const SILENCE: Duration = Duration::from_secs(10);
/// How long the door waits before connecting to the server again.
const RETRY: Duration = Duration::from_secs(1);
/// How long an answer may wait to be handed to the server.
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// What the door needs of the hub.
pub struct DoorSettings {
    pub hub: String,
    pub dir: PathBuf,
    pub client: ClientConfig,
    pub request_timeout: Duration,
    pub history_timeout: Duration,
}

/// The hub's door on NATS.
pub struct Door {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    settings: DoorSettings,
    nats: NatsConfig,
    publisher: Arc<Publisher>,
    remotes: Mutex<HashMap<String, Arc<Remote>>>,
    /// Names being attached now (outside the lock of `remotes`).
    attaching: Mutex<Vec<String>>,
    /// Requests under way by their inbox: set, the client gave the request up.
    in_flight: Mutex<HashMap<String, Arc<AtomicBool>>>,
    stop: AtomicBool,
}

/// A remote client, attached to the hub under its name.
struct Remote {
    name: String,
    /// The run of the program it is (every worker of a run says the same).
    instance: String,
    /// The newest worker of that run heard of.
    newest: AtomicU32,
    client: Client,
    heard: Mutex<Instant>,
    /// Held while one of its order requests is under way.
    orders: Mutex<()>,
}

/// What a request's headers say.
struct Said {
    instance: String,
    worker: u32,
    deadline_ms: Option<u64>,
    msg_id: Option<String>,
}

impl Said {
    fn of(headers: Option<&HeaderMap>) -> Said {
        let get = |k: &str| {
            headers
                .and_then(|h| h.get(k))
                .map(|v| v.as_str().to_string())
        };
        Said {
            instance: get(INSTANCE).unwrap_or_default(),
            worker: get(WORKER).and_then(|w| w.parse().ok()).unwrap_or(0),
            deadline_ms: get(DEADLINE).and_then(|d| d.parse().ok()),
            msg_id: get(MSG_ID),
        }
    }
}

impl Door {
    /// Opens the door of hub `settings.hub` on the server of `nats` (connecting, and again,
    /// on a thread of its own), its clients' events published by `publisher`.
    pub fn open(
        settings: DoorSettings,
        nats: &NatsConfig,
        publisher: Arc<Publisher>,
    ) -> std::io::Result<Door> {
        let shared = Arc::new(Shared {
            settings,
            nats: nats.clone(),
            publisher,
            remotes: Mutex::new(HashMap::new()),
            attaching: Mutex::new(Vec::new()),
            in_flight: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("hub-door".into())
                .spawn(move || run(&shared))?
        };
        Ok(Door {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Closes the door: its clients are let go.
    pub fn close(&self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
        let all: Vec<_> = self.shared.remotes.lock().drain().collect();
        for (_, remote) in all {
            remote.client.control().close();
        }
    }
}

impl Drop for Door {
    fn drop(&mut self) {
        self.close();
    }
}

fn run(shared: &Arc<Shared>) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("hub-door")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("the hub's NATS door cannot open: {e}");
            return;
        }
    };
    runtime.block_on(serve(shared.clone()));
    runtime.shutdown_timeout(Duration::from_secs(1));
}

async fn serve(shared: Arc<Shared>) {
    let subject = rpc_subject(&shared.settings.hub, "*");
    while !shared.stop.load(Ordering::Acquire) {
        let client = match super::publish::connect(&shared.nats, &shared.settings.hub).await {
            Ok(c) => c,
            Err(why) => {
                tracing::debug!("the hub's NATS door: {why}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let subscribed = tokio::time::timeout(RETRY * 2, client.subscribe(subject.clone())).await;
        let Ok(Ok(mut requests)) = subscribed else {
            tracing::warn!("the hub's NATS door: no subscription to {subject}");
            tokio::time::sleep(RETRY).await;
            continue;
        };
        tracing::info!(%subject, "the hub's door open on NATS");
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        let mut was_down = false;
        loop {
            tokio::select! {
                // What came before the sweep: a client whose keepalive waited behind a busy
                // door is not let go for it.
                biased;
                m = requests.next() => match m {
                    Some(m) => take(&shared, &client, m),
                    None => break,
                },
                _ = sweep.tick() => {
                    if shared.stop.load(Ordering::Acquire) {
                        return;
                    }
                    // While the door's own connection is down nobody is heard: nobody is let
                    // go for it, and everybody has SILENCE again once it is back.
                    let up = client.connection_state() == async_nats::connection::State::Connected;
                    if !up {
                        was_down = true;
                        continue;
                    }
                    if std::mem::take(&mut was_down) {
                        for r in shared.remotes.lock().values() {
                            *r.heard.lock() = Instant::now();
                        }
                    }
                    let_silent_go(&shared);
                }
            }
        }
    }
}

/// One message on the door's subjects.
fn take(shared: &Arc<Shared>, nats: &async_nats::Client, m: async_nats::Message) {
    let name = m.subject.rsplit('.').next().unwrap_or_default().to_string();
    let said = Said::of(m.headers.as_ref());
    let request = bridge::codec::decode::<Request>(&m.payload);
    let ours = name.len() <= MAX_CLIENT_NAME && bridge::channel::valid_name(&name);
    // A client giving up a request of its: the request stops, and is cancelled at the broker.
    let cancels = m.headers.as_ref().and_then(|h| h.get(CANCELS));
    if let (true, Ok(Request::Cancel { .. }), Some(inbox)) = (ours, &request, cancels) {
        if let Some(flag) = shared.in_flight.lock().get(inbox.as_str()) {
            flag.store(true, Ordering::Release);
        }
        return;
    }
    let (request, reply) = match (ours, request, m.reply.clone()) {
        (true, Ok(request), Some(reply)) => (request, reply),
        (ours, request, reply) => {
            let n = shared.publisher.count_not_ours();
            tracing::warn!(subject = %m.subject, not_ours = n, "a message that is not ours, ignored");
            if let (Some(reply), true, Err(e)) = (reply, ours, request) {
                let error = Reply::Error(RemoteError {
                    kind: ErrorKind::BadRequest,
                    message: format!("not a request: {e}"),
                });
                let nats = nats.clone();
                tokio::spawn(async move { answer(&nats, &reply, 0, &error).await });
            }
            return;
        }
    };
    if let Request::Ping { payload } = request {
        // A client's keepalive: answered here, "not attached" to one the hub let go.
        let known = shared.remotes.lock().get(&name).cloned();
        let reply_to = match known {
            Some(r) if r.instance == said.instance && !r.client.control().is_gone() => {
                *r.heard.lock() = Instant::now();
                Reply::Pong { payload }
            }
            _ => Reply::Error(RemoteError {
                kind: ErrorKind::Disconnected,
                message: format!("client {name} is not attached to the hub"),
            }),
        };
        let nats = nats.clone();
        tokio::spawn(async move { answer(&nats, &reply, 0, &reply_to).await });
        return;
    }
    let (shared, nats) = (shared.clone(), nats.clone());
    let given_up = Arc::new(AtomicBool::new(false));
    shared
        .in_flight
        .lock()
        .insert(reply.to_string(), given_up.clone());
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Handle::current();
        let mut seq = 0u64;
        let mut say = |r: &Reply| {
            runtime.block_on(answer(&nats, &reply, seq, r));
            seq += 1;
        };
        handle(&shared, (&name, &said), request, (&mut say, &given_up));
        shared.in_flight.lock().remove(reply.as_str());
    });
}

/// Publishes `answer`, the `seq`-th of its request, on `inbox`; waits [`ANSWER_WAIT`] at most
/// for the client to take it.
async fn answer(nats: &async_nats::Client, inbox: &async_nats::Subject, seq: u64, answer: &Reply) {
    let Ok(bytes) = bridge::codec::encode(answer) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(SEQ, seq.to_string().as_str());
    let sent = nats.publish_with_headers(inbox.clone(), headers, bytes.into());
    match tokio::time::timeout(ANSWER_WAIT, sent).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("an answer not sent: {e}"),
        Err(_) => tracing::debug!("an answer not sent within {ANSWER_WAIT:?}"),
    }
}

fn error(kind: ErrorKind, message: String) -> Reply {
    Reply::Error(RemoteError { kind, message })
}

/// Answers `request` of remote client `name` (as its headers `said`) through `say` (a thread
/// of the blocking pool).
fn handle(
    shared: &Shared,
    (name, said): (&str, &Said),
    request: Request,
    (say, given_up): (&mut dyn FnMut(&Reply), &AtomicBool),
) {
    match request {
        Request::Shutdown => {
            // Only its run's newest worker lets a client go: the late word of one replaced, or
            // of an earlier run, is no more than an answer.
            let mut remotes = shared.remotes.lock();
            let own = remotes.get(name).is_some_and(|r| {
                r.instance == said.instance && said.worker >= r.newest.load(Ordering::Acquire)
            });
            if let Some(remote) = own.then(|| remotes.remove(name)).flatten() {
                tracing::info!(client = %name, "remote client left");
                remote.client.control().close();
            }
            drop(remotes);
            return say(&Reply::ShuttingDown);
        }
        Request::Cancel { .. } => return,
        _ => {}
    }
    let order_ref = match &request {
        Request::PlaceOrder(o) => Some(o.order_ref.as_str()),
        Request::ModifyOrder(c) => Some(c.order_ref.as_str()),
        Request::CancelOrder { order_ref } => Some(order_ref.as_str()),
        _ => None,
    };
    if let Some(r) = order_ref {
        if said.msg_id.as_deref() != Some(r) {
            return say(&error(
                ErrorKind::BadRequest,
                format!("an order's request carries its reference {r:?} as its {MSG_ID}"),
            ));
        }
    }
    let remote = match attached(shared, name, said) {
        Ok(r) => r,
        Err(e) => return say(&error(ErrorKind::NotConnected, e)),
    };
    *remote.heard.lock() = Instant::now();
    remote.newest.fetch_max(said.worker, Ordering::AcqRel);
    let _one = order_ref.map(|_| remote.orders.lock());
    // Given up by the client before its turn: not done at all.
    let now_ms = base::unix_time::now().as_millis() as u64;
    if said.deadline_ms.is_some_and(|d| now_ms > d) {
        return say(&error(
            ErrorKind::Timeout,
            "the request's deadline passed before its turn".into(),
        ));
    }
    let wait = match request {
        Request::History(_) => shared.settings.history_timeout,
        _ => shared.settings.request_timeout,
    };
    let lost = |e: bridge::RequestError| error(ErrorKind::NotConnected, format!("the hub: {e}"));
    match remote.client.stream(request, wait) {
        Ok(replies) => {
            for reply in replies {
                if given_up.load(Ordering::Acquire) {
                    // The stream dropped: the request is cancelled at the hub's worker.
                    tracing::debug!(client = %name, "a request given up by the client");
                    return;
                }
                say(&reply.unwrap_or_else(lost));
            }
        }
        Err(e) => say(&lost(e)),
    }
}

/// Remote client `name` of the run its headers say, attached to the hub if it is not yet
/// (the attach made outside the lock of the clients). Another run of the same name is
/// refused while the one attached is heard of (a client name is one program at a time: its
/// durable consumers are its own); one silent for [`SILENCE`] is let go for it.
fn attached(shared: &Shared, name: &str, said: &Said) -> Result<Arc<Remote>, String> {
    {
        let mut remotes = shared.remotes.lock();
        if let Some(r) = remotes.get(name) {
            let alive = !r.client.control().is_gone();
            if alive && r.instance == said.instance {
                return Ok(r.clone());
            }
            if alive && r.heard.lock().elapsed() <= SILENCE {
                return Err(format!(
                    "another program is attached as client {name} (a client name is one \
                     program at a time: name this one with --client)"
                ));
            }
            if let Some(old) = remotes.remove(name) {
                tracing::info!(client = %name, "remote client let go: another run of it came");
                old.client.control().close();
            }
        }
        if remotes.len() >= shared.nats.max_remote_clients as usize {
            return Err(format!(
                "the hub serves at most {} clients over NATS (nats.max_remote_clients)",
                shared.nats.max_remote_clients
            ));
        }
        let mut attaching = shared.attaching.lock();
        if attaching.iter().any(|n| n == name) {
            return Err(format!("client {name} is being attached: ask again"));
        }
        attaching.push(name.to_string());
    }
    let made = attach(shared, name, said);
    shared.attaching.lock().retain(|n| n != name);
    let remote = made?;
    let mut remotes = shared.remotes.lock();
    if shared.stop.load(Ordering::Acquire) {
        remote.client.control().close();
        return Err("the hub is stopping".into());
    }
    remotes.insert(name.to_string(), remote.clone());
    Ok(remote)
}

/// Attaches remote client `name` to the hub and starts forwarding its events.
fn attach(shared: &Shared, name: &str, said: &Said) -> Result<Arc<Remote>, String> {
    if shared.stop.load(Ordering::Acquire) {
        return Err("the hub is stopping".into());
    }
    let s = &shared.settings;
    let channel = bridge::channel::attach_to_hub(&s.dir, &s.hub, name, &s.client.channel)
        .map_err(|e| e.to_string())?;
    let (client, events) = Client::over(channel, &s.client).map_err(|e| e.to_string())?;
    let remote = Arc::new(Remote {
        name: name.to_string(),
        instance: said.instance.clone(),
        newest: AtomicU32::new(said.worker),
        client,
        heard: Mutex::new(Instant::now()),
        orders: Mutex::new(()),
    });
    tracing::info!(client = %name, "remote client attached over NATS");
    let (publisher, gone) = (shared.publisher.clone(), remote.clone());
    let forwarded = std::thread::Builder::new()
        .name("hub-door-events".into())
        .spawn(move || forward_events(&publisher, &gone, events));
    if let Err(e) = forwarded {
        remote.client.control().close();
        return Err(format!("no thread for its events: {e}"));
    }
    Ok(remote)
}

/// Publishes what the hub tells `remote` (its bars excepted: they are on the symbols'
/// subjects) to its events subject, until it goes.
fn forward_events(publisher: &Publisher, remote: &Remote, events: bridge::Events) {
    loop {
        match events.recv_timeout(Duration::from_millis(500)) {
            Ok(Event::Bar { .. }) => {}
            Ok(event) => match bridge::codec::encode(&event) {
                Ok(bytes) => publisher.client_event(&remote.name, bytes),
                Err(e) => tracing::warn!("an event not published: {e}"),
            },
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if remote.client.control().is_gone() {
                    return;
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Lets go of the clients not heard of for [`SILENCE`].
fn let_silent_go(shared: &Shared) {
    let mut remotes = shared.remotes.lock();
    let silent: Vec<String> = remotes
        .iter()
        .filter(|(_, r)| r.heard.lock().elapsed() > SILENCE || r.client.control().is_gone())
        .map(|(n, _)| n.clone())
        .collect();
    for name in silent {
        if let Some(r) = remotes.remove(&name) {
            tracing::info!(client = %name, "remote client let go: silent for {SILENCE:?}");
            r.client.control().close();
        }
    }
}
