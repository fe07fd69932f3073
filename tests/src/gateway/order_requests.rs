//! A connection's order, account and position requests, served from the broker's book
//! ([`orders`](super::orders)): placing (with the `order_ack_delay`, `drop_after_order` and
//! `reject_orders` knobs), cancelling, and the queries.
//!
//! Invariants: the book's answer to a request is written under the book's lock, so an answer
//! never overtakes an event it predates; every PlaceOrder and cancel is recorded in what the
//! gateway saw before the book changes.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prost::Message;

use super::behaviour::Behaviour;
use super::connections::{lock, Connection};
use super::orders::{Mail, To};
use super::state::GatewayState;
use super::wire::{
    incoming, outgoing, proto_frame, AccountSummaryRequest, CancelOrderRequest, ExecutionRequest,
    ManagedAccounts, NextValidId, PlaceOrderRequest, PROTOBUF,
};

/// Writes `mail`: frames to a client go to each of its live connections, answers to
/// `requester`. A failed write is a client gone; its reader ends its connection.
fn post(shared: &GatewayState, requester: &Connection, mail: Mail) {
    for (to, frames) in mail.0 {
        match to {
            To::Requester => {
                let _ = requester.write(&frames);
            }
            To::Client(id) => {
                for c in shared.connections.of_client(id) {
                    let _ = c.write(&frames);
                }
            }
        }
    }
}

/// Serves message `id` (wire id, body `msg`) from `conn` of `client_id` if it is an order,
/// account or position request: `None` if it is not one, `Some(true)` if the gateway closed
/// the connection (`drop_after_order`), `Some(false)` otherwise.
pub(super) fn serve(
    id: i32,
    msg: &[u8],
    conn: &Arc<Connection>,
    client_id: i32,
    shared: &Arc<GatewayState>,
    b: &Behaviour,
) -> Option<bool> {
    let is = |request: i32| id == request + PROTOBUF;
    if is(outgoing::PLACE_ORDER) {
        let req = PlaceOrderRequest::decode(msg).ok()?;
        return Some(place(&req, conn, client_id, shared, b));
    }
    if is(outgoing::CANCEL_ORDER) {
        let req = CancelOrderRequest::decode(msg).ok()?;
        let order_id = req.order_id.unwrap_or(0);
        lock(&shared.seen).order_cancels.push(order_id);
        let mut book = lock(&shared.book);
        let mail = book.cancel(client_id, order_id);
        post(shared, conn, mail);
        return Some(false);
    }
    if is(outgoing::REQUEST_GLOBAL_CANCEL) {
        lock(&shared.seen).global_cancels += 1;
        let mut book = lock(&shared.book);
        let mail = book.cancel_all();
        post(shared, conn, mail);
        return Some(false);
    }
    let book = lock(&shared.book);
    let mut mail = Mail::default();
    if is(outgoing::REQUEST_IDS) {
        mail.push(
            To::Requester,
            proto_frame(
                incoming::NEXT_VALID_ID,
                &NextValidId {
                    order_id: Some(book.next_valid_id()),
                },
            ),
        );
    } else if is(outgoing::REQUEST_OPEN_ORDERS) || is(outgoing::REQUEST_AUTO_OPEN_ORDERS) {
        mail = book.answer_open_orders(Some(client_id));
    } else if is(outgoing::REQUEST_ALL_OPEN_ORDERS) {
        mail = book.answer_open_orders(None);
    } else if is(outgoing::REQUEST_COMPLETED_ORDERS) {
        mail = book.answer_completed_orders();
    } else if is(outgoing::REQUEST_EXECUTIONS) {
        mail = book.answer_executions(&ExecutionRequest::decode(msg).ok()?);
    } else if is(outgoing::REQUEST_POSITIONS) {
        mail = book.answer_positions();
    } else if is(outgoing::REQUEST_ACCOUNT_SUMMARY) {
        let req = AccountSummaryRequest::decode(msg).ok()?;
        mail = book.answer_account_summary(&req, &b.accounts);
    } else if is(outgoing::REQUEST_MANAGED_ACCOUNTS) {
        mail.push(
            To::Requester,
            proto_frame(
                incoming::MANAGED_ACCOUNTS,
                &ManagedAccounts {
                    accounts_list: Some(b.accounts.join(",")),
                },
            ),
        );
    } else if !(is(outgoing::CANCEL_POSITIONS) || is(outgoing::CANCEL_ACCOUNT_SUMMARY)) {
        return None; // (those two cancel nothing: nothing streams after the first answer)
    }
    // Written under the book's lock, so an answer never overtakes an event it predates.
    post(shared, conn, mail);
    Some(false)
}

/// A PlaceOrder: recorded, then (after `order_ack_delay`) acknowledged and filled or
/// rejected; with `drop_after_order`, the connection is closed between the two. Returns
/// whether the gateway closed the connection.
fn place(
    req: &PlaceOrderRequest,
    conn: &Arc<Connection>,
    client_id: i32,
    shared: &Arc<GatewayState>,
    b: &Behaviour,
) -> bool {
    let n = shared.place_orders.fetch_add(1, Ordering::Relaxed);
    let order_id = req.order_id.unwrap_or(0);
    let order_ref = req
        .order
        .as_ref()
        .and_then(|o| o.order_ref.clone())
        .unwrap_or_default();
    lock(&shared.seen).orders_placed.push((order_id, order_ref));
    let dropped = b.drop_after_order == Some(n);
    let mut book = lock(&shared.book);
    let received = book.receive(client_id, req, &b.accounts);
    if dropped {
        // Received and recorded, never acknowledged on this connection.
        conn.close();
    }
    match received {
        Err(refusal) => post(shared, conn, refusal),
        Ok(order_id) if b.order_ack_delay.is_zero() => {
            let mail = book.submit(client_id, order_id, &b.reject_orders);
            post(shared, conn, mail);
        }
        Ok(order_id) => {
            // Acknowledged later while the gateway goes on reading (a cancel, say).
            let (conn, shared, b) = (conn.clone(), shared.clone(), b.clone());
            std::thread::spawn(move || {
                std::thread::sleep(b.order_ack_delay);
                if shared.stop.load(Ordering::Acquire) {
                    return;
                }
                let mut book = lock(&shared.book);
                let mail = book.submit(client_id, order_id, &b.reject_orders);
                post(&shared, &conn, mail);
            });
        }
    }
    dropped
}
