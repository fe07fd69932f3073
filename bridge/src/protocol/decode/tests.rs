//! The hand-written decoders against the derived encoder: every variant of every type decoded
//! by hand comes back as it went, any bytes they accept encode back to themselves, other
//! configurations read as bincode's own, and the decode limit holds.

use super::super::*;
use super::{
    BODIES, CONNECTION_STATUSES, ERROR_KINDS, EVENTS, FEED_STATES, LOG_LEVELS, REPLIES, REQUESTS,
};
use crate::codec::{self, decode_limit, CodecError};

fn report() -> OrderReport {
    OrderReport {
        request: OrderRequest {
            order_ref: "r-1".into(),
            symbol: "SPY".into(),
            side: Side::Buy,
            quantity: 2.0,
            order_type: OrderType::Market,
            tif: TimeInForce::Day,
        },
        broker_id: 41,
        status: OrderStatus::PartiallyFilled,
        filled: 1.0,
        avg_price: Some(400.25),
        reason: Some("why".into()),
    }
}

fn fill() -> Fill {
    Fill {
        order_ref: "r-1".into(),
        exec_id: "0001.1".into(),
        symbol: "SPY".into(),
        side: Side::Sell,
        quantity: 3.0,
        price: 401.5,
        commission: None,
        time: -3,
    }
}

fn position() -> Position {
    Position {
        account: "DU1".into(),
        symbol: "QQQ".into(),
        quantity: -4.0,
        avg_cost: 350.5,
    }
}

fn remote_error(kind: ErrorKind) -> RemoteError {
    RemoteError {
        kind,
        message: "ZZZZ: no such symbol".into(),
    }
}

fn runs() -> Vec<RefRun> {
    vec![
        RefRun {
            prefix: "0a1b".into(),
            numbers: Some((1, 5_000)),
        },
        RefRun {
            prefix: "by-hand".into(),
            numbers: None,
        },
    ]
}

/// A sample of every variant of every type decoded by hand, as a body; `numbers` below names
/// each variant's number, and the test checks that the samples cover every variant the
/// decoders count (`variants!` in `decode.rs`, which stops compiling when one is added).
fn samples() -> Vec<Body> {
    let bar = Bar {
        time: -7,
        open: 1.25,
        high: f64::MAX,
        low: f64::MIN_POSITIVE,
        close: -0.0,
        volume: 1e9,
    };
    let mut bodies = vec![
        Body::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            build_id: "build 7 ✓".into(),
            pid: u32::MAX,
        }),
        Body::Request(Request::Ping {
            payload: vec![0xA5; 64],
        }),
        Body::Request(Request::Ping { payload: vec![] }),
        Body::Request(Request::Connect),
        Body::Request(Request::Accounts),
        Body::Request(Request::History(HistoryRequest {
            symbol: "SPY".into(),
            bar_seconds: 60,
            duration_seconds: 86_400,
            end: Some(-1),
        })),
        Body::Request(Request::Subscribe(SubscribeRequest {
            symbol: "AAPL".into(),
            id: 9,
            bar_seconds: 5,
        })),
        Body::Request(Request::Unsubscribe {
            symbol: "AAPL".into(),
        }),
        Body::Request(Request::Shutdown),
        Body::Request(Request::Cancel { id: u64::MAX }),
        Body::Request(Request::PlaceOrder(OrderRequest {
            order_type: OrderType::Limit { price: 401.5 },
            tif: TimeInForce::Gtc,
            ..report().request
        })),
        Body::Request(Request::ModifyOrder(OrderChange {
            order_ref: "r-1".into(),
            quantity: Some(5.0),
            limit: None,
        })),
        Body::Request(Request::CancelOrder {
            order_ref: "r-2".into(),
        }),
        Body::Request(Request::CancelAll),
        Body::Request(Request::Orders),
        Body::Request(Request::FoldedOrders),
        Body::Request(Request::Executions),
        Body::Request(Request::Positions),
        Body::Request(Request::Account),
        Body::Reply(Reply::Pong {
            payload: vec![1, 2, 3],
        }),
        Body::Reply(Reply::Connected {
            accounts: vec!["DU1".into(), String::new()],
            next_order_id: -2,
        }),
        Body::Reply(Reply::Accounts(vec!["DU1".into()])),
        Body::Reply(Reply::Bars(vec![bar; 3])),
        Body::Reply(Reply::Bars(vec![])),
        Body::Reply(Reply::HistoryEnd { count: 3 }),
        Body::Reply(Reply::Subscribed),
        Body::Reply(Reply::Unsubscribed),
        Body::Reply(Reply::ShuttingDown),
        Body::Reply(Reply::Order(Box::new(report()))),
        Body::Reply(Reply::CancelledAll { count: 2 }),
        Body::Reply(Reply::Orders(vec![report(), report()])),
        Body::Reply(Reply::Fills(vec![fill()])),
        Body::Reply(Reply::Positions(vec![position()])),
        Body::Reply(Reply::Folded(runs())),
        Body::Reply(Reply::FoldedPage(runs())),
        Body::Reply(Reply::OrdersPage(vec![report()])),
        Body::Reply(Reply::FillsPage(vec![fill(), fill()])),
        Body::Reply(Reply::PositionsPage(vec![])),
        Body::Reply(Reply::Account(Box::new(AccountSummary {
            account: "DU1".into(),
            net_liquidation: 1e6,
            cash: 5e5,
            buying_power: 2e6,
            currency: "USD".into(),
        }))),
        Body::Event(Event::Bar { sub: 7, bar }),
        Body::Event(Event::Refused {
            symbol: "SPY".into(),
            error: remote_error(ErrorKind::NotPermitted),
        }),
        Body::Event(Event::Delayed {
            symbol: "SPY".into(),
            refused: remote_error(ErrorKind::CompetingSession),
        }),
        Body::Event(Event::Order(Box::new(report()))),
        Body::Event(Event::Fill(Box::new(fill()))),
        Body::Event(Event::Position(Box::new(position()))),
        Body::Event(Event::BookTold {
            through: 1_700_000_000,
        }),
        Body::Event(Event::Dropped { count: 12 }),
        Body::Event(Event::Notice {
            code: -2104,
            message: "Market data farm connection is OK:usfarm".into(),
        }),
    ];
    let kinds = [
        ErrorKind::Timeout,
        ErrorKind::NotConnected,
        ErrorKind::UnknownSymbol,
        ErrorKind::NoData,
        ErrorKind::Pacing,
        ErrorKind::NoSecurityDefinition,
        ErrorKind::AmbiguousContract,
        ErrorKind::FarmDown,
        ErrorKind::Disconnected,
        ErrorKind::ClientIdInUse,
        ErrorKind::NotPermitted,
        ErrorKind::CompetingSession,
        ErrorKind::BadRequest,
        ErrorKind::Cancelled,
        ErrorKind::UnknownOrder,
        ErrorKind::LiveAccount,
        ErrorKind::TooLarge,
        ErrorKind::Internal,
    ];
    bodies.extend(kinds.map(|k| Body::Reply(Reply::Error(remote_error(k)))));
    let states = [
        FeedState::Resubscribed {
            reason: "silent for 90 s".into(),
        },
        FeedState::Stalled { since: 17 },
        FeedState::Flowing,
        FeedState::Ended,
    ];
    bodies.extend(states.map(|state| {
        Body::Event(Event::Feed {
            symbol: "QQQ".into(),
            state,
        })
    }));
    let statuses = [
        ConnectionStatus::Connected,
        ConnectionStatus::Lost {
            reason: "1100".into(),
        },
        ConnectionStatus::Restored { data_lost: true },
        ConnectionStatus::Restored { data_lost: false },
        ConnectionStatus::Reconnecting { attempt: 3 },
        ConnectionStatus::GaveUp {
            attempts: 5,
            reason: "refused".into(),
        },
    ];
    bodies.extend(statuses.map(|s| Body::Event(Event::Connection(s))));
    let levels = [
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Trace,
    ];
    bodies.extend(levels.map(|level| {
        Body::Log(LogRecord {
            level,
            target: "worker::ib".into(),
            message: "connected".into(),
            dropped_before: 2,
        })
    }));
    bodies
}

/// Every variant by its type's name and number (exhaustive).
fn numbers(body: &Body) -> Vec<(&'static str, u32)> {
    let error = |e: &RemoteError| {
        let kind = match e.kind {
            ErrorKind::Timeout => 0,
            ErrorKind::NotConnected => 1,
            ErrorKind::UnknownSymbol => 2,
            ErrorKind::NoData => 3,
            ErrorKind::Pacing => 4,
            ErrorKind::NoSecurityDefinition => 5,
            ErrorKind::AmbiguousContract => 6,
            ErrorKind::FarmDown => 7,
            ErrorKind::Disconnected => 8,
            ErrorKind::ClientIdInUse => 9,
            ErrorKind::NotPermitted => 10,
            ErrorKind::CompetingSession => 11,
            ErrorKind::BadRequest => 12,
            ErrorKind::Cancelled => 13,
            ErrorKind::UnknownOrder => 14,
            ErrorKind::LiveAccount => 15,
            ErrorKind::TooLarge => 16,
            ErrorKind::Internal => 17,
        };
        ("ErrorKind", kind)
    };
    let mut out = vec![];
    let body_number = match body {
        Body::Hello(_) => 0,
        Body::Request(r) => {
            out.push((
                "Request",
                match r {
                    Request::Ping { .. } => 0,
                    Request::Connect => 1,
                    Request::Accounts => 2,
                    Request::History(_) => 3,
                    Request::Subscribe(_) => 4,
                    Request::Unsubscribe { .. } => 5,
                    Request::Shutdown => 6,
                    Request::Cancel { .. } => 7,
                    Request::PlaceOrder(_) => 8,
                    Request::ModifyOrder(_) => 9,
                    Request::CancelOrder { .. } => 10,
                    Request::CancelAll => 11,
                    Request::Orders => 12,
                    Request::FoldedOrders => 13,
                    Request::Executions => 14,
                    Request::Positions => 15,
                    Request::Account => 16,
                },
            ));
            1
        }
        Body::Reply(r) => {
            let number = match r {
                Reply::Pong { .. } => 0,
                Reply::Connected { .. } => 1,
                Reply::Accounts(_) => 2,
                Reply::Bars(_) => 3,
                Reply::HistoryEnd { .. } => 4,
                Reply::Subscribed => 5,
                Reply::Unsubscribed => 6,
                Reply::ShuttingDown => 7,
                Reply::Order(_) => 8,
                Reply::CancelledAll { .. } => 9,
                Reply::Orders(_) => 10,
                Reply::Fills(_) => 11,
                Reply::Positions(_) => 12,
                Reply::Folded(_) => 13,
                Reply::FoldedPage(_) => 14,
                Reply::OrdersPage(_) => 15,
                Reply::FillsPage(_) => 16,
                Reply::PositionsPage(_) => 17,
                Reply::Account(_) => 18,
                Reply::Error(e) => {
                    out.push(error(e));
                    19
                }
            };
            out.push(("Reply", number));
            2
        }
        Body::Event(e) => {
            let number = match e {
                Event::Bar { .. } => 0,
                Event::Connection(s) => {
                    out.push((
                        "ConnectionStatus",
                        match s {
                            ConnectionStatus::Connected => 0,
                            ConnectionStatus::Lost { .. } => 1,
                            ConnectionStatus::Restored { .. } => 2,
                            ConnectionStatus::Reconnecting { .. } => 3,
                            ConnectionStatus::GaveUp { .. } => 4,
                        },
                    ));
                    1
                }
                Event::Refused { error: e, .. } => {
                    out.push(error(e));
                    2
                }
                Event::Delayed { refused: e, .. } => {
                    out.push(error(e));
                    3
                }
                Event::Feed { state, .. } => {
                    out.push((
                        "FeedState",
                        match state {
                            FeedState::Resubscribed { .. } => 0,
                            FeedState::Stalled { .. } => 1,
                            FeedState::Flowing => 2,
                            FeedState::Ended => 3,
                        },
                    ));
                    4
                }
                Event::Order(_) => 5,
                Event::Fill(_) => 6,
                Event::Position(_) => 7,
                Event::BookTold { .. } => 8,
                Event::Dropped { .. } => 9,
                Event::Notice { .. } => 10,
            };
            out.push(("Event", number));
            3
        }
        Body::Log(r) => {
            let level = match r.level {
                LogLevel::Error => 0,
                LogLevel::Warn => 1,
                LogLevel::Info => 2,
                LogLevel::Debug => 3,
                LogLevel::Trace => 4,
            };
            out.push(("LogLevel", level));
            4
        }
    };
    out.push(("Body", body_number));
    out
}

fn envelopes() -> Vec<Envelope> {
    samples()
        .into_iter()
        .enumerate()
        .map(|(i, body)| Envelope {
            id: (i as u64) << 40 | 3,
            body,
        })
        .collect()
}

#[test]
fn every_variant_of_every_type_decoded_by_hand_round_trips() {
    let mut seen = std::collections::BTreeSet::new();
    for env in envelopes() {
        seen.extend(numbers(&env.body));
        let bytes = codec::encode(&env).unwrap();
        assert_eq!(codec::decode::<Envelope>(&bytes), Ok(env.clone()));
        // The body alone, and through bincode's own entry points (a slice, and a reader that
        // cannot lend its bytes).
        let body = codec::encode(&env.body).unwrap();
        assert_eq!(codec::decode::<Body>(&body), Ok(env.body.clone()));
        let config = bincode::config::standard()
            .with_little_endian()
            .with_fixed_int_encoding();
        let (back, used): (Envelope, usize) = bincode::decode_from_slice(&bytes, config).unwrap();
        assert_eq!((back, used), (env.clone(), bytes.len()));
        let back: Envelope = bincode::decode_from_std_read(&mut &bytes[..], config).unwrap();
        assert_eq!(back, env);
    }
    let counts = [
        ("Body", BODIES),
        ("ConnectionStatus", CONNECTION_STATUSES),
        ("ErrorKind", ERROR_KINDS),
        ("Event", EVENTS),
        ("FeedState", FEED_STATES),
        ("LogLevel", LOG_LEVELS),
        ("Reply", REPLIES),
        ("Request", REQUESTS),
    ];
    for (name, count) in counts {
        for n in 0..count {
            assert!(seen.contains(&(name, n)), "no sample of {name} variant {n}");
        }
    }
    assert_eq!(
        seen.len(),
        counts.iter().map(|c| c.1 as usize).sum::<usize>()
    );
}

/// A variant number past a type's last is an error of bincode's kind, naming the type and
/// the numbers it has.
#[test]
fn a_variant_past_the_last_is_refused_by_name() {
    let feed = [3, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, b'Q'];
    for (bytes, name, max) in [
        (vec![5, 0, 0, 0], "Body", 4),
        (vec![1, 0, 0, 0, 17, 0, 0, 0], "Request", 16),
        (vec![2, 0, 0, 0, 20, 0, 0, 0], "Reply", 19),
        (vec![3, 0, 0, 0, 11, 0, 0, 0], "Event", 10),
        (
            vec![3, 0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0],
            "ConnectionStatus",
            4,
        ),
        ([&feed[..], &[4, 0, 0, 0]].concat(), "FeedState", 3),
        (vec![2, 0, 0, 0, 19, 0, 0, 0, 18, 0, 0, 0], "ErrorKind", 17),
        (vec![4, 0, 0, 0, 255, 255, 255, 255], "LogLevel", 4),
    ] {
        let mut frame = 9u64.to_le_bytes().to_vec();
        frame.extend_from_slice(&bytes);
        match codec::decode::<Envelope>(&frame) {
            Err(CodecError::Decode(e)) => match &*e {
                bincode::error::DecodeError::UnexpectedVariant {
                    type_name, allowed, ..
                } => {
                    assert_eq!(*type_name, name);
                    assert!(
                        matches!(
                            allowed,
                            bincode::error::AllowedEnumVariants::Range { min: 0, max: m } if *m == max
                        ),
                        "{name}: {allowed:?}"
                    );
                }
                other => panic!("{name}: {other:?}"),
            },
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// The encoding is canonical, so a decoder that reads what the encoder wrote accepts only what
/// encodes back to the same bytes: every byte of every sample set to other values, and every
/// cut, either fails to decode or decodes to a message that encodes to exactly those bytes.
#[test]
fn whatever_decodes_encodes_back_to_the_same_bytes() {
    let mut accepted = 0;
    for env in envelopes() {
        let bytes = codec::encode(&env).unwrap();
        for cut in 0..bytes.len() {
            assert!(
                matches!(
                    codec::decode::<Envelope>(&bytes[..cut]),
                    Err(CodecError::Decode(_))
                ),
                "{env:?} cut at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            codec::decode::<Envelope>(&longer),
            Err(CodecError::Trailing { extra: 1 })
        );
        for i in 0..bytes.len() {
            for v in [
                0u8,
                1,
                2,
                0x7f,
                0x80,
                0xff,
                bytes[i] ^ 1,
                bytes[i].wrapping_add(1),
            ] {
                let mut changed = bytes.clone();
                changed[i] = v;
                if let Ok(back) = codec::decode::<Envelope>(&changed) {
                    assert_eq!(codec::encode(&back).unwrap(), changed, "{back:?}");
                    accepted += 1;
                }
            }
        }
    }
    // Changed ids, prices and payload bytes decode; the check above saw them.
    assert!(accepted > 1000, "{accepted}");
}

/// Bytes no encoder wrote: random frames of every length up to 300 bytes, and random tails
/// behind every sample's first bytes (a valid start that goes wrong anywhere), decode to an
/// error or to a message that encodes back to the same bytes; none panics.
#[test]
fn random_bytes_are_refused_or_read_canonically() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        // xorshift64*: a fixed sequence, so a failure repeats.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let check = |frame: &[u8]| {
        if let Ok(back) = codec::decode::<Envelope>(frame) {
            assert_eq!(codec::encode(&back).unwrap(), frame, "{back:?}");
        }
    };
    for len in 0..300 {
        for _ in 0..20 {
            let frame: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            check(&frame);
        }
    }
    for env in envelopes() {
        let bytes = codec::encode(&env).unwrap();
        for keep in 0..bytes.len() {
            for _ in 0..4 {
                let mut frame = bytes[..keep].to_vec();
                let extra = (next() % 40) as usize;
                frame.extend((0..extra).map(|_| next() as u8));
                check(&frame);
            }
        }
    }
}

/// Under another configuration (variable-width or big-endian integers) the integers are
/// read by bincode's own decoders: what bincode writes reads back.
#[test]
fn other_configurations_read_what_bincode_writes() {
    let varint = bincode::config::standard();
    let big = bincode::config::standard()
        .with_big_endian()
        .with_fixed_int_encoding();
    for env in envelopes() {
        let bytes = bincode::encode_to_vec(&env, varint).unwrap();
        let (back, used): (Envelope, usize) = bincode::decode_from_slice(&bytes, varint).unwrap();
        assert_eq!((back, used), (env.clone(), bytes.len()));
        let bytes = bincode::encode_to_vec(&env, big).unwrap();
        let (back, used): (Envelope, usize) = bincode::decode_from_slice(&bytes, big).unwrap();
        assert_eq!((back, used), (env.clone(), bytes.len()));
    }
}

/// A frame announcing a large payload, list of accounts, batch of bars or list of orders
/// behind a few bytes: refused, having allocated no more than the frame's decode limit.
#[test]
#[cfg(not(loom))]
fn a_small_frame_cannot_make_the_decoder_allocate_much() {
    let heads: [&[u8]; 5] = [
        &[1, 0, 0, 0, 0, 0, 0, 0],  // Request::Ping's payload
        &[2, 0, 0, 0, 2, 0, 0, 0],  // Reply::Accounts
        &[2, 0, 0, 0, 3, 0, 0, 0],  // Reply::Bars
        &[2, 0, 0, 0, 10, 0, 0, 0], // Reply::Orders
        &[0, 0, 0, 0, 7, 0, 0, 0],  // Hello's build id (after its version)
    ];
    for head in heads {
        for claimed in [100u64, 700, 800, 2000, 16 << 20, 1 << 40, u64::MAX] {
            let mut frame = 1u64.to_le_bytes().to_vec();
            frame.extend_from_slice(head);
            frame.extend_from_slice(&claimed.to_le_bytes());
            frame.extend_from_slice(&[b'a'; 12]);
            let (result, largest) =
                crate::test_alloc::largest_allocation_during(|| codec::decode::<Envelope>(&frame));
            assert!(matches!(result, Err(CodecError::Decode(_))), "{result:?}");
            assert!(
                largest <= decode_limit(frame.len()),
                "{head:?} claiming {claimed}: allocated {largest} bytes"
            );
        }
    }
}

/// The limit never refuses a valid message, however large: the worst cases of the protocol's
/// lists (folded references with empty prefixes, empty account names, orders, bars) at every
/// size, each class's edges included.
#[test]
fn a_valid_message_of_any_size_decodes_under_its_limit() {
    let mut sizes = vec![0usize, 1, 5, 40, 224, 1_000, 30_000];
    sizes.extend((1..400).step_by(3));
    for n in sizes {
        for body in [
            Body::Reply(Reply::Accounts(vec![String::new(); n])),
            Body::Reply(Reply::Orders(vec![
                OrderReport {
                    avg_price: None,
                    reason: None,
                    ..report()
                };
                n / 10
            ])),
            Body::Reply(Reply::Bars(vec![Bar::sample(); n])),
            Body::Reply(Reply::Folded(vec![
                RefRun {
                    prefix: String::new(),
                    numbers: None
                };
                n
            ])),
            Body::Request(Request::Ping {
                payload: vec![7; n],
            }),
        ] {
            let env = Envelope { id: 1, body };
            let bytes = codec::encode(&env).unwrap();
            assert_eq!(codec::decode::<Envelope>(&bytes), Ok(env), "{n}");
        }
    }
}
