//! The hub's door on NATS ([`Door`]): programs on other machines (`runner run --nats URL
//! --hub NAME`) send their requests to `ibbridge-rpc.<hub>.<client>` and get the answers on
//! the request's inbox. Each such client is attached to the hub as a local client of its
//! name, over a segment of its own from this process, so that everything a hub does for a
//! client (order references in its namespace, shared feeds and history, a client gone
//! released, its orders kept or cancelled) is done for it alike; its events but bars go to
//! `ibbridge.<hub>.clients.<client>.events` in the hub's stream (the bars are on the symbols'
//! subjects already).
//!
//! Invariants: every request with an inbox is answered (an error is an answer); a client's
//! order requests are sent on one after the other, so an order sent twice (a retry: the same
//! reference, as its `Nats-Msg-Id`) reaches the broker once and is answered with the order
//! already placed; a client silent for [`SILENCE`] is let go as a local client that goes; a
//! message that is not ours (another subject, undecodable, no inbox) is ignored and counted;
//! the hub never waits for NATS.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bridge::protocol::{ErrorKind, Event, RemoteError, Reply, Request};
use bridge::{Client, ClientConfig};
use futures_util::StreamExt;
use parking_lot::Mutex;

use super::publisher::Publisher;
use crate::config::{NatsConfig, MAX_CLIENT_NAME};
use worker::remote::wire::INSTANCE;

/// A remote client not heard of for this long is let go.
pub const SILENCE: Duration = Duration::from_secs(10);
/// How long the door waits before connecting to the server again.
const RETRY: Duration = Duration::from_secs(1);

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
    stop: AtomicBool,
}

/// A remote client, attached to the hub under its name.
struct Remote {
    name: String,
    /// The run of the program it is (every worker of a run says the same).
    instance: String,
    client: Client,
    heard: Mutex<Instant>,
    /// Held while one of its order requests is under way.
    orders: Mutex<()>,
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

    /// Remote clients attached now.
    pub fn remotes(&self) -> usize {
        self.shared.remotes.lock().len()
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
    let subject = worker::remote::wire::rpc_subject(&shared.settings.hub, "*");
    while !shared.stop.load(Ordering::Acquire) {
        let client = match super::publish::connect(&shared.nats, &shared.settings.hub).await {
            Ok(c) => c,
            Err(why) => {
                tracing::debug!("the hub's NATS door: {why}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let mut requests = match client.subscribe(subject.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("the hub's NATS door: {e}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        tracing::info!(%subject, "the hub's door open on NATS");
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                m = requests.next() => match m {
                    Some(m) => take(&shared, &client, m),
                    None => break,
                },
                _ = sweep.tick() => {
                    if shared.stop.load(Ordering::Acquire) {
                        return;
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
    let instance = m
        .headers
        .as_ref()
        .and_then(|h| h.get(INSTANCE))
        .map(|v| v.as_str().to_string())
        .unwrap_or_default();
    let request = bridge::codec::decode::<Request>(&m.payload);
    let ours = name.len() <= MAX_CLIENT_NAME && bridge::channel::valid_name(&name);
    let (request, reply) = match (ours, request, m.reply.clone()) {
        (true, Ok(Request::Ping { .. }), None) => {
            // A client's keepalive.
            if let Some(r) = shared.remotes.lock().get(&name) {
                if r.instance == instance {
                    *r.heard.lock() = Instant::now();
                }
            }
            return;
        }
        (true, Ok(request), Some(reply)) => (request, reply),
        (ours, request, reply) => {
            let n = shared.publisher.count_not_ours();
            tracing::warn!(subject = %m.subject, not_ours = n, "a message that is not ours, ignored");
            if let (Some(reply), true, Err(e)) = (reply, ours, request) {
                let error = Reply::Error(RemoteError {
                    kind: ErrorKind::BadRequest,
                    message: format!("not a request: {e}"),
                });
                answer(nats, &reply, &error);
            }
            return;
        }
    };
    let (shared, nats) = (shared.clone(), nats.clone());
    tokio::task::spawn_blocking(move || {
        let reply = reply.to_string();
        handle(&shared, &nats, (&name, &instance), request, &reply);
    });
}

/// Publishes `answer` on `inbox`, without waiting for the server.
fn answer(nats: &async_nats::Client, inbox: &async_nats::Subject, answer: &Reply) {
    let Ok(bytes) = bridge::codec::encode(answer) else {
        return;
    };
    let (nats, inbox) = (nats.clone(), inbox.clone());
    tokio::spawn(async move {
        if let Err(e) = nats.publish(inbox, bytes.into()).await {
            tracing::debug!("an answer not sent: {e}");
        }
    });
}

/// Answers `request` of remote client `name` (run `instance`) on `inbox` (a thread of the
/// blocking pool).
fn handle(
    shared: &Shared,
    nats: &async_nats::Client,
    (name, instance): (&str, &str),
    request: Request,
    inbox: &str,
) {
    let inbox = async_nats::Subject::from(inbox);
    let say = |r: &Reply| answer_blocking(nats, &inbox, r);
    match request {
        Request::Ping { payload } => return say(&Reply::Pong { payload }),
        Request::Shutdown => {
            // Only its own run lets a client go: a late word of an earlier one is no more.
            let mut remotes = shared.remotes.lock();
            if remotes.get(name).is_some_and(|r| r.instance == instance) {
                if let Some(remote) = remotes.remove(name) {
                    tracing::info!(client = %name, "remote client left");
                    remote.client.control().close();
                }
            }
            drop(remotes);
            return say(&Reply::ShuttingDown);
        }
        Request::Cancel { .. } => return,
        _ => {}
    }
    let remote = match attached(shared, name, instance) {
        Ok(r) => r,
        Err(e) => {
            return say(&Reply::Error(RemoteError {
                kind: ErrorKind::NotConnected,
                message: format!("client {name} not attached to the hub: {e}"),
            }))
        }
    };
    *remote.heard.lock() = Instant::now();
    let ordered = matches!(
        request,
        Request::PlaceOrder(_) | Request::ModifyOrder(_) | Request::CancelOrder { .. }
    );
    let _one = ordered.then(|| remote.orders.lock());
    let wait = match request {
        Request::History(_) => shared.settings.history_timeout,
        _ => shared.settings.request_timeout,
    };
    match remote.client.stream(request, wait) {
        Ok(replies) => {
            for reply in replies {
                let reply = reply.unwrap_or_else(|e| {
                    Reply::Error(RemoteError {
                        kind: ErrorKind::NotConnected,
                        message: format!("the hub: {e}"),
                    })
                });
                say(&reply);
            }
        }
        Err(e) => say(&Reply::Error(RemoteError {
            kind: ErrorKind::NotConnected,
            message: format!("the hub: {e}"),
        })),
    }
}

/// [`answer`], from a thread outside the runtime: waits until it is handed to the client.
fn answer_blocking(nats: &async_nats::Client, inbox: &async_nats::Subject, reply: &Reply) {
    let Ok(bytes) = bridge::codec::encode(reply) else {
        return;
    };
    let handle = tokio::runtime::Handle::current();
    let sent = handle.block_on(nats.publish(inbox.clone(), bytes.into()));
    if let Err(e) = sent {
        tracing::debug!("an answer not sent: {e}");
    }
}

/// Remote client `name` of run `instance`, attached to the hub if it is not yet. Another
/// run of the same name is refused while the one attached is heard of (a client name is one
/// program at a time: its durable consumers are its own); one silent for [`SILENCE`] is let
/// go for it.
fn attached(shared: &Shared, name: &str, instance: &str) -> Result<Arc<Remote>, String> {
    let mut remotes = shared.remotes.lock();
    if let Some(r) = remotes.get(name) {
        let alive = !r.client.control().is_gone();
        if alive && r.instance == instance {
            return Ok(r.clone());
        }
        if alive && r.heard.lock().elapsed() <= SILENCE {
            return Err(format!(
                "another program is attached as client {name} (a client name is one program \
                 at a time: name this one with --client)"
            ));
        }
        if let Some(old) = remotes.remove(name) {
            tracing::info!(client = %name, "remote client let go: another run of it came");
            old.client.control().close();
        }
    }
    let s = &shared.settings;
    let channel = bridge::channel::attach_to_hub(&s.dir, &s.hub, name, &s.client.channel)
        .map_err(|e| e.to_string())?;
    let (client, events) = Client::over(channel, &s.client).map_err(|e| e.to_string())?;
    let remote = Arc::new(Remote {
        name: name.to_string(),
        instance: instance.to_string(),
        client,
        heard: Mutex::new(Instant::now()),
        orders: Mutex::new(()),
    });
    remotes.insert(name.to_string(), remote.clone());
    drop(remotes);
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
