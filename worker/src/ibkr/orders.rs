//! Orders at IB: placed exactly once, followed, reconciled.
//!
//! The order's reference travels as IB's `orderRef`; order ids come from `ibapi`'s counter,
//! seeded by the gateway's next valid id and never lowered, so an id is never used twice.
//! `ibapi`'s `submit_order` returns once the bytes are written, with no acknowledgement, and
//! `ibapi` reconnects by itself with the same client id; a rejection (201) arrives as a notice
//! on the order update stream, not as an error. So:
//!
//! - before anything is placed by a worker that never looked (a replacement), and after
//!   every loss of the gateway connection, the book is reconciled with the gateway: open
//!   orders of every client, completed orders, today's executions, all carrying our
//!   references; an order whose reference is found is answered as it stands, never placed;
//! - an order is answered once the gateway acknowledged it; if the connection drops while it
//!   waits, the worker waits for `ibapi` to reconnect, reconciles, and places it again (with
//!   a new order id, the same reference) only when the gateway has no trace of it;
//! - one task follows the order update stream (it outlives reconnections) and tells every
//!   change of an order with a reference, and every fill (once, then again with its
//!   commission), as events.
//!
//! Invariants: a reference maps to at most one order id placed by this worker at a time; an
//! order's state only moves forward here too (the runner's book enforces it again); a live
//! account is refused before anything is sent unless `allow_live` (`account`).
//!
//! Here: placing, changing, cancelling and listing orders, and following the gateway's
//! updates; what is known of the orders is in `known_orders`, the conversions in `convert`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bridge::protocol::{
    ErrorKind, Fill, OrderChange, OrderReport, OrderRequest, OrderStatus, RemoteError,
};
use ibapi::orders::{ExecutionFilter, Executions, OrderUpdate, Orders};
use ibapi::prelude::{StreamExt, SubscriptionItem};

use super::connection::{reconnected, RECONNECT_WAIT};
use super::convert::{fill_of, ib_order, report_of};
use super::errors::classify;
use super::known_orders::KnownOrders;
use super::query::collect;
use crate::backend::{error, EventSink};

/// How long an order waits for the gateway's acknowledgement.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// How long a cancel waits for the order to be final.
const CANCEL_WAIT: Duration = Duration::from_secs(10);
/// Placements of one order after connection losses before giving up.
const PLACE_ATTEMPTS: u32 = 3;

/// The orders of one worker's IB connection.
pub(super) struct IbOrders {
    book: KnownOrders,
    /// The book must be reconciled with the gateway before it is trusted: a new worker, or
    /// the connection was lost since.
    stale: AtomicBool,
    /// Updates taken from the update stream (to see that an answer came).
    updates: AtomicU64,
}

impl IbOrders {
    pub(super) fn new(events: EventSink) -> Arc<Self> {
        Arc::new(IbOrders {
            book: KnownOrders::new(events),
            stale: AtomicBool::new(true),
            updates: AtomicU64::new(0),
        })
    }

    /// The connection was lost: reconcile before the next order.
    pub(super) fn mark_stale(&self) {
        self.stale.store(true, Ordering::Release);
    }

    /// Reconciles the book with the gateway: every client's open orders, the completed
    /// orders and today's executions with a reference.
    pub(super) async fn reconcile(&self, client: &ibapi::Client) -> Result<(), RemoteError> {
        let open = collect(client.all_open_orders(), "open orders").await?;
        for item in open {
            match item {
                Orders::OrderData(d) => {
                    if let Some(report) = report_of(&d) {
                        if ours(d.order.client_id, client) {
                            self.book.take_report(report, Some(d.order_id));
                        } else {
                            // Another API client's order with one of our references: it is
                            // there (never placed again), but its id is that client's.
                            self.book
                                .lock()
                                .foreign
                                .insert(report.request.order_ref.clone(), d.order.client_id);
                            self.book.take_report(report, None);
                        }
                    }
                }
                Orders::OrderStatus(s) if ours(s.client_id, client) => self.book.take_status(&s),
                Orders::OrderStatus(_) => {}
            }
        }
        let completed = collect(client.completed_orders(false), "completed orders").await?;
        for item in completed {
            if let Orders::OrderData(d) = item {
                if let Some(report) = report_of(&d) {
                    self.book.take_report(report, None);
                }
            }
        }
        self.fetch_executions(client).await?;
        self.stale.store(false, Ordering::Release);
        tracing::info!(
            orders = self.book.lock().by_ref.len(),
            "orders reconciled with the gateway"
        );
        Ok(())
    }

    /// Reconciles if the book is not trusted.
    async fn reconciled(&self, client: &ibapi::Client) -> Result<(), RemoteError> {
        if self.stale.load(Ordering::Acquire) {
            self.reconcile(client).await?;
        }
        Ok(())
    }

    /// Today's executions with a reference, into the book.
    async fn fetch_executions(&self, client: &ibapi::Client) -> Result<(), RemoteError> {
        let items = collect(client.executions(ExecutionFilter::default()), "executions").await?;
        let mut commissions = Vec::new();
        for item in items {
            match item {
                Executions::ExecutionData(e) => {
                    if let Some(fill) = fill_of(&e.contract.symbol.to_string(), &e.execution) {
                        self.book.take_fill(fill);
                    }
                }
                Executions::CommissionReport(c) => commissions.push(c),
            }
        }
        for c in commissions {
            self.book.take_commission(&c.execution_id, c.commission);
        }
        Ok(())
    }
    /// Follows the order update stream until the connection is gone for good: every change
    /// of one of our orders and every fill is taken (and told). A stream that ends (the
    /// connection was lost) is opened again once `ibapi` has reconnected, and the book is
    /// marked for reconciliation.
    pub(super) async fn follow(self: Arc<Self>, client: Arc<ibapi::Client>) {
        loop {
            let mut updates = match client.order_update_stream().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!("order update stream not open: {e}");
                    self.mark_stale();
                    if reconnected(&client, RECONNECT_WAIT).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            while let Some(item) = updates.next().await {
                match item {
                    Ok(SubscriptionItem::Data(update)) => self.take_update(update),
                    Ok(SubscriptionItem::Notice(n)) => self.take_notice(&n),
                    Err(e) => {
                        tracing::debug!("order update stream: {e}");
                        break;
                    }
                }
            }
            self.mark_stale();
            if reconnected(&client, RECONNECT_WAIT).await.is_err() {
                return;
            }
        }
    }

    fn take_update(&self, update: OrderUpdate) {
        self.updates.fetch_add(1, Ordering::AcqRel);
        match update {
            OrderUpdate::OpenOrder(d) => {
                if let Some(report) = report_of(&d) {
                    self.book.take_report(report, Some(d.order_id));
                }
            }
            OrderUpdate::OrderStatus(s) => self.book.take_status(&s),
            OrderUpdate::ExecutionData(e) => {
                if let Some(fill) = fill_of(&e.contract.symbol.to_string(), &e.execution) {
                    self.book.take_fill(fill);
                }
            }
            OrderUpdate::CommissionReport(c) => {
                self.book.take_commission(&c.execution_id, c.commission)
            }
            OrderUpdate::OrderBound(_) => {}
        }
    }

    /// A notice about one of our orders: a rejection (IB 201 and the like) or a cancel (202).
    fn take_notice(&self, n: &ibapi::Notice) {
        let Some(order_ref) = n.request_id.and_then(|id| self.book.ref_of(id)) else {
            return;
        };
        let Some(known) = self.book.report(&order_ref) else {
            return;
        };
        // Only a placement's refusal ends an order here: 201 (or 203) before the order was
        // accepted. The same codes for a working order refuse a change, and 10147/10148 a
        // cancel: the order stands; its status says the rest.
        let status = match n.code {
            202 => OrderStatus::Cancelled,
            201 | 203 if known.status == OrderStatus::Pending => OrderStatus::Rejected,
            _ => {
                tracing::info!(%order_ref, code = n.code, "order notice: {}", n.message);
                return;
            }
        };
        tracing::info!(%order_ref, code = n.code, "order {status}: {}", n.message);
        self.book.take_report(
            OrderReport {
                status,
                reason: Some(format!("IB {}: {}", n.code, n.message)),
                ..known
            },
            None,
        );
    }

    /// Watches the gateway connection: after every loss and return, the book is reconciled
    /// at once (fills and cancels the gateway sent meanwhile are not replayed on the update
    /// stream), and what changed is told.
    pub(super) async fn watch_reconnects(self: Arc<Self>, client: Arc<ibapi::Client>) {
        let mut was_connected = client.is_connected();
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let connected = client.is_connected();
            if !connected {
                self.mark_stale();
            } else if !was_connected {
                tracing::info!("gateway connection back: reconciling orders");
                if let Err(e) = self.reconcile(&client).await {
                    tracing::warn!(
                        "orders not reconciled after the reconnection: {}",
                        e.message
                    );
                }
            }
            was_connected = connected;
        }
    }

    /// Waits until the order with this reference is past `Pending` (or final, with
    /// `until_final`), the connection is lost (`Ok(false)`), or `wait` passes (`Err`).
    async fn wait_for(
        &self,
        client: &ibapi::Client,
        order_ref: &str,
        until_final: bool,
        wait: Duration,
    ) -> Result<bool, ()> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let changed = self.book.changed.notified();
            let done = self.book.report(order_ref).is_some_and(|r| {
                if until_final {
                    r.status.is_final()
                } else {
                    r.status > OrderStatus::Pending
                }
            });
            if done {
                return Ok(true);
            }
            if !client.is_connected() || self.stale.load(Ordering::Acquire) {
                return Ok(false);
            }
            let poll = tokio::time::sleep(Duration::from_millis(50));
            tokio::select! {
                _ = changed => {}
                _ = poll => {}
                _ = tokio::time::sleep_until(deadline) => return Err(()),
            }
        }
    }

    /// Places `order` unless the gateway has one with its reference; answers once it is
    /// acknowledged.
    pub(super) async fn place(
        &self,
        client: &ibapi::Client,
        contract: &ibapi::contracts::Contract,
        order: &OrderRequest,
        account: Option<&str>,
    ) -> Result<OrderReport, RemoteError> {
        for attempt in 1..=PLACE_ATTEMPTS {
            self.reconciled(client).await?;
            if let Some(found) = self.known(&order.order_ref, order)? {
                return Ok(found);
            }
            if self.book.lock().submitted.contains(&order.order_ref) {
                // Submitted by this worker on this connection and not acknowledged yet: the
                // gateway has it or soon will. Never placed a second time; waited for again.
                return match self
                    .wait_for(client, &order.order_ref, false, ACK_WAIT)
                    .await
                {
                    Ok(true) => self
                        .book
                        .report(&order.order_ref)
                        .ok_or_else(|| unknown(&order.order_ref)),
                    _ => Err(not_acknowledged(&order.order_ref)),
                };
            }
            let order_id = client.next_order_id();
            let ib = ib_order(order, account);
            {
                let mut book = self.book.lock();
                book.ref_of.insert(order_id, order.order_ref.clone());
                book.submitted.insert(order.order_ref.clone());
                book.by_ref.insert(
                    order.order_ref.clone(),
                    OrderReport {
                        request: order.clone(),
                        broker_id: i64::from(order_id),
                        status: OrderStatus::Pending,
                        filled: 0.0,
                        avg_price: None,
                        reason: None,
                    },
                );
            }
            tracing::info!(order_ref = %order.order_ref, order_id, attempt, "placing order");
            if let Err(e) = client.submit_order(order_id, contract, &ib).await {
                // Written or not, the gateway may have it: find out before anything else.
                tracing::warn!(order_ref = %order.order_ref, "order not sent: {e}");
                self.forget_unseen(&order.order_ref);
                self.after_loss(client).await?;
                continue;
            }
            match self
                .wait_for(client, &order.order_ref, false, ACK_WAIT)
                .await
            {
                Ok(true) => {
                    if let Some(r) = self.book.report(&order.order_ref) {
                        return Ok(r);
                    }
                }
                Ok(false) => {
                    tracing::warn!(
                        order_ref = %order.order_ref,
                        "gateway connection lost before the order was acknowledged; \
                         looking for it once reconnected"
                    );
                    self.forget_unseen(&order.order_ref);
                    self.after_loss(client).await?;
                }
                Err(()) => return Err(not_acknowledged(&order.order_ref)),
            }
        }
        // The last reconciliation may have found it.
        if let Some(found) = self.known(&order.order_ref, order)? {
            return Ok(found);
        }
        Err(error(
            ErrorKind::Disconnected,
            format!(
                "order {} not placed: the gateway connection was lost {PLACE_ATTEMPTS} times",
                order.order_ref
            ),
        ))
    }

    /// The order with this reference if the gateway has shown it (in any state, Pending
    /// included: it is there, and is never placed again); an error if the reference names
    /// another order (another instrument, side or time in force).
    fn known(
        &self,
        order_ref: &str,
        order: &OrderRequest,
    ) -> Result<Option<OrderReport>, RemoteError> {
        let book = self.book.lock();
        if !book.seen.contains(order_ref) {
            return Ok(None);
        }
        let Some(found) = book.by_ref.get(order_ref).cloned() else {
            return Ok(None);
        };
        drop(book);
        same_order(&found, order)?;
        tracing::info!(
            order_ref,
            broker_id = found.broker_id,
            status = %found.status,
            "order already at the gateway; not placed again"
        );
        Ok(Some(found))
    }

    /// After a lost connection: forgets a placement the gateway has not shown, so that
    /// reconciliation alone says whether it exists.
    fn forget_unseen(&self, order_ref: &str) {
        let mut book = self.book.lock();
        book.submitted.remove(order_ref);
        if !book.seen.contains(order_ref) {
            book.by_ref.remove(order_ref);
        }
    }

    /// After a connection loss: waits for `ibapi` to reconnect, then reconciles.
    async fn after_loss(&self, client: &ibapi::Client) -> Result<(), RemoteError> {
        self.mark_stale();
        reconnected(client, RECONNECT_WAIT)
            .await
            .map_err(|e| error(ErrorKind::Disconnected, e))?;
        self.reconcile(client).await
    }

    /// Refuses to act on another API client's order by its id (the id is that client's, and
    /// may name another order of ours).
    fn own_order(&self, order_ref: &str) -> Result<(), RemoteError> {
        match self.book.lock().foreign.get(order_ref) {
            Some(client_id) => Err(error(
                ErrorKind::BadRequest,
                format!(
                    "order {order_ref} was placed by another API client (client id {client_id}): \
                     change or cancel it from there"
                ),
            )),
            None => Ok(()),
        }
    }

    /// The symbol of the order with this reference.
    pub(super) async fn symbol_of(
        &self,
        client: &ibapi::Client,
        order_ref: &str,
    ) -> Result<String, RemoteError> {
        self.reconciled(client).await?;
        self.book
            .report(order_ref)
            .map(|r| r.request.symbol)
            .ok_or_else(|| unknown(order_ref))
    }

    /// Changes a working order (the same order id, sent again with the new terms); its state
    /// after the gateway answered the change.
    pub(super) async fn modify(
        &self,
        client: &ibapi::Client,
        contract: &ibapi::contracts::Contract,
        change: &OrderChange,
        account: Option<&str>,
    ) -> Result<OrderReport, RemoteError> {
        self.reconciled(client).await?;
        let known = self
            .book
            .report(&change.order_ref)
            .ok_or_else(|| unknown(&change.order_ref))?;
        self.own_order(&change.order_ref)?;
        let changed = change
            .applied_to(&known)
            .map_err(|why| error(ErrorKind::BadRequest, why.to_string()))?;
        if changed == known.request {
            return Ok(known);
        }
        let id = i32::try_from(known.broker_id)
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| error(ErrorKind::BadRequest, "the order has no id to change"))?;
        let answered_before = self.updates.load(Ordering::Acquire);
        client
            .submit_order(id, contract, &ib_order(&changed, account))
            .await
            .map_err(|e| classify(&e))?;
        if let Some(r) = self.book.lock().by_ref.get_mut(&change.order_ref) {
            r.request = changed;
        }
        // The gateway answers a change with the order again.
        let deadline = tokio::time::Instant::now() + ACK_WAIT;
        while self.updates.load(Ordering::Acquire) == answered_before
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.book
            .report(&change.order_ref)
            .ok_or_else(|| unknown(&change.order_ref))
    }

    /// Cancels the order with this reference; its state after.
    pub(super) async fn cancel(
        &self,
        client: &ibapi::Client,
        order_ref: &str,
    ) -> Result<OrderReport, RemoteError> {
        self.reconciled(client).await?;
        let Some(known) = self.book.report(order_ref) else {
            return Err(unknown(order_ref));
        };
        if known.status.is_final() {
            return Ok(known);
        }
        self.own_order(order_ref)?;
        let id = i32::try_from(known.broker_id)
            .map_err(|_| error(ErrorKind::Internal, "order id out of range"))?;
        let mut sub = client
            .cancel_order(id, "")
            .await
            .map_err(|e| classify(&e))?;
        let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
        loop {
            if self
                .book
                .report(order_ref)
                .is_some_and(|r| r.status.is_final())
            {
                break;
            }
            match tokio::time::timeout_at(deadline, sub.next()).await {
                Ok(Some(Ok(SubscriptionItem::Data(ibapi::orders::CancelOrder::OrderStatus(
                    s,
                ))))) => self.book.take_status(&s),
                Ok(Some(Ok(SubscriptionItem::Notice(n)))) => self.take_notice(&n),
                Ok(Some(Err(ibapi::Error::Notice(n)))) => {
                    // 10147 not found, 10148 cannot be cancelled (already final).
                    tracing::info!(%order_ref, code = n.code, "cancel: {}", n.message);
                    break;
                }
                Ok(Some(Err(e))) => return Err(classify(&e)),
                Ok(None) => {
                    // The answer may come on the update stream instead.
                    let _ = self.wait_for(client, order_ref, true, CANCEL_WAIT).await;
                    break;
                }
                Err(_) => break,
            }
        }
        self.book
            .report(order_ref)
            .ok_or_else(|| error(ErrorKind::Internal, "order lost from the book"))
    }

    /// Cancels every working order (IB's global cancel); how many of ours were working.
    pub(super) async fn cancel_all(&self, client: &ibapi::Client) -> Result<u32, RemoteError> {
        self.reconciled(client).await?;
        let working: Vec<String> = self
            .book
            .lock()
            .by_ref
            .values()
            .filter(|r| !r.status.is_final())
            .map(|r| r.request.order_ref.clone())
            .collect();
        client.global_cancel().await.map_err(|e| classify(&e))?;
        // One deadline for all of them: the orders' lane is not held for long.
        let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
        for r in &working {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = self.wait_for(client, r, true, left).await;
        }
        Ok(working.len() as u32)
    }

    /// Every order with a reference the gateway knows, freshly reconciled.
    pub(super) async fn orders(
        &self,
        client: &ibapi::Client,
    ) -> Result<Vec<OrderReport>, RemoteError> {
        self.reconcile(client).await?;
        let mut all: Vec<OrderReport> = self.book.lock().by_ref.values().cloned().collect();
        all.sort_by_key(|r| r.broker_id);
        Ok(all)
    }

    /// Today's executions with a reference, oldest first.
    pub(super) async fn executions(
        &self,
        client: &ibapi::Client,
    ) -> Result<Vec<Fill>, RemoteError> {
        self.fetch_executions(client).await?;
        let mut fills: Vec<Fill> = self.book.lock().fills.values().cloned().collect();
        fills.sort_by(|a, b| (a.time, &a.exec_id).cmp(&(b.time, &b.exec_id)));
        Ok(fills)
    }
}

/// Whether an order or status of client `client_id` is this connection's (0: not said).
fn ours(client_id: i32, client: &ibapi::Client) -> bool {
    client_id == 0 || client_id == client.client_id()
}

/// A placement not acknowledged in time: its fate is unknown.
fn not_acknowledged(order_ref: &str) -> RemoteError {
    error(
        ErrorKind::Timeout,
        format!(
            "order {order_ref} not acknowledged within {} s; placing it again with the same \
             reference finds it if the gateway has it",
            ACK_WAIT.as_secs()
        ),
    )
}

/// Refuses a placement whose reference names another order.
fn same_order(found: &OrderReport, order: &OrderRequest) -> Result<(), RemoteError> {
    let f = &found.request;
    if f.symbol == order.symbol && f.side == order.side {
        return Ok(());
    }
    Err(error(
        ErrorKind::BadRequest,
        format!(
            "reference {} is already another order's: {} {} {}",
            order.order_ref, f.side, f.quantity, f.symbol
        ),
    ))
}

fn unknown(order_ref: &str) -> RemoteError {
    error(
        ErrorKind::UnknownOrder,
        format!("no order with reference {order_ref:?}"),
    )
}
