//! `runner hub`: one supervised worker, and so one broker connection, shared by many local
//! programs. Each client attaches over a segment of its own (`bridge::channel::HubListener`)
//! and speaks the worker's protocol; what is shared is decided here: live feeds
//! (`feeds`), history (`requests`' coalescer), order references by client namespace
//! (`requests`), events fanned out without waiting for anyone (`clients`), and the status a
//! `runner hub status` reads (`status`).
//!
//! Invariants: the hub never waits for a client (a slow one loses events, counted and told);
//! a client that goes (closes, dies, hangs, corrupts its segment) has its streams released
//! within a second of it being noticed, and its working orders kept or cancelled as
//! configured; the hub's worker is replaced by its supervisor as in a run, which clients see
//! as requests answered late, not as errors.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bridge::channel::{HubListener, Knock};
use bridge::protocol::{ConnectionStatus, ErrorKind, Event, FeedState, Request};
use bridge::Server;
use parking_lot::Mutex;

mod clients;
mod feeds;
mod history;
mod requests;
mod state;
mod status;

use clients::{Client, Clients};
use feeds::Feeds;
use history::Coalescer;
use state::{Counters, Hub, Settings};
pub use status::{read as read_status, status_command, ClientView, FeedView, HubStatus};

use crate::config::{Config, MAX_CLIENT_NAME};
use crate::launch::{failed, start, with_workers};
use crate::supervisor::{Supervisor, HUB_HANG_TIMEOUT};
use crate::worker_events::WorkerEvents;

/// Requests of one client under way at once; more are refused.
const MAX_IN_FLIGHT: usize = 64;
/// How long a client may take to say what it wants after connecting.
const KNOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections whose attach request is awaited at once (each on a thread of its own, for up
/// to `KNOCK_TIMEOUT`): one beyond is closed at once, so that a program opening connections
/// and saying nothing cannot make the hub's threads grow.
const MAX_KNOCKING: usize = 16;

/// `runner hub`: serves until Ctrl-C or SIGTERM.
pub fn command(name: Option<&str>, loaded: Result<Config, crate::config::ConfigError>) -> ExitCode {
    let (mut cfg, faults) = match start(loaded) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let name = name
        .map(str::to_string)
        .or_else(|| Some(cfg.hub.name.clone()).filter(|n| !n.is_empty()))
        .unwrap_or_else(|| "default".to_string());
    // The hub's own worker is started, not attached to.
    cfg.hub.name = String::new();
    let served = with_workers(&mut cfg, faults, |cfg, setup, stop| {
        serve(cfg, setup, stop, &name)
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed(&e),
    }
}

/// Serves as hub `name` with the configuration `cfg` (its `hub` section's directory and
/// limits) and the workers of `setup`, until `stop` is set.
pub fn serve(
    cfg: &Config,
    setup: crate::worker_setup::WorkerSetup,
    stop: &AtomicBool,
    name: &str,
) -> anyhow::Result<()> {
    let dir = cfg.hub.directory();
    if cfg.hub.over_nats {
        anyhow::bail!(
            "hub.over_nats (--nats) is for a program reaching a hub: a hub publishes to \
             nats.url"
        );
    }
    if cfg.nats.url.is_some() && !crate::nats::valid_hub_token(name) {
        anyhow::bail!("hub name {name:?} cannot name NATS subjects: letters, digits, - and _ only");
    }
    let listener = HubListener::bind(&dir, name)?;
    let nats = crate::nats::Publisher::start(&cfg.nats, name)?.map(Arc::new);
    let mut channel = setup.client.channel.clone();
    channel.hang_timeout = channel.hang_timeout.min(HUB_HANG_TIMEOUT);
    let mut setup = setup;
    let door_client = setup.client.clone();
    let found = Arc::new(OnceLock::new());
    setup.client.event_tap = Some(tap(found.clone()));
    let (sup, events) = Supervisor::start(setup)?;
    let hub = Arc::new(Hub {
        sup: sup.clone(),
        settings: Settings {
            name: name.to_string(),
            dir: dir.clone(),
            max_clients: cfg.hub.max_clients as usize,
            cancel_departed: cfg.hub.cancel_departed(),
            request_timeout: cfg.request_timeout(),
            history_timeout: Duration::from_secs(cfg.history.timeout_seconds),
        },
        clients: Clients::default(),
        feeds: Feeds::default(),
        history: Coalescer::default(),
        counters: Counters::default(),
        gateway: Mutex::new("connected".into()),
        backend: format!("{:?}", cfg.backend).to_lowercase(),
        started: base::unix_time::now().as_secs(),
        stopping: AtomicBool::new(false),
        nats,
    });
    let _ = found.set(Arc::downgrade(&hub));
    tracing::info!(
        hub = name,
        socket = %listener.path().display(),
        "hub ready: clients attach with --hub {name}"
    );
    #[cfg(feature = "nats")]
    let door = match &hub.nats {
        Some(publisher) => Some(crate::nats::Door::open(
            crate::nats::DoorSettings {
                hub: name.to_string(),
                dir: dir.clone(),
                client: door_client,
                request_timeout: hub.settings.request_timeout,
                history_timeout: hub.settings.history_timeout,
            },
            &cfg.nats,
            publisher.clone(),
        )?),
        None => None,
    };
    #[cfg(not(feature = "nats"))]
    let _ = door_client;
    let router = {
        let hub = hub.clone();
        std::thread::Builder::new()
            .name("hub-events".into())
            .spawn(move || route_events(&hub, events))?
    };
    let reporter = {
        let hub = hub.clone();
        std::thread::Builder::new()
            .name("hub-status".into())
            .spawn(move || status::keep_written(&hub))?
    };
    let knocking = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept(Duration::from_millis(200)) {
            Ok(Some(mut knock)) => {
                if knocking.load(Ordering::Acquire) >= MAX_KNOCKING {
                    hub.counters.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("client refused: {MAX_KNOCKING} attaches already under way");
                    knock.refuse(&format!(
                        "{MAX_KNOCKING} attaches already under way at the hub"
                    ));
                    continue;
                }
                knocking.fetch_add(1, Ordering::AcqRel);
                let (hub, channel, knocking) = (hub.clone(), channel.clone(), knocking.clone());
                let counted = knocking.clone();
                let spawned = std::thread::Builder::new()
                    .name("hub-client".into())
                    .spawn(move || attach_and_serve(&hub, knock, &channel, &knocking));
                if let Err(e) = spawned {
                    counted.fetch_sub(1, Ordering::AcqRel);
                    tracing::warn!("a client's thread could not start: {e}");
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    tracing::info!(clients = hub.clients.count(), "hub stopping");
    #[cfg(feature = "nats")]
    if let Some(door) = &door {
        door.close();
    }
    hub.stopping.store(true, Ordering::Release);
    // No new client from here; the clients see the hub close and wait for it to come back.
    drop(listener);
    for client in hub.clients.all() {
        client.responder.control().close();
    }
    sup.shutdown();
    let _ = router.join();
    let _ = reporter.join();
    if let Some(nats) = &hub.nats {
        nats.stop();
    }
    status::remove(&hub);
    Ok(())
}

/// Reads what a client asks, admits it if it may attach, and serves it until it goes.
fn attach_and_serve(
    hub: &Arc<Hub>,
    mut knock: Knock,
    channel: &bridge::ChannelConfig,
    knocking: &AtomicUsize,
) {
    let request = knock.request(KNOCK_TIMEOUT);
    knocking.fetch_sub(1, Ordering::AcqRel);
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            hub.counters.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("client refused: {e}");
            return;
        }
    };
    // The seat is taken last: a client refused for another reason never holds one.
    let mut seat = None;
    let refusal = if request.client.len() > MAX_CLIENT_NAME {
        Some(format!(
            "client name {} is longer than {MAX_CLIENT_NAME} characters",
            request.client
        ))
    } else if hub.stopping.load(Ordering::Acquire) {
        Some("the hub is stopping".to_string())
    } else {
        seat = hub.clients.seat(hub.settings.max_clients);
        seat.is_none().then(|| {
            format!(
                "the hub serves at most {} clients (hub.max_clients)",
                hub.settings.max_clients
            )
        })
    };
    let seat = match (seat, refusal) {
        (Some(seat), None) => seat,
        (_, why) => {
            let why = why.unwrap_or_default();
            hub.counters.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(client = %request.client, pid = request.pid, "client refused: {why}");
            knock.refuse(&why);
            return;
        }
    };
    let (name, pid) = (request.client.clone(), request.pid);
    let channel = match knock.admit(request, channel) {
        Ok(c) => c,
        Err(e) => {
            hub.counters.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(client = %name, pid, "client not attached: {e}");
            return;
        }
    };
    let server = Server::over(channel, hub.settings.request_timeout);
    let client = Arc::new(Client::new(
        hub.clients.next_id(),
        name,
        pid,
        server.responder(),
    ));
    hub.clients.add(seat, client.clone());
    hub.counters.attached.fetch_add(1, Ordering::Relaxed);
    tracing::info!(client = %client.name, pid, "client attached");
    serve_client(hub, &client, server);
    depart(hub, &client);
}

/// Takes the client's requests until it goes; each is answered on a thread of its own, but
/// its subscriptions and cancellations one after the other, in the order sent, on one thread
/// (a subscription and its cancellation never overtake each other).
fn serve_client(hub: &Arc<Hub>, client: &Arc<Client>, mut server: Server) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut in_order: Option<crossbeam_channel::Sender<(u64, Request)>> = None;
    loop {
        if hub.stopping.load(Ordering::Acquire) {
            return;
        }
        // Long waits: a client that closes, dies or hangs, or the hub stopping (which closes
        // every client's connection), wakes this at once.
        let incoming = match server.next(Duration::from_secs(2)) {
            Ok(Some(incoming)) => incoming,
            Ok(None) => continue,
            Err(e) => {
                tracing::info!(client = %client.name, pid = client.pid, "client gone: {e}");
                return;
            }
        };
        client.requests.fetch_add(1, Ordering::Relaxed);
        let (id, request) = (incoming.id, incoming.request);
        if matches!(request, Request::Cancel { .. }) {
            continue;
        }
        if in_flight.load(Ordering::Acquire) >= MAX_IN_FLIGHT {
            refuse(
                client,
                id,
                ErrorKind::BadRequest,
                format!("more than {MAX_IN_FLIGHT} requests under way at the hub"),
            );
            continue;
        }
        in_flight.fetch_add(1, Ordering::AcqRel);
        let ordered = matches!(request, Request::Subscribe(_) | Request::Unsubscribe { .. });
        let sent = if ordered {
            if in_order.is_none() {
                in_order = spawn_in_order(hub, client, &in_flight);
            }
            in_order
                .as_ref()
                .is_some_and(|tx| tx.send((id, request)).is_ok())
        } else {
            let (hub2, client2, count) = (hub.clone(), client.clone(), in_flight.clone());
            std::thread::Builder::new()
                .name("hub-request".into())
                .spawn(move || {
                    requests::handle(&hub2, &client2, id, request);
                    count.fetch_sub(1, Ordering::AcqRel);
                })
                .is_ok()
        };
        if !sent {
            in_flight.fetch_sub(1, Ordering::AcqRel);
            refuse(
                client,
                id,
                ErrorKind::Internal,
                "the hub could not start a thread for the request".into(),
            );
        }
    }
}

/// The thread that handles a client's subscriptions and cancellations in the order sent; it
/// ends once the client's requests are over (the sender dropped) and those sent are handled.
fn spawn_in_order(
    hub: &Arc<Hub>,
    client: &Arc<Client>,
    in_flight: &Arc<AtomicUsize>,
) -> Option<crossbeam_channel::Sender<(u64, Request)>> {
    let (tx, rx) = crossbeam_channel::unbounded::<(u64, Request)>();
    let (hub, client, count) = (hub.clone(), client.clone(), in_flight.clone());
    std::thread::Builder::new()
        .name("hub-subscriptions".into())
        .spawn(move || {
            for (id, request) in rx {
                requests::handle(&hub, &client, id, request);
                count.fetch_sub(1, Ordering::AcqRel);
            }
        })
        .ok()
        .map(|_| tx)
}

fn refuse(client: &Client, id: u64, kind: ErrorKind, message: String) {
    let _ = client.responder.reply(
        id,
        bridge::protocol::Reply::Error(bridge::protocol::RemoteError { kind, message }),
    );
}

/// A client went: its streams released, its working orders kept or cancelled.
fn depart(hub: &Hub, client: &Arc<Client>) {
    client.responder.control().close();
    hub.clients.remove(client.id);
    hub.counters.departed.fetch_add(1, Ordering::Relaxed);
    if hub.stopping.load(Ordering::Acquire) {
        return;
    }
    hub.feeds
        .release(&hub.sup, client, hub.settings.request_timeout);
    if hub.settings.cancel_departed && hub.clients.named(&client.name).is_empty() {
        match requests::cancel_working(hub, &client.name, hub.settings.request_timeout) {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(client = %client.name, "{n} working orders of a departed client cancelled")
            }
            Err(e) => tracing::warn!(client = %client.name, "working orders not cancelled: {e}"),
        }
    }
}

/// Routes the hub's worker's events on the thread that reads them from the worker (the
/// bridge client's dispatcher, or the hub's event thread waiting at the ring), with no thread
/// in between: a live bar reaches the clients'
/// rings as soon as it is read. Before the hub is up, and for `BookTold` (the supervisor's
/// bookkeeping), events go on to the queue ([`route_events`]). The first event a replacement
/// worker delivers is preceded by news to every client of every feed that its stream was
/// made again (the bars of the outage are missing: a gap, declared), so that no bar of the
/// new worker comes before it.
fn tap(found: Arc<OnceLock<Weak<Hub>>>) -> bridge::EventTap {
    let first = Arc::new(AtomicBool::new(true));
    // Whether the current worker has had an event routed: its first is told by the client
    // (`fresh`), whichever thread routes it, and may be one that goes on to the queue.
    let spoke = Arc::new(AtomicBool::new(false));
    Arc::new(move |event, fresh| {
        if fresh {
            spoke.store(false, Ordering::Release);
        }
        if matches!(event, Event::BookTold { .. }) {
            return Some(event);
        }
        let Some(hub) = found.get().and_then(Weak::upgrade) else {
            return Some(event);
        };
        if !spoke.swap(true, Ordering::AcqRel) && !first.swap(false, Ordering::AcqRel) {
            hub.feeds.tell_all(&FeedState::Resubscribed {
                reason: "the hub's worker was replaced".into(),
            });
            if let Some(nats) = &hub.nats {
                // Its streams were made again: the bars of the outage are missing.
                nats.event(&serde_json::json!({"kind": "worker_replaced"}));
            }
        }
        route(&hub, event);
        None
    })
}

/// Hands the events the tap left to the queue to the clients they concern, and sends what
/// waits in the clients' backlogs.
fn route_events(hub: &Hub, mut events: WorkerEvents) {
    loop {
        let waiting = hub.clients.all().iter().any(|c| c.waiting() > 0);
        let wait = if waiting {
            Duration::from_millis(10)
        } else {
            Duration::from_millis(500)
        };
        match events.recv_timeout(wait) {
            Ok(event) => route(hub, event),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if hub.stopping.load(Ordering::Acquire) {
                    return;
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
        if waiting {
            for client in hub.clients.all() {
                client.flush();
            }
        }
    }
}

fn route(hub: &Hub, event: Event) {
    match event {
        Event::Bar { sub, bar } => {
            hub.counters.bars_in.fetch_add(1, Ordering::Relaxed);
            let n = hub.feeds.route_bar(sub, bar, hub.nats.as_deref());
            hub.counters.bars_out.fetch_add(n as u64, Ordering::Relaxed);
        }
        Event::Refused { ref symbol, .. }
        | Event::Delayed { ref symbol, .. }
        | Event::Feed { ref symbol, .. } => {
            if let Some(nats) = &hub.nats {
                nats.event(&published_event(&event));
            }
            hub.feeds.route_symbol_event(&symbol.clone(), &event)
        }
        Event::Order(report) => {
            let Some((owner, _)) = report.request.order_ref.split_once('.') else {
                return;
            };
            for client in hub.clients.named(owner) {
                if let Some(r) = requests::own_report(&client.name, (*report).clone()) {
                    client.deliver(Event::Order(Box::new(r)));
                }
            }
        }
        Event::Fill(fill) => {
            let Some((owner, _)) = fill.order_ref.split_once('.') else {
                return;
            };
            for client in hub.clients.named(owner) {
                if let Some(f) = requests::own_fill(&client.name, (*fill).clone()) {
                    client.deliver(Event::Fill(Box::new(f)));
                }
            }
        }
        Event::Connection(ref status) => {
            *hub.gateway.lock() = match status {
                ConnectionStatus::Connected => "connected".to_string(),
                ConnectionStatus::Lost { reason } => format!("lost: {reason}"),
                ConnectionStatus::Restored { .. } => "connected (restored)".to_string(),
                ConnectionStatus::Reconnecting { attempt } => {
                    format!("reconnecting (attempt {attempt})")
                }
                ConnectionStatus::GaveUp { reason, .. } => format!("given up: {reason}"),
            };
            if let Some(nats) = &hub.nats {
                nats.event(&published_event(&event));
            }
            for client in hub.clients.all() {
                client.deliver(event.clone());
            }
        }
        // Never from a worker; a hub's own news to its clients.
        Event::Dropped { .. } => {}
        other => {
            for client in hub.clients.all() {
                client.deliver(other.clone());
            }
        }
    }
}

/// An event as the hub publishes it on NATS (`ibbridge.<hub>.events`): JSON with its `kind`.
fn published_event(event: &Event) -> serde_json::Value {
    use serde_json::json;
    match event {
        Event::Connection(status) => {
            let (state, detail) = match status {
                ConnectionStatus::Connected => ("connected", String::new()),
                ConnectionStatus::Lost { reason } => ("lost", reason.clone()),
                ConnectionStatus::Restored { data_lost } => {
                    ("restored", format!("market data lost: {data_lost}"))
                }
                ConnectionStatus::Reconnecting { attempt } => {
                    ("reconnecting", format!("attempt {attempt}"))
                }
                ConnectionStatus::GaveUp { reason, .. } => ("given_up", reason.clone()),
            };
            json!({"kind": "connection", "state": state, "detail": detail})
        }
        Event::Refused { symbol, error } => {
            json!({"kind": "refused", "symbol": symbol, "error": error.message})
        }
        Event::Delayed { symbol, refused } => {
            json!({"kind": "delayed", "symbol": symbol, "error": refused.message})
        }
        Event::Feed { symbol, state } => {
            let state = match state {
                FeedState::Resubscribed { reason } => format!("resubscribed: {reason}"),
                FeedState::Stalled { since } => format!("stalled since {since}"),
                FeedState::Flowing => "flowing".to_string(),
                FeedState::Ended => "ended".to_string(),
            };
            json!({"kind": "feed", "symbol": symbol, "state": state})
        }
        other => json!({"kind": "other", "event": format!("{other:?}")}),
    }
}
