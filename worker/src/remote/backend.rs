//! [`RemoteBackend`]: the worker's broker is a hub on another machine, reached over NATS.
//! Requests go to the hub's door (`ibbridge-rpc.<hub>.<client>`) and its answers come back on
//! the request's inbox, a history's batches one message each; live bars come from the hub's
//! stream through a durable consumer per symbol ([`super::feed`]), this client's own events
//! (its orders' news, the broker connection) through one more.
//!
//! Invariants: every call answers within its timeout (an error is an answer); an order's
//! request carries its reference as `Nats-Msg-Id`, and is sent again only with the same
//! reference, so that a retried order is never a second one; nothing here logs the token.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bridge::protocol::{
    AccountSummary, Bar, ConnectionStatus, ErrorKind, Event, Fill, HistoryRequest, OrderChange,
    OrderReport, OrderRequest, Position, RefRun, RemoteError, Reply, Request, SubscribeRequest,
};
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::door::{keep_attached, Door, Subscriptions};
use super::feed::{self, Feed};
use super::wire::stream_name;
use crate::backend::{check_symbol, error, Backend, Cancel, EventSink};
use crate::options::RemoteOptions;

/// How long the hub is asked again while no hub answers, during a connect.
const RETRY: Duration = Duration::from_millis(250);

/// The connection once made.
struct Link {
    client: async_nats::Client,
    stream: jetstream::stream::Stream,
    accounts: Vec<String>,
    next_order_id: i64,
    tasks: Vec<JoinHandle<()>>,
}

/// A hub reached over NATS, as a broker.
pub struct RemoteBackend {
    opts: RemoteOptions,
    /// This worker's generation in its run: the first (0) starts its consumers afresh, a
    /// replacement goes on where its predecessor left them.
    generation: u32,
    /// The subscriptions held at the hub (made again if the hub lets this client go).
    subs: Subscriptions,
    /// Symbols whose consumer this worker has made afresh already.
    fresh: Mutex<HashSet<String>>,
    /// Disconnecting: no feed starts any more.
    closing: AtomicBool,
    runtime: tokio::runtime::Runtime,
    events: EventSink,
    link: Mutex<Option<Arc<Link>>>,
    connecting: Mutex<()>,
    feeds: Mutex<HashMap<String, Feed>>,
    /// Messages that were not ours (undecodable, or bars of another size), ignored.
    not_ours: Arc<AtomicU64>,
}

impl RemoteBackend {
    /// A backend for `opts`, telling `events`; it connects at [`Backend::connect`].
    pub fn new(
        opts: RemoteOptions,
        generation: u32,
        events: EventSink,
    ) -> std::io::Result<RemoteBackend> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("remote")
            .enable_all()
            .build()?;
        Ok(RemoteBackend {
            opts,
            generation,
            subs: Subscriptions::default(),
            fresh: Mutex::new(HashSet::new()),
            closing: AtomicBool::new(false),
            runtime,
            events,
            link: Mutex::new(None),
            connecting: Mutex::new(()),
            feeds: Mutex::new(HashMap::new()),
            not_ours: Arc::new(AtomicU64::new(0)),
        })
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.opts.request_timeout_ms.max(100))
    }

    fn linked(&self) -> Result<Arc<Link>, RemoteError> {
        self.link.lock().clone().ok_or_else(|| {
            error(
                ErrorKind::NotConnected,
                format!("not connected to hub {}", self.opts.hub),
            )
        })
    }

    /// Connects to the server (again until `deadline`), telling the runner when the
    /// connection is lost and restored.
    async fn dial(&self, deadline: Instant) -> Result<async_nats::Client, RemoteError> {
        let sink = self.events.clone();
        let lost = Arc::new(AtomicBool::new(false));
        loop {
            let (sink, lost) = (sink.clone(), lost.clone());
            let mut options = async_nats::ConnectOptions::new()
                .name(format!("ibbridge remote {}", self.opts.client))
                .connection_timeout(Duration::from_secs(2))
                .event_callback(move |event| {
                    let (sink, lost) = (sink.clone(), lost.clone());
                    async move { tell_connection(&sink, &lost, event) }
                });
            if let Some(path) = &self.opts.creds_file {
                options = options.credentials_file(path).await.map_err(|e| {
                    error(
                        ErrorKind::BadRequest,
                        format!("credentials file {path}: {e}"),
                    )
                })?;
            }
            if let Some(token) = &self.opts.token {
                options = options.token(token.clone());
            }
            match options.connect(self.opts.url.as_str()).await {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() + RETRY < deadline => {
                    tracing::debug!("NATS at {}: {e}; trying again", self.opts.url);
                    tokio::time::sleep(RETRY).await;
                }
                Err(e) => {
                    return Err(error(
                        ErrorKind::Timeout,
                        format!("cannot connect to NATS at {}: {e}", self.opts.url),
                    ))
                }
            }
        }
    }

    async fn connect_async(&self, timeout: Duration) -> Result<Link, RemoteError> {
        let deadline = Instant::now() + timeout;
        let left = || {
            deadline
                .saturating_duration_since(Instant::now())
                .max(RETRY)
        };
        let client = self.dial(deadline).await?;
        // The stream and this client's events consumer before the hub attaches it: no event
        // of its falls between.
        let name = stream_name(&self.opts.hub);
        let js = jetstream::new(client.clone());
        let stream = loop {
            let found = tokio::time::timeout(left(), js.get_stream(&name)).await;
            match found {
                Ok(Ok(s)) => break s,
                Ok(Err(_)) if Instant::now() + RETRY < deadline => {
                    tokio::time::sleep(RETRY).await;
                }
                Ok(Err(e)) => {
                    return Err(error(
                        ErrorKind::NotConnected,
                        format!("stream {name}: {e}"),
                    ))
                }
                Err(_) => {
                    return Err(error(
                        ErrorKind::Timeout,
                        format!("stream {name}: no answer"),
                    ))
                }
            }
        };
        let events = tokio::time::timeout(
            left(),
            feed::own_events(
                stream.clone(),
                &self.opts,
                self.events.clone(),
                self.not_ours.clone(),
            ),
        )
        .await
        .map_err(|_| {
            error(
                ErrorKind::Timeout,
                "this client's events consumer: no answer",
            )
        })??;
        let (accounts, next_order_id) = loop {
            let asked = self
                .door(&client)
                .ask(Request::Connect, None, left(), &mut |_| true)
                .await;
            match asked {
                Ok(Reply::Connected {
                    accounts,
                    next_order_id,
                }) => break (accounts, next_order_id),
                Ok(other) => {
                    events.abort();
                    return Err(unexpected(&other));
                }
                Err(e) if e.kind == ErrorKind::NotConnected && Instant::now() < deadline => {
                    tokio::time::sleep(RETRY).await;
                }
                Err(e) => {
                    events.abort();
                    return Err(e);
                }
            }
        };
        let keepalive = tokio::spawn(keep_attached(
            self.door(&client),
            self.subs.clone(),
            self.events.clone(),
        ));
        Ok(Link {
            client,
            stream,
            accounts,
            next_order_id,
            tasks: vec![events, keepalive],
        })
    }

    /// The hub's door on `client`.
    fn door(&self, client: &async_nats::Client) -> Door {
        Door {
            client: client.clone(),
            hub: self.opts.hub.clone(),
            client_name: self.opts.client.clone(),
            instance: self.opts.instance.clone(),
            generation: self.generation,
            url: self.opts.url.clone(),
            not_ours: self.not_ours.clone(),
        }
    }

    /// A request to the hub on the connection, from a handler's thread.
    fn call(
        &self,
        request: Request,
        msg_id: Option<&str>,
        each: &mut dyn FnMut(Reply) -> bool,
    ) -> Result<Reply, RemoteError> {
        let link = self.linked()?;
        let wait = self.request_timeout();
        self.runtime
            .block_on(self.door(&link.client).ask(request, msg_id, wait, each))
    }

    fn simple(&self, request: Request) -> Result<Reply, RemoteError> {
        self.call(request, None, &mut |_| true)
    }

    /// A request whose answer is a list, perhaps in pages first.
    fn list<T>(
        &self,
        request: Request,
        page: fn(Reply) -> Result<Vec<T>, Reply>,
    ) -> Result<Vec<T>, RemoteError> {
        let mut all = Vec::new();
        let mut odd = None;
        let last = self.call(request, None, &mut |r| match page(r) {
            Ok(items) => {
                all.extend(items);
                true
            }
            Err(other) => {
                odd = Some(other);
                false
            }
        });
        if let Some(other) = odd {
            return Err(unexpected(&other));
        }
        match page(last?) {
            Ok(items) => {
                all.extend(items);
                Ok(all)
            }
            Err(other) => Err(unexpected(&other)),
        }
    }

    /// An order's request, sent again (with the same reference) once if the first try was
    /// not answered: never a second order.
    fn order_call(&self, request: Request, order_ref: &str) -> Result<OrderReport, RemoteError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.call(request.clone(), Some(order_ref), &mut |_| true) {
                Ok(Reply::Order(report)) => return Ok(*report),
                Ok(other) => return Err(unexpected(&other)),
                Err(e)
                    if tries < 2
                        && matches!(e.kind, ErrorKind::Timeout | ErrorKind::NotConnected) =>
                {
                    tracing::warn!(order_ref, "order request sent again: {}", e.message);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The runner told of the NATS connection: lost, and restored (nothing lost: the bars wait
/// in the hub's stream).
fn tell_connection(sink: &EventSink, lost: &AtomicBool, event: async_nats::Event) {
    match event {
        async_nats::Event::Disconnected if !lost.swap(true, Ordering::AcqRel) => {
            sink(Event::Connection(ConnectionStatus::Lost {
                reason: "the NATS connection to the hub was lost".into(),
            }));
        }
        async_nats::Event::Connected if lost.swap(false, Ordering::AcqRel) => {
            sink(Event::Connection(ConnectionStatus::Restored {
                data_lost: false,
            }));
        }
        _ => {}
    }
}

fn unexpected(reply: &Reply) -> RemoteError {
    error(
        ErrorKind::Internal,
        format!("the hub answered with {}", reply_name(reply)),
    )
}

fn reply_name(reply: &Reply) -> String {
    let text = format!("{reply:?}");
    text.split(['(', ' ', '{'])
        .next()
        .unwrap_or("?")
        .to_string()
}

impl Backend for RemoteBackend {
    fn name(&self) -> &'static str {
        "remote"
    }

    fn connect(&self, timeout: Duration) -> Result<(Vec<String>, i64), RemoteError> {
        let _one = self.connecting.lock();
        if let Some(l) = &*self.link.lock() {
            return Ok((l.accounts.clone(), l.next_order_id));
        }
        let link = self.runtime.block_on(self.connect_async(timeout))?;
        let answer = (link.accounts.clone(), link.next_order_id);
        tracing::info!(hub = %self.opts.hub, client = %self.opts.client, url = %self.opts.url, "connected to the hub over NATS");
        *self.link.lock() = Some(Arc::new(link));
        Ok(answer)
    }

    fn accounts(&self) -> Result<Vec<String>, RemoteError> {
        match self.simple(Request::Accounts)? {
            Reply::Accounts(a) => Ok(a),
            other => Err(unexpected(&other)),
        }
    }

    fn history(
        &self,
        request: &HistoryRequest,
        cancel: &Cancel,
        emit: &mut dyn FnMut(Vec<Bar>) -> bool,
    ) -> Result<u64, RemoteError> {
        check_symbol(&request.symbol)?;
        let link = self.linked()?;
        let wait = self
            .request_timeout()
            .max(Duration::from_millis(self.opts.history_timeout_ms));
        let door = self.door(&link.client);
        let mut sent = 0u64;
        let mut each = |r: Reply| match r {
            Reply::Bars(b) => {
                sent += b.len() as u64;
                emit(b)
            }
            _ => false,
        };
        let inbox = link.client.new_inbox();
        let asked = door.ask_on(
            inbox.clone(),
            Request::History(request.clone()),
            None,
            wait,
            &mut each,
        );
        match self.runtime.block_on(cancel.or_cancelled(asked)) {
            None => {
                self.runtime.block_on(door.give_up(&inbox));
                Err(error(ErrorKind::Cancelled, "history request cancelled"))
            }
            Some(Ok(Reply::HistoryEnd { count })) if count == sent => Ok(sent),
            Some(Ok(Reply::HistoryEnd { count })) => Err(error(
                ErrorKind::Disconnected,
                format!("the hub sent {count} bars, {sent} came: some lost in transit"),
            )),
            Some(Ok(other)) => Err(unexpected(&other)),
            Some(Err(e)) => Err(e),
        }
    }

    fn subscribe(&self, request: &SubscribeRequest) -> Result<(), RemoteError> {
        check_symbol(&request.symbol)?;
        let link = self.linked()?;
        if let Some(old) = self.feeds.lock().remove(&request.symbol) {
            old.stop();
        }
        // The consumer first: a bar published once the hub subscribes is one it holds. The
        // run's first worker starts it afresh (the run's history is to now: an earlier run's
        // backlog is older); a replacement goes on from the first bar not handed over.
        let fresh = self.generation == 0 && self.fresh.lock().insert(request.symbol.clone());
        let consumer = self.runtime.block_on(feed::consumer(
            &link.stream,
            &self.opts,
            &request.symbol,
            fresh,
            self.request_timeout(),
        ))?;
        match self.simple(Request::Subscribe(request.clone()))? {
            Reply::Subscribed => {}
            other => return Err(unexpected(&other)),
        }
        self.subs
            .lock()
            .insert(request.symbol.clone(), request.clone());
        let feed = Feed::start(
            &self.runtime,
            (link.stream.clone(), consumer),
            request,
            self.events.clone(),
            self.not_ours.clone(),
        );
        let mut feeds = self.feeds.lock();
        if self.closing.load(Ordering::Acquire) {
            feed.stop();
        } else {
            feeds.insert(request.symbol.clone(), feed);
        }
        Ok(())
    }

    fn unsubscribe(&self, symbol: &str) -> Result<(), RemoteError> {
        self.subs.lock().remove(symbol);
        if let Some(feed) = self.feeds.lock().remove(symbol) {
            feed.stop();
        }
        match self.simple(Request::Unsubscribe {
            symbol: symbol.to_string(),
        })? {
            Reply::Unsubscribed => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    fn place_order(&self, order: &OrderRequest) -> Result<OrderReport, RemoteError> {
        self.order_call(Request::PlaceOrder(order.clone()), &order.order_ref)
    }

    fn modify_order(&self, change: &OrderChange) -> Result<OrderReport, RemoteError> {
        self.order_call(Request::ModifyOrder(change.clone()), &change.order_ref)
    }

    fn cancel_order(&self, order_ref: &str) -> Result<OrderReport, RemoteError> {
        let request = Request::CancelOrder {
            order_ref: order_ref.to_string(),
        };
        self.order_call(request, order_ref)
    }

    fn cancel_all(&self) -> Result<u32, RemoteError> {
        match self.simple(Request::CancelAll)? {
            Reply::CancelledAll { count } => Ok(count),
            other => Err(unexpected(&other)),
        }
    }

    fn orders(&self) -> Result<Vec<OrderReport>, RemoteError> {
        self.list(Request::Orders, |r| match r {
            Reply::Orders(v) | Reply::OrdersPage(v) => Ok(v),
            other => Err(other),
        })
    }

    fn folded_orders(&self) -> Result<Vec<RefRun>, RemoteError> {
        self.list(Request::FoldedOrders, |r| match r {
            Reply::Folded(v) | Reply::FoldedPage(v) => Ok(v),
            other => Err(other),
        })
    }

    fn executions(&self) -> Result<Vec<Fill>, RemoteError> {
        self.list(Request::Executions, |r| match r {
            Reply::Fills(v) | Reply::FillsPage(v) => Ok(v),
            other => Err(other),
        })
    }

    fn positions(&self) -> Result<Vec<Position>, RemoteError> {
        self.list(Request::Positions, |r| match r {
            Reply::Positions(v) | Reply::PositionsPage(v) => Ok(v),
            other => Err(other),
        })
    }

    fn account(&self) -> Result<AccountSummary, RemoteError> {
        match self.simple(Request::Account)? {
            Reply::Account(a) => Ok(*a),
            other => Err(unexpected(&other)),
        }
    }

    fn disconnect(&self) {
        self.closing.store(true, Ordering::Release);
        for (_, feed) in self.feeds.lock().drain() {
            feed.stop();
        }
        let Some(link) = self.link.lock().take() else {
            return;
        };
        // The hub lets this client go at once (else after its silence).
        let bye = self.runtime.block_on(self.door(&link.client).ask(
            Request::Shutdown,
            None,
            Duration::from_secs(1),
            &mut |_| true,
        ));
        if let Err(e) = bye {
            tracing::debug!("the hub not told of the leaving: {}", e.message);
        }
        for task in &link.tasks {
            task.abort();
        }
        let not_ours = self.not_ours.load(Ordering::Relaxed);
        if not_ours > 0 {
            tracing::warn!(not_ours, "messages that were not ours were ignored");
        }
        let client = link.client.clone();
        let _ = self
            .runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(1), client.flush()).await });
    }
}
