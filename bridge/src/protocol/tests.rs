//! Tests of the messages: every kind round-trips through the codec, and the rules the types
//! carry (valid prices, final replies).

use super::*;
use crate::codec;

#[test]
fn every_kind_round_trips() {
    let bar = Bar::sample();
    let bodies = vec![
        Body::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            build_id: "b".into(),
            pid: 1,
        }),
        Body::Request(Request::History(HistoryRequest {
            symbol: "SPY".into(),
            bar_seconds: 60,
            duration_seconds: 86_400,
            end: None,
        })),
        Body::Reply(Reply::Bars(vec![bar; 3])),
        Body::Reply(Reply::Error(RemoteError {
            kind: ErrorKind::UnknownSymbol,
            message: "ZZZZ".into(),
        })),
        Body::Event(Event::Bar { sub: 7, bar }),
        Body::Request(Request::PlaceOrder(OrderRequest {
            order_ref: "r-1".into(),
            symbol: "SPY".into(),
            side: Side::Sell,
            quantity: 3.0,
            order_type: OrderType::Limit { price: 401.5 },
            tif: TimeInForce::Gtc,
        })),
        Body::Event(Event::Fill(Box::new(Fill {
            order_ref: "r-1".into(),
            exec_id: "0001.1".into(),
            symbol: "SPY".into(),
            side: Side::Sell,
            quantity: 3.0,
            price: 401.5,
            commission: Some(1.0),
            time: 1_700_000_060,
        }))),
        Body::Reply(Reply::Account(Box::new(AccountSummary {
            account: "DU1".into(),
            net_liquidation: 1e6,
            cash: 5e5,
            buying_power: 2e6,
            currency: "USD".into(),
        }))),
        Body::Log(LogRecord {
            level: LogLevel::Debug,
            target: "worker".into(),
            message: "hi".into(),
            dropped_before: 2,
        }),
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let env = Envelope { id: i as u64, body };
        let bytes = codec::encode(&env).unwrap();
        assert_eq!(codec::decode::<Envelope>(&bytes).unwrap(), env);
    }
}

#[test]
fn a_bar_has_valid_prices_only_if_all_four_are_finite_and_positive() {
    let good = Bar {
        time: 0,
        open: 1.0,
        high: 2.0,
        low: 0.5,
        close: 1.5,
        volume: 0.0,
    };
    assert!(good.has_valid_prices());
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(!Bar { open: bad, ..good }.has_valid_prices(), "open {bad}");
        assert!(!Bar { high: bad, ..good }.has_valid_prices(), "high {bad}");
        assert!(!Bar { low: bad, ..good }.has_valid_prices(), "low {bad}");
        assert!(
            !Bar { close: bad, ..good }.has_valid_prices(),
            "close {bad}"
        );
    }
}

/// Live bars travel in the runner's event queue, every slot as large as the largest
/// event: the order events are boxed so that a bar's slot stays small.
#[test]
fn events_and_replies_stay_small() {
    assert!(
        std::mem::size_of::<Event>() <= 64,
        "{}",
        std::mem::size_of::<Event>()
    );
    assert!(
        std::mem::size_of::<Reply>() <= 64,
        "{}",
        std::mem::size_of::<Reply>()
    );
}

#[test]
fn only_batches_are_not_final() {
    assert!(!Reply::Bars(vec![]).is_final());
    assert!(Reply::HistoryEnd { count: 0 }.is_final());
    assert!(Reply::Pong { payload: vec![] }.is_final());
}
