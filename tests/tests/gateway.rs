//! The fake gateway against the real `ibapi` client: the handshake, managed accounts and next
//! valid id, a late accounts message, a client id in use, and the record of a closed socket;
//! the link to IB lost and restored, an outage of the gateway, real-time bars and history
//! refused, a client id that stays taken, history the way the real gateway answers it, an
//! ambiguous contract, a market data farm's flap, a feed that falls silent without a word,
//! and trading hours with a holiday.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use ibapi::prelude::*;
use tests::gateway::{
    codes, texts, Behaviour, ConnectivityLoss, FarmFlap, Gateway, Outage, SilentFeed,
};

mod common;
use common::{eventually, gateway, reconnected, runtime, PROMPTLY};

type Bars = ibapi::subscriptions::Subscription<ibapi::market_data::realtime::Bar>;

/// The next bar of `bars`, within [`PROMPTLY`]; a notice or an error fails the test.
async fn next_bar(bars: &mut Bars, what: &str) -> ibapi::market_data::realtime::Bar {
    match tokio::time::timeout(PROMPTLY, bars.next()).await {
        Ok(Some(Ok(SubscriptionItem::Data(bar)))) => bar,
        Ok(other) => panic!("{what}: expected a bar, got {other:?}"),
        Err(_) => panic!("{what}: no bar within {PROMPTLY:?}"),
    }
}

/// The items `bars` holds now (without waiting), and whether it has ended.
async fn ready(
    bars: &mut Bars,
) -> (
    Vec<Result<SubscriptionItem<ibapi::market_data::realtime::Bar>, Error>>,
    bool,
) {
    let mut items = Vec::new();
    loop {
        match tokio::time::timeout(Duration::ZERO, bars.next()).await {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return (items, true),
            Err(_) => return (items, false),
        }
    }
}

/// The next connection-wide notice other than a farm status (21xx), within [`PROMPTLY`].
async fn next_notice(notices: &mut NoticeStream, what: &str) -> Notice {
    let deadline = tokio::time::Instant::now() + PROMPTLY;
    loop {
        match tokio::time::timeout_at(deadline, notices.next()).await {
            Ok(Some(n)) if (2100..2200).contains(&n.code) => continue,
            Ok(Some(n)) => return n,
            Ok(None) => panic!("{what}: the notice stream ended"),
            Err(_) => panic!("{what}: no notice within {PROMPTLY:?}"),
        }
    }
}

/// What `notice` says: its code, the request it is bound to, its text.
fn said(notice: &Notice) -> (i32, Option<i32>, &str) {
    (notice.code, notice.request_id, notice.message.as_str())
}

async fn connect_with_notices(gw: &Gateway, client_id: i32) -> (Client, NoticeStream) {
    Client::builder()
        .address(gw.address())
        .client_id(client_id)
        .connect_with_notice_stream()
        .await
        .unwrap()
}

/// Whether connection `index` is seen closed within 5 s.
fn wait_closed(gw: &Gateway, index: usize) -> bool {
    tests::within(Duration::from_secs(5), || {
        gw.connections()
            .get(index)
            .is_some_and(|c| c.closed_after.is_some())
    })
    .is_some()
}

#[test]
fn ibapi_connects_and_sees_the_accounts_and_next_valid_id() {
    let gw = gateway(Behaviour {
        accounts: vec!["DU111".into(), "DU222".into()],
        ..Behaviour::default()
    });
    runtime().block_on(async {
        let client = ibapi::Client::connect(&gw.address(), 7).await.unwrap();
        assert_eq!(client.server_version(), tests::gateway::SERVER_VERSION);
        assert_eq!(client.handshake_managed_accounts(), ["DU111", "DU222"]);
        assert_eq!(client.next_order_id(), 1);
        assert_eq!(client.client_id(), 7);
        client.disconnect().await;
    });
    assert!(wait_closed(&gw, 0), "{:?}", gw.connections());
    let record = &gw.connections()[0];
    assert_eq!(record.client_id, Some(7));
    assert!(!record.closed_by_gateway, "the client closed its socket");
}

#[test]
fn connect_waits_for_accounts_sent_late() {
    let gw = gateway(Behaviour {
        accounts_delay: Duration::from_millis(300),
        ..Behaviour::default()
    });
    let start = Instant::now();
    let accounts = runtime().block_on(async {
        let client = ibapi::Client::connect(&gw.address(), 1).await.unwrap();
        client.handshake_managed_accounts().to_vec()
    });
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(accounts, ["DU1234567"]);
}

#[test]
fn a_client_id_in_use_is_reported_as_such() {
    let gw = gateway(Behaviour {
        ids_in_use: vec![5],
        ..Behaviour::default()
    });
    let err = runtime()
        .block_on(ibapi::Client::connect(&gw.address(), 5))
        .err()
        .expect("refused");
    assert!(
        matches!(err, ibapi::Error::ClientIdInUse { client_id: 5 }),
        "{err:?}"
    );
    assert!(wait_closed(&gw, 0));
    assert!(gw.connections()[0].closed_by_gateway);
}

fn fetch(
    gw: &Gateway,
    symbol: &str,
) -> Result<ibapi::market_data::historical::HistoricalData, ibapi::Error> {
    runtime().block_on(async {
        let client = ibapi::Client::connect(&gw.address(), 3).await.unwrap();
        fetch_on(&client, &Contract::stock(symbol).build()).await
    })
}

#[test]
fn historical_bars_arrive_whole() {
    let gw = gateway(Behaviour {
        history_end: Some(1_763_805_600),
        ..Behaviour::default()
    });
    let data = fetch(&gw, "SPY").unwrap();
    assert_eq!(data.bars.len(), 1440);
    assert!(data.bars.iter().all(|b| b.close > 0.0 && b.low <= b.high));
    assert_eq!(gw.history_requests(), 1);
}

#[test]
fn unknown_symbols_and_pacing_violations_are_errors() {
    let gw = gateway(Behaviour {
        unknown_symbols: vec!["ZZZZ".into()],
        pacing_violations: 1,
        ..Behaviour::default()
    });
    let err = fetch(&gw, "SPY").unwrap_err().to_string();
    assert!(err.contains("162") || err.contains("pacing"), "{err}");
    let err = fetch(&gw, "ZZZZ").unwrap_err().to_string();
    assert!(
        err.contains("200") || err.contains("security definition"),
        "{err}"
    );
    assert_eq!(fetch(&gw, "SPY").unwrap().bars.len(), 1440);
}

#[test]
fn connectivity_lost_then_restored_with_data_lost_ends_every_bar_stream() {
    let gw = gateway(Behaviour {
        realtime_interval: Duration::from_millis(20),
        ..Behaviour::default()
    });
    runtime().block_on(async {
        let (client, mut notices) = connect_with_notices(&gw, 11).await;
        let contract = Contract::stock("SPY").build();
        let mut old = client.realtime_bars(&contract).subscribe().await.unwrap();
        next_bar(&mut old, "before the loss").await;
        next_bar(&mut old, "before the loss").await;

        gw.lose_connectivity(Duration::from_millis(300), true);
        let lost = next_notice(&mut notices, "the loss").await;
        assert_eq!(
            said(&lost),
            (codes::CONNECTIVITY_LOST, None, texts::CONNECTIVITY_LOST)
        );
        assert!(lost.is_system_message());
        // ibapi routes in wire order: bars sent before the 1100 are in the subscription now.
        let (_, ended) = ready(&mut old).await;
        assert!(!ended);

        let restored = next_notice(&mut notices, "the restoration").await;
        assert_eq!(
            said(&restored),
            (
                codes::CONNECTIVITY_RESTORED_DATA_LOST,
                None,
                texts::CONNECTIVITY_RESTORED_DATA_LOST
            )
        );
        let (between, ended) = ready(&mut old).await;
        assert!(
            between.is_empty(),
            "bars between 1100 and 1101: {between:?}"
        );
        assert!(!ended, "ibapi keeps a stream the gateway ended open");

        // A new request streams again; the old one never gets another bar.
        let mut new = client.realtime_bars(&contract).subscribe().await.unwrap();
        assert_ne!(new.request_id(), old.request_id());
        for _ in 0..3 {
            next_bar(&mut new, "after the restoration").await;
        }
        let (after, ended) = ready(&mut old).await;
        assert!(after.is_empty(), "bars on the ended stream: {after:?}");
        assert!(!ended);
        assert_eq!(gw.seen().realtime_requests_for("SPY"), 2);

        // ibapi still cancels the stream the gateway ended, when it is dropped.
        let old_id = old.request_id().unwrap();
        drop(old);
        let cancelled = eventually(|| gw.seen().realtime_cancels == [old_id]).await;
        assert!(cancelled, "{:?}", gw.seen());
        client.disconnect().await;
    });
}

#[test]
fn connectivity_lost_after_some_bars_then_restored_with_data_maintained_resumes_the_stream() {
    let gw = gateway(Behaviour {
        realtime_interval: Duration::from_millis(20),
        connectivity_loss: Some(ConnectivityLoss {
            after_bars: 3,
            lasts: Duration::from_millis(300),
            data_lost: false,
        }),
        ..Behaviour::default()
    });
    runtime().block_on(async {
        let (client, mut notices) = connect_with_notices(&gw, 12).await;
        let contract = Contract::stock("QQQ").build();
        let mut bars = client.realtime_bars(&contract).subscribe().await.unwrap();
        let mut last = 0;
        for _ in 0..3 {
            last = next_bar(&mut bars, "before the loss")
                .await
                .date
                .unix_timestamp();
        }
        let lost = next_notice(&mut notices, "the loss").await;
        assert_eq!(lost.code, codes::CONNECTIVITY_LOST);
        let (before, _) = ready(&mut bars).await;
        assert!(
            before.is_empty(),
            "the loss came right after the 3rd bar: {before:?}"
        );

        // Halfway through the loss: still nothing. (After 1102 the stream resumes at once,
        // so bars seen once the 1102 was read may be resumed ones: ibapi delivers notices and
        // bars on separate channels.)
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (during, ended) = ready(&mut bars).await;
        assert!(during.is_empty(), "bars during the loss: {during:?}");
        assert!(!ended);

        let restored = next_notice(&mut notices, "the restoration").await;
        assert_eq!(
            said(&restored),
            (
                codes::CONNECTIVITY_RESTORED_DATA_MAINTAINED,
                None,
                texts::CONNECTIVITY_RESTORED_DATA_MAINTAINED
            )
        );

        // The same stream resumes, later in market time, without a new request.
        let resumed = next_bar(&mut bars, "after the restoration").await;
        assert!(resumed.date.unix_timestamp() > last);
        assert_eq!(gw.seen().realtime_requests_for("QQQ"), 1);
        client.disconnect().await;
    });
}

/// Whether a client's connection to the gateway is closed before the handshake: the gateway
/// reads nothing and closes it.
fn closed_at_once(gw: &Gateway) -> bool {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(gw.address()).unwrap();
    s.set_read_timeout(Some(PROMPTLY)).unwrap();
    let _ = s.write_all(b"API\0");
    let mut byte = [0u8; 1];
    match s.read(&mut byte) {
        Ok(n) => n == 0,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn an_outage_closes_every_connection_refuses_new_ones_then_serves_again() {
    let gw = gateway(Behaviour {
        realtime_interval: Duration::from_millis(20),
        ..Behaviour::default()
    });
    let lasts = Duration::from_millis(1000);
    runtime().block_on(async {
        let (client, mut notices) = connect_with_notices(&gw, 13).await;
        client
            .switch_market_data_type(MarketDataType::Delayed)
            .await
            .unwrap();
        let contract = Contract::stock("SPY").build();
        let mut bars = client.realtime_bars(&contract).subscribe().await.unwrap();
        next_bar(&mut bars, "before the outage").await;

        let down = Instant::now();
        gw.outage(lasts);
        // The gateway closed the socket: ibapi ends the stream and starts reconnecting.
        loop {
            match tokio::time::timeout(PROMPTLY, bars.next()).await {
                Ok(Some(Ok(SubscriptionItem::Data(_)))) => continue, // sent before the close
                Ok(Some(Err(Error::ConnectionReset))) => break,
                other => panic!("expected the stream to end with a reset, got {other:?}"),
            }
        }
        assert!(
            closed_at_once(&gw),
            "a connection during the outage is refused"
        );
        assert!(gw.seen().refused_connections >= 1);

        reconnected(&client, "ibapi reconnects after the outage").await;
        assert!(down.elapsed() >= lasts, "served again only after {lasts:?}");
        let reconnected = next_notice(&mut notices, "the reconnect").await;
        assert_eq!(reconnected.code, ibapi::TRANSPORT_RECONNECT_CODE);
        // ibapi re-sent the market data type on the new connection.
        assert!(eventually(|| gw.seen().market_data_types == [3, 3]).await);

        let mut bars = client.realtime_bars(&contract).subscribe().await.unwrap();
        next_bar(&mut bars, "after the outage").await;
        client.disconnect().await;
    });
    let records = gw.connections();
    assert_eq!(records[0].client_id, Some(13));
    assert!(records[0].closed_by_gateway, "{records:?}");
    let last = records.last().unwrap();
    assert_eq!(last.client_id, Some(13), "{records:?}");
    assert!(!last.closed_by_gateway, "{records:?}");
}

#[test]
fn an_outage_after_some_bars_stops_them_all() {
    let gw = gateway(Behaviour {
        realtime_interval: Duration::from_millis(20),
        outage: Some(Outage {
            after_bars: 2,
            lasts: Duration::from_millis(200),
        }),
        ..Behaviour::default()
    });
    runtime().block_on(async {
        let client = Client::connect(&gw.address(), 14).await.unwrap();
        let contract = Contract::stock("IWM").build();
        let mut bars = client.realtime_bars(&contract).subscribe().await.unwrap();
        next_bar(&mut bars, "first").await;
        next_bar(&mut bars, "second").await;
        match tokio::time::timeout(PROMPTLY, bars.next()).await {
            Ok(Some(Err(Error::ConnectionReset))) => {}
            other => panic!("expected the stream to end with a reset, got {other:?}"),
        }
        reconnected(&client, "ibapi reconnects after the outage").await;
        client.disconnect().await;
    });
    assert_eq!(gw.realtime_bars_sent(), 2);
    assert_eq!(gw.seen().realtime_requests_for("IWM"), 1);
    assert!(wait_closed(&gw, 0));
    assert!(gw.connections()[0].closed_by_gateway);
}

#[test]
fn real_time_bars_refused_end_the_subscription_with_the_gateways_error() {
    let gw = gateway(Behaviour {
        realtime_interval: Duration::from_millis(20),
        realtime_refused: vec![
            Behaviour::not_subscribed("NOSUB"),
            Behaviour::competing_session("LIVE"),
        ],
        ..Behaviour::default()
    });
    let ids = runtime().block_on(async {
        let client = Client::connect(&gw.address(), 16).await.unwrap();
        let mut ids = Vec::new();
        for (symbol, code, text) in [
            ("NOSUB", 354, "Requested market data is not subscribed."),
            (
                "LIVE",
                10197,
                "No market data during competing live session",
            ),
        ] {
            // The request itself is accepted; the refusal follows, bound to it.
            let contract = Contract::stock(symbol).build();
            let mut bars = client.realtime_bars(&contract).subscribe().await.unwrap();
            let id = bars.request_id();
            match tokio::time::timeout(PROMPTLY, bars.next()).await {
                Ok(Some(Err(Error::Notice(n)))) => {
                    assert_eq!(said(&n), (code, id, text))
                }
                other => panic!("{symbol}: expected the refusal, got {other:?}"),
            }
            let end = tokio::time::timeout(PROMPTLY, bars.next()).await;
            assert!(matches!(end, Ok(None)), "{symbol}: {end:?}");
            // ibapi does not take the refusal as the end of the request: it cancels at drop.
            drop(bars);
            ids.push(id.unwrap());
            assert!(eventually(|| gw.seen().realtime_cancels == ids).await);
        }
        let mut bars = client
            .realtime_bars(&Contract::stock("SPY").build())
            .subscribe()
            .await
            .unwrap();
        next_bar(&mut bars, "a symbol not refused").await;
        ids.push(bars.request_id().unwrap());
        drop(bars);
        assert!(eventually(|| gw.seen().realtime_cancels == ids).await);
        client.disconnect().await;
        ids
    });
    let seen = gw.seen();
    assert_eq!(seen.realtime_requests_for("NOSUB"), 1);
    assert_eq!(seen.realtime_requests_for("LIVE"), 1);
    assert_eq!(seen.realtime_requests_for("SPY"), 1);
    assert_eq!(seen.realtime_cancels, ids);
}

async fn fetch_on(
    client: &Client,
    contract: &Contract,
) -> Result<ibapi::market_data::historical::HistoricalData, Error> {
    client
        .historical_data(contract, HistoricalBarSize::Min)
        .what_to_show(HistoricalWhatToShow::Trades)
        .duration(1.days())
        .fetch()
        .await
}

#[test]
fn history_without_data_or_permissions_is_error_162_and_ends_the_request() {
    let gw = gateway(Behaviour {
        history_no_data: vec!["EMPTY".into()],
        history_no_permissions: vec!["PERM".into()],
        history_end: Some(1_763_805_600),
        ..Behaviour::default()
    });
    runtime().block_on(async {
        let client = Client::connect(&gw.address(), 17).await.unwrap();
        let refusals = [
            (
                Contract::stock("EMPTY").build(),
                "Historical Market Data Service error message:HMDS query returned no data: \
                 EMPTY@SMART Trades",
            ),
            (
                Contract::stock("PERM").primary("NYSE").build(),
                "Historical Market Data Service error message:No market data permissions for \
                 NYSE STK",
            ),
        ];
        for (contract, text) in refusals {
            match fetch_on(&client, &contract).await {
                Err(Error::Notice(n)) => {
                    assert_eq!((n.code, n.message.as_str()), (162, text));
                    assert!(n.request_id.is_some(), "bound to the request: {n:?}");
                }
                other => panic!("expected error 162, got {other:?}"),
            }
        }
        // A whole answer afterwards: any cancel ibapi spawned for the refusals was written
        // before it. There is none: ibapi takes 162 as the end of the request.
        assert_eq!(
            fetch_on(&client, &Contract::stock("SPY").build())
                .await
                .unwrap()
                .bars
                .len(),
            1440
        );
        assert_eq!(gw.seen().history_cancels, Vec::<i32>::new());

        client.disconnect().await;
    });
    assert_eq!(gw.history_requests(), 3);
}

#[test]
fn a_historical_request_given_up_before_its_answer_is_cancelled() {
    let gw = gateway(Behaviour {
        reply_delay: Duration::from_millis(300),
        ..Behaviour::default()
    });
    runtime().block_on(async {
        let client = Client::connect(&gw.address(), 18).await.unwrap();
        let given_up = tokio::time::timeout(
            Duration::from_millis(50),
            fetch_on(&client, &Contract::stock("SPY").build()),
        )
        .await;
        assert!(given_up.is_err(), "given up: {given_up:?}");
        assert!(eventually(|| gw.seen().history_cancels.len() == 1).await);
        client.disconnect().await;
    });
    assert_eq!(gw.history_requests(), 1);
}

#[test]
fn a_client_id_stays_taken_for_a_while_after_its_connection_ended() {
    let linger = Duration::from_millis(2000);
    let gw = gateway(Behaviour {
        client_id_linger: linger,
        ..Behaviour::default()
    });
    let rt = runtime();
    let in_use = |result: Result<Client, Error>| match result {
        Err(Error::ClientIdInUse { client_id: 4 }) => {}
        Err(e) => panic!("expected client id 4 in use, got {e:?}"),
        Ok(_) => panic!("expected client id 4 in use, got a connection"),
    };
    rt.block_on(async {
        let first = Client::connect(&gw.address(), 4).await.unwrap();
        in_use(Client::connect(&gw.address(), 4).await);
        first.disconnect().await;
    });
    assert!(wait_closed(&gw, 0), "{:?}", gw.connections());
    // The gateway released the id before it recorded the close: it is free by then + linger.
    let free_by = Instant::now() + linger;
    rt.block_on(async {
        in_use(Client::connect(&gw.address(), 4).await);
        let other = Client::connect(&gw.address(), 5).await.unwrap();
        other.disconnect().await;
    });
    std::thread::sleep(free_by.saturating_duration_since(Instant::now()));
    rt.block_on(async {
        let again = Client::connect(&gw.address(), 4).await.unwrap();
        again.disconnect().await;
    });
    assert!(
        (1..5).all(|i| wait_closed(&gw, i)),
        "{:?}",
        gw.connections()
    );
    let records = gw.connections();
    let ids: Vec<_> = records.iter().map(|r| r.client_id).collect();
    assert_eq!(ids, [Some(4), Some(4), Some(4), Some(5), Some(4)]);
    let by_gateway: Vec<_> = records.iter().map(|r| r.closed_by_gateway).collect();
    assert_eq!(by_gateway, [false, true, true, false, false]);
}

/// Saturday 2025-11-22 10:00 UTC (05:00 US/Eastern).
const SATURDAY: i64 = 1_763_805_600;
/// Friday 2025-11-21 09:30 US/Eastern (14:30 UTC): the last regular session before
/// [`SATURDAY`] opens.
const FRIDAY_OPEN: i64 = 1_763_735_400;
const DAY: i64 = 86_400;

/// History for SPY from a gateway answering the way the real one does, ending at `end`.
fn realistic_fetch(
    end: i64,
    size: HistoricalBarSize,
    duration: ibapi::market_data::historical::Duration,
    hours: TradingHours,
) -> Result<ibapi::market_data::historical::HistoricalData, Error> {
    let gw = gateway(Behaviour {
        realistic_history: true,
        history_end: Some(end),
        ..Behaviour::default()
    });
    runtime().block_on(async {
        let client = Client::connect(&gw.address(), 19).await.unwrap();
        client
            .historical_data(&Contract::stock("SPY").build(), size)
            .what_to_show(HistoricalWhatToShow::Trades)
            .duration(duration)
            .trading_hours(hours)
            .fetch()
            .await
    })
}

/// The bars' start times, Unix seconds.
fn bar_times(data: &ibapi::market_data::historical::HistoricalData) -> Vec<i64> {
    use ibapi::market_data::historical::BarTimestamp;
    data.bars
        .iter()
        .map(|b| match b.date {
            BarTimestamp::DateTime(t) => t.unix_timestamp(),
            BarTimestamp::Date(d) => panic!("an intraday bar dated {d}"),
        })
        .collect()
}

/// Whether `times` are `count` bars a minute apart from `first`.
fn minutes_from(times: &[i64], first: i64, count: usize) -> bool {
    times.len() == count
        && times
            .iter()
            .enumerate()
            .all(|(i, t)| *t == first + 60 * i as i64)
}

#[test]
fn realistic_history_is_the_regular_sessions_with_the_end_marker_in_us_eastern() {
    let min = HistoricalBarSize::Min;
    // Ending on a Saturday: Friday's regular session, 09:30-16:00 US/Eastern, and nothing
    // else; ibapi reads the end marker's US/Eastern times as the right instants.
    let friday = realistic_fetch(SATURDAY, min, 1.days(), TradingHours::Regular).unwrap();
    let times = bar_times(&friday);
    assert!(minutes_from(&times, FRIDAY_OPEN, 390), "{times:?}");
    assert_eq!(friday.start.unix_timestamp(), FRIDAY_OPEN);
    assert_eq!(friday.end.unix_timestamp(), SATURDAY);

    // Two sessions: Thursday's and Friday's, nothing between them.
    let two = realistic_fetch(SATURDAY, min, 2.days(), TradingHours::Regular).unwrap();
    let times = bar_times(&two);
    assert!(
        minutes_from(&times[..390], FRIDAY_OPEN - DAY, 390),
        "{times:?}"
    );
    assert!(minutes_from(&times[390..], FRIDAY_OPEN, 390), "{times:?}");
    assert_eq!(two.start.unix_timestamp(), FRIDAY_OPEN - DAY);

    // All hours asked for: 04:00-20:00 US/Eastern.
    let extended = realistic_fetch(SATURDAY, min, 1.days(), TradingHours::Extended).unwrap();
    let times = bar_times(&extended);
    assert!(
        minutes_from(&times, FRIDAY_OPEN - 330 * 60, 960),
        "{times:?}"
    );

    // In summer the session opens at 13:30 UTC (daylight saving time).
    let july_12 = 1_752_278_400; // Saturday 2025-07-12 00:00 UTC, Friday 20:00 US/Eastern
    let july_11_open = 1_752_240_600; // 13:30 UTC
    let summer = realistic_fetch(july_12, min, 1.days(), TradingHours::Regular).unwrap();
    assert!(minutes_from(&bar_times(&summer), july_11_open, 390));
    assert_eq!(summer.start.unix_timestamp(), july_11_open);
    assert_eq!(summer.end.unix_timestamp(), july_12);

    // Mid-session: the whole bars so far (09:30 to 10:00).
    let mid = realistic_fetch(FRIDAY_OPEN + 1800, min, 1.days(), TradingHours::Regular).unwrap();
    assert!(minutes_from(&bar_times(&mid), FRIDAY_OPEN, 30));

    // Daily bars over a week: one per weekday, dated by the exchange's date.
    let week = realistic_fetch(
        SATURDAY,
        HistoricalBarSize::Day,
        1.weeks(),
        TradingHours::Regular,
    )
    .unwrap();
    let dates: Vec<String> = week.bars.iter().map(|b| b.date.to_string()).collect();
    assert_eq!(
        dates,
        ["20251117", "20251118", "20251119", "20251120", "20251121"]
    );
}

#[test]
fn realistic_history_over_a_weekend_only_is_error_162_no_data() {
    let sunday_evening = SATURDAY + 37 * 3600; // 2025-11-23 23:00 UTC
    match realistic_fetch(
        sunday_evening,
        HistoricalBarSize::Min,
        86_400.seconds(),
        TradingHours::Regular,
    ) {
        Err(Error::Notice(n)) => assert_eq!(
            (n.code, n.message.as_str()),
            (
                162,
                "Historical Market Data Service error message:HMDS query returned no data: \
                 SPY@SMART Trades"
            )
        ),
        other => panic!("expected error 162, got {other:?}"),
    }
}

#[test]
fn an_ambiguous_symbol_finds_several_contracts_and_a_primary_exchange_picks_one() {
    let gw = gateway(Behaviour {
        ambiguous_symbols: vec!["AMBG".into()],
        unknown_symbols: vec!["ZZZZ".into()],
        ..Behaviour::default()
    });
    runtime().block_on(async {
        let client = Client::connect(&gw.address(), 20).await.unwrap();
        let found = client
            .contract_details(&Contract::stock("AMBG").build())
            .await
            .unwrap();
        let listings: Vec<(String, String, String)> = found
            .iter()
            .map(|d| {
                let c = &d.contract;
                (
                    c.symbol.to_string(),
                    c.primary_exchange.to_string(),
                    c.currency.to_string(),
                )
            })
            .collect();
        assert_eq!(
            listings,
            [
                ("AMBG".into(), "NASDAQ".into(), "USD".into()),
                ("AMBG".into(), "NYSE".into(), "USD".into())
            ]
        );
        let (nasdaq, nyse) = (found[0].contract.contract_id, found[1].contract.contract_id);
        assert!(nasdaq > 0 && nyse > 0 && nasdaq != nyse, "{nasdaq} {nyse}");

        // The primary exchange, or the contract id, picks one.
        let picked = client
            .contract_details(&Contract::stock("AMBG").primary("NYSE").build())
            .await
            .unwrap();
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].contract.contract_id, nyse);
        let mut by_id = Contract::stock("AMBG").build();
        by_id.contract_id = nasdaq;
        let picked = client.contract_details(&by_id).await.unwrap();
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].contract.primary_exchange.to_string(), "NASDAQ");

        // Another symbol is listed once; an unknown one is error 200.
        let spy = client
            .contract_details(&Contract::stock("SPY").build())
            .await
            .unwrap();
        assert_eq!(spy.len(), 1);
        match client
            .contract_details(&Contract::stock("ZZZZ").build())
            .await
        {
            Err(Error::Notice(n)) => assert_eq!(n.code, 200),
            other => panic!("expected error 200, got {other:?}"),
        }
        client.disconnect().await;
    });
    assert_eq!(
        gw.seen().contract_details,
        ["AMBG", "AMBG", "AMBG", "SPY", "ZZZZ"]
    );
}

#[test]
fn after_an_outage_a_lingering_client_id_is_refused_until_free_and_ibapi_retries() {
    let linger = Duration::from_millis(2500);
    let gw = gateway(Behaviour {
        client_id_linger: linger,
        ..Behaviour::default()
    });
    runtime().block_on(async {
        let client = Client::connect(&gw.address(), 21).await.unwrap();
        let down = Instant::now();
        gw.outage(Duration::from_millis(200));
        assert!(
            eventually(|| !client.is_connected()).await,
            "ibapi saw the close"
        );
        // ibapi's first attempt, a second after the close, finds the id still taken (326);
        // it retries until the id is free.
        reconnected(&client, "ibapi reconnects once the client id is free").await;
        assert!(
            down.elapsed() >= linger,
            "connected after {:?}",
            down.elapsed()
        );
        client.disconnect().await;
    });
    let records = gw.connections();
    assert!(records[0].closed_by_gateway, "{records:?}");
    let refused = records[1..records.len() - 1].iter();
    assert!(
        refused.clone().count() >= 1
            && refused
                .clone()
                .all(|r| r.client_id == Some(21) && r.closed_by_gateway),
        "{records:?}"
    );
    assert_eq!(records.last().unwrap().client_id, Some(21));
}

/// The next notice with `code`, within [`PROMPTLY`] (farm notices included).
async fn notice_with(notices: &mut NoticeStream, code: i32) -> Notice {
    let deadline = tokio::time::Instant::now() + PROMPTLY;
    loop {
        match tokio::time::timeout_at(deadline, notices.next()).await {
            Ok(Some(n)) if n.code == code => return n,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the notice stream ended before {code}"),
            Err(_) => panic!("no {code} within {PROMPTLY:?}"),
        }
    }
}

#[test]
fn a_farm_flap_leaves_the_open_streams_dead_until_they_are_requested_again() {
    let gw = gateway(Behaviour {
        realtime_interval: Duration::from_millis(20),
        farm_flap: Some(FarmFlap {
            after_bars: 3,
            lasts: Duration::from_millis(300),
            silent_streams: true,
        }),
        ..Behaviour::default()
    });
    runtime().block_on(async {
        let (client, mut notices) = connect_with_notices(&gw, 21).await;
        let contract = Contract::stock("SPY").build();
        let mut old = client.realtime_bars(&contract).subscribe().await.unwrap();
        for _ in 0..3 {
            next_bar(&mut old, "before the flap").await;
        }
        let broken = notice_with(&mut notices, codes::MARKET_DATA_FARM_BROKEN).await;
        assert_eq!(
            said(&broken),
            (2103, None, "Market data farm connection is broken:usfarm")
        );
        let ok = notice_with(&mut notices, codes::MARKET_DATA_FARM_OK).await;
        assert_eq!(
            said(&ok),
            (2104, None, "Market data farm connection is OK:usfarm")
        );
        // Well after the 2104: nothing on the old stream, no error, no end.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (after, ended) = ready(&mut old).await;
        assert!(
            after.is_empty(),
            "bars on a stream the flap left dead: {after:?}"
        );
        assert!(!ended);

        // Cancelled and requested again, the symbol streams again.
        let old_id = old.request_id().unwrap();
        drop(old);
        assert!(eventually(|| gw.seen().realtime_cancels == [old_id]).await);
        let mut new = client.realtime_bars(&contract).subscribe().await.unwrap();
        for _ in 0..3 {
            next_bar(&mut new, "requested again").await;
        }
        assert_eq!(gw.seen().realtime_requests_for("SPY"), 2);
        client.disconnect().await;
    });
}

#[test]
fn a_farm_flap_without_silent_streams_holds_the_bars_then_resumes_them() {
    let gw = gateway(Behaviour {
        realtime_interval: Duration::from_millis(20),
        ..Behaviour::default()
    });
    runtime().block_on(async {
        let (client, mut notices) = connect_with_notices(&gw, 22).await;
        let contract = Contract::stock("QQQ").build();
        let mut bars = client.realtime_bars(&contract).subscribe().await.unwrap();
        next_bar(&mut bars, "before the flap").await;
        gw.farm_flap(Duration::from_secs(2), false);
        notice_with(&mut notices, codes::MARKET_DATA_FARM_BROKEN).await;
        let _ = ready(&mut bars).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (during, _) = ready(&mut bars).await;
        assert!(
            during.is_empty(),
            "bars while the farm is broken: {during:?}"
        );
        notice_with(&mut notices, codes::MARKET_DATA_FARM_OK).await;
        next_bar(&mut bars, "after the 2104").await;
        assert_eq!(gw.seen().realtime_requests_for("QQQ"), 1);
        client.disconnect().await;
    });
}

#[test]
fn a_silent_feed_stops_its_symbol_only_and_a_later_request_flows_once_it_lasted() {
    let gw = gateway(Behaviour {
        realtime_interval: Duration::from_millis(20),
        silent_feeds: vec![SilentFeed {
            symbol: "IWM".into(),
            after_bars: 4,
            lasts: Some(Duration::from_secs(2)),
        }],
        ..Behaviour::default()
    });
    runtime().block_on(async {
        let client = Client::connect(&gw.address(), 23).await.unwrap();
        let mut iwm = client
            .realtime_bars(&Contract::stock("IWM").build())
            .subscribe()
            .await
            .unwrap();
        for _ in 0..4 {
            next_bar(&mut iwm, "before the silence").await;
        }
        let mut spy = client
            .realtime_bars(&Contract::stock("SPY").build())
            .subscribe()
            .await
            .unwrap();
        for _ in 0..5 {
            next_bar(&mut spy, "another symbol").await;
        }
        let _ = ready(&mut iwm).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (silent, ended) = ready(&mut iwm).await;
        assert!(
            silent.is_empty(),
            "bars after the silence began: {silent:?}"
        );
        assert!(!ended);

        // A new request before `lasts` is silent too; after it, it flows. The old stays dead.
        let started = Instant::now();
        let mut again = client
            .realtime_bars(&Contract::stock("IWM").build())
            .subscribe()
            .await
            .unwrap();
        next_bar(&mut again, "requested again").await;
        // The stop came a few hundred ms before `started`: nothing for a second at least.
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        let (old, _) = ready(&mut iwm).await;
        assert!(
            old.is_empty(),
            "bars on the stream open at the silence: {old:?}"
        );
        client.disconnect().await;
    });
}

#[test]
fn contract_details_tell_a_weeks_hours_and_a_holiday_has_no_bars() {
    let today = Gateway::exchange_today();
    let gw = gateway(Behaviour {
        realtime_interval: Duration::from_millis(20),
        trading_hours: true,
        holidays: vec![today],
        ..Behaviour::default()
    });
    runtime().block_on(async {
        let client = Client::connect(&gw.address(), 24).await.unwrap();
        let contract = Contract::stock("SPY").build();
        let details = client.contract_details(&contract).await.unwrap();
        assert_eq!(details.len(), 1);
        let d = &details[0];
        assert_eq!(d.time_zone_id, "US/Eastern");
        assert_eq!(d.trading_hours.len(), 7, "{:?}", d.trading_hours);
        assert_eq!(d.liquid_hours.len(), 7, "{:?}", d.liquid_hours);
        assert!(
            d.trading_hours[0].ends_with(":CLOSED"),
            "{:?}",
            d.trading_hours
        );
        assert!(
            d.liquid_hours[0].ends_with(":CLOSED"),
            "{:?}",
            d.liquid_hours
        );
        // Of the six days after, the weekdays (Monday to Friday: 1970-01-01 was a Thursday)
        // have sessions.
        let weekdays = (today + 1..today + 7)
            .filter(|d| (d + 3).rem_euclid(7) < 5)
            .count();
        assert_eq!(
            d.liquid_hours[1..]
                .iter()
                .filter(|h| h.contains(":0930-") && h.ends_with(":1600"))
                .count(),
            weekdays,
            "{:?}",
            d.liquid_hours
        );

        for hours in [TradingHours::Regular, TradingHours::Extended] {
            let mut bars = client
                .realtime_bars(&contract)
                .trading_hours(hours)
                .subscribe()
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (on_a_holiday, ended) = ready(&mut bars).await;
            assert!(on_a_holiday.is_empty(), "{hours:?}: {on_a_holiday:?}");
            assert!(!ended);
        }
        client.disconnect().await;
    });
}
