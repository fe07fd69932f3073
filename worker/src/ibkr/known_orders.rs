//! What one worker knows of the orders with a reference at IB ([`KnownOrders`]): their last
//! reports, which order id is which reference, the fills, and which references the gateway
//! has shown; every change taken is told as an event.
//!
//! Invariants: an order's state only moves forward (a report that is not newer is dropped);
//! a final order stays final; a fill is told once, and again only when its commission
//! arrives; an execution is a trace of its order, so a reference with a fill is never placed
//! again.

use std::collections::{HashMap, HashSet};

use bridge::protocol::{
    Event, Fill, OrderReport, OrderRequest, OrderStatus, OrderType, TimeInForce,
};
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::Notify;

use super::convert::status_of;
use crate::backend::EventSink;

/// What the worker knows of the orders with a reference.
#[derive(Debug, Default)]
pub(super) struct Known {
    pub(super) by_ref: HashMap<String, OrderReport>,
    /// The reference of each order id this worker placed or saw.
    pub(super) ref_of: HashMap<i32, String>,
    /// Fills by execution id.
    pub(super) fills: HashMap<String, Fill>,
    /// References the gateway has shown (an order, a status, an execution, a notice).
    pub(super) seen: HashSet<String>,
    /// References this worker submitted on the current connection, not yet shown.
    pub(super) submitted: HashSet<String>,
    /// References of orders another API client placed, with its client id.
    pub(super) foreign: HashMap<String, i32>,
}

/// The book of one worker's orders, and who is told of its changes.
pub(super) struct KnownOrders {
    book: Mutex<Known>,
    /// Notified whenever a report is taken.
    pub(super) changed: Notify,
    events: EventSink,
}

impl KnownOrders {
    /// An empty book telling `events`.
    pub(super) fn new(events: EventSink) -> Self {
        KnownOrders {
            book: Mutex::new(Known::default()),
            changed: Notify::new(),
            events,
        }
    }

    /// The book itself, locked.
    pub(super) fn lock(&self) -> MutexGuard<'_, Known> {
        self.book.lock()
    }

    /// Takes a report: kept and told if it moves the order forward.
    pub(super) fn take_report(&self, report: OrderReport, order_id: Option<i32>) {
        let mut book = self.book.lock();
        if let Some(id) = order_id.filter(|id| *id > 0) {
            book.ref_of.insert(id, report.request.order_ref.clone());
        }
        book.seen.insert(report.request.order_ref.clone());
        book.submitted.remove(&report.request.order_ref);
        let forward = match book.by_ref.get(&report.request.order_ref) {
            None => true,
            Some(known) => {
                !known.status.is_final()
                    && (report.status > known.status || report.filled > known.filled)
            }
        };
        if !forward {
            return;
        }
        let merged = match book.by_ref.get(&report.request.order_ref) {
            Some(known) => OrderReport {
                status: report.status.max(known.status),
                filled: report.filled.max(known.filled),
                avg_price: if report.filled >= known.filled {
                    report.avg_price.or(known.avg_price)
                } else {
                    known.avg_price
                },
                reason: report.reason.or_else(|| known.reason.clone()),
                broker_id: if report.broker_id > 0 {
                    report.broker_id
                } else {
                    known.broker_id
                },
                request: known.request.clone(),
            },
            None => report,
        };
        book.by_ref
            .insert(merged.request.order_ref.clone(), merged.clone());
        drop(book);
        (self.events)(Event::Order(Box::new(merged)));
        self.changed.notify_waiters();
    }

    /// Takes a fill: told once, and again when its commission arrives.
    pub(super) fn take_fill(&self, fill: Fill) {
        let mut book = self.book.lock();
        match book.fills.get_mut(&fill.exec_id) {
            Some(known) if known.commission.is_none() && fill.commission.is_some() => {
                known.commission = fill.commission;
            }
            Some(_) => return,
            None => {
                book.fills.insert(fill.exec_id.clone(), fill.clone());
            }
        }
        if !book.by_ref.contains_key(&fill.order_ref) {
            // An execution is a trace of the order too: even if no listing shows the order
            // any more, its reference is never placed again.
            book.by_ref.insert(
                fill.order_ref.clone(),
                OrderReport {
                    request: OrderRequest {
                        order_ref: fill.order_ref.clone(),
                        symbol: fill.symbol.clone(),
                        side: fill.side,
                        quantity: fill.quantity,
                        order_type: OrderType::Market,
                        tif: TimeInForce::Day,
                    },
                    broker_id: 0,
                    status: OrderStatus::Filled,
                    filled: fill.quantity,
                    avg_price: Some(fill.price),
                    reason: None,
                },
            );
        }
        book.seen.insert(fill.order_ref.clone());
        drop(book);
        (self.events)(Event::Fill(Box::new(fill)));
    }

    /// The commission of an execution already seen.
    pub(super) fn take_commission(&self, exec_id: &str, commission: f64) {
        let fill = self.book.lock().fills.get(exec_id).cloned();
        if let Some(mut fill) = fill {
            fill.commission = Some(commission);
            self.take_fill(fill);
        }
    }

    /// The reference of order id `id`, if it is one of ours.
    pub(super) fn ref_of(&self, id: i32) -> Option<String> {
        self.book.lock().ref_of.get(&id).cloned()
    }

    pub(super) fn report(&self, order_ref: &str) -> Option<OrderReport> {
        self.book.lock().by_ref.get(order_ref).cloned()
    }

    pub(super) fn take_status(&self, s: &ibapi::orders::OrderStatus) {
        let Some(order_ref) = self.ref_of(s.order_id) else {
            return;
        };
        let Some(known) = self.report(&order_ref) else {
            return;
        };
        let status = status_of(&s.status, s.filled, known.request.quantity);
        self.take_report(
            OrderReport {
                status,
                filled: s.filled,
                avg_price: s.average_fill_price.filter(|p| *p > 0.0),
                reason: None,
                broker_id: i64::from(s.order_id),
                request: known.request,
            },
            Some(s.order_id),
        );
    }
}
