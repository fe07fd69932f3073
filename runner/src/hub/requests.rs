//! What a hub does with each request of a client: answered from what the hub knows, joined
//! to what another client already asked (history), or sent on to the hub's one worker with
//! the client's order references put in its namespace (`<client>.<reference>`) and taken out
//! of what comes back.
//!
//! Invariants: a client sees only the orders and fills of its own namespace, and positions
//! and the account whole (they are the account's); identical history requests under way at
//! once are sent upstream once and answered to each asker; every request is answered once
//! (an error of its own kind when it cannot be done), however the worker behind fares.

use std::sync::Arc;
use std::time::Duration;

use bridge::protocol::{
    valid_order_ref, ErrorKind, Fill, HistoryRequest, OrderReport, RefRun, RemoteError, Reply,
    Request,
};

use super::clients::Client;
use super::state::Hub;
use crate::supervisor::SupervisorError;

/// Bars per history batch to a client (the worker's own batch).
const BATCH: usize = worker::backend::BATCH;

/// Answers request `id` of `client`.
pub(crate) fn handle(hub: &Hub, client: &Arc<Client>, id: u64, request: Request) {
    let timeout = hub.settings.request_timeout;
    let r = &client.responder;
    let answered = match request {
        Request::Ping { payload } => r.reply(id, Reply::Pong { payload }),
        Request::Connect => r.reply(
            id,
            Reply::Connected {
                accounts: hub.sup.accounts(),
                next_order_id: 0,
            },
        ),
        Request::Accounts => r.reply(id, Reply::Accounts(hub.sup.accounts())),
        Request::History(h) => return history(hub, client, id, &h),
        Request::Subscribe(s) => {
            let done =
                hub.feeds
                    .subscribe(&hub.sup, client, &s.symbol, s.id, s.bar_seconds, timeout);
            r.reply(id, answer(done.map(|()| Reply::Subscribed)))
        }
        Request::Unsubscribe { symbol } => {
            let done = hub.feeds.unsubscribe(&hub.sup, client, &symbol, timeout);
            r.reply(id, answer(done.map(|()| Reply::Unsubscribed)))
        }
        // The client is leaving: the hub and its worker stay.
        Request::Shutdown => r.reply(id, Reply::ShuttingDown),
        Request::Cancel { .. } => return,
        Request::PlaceOrder(mut order) => {
            let reply = within(&client.name, &order.order_ref).and_then(|r| {
                order.order_ref = r;
                upstream(hub, Request::PlaceOrder(order), timeout)
            });
            r.reply(id, answer(reply.map(|x| own_reply(&client.name, x))))
        }
        Request::ModifyOrder(mut change) => {
            let reply = within(&client.name, &change.order_ref).and_then(|r| {
                change.order_ref = r;
                upstream(hub, Request::ModifyOrder(change), timeout)
            });
            r.reply(id, answer(reply.map(|x| own_reply(&client.name, x))))
        }
        Request::CancelOrder { order_ref } => {
            let reply = within(&client.name, &order_ref)
                .and_then(|order_ref| upstream(hub, Request::CancelOrder { order_ref }, timeout));
            r.reply(id, answer(reply.map(|x| own_reply(&client.name, x))))
        }
        Request::CancelAll => r.reply(id, answer(cancel_all(hub, &client.name, timeout))),
        request @ (Request::Orders | Request::Executions | Request::FoldedOrders) => {
            let reply = upstream(hub, request, timeout);
            r.reply_whole(id, answer(reply.map(|x| own_reply(&client.name, x))))
        }
        request @ (Request::Positions | Request::Account) => {
            r.reply_whole(id, answer(upstream(hub, request, timeout)))
        }
    };
    if let Err(e) = answered {
        tracing::debug!(client = %client.name, "answer not delivered: {e}");
    }
}

/// The reply, or the error as a reply.
fn answer(result: Result<Reply, SupervisorError>) -> Reply {
    result.unwrap_or_else(|e| Reply::Error(remote(e)))
}

/// A supervisor's error as the client sees it: the broker's own error as it was, anything
/// else of the hub's worker as not connected (the client may ask again).
pub(crate) fn remote(e: SupervisorError) -> RemoteError {
    match e {
        SupervisorError::Remote(e) | SupervisorError::Connect(e) => e,
        SupervisorError::Stopped => RemoteError {
            kind: ErrorKind::Disconnected,
            message: "the hub is stopping".into(),
        },
        other => RemoteError {
            kind: ErrorKind::NotConnected,
            message: format!("the hub's worker: {other}"),
        },
    }
}

/// A request sent on to the hub's worker; an error reply becomes an error.
fn upstream(hub: &Hub, request: Request, timeout: Duration) -> Result<Reply, SupervisorError> {
    match hub.sup.request(request, timeout)? {
        Reply::Error(e) => Err(SupervisorError::Remote(e)),
        other => Ok(other),
    }
}

/// `order_ref` of client `name` in its namespace: `<name>.<order_ref>`.
fn within(name: &str, order_ref: &str) -> Result<String, SupervisorError> {
    let full = format!("{name}.{order_ref}");
    if valid_order_ref(order_ref) && valid_order_ref(&full) {
        return Ok(full);
    }
    Err(SupervisorError::Remote(RemoteError {
        kind: ErrorKind::BadRequest,
        message: format!(
            "order reference {order_ref:?}: through a hub, as client {name}, a reference is 1 \
             to {} letters, digits, '-', '_' or '.'",
            40usize.saturating_sub(name.len() + 1)
        ),
    }))
}

/// A reference of client `name`'s namespace without it; `None` for another's.
pub(crate) fn own<'a>(name: &str, order_ref: &'a str) -> Option<&'a str> {
    order_ref
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('.'))
}

/// A report of the client's, its reference out of the namespace.
pub(crate) fn own_report(name: &str, mut report: OrderReport) -> Option<OrderReport> {
    let bare = own(name, &report.request.order_ref)?.to_string();
    report.request.order_ref = bare;
    Some(report)
}

/// A fill of the client's, its reference out of the namespace.
pub(crate) fn own_fill(name: &str, mut fill: Fill) -> Option<Fill> {
    let bare = own(name, &fill.order_ref)?.to_string();
    fill.order_ref = bare;
    Some(fill)
}

/// What the worker answered, cut down to the client's namespace.
fn own_reply(name: &str, reply: Reply) -> Reply {
    match reply {
        Reply::Order(report) => match own_report(name, *report) {
            Some(r) => Reply::Order(Box::new(r)),
            None => Reply::Error(RemoteError {
                kind: ErrorKind::Internal,
                message: "the broker answered with another client's order".into(),
            }),
        },
        Reply::Orders(list) => Reply::Orders(
            list.into_iter()
                .filter_map(|r| own_report(name, r))
                .collect(),
        ),
        Reply::Fills(list) => {
            Reply::Fills(list.into_iter().filter_map(|f| own_fill(name, f)).collect())
        }
        Reply::Folded(runs) => Reply::Folded(
            runs.into_iter()
                .filter_map(|run| {
                    let prefix = own(name, &run.prefix)?.to_string();
                    Some(RefRun {
                        prefix,
                        numbers: run.numbers,
                    })
                })
                .collect(),
        ),
        other => other,
    }
}

/// Cancels the client's working orders (not the account's): how many.
fn cancel_all(hub: &Hub, name: &str, timeout: Duration) -> Result<Reply, SupervisorError> {
    let count = cancel_working(hub, name, timeout)?;
    Ok(Reply::CancelledAll { count })
}

/// Cancels every working order of namespace `name`; how many were cancelled.
pub(crate) fn cancel_working(
    hub: &Hub,
    name: &str,
    timeout: Duration,
) -> Result<u32, SupervisorError> {
    let Reply::Orders(list) = upstream(hub, Request::Orders, timeout)? else {
        return Ok(0);
    };
    let mut count = 0;
    for report in list {
        if report.status.is_final() || own(name, &report.request.order_ref).is_none() {
            continue;
        }
        let cancel = Request::CancelOrder {
            order_ref: report.request.order_ref.clone(),
        };
        if upstream(hub, cancel, timeout).is_ok() {
            count += 1;
        }
    }
    Ok(count)
}

/// History, joined to an identical request under way: one upstream fetch, its bars to every
/// asker, each in batches.
fn history(hub: &Hub, client: &Client, id: u64, request: &HistoryRequest) {
    let r = &client.responder;
    let (fetched, shared) =
        hub.history
            .fetch(&hub.sup, request, hub.settings.history_timeout, remote);
    let counter = match shared {
        true => &hub.counters.history_shared,
        false => &hub.counters.history_upstream,
    };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let sent = match fetched {
        Ok(bars) => {
            let mut sent = Ok(());
            for batch in bars.chunks(BATCH) {
                sent = r.reply(id, Reply::Bars(batch.to_vec()));
                if sent.is_err() {
                    break;
                }
            }
            sent.and_then(|()| {
                r.reply(
                    id,
                    Reply::HistoryEnd {
                        count: bars.len() as u64,
                    },
                )
            })
        }
        Err(e) => r.reply(id, Reply::Error(e)),
    };
    if let Err(e) = sent {
        tracing::debug!(client = %client.name, "history not delivered: {e}");
    }
}
