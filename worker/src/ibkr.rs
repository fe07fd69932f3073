//! The Interactive Brokers backend, on `ibapi`'s async client.
//!
//! - Ready only when the next valid id and the managed accounts are both known (`ibapi`
//!   returns from `connect` after 100 other frames even without them), within a handshake
//!   timeout (`ibapi` has none of its own); "client id in use" is reported as such, or the
//!   next ids are tried when `client_id_attempts` allows.
//! - Historical bars: the contract is the symbol as a SMART-routed USD stock unless configured
//!   otherwise (exchange, currency, primary exchange per symbol); at most
//!   [`MAX_CONCURRENT_HISTORY`] requests in flight, IB's pacing rules kept
//!   ([`crate::pacing`]); a pacing violation (error 162) is retried
//!   with backoff; each request has a deadline. No data, pacing, no security definition, farm
//!   down and disconnection are told apart. A bar without a positive price is dropped, never
//!   passed on as a zero.
//! - Real-time bars: IB's 5-second bars built into bars of the requested size (a multiple of
//!   5 s); a bar joined midway is not sent. Subscriptions are restored after a reconnect.
//! - A read in flight when the gateway connection drops is re-sent once `ibapi` has
//!   reconnected.
//! - Broker notices (farm status 2104, 2106, 2158, ...) are forwarded as events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bridge::protocol::{
    Bar, ConnectionStatus, ErrorKind, Event, HistoryRequest, RemoteError, SubscribeRequest,
};
use ibapi::market_data::historical::{BarSize, BarTimestamp, Duration as IbDuration};
use ibapi::prelude::{Contract, HistoricalWhatToShow, StreamExt, SubscriptionItem};
use parking_lot::Mutex;

use crate::backend::{error, valid_symbol, Backend, EventSink};
use crate::options::IbkrOptions;

/// Historical requests in flight at once (IB allows about 50).
pub const MAX_CONCURRENT_HISTORY: usize = 16;
/// Deadline of one historical request.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(60);
/// Pacing violations retried per request.
const PACING_RETRIES: u32 = 4;
/// Times a read in flight is re-sent after the gateway connection was lost and came back.
const RECONNECT_RETRIES: u32 = 3;
/// How long to wait for `ibapi` to reconnect.
const RECONNECT_WAIT: Duration = Duration::from_secs(30);
/// Bars per batch on the bridge.
const BATCH: usize = 1000;

struct Connected {
    client: Arc<ibapi::Client>,
    accounts: Vec<String>,
    next_order_id: i64,
}

/// A connection to TWS or IB Gateway.
pub struct IbkrBackend {
    rt: tokio::runtime::Runtime,
    opts: IbkrOptions,
    conn: Mutex<Option<Connected>>,
    connect_lock: Mutex<()>,
    history_slots: Arc<tokio::sync::Semaphore>,
    pacer: crate::pacing::Pacer,
    events: EventSink,
    /// Real-time bar streams by symbol.
    streams: Mutex<HashMap<String, tokio::task::AbortHandle>>,
}

impl IbkrBackend {
    /// A backend for the gateway in `opts`; nothing connects until [`Backend::connect`].
    pub fn new(opts: IbkrOptions, events: EventSink) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ibkr")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        Ok(IbkrBackend {
            rt,
            opts,
            conn: Mutex::new(None),
            connect_lock: Mutex::new(()),
            history_slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HISTORY)),
            pacer: crate::pacing::Pacer::default(),
            events,
            streams: Mutex::new(HashMap::new()),
        })
    }

    /// The contract of `symbol`: as configured, else a SMART-routed USD stock.
    fn contract(&self, symbol: &str) -> Contract {
        match self.opts.contracts.iter().find(|c| c.symbol == symbol) {
            Some(spec) => {
                let b = Contract::stock(symbol)
                    .on_exchange(spec.exchange.as_str())
                    .in_currency(spec.currency.as_str());
                match &spec.primary_exchange {
                    Some(p) => b.primary(p.as_str()).build(),
                    None => b.build(),
                }
            }
            None => Contract::stock(symbol).build(),
        }
    }

    fn client(&self) -> Result<Arc<ibapi::Client>, RemoteError> {
        match &*self.conn.lock() {
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

/// IB's bar size for a number of seconds.
pub fn bar_size(seconds: u32) -> Option<BarSize> {
    Some(match seconds {
        1 => BarSize::Sec,
        5 => BarSize::Sec5,
        10 => BarSize::Sec10,
        15 => BarSize::Sec15,
        30 => BarSize::Sec30,
        60 => BarSize::Min,
        120 => BarSize::Min2,
        180 => BarSize::Min3,
        240 => BarSize::Min4,
        300 => BarSize::Min5,
        600 => BarSize::Min10,
        900 => BarSize::Min15,
        1200 => BarSize::Min20,
        1800 => BarSize::Min30,
        3600 => BarSize::Hour,
        7200 => BarSize::Hour2,
        10800 => BarSize::Hour3,
        14400 => BarSize::Hour4,
        28800 => BarSize::Hour8,
        86400 => BarSize::Day,
        604_800 => BarSize::Week,
        _ => return None,
    })
}

/// IB's duration for a number of seconds: seconds up to a day, whole days beyond.
pub fn duration(seconds: u64) -> IbDuration {
    if seconds <= 86_400 {
        IbDuration::seconds(seconds as i32)
    } else {
        IbDuration::days(seconds.div_ceil(86_400).min(i32::MAX as u64) as i32)
    }
}

/// Tells IB's errors apart.
pub fn classify(e: &ibapi::Error) -> RemoteError {
    let text = e.to_string();
    let lower = text.to_lowercase();
    let kind = match e {
        ibapi::Error::ClientIdInUse { .. } => ErrorKind::ClientIdInUse,
        ibapi::Error::Timeout => ErrorKind::Timeout,
        ibapi::Error::ConnectionReset
        | ibapi::Error::ConnectionFailed
        | ibapi::Error::Shutdown
        | ibapi::Error::Io(_) => ErrorKind::Disconnected,
        ibapi::Error::Notice(n) => match n.code {
            162 if lower.contains("pacing") => ErrorKind::Pacing,
            162 | 166 if lower.contains("no data") => ErrorKind::NoData,
            162 => ErrorKind::NoData,
            200 => ErrorKind::NoSecurityDefinition,
            1100 | 1300 | 2110 => ErrorKind::Disconnected,
            2103 | 2105 | 2157 => ErrorKind::FarmDown,
            _ => ErrorKind::Internal,
        },
        _ if lower.contains("pacing") => ErrorKind::Pacing,
        _ if lower.contains("no security definition") => ErrorKind::NoSecurityDefinition,
        _ => ErrorKind::Internal,
    };
    error(kind, text)
}

fn bar_time(b: &BarTimestamp) -> i64 {
    match b {
        BarTimestamp::DateTime(t) => t.unix_timestamp(),
        BarTimestamp::Date(d) => d.midnight().assume_utc().unix_timestamp(),
    }
}

/// Builds `size`-second bars from IB's 5-second real-time bars and sends each as an event
/// when its last 5-second bar arrives. When the connection is lost, waits for `ibapi` to
/// reconnect and subscribes again (`ibapi` does not restore subscriptions).
async fn stream_bars(
    client: Arc<ibapi::Client>,
    contract: Contract,
    mut subscription: ibapi::subscriptions::r#async::Subscription<
        ibapi::market_data::realtime::Bar,
    >,
    symbol: String,
    size: i64,
    events: EventSink,
) {
    // The bar being built, and whether it began with its first 5-second bar (a bar joined
    // midway, at the start or after a gap, is incomplete and never sent).
    let mut building: Option<(Bar, bool)> = None;
    loop {
        match subscription.next().await {
            Some(Ok(SubscriptionItem::Data(b))) => {
                if ![b.open, b.high, b.low, b.close]
                    .iter()
                    .all(|p| p.is_finite() && *p > 0.0)
                {
                    tracing::warn!(%symbol, "real-time bar without a valid price dropped");
                    continue;
                }
                let t = b.date.unix_timestamp();
                let start = t.div_euclid(size) * size;
                if building.take_if(|(bar, _)| bar.time != start).is_some() {
                    tracing::debug!(%symbol, "incomplete live bar dropped");
                }
                let (bar, _) = building.get_or_insert((
                    Bar {
                        time: start,
                        open: b.open,
                        high: b.high,
                        low: b.low,
                        close: b.close,
                        volume: 0.0,
                    },
                    t == start,
                ));
                bar.high = bar.high.max(b.high);
                bar.low = bar.low.min(b.low);
                bar.close = b.close;
                bar.volume += b.volume;
                if t + 5 >= start + size {
                    if let Some((bar, true)) = building.take() {
                        events(Event::Bar {
                            symbol: symbol.clone(),
                            bar,
                        });
                    }
                }
            }
            Some(Ok(SubscriptionItem::Notice(n))) => events(Event::Notice {
                code: n.code,
                message: n.message,
            }),
            Some(Err(e)) if !e.is_connection_lost() => {
                tracing::warn!(%symbol, "real-time bars ended: {e}");
                return;
            }
            // Connection lost (or the stream ended with it): resubscribe once it is back.
            Some(Err(_)) | None => loop {
                if tokio::time::timeout(RECONNECT_WAIT, client.wait_connected())
                    .await
                    .is_err()
                {
                    tracing::warn!(%symbol, "gateway not back; real-time bars stopped");
                    return;
                }
                match client.realtime_bars(&contract).subscribe().await {
                    Ok(s) => {
                        tracing::info!(%symbol, "real-time bars resubscribed after a reconnect");
                        subscription = s;
                        break;
                    }
                    Err(e) if e.is_connection_lost() => continue,
                    Err(e) => {
                        tracing::warn!(%symbol, "real-time bars not restored: {e}");
                        return;
                    }
                }
            },
        }
    }
}

/// Our bars from IB's: a bar without a positive, finite price is dropped (`ibapi` turns a
/// missing price into 0.0; it never reaches a strategy here).
fn convert(
    symbol: &str,
    bars: &[ibapi::market_data::historical::Bar],
) -> Result<Arc<Vec<Bar>>, RemoteError> {
    let mut dropped = 0usize;
    let converted: Vec<Bar> = bars
        .iter()
        .filter_map(|b| {
            let ok = [b.open, b.high, b.low, b.close]
                .iter()
                .all(|p| p.is_finite() && *p > 0.0);
            if !ok {
                dropped += 1;
                return None;
            }
            Some(Bar {
                time: bar_time(&b.date),
                open: b.open,
                high: b.high,
                low: b.low,
                close: b.close,
                volume: b.volume,
            })
        })
        .collect();
    if dropped > 0 {
        tracing::warn!(symbol, dropped, "bars without a valid price dropped");
    }
    if converted.is_empty() {
        return Err(error(ErrorKind::NoData, format!("no bars for {symbol}")));
    }
    Ok(Arc::new(converted))
}

/// One historical request, with a slot of the concurrency cap, its deadline and pacing
/// retries.
async fn fetch(
    client: &ibapi::Client,
    contract: &Contract,
    size: BarSize,
    span: IbDuration,
    slots: &tokio::sync::Semaphore,
    symbol: &str,
) -> Result<Arc<Vec<ibapi::market_data::historical::Bar>>, RemoteError> {
    let _slot = slots
        .acquire()
        .await
        .map_err(|_| error(ErrorKind::Internal, "history slots closed"))?;
    let mut backoff = Duration::from_secs(2);
    let mut attempt = 0;
    let mut reconnects = 0;
    loop {
        let fetched = tokio::time::timeout(
            HISTORY_TIMEOUT,
            client
                .historical_data(contract, size)
                .what_to_show(HistoricalWhatToShow::Trades)
                .duration(span)
                .fetch(),
        )
        .await;
        match fetched {
            Err(_) => {
                return Err(error(
                    ErrorKind::Timeout,
                    format!(
                        "history of {symbol} not answered within {} s",
                        HISTORY_TIMEOUT.as_secs()
                    ),
                ))
            }
            Ok(Ok(data)) => return Ok(Arc::new(data.bars)),
            Ok(Err(e)) if e.is_connection_lost() && reconnects < RECONNECT_RETRIES => {
                reconnects += 1;
                tracing::warn!(
                    symbol,
                    "gateway connection lost mid-request; re-sending after the reconnect"
                );
                match tokio::time::timeout(RECONNECT_WAIT, client.wait_connected()).await {
                    Ok(Ok(())) => continue,
                    _ => {
                        return Err(error(
                            ErrorKind::Disconnected,
                            format!(
                                "gateway connection lost and not back within {} s",
                                RECONNECT_WAIT.as_secs()
                            ),
                        ))
                    }
                }
            }
            Ok(Err(e)) => {
                let e = classify(&e);
                if e.kind == ErrorKind::Pacing && attempt < PACING_RETRIES {
                    attempt += 1;
                    tracing::warn!(
                        symbol,
                        attempt,
                        "pacing violation; retrying in {} s",
                        backoff.as_secs()
                    );
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    continue;
                }
                return Err(e);
            }
        }
    }
}

impl Backend for IbkrBackend {
    fn name(&self) -> &'static str {
        "ibkr"
    }

    fn connect(&self, timeout: Duration) -> Result<(Vec<String>, i64), RemoteError> {
        let _one = self.connect_lock.lock();
        if let Some(c) = &*self.conn.lock() {
            if c.client.is_connected() {
                return Ok((c.accounts.clone(), c.next_order_id));
            }
        }
        let gateway = self.opts.gateway.clone();
        // The configured id, then (if allowed) the next ones while the gateway says "in use".
        let attempts = self.opts.client_id_attempts.max(1);
        let mut outcome = None;
        for client_id in (self.opts.client_id..).take(attempts as usize) {
            tracing::info!(%gateway, client_id, "connecting to the gateway");
            // The notice stream is bound before the handshake, so the farm notices sent during
            // it are not lost.
            let connected = self.rt.block_on(async {
                tokio::time::timeout(
                    timeout,
                    ibapi::Client::builder()
                        .address(gateway.as_str())
                        .client_id(client_id)
                        .connect_with_notice_stream(),
                )
                .await
            });
            match connected {
                Err(_) => {
                    return Err(error(
                        ErrorKind::Timeout,
                        format!(
                            "handshake with {gateway} not completed within {} ms",
                            timeout.as_millis()
                        ),
                    ))
                }
                Ok(Err(e)) => {
                    let mut e = classify(&e);
                    if e.kind == ErrorKind::ClientIdInUse {
                        tracing::warn!(client_id, "client id in use");
                        outcome = Some(Err(e));
                        continue;
                    }
                    e.kind = ErrorKind::NotConnected;
                    e.message = format!("cannot connect to {gateway}: {}", e.message);
                    return Err(e);
                }
                Ok(Ok((c, notices))) => {
                    outcome = Some(Ok((Arc::new(c), notices)));
                    break;
                }
            }
        }
        let (client, mut notices) = match outcome {
            Some(Ok(x)) => x,
            Some(Err(e)) => return Err(e),
            None => return Err(error(ErrorKind::Internal, "no connection attempt made")),
        };
        let accounts: Vec<String> = client
            .handshake_managed_accounts()
            .iter()
            .filter(|a| !a.is_empty())
            .cloned()
            .collect();
        if accounts.is_empty() {
            self.rt.block_on(client.disconnect());
            return Err(error(
                ErrorKind::Timeout,
                format!("{gateway} completed the handshake without managed accounts"),
            ));
        }
        let next_order_id = i64::from(client.next_order_id());
        let events = self.events.clone();
        self.rt.spawn(async move {
            while let Some(n) = notices.next().await {
                tracing::debug!(code = n.code, "{}", n.message);
                events(Event::Notice {
                    code: n.code,
                    message: n.message,
                });
            }
        });
        tracing::info!(?accounts, next_order_id, "gateway ready");
        (self.events)(Event::Connection(ConnectionStatus::Connected));
        *self.conn.lock() = Some(Connected {
            client,
            accounts: accounts.clone(),
            next_order_id,
        });
        Ok((accounts, next_order_id))
    }

    fn accounts(&self) -> Result<Vec<String>, RemoteError> {
        self.client()?;
        Ok(self
            .conn
            .lock()
            .as_ref()
            .map(|c| c.accounts.clone())
            .unwrap_or_default())
    }

    fn history(
        &self,
        req: &HistoryRequest,
        emit: &mut dyn FnMut(Vec<Bar>) -> bool,
    ) -> Result<u64, RemoteError> {
        let client = self.client()?;
        if !valid_symbol(&req.symbol) {
            return Err(error(
                ErrorKind::UnknownSymbol,
                format!("unknown symbol {:?}", req.symbol),
            ));
        }
        let size = bar_size(req.bar_seconds).ok_or_else(|| {
            error(
                ErrorKind::BadRequest,
                format!("IB has no {} s bar size", req.bar_seconds),
            )
        })?;
        if req.end.is_some() {
            return Err(error(
                ErrorKind::BadRequest,
                "history ending in the past is not supported by the ibkr backend yet",
            ));
        }
        let contract = self.contract(&req.symbol);
        let slots = self.history_slots.clone();
        let span = duration(req.duration_seconds);
        let admission = self.pacer.admit(req, std::time::Instant::now());
        let (wait, answer) = match admission {
            // An identical request is under way or was answered: share its bars.
            crate::pacing::Admission::Join(shared) => (Duration::ZERO, shared),
            crate::pacing::Admission::Send { wait, answer } => (wait, answer),
        };
        let bars = self.rt.block_on(async {
            answer
                .get_or_init(|| async {
                    if !wait.is_zero() {
                        tracing::debug!(symbol = %req.symbol, ms = wait.as_millis() as u64, "paced");
                        tokio::time::sleep(wait).await;
                    }
                    fetch(&client, &contract, size, span, &slots, &req.symbol)
                        .await
                        .and_then(|bars| convert(&req.symbol, &bars))
                })
                .await
                .clone()
        })?;
        let mut sent = 0u64;
        for chunk in bars.chunks(BATCH) {
            if !emit(chunk.to_vec()) {
                return Err(error(ErrorKind::Internal, "the runner stopped listening"));
            }
            sent += chunk.len() as u64;
        }
        Ok(sent)
    }

    fn subscribe(&self, req: &SubscribeRequest) -> Result<(), RemoteError> {
        let client = self.client()?;
        if !valid_symbol(&req.symbol) {
            return Err(error(
                ErrorKind::UnknownSymbol,
                format!("unknown symbol {:?}", req.symbol),
            ));
        }
        if req.bar_seconds == 0 || !req.bar_seconds.is_multiple_of(5) {
            return Err(error(
                ErrorKind::BadRequest,
                format!(
                    "IB streams 5-second bars: a live bar of {} s cannot be built from them",
                    req.bar_seconds
                ),
            ));
        }
        let contract = self.contract(&req.symbol);
        // Subscribed before answering, so a refusal is the reply.
        let subscription = self
            .rt
            .block_on(async { client.realtime_bars(&contract).subscribe().await })
            .map_err(|e| classify(&e))?;
        let task = self.rt.spawn(stream_bars(
            client,
            contract,
            subscription,
            req.symbol.clone(),
            i64::from(req.bar_seconds),
            self.events.clone(),
        ));
        if let Some(old) = self
            .streams
            .lock()
            .insert(req.symbol.clone(), task.abort_handle())
        {
            old.abort();
        }
        Ok(())
    }

    fn unsubscribe(&self, symbol: &str) -> Result<(), RemoteError> {
        if let Some(task) = self.streams.lock().remove(symbol) {
            task.abort();
        }
        Ok(())
    }

    fn disconnect(&self) {
        for (_, task) in self.streams.lock().drain() {
            task.abort();
        }
        let conn = self.conn.lock().take();
        if let Some(c) = conn {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_sizes_and_durations_map_to_ib_units() {
        assert!(matches!(bar_size(60), Some(BarSize::Min)));
        assert!(matches!(bar_size(5), Some(BarSize::Sec5)));
        assert!(bar_size(7).is_none());
        assert_eq!(duration(86_400).to_string(), "86400 S");
        assert_eq!(duration(86_401).to_string(), "2 D");
    }
}
