//! The fake gateway's broker against the real `ibapi` client, so that its order messages are
//! checked by `ibapi`'s own decoders and routing: a market order acknowledged and filled on
//! its `place_order` stream; the fill seen again through executions, positions and the
//! account summary; a resting limit order in the open orders, cancelled, then among the
//! completed orders; cancels of unknown and finished orders; a rejected symbol; modifying an
//! order by placing it again; acknowledgements held back; the next valid id across
//! connections; a connection dropped right after an order was received; another client's
//! orders seen and cancelled by a global cancel.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use ibapi::orders::{CancelOrder, Executions, OrderStatusKind};
use ibapi::prelude::*;
use tests::gateway::{codes, orders::status, Behaviour, Gateway};

mod common;
use common::{eventually, gateway, reconnected, runtime, PROMPTLY};

type Item<T> = Result<SubscriptionItem<T>, Error>;

async fn connect(gw: &Gateway, client_id: i32) -> Client {
    Client::connect(&gw.address(), client_id).await.unwrap()
}

/// The next item of `sub` within [`PROMPTLY`]: `None` when the stream ended.
async fn next<T, S>(sub: &mut S, what: &str) -> Option<Item<T>>
where
    S: StreamExt<Item = Item<T>> + Unpin,
{
    match tokio::time::timeout(PROMPTLY, sub.next()).await {
        Ok(item) => item,
        Err(_) => panic!("{what}: nothing within {PROMPTLY:?}"),
    }
}

/// The data items of `sub` until `last` matches one (included); a notice, an error or the
/// end of the stream fails the test.
async fn data_until<T: std::fmt::Debug, S>(
    sub: &mut S,
    what: &str,
    last: impl Fn(&T) -> bool,
) -> Vec<T>
where
    S: StreamExt<Item = Item<T>> + Unpin,
{
    let mut items = Vec::new();
    loop {
        match next(sub, what).await {
            Some(Ok(SubscriptionItem::Data(d))) => {
                let done = last(&d);
                items.push(d);
                if done {
                    return items;
                }
            }
            other => panic!("{what}: expected data after {items:?}, got {other:?}"),
        }
    }
}

/// Every item of `sub` until it ends.
async fn all<T, S>(sub: &mut S, what: &str) -> Vec<Item<T>>
where
    S: StreamExt<Item = Item<T>> + Unpin,
{
    let mut items = Vec::new();
    while let Some(item) = next(sub, what).await {
        items.push(item);
    }
    items
}

/// The data of `items`; a notice or an error fails the test.
fn data<T: std::fmt::Debug>(items: Vec<Item<T>>) -> Vec<T> {
    items
        .into_iter()
        .map(|i| match i {
            Ok(SubscriptionItem::Data(d)) => d,
            other => panic!("expected data, got {other:?}"),
        })
        .collect()
}

/// The items `sub` yields within 50 ms, and whether it has ended.
async fn ready<T, S>(sub: &mut S) -> (Vec<Item<T>>, bool)
where
    S: StreamExt<Item = Item<T>> + Unpin,
{
    let mut items = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(50), sub.next()).await {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return (items, true),
            Err(_) => return (items, false),
        }
    }
}

/// Drops an order's `place_order` subscription and lets ibapi release the order's route:
/// while the route is registered, ibapi delivers that order's executions there, even those
/// answering an `executions()` request.
async fn release(sub: Subscription<PlaceOrder>) {
    drop(sub);
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn is_commission(p: &PlaceOrder) -> bool {
    matches!(p, PlaceOrder::CommissionReport(_))
}

fn is_status(p: &PlaceOrder, kind: OrderStatusKind) -> bool {
    matches!(p, PlaceOrder::OrderStatus(s) if s.status == kind)
}

async fn market(
    client: &Client,
    symbol: &str,
    buy: bool,
    quantity: f64,
    order_ref: &str,
) -> (i32, Subscription<PlaceOrder>) {
    let contract = Contract::stock(symbol).build();
    let builder = client.order(&contract);
    let builder = if buy {
        builder.buy(quantity)
    } else {
        builder.sell(quantity)
    };
    let mut order = builder.market().build_order().unwrap();
    order.order_ref = order_ref.into();
    let id = client.next_order_id();
    let sub = client.place_order(id, &contract, &order).await.unwrap();
    (id, sub)
}

async fn limit_buy(
    client: &Client,
    symbol: &str,
    quantity: f64,
    limit: f64,
    order_ref: &str,
    id: i32,
) -> Subscription<PlaceOrder> {
    let contract = Contract::stock(symbol).build();
    let mut order = client
        .order(&contract)
        .buy(quantity)
        .limit(limit)
        .build_order()
        .unwrap();
    order.order_ref = order_ref.into();
    client.place_order(id, &contract, &order).await.unwrap()
}

#[test]
fn a_market_order_is_acknowledged_then_filled_on_its_place_order_stream() {
    let gw = gateway(Behaviour::default());
    let price = Gateway::price("AAPL");
    let (id, items) = runtime().block_on(async {
        let client = connect(&gw, 31).await;
        let (id, mut sub) = market(&client, "AAPL", true, 10.0, "mkt-1").await;
        let items = data_until(&mut sub, "the fill", is_commission).await;
        (id, items)
    });
    assert_eq!(items.len(), 6, "{items:#?}");
    let PlaceOrder::OpenOrder(open) = &items[0] else {
        panic!("first an open order: {items:#?}")
    };
    assert_eq!(open.order_id, id);
    assert_eq!(open.order_state.status, OrderStatusKind::Submitted);
    assert_eq!(open.order.order_ref, "mkt-1");
    assert_eq!(open.order.client_id, 31);
    assert_eq!(open.order.total_quantity, 10.0);
    assert_eq!(open.contract.symbol.to_string(), "AAPL");
    assert!(open.contract.contract_id > 0);
    let PlaceOrder::OrderStatus(submitted) = &items[1] else {
        panic!("then its status: {items:#?}")
    };
    assert_eq!(submitted.status, OrderStatusKind::Submitted);
    assert_eq!((submitted.filled, submitted.remaining), (0.0, 10.0));
    let PlaceOrder::ExecutionData(fill) = &items[2] else {
        panic!("then the fill: {items:#?}")
    };
    assert_eq!(fill.request_id, -1, "a live fill");
    assert_eq!(fill.execution.order_id, id);
    assert_eq!(fill.execution.order_reference, "mkt-1");
    assert_eq!(fill.execution.side, ExecutionSide::Bought);
    assert_eq!((fill.execution.shares, fill.execution.price), (10.0, price));
    assert_eq!(fill.execution.account_number, "DU1234567");
    let PlaceOrder::OrderStatus(filled) = &items[3] else {
        panic!("then filled: {items:#?}")
    };
    assert_eq!(filled.status, OrderStatusKind::Filled);
    assert_eq!((filled.filled, filled.remaining), (10.0, 0.0));
    assert_eq!(filled.average_fill_price, Some(price));
    assert_eq!(filled.perm_id, open.order.perm_id);
    let PlaceOrder::OpenOrder(open_filled) = &items[4] else {
        panic!("then the open order, filled: {items:#?}")
    };
    assert_eq!(open_filled.order_state.status, OrderStatusKind::Filled);
    let PlaceOrder::CommissionReport(commission) = &items[5] else {
        unreachable!()
    };
    assert_eq!(commission.execution_id, fill.execution.execution_id);
    assert_eq!(commission.commission, 1.0);
    assert_eq!(commission.currency, "USD");

    let book = gw.orders();
    assert_eq!(book.len(), 1);
    assert_eq!(book[0].order_id, id);
    assert_eq!(book[0].client_id, 31);
    assert_eq!(book[0].status, status::FILLED);
    assert_eq!((book[0].filled, book[0].avg_price), (10.0, price));
    assert_eq!(gw.place_order_messages("mkt-1"), 1);
    assert_eq!(gw.seen().orders_placed, [(id, "mkt-1".to_string())]);
    let executions = gw.executions();
    assert_eq!(executions.len(), 1);
    assert_eq!(executions[0].exec_id, fill.execution.execution_id);
}

#[test]
fn a_fill_shows_in_executions_positions_and_the_account_summary() {
    let gw = gateway(Behaviour::default());
    let price = Gateway::price("MSFT");
    runtime().block_on(async {
        let client = connect(&gw, 32).await;
        let (_, mut sub) = market(&client, "MSFT", true, 300.0, "fill-1").await;
        data_until(&mut sub, "the buy", is_commission).await;
        release(sub).await;
        let (_, mut sub) = market(&client, "MSFT", false, 100.0, "fill-2").await;
        data_until(&mut sub, "the sale", is_commission).await;
        release(sub).await;

        let mut executions = client.executions(ExecutionFilter::default()).await.unwrap();
        let items = data(all(&mut executions, "executions").await);
        assert_eq!(items.len(), 4, "{items:#?}");
        let (Executions::ExecutionData(buy), Executions::CommissionReport(buy_fee)) =
            (&items[0], &items[1])
        else {
            panic!("each execution followed by its commission: {items:#?}")
        };
        assert_eq!(buy.execution.order_reference, "fill-1");
        assert_eq!(buy.execution.side, ExecutionSide::Bought);
        assert_ne!(buy.request_id, -1, "an answer, not a live fill");
        assert_eq!(buy_fee.execution_id, buy.execution.execution_id);
        assert_eq!(buy_fee.commission, 1.5); // 0.005 x 300
        let (Executions::ExecutionData(sale), Executions::CommissionReport(sale_fee)) =
            (&items[2], &items[3])
        else {
            panic!("each execution followed by its commission: {items:#?}")
        };
        assert_eq!(sale.execution.order_reference, "fill-2");
        assert_eq!(sale.execution.side, ExecutionSide::Sold);
        assert_eq!(sale_fee.commission, 1.0); // the minimum

        let mut positions = client.positions().await.unwrap();
        let first = data_until(&mut positions, "positions", |p| {
            matches!(p, PositionUpdate::PositionEnd)
        })
        .await;
        let [PositionUpdate::Position(p), PositionUpdate::PositionEnd] = &first[..] else {
            panic!("one position, then the end: {first:#?}")
        };
        assert_eq!(p.account, "DU1234567");
        assert_eq!(p.contract.symbol.to_string(), "MSFT");
        assert_eq!((p.position, p.average_cost), (200.0, price));
        drop(positions);

        let tags = ["NetLiquidation", "TotalCashValue", "BuyingPower"];
        let mut summary = client
            .account_summary(&AccountGroup("All".into()), &tags)
            .await
            .unwrap();
        let rows = data_until(&mut summary, "account summary", |r| {
            matches!(r, AccountSummaryResult::End)
        })
        .await;
        let value = |tag: &str| -> f64 {
            rows.iter()
                .find_map(|r| match r {
                    AccountSummaryResult::Summary(s) if s.tag == tag => {
                        assert_eq!(s.account, "DU1234567");
                        assert_eq!(s.currency, "USD");
                        Some(s.value.parse().unwrap())
                    }
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no {tag} in {rows:#?}"))
        };
        let cash = 1_000_000.0 - 300.0 * price - 1.5 + 100.0 * price - 1.0;
        assert_eq!(rows.len(), 4, "three figures, then the end: {rows:#?}");
        assert!((value("TotalCashValue") - cash).abs() < 0.01);
        assert!((value("NetLiquidation") - (cash + 200.0 * price)).abs() < 0.01);
        assert!((value("BuyingPower") - 4.0 * (cash + 200.0 * price)).abs() < 0.04);
        client.disconnect().await;
    });
    let positions = gw.positions();
    assert_eq!(positions.len(), 1);
    assert_eq!(positions[0].quantity, 200.0);
}

#[test]
fn a_resting_limit_order_is_open_then_cancelled_then_completed() {
    let gw = gateway(Behaviour::default());
    let below = Gateway::price("NVDA") - 20.0;
    runtime().block_on(async {
        let client = connect(&gw, 33).await;
        let id = client.next_order_id();
        let mut sub = limit_buy(&client, "NVDA", 5.0, below, "rest-1", id).await;
        let acks = data_until(&mut sub, "the acknowledgement", |p| {
            is_status(p, OrderStatusKind::Submitted)
        })
        .await;
        assert!(matches!(&acks[0], PlaceOrder::OpenOrder(o) if o.order.limit_price == Some(below)));
        let (more, _) = ready(&mut sub).await;
        assert!(more.is_empty(), "it rests: {more:?}");

        let mut open = client.all_open_orders().await.unwrap();
        let listed = data(all(&mut open, "open orders").await);
        let [Orders::OrderData(o), Orders::OrderStatus(s)] = &listed[..] else {
            panic!("the order and its status: {listed:#?}")
        };
        assert_eq!((o.order_id, o.order.order_ref.as_str()), (id, "rest-1"));
        assert_eq!(o.order_state.status, OrderStatusKind::Submitted);
        assert_eq!((s.order_id, s.remaining), (id, 5.0));

        let mut cancel = client.cancel_order(id, "").await.unwrap();
        match next(&mut cancel, "the cancel").await {
            Some(Ok(SubscriptionItem::Data(CancelOrder::OrderStatus(s)))) => {
                assert_eq!((s.order_id, s.status), (id, OrderStatusKind::Cancelled));
            }
            other => panic!("expected the cancelled status, got {other:?}"),
        }
        match next(&mut cancel, "the cancel").await {
            Some(Ok(SubscriptionItem::Notice(n))) => {
                assert_eq!(n.code, codes::ORDER_CANCELLED);
                assert!(n.is_cancellation(), "{n:?}");
            }
            other => panic!("expected notice 202, got {other:?}"),
        }
        // The place_order stream got a copy of the open orders answer (ibapi routes those
        // frames to the order's route too), then ended: the cancel took the route over.
        let (rest, ended) = ready(&mut sub).await;
        assert!(ended, "{rest:?}");
        assert_eq!(rest.len(), 2, "{rest:?}");
        assert!(matches!(&rest[0],
            Ok(SubscriptionItem::Data(PlaceOrder::OpenOrder(o))) if o.order.order_ref == "rest-1"));
        assert!(matches!(&rest[1],
            Ok(SubscriptionItem::Data(PlaceOrder::OrderStatus(s))) if s.status == OrderStatusKind::Submitted));

        let mut done = client.completed_orders(false).await.unwrap();
        let completed = data(all(&mut done, "completed orders").await);
        let [Orders::OrderData(c)] = &completed[..] else {
            panic!("one completed order: {completed:#?}")
        };
        assert_eq!(c.order_id, -1, "ibapi's sentinel for completed orders");
        assert_eq!((c.order.order_id, c.order.order_ref.as_str()), (id, "rest-1"));
        assert_eq!(c.order_state.status, OrderStatusKind::Cancelled);
        assert!(!c.order_state.completed_time.is_empty());

        let mut open = client.all_open_orders().await.unwrap();
        assert!(data(all(&mut open, "open orders").await).is_empty());

        // Cancelled already: 10148, an error that ends the cancel stream.
        let mut again = client.cancel_order(id, "").await.unwrap();
        match next(&mut again, "a second cancel").await {
            Some(Err(Error::Notice(n))) => {
                assert_eq!(n.code, codes::CANNOT_CANCEL);
                assert!(n.message.contains("state: Cancelled"), "{n:?}");
            }
            other => panic!("expected 10148, got {other:?}"),
        }
        // Never placed: 10147.
        let mut unknown = client.cancel_order(id + 100, "").await.unwrap();
        match next(&mut unknown, "an unknown cancel").await {
            Some(Err(Error::Notice(n))) => assert_eq!(n.code, codes::CANCEL_NOT_FOUND),
            other => panic!("expected 10147, got {other:?}"),
        }
        client.disconnect().await;
    });
    assert_eq!(gw.orders()[0].status, status::CANCELLED);
    assert_eq!(gw.seen().order_cancels.len(), 3);
}

#[test]
fn a_rejected_symbol_ends_the_place_order_stream_with_201_and_is_inactive() {
    let gw = gateway(Behaviour {
        reject_orders: vec!["GME".into()],
        ..Behaviour::default()
    });
    runtime().block_on(async {
        let client = connect(&gw, 34).await;
        let (id, mut sub) = market(&client, "GME", true, 1000.0, "rej-1").await;
        match next(&mut sub, "the rejection").await {
            Some(Err(Error::Notice(n))) => {
                assert_eq!(n.code, codes::ORDER_REJECTED);
                assert_eq!(n.request_id, Some(id));
                assert!(n.message.contains("insufficient buying power"), "{n:?}");
            }
            other => panic!("expected 201, got {other:?}"),
        }
        // The stream has ended: the Inactive status after the error is not on it.
        assert!(next(&mut sub, "after the rejection").await.is_none());

        let mut done = client.completed_orders(false).await.unwrap();
        let completed = data(all(&mut done, "completed orders").await);
        let [Orders::OrderData(c)] = &completed[..] else {
            panic!("one completed order: {completed:#?}")
        };
        assert_eq!(c.order.order_ref, "rej-1");
        assert_eq!(c.order_state.status, OrderStatusKind::Inactive);
        client.disconnect().await;
    });
    let book = gw.orders();
    assert_eq!(book[0].status, status::INACTIVE);
    assert!(gw.executions().is_empty());
    assert!(gw.positions().is_empty());
}

#[test]
fn placing_an_order_again_with_its_id_modifies_it() {
    let gw = gateway(Behaviour::default());
    let price = Gateway::price("AMD");
    runtime().block_on(async {
        let client = connect(&gw, 35).await;
        let id = client.next_order_id();
        let mut sub = limit_buy(&client, "AMD", 5.0, price - 10.0, "mod-1", id).await;
        data_until(&mut sub, "resting", |p| {
            is_status(p, OrderStatusKind::Submitted)
        })
        .await;
        // The same id, a marketable limit and another quantity: the same order, filled.
        let mut sub = limit_buy(&client, "AMD", 7.0, price + 10.0, "mod-1", id).await;
        let items = data_until(&mut sub, "modified", is_commission).await;
        assert!(items.iter().any(|p| matches!(p,
            PlaceOrder::ExecutionData(x) if x.execution.shares == 7.0 && x.execution.price == price)));
        // Filled: placing it again is refused (104), on the stream as an error.
        let mut sub = limit_buy(&client, "AMD", 9.0, price + 10.0, "mod-1", id).await;
        match next(&mut sub, "a filled order modified").await {
            Some(Err(Error::Notice(n))) => assert_eq!(n.code, codes::CANNOT_MODIFY_FILLED_ORDER),
            other => panic!("expected 104, got {other:?}"),
        }
        client.disconnect().await;
    });
    let book = gw.orders();
    assert_eq!(book.len(), 1, "{book:#?}");
    assert_eq!((book[0].quantity, book[0].filled), (7.0, 7.0));
    assert_eq!(gw.place_order_messages("mod-1"), 3);
    assert_eq!(gw.executions().len(), 1);
}

#[test]
fn acknowledgements_held_back_come_later_and_a_cancel_meanwhile_wins() {
    let delay = Duration::from_millis(400);
    let gw = gateway(Behaviour {
        order_ack_delay: delay,
        ..Behaviour::default()
    });
    runtime().block_on(async {
        let client = connect(&gw, 36).await;
        let start = Instant::now();
        let (id, mut sub) = market(&client, "TSLA", true, 2.0, "slow-1").await;
        assert!(
            eventually(|| gw.orders().len() == 1).await,
            "recorded at once"
        );
        assert_eq!(gw.orders()[0].status, status::PENDING_SUBMIT);
        let items = data_until(&mut sub, "the slow fill", is_commission).await;
        assert!(start.elapsed() >= delay, "{:?}", start.elapsed());
        assert!(matches!(&items[0], PlaceOrder::OpenOrder(o) if o.order_id == id));

        // Cancelled before its acknowledgement: never acknowledged, never filled.
        let (id, sub) = market(&client, "TSLA", true, 3.0, "slow-2").await;
        drop(sub);
        let mut cancel = client.cancel_order(id, "").await.unwrap();
        match next(&mut cancel, "the cancel").await {
            Some(Ok(SubscriptionItem::Data(CancelOrder::OrderStatus(s)))) => {
                assert_eq!(s.status, OrderStatusKind::Cancelled);
            }
            other => panic!("expected the cancelled status, got {other:?}"),
        }
        tokio::time::sleep(delay + Duration::from_millis(200)).await;
        let (late, _) = ready(&mut cancel).await;
        assert!(
            late.iter().all(
                |i| matches!(i, Ok(SubscriptionItem::Notice(n)) if n.code == codes::ORDER_CANCELLED)
            ),
            "only the 202 notice follows: {late:?}"
        );
        client.disconnect().await;
    });
    let book = gw.orders();
    assert_eq!(book[1].status, status::CANCELLED);
    assert_eq!(gw.executions().len(), 1);
}

#[test]
fn the_next_valid_id_is_above_every_id_used_on_any_connection() {
    let gw = gateway(Behaviour::default());
    runtime().block_on(async {
        let first = connect(&gw, 37).await;
        assert_eq!(first.next_order_id(), 1);
        let sub = limit_buy(&first, "INTC", 1.0, 1.0, "ids-1", 41).await;
        drop(sub);
        assert!(eventually(|| gw.orders().len() == 1).await);
        // Asked on the same connection (RequestIds).
        assert_eq!(first.next_valid_order_id().await.unwrap(), 42);
        // A later connection, another client: its handshake says so.
        let second = connect(&gw, 38).await;
        assert_eq!(second.next_order_id(), 42);
        first.disconnect().await;
        second.disconnect().await;
    });
}

#[test]
fn a_connection_dropped_right_after_an_order_leaves_the_order_at_the_broker() {
    let gw = gateway(Behaviour {
        drop_after_order: Some(0),
        ..Behaviour::default()
    });
    runtime().block_on(async {
        let client = connect(&gw, 39).await;
        let (id, mut sub) = market(&client, "META", true, 4.0, "drop-1").await;
        // No acknowledgement: the stream ends with the reset.
        match next(&mut sub, "the dropped order").await {
            Some(Err(Error::ConnectionReset)) => {}
            other => panic!("expected the stream to end with a reset, got {other:?}"),
        }
        let book = gw.orders();
        assert_eq!(book.len(), 1);
        assert_eq!(
            (book[0].order_id, book[0].order_ref.as_str()),
            (id, "drop-1")
        );
        assert_eq!(book[0].status, status::FILLED, "a market order goes on");
        // The gateway records the close once its connection's thread has ended, which
        // may be a moment after the client saw the reset.
        assert!(eventually(|| gw.connections()[0].closed_by_gateway).await);

        // ibapi reconnects; the order is found again, and its id is not handed out again.
        reconnected(&client, "ibapi reconnects").await;
        assert!(client.next_order_id() > id);
        let mut done = client.completed_orders(false).await.unwrap();
        let completed = data(all(&mut done, "completed orders").await);
        assert!(
            completed.iter().any(|o| matches!(o,
                Orders::OrderData(c) if c.order.order_ref == "drop-1"
                    && c.order_state.status == OrderStatusKind::Filled)),
            "{completed:#?}"
        );
        let mut executions = client.executions(ExecutionFilter::default()).await.unwrap();
        let fills = data(all(&mut executions, "executions").await);
        assert!(
            fills.iter().any(|x| matches!(x,
                Executions::ExecutionData(x) if x.execution.order_reference == "drop-1")),
            "{fills:#?}"
        );
        client.disconnect().await;
    });
    assert_eq!(gw.place_order_messages("drop-1"), 1);
    assert_eq!(gw.connections().len(), 2);
}

#[test]
fn another_client_sees_the_working_orders_and_a_global_cancel_ends_them() {
    let gw = gateway(Behaviour::default());
    runtime().block_on(async {
        let owner = connect(&gw, 40).await;
        let other = connect(&gw, 41).await;
        let id = owner.next_order_id();
        let mut sub = limit_buy(&owner, "QQQ", 3.0, 1.0, "mine-1", id).await;
        data_until(&mut sub, "resting", |p| {
            is_status(p, OrderStatusKind::Submitted)
        })
        .await;

        let mut all_open = other.all_open_orders().await.unwrap();
        let listed = data(all(&mut all_open, "every client's open orders").await);
        assert!(
            listed.iter().any(|o| matches!(o,
                Orders::OrderData(d) if d.order.order_ref == "mine-1" && d.order.client_id == 40)),
            "{listed:#?}"
        );
        let mut own = other.open_orders().await.unwrap();
        assert!(data(all(&mut own, "its own open orders").await).is_empty());

        other.global_cancel().await.unwrap();
        match next(&mut sub, "the owner's stream").await {
            Some(Ok(SubscriptionItem::Data(PlaceOrder::OrderStatus(s)))) => {
                assert_eq!(s.status, OrderStatusKind::Cancelled);
            }
            other => panic!("expected the cancelled status, got {other:?}"),
        }
        match next(&mut sub, "the owner's stream").await {
            Some(Ok(SubscriptionItem::Notice(n))) => assert_eq!(n.code, codes::ORDER_CANCELLED),
            other => panic!("expected notice 202, got {other:?}"),
        }
        owner.disconnect().await;
        other.disconnect().await;
    });
    assert_eq!(gw.orders()[0].status, status::CANCELLED);
    assert_eq!(gw.seen().global_cancels, 1);
}
