//! The board and its views without a run: what each update changes, and what it tells.

use bridge::protocol::{
    Bar, ConnectionStatus, Event, Fill, OrderReport, OrderRequest, OrderStatus, OrderType, Side,
    TimeInForce,
};

use super::board::{Board, BoardSetup, Change};
use super::feed::Update;
use super::shared::Shared;
use super::views;
use crate::strategy::Crossover;

fn board(symbols: &[&str], bars: usize) -> Board {
    Board::new(BoardSetup {
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        crossover: Crossover { fast: 2, slow: 4 },
        stale_after: 3,
        bar_seconds: 60,
        trading: true,
        backend: "sim".into(),
        bars,
    })
}

fn bars(from: i64, n: usize) -> Vec<Bar> {
    (0..n)
        .map(|i| {
            let c = 100.0 + (i % 7) as f64;
            Bar {
                time: from + 60 * i as i64,
                open: c,
                high: c + 1.0,
                low: c - 1.0,
                close: c,
                volume: 10.0,
            }
        })
        .collect()
}

fn history(symbol: &str, bars: Vec<Bar>) -> Update {
    let total = bars.len();
    Update::History {
        symbol: symbol.into(),
        bars,
        total,
    }
}

fn live(symbol: &str, bar: Bar) -> Update {
    Update::Bar {
        symbol: symbol.into(),
        bar,
        order: None,
    }
}

#[test]
fn bars_held_are_bounded_in_time_order_and_counted_as_the_run_counts_them() {
    let mut b = board(&["SPY"], 10);
    let mut h = bars(0, 30);
    h.push(h[29]); // a repeat is held once
    let total = h.len();
    b.apply(history("SPY", h));
    let s = b.symbol("SPY").unwrap();
    assert_eq!(s.points.len(), 10);
    assert_eq!(
        s.history_bars, total,
        "every bar fetched, not only those held"
    );
    for bar in bars(30 * 60, 25) {
        b.apply(live("SPY", bar));
    }
    // An old bar again is no live bar.
    b.apply(live("SPY", bars(0, 1)[0]));
    let s = b.symbol("SPY").unwrap();
    assert_eq!((s.points.len(), s.live_bars), (10, 25));
    let times: Vec<i64> = s.points.iter().map(|p| p.bar.time).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
}

#[test]
fn a_symbols_figures_are_the_crossovers_and_a_lagging_one_has_no_signal() {
    let mut b = board(&["SPY", "QQQ"], 100);
    b.apply(history("SPY", bars(0, 20)));
    b.apply(history("QQQ", bars(0, 20)));
    // SPY goes on, QQQ stays behind by more than 3 bars.
    for bar in bars(20 * 60, 5) {
        b.apply(live("SPY", bar));
    }
    let state = views::state(&b);
    let row = |sym: &str| {
        state["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["symbol"] == sym)
            .unwrap()
            .clone()
    };
    let spy_bars: Vec<Bar> = b
        .symbol("SPY")
        .unwrap()
        .points
        .iter()
        .map(|p| p.bar)
        .collect();
    let e = Crossover { fast: 2, slow: 4 }.evaluate(&spy_bars).unwrap();
    assert_eq!(row("SPY")["fast"], e.fast);
    assert_eq!(row("SPY")["slow"], e.slow);
    assert_eq!(row("SPY")["signal"], e.signal.to_string());
    assert_eq!(row("SPY")["text"]["fast"], format!("{:.2}", e.fast));
    assert!(row("QQQ")["signal"].is_null());
    assert!(row("QQQ")["no_signal"].as_str().unwrap().contains("stale"));
}

#[test]
fn a_connection_down_interrupts_live_symbols_until_it_is_back_not_while_reconnecting() {
    let mut b = board(&["SPY"], 100);
    b.apply(history("SPY", bars(0, 10)));
    let state = |b: &Board| views::state(b)["symbols"][0]["state"].clone();
    let conn = |s| Update::Event(Event::Connection(s));
    b.apply(conn(ConnectionStatus::Lost {
        reason: "1100".into(),
    }));
    assert_eq!(state(&b), "interrupted");
    b.apply(conn(ConnectionStatus::Reconnecting { attempt: 1 }));
    assert_eq!(state(&b), "interrupted");
    b.apply(conn(ConnectionStatus::Restored { data_lost: true }));
    assert_eq!(state(&b), "live");
    assert_eq!(views::state(&b)["health"]["broker_restores_data_lost"], 1);
}

fn order(reference: &str, status: OrderStatus, filled: f64) -> OrderReport {
    OrderReport {
        request: OrderRequest {
            order_ref: reference.into(),
            symbol: "SPY".into(),
            side: Side::Buy,
            quantity: 10.0,
            order_type: OrderType::Market,
            tif: TimeInForce::Day,
        },
        broker_id: 1,
        status,
        filled,
        avg_price: None,
        reason: None,
    }
}

#[test]
fn a_fill_told_again_with_its_commission_changes_the_positions_once() {
    let mut b = board(&["SPY"], 100);
    b.apply(history("SPY", bars(0, 10)));
    b.apply(Update::Order(Box::new(order(
        "r1",
        OrderStatus::Working,
        0.0,
    ))));
    let fill = Fill {
        order_ref: "r1".into(),
        exec_id: "e1".into(),
        symbol: "SPY".into(),
        side: Side::Buy,
        quantity: 10.0,
        price: 101.0,
        commission: None,
        time: 600,
    };
    let first = b.apply(Update::Fill(Box::new(fill.clone())));
    assert!(matches!(first[..], [Change::Fill { .. }]), "{first:?}");
    let again = b.apply(Update::Fill(Box::new(Fill {
        commission: Some(1.0),
        ..fill.clone()
    })));
    assert_eq!(again, [Change::Positions]);
    assert!(b.apply(Update::Fill(Box::new(fill))).is_empty());
    let p = &views::state(&b)["positions"][0];
    assert_eq!(
        (p["quantity"].as_f64(), p["commissions"].as_f64()),
        (Some(10.0), Some(1.0))
    );
    assert_eq!(b.fills.len(), 1);
}

#[test]
fn only_a_change_gets_a_number_and_each_number_is_told() {
    let shared = Shared::new(board(&["SPY"], 100), 16);
    let mut rx = shared.events.subscribe();
    shared.apply(|b| b.apply(history("SPY", bars(0, 10))));
    // Nothing new: no number, nothing told.
    shared.apply(|b| b.apply(live("SPY", bars(0, 1)[0])));
    shared.apply(|b| b.apply(Update::Event(Event::BookTold { through: 5 })));
    shared.apply(|b| b.apply(live("SPY", bars(600, 1)[0])));
    let told: Vec<(u64, &str)> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|m| (m.seq, m.name))
        .collect();
    assert_eq!(told, [(1, "history"), (2, "bar")]);
    assert_eq!(shared.board.lock().seq, 2);
}

#[test]
fn the_pnl_over_time_never_goes_back_in_time() {
    let mut b = board(&["SPY", "QQQ"], 100);
    b.apply(history("SPY", bars(0, 10)));
    b.apply(history("QQQ", bars(0, 10)));
    b.apply(live("SPY", bars(1200, 1)[0]));
    // QQQ's delayed bar, older than SPY's.
    b.apply(live("QQQ", bars(600, 1)[0]));
    b.apply(live("SPY", bars(1260, 1)[0]));
    let times: Vec<i64> = b.pnl.iter().map(|p| p.0).collect();
    assert_eq!(times, [1200, 1260]);
}

#[test]
fn the_report_keeps_its_data_inside_its_script() {
    let mut b = board(&["SPY"], 100);
    b.apply(history("SPY", bars(0, 10)));
    b.apply(Update::Warning {
        at_ms: 1,
        level: "warning",
        text: "</script><script>alert(1)</script><!--".into(),
    });
    let html = super::report::render(&b, &[10.0, 20.0]);
    let data = html
        .split("window.IBBRIDGE_REPORT = ")
        .nth(1)
        .and_then(|rest| rest.split(";</script>").next())
        .unwrap();
    assert!(!data.contains('<'), "{data}");
    let v: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(
        v["warnings_all"][0]["text"],
        "</script><script>alert(1)</script><!--"
    );
    assert_eq!(v["final_round_trip_us"]["p50"], 10.0);
}
