//! The fake gateway against the real `ibapi` client: the handshake, managed accounts and next
//! valid id, a late accounts message, a client id in use, and the record of a closed socket.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use tests::gateway::{Behaviour, Gateway};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
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
    let gw = Gateway::start(Behaviour {
        accounts: vec!["DU111".into(), "DU222".into()],
        ..Behaviour::default()
    })
    .unwrap();
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
    let gw = Gateway::start(Behaviour {
        accounts_delay: Duration::from_millis(300),
        ..Behaviour::default()
    })
    .unwrap();
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
    let gw = Gateway::start(Behaviour {
        ids_in_use: vec![5],
        ..Behaviour::default()
    })
    .unwrap();
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
    use ibapi::prelude::*;
    runtime().block_on(async {
        let client = ibapi::Client::connect(&gw.address(), 3).await.unwrap();
        let contract = Contract::stock(symbol).build();
        client
            .historical_data(&contract, HistoricalBarSize::Min)
            .what_to_show(HistoricalWhatToShow::Trades)
            .duration(1.days())
            .fetch()
            .await
    })
}

#[test]
fn historical_bars_arrive_whole() {
    let gw = Gateway::start(Behaviour {
        history_end: Some(1_763_805_600),
        ..Behaviour::default()
    })
    .unwrap();
    let data = fetch(&gw, "SPY").unwrap();
    assert_eq!(data.bars.len(), 1440);
    assert!(data.bars.iter().all(|b| b.close > 0.0 && b.low <= b.high));
    assert_eq!(gw.history_requests(), 1);
}

#[test]
fn unknown_symbols_and_pacing_violations_are_errors() {
    let gw = Gateway::start(Behaviour {
        unknown_symbols: vec!["ZZZZ".into()],
        pacing_violations: 1,
        ..Behaviour::default()
    })
    .unwrap();
    let err = fetch(&gw, "SPY").unwrap_err().to_string();
    assert!(err.contains("162") || err.contains("pacing"), "{err}");
    let err = fetch(&gw, "ZZZZ").unwrap_err().to_string();
    assert!(
        err.contains("200") || err.contains("security definition"),
        "{err}"
    );
    assert_eq!(fetch(&gw, "SPY").unwrap().bars.len(), 1440);
}
