//! Tests of the simulated backend: the handshake and its faults, history in batches and its
//! cancellation, live bars on the fast clock, and the prices, clock and ranges they rest on.

use super::*;

fn sink() -> (EventSink, Arc<Mutex<Vec<Event>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    (
        Arc::new(move |e| {
            g.lock().push(e);
            true
        }),
        got,
    )
}

/// `stamp_bars` (the benchmark's) puts the monotonic clock of the moment a live bar is
/// handed over into its volume; off, the volume is the price path's.
#[test]
fn stamped_live_bars_carry_the_moment_they_were_sent() {
    for stamp in [false, true] {
        let (events, got) = sink();
        let opts = SimOptions {
            speed: 600.0,
            stamp_bars: stamp,
            ..SimOptions::default()
        };
        let sim = SimBackend::new(opts, 0, events);
        sim.connect(Duration::from_secs(5)).unwrap();
        let before = bridge::platform::monotonic_ns();
        sim.subscribe(&SubscribeRequest {
            symbol: "SPY".into(),
            id: 1,
            bar_seconds: 60,
        })
        .unwrap();
        let bars_in = |got: &Mutex<Vec<Event>>| {
            got.lock()
                .iter()
                .filter(|e| matches!(e, Event::Bar { .. }))
                .count()
        };
        let start = Instant::now();
        while bars_in(&got) < 2 && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        sim.disconnect();
        let after = bridge::platform::monotonic_ns();
        let bars: Vec<Bar> = got
            .lock()
            .iter()
            .filter_map(|e| match e {
                Event::Bar { bar, .. } => Some(*bar),
                _ => None,
            })
            .collect();
        assert!(bars.len() >= 2, "{} bars", bars.len());
        for bar in bars {
            let stamped = bar.volume >= before as f64 && bar.volume <= after as f64;
            assert_eq!(stamped, stamp, "volume {} of {bar:?}", bar.volume);
            if !stamp {
                let path = PricePath::new(42, "SPY").bar(bar.time, 60);
                assert_eq!(bar.volume, path.volume);
            }
        }
    }
}

#[test]
fn history_is_streamed_in_batches_after_connect() {
    let (events, got) = sink();
    let sim = SimBackend::new(SimOptions::default(), 0, events);
    let req = HistoryRequest {
        symbol: "SPY".into(),
        bar_seconds: 60,
        duration_seconds: 2500 * 60,
        end: None,
    };
    let mut batches = Vec::new();
    let err = sim.history(&req, &Cancel::default(), &mut |b| {
        batches.push(b);
        true
    });
    assert_eq!(err.unwrap_err().kind, ErrorKind::NotConnected);
    sim.connect(Duration::from_secs(5)).unwrap();
    assert_eq!(
        got.lock().clone(),
        vec![Event::Connection(
            bridge::protocol::ConnectionStatus::Connected
        )]
    );
    let n = sim
        .history(&req, &Cancel::default(), &mut |b| {
            batches.push(b);
            true
        })
        .unwrap();
    assert_eq!(n, 2500);
    assert_eq!(
        batches.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![1000, 1000, 500]
    );
    let times: Vec<i64> = batches.iter().flatten().map(|b| b.time).collect();
    assert!(times.windows(2).all(|w| w[1] - w[0] == 60));
}

#[test]
fn unknown_symbols_and_missing_data_are_told_apart() {
    let (events, _) = sink();
    let opts = SimOptions {
        faults: crate::options::SimFaults {
            no_data: vec!["GONE".into()],
            ..Default::default()
        },
        ..SimOptions::default()
    };
    let sim = SimBackend::new(opts, 0, events);
    sim.connect(Duration::from_secs(5)).unwrap();
    let req = |s: &str| HistoryRequest {
        symbol: s.into(),
        bar_seconds: 60,
        duration_seconds: 600,
        end: None,
    };
    let mut ignore = |_: Vec<Bar>| true;
    assert_eq!(
        sim.history(&req("bad symbol"), &Cancel::default(), &mut ignore)
            .unwrap_err()
            .kind,
        ErrorKind::UnknownSymbol
    );
    assert_eq!(
        sim.history(&req("GONE"), &Cancel::default(), &mut ignore)
            .unwrap_err()
            .kind,
        ErrorKind::NoData
    );
}

#[test]
fn connect_waits_for_late_accounts_and_times_out_without_them() {
    let (events, _) = sink();
    let late = SimOptions {
        faults: crate::options::SimFaults {
            accounts_delay_ms: 300,
            ..Default::default()
        },
        ..SimOptions::default()
    };
    let sim = SimBackend::new(late, 0, events.clone());
    let start = Instant::now();
    let (accounts, _) = sim.connect(Duration::from_secs(5)).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(accounts, vec![ACCOUNT.to_string()]);

    let never = SimOptions {
        faults: crate::options::SimFaults {
            accounts_never: true,
            ..Default::default()
        },
        ..SimOptions::default()
    };
    let sim = SimBackend::new(never, 0, events);
    let err = sim.connect(Duration::from_millis(200)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert!(sim.accounts().is_err());
}

#[test]
fn an_injected_reply_delay_holds_back_every_request() {
    let (events, _) = sink();
    let slow = SimOptions {
        faults: crate::options::SimFaults {
            reply_delay_ms: 150,
            ..Default::default()
        },
        ..SimOptions::default()
    };
    let sim = SimBackend::new(slow, 0, events);
    let start = Instant::now();
    sim.connect(Duration::from_secs(5)).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(150));
    let start = Instant::now();
    assert_eq!(sim.accounts().unwrap(), vec![ACCOUNT.to_string()]);
    assert!(start.elapsed() >= Duration::from_millis(150));
    let start = Instant::now();
    sim.unsubscribe("SPY").unwrap();
    assert!(start.elapsed() >= Duration::from_millis(150));
}

#[test]
fn real_time_bars_arrive_on_the_fast_clock() {
    let (events, got) = sink();
    let opts = SimOptions {
        speed: 600.0,
        ..SimOptions::default()
    };
    let sim = SimBackend::new(opts, 0, events);
    sim.connect(Duration::from_secs(5)).unwrap();
    sim.subscribe(&SubscribeRequest {
        symbol: "SPY".into(),
        id: 3,
        bar_seconds: 60,
    })
    .unwrap();
    // 600x: a one-minute bar every 100 ms.
    let start = Instant::now();
    let bars_in = |events: &[Event]| {
        events
            .iter()
            .filter(|e| matches!(e, Event::Bar { .. }))
            .count()
    };
    while bars_in(&got.lock()) < 4 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    sim.disconnect();
    let bars: Vec<Bar> = got
        .lock()
        .iter()
        .filter_map(|e| match e {
            Event::Bar { sub: 3, bar } => Some(*bar),
            _ => None,
        })
        .collect();
    assert!(bars.len() >= 3, "{} bars", bars.len());
    assert!(bars.windows(2).all(|w| w[1].time - w[0].time == 60));
}

/// A history cancelled by the runner stops before the next batch and is not answered
/// as complete.
#[test]
fn a_cancelled_history_stops_at_the_next_batch() {
    let events: EventSink = Arc::new(|_| true);
    let sim = SimBackend::new(SimOptions::default(), 0, events);
    sim.connect(Duration::from_secs(5)).unwrap();
    let req = HistoryRequest {
        symbol: "SPY".into(),
        bar_seconds: 60,
        duration_seconds: 86_400 * 3,
        end: None,
    };
    let cancel = Cancel::default();
    let mut batches = 0;
    let result = sim.history(&req, &cancel, &mut |_| {
        batches += 1;
        cancel.cancel();
        true
    });
    assert!(result.is_err(), "{result:?}");
    assert_eq!(batches, 1);
}

/// A subscription made mid-bar starts with the bar then forming, or, with `skip_forming_bar`
/// (as IB's real-time bars), with the next one to start.
#[test]
fn a_subscription_skips_the_forming_bar_when_asked_to() {
    // 1 s into a minute, at 30x: the next minute starts two seconds after the start.
    let start = 1_699_999_981;
    assert_eq!(start % 60, 1);
    for (skip, first) in [(false, 1_699_999_980), (true, 1_700_000_040)] {
        let (events, got) = sink();
        let opts = SimOptions {
            speed: 30.0,
            start: Some(start),
            skip_forming_bar: skip,
            ..SimOptions::default()
        };
        let sim = SimBackend::new(opts, 0, events);
        sim.connect(Duration::from_secs(5)).unwrap();
        sim.subscribe(&SubscribeRequest {
            symbol: "SPY".into(),
            id: 1,
            bar_seconds: 60,
        })
        .unwrap();
        let first_bar = || {
            got.lock().iter().find_map(|e| match e {
                Event::Bar { bar, .. } => Some(bar.time),
                _ => None,
            })
        };
        let until = Instant::now() + Duration::from_secs(10);
        while first_bar().is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        sim.disconnect();
        assert_eq!(first_bar(), Some(first), "skip_forming_bar {skip}");
    }
}
