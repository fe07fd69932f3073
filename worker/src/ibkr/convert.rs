//! IB's orders, statuses and executions in the protocol's terms, and ours in IB's: the
//! order sent ([`ib_order`]), a status ([`status_of`]), a report of an open or completed
//! order ([`report_of`]), a fill ([`fill_of`]).
//!
//! Invariants: only orders and executions carrying a reference (IB's `orderRef`) are ours:
//! the others convert to `None`; a completed order's quantity is what filled plus what did
//! not; a status never claims more than the fills say.

use bridge::protocol::{
    Fill, OrderReport, OrderRequest, OrderStatus, OrderType, Side, TimeInForce,
};
use ibapi::orders::{order_builder, Action, ExecutionSide, OrderData, OrderStatusKind};

/// IB's order for ours, carrying its reference.
pub(super) fn ib_order(order: &OrderRequest, account: Option<&str>) -> ibapi::orders::Order {
    let mut ib = match order.order_type {
        OrderType::Market => order_builder::market_order(action(order.side), order.quantity),
        OrderType::Limit { price } => {
            order_builder::limit_order(action(order.side), order.quantity, price)
        }
    };
    ib.order_ref = order.order_ref.clone();
    ib.tif = match order.tif {
        TimeInForce::Day => ibapi::orders::TimeInForce::Day,
        TimeInForce::Gtc => ibapi::orders::TimeInForce::GoodTillCanceled,
    };
    if let Some(a) = account {
        ib.account = a.to_string();
    }
    ib
}

fn action(side: Side) -> Action {
    match side {
        Side::Buy => Action::Buy,
        Side::Sell => Action::Sell,
    }
}

/// Our status of an IB status, given what filled of how much.
pub(super) fn status_of(kind: &OrderStatusKind, filled: f64, quantity: f64) -> OrderStatus {
    match kind {
        OrderStatusKind::ApiPending | OrderStatusKind::PendingSubmit => OrderStatus::Pending,
        OrderStatusKind::Filled => OrderStatus::Filled,
        OrderStatusKind::Cancelled | OrderStatusKind::ApiCancelled => OrderStatus::Cancelled,
        OrderStatusKind::Inactive => OrderStatus::Rejected,
        _ if filled >= quantity && quantity > 0.0 => OrderStatus::Filled,
        _ if filled > 0.0 => OrderStatus::PartiallyFilled,
        _ => OrderStatus::Working,
    }
}

/// Our report of an open or completed order, if it carries a reference.
pub(super) fn report_of(d: &OrderData) -> Option<OrderReport> {
    let o = &d.order;
    if o.order_ref.is_empty() {
        return None;
    }
    // A completed order's total is what did not fill; an open one's is the whole order.
    let completed = d.order_id <= 0;
    let filled = if completed { o.filled_quantity } else { 0.0 };
    let quantity = if completed {
        o.total_quantity + o.filled_quantity
    } else {
        o.total_quantity
    };
    let side = match o.action {
        Action::Buy => Side::Buy,
        _ => Side::Sell,
    };
    let order_type = match (o.order_type.as_str(), o.limit_price) {
        ("LMT", Some(price)) => OrderType::Limit { price },
        _ => OrderType::Market,
    };
    let tif = match o.tif {
        ibapi::orders::TimeInForce::GoodTillCanceled => TimeInForce::Gtc,
        _ => TimeInForce::Day,
    };
    Some(OrderReport {
        request: OrderRequest {
            order_ref: o.order_ref.clone(),
            symbol: d.contract.symbol.to_string(),
            side,
            quantity,
            order_type,
            tif,
        },
        broker_id: i64::from(if completed { o.order_id } else { d.order_id }),
        status: status_of(&d.order_state.status, filled, quantity),
        filled,
        avg_price: None,
        reason: None,
    })
}

/// Our fill of an execution, if its order carries a reference.
pub(super) fn fill_of(symbol: &str, e: &ibapi::orders::Execution) -> Option<Fill> {
    if e.order_reference.is_empty() {
        return None;
    }
    Some(Fill {
        order_ref: e.order_reference.clone(),
        exec_id: e.execution_id.clone(),
        symbol: symbol.to_string(),
        side: match e.side {
            ExecutionSide::Bought => Side::Buy,
            ExecutionSide::Sold => Side::Sell,
        },
        quantity: e.shares,
        price: e.price,
        commission: None,
        time: base::unix_time::now().as_secs() as i64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ib_statuses_map_to_ours() {
        for (kind, filled, ours) in [
            (OrderStatusKind::PendingSubmit, 0.0, OrderStatus::Pending),
            (OrderStatusKind::Submitted, 0.0, OrderStatus::Working),
            (OrderStatusKind::PreSubmitted, 0.0, OrderStatus::Working),
            (
                OrderStatusKind::Submitted,
                4.0,
                OrderStatus::PartiallyFilled,
            ),
            (OrderStatusKind::Filled, 10.0, OrderStatus::Filled),
            (OrderStatusKind::Cancelled, 4.0, OrderStatus::Cancelled),
            (OrderStatusKind::Inactive, 0.0, OrderStatus::Rejected),
        ] {
            assert_eq!(status_of(&kind, filled, 10.0), ours, "{kind:?}");
        }
    }
}
