//! The Interactive Brokers backend, on `ibapi`'s async client.
//!
//! - Ready only when the next valid id and the managed accounts are both known (`ibapi`
//!   returns from `connect` after 100 other frames even without them), within a handshake
//!   timeout (`ibapi` has none of its own); "client id in use" is reported as such, or the
//!   next ids are tried when `client_id_attempts` allows; a gateway not up yet is waited for
//!   up to `connect_wait_ms`.
//! - Historical bars: the contract is the symbol as a SMART-routed USD stock unless configured
//!   otherwise (exchange, currency, primary exchange per symbol); at most
//!   [`MAX_CONCURRENT_HISTORY`] requests in flight, IB's pacing rules kept
//!   ([`crate::pacing`]); a pacing violation (error 162) is retried
//!   with backoff; each request has a deadline. No data, pacing, no permission, no security
//!   definition, farm down and disconnection are told apart. A bar without a positive price is
//!   dropped, never passed on as a zero.
//! - Real-time bars: IB's 5-second bars built into bars of the requested size (a multiple of
//!   5 s); a bar joined midway or spanning a gap is not sent. A refusal the gateway sends after
//!   accepting the request is an `Event::Refused`.
//! - The connection's life (`lifecycle`): `ibapi` reconnects for ever, or as many times as
//!   configured; losses, attempts, restorations and giving up (IB 1100/1101/1102, the
//!   socket) are events, and the live subscriptions are made again,
//!   once, whenever the gateway dropped them (`live`). A read in flight when the gateway
//!   connection drops is re-sent once `ibapi` has reconnected.
//! - A watchdog per live stream (`watchdog`): a stream that delivers nothing for
//!   `silent_bars` of IB's 5-second intervals while something is expected of it (the
//!   gateway connected, its link to IB up, no market data farm broken, the symbol in session
//!   by its contract's hours: `quiet`, `hours`) is cancelled and made again, once per
//!   silence; still silent after that, it is reported stalled (`Event::Feed`), and flowing
//!   when data comes again. A market data farm that broke and came back (2103, then 2104)
//!   has every stream made again at once.
//! - Broker notices (farm status 2104, 2106, 2158, ...) are forwarded as events.
//! - Orders (`orders`): placed exactly once by their reference (IB's `orderRef`), the book
//!   reconciled with the gateway before anything is placed by a new worker or after a lost
//!   connection, every change and fill told as events; a live account refused unless
//!   `allow_live`.
//!
//! Invariants: one connection at a time (connects are serialised; a connection that is down
//! is let go of before a new one is made); a request needs a live connection, except an order
//! request, which waits for `ibapi` to reconnect, and a subscription, kept until the gateway
//! is back; nothing is sent for a malformed symbol.
//!
//! Here: the [`Backend`] calls. The gateway connection is in `connection` (its life in
//! `lifecycle`), historical requests in `history`, the real-time stream in `realtime` with
//! its bar aggregation in `bar_builder` (and `tick_bars` for the delayed feed), its
//! watchdog in `watchdog`, what is expected of it in `quiet` (the hours in `hours`), the live
//! streams in `live`, contracts in `contracts`, what bars are made of in `choice`, orders in
//! `orders` (what is known of them in `known_orders`), account and positions in `account`,
//! queries that end by themselves in `query`, the IB<->protocol converters in `convert`, IB's
//! errors in `errors`.

mod account;
mod bar_builder;
mod choice;
mod connection;
mod contracts;
mod convert;
mod errors;
mod history;
mod hours;
mod known_orders;
mod lifecycle;
mod live;
mod orders;
mod query;
mod quiet;
mod realtime;
mod tick_bars;
mod watchdog;

pub use errors::{classify, notice_kind};
pub use history::{bar_size, duration};
pub(crate) use lifecycle::{announces_attempts, ibapi_logged};

use std::sync::Arc;
use std::time::Duration;

use bridge::protocol::{
    AccountSummary, Bar, ConnectionStatus, ErrorKind, Event, Fill, HistoryRequest, OrderChange,
    OrderReport, OrderRequest, Position, RemoteError, SubscribeRequest,
};
use parking_lot::Mutex;

use crate::backend::{check_symbol, emit_in_batches, error, Backend, Cancel, EventSink};
use crate::options::IbkrOptions;
use crate::pacing::{Admission, Pacer};
use choice::DataChoice;
use connection::{reconnected, Connected, Notices, RECONNECT_WAIT};
use live::{LiveStreams, Wanted};

/// Historical requests in flight at once (IB allows about 50).
pub const MAX_CONCURRENT_HISTORY: usize = 16;

/// A pacer that counts the historical requests earlier workers sent (Unix milliseconds).
fn resumed_pacer(earlier: &[(String, u32, u64)]) -> Pacer {
    let now_ms = base::unix_time::now().as_millis() as u64;
    let ages: Vec<(String, u32, Duration)> = earlier
        .iter()
        .map(|(symbol, size, at)| {
            (
                symbol.clone(),
                *size,
                Duration::from_millis(now_ms.saturating_sub(*at)),
            )
        })
        .collect();
    Pacer::resuming(&ages, std::time::Instant::now())
}

/// A connection to TWS or IB Gateway.
pub struct IbkrBackend {
    rt: tokio::runtime::Runtime,
    opts: IbkrOptions,
    connection: Mutex<Option<Connected>>,
    connect_lock: Mutex<()>,
    history_slots: Arc<tokio::sync::Semaphore>,
    pacer: Pacer,
    events: EventSink,
    /// Real-time bar streams by symbol.
    live: Arc<LiveStreams>,
    /// Contracts looked up at the gateway, by symbol.
    resolved: contracts::Resolved,
    /// Orders with a reference.
    orders: Arc<orders::IbOrders>,
}

impl IbkrBackend {
    /// A backend for the gateway in `opts`, counting the historical requests `paced` that
    /// earlier workers sent (symbol, bar size, Unix ms); nothing connects until
    /// [`Backend::connect`]. Fails only if its async runtime cannot be built.
    pub fn new(
        opts: IbkrOptions,
        paced: &[(String, u32, u64)],
        events: EventSink,
    ) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ibkr")
            .enable_all()
            .build()?;
        let live = Arc::new(LiveStreams::new(
            rt.handle().clone(),
            events.clone(),
            opts.delayed_fallback,
            opts.silent_bars,
        ));
        let pacer = resumed_pacer(paced);
        if !paced.is_empty() {
            tracing::info!(
                count = paced.len(),
                "pacing resumed: the historical requests of earlier workers still count"
            );
        }
        Ok(IbkrBackend {
            rt,
            opts,
            connection: Mutex::new(None),
            connect_lock: Mutex::new(()),
            history_slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HISTORY)),
            pacer,
            live,
            resolved: contracts::Resolved::default(),
            orders: orders::IbOrders::new(events.clone()),
            events,
        })
    }

    /// Starts the tasks that follow a new connection's life: the gateway's notices, the
    /// socket, the order updates, and the reconnections (after which orders are reconciled).
    fn watch(
        &self,
        client: &Arc<ibapi::Client>,
        notices: Notices,
    ) -> Vec<tokio::task::AbortHandle> {
        vec![
            self.rt
                .spawn(lifecycle::forward_notices(
                    notices,
                    client.clone(),
                    self.live.clone(),
                    self.events.clone(),
                ))
                .abort_handle(),
            self.rt
                .spawn(lifecycle::watch_socket(
                    client.clone(),
                    self.live.clone(),
                    self.events.clone(),
                    self.opts.reconnect_attempts,
                ))
                .abort_handle(),
            self.rt
                .spawn(self.orders.clone().follow(client.clone()))
                .abort_handle(),
            self.rt
                .spawn(self.orders.clone().watch_reconnects(client.clone()))
                .abort_handle(),
        ]
    }

    /// One IB request of a history (the whole history, or one page of it): paced, shared
    /// with an identical request made within IB's window, cancellable.
    fn fetch_page(
        &self,
        client: &Arc<ibapi::Client>,
        req: &HistoryRequest,
        size: ibapi::market_data::historical::BarSize,
        cancel: &Cancel,
    ) -> Result<Arc<Vec<Bar>>, RemoteError> {
        let end = match req.end {
            Some(t) => Some(time::OffsetDateTime::from_unix_timestamp(t).map_err(|_| {
                error(
                    ErrorKind::BadRequest,
                    format!("history end {t} is out of range"),
                )
            })?),
            None => None,
        };
        let choice = DataChoice::of(&self.opts, &req.symbol);
        let (resolved, opts) = (&self.resolved, &self.opts);
        let slots = self.history_slots.clone();
        let span = duration(req.duration_seconds);
        let admission = self.pacer.admit(req, std::time::Instant::now());
        let client = client.clone();
        let pacer = &self.pacer;
        let (wait, answer, joined) = match admission {
            // An identical request is under way or was answered: share its bars.
            Admission::Join { answer, first } => (Duration::ZERO, answer, Some(first)),
            Admission::Send { wait, answer } => (wait, answer, None),
        };
        let answered = self.rt.block_on(cancel.or_cancelled(async {
            answer
                .get_or_init(|| async {
                    // Run here only if no request filled the answer: for a joiner, because
                    // the request it joined was abandoned. It goes out in its place, paced.
                    let wait = match joined {
                        Some(first) => {
                            pacer.book_after(req, first, std::time::Instant::now())
                        }
                        None => wait,
                    };
                    if !wait.is_zero() {
                        tracing::debug!(symbol = %req.symbol, ms = wait.as_millis() as u64, "paced");
                        tokio::time::sleep(wait).await;
                    }
                    let contract = resolved.contract(&client, opts, &req.symbol).await?;
                    let fetch = history::Fetch {
                        contract: &contract,
                        size,
                        span,
                        end,
                        choice,
                    };
                    history::fetch(&client, &fetch, &slots, &req.symbol)
                        .await
                        .and_then(|bars| {
                            // The bar still forming is the one not over when the answer came.
                            let answered = base::unix_time::now().as_secs() as i64;
                            let until = match req.end {
                                // A day is over or not whatever page it came in.
                                Some(_) if req.bar_seconds >= 86_400 => answered,
                                Some(end) => end.min(answered),
                                None => answered,
                            };
                            history::convert(&req.symbol, &bars, req.bar_seconds, until)
                        })
                })
                .await
                .clone()
        }));
        // Given up: this wait was dropped. If it was the one running the fetch, the fetch is
        // dropped too, which cancels it at the gateway and frees its slot; an identical
        // request sharing the answer then sends it in its place, paced.
        let Some(bars) = answered else {
            tracing::info!(symbol = %req.symbol, "history cancelled by the runner");
            return Err(error(ErrorKind::Cancelled, "cancelled by the runner"));
        };
        bars
    }

    /// The client for an order request: a connection that is down is waited for while
    /// `ibapi` reconnects.
    fn client_for_orders(&self) -> Result<Arc<ibapi::Client>, RemoteError> {
        match self.client() {
            Err(e) if e.kind == ErrorKind::Disconnected => {
                let client = self
                    .connection
                    .lock()
                    .as_ref()
                    .map(|c| c.client.clone())
                    .ok_or(e)?;
                self.rt
                    .block_on(reconnected(&client, RECONNECT_WAIT))
                    .map_err(|m| error(ErrorKind::Disconnected, m))?;
                Ok(client)
            }
            other => other,
        }
    }

    fn client(&self) -> Result<Arc<ibapi::Client>, RemoteError> {
        match &*self.connection.lock() {
            Some(c) if c.client.is_connected() => Ok(c.client.clone()),
            Some(_) => Err(error(
                ErrorKind::Disconnected,
                "the gateway connection is lost",
            )),
            None => Err(error(
                ErrorKind::NotConnected,
                "not connected to the gateway",
            )),
        }
    }
}

impl Backend for IbkrBackend {
    fn name(&self) -> &'static str {
        "ibkr"
    }

    fn connect(&self, timeout: Duration) -> Result<(Vec<String>, i64), RemoteError> {
        let _one = self.connect_lock.lock();
        if let Some(c) = &*self.connection.lock() {
            if c.client.is_connected() {
                return Ok((c.accounts.clone(), c.next_order_id));
            }
        }
        // A connection that is down is let go of before a new one is made.
        let old = self.connection.lock().take();
        if let Some(old) = old {
            connection::let_go(&self.rt, old);
        }
        let (client, notices) = connection::open(&self.rt, &self.opts, timeout)?;
        let accounts = connection::managed_accounts(&self.rt, &client, &self.opts.gateway)?;
        let next_order_id = i64::from(client.next_order_id());
        connection::set_market_data_type(&self.rt, &client, &self.opts)?;
        self.live.quiet().connection_new();
        let watchers = self.watch(&client, notices);
        // A new connection: what the gateway holds is looked at before the next order.
        self.orders.mark_stale();
        tracing::info!(?accounts, next_order_id, "gateway ready");
        (self.events)(Event::Connection(ConnectionStatus::Connected));
        *self.connection.lock() = Some(Connected {
            client,
            accounts: accounts.clone(),
            next_order_id,
            watchers,
        });
        Ok((accounts, next_order_id))
    }

    fn accounts(&self) -> Result<Vec<String>, RemoteError> {
        self.client()?;
        Ok(self
            .connection
            .lock()
            .as_ref()
            .map(|c| c.accounts.clone())
            .unwrap_or_default())
    }

    fn history(
        &self,
        req: &HistoryRequest,
        cancel: &Cancel,
        emit: &mut dyn FnMut(Vec<Bar>) -> bool,
    ) -> Result<u64, RemoteError> {
        let client = self.client()?;
        check_symbol(&req.symbol)?;
        let size = bar_size(req.bar_seconds).ok_or_else(|| {
            error(
                ErrorKind::BadRequest,
                format!("IB has no {} s bar size", req.bar_seconds),
            )
        })?;
        // IB answers a few thousand bars per request: a longer history is fetched in pages,
        // newest first, each paced like any request.
        let pages = history::pages(req, base::unix_time::now().as_secs() as i64);
        if pages.len() > 1 {
            tracing::info!(symbol = %req.symbol, pages = pages.len(), "history fetched in pages");
        }
        let mut fetched = Vec::with_capacity(pages.len());
        for page in &pages {
            fetched.push(self.fetch_page(&client, page, size, cancel)?);
        }
        let bars = history::merge(fetched);
        emit_in_batches(bars.iter().copied(), emit, || {})
    }

    fn subscribe(&self, req: &SubscribeRequest) -> Result<(), RemoteError> {
        check_symbol(&req.symbol)?;
        if req.bar_seconds == 0 || !req.bar_seconds.is_multiple_of(5) {
            return Err(error(
                ErrorKind::BadRequest,
                format!(
                    "IB streams 5-second bars: a live bar of {} s cannot be built from them",
                    req.bar_seconds
                ),
            ));
        }
        let choice = DataChoice::of(&self.opts, &req.symbol);
        let client = match self.client() {
            Ok(c) => c,
            // The socket is down and `ibapi` reconnecting: the subscription is kept, and made
            // when the gateway is back (with every other one).
            Err(e) if e.kind == ErrorKind::Disconnected => {
                let wanted = Wanted {
                    sub: req.id,
                    contract: contracts::configured(&self.opts, &req.symbol),
                    choice,
                    size: i64::from(req.bar_seconds),
                };
                self.live.keep(&req.symbol, wanted);
                // The gateway may have come back, and every subscription been made again,
                // just before this one was kept: then it is made now.
                match self.client() {
                    Ok(c) => c,
                    Err(_) => {
                        tracing::info!(symbol = %req.symbol, "subscription kept until the gateway is back");
                        return Ok(());
                    }
                }
            }
            Err(e) => return Err(e),
        };
        let contract =
            self.rt
                .block_on(self.resolved.contract(&client, &self.opts, &req.symbol))?;
        // Subscribed before answering, so that a request the gateway does not take is the
        // reply; a refusal it sends later (354, 10197, ...) comes as an `Event::Refused`.
        let subscription = self
            .rt
            .block_on(async {
                client
                    .realtime_bars(&contract)
                    .what_to_show(choice.realtime())
                    .trading_hours(choice.hours())
                    .subscribe()
                    .await
            })
            .map_err(|e| classify(&e))?;
        let wanted = Wanted {
            sub: req.id,
            contract,
            choice,
            size: i64::from(req.bar_seconds),
        };
        self.live
            .start(client, &req.symbol, wanted, Some(subscription));
        Ok(())
    }

    fn unsubscribe(&self, symbol: &str) -> Result<(), RemoteError> {
        self.live.stop(symbol);
        Ok(())
    }

    fn place_order(&self, order: &OrderRequest) -> Result<OrderReport, RemoteError> {
        check_symbol(&order.symbol)?;
        if let Err(problem) = order.check() {
            return Err(error(ErrorKind::BadRequest, problem.to_string()));
        }
        let client = self.client_for_orders()?;
        let accounts = self.accounts()?;
        account::check_account(&accounts, self.opts.allow_live)?;
        let contract =
            self.rt
                .block_on(self.resolved.contract(&client, &self.opts, &order.symbol))?;
        let account = accounts.first().map(String::as_str);
        self.rt
            .block_on(self.orders.place(&client, &contract, order, account))
    }

    fn modify_order(&self, change: &OrderChange) -> Result<OrderReport, RemoteError> {
        let client = self.client_for_orders()?;
        let accounts = self.accounts()?;
        account::check_account(&accounts, self.opts.allow_live)?;
        let symbol = self
            .rt
            .block_on(self.orders.symbol_of(&client, &change.order_ref))?;
        let contract = self
            .rt
            .block_on(self.resolved.contract(&client, &self.opts, &symbol))?;
        let account = accounts.first().map(String::as_str);
        self.rt
            .block_on(self.orders.modify(&client, &contract, change, account))
    }

    fn cancel_order(&self, order_ref: &str) -> Result<OrderReport, RemoteError> {
        let client = self.client_for_orders()?;
        self.rt.block_on(self.orders.cancel(&client, order_ref))
    }

    fn cancel_all(&self) -> Result<u32, RemoteError> {
        let client = self.client_for_orders()?;
        self.rt.block_on(self.orders.cancel_all(&client))
    }

    fn orders(&self) -> Result<Vec<OrderReport>, RemoteError> {
        let client = self.client_for_orders()?;
        self.rt.block_on(self.orders.orders(&client))
    }

    fn executions(&self) -> Result<Vec<Fill>, RemoteError> {
        let client = self.client_for_orders()?;
        self.rt.block_on(self.orders.executions(&client))
    }

    fn positions(&self) -> Result<Vec<Position>, RemoteError> {
        let client = self.client_for_orders()?;
        self.rt.block_on(account::positions(&client))
    }

    fn account(&self) -> Result<AccountSummary, RemoteError> {
        let client = self.client_for_orders()?;
        let accounts = self.accounts()?;
        self.rt.block_on(account::account(
            &client,
            accounts.first().map(String::as_str),
        ))
    }

    fn disconnect(&self) {
        let connection = self.connection.lock().take();
        if let Some(c) = &connection {
            for w in &c.watchers {
                w.abort();
            }
        }
        self.live.stop_all();
        if let Some(c) = connection {
            self.rt.block_on(c.client.disconnect());
            tracing::info!("disconnected from the gateway");
        }
    }
}

impl Drop for IbkrBackend {
    fn drop(&mut self) {
        self.disconnect();
    }
}
