//! The worker's main loop: attach to the runner, answer `ping` and `shutdown` on the loop
//! itself, and hand every other request to handler threads that call the backend: changes of
//! live subscriptions to one thread of their own, order requests to another, in the order
//! they arrived, the rest to a pool.
//!
//! Invariants: the loop never waits on the broker (a ping measures the bridge, not the
//! backend); the handlers see only [`Work`], so a ping or a shutdown cannot reach them;
//! subscribes and unsubscribes are carried out in the order the runner sent them (a symbol
//! unsubscribed after it was subscribed ends unsubscribed, however slow the subscribe); every exit
//! path disconnects from the broker before the bridge is closed. Nothing here knows which
//! backend it serves (faults of the simulated market live in `sim`).

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bridge::codec::CodecError;
use bridge::protocol::{
    Event, HistoryRequest, OrderChange, OrderRequest, Reply, Request, SubscribeRequest,
};
use bridge::{channel, GoneReason, Incoming, RecvError, Responder, Server, StartError};
use crossbeam_channel::Sender;
use parking_lot::Mutex;

use crate::backend::{Backend, Cancel, EventSink};
use crate::ibkr::IbkrBackend;
use crate::options::{BackendOptions, WorkerOptions, OPTIONS_ENV};
use crate::sim::SimBackend;

/// How long a reply may wait for ring space before the runner is considered stuck.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a worker stopped with an error.
#[derive(Debug)]
#[non_exhaustive]
pub enum WorkerError {
    /// The options in the environment are missing or unreadable.
    Options(OptionsError),
    /// Attaching to the runner failed.
    Attach(StartError),
    /// The configured backend cannot start: the runtime it runs on could not be built.
    Backend(std::io::Error),
}

impl fmt::Display for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerError::Options(e) => write!(f, "worker options: {e}"),
            WorkerError::Attach(e) => write!(f, "cannot attach to the runner: {e}"),
            WorkerError::Backend(e) => write!(f, "backend: cannot start the async runtime: {e}"),
        }
    }
}

impl std::error::Error for WorkerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WorkerError::Options(e) => Some(e),
            WorkerError::Attach(e) => Some(e),
            WorkerError::Backend(e) => Some(e),
        }
    }
}

/// Why the options in the environment cannot be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum OptionsError {
    /// [`OPTIONS_ENV`] is not set (or not Unicode).
    Missing,
    /// Its text is not the options of this build.
    Unreadable(CodecError),
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionsError::Missing => write!(f, "{OPTIONS_ENV} is not set"),
            OptionsError::Unreadable(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for OptionsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OptionsError::Missing => None,
            OptionsError::Unreadable(e) => Some(e),
        }
    }
}

/// Why the serve loop ended.
#[derive(Debug)]
enum Stop {
    /// The runner asked (`shutdown`): the broker is already disconnected.
    Shutdown,
    /// The runner is gone: dead, hung, or it closed the bridge.
    RunnerGone(GoneReason),
    /// The bridge failed otherwise.
    Bridge(RecvError),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Shutdown => f.write_str("shutdown requested"),
            Stop::RunnerGone(reason) => write!(f, "runner gone: {reason}"),
            Stop::Bridge(e) => e.fmt(f),
        }
    }
}

/// Runs a worker: reads its options from the environment, attaches to the runner, serves
/// requests until the runner shuts it down, closes, or dies; then disconnects from the broker.
pub fn run() -> Result<(), WorkerError> {
    serve_as(crate::launch::build_id())
}

/// [`run`], for a worker whose code is not its executable's own: a library loaded by an
/// interpreter (the Python package's extension module, run by `python`). `image` is the file
/// that holds the worker's code; its build id is the one presented to the runner, which must
/// compute it of the same file ([`crate::build_id_of`]).
pub fn run_as(image: &std::path::Path) -> Result<(), WorkerError> {
    serve_as(crate::launch::build_id_of(image))
}

fn serve_as(build_id: String) -> Result<(), WorkerError> {
    let text =
        std::env::var(OPTIONS_ENV).map_err(|_| WorkerError::Options(OptionsError::Missing))?;
    let options = WorkerOptions::decode(&text)
        .map_err(|e| WorkerError::Options(OptionsError::Unreadable(e)))?;
    serve(options, build_id)
}

/// Attaches, starts the backend and the handlers, serves until the loop stops, then
/// disconnects from the broker and closes the bridge.
fn serve(options: WorkerOptions, build_id: String) -> Result<(), WorkerError> {
    let mut server = attach(&options, build_id)?;
    let responder = server.responder();
    crate::logging::install(responder.clone(), options.log_level);
    let backend = start_backend(&options, event_sink(&responder))?;
    tracing::info!(
        pid = std::process::id(),
        generation = options.generation,
        backend = backend.name(),
        "worker attached"
    );
    let handlers = Handlers::start(&options, &backend, &responder);
    let stop = serve_requests(&mut server, &responder, &*backend, &handlers);
    tracing::info!("worker stopping: {stop}");
    if !matches!(stop, Stop::Shutdown) {
        // Also on stderr, which the runner always drains into its log: the bridge that
        // carries the worker's log may be what failed (a corrupt segment).
        let _ = writeln!(std::io::stderr(), "worker stopping: {stop}");
    }
    backend.disconnect();
    drop(handlers);
    server.control().close();
    Ok(())
}

/// Attaches to the runner with the bridge timings of `options`, presenting `build_id`.
fn attach(options: &WorkerOptions, build_id: String) -> Result<Server, WorkerError> {
    let cfg = channel::ChannelConfig {
        heartbeat_interval: Duration::from_millis(options.heartbeat_ms.max(1)),
        hang_timeout: Duration::from_millis(options.hang_timeout_ms.max(1)),
        // The worker's own: the runner presents the id of the file it started, and a file
        // replaced since then is another build.
        build_id,
        ..channel::ChannelConfig::default()
    };
    Server::attach(&cfg, REPLY_TIMEOUT).map_err(WorkerError::Attach)
}

/// The sink of the backend's events: each sent to the runner (one not delivered is logged).
/// Once one was not delivered, no [`Event::BookTold`] is sent any more: it would claim the
/// runner heard what it never got.
fn event_sink(responder: &Responder) -> EventSink {
    let responder = responder.clone();
    let lost = Arc::new(AtomicBool::new(false));
    Arc::new(move |event: Event| {
        if matches!(event, Event::BookTold { .. }) && lost.load(Ordering::Relaxed) {
            return false;
        }
        match responder.event(event) {
            Ok(()) => true,
            Err(e) => {
                lost.store(true, Ordering::Relaxed);
                tracing::warn!("event not delivered: {e}");
                false
            }
        }
    })
}

/// The backend of `options`, telling `events`.
fn start_backend(
    options: &WorkerOptions,
    events: EventSink,
) -> Result<Arc<dyn Backend>, WorkerError> {
    Ok(match &options.backend {
        BackendOptions::Sim(sim) => {
            Arc::new(SimBackend::new(sim.clone(), options.generation, events))
        }
        BackendOptions::Ibkr(ib) => Arc::new(
            IbkrBackend::new(ib.clone(), &options.paced_history, events)
                .map_err(WorkerError::Backend)?,
        ),
        #[cfg(feature = "nats")]
        BackendOptions::Remote(remote) => Arc::new(
            crate::remote::RemoteBackend::new(remote.clone(), options.generation, events)
                .map_err(WorkerError::Backend)?,
        ),
        #[cfg(not(feature = "nats"))]
        BackendOptions::Remote(remote) => {
            let _ = events;
            return Err(WorkerError::Backend(std::io::Error::other(format!(
                "hub {} over NATS: this build has no NATS support (built without the nats \
                 feature)",
                remote.hub
            ))));
        }
    })
}

/// A request waiting for a handler: its id, what to do, and how to give it up.
type Queued = (u64, Work, Cancel);

/// The handler threads' queues, and the requests queued or under way by id (so that a
/// `Cancel` reaches them). Dropped, the queues close and the handlers end.
struct Handlers {
    pool: Sender<Queued>,
    subscriptions: Sender<Queued>,
    orders: Sender<Queued>,
    in_flight: Arc<Mutex<HashMap<u64, Cancel>>>,
}

impl Handlers {
    /// Starts the pool of `options.handler_threads`, the subscriptions' thread and the
    /// orders' thread, each calling `backend` and answering through `responder`.
    fn start(options: &WorkerOptions, backend: &Arc<dyn Backend>, responder: &Responder) -> Self {
        let (pool, pool_rx) = crossbeam_channel::unbounded::<Queued>();
        let (subscriptions, subscriptions_rx) = crossbeam_channel::unbounded::<Queued>();
        let (orders, orders_rx) = crossbeam_channel::unbounded::<Queued>();
        let in_flight: Arc<Mutex<HashMap<u64, Cancel>>> = Arc::default();
        let threads = (0..options.handler_threads.max(1))
            .map(|i| (format!("worker-handler-{i}"), pool_rx.clone()))
            .chain([
                ("worker-subscriptions".to_string(), subscriptions_rx),
                ("worker-orders".to_string(), orders_rx),
            ]);
        for (name, rx) in threads {
            let backend = backend.clone();
            let responder = responder.clone();
            let handshake = options.handshake_timeout();
            let in_flight = in_flight.clone();
            let spawned = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    for (id, work, cancel) in rx {
                        // Given up while it waited in the queue: not carried out at all.
                        if !cancel.is_cancelled() {
                            handle(&*backend, &responder, id, work, &cancel, handshake);
                        }
                        in_flight.lock().remove(&id);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start handler thread {name}: {e}");
            }
        }
        Handlers {
            pool,
            subscriptions,
            orders,
            in_flight,
        }
    }

    /// Queues request `id` behind `queue`, cancellable meanwhile.
    fn dispatch(&self, queue: &Sender<Queued>, id: u64, work: Work) {
        let cancel = Cancel::default();
        self.in_flight.lock().insert(id, cancel.clone());
        let _ = queue.send((id, work, cancel));
    }

    /// Gives up request `target`, if it is queued or under way (an unknown id is a request
    /// already answered: nothing to do).
    fn cancel(&self, target: u64) {
        if let Some(cancel) = self.in_flight.lock().get(&target) {
            tracing::debug!(id = target, "request cancelled by the runner");
            cancel.cancel();
        }
    }
}

/// Takes the runner's requests until it asks to stop or is gone: each routed to its handler,
/// or answered here.
fn serve_requests(
    server: &mut Server,
    responder: &Responder,
    backend: &dyn Backend,
    handlers: &Handlers,
) -> Stop {
    loop {
        match server.next(Duration::from_secs(1)) {
            Ok(Some(Incoming { id, request })) => match route(request) {
                Route::Pool(work) => handlers.dispatch(&handlers.pool, id, work),
                Route::InOrder(work) => handlers.dispatch(&handlers.subscriptions, id, work),
                Route::Orders(work) => handlers.dispatch(&handlers.orders, id, work),
                Route::Cancel(target) => handlers.cancel(target),
                Route::Ping(payload) => {
                    // Answered here: a ping measures the bridge, not the handler pool.
                    let _ = responder.reply(id, Reply::Pong { payload });
                }
                Route::Shutdown => {
                    backend.disconnect();
                    let _ = responder.reply(id, Reply::ShuttingDown);
                    return Stop::Shutdown;
                }
            },
            Ok(None) => {}
            Err(RecvError::PeerGone(reason)) => return Stop::RunnerGone(reason),
            Err(e) => return Stop::Bridge(e),
        }
    }
}

/// A request for the handler pool: one that calls the backend.
#[derive(Debug)]
enum Work {
    Connect,
    Accounts,
    History(HistoryRequest),
    Subscribe(SubscribeRequest),
    Unsubscribe { symbol: String },
    PlaceOrder(OrderRequest),
    ModifyOrder(OrderChange),
    CancelOrder { order_ref: String },
    CancelAll,
    Orders,
    FoldedOrders,
    Executions,
    Positions,
    Account,
}

/// Where a request is answered.
#[derive(Debug)]
enum Route {
    /// By the handler pool.
    Pool(Work),
    /// By the subscriptions' handler, after every change of a subscription that came before.
    InOrder(Work),
    /// By the orders' handler, after every order request that came before (a cancel never
    /// overtakes the placement it cancels).
    Orders(Work),
    /// By the main loop: echoed at once.
    Ping(Vec<u8>),
    /// By the main loop: disconnect, confirm, stop.
    Shutdown,
    /// By the main loop: the runner gave up on the request with this id; never answered.
    Cancel(u64),
}

fn route(request: Request) -> Route {
    match request {
        Request::Ping { payload } => Route::Ping(payload),
        Request::Shutdown => Route::Shutdown,
        Request::Cancel { id } => Route::Cancel(id),
        Request::Connect => Route::Pool(Work::Connect),
        Request::Accounts => Route::Pool(Work::Accounts),
        Request::History(req) => Route::Pool(Work::History(req)),
        Request::Subscribe(req) => Route::InOrder(Work::Subscribe(req)),
        Request::Unsubscribe { symbol } => Route::InOrder(Work::Unsubscribe { symbol }),
        Request::PlaceOrder(order) => Route::Orders(Work::PlaceOrder(order)),
        Request::ModifyOrder(change) => Route::Orders(Work::ModifyOrder(change)),
        Request::CancelOrder { order_ref } => Route::Orders(Work::CancelOrder { order_ref }),
        Request::CancelAll => Route::Orders(Work::CancelAll),
        Request::Orders => Route::Orders(Work::Orders),
        Request::FoldedOrders => Route::Orders(Work::FoldedOrders),
        Request::Executions => Route::Orders(Work::Executions),
        Request::Positions => Route::Orders(Work::Positions),
        Request::Account => Route::Orders(Work::Account),
    }
}

/// Carries out `work` on the backend and answers request `id`.
fn handle(
    backend: &dyn Backend,
    responder: &Responder,
    id: u64,
    work: Work,
    cancel: &Cancel,
    handshake: Duration,
) {
    let reply = match work {
        Work::Connect => match backend.connect(handshake) {
            Ok((accounts, next_order_id)) => Reply::Connected {
                accounts,
                next_order_id,
            },
            Err(e) => Reply::Error(e),
        },
        Work::Accounts => match backend.accounts() {
            Ok(a) => Reply::Accounts(a),
            Err(e) => Reply::Error(e),
        },
        Work::History(req) => {
            let mut emit = |bars| responder.reply(id, Reply::Bars(bars)).is_ok();
            match backend.history(&req, cancel, &mut emit) {
                Ok(count) => Reply::HistoryEnd { count },
                Err(e) => {
                    tracing::debug!(symbol = %req.symbol, "history failed: {e}");
                    Reply::Error(e)
                }
            }
        }
        Work::Subscribe(req) => match backend.subscribe(&req) {
            Ok(()) => Reply::Subscribed,
            Err(e) => Reply::Error(e),
        },
        Work::Unsubscribe { symbol } => match backend.unsubscribe(&symbol) {
            Ok(()) => Reply::Unsubscribed,
            Err(e) => Reply::Error(e),
        },
        Work::PlaceOrder(order) => backend
            .place_order(&order)
            .map_or_else(Reply::Error, |r| Reply::Order(Box::new(r))),
        Work::ModifyOrder(change) => backend
            .modify_order(&change)
            .map_or_else(Reply::Error, |r| Reply::Order(Box::new(r))),
        Work::CancelOrder { order_ref } => backend
            .cancel_order(&order_ref)
            .map_or_else(Reply::Error, |r| Reply::Order(Box::new(r))),
        Work::CancelAll => backend
            .cancel_all()
            .map_or_else(Reply::Error, |count| Reply::CancelledAll { count }),
        Work::Orders => backend.orders().map_or_else(Reply::Error, Reply::Orders),
        Work::FoldedOrders => backend
            .folded_orders()
            .map_or_else(Reply::Error, Reply::Folded),
        Work::Executions => backend.executions().map_or_else(Reply::Error, Reply::Fills),
        Work::Positions => backend
            .positions()
            .map_or_else(Reply::Error, Reply::Positions),
        Work::Account => backend
            .account()
            .map_or_else(Reply::Error, |a| Reply::Account(Box::new(a))),
    };
    if cancel.is_cancelled() {
        // The runner forgot the request: an answer would only be counted as stray.
        return;
    }
    if let Err(e) = responder.reply_whole(id, reply) {
        tracing::warn!(id, "reply not delivered: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_and_shutdown_stay_on_the_loop_subscriptions_go_in_order_the_rest_to_the_pool() {
        assert!(matches!(
            route(Request::Ping { payload: vec![1] }),
            Route::Ping(p) if p == [1]
        ));
        assert!(matches!(route(Request::Shutdown), Route::Shutdown));
        assert!(matches!(route(Request::Cancel { id: 7 }), Route::Cancel(7)));
        assert!(matches!(
            route(Request::Connect),
            Route::Pool(Work::Connect)
        ));
        assert!(matches!(
            route(Request::Accounts),
            Route::Pool(Work::Accounts)
        ));
        let sub = SubscribeRequest {
            symbol: "SPY".into(),
            id: 0,
            bar_seconds: 60,
        };
        assert!(matches!(
            route(Request::Subscribe(sub.clone())),
            Route::InOrder(Work::Subscribe(s)) if s == sub
        ));
        assert!(matches!(
            route(Request::Unsubscribe {
                symbol: "SPY".into()
            }),
            Route::InOrder(Work::Unsubscribe { symbol }) if symbol == "SPY"
        ));
        let history = HistoryRequest {
            symbol: "SPY".into(),
            bar_seconds: 60,
            duration_seconds: 600,
            end: None,
        };
        assert!(matches!(
            route(Request::History(history.clone())),
            Route::Pool(Work::History(h)) if h == history
        ));
    }
}
