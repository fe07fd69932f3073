//! The connection to the gateway: opening it (client ids tried in turn, a gateway not up yet
//! waited for with backoff), what it must deliver before it counts as ready (managed
//! accounts, the market data type), letting go of one that is down, and waiting for `ibapi`
//! to restore one that dropped ([`reconnected`]).
//!
//! Invariants: a connection is ready only when the next valid id and the managed accounts
//! are both known, within the handshake timeout; a connection that failed a step is
//! disconnected before the error is returned; a gateway that is not up yet, or still holds
//! our client id, is retried only within `connect_wait_ms`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge::protocol::{ErrorKind, RemoteError};
use tokio::runtime::Runtime;

use super::errors::classify;
use crate::backend::error;
use crate::options::{IbkrOptions, MarketDataKind};

/// How long to wait for `ibapi` to reconnect.
pub(super) const RECONNECT_WAIT: Duration = Duration::from_secs(30);
/// How long a request that failed with a lost connection waits for `ibapi` to see the loss.
const LOSS_NOTICE_WAIT: Duration = Duration::from_secs(2);
/// How often `ibapi`'s view of the connection is looked at meanwhile.
const LOSS_NOTICE_POLL: Duration = Duration::from_millis(5);

/// After a request failed because the connection to the gateway was lost: waits until `ibapi`
/// has seen the loss itself (at most [`LOSS_NOTICE_WAIT`]), then until it is connected again
/// (at most `wait`). A write to a socket the gateway closed fails before `ibapi`'s reader
/// sees the end of it; `wait_connected` alone answers at once then, and a request sent again
/// at once goes into the dead connection and fails the same way (every retry spent in a
/// millisecond). Its reconnection waits a second or more, so a poll every few milliseconds
/// sees it. `Err` says why not: not back within `wait`, or `ibapi` gave up.
pub(super) async fn reconnected(client: &ibapi::Client, wait: Duration) -> Result<(), String> {
    let _ = tokio::time::timeout(LOSS_NOTICE_WAIT, async {
        while client.is_connected() {
            tokio::time::sleep(LOSS_NOTICE_POLL).await;
        }
    })
    .await;
    match tokio::time::timeout(wait, client.wait_connected()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("the gateway connection ended for good ({e})")),
        Err(_) => Err(format!(
            "the gateway connection was lost and not back within {} s",
            wait.as_secs()
        )),
    }
}

/// First and longest pause between attempts to reach a gateway that is not up yet.
const CONNECT_BACKOFF_FIRST: Duration = Duration::from_millis(500);
const CONNECT_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// `ibapi`'s market data type for ours; `None` for live, which the gateway sends unasked.
fn market_data_type(kind: MarketDataKind) -> Option<ibapi::prelude::MarketDataType> {
    use ibapi::prelude::MarketDataType as T;
    use MarketDataKind as K;
    match kind {
        K::Live => None,
        K::Frozen => Some(T::Frozen),
        K::Delayed => Some(T::Delayed),
        K::DelayedFrozen => Some(T::DelayedFrozen),
    }
}

/// `ibapi`'s stream of the gateway's notices that belong to no request.
pub(super) type Notices = ibapi::subscriptions::NoticeStream;

/// A gateway connection that completed its handshake.
pub(super) struct Connected {
    pub(super) client: Arc<ibapi::Client>,
    pub(super) accounts: Vec<String>,
    pub(super) next_order_id: i64,
    /// The tasks that follow the connection's life (notices, the socket, the orders).
    pub(super) watchers: Vec<tokio::task::AbortHandle>,
}

/// Opens a connection to the gateway of `opts`, each handshake within `timeout`: a gateway
/// that is not up yet (it takes a minute or more to log in after its daily restart), or
/// still holds our client id for a connection that just died, is waited for with backoff,
/// up to `connect_wait_ms`.
pub(super) fn open(
    rt: &Runtime,
    opts: &IbkrOptions,
    timeout: Duration,
) -> Result<(Arc<ibapi::Client>, Notices), RemoteError> {
    let gateway = opts.gateway.as_str();
    let wait = Duration::from_millis(opts.connect_wait_ms);
    let give_up = Instant::now() + wait;
    let mut backoff = CONNECT_BACKOFF_FIRST;
    let mut attempt = 1u32;
    loop {
        match connect_once(rt, opts, timeout) {
            Err(e)
                if matches!(e.kind, ErrorKind::NotConnected | ErrorKind::ClientIdInUse)
                    && Instant::now() + backoff < give_up =>
            {
                tracing::info!(
                    %gateway,
                    attempt,
                    retry_in_s = backoff.as_secs_f64(),
                    "gateway not ready yet: {}",
                    e.message
                );
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(CONNECT_BACKOFF_MAX);
                attempt += 1;
            }
            Err(mut e) if e.kind == ErrorKind::NotConnected && wait.is_zero() => {
                e.message.push_str(
                    " (ibkr.connect_wait_seconds makes the runner wait for a gateway that \
                     is still starting)",
                );
                return Err(e);
            }
            other => return other,
        }
    }
}

/// One connection attempt: the configured client id, then (if allowed) the next ones while
/// the gateway says "in use"; each handshake within `timeout`.
fn connect_once(
    rt: &Runtime,
    opts: &IbkrOptions,
    timeout: Duration,
) -> Result<(Arc<ibapi::Client>, Notices), RemoteError> {
    let gateway = opts.gateway.as_str();
    let attempts = opts.client_id_attempts.max(1);
    let mut in_use = None;
    for client_id in (opts.client_id..).take(attempts as usize) {
        tracing::info!(%gateway, client_id, "connecting to the gateway");
        // The notice stream is bound before the handshake, so the farm notices sent during
        // it are not lost.
        let builder = ibapi::Client::builder()
            .address(gateway)
            .client_id(client_id);
        // The gateway restarts daily: unless told otherwise, keep trying for as long as
        // the run lasts.
        let builder = match opts.reconnect_attempts {
            0 => builder.reconnect_forever(),
            n => builder.max_reconnect_attempts(n),
        };
        let connected = rt.block_on(async {
            tokio::time::timeout(timeout, builder.connect_with_notice_stream()).await
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
                    in_use = Some(e);
                    continue;
                }
                e.kind = ErrorKind::NotConnected;
                e.message = format!("cannot connect to {gateway}: {}", e.message);
                return Err(e);
            }
            Ok(Ok((c, notices))) => return Ok((Arc::new(c), notices)),
        }
    }
    Err(in_use.unwrap_or_else(|| error(ErrorKind::Internal, "no connection attempt made")))
}

/// The managed accounts `client` reported in its handshake; none is an error (the client is
/// disconnected then).
pub(super) fn managed_accounts(
    rt: &Runtime,
    client: &ibapi::Client,
    gateway: &str,
) -> Result<Vec<String>, RemoteError> {
    let accounts: Vec<String> = client
        .handshake_managed_accounts()
        .iter()
        .filter(|a| !a.is_empty())
        .cloned()
        .collect();
    if accounts.is_empty() {
        rt.block_on(client.disconnect());
        return Err(error(
            ErrorKind::Timeout,
            format!("{gateway} completed the handshake without managed accounts"),
        ));
    }
    Ok(accounts)
}

/// Asks the gateway for the market data of `opts` (the client is disconnected if it
/// refuses). Delayed data, where it is the fallback, is delayed data "if live is not
/// available": live bars and history are not affected.
pub(super) fn set_market_data_type(
    rt: &Runtime,
    client: &ibapi::Client,
    opts: &IbkrOptions,
) -> Result<(), RemoteError> {
    let wanted = match (opts.market_data_type, opts.delayed_fallback) {
        (MarketDataKind::Live, true) => MarketDataKind::Delayed,
        (MarketDataKind::Frozen, true) => MarketDataKind::DelayedFrozen,
        (kind, _) => kind,
    };
    if let Some(kind) = market_data_type(wanted) {
        // Remembered by `ibapi` and sent again after every reconnect.
        if let Err(e) = rt.block_on(client.switch_market_data_type(kind)) {
            rt.block_on(client.disconnect());
            return Err(classify(&e));
        }
        tracing::info!(kind = ?wanted, "market data type set");
    }
    Ok(())
}

/// Lets go of a connection that is down: its watchers stopped, its client disconnected
/// (within a bound: `ibapi` may be mid-reconnect).
pub(super) fn let_go(rt: &Runtime, old: Connected) {
    for w in &old.watchers {
        w.abort();
    }
    let _ = rt.block_on(tokio::time::timeout(
        Duration::from_secs(2),
        old.client.disconnect(),
    ));
}
