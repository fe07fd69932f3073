//! Tests of the simulated broker: fills, cancels, changes, buying power, positions, and the
//! journal that makes its book outlive a worker.

use super::*;
use crate::sim::journal::{claim_clock, JournalClock};
use bridge::protocol::OrderStatus;
use std::fs::OpenOptions;
use std::io::Write;

mod fold;

const SEED: u64 = 42;
/// A market time 2 s after a 5-second bar began (1_700_000_000 is a multiple of 5).
const T0: i64 = 1_700_000_002;
/// The start of the next bar after `T0`: where `T0`'s orders fill.
const NEXT: i64 = 1_700_000_005;

fn opts(file: Option<&std::path::Path>) -> SimBrokerOptions {
    SimBrokerOptions {
        orders_file: file.map(|p| p.display().to_string()),
        ..SimBrokerOptions::default()
    }
}

/// The price paths of the tests' seed.
fn paths() -> Prices {
    Prices::Paths { seed: SEED }
}

fn broker(file: Option<&std::path::Path>) -> SimBroker {
    SimBroker::new(opts(file), paths(), "DU0000001", None)
}

fn order(order_ref: &str, side: Side, quantity: f64, order_type: OrderType) -> OrderRequest {
    OrderRequest {
        order_ref: order_ref.into(),
        symbol: "SPY".into(),
        side,
        quantity,
        order_type,
        tif: TimeInForce::Gtc,
    }
}

fn price(t: i64) -> f64 {
    crate::sim::PricePath::new(SEED, "SPY").price(t)
}

/// A journal file of its own, made empty (as a run's claim of its clock makes it), removed
/// when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "ibbridge-broker-test-{}-{name}-{}",
            std::process::id(),
            base::random::mix(base::unix_time::now().as_nanos() as u64)
        ));
        std::fs::write(&p, "").unwrap();
        TempFile(p)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_market_order_fills_at_the_next_bars_open_with_slippage_and_commission() {
    let b = broker(None);
    let (report, placed, taken) = b
        .place(&order("m1", Side::Buy, 10.0, OrderType::Market), T0)
        .unwrap();
    assert!(placed);
    assert_eq!(taken, 1);
    assert_eq!(report.status, OrderStatus::Working);
    assert_eq!(report.broker_id, 1);
    assert_eq!(report.filled, 0.0);
    // Nothing before the next bar begins.
    assert!(b.poll(NEXT - 1).unwrap().fills.is_empty());
    let changes = b.poll(NEXT).unwrap();
    assert_eq!(changes.fills.len(), 1);
    let fill = &changes.fills[0];
    let expected = price(NEXT) * (1.0 + 1.0 / 10_000.0);
    assert_eq!(fill.price, expected);
    assert_eq!(fill.quantity, 10.0);
    assert_eq!(fill.exec_id, "00000001.1");
    assert_eq!(fill.time, NEXT);
    assert_eq!(fill.commission, Some(1.0), "the minimum commission");
    assert_eq!(changes.orders.len(), 1);
    assert_eq!(changes.orders[0].status, OrderStatus::Filled);
    assert_eq!(changes.orders[0].avg_price, Some(expected));
    assert_eq!(changes.positions.len(), 1);
    assert_eq!(changes.positions[0].quantity, 10.0);
    assert_eq!(changes.positions[0].avg_cost, expected);
    // Told once.
    assert!(b.poll(NEXT + 60).unwrap().is_empty());
    // Times never go back: the account is valued at the latest time looked at.
    let account = b.account(NEXT).unwrap();
    assert_eq!(account.cash, 1_000_000.0 - 10.0 * expected - 1.0);
    assert_eq!(
        account.net_liquidation,
        account.cash + 10.0 * price(NEXT + 60)
    );
}

#[test]
fn a_limit_order_waits_for_a_bar_that_opens_at_its_price() {
    let b = broker(None);
    // A buy limit 2 % under the market: fills at the first bar that opens at or below it.
    let limit = price(T0) * 0.98;
    b.place(
        &order("l1", Side::Buy, 5.0, OrderType::Limit { price: limit }),
        T0,
    )
    .unwrap();
    let first = (0..200_000)
        .map(|k| NEXT + 5 * k)
        .find(|&t| price(t) <= limit)
        .expect("the market dips 2 % within a year of bars");
    let before = b.poll(first - 5).unwrap();
    assert!(before.fills.is_empty());
    assert_eq!(b.orders(first - 5).unwrap()[0].status, OrderStatus::Working);
    let at = b.poll(first).unwrap();
    assert_eq!(at.fills.len(), 1);
    assert_eq!(at.fills[0].time, first);
    assert!(at.fills[0].price <= limit);
}

#[test]
fn a_large_order_fills_in_parts_over_several_bars() {
    let b = broker(None);
    b.place(&order("big", Side::Sell, 2_500.0, OrderType::Market), T0)
        .unwrap();
    let first = b.poll(NEXT).unwrap();
    assert_eq!(first.fills.len(), 1);
    assert_eq!(first.fills[0].quantity, 1_000.0);
    assert_eq!(first.orders[0].status, OrderStatus::PartiallyFilled);
    assert_eq!(first.orders[0].filled, 1_000.0);
    let rest = b.poll(NEXT + 10).unwrap();
    let sizes: Vec<f64> = rest.fills.iter().map(|f| f.quantity).collect();
    assert_eq!(sizes, vec![1_000.0, 500.0]);
    let ids: Vec<&str> = rest.fills.iter().map(|f| f.exec_id.as_str()).collect();
    assert_eq!(ids, vec!["00000001.2", "00000001.3"]);
    assert_eq!(rest.orders[0].status, OrderStatus::Filled);
    assert_eq!(b.positions(NEXT + 10).unwrap()[0].quantity, -2_500.0);
}

#[test]
fn a_cancel_stops_fills_and_leaves_a_final_order_alone() {
    let b = broker(None);
    b.place(&order("c1", Side::Buy, 2_500.0, OrderType::Market), T0)
        .unwrap();
    // One part filled at NEXT, then cancelled before the second.
    let report = b.cancel("c1", NEXT + 1).unwrap();
    assert_eq!(report.status, OrderStatus::Cancelled);
    assert_eq!(report.filled, 1_000.0);
    // The first poll tells the part filled before the cancel, and the cancel; no more.
    let told = b.poll(NEXT + 100).unwrap();
    assert_eq!(told.fills.len(), 1);
    assert_eq!(told.fills[0].time, NEXT);
    assert_eq!(told.orders.len(), 1);
    assert_eq!(told.orders[0].status, OrderStatus::Cancelled);
    assert!(b.poll(NEXT + 200).unwrap().is_empty());
    assert_eq!(b.executions(NEXT + 100).unwrap().len(), 1);
    // Cancelling again, or a filled order, changes nothing.
    assert_eq!(b.cancel("c1", NEXT + 200).unwrap(), report);
    b.place(&order("f1", Side::Buy, 1.0, OrderType::Market), NEXT + 300)
        .unwrap();
    let filled = b.cancel("f1", NEXT + 400).unwrap();
    assert_eq!(filled.status, OrderStatus::Filled);
    let e = b.cancel("nope", NEXT).unwrap_err();
    assert_eq!(e.kind, ErrorKind::UnknownOrder);
}

#[test]
fn cancel_all_cancels_only_working_orders() {
    let b = broker(None);
    let far = price(T0) * 0.5;
    for r in ["w1", "w2"] {
        b.place(
            &order(r, Side::Buy, 1.0, OrderType::Limit { price: far }),
            T0,
        )
        .unwrap();
    }
    b.place(&order("done", Side::Buy, 1.0, OrderType::Market), T0)
        .unwrap();
    let count = b.cancel_all(NEXT + 5).unwrap();
    assert_eq!(count, 2);
    let statuses: Vec<OrderStatus> = b
        .orders(NEXT + 5)
        .unwrap()
        .iter()
        .map(|o| o.status)
        .collect();
    assert_eq!(
        statuses,
        vec![
            OrderStatus::Cancelled,
            OrderStatus::Cancelled,
            OrderStatus::Filled
        ]
    );
    assert_eq!(b.cancel_all(NEXT + 10).unwrap(), 0);
}

#[test]
fn a_day_order_expires_at_the_end_of_its_day() {
    let b = broker(None);
    let far = price(T0) * 0.5;
    let mut day = order("d1", Side::Buy, 1.0, OrderType::Limit { price: far });
    day.tif = TimeInForce::Day;
    b.place(&day, T0).unwrap();
    let midnight = (T0.div_euclid(86_400) + 1) * 86_400;
    assert_eq!(
        b.orders(midnight - 1).unwrap()[0].status,
        OrderStatus::Working
    );
    let changes = b.poll(midnight).unwrap();
    assert_eq!(changes.orders[0].status, OrderStatus::Cancelled);
    assert_eq!(
        changes.orders[0].reason.as_deref(),
        Some("day order expired at the end of the day")
    );
}

#[test]
fn a_buy_beyond_the_buying_power_is_rejected_with_the_figures() {
    let b = broker(None);
    let p = price(T0);
    let too_many = (1_000_000.0 / p).ceil() + 1.0;
    let (report, placed, _) = b
        .place(&order("r1", Side::Buy, too_many, OrderType::Market), T0)
        .unwrap();
    assert!(placed, "a rejected order is in the book too");
    assert_eq!(report.status, OrderStatus::Rejected);
    let reason = report.reason.unwrap();
    assert!(reason.starts_with("insufficient buying power"), "{reason}");
    assert!(reason.contains("1000000.00 available"), "{reason}");
    // Working buys commit cash: two halves of the account, the second refused.
    let half = (500_000.0 / p).floor();
    let limit = OrderType::Limit { price: p };
    assert_eq!(
        b.place(&order("h1", Side::Buy, half, limit), T0)
            .unwrap()
            .0
            .status,
        OrderStatus::Working
    );
    assert_eq!(
        b.place(&order("h2", Side::Buy, half + 10.0, limit), T0)
            .unwrap()
            .0
            .status,
        OrderStatus::Rejected
    );
    // Sells never need cash.
    assert_eq!(
        b.place(&order("s1", Side::Sell, too_many, OrderType::Market), T0)
            .unwrap()
            .0
            .status,
        OrderStatus::Working
    );
    assert!(b
        .poll(NEXT)
        .unwrap()
        .fills
        .iter()
        .all(|f| f.order_ref != "r1"));
}

/// A replacement told what the runner heard already tells only what changed since: an order
/// settled by then (taken, final, every fill) is not told again; one still working then, or
/// taken later, is.
#[test]
fn a_replacement_tells_only_what_the_runner_has_not_heard() {
    let file = TempFile::new("heard");
    let first = broker(Some(&file.0));
    let filled = order("h-1", Side::Buy, 10.0, OrderType::Market);
    let resting = order("h-2", Side::Buy, 10.0, OrderType::Limit { price: 1.0 });
    first.place(&filled, T0).unwrap();
    first.place(&resting, T0).unwrap();
    let told = first.poll(NEXT + 1).unwrap();
    assert_eq!(
        (told.at, told.fills.len(), told.orders.len()),
        (NEXT + 1, 1, 2)
    );
    drop(first);
    // Taken while no worker watched, after what the runner heard.
    let third = order("h-3", Side::Sell, 5.0, OrderType::Market);
    broker(Some(&file.0)).place(&third, NEXT + 2).unwrap();

    let second = SimBroker::new(opts(Some(&file.0)), paths(), "DU0000001", Some(NEXT + 1));
    let caught_up = second.poll(NEXT + 10).unwrap();
    let refs: Vec<&str> = caught_up
        .orders
        .iter()
        .map(|o| o.request.order_ref.as_str())
        .collect();
    assert_eq!(refs, ["h-2", "h-3"], "h-1 was heard in full");
    assert_eq!(caught_up.fills.len(), 1, "h-3's fill only");
    assert_eq!(caught_up.fills[0].order_ref, "h-3");
    // Without what was heard, everything is told.
    let fresh = broker(Some(&file.0)).poll(NEXT + 10).unwrap();
    assert_eq!((fresh.orders.len(), fresh.fills.len()), (3, 2));
}

#[test]
fn an_order_in_the_journal_is_found_by_a_new_broker_and_never_placed_again() {
    let file = TempFile::new("replay");
    let first = broker(Some(&file.0));
    let m = order("x-1", Side::Buy, 2_500.0, OrderType::Market);
    let (placed_report, placed, _) = first.place(&m, T0).unwrap();
    assert!(placed);
    let fills_first = first.executions(NEXT + 5).unwrap();
    drop(first);

    // A replacement worker: same journal, nothing in memory.
    let second = broker(Some(&file.0));
    let (found, placed, taken) = second.place(&m, NEXT + 5).unwrap();
    assert!(!placed, "the reference is already at the broker");
    assert_eq!(taken, 0);
    assert_eq!(found.broker_id, placed_report.broker_id);
    assert_eq!(found.filled, 2_000.0);
    assert_eq!(second.executions(NEXT + 5).unwrap(), fills_first);
    assert_eq!(second.orders(NEXT + 5).unwrap().len(), 1);
    // Its first poll tells what happened while no worker watched.
    let caught_up = second.poll(NEXT + 10).unwrap();
    assert_eq!(caught_up.fills.len(), 3);
    assert_eq!(caught_up.orders[0].status, OrderStatus::Filled);
    // A new order gets the next broker id, never a used one.
    let (next, _, _) = second
        .place(&order("x-2", Side::Sell, 1.0, OrderType::Market), NEXT + 10)
        .unwrap();
    assert_eq!(next.broker_id, placed_report.broker_id + 1);
    let text = std::fs::read_to_string(&file.0).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
}

#[test]
fn a_half_written_line_is_no_order_and_is_cut_off_before_the_next() {
    let file = TempFile::new("torn");
    let b = broker(Some(&file.0));
    b.place(&order("a", Side::Buy, 1.0, OrderType::Market), T0)
        .unwrap();
    drop(b);
    // A writer killed in the middle of its line.
    let mut f = OpenOptions::new().append(true).open(&file.0).unwrap();
    f.write_all(b"P\t1700000003\t2\tb\tSPY\tB").unwrap();
    drop(f);
    let b = broker(Some(&file.0));
    assert_eq!(b.orders(T0).unwrap().len(), 1);
    b.place(&order("c", Side::Buy, 1.0, OrderType::Market), T0)
        .unwrap();
    let text = std::fs::read_to_string(&file.0).unwrap();
    let refs: Vec<&str> = text
        .lines()
        .map(|l| l.split('\t').nth(3).unwrap())
        .collect();
    assert_eq!(refs, vec!["a", "c"]);
    assert!(text.ends_with('\n'));
}

#[test]
fn a_malformed_journal_is_a_clear_error() {
    let file = TempFile::new("bad");
    std::fs::write(&file.0, "P\t1\t1\tref\tSPY\tX\t1\tM\t-\tG\tA\t\n").unwrap();
    let e = broker(Some(&file.0)).orders(T0).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Internal);
    assert!(e.message.contains("malformed line"), "{}", e.message);
    assert!(e.message.contains("at byte 0"), "{}", e.message);
}

#[test]
fn journal_lines_round_trip() {
    for entry in [
        Entry::Place {
            time: T0,
            id: 12,
            request: order("r.1_x-2", Side::Sell, 1.5, OrderType::Limit { price: 0.1 }),
            rejected: Some("no\tcash".into()),
        },
        Entry::Place {
            time: -5,
            id: 1,
            request: OrderRequest {
                tif: TimeInForce::Day,
                ..order("m", Side::Buy, 3.0, OrderType::Market)
            },
            rejected: None,
        },
        Entry::Cancel {
            time: T0,
            order_ref: "m".into(),
        },
        Entry::Clock(JournalClock {
            start: T0,
            anchor_ms: 1_700_000_000_123,
            speed: 60.0,
            seed: 42,
        }),
    ] {
        let line = entry.to_line();
        assert!(line.ends_with('\n'));
        let back = Entry::parse(line.trim_end_matches('\n')).unwrap();
        let expected = match entry {
            Entry::Place {
                time,
                id,
                request,
                rejected,
            } => Entry::Place {
                time,
                id,
                request,
                rejected: rejected.map(|r| r.replace('\t', " ")),
            },
            other => other,
        };
        assert_eq!(back, expected);
    }
}

#[test]
fn positions_average_their_cost_and_go_through_zero() {
    let b = broker(None);
    b.place(&order("p1", Side::Buy, 10.0, OrderType::Market), T0)
        .unwrap();
    b.place(&order("p2", Side::Sell, 15.0, OrderType::Market), NEXT + 2)
        .unwrap();
    let fills = b.executions(NEXT + 5).unwrap();
    assert_eq!(fills.len(), 2);
    let positions = b.positions(NEXT + 5).unwrap();
    assert_eq!(positions.len(), 1);
    assert_eq!(positions[0].quantity, -5.0);
    assert_eq!(positions[0].avg_cost, fills[1].price);
    b.place(&order("p3", Side::Buy, 5.0, OrderType::Market), NEXT + 7)
        .unwrap();
    assert!(b.positions(NEXT + 10).unwrap().is_empty(), "flat");
}

#[test]
fn a_journal_keeps_the_clock_of_its_first_run() {
    let file = TempFile::new("clock");
    let first = JournalClock {
        start: T0,
        anchor_ms: 1_700_000_000_000,
        speed: 60.0,
        seed: 42,
    };
    assert_eq!(claim_clock(&file.0, first), Ok(first));
    let later = JournalClock {
        start: T0 + 999,
        anchor_ms: 1_800_000_000_000,
        speed: 1.0,
        seed: 7,
    };
    assert_eq!(
        claim_clock(&file.0, later),
        Ok(first),
        "the journal's own clock wins"
    );
    // The broker reads past the clock line; orders follow it.
    let b = broker(Some(&file.0));
    b.place(&order("k", Side::Buy, 1.0, OrderType::Market), T0)
        .unwrap();
    assert_eq!(broker(Some(&file.0)).orders(T0).unwrap().len(), 1);
    assert_eq!(claim_clock(&file.0, later), Ok(first));
    // A first line cut short (a writer killed mid-write) is no clock: the journal starts again.
    let torn = TempFile::new("torn-clock");
    std::fs::write(&torn.0, "T\t17000").unwrap();
    assert_eq!(claim_clock(&torn.0, later), Ok(later));
    // A file that is not a journal is refused, not written to.
    let other = TempFile::new("other");
    std::fs::write(&other.0, "hello\n").unwrap();
    let e = claim_clock(&other.0, first).unwrap_err();
    assert!(
        e.to_string().contains("does not start with its clock line"),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(&other.0).unwrap(), "hello\n");
}

#[test]
fn a_change_applies_to_bars_after_it_also_when_the_journal_is_read_again() {
    let file = TempFile::new("modify");
    let b = broker(Some(&file.0));
    // A buy limit far below the market: rests.
    let far = price(T0) * 0.5;
    b.place(
        &order("m1", Side::Buy, 2_500.0, OrderType::Limit { price: far }),
        T0,
    )
    .unwrap();
    assert!(b.poll(NEXT + 50).unwrap().fills.is_empty());
    // Raised to a marketable limit at NEXT + 52: fills from the bar after, 1,000 per bar.
    let change = OrderChange {
        order_ref: "m1".into(),
        quantity: Some(1_500.0),
        limit: Some(price(T0) * 1.5),
    };
    let changed = b.modify(&change, NEXT + 52).unwrap();
    assert_eq!(changed.request.quantity, 1_500.0);
    assert_eq!(changed.status, OrderStatus::Working);
    let fills = b.executions(NEXT + 100).unwrap();
    let parts: Vec<(i64, f64)> = fills.iter().map(|f| (f.time, f.quantity)).collect();
    assert_eq!(parts, vec![(NEXT + 55, 1_000.0), (NEXT + 60, 500.0)]);
    assert_eq!(b.orders(NEXT + 100).unwrap()[0].status, OrderStatus::Filled);
    // A new worker reading the journal works out the same: nothing filled before the change.
    assert_eq!(broker(Some(&file.0)).executions(NEXT + 100).unwrap(), fills);
    // A filled order cannot change; an unknown one is unknown.
    let e = b.modify(&change, NEXT + 200).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest);
    assert!(e.message.contains("is filled"), "{}", e.message);
    let e = b
        .modify(
            &OrderChange {
                order_ref: "nope".into(),
                ..change
            },
            NEXT,
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::UnknownOrder);
}

#[test]
fn hostile_times_in_a_journal_are_refused_and_a_pass_is_bounded() {
    let file = TempFile::new("hostile");
    std::fs::write(
        &file.0,
        "P\t-9000000000000000000\t1\tx\tSPY\tB\t1\tL\t1\tG\tA\t\n",
    )
    .unwrap();
    let e = broker(Some(&file.0)).orders(T0).unwrap_err();
    assert!(e.message.contains("malformed line"), "{}", e.message);
    // The earliest time a journal may hold, with a limit that never crosses: each pass looks
    // at a bounded number of bars.
    std::fs::write(
        &file.0,
        format!(
            "P\t{}\t1\tx\tSPY\tB\t1\tL\t0.000001\tG\tA\t\n",
            -(1i64 << 40)
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let orders = broker(Some(&file.0)).orders(T0).unwrap();
    assert_eq!(orders[0].status, OrderStatus::Working);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn an_entry_never_reaches_back_before_what_the_journal_holds() {
    let file = TempFile::new("back");
    let b = broker(Some(&file.0));
    b.place(&order("late", Side::Buy, 2_500.0, OrderType::Market), T0)
        .unwrap();
    assert_eq!(b.poll(NEXT).unwrap().fills.len(), 1, "told");
    // A cancel asked with an earlier clock reading is taken at the latest time this broker
    // looked at, so the fill it told stands for every later reader of the journal.
    b.cancel("late", NEXT - 3).unwrap();
    let text = std::fs::read_to_string(&file.0).unwrap();
    let cancel_time: i64 = text
        .lines()
        .find(|l| l.starts_with("C\t"))
        .unwrap()
        .split('\t')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(cancel_time >= NEXT, "{text}");
    assert_eq!(
        broker(Some(&file.0)).executions(NEXT + 100).unwrap().len(),
        1
    );
}

#[test]
fn a_reference_names_one_order_and_a_changed_market_buy_needs_the_cash() {
    let b = broker(None);
    b.place(&order("one", Side::Buy, 1.0, OrderType::Market), T0)
        .unwrap();
    let e = b
        .place(
            &OrderRequest {
                symbol: "QQQ".into(),
                ..order("one", Side::Buy, 1.0, OrderType::Market)
            },
            T0,
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest);
    assert_eq!(
        e.message,
        "reference one is already another order's: buy 1 SPY"
    );
    let e = b
        .modify(
            &OrderChange {
                order_ref: "one".into(),
                quantity: Some(100_000.0),
                limit: None,
            },
            T0,
        )
        .unwrap_err();
    assert!(
        e.message.starts_with("insufficient buying power"),
        "{}",
        e.message
    );
}

/// The book's indexes only skip work: a broker that has lived through placements, partial
/// fills, changes, cancels and expiries, leaving finished orders out of its passes, tells
/// every fill once and finds the same orders, fills, positions and cash as a new broker that
/// reads the same journal and works out every order from the start; and its passes look
/// only at the orders still working.
/// Order `<prefix>-<step>` of a mixed stream: buys and sells, market and limit orders around
/// the price at `now` (some fill at once, some wait, some never do), day and GTC.
fn mixed(prefix: &str, step: u64, now: i64) -> OrderRequest {
    let r = base::random::mix(step);
    let side = if r.is_multiple_of(3) {
        Side::Sell
    } else {
        Side::Buy
    };
    let kind = if r.is_multiple_of(4) {
        OrderType::Market
    } else {
        let away = ((r >> 8) % 7) as f64 - 3.0;
        OrderType::Limit {
            price: (price(now) * (1.0 + away / 1_000.0) * 100.0).round() / 100.0,
        }
    };
    let mut request = order(
        &format!("{prefix}-{step}"),
        side,
        1.0 + ((r >> 16) % 2_500) as f64,
        kind,
    );
    if r.is_multiple_of(5) {
        request.tif = TimeInForce::Day;
    }
    request
}

#[test]
fn a_long_lived_book_finds_what_a_fresh_one_finds_and_looks_only_at_working_orders() {
    let file = TempFile::new("indexes");
    let long = broker(Some(&file.0));
    let mut told: Vec<String> = Vec::new();
    let mut refs: Vec<String> = Vec::new();
    let mut now = T0;
    for step in 0..400u64 {
        let request = mixed("ix", step, now);
        let r = base::random::mix(step);
        if long.place(&request, now).is_ok() {
            refs.push(request.order_ref.clone());
        }
        // Now and then a cancel or a change of an earlier order (refused if it is final).
        if step % 7 == 3 {
            let _ = long.cancel(&refs[(r >> 24) as usize % refs.len()], now);
        }
        if step % 11 == 5 {
            let change = OrderChange {
                order_ref: refs[(r >> 32) as usize % refs.len()].clone(),
                quantity: Some(3_000.0),
                limit: None,
            };
            let _ = long.modify(&change, now);
        }
        // Five-second bars; a jump over a day's end now and then.
        now += if step % 97 == 96 { 86_400 } else { 5 };
        told.extend(long.poll(now).unwrap().fills.into_iter().map(|f| f.exec_id));
        if step % 50 == 49 {
            let fresh = broker(Some(&file.0));
            assert_eq!(fresh.orders(now).unwrap(), long.orders(now).unwrap());
            assert_eq!(
                fresh.executions(now).unwrap(),
                long.executions(now).unwrap()
            );
            assert_eq!(fresh.positions(now).unwrap(), long.positions(now).unwrap());
            assert_eq!(fresh.account(now).unwrap(), long.account(now).unwrap());
        }
    }
    let executions: Vec<String> = long
        .executions(now)
        .unwrap()
        .into_iter()
        .map(|f| f.exec_id)
        .collect();
    let mut once = told.clone();
    once.sort();
    once.dedup();
    assert_eq!(once.len(), told.len(), "each fill told once");
    assert_eq!(once.len(), executions.len(), "every fill told");
    let orders = long.orders(now).unwrap();
    let working = orders.iter().filter(|o| !o.status.is_final()).count();
    let book = long.book.lock();
    assert!(orders.len() > 300, "{} orders", orders.len());
    assert!(
        book.untold.len() == working && book.open.len() <= working,
        "passes look at {} and {} of {} orders, {working} working",
        book.untold.len(),
        book.open.len(),
        orders.len()
    );
}
