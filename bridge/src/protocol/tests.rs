//! Tests of the messages: every kind round-trips through the codec, and the rules the types
//! carry (valid prices, final replies).

use super::*;
use crate::codec::{self, Wire, FIXED_MAX};

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
        Body::Request(Request::FoldedOrders),
        Body::Reply(Reply::Folded(vec![
            RefRun {
                prefix: "0a1b2c3d".into(),
                numbers: Some((1, 5_000)),
            },
            RefRun {
                prefix: "by-hand".into(),
                numbers: None,
            },
        ])),
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

#[test]
fn a_reference_is_cut_at_its_plain_number_and_runs_hold_what_they_say() {
    for (r, cut) in [
        ("0a1b2c3d-17", ("0a1b2c3d", Some(17))),
        ("a-b-0", ("a-b", Some(0))),
        ("x", ("x", None)),
        ("a-07", ("a-07", None)),
        ("-5", ("-5", None)),
        ("a-", ("a-", None)),
        (
            "a-99999999999999999999999",
            ("a-99999999999999999999999", None),
        ),
    ] {
        assert_eq!(RefRun::split(r), cut, "{r}");
    }
    let run = RefRun {
        prefix: "t".into(),
        numbers: Some((3, 5)),
    };
    assert_eq!(run.len(), 3);
    assert!(run.contains("t-3") && run.contains("t-5"));
    assert!(!run.contains("t-6") && !run.contains("t") && !run.contains("u-4"));
    assert_eq!(run.to_string(), "t-3 to t-5");
    let whole = RefRun {
        prefix: "t-05".into(),
        numbers: None,
    };
    assert_eq!(whole.len(), 1);
    assert!(whole.contains("t-05") && !whole.contains("t-5"));
}

// --- the live bar's fixed layout ---------------------------------------------------------

fn bar_event(id: u64, sub: u32) -> Envelope {
    Envelope {
        id,
        body: Body::Event(Event::Bar {
            sub,
            bar: Bar {
                time: -5,
                open: f64::MIN_POSITIVE,
                high: f64::MAX,
                low: -0.0,
                close: 1.5,
                volume: f64::NAN,
            },
        }),
    }
}

fn same(a: &Envelope, b: &Envelope) -> bool {
    // NaN volume: compare the encodings, bit for bit.
    crate::codec::encode(a).ok() == crate::codec::encode(b).ok()
}

#[test]
fn a_bar_event_goes_through_its_fixed_layout_and_back_bit_for_bit() {
    let mut buf = [0u8; FIXED_MAX];
    for sub in [0, 7, u32::MAX] {
        let env = bar_event(0, sub);
        let n = env
            .to_fixed(&mut buf)
            .expect("a bar event has a fixed layout");
        assert_eq!(n, BAR_FIXED_LEN);
        let back = Envelope::from_fixed(&buf[..n]).expect("reads back");
        assert!(same(&back, &env), "{back:?}");
    }
}

#[test]
fn every_other_message_goes_through_the_codec() {
    let mut buf = [0u8; FIXED_MAX];
    let others = [
        bar_event(3, 1),
        Envelope {
            id: 0,
            body: Body::Event(Event::Connection(ConnectionStatus::Connected)),
        },
        Envelope {
            id: 0,
            body: Body::Request(Request::Connect),
        },
    ];
    for env in others {
        assert_eq!(env.to_fixed(&mut buf), None, "{env:?}");
    }
}

#[test]
fn bytes_of_another_length_or_class_are_not_a_fixed_layout() {
    let mut buf = [0u8; FIXED_MAX];
    let n = bar_event(0, 2).to_fixed(&mut buf).unwrap_or(0);
    assert_eq!(Envelope::from_fixed(&buf[..n - 8]), None);
    assert_eq!(Envelope::from_fixed(&buf[..n + 8]), None);
    assert_eq!(Envelope::from_fixed(&[]), None);
    for class in [0u32, 2, u32::MAX] {
        buf[4..8].copy_from_slice(&class.to_le_bytes());
        assert_eq!(Envelope::from_fixed(&buf[..n]), None, "class {class}");
    }
}
