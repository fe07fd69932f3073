//! Tests of folding the book: a folded journal reads as the book that folded it, a folded
//! reference is never placed again, positions keep their order, a process that read the
//! journal before a fold reads it again, and a fold cut short changes nothing.

use std::time::Instant;

use super::*;
use crate::sim::broker::fold::fold_file;
use crate::sim::folded::RefSet;

/// A journal with its clock line, as a run makes it.
fn clocked(name: &str) -> TempFile {
    let file = TempFile::new(name);
    let clock = JournalClock {
        start: T0,
        anchor_ms: 1_700_000_000_000,
        speed: 1.0,
        seed: SEED,
    };
    claim_clock(&file.0, clock).unwrap();
    file
}

/// Folds `b`'s book now: every order told final, but the latest `keep`.
fn fold_now(b: &SimBroker, now: i64, keep: usize) -> usize {
    b.with_book(now, true, |b, book, j, _| {
        b.fold(book, j, keep, 1, Instant::now())
    })
    .unwrap()
}

#[test]
fn a_folded_journal_reads_as_the_book_that_folded_it_and_a_book_never_folded_agrees() {
    let file = clocked("fold-same");
    let folding = broker(Some(&file.0));
    // The same requests to a broker that never folds (in memory).
    let whole = broker(None);
    let (mut told_folding, mut told_whole) = (Vec::new(), Vec::new());
    let mut refs: Vec<String> = Vec::new();
    let mut folded_in_all = 0;
    let mut now = T0;
    for step in 0..600u64 {
        let request = mixed("fx", step, now);
        let placed = folding.place(&request, now).map(|(r, ..)| r);
        assert_eq!(placed, whole.place(&request, now).map(|(r, ..)| r));
        if placed.is_ok() {
            refs.push(request.order_ref.clone());
        }
        let r = base::random::mix(step);
        if step % 7 == 3 {
            // Of an order still in both books, or folded: refused then, as final.
            let target = &refs[(r >> 24) as usize % refs.len()];
            let a = folding.cancel(target, now);
            let b = whole.cancel(target, now);
            match a {
                Ok(report) => assert_eq!(Ok(report), b),
                Err(e) => {
                    assert_eq!(e.kind, ErrorKind::BadRequest, "{}", e.message);
                    assert!(e.message.contains("folded"), "{}", e.message);
                    assert!(b.is_ok_and(|o| o.status.is_final()));
                }
            }
        }
        if step % 11 == 5 {
            let change = OrderChange {
                order_ref: refs[(r >> 32) as usize % refs.len()].clone(),
                quantity: Some(3_000.0),
                limit: None,
            };
            let a = folding.modify(&change, now);
            let b = whole.modify(&change, now);
            if a.is_ok() || b.is_ok() {
                assert_eq!(a, b);
            }
        }
        now += if step % 97 == 96 { 86_400 } else { 5 };
        told_folding.extend(folding.poll(now).unwrap().fills);
        told_whole.extend(whole.poll(now).unwrap().fills);
        if step % 40 == 39 {
            folded_in_all += fold_now(&folding, now, 20);
            let fresh = broker(Some(&file.0));
            assert_eq!(fresh.orders(now).unwrap(), folding.orders(now).unwrap());
            assert_eq!(
                fresh.executions(now).unwrap(),
                folding.executions(now).unwrap()
            );
            assert_eq!(
                fresh.positions(now).unwrap(),
                folding.positions(now).unwrap()
            );
            assert_eq!(fresh.account(now).unwrap(), folding.account(now).unwrap());
            assert_eq!(
                fresh.folded_orders(now).unwrap(),
                folding.folded_orders(now).unwrap()
            );
            // Against the book never folded: the same positions, to the last bit; the
            // same cash to the rounding of its additions; the orders kept are its orders
            // but the folded ones.
            assert_eq!(
                folding.positions(now).unwrap(),
                whole.positions(now).unwrap()
            );
            let (a, b) = (folding.account(now).unwrap(), whole.account(now).unwrap());
            assert!((a.cash - b.cash).abs() < 1e-6, "{} {}", a.cash, b.cash);
            let runs = folding.folded_orders(now).unwrap();
            let kept: Vec<_> = whole
                .orders(now)
                .unwrap()
                .into_iter()
                .filter(|o| !runs.iter().any(|r| r.contains(&o.request.order_ref)))
                .collect();
            assert_eq!(folding.orders(now).unwrap(), kept);
            let folded: u64 = runs.iter().map(|r| r.len()).sum();
            assert_eq!(folded as usize, folded_in_all);
            assert_eq!(kept.len() + folded_in_all, refs.len());
        }
    }
    assert_eq!(
        told_folding, told_whole,
        "every fill told once, in the same order"
    );
    assert!(folded_in_all > 400, "{folded_in_all} folded");
    assert!(
        std::fs::metadata(&file.0).unwrap().len() < 40_000,
        "the journal holds the orders kept, not every order"
    );
    // A folded reference is not placed again, by the broker that folded it or another.
    let runs = folding.folded_orders(now).unwrap();
    let gone = refs
        .iter()
        .find(|r| runs.iter().any(|run| run.contains(r)))
        .unwrap();
    let again = order(gone, Side::Buy, 1.0, OrderType::Market);
    for b in [&folding, &broker(Some(&file.0))] {
        let before = b.orders(now).unwrap().len();
        let e = b.place(&again, now).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert!(e.message.contains("not placed again"), "{}", e.message);
        assert_eq!(b.orders(now).unwrap().len(), before);
    }
}

#[test]
fn an_order_is_folded_only_if_its_fills_come_before_every_kept_fill_of_its_symbol() {
    let file = clocked("fold-order");
    let opts = SimBrokerOptions {
        max_fill_per_bar: 10.0,
        ..opts(Some(&file.0))
    };
    let b = SimBroker::new(opts.clone(), paths(), "DU0000001", None);
    let whole = SimBroker::new(
        SimBrokerOptions {
            orders_file: None,
            ..opts
        },
        paths(),
        "DU0000001",
        None,
    );
    // `first` fills whole in the first bar, before anything else; `slow` fills 10 a bar from
    // the next bar on and keeps working; `early` fills whole in that bar too, but after
    // `slow`'s fill (a larger broker id); `late` fills whole three bars on.
    let first = order("first", Side::Buy, 10.0, OrderType::Market);
    let slow = order("slow", Side::Buy, 1_000.0, OrderType::Market);
    let early = order("early", Side::Buy, 10.0, OrderType::Market);
    let late = order("late", Side::Sell, 5.0, OrderType::Market);
    for x in [&b, &whole] {
        x.place(&first, T0).unwrap();
        x.poll(NEXT + 1).unwrap();
        x.place(&slow, NEXT + 1).unwrap();
        x.place(&early, NEXT + 2).unwrap();
        x.poll(NEXT + 10).unwrap();
        x.place(&late, NEXT + 11).unwrap();
        x.poll(NEXT + 30).unwrap();
    }
    assert_eq!(
        fold_now(&b, NEXT + 30, 0),
        1,
        "only first's fill is before slow's first"
    );
    let refs = |x: &SimBroker| -> Vec<String> {
        x.orders(NEXT + 30)
            .unwrap()
            .into_iter()
            .map(|o| o.request.order_ref)
            .collect()
    };
    assert_eq!(refs(&b), ["slow", "early", "late"]);
    assert_eq!(
        b.positions(NEXT + 30).unwrap(),
        whole.positions(NEXT + 30).unwrap()
    );
    // Once `slow` is cancelled and told, everything can go.
    for x in [&b, &whole] {
        x.cancel("slow", NEXT + 31).unwrap();
        x.poll(NEXT + 40).unwrap();
    }
    assert_eq!(fold_now(&b, NEXT + 40, 0), 3);
    assert_eq!(b.folded_orders(NEXT + 40).unwrap().len(), 4);
    assert!(refs(&b).is_empty());
    assert_eq!(
        b.positions(NEXT + 40).unwrap(),
        whole.positions(NEXT + 40).unwrap()
    );
    let fresh = broker(Some(&file.0));
    assert_eq!(
        fresh.positions(NEXT + 40).unwrap(),
        whole.positions(NEXT + 40).unwrap()
    );
    assert_eq!(
        fresh.account(NEXT + 40).unwrap(),
        b.account(NEXT + 40).unwrap()
    );
}

#[test]
fn a_process_that_read_the_journal_before_a_fold_reads_it_again_and_loses_nothing() {
    let file = clocked("fold-stale");
    let a = broker(Some(&file.0));
    let b = broker(Some(&file.0));
    let mut now = T0;
    for step in 0..200u64 {
        a.place(&mixed("fx", step, now), now).unwrap();
        now += 5;
        a.poll(now).unwrap();
    }
    // `b` read the journal as it was, to its last byte, and told what it found.
    b.poll(now).unwrap();
    let before = b.orders(now).unwrap();
    assert_eq!(before.len(), 200);
    let folded = fold_now(&a, now, 10);
    assert!(folded > 20, "{folded}");
    // `b` appends after the fold: to the journal as it is now, not at its old offset.
    let new = order("after-fold", Side::Buy, 1.0, OrderType::Market);
    b.place(&new, now).unwrap();
    let seen = |x: &SimBroker| -> Vec<OrderReport> { x.orders(now + 10).unwrap() };
    assert_eq!(seen(&a), seen(&b));
    assert_eq!(seen(&a).len(), 200 - folded + 1);
    assert_eq!(seen(&broker(Some(&file.0))), seen(&a));
    assert_eq!(
        b.positions(now + 10).unwrap(),
        a.positions(now + 10).unwrap()
    );
    // What `b` told before is not told again: it tells what `a`, which read on, tells.
    let told = |x: &SimBroker| -> Vec<(String, OrderStatus)> {
        let changes = x.poll(now + 10).unwrap();
        changes
            .orders
            .into_iter()
            .map(|o| (o.request.order_ref, o.status))
            .collect()
    };
    let by_b = told(&b);
    assert_eq!(by_b, told(&a));
    assert!(by_b.len() < 10, "{by_b:?}");
    assert!(by_b.iter().any(|(r, _)| r == "after-fold"));
    // A second fold by `b`, then `a` appends: the generation moved on twice.
    for x in [&a, &b] {
        x.poll(now + 20).unwrap();
    }
    fold_now(&b, now + 20, 0);
    a.place(
        &order("after-two", Side::Sell, 1.0, OrderType::Market),
        now + 20,
    )
    .unwrap();
    assert_eq!(seen(&a), seen(&b));
    assert_eq!(seen(&broker(Some(&file.0))), seen(&a));
}

#[test]
fn a_fold_cut_short_leaves_the_journal_as_it_was_and_the_next_fold_goes_through() {
    let file = clocked("fold-cut");
    let b = broker(Some(&file.0));
    let mut now = T0;
    for step in 0..100u64 {
        b.place(&mixed("fx", step, now), now).unwrap();
        now += 5;
        b.poll(now).unwrap();
    }
    let journal = std::fs::read(&file.0).unwrap();
    // A worker killed while writing the fold: its file is there, half-written; the journal
    // is untouched and reads as before.
    let tmp = fold_file(&file.0);
    std::fs::write(&tmp, &journal[..journal.len() / 2]).unwrap();
    let fresh = broker(Some(&file.0));
    assert_eq!(fresh.orders(now).unwrap(), b.orders(now).unwrap());
    assert_eq!(std::fs::read(&file.0).unwrap(), journal);
    assert!(fold_now(&b, now, 5) > 10);
    assert!(!tmp.exists(), "the fold file became the journal");
    assert_eq!(
        broker(Some(&file.0)).orders(now).unwrap(),
        b.orders(now).unwrap()
    );
}

#[test]
fn only_orders_told_long_enough_ago_and_final_are_folded() {
    let file = clocked("fold-told");
    let b = broker(Some(&file.0));
    b.place(&order("done", Side::Buy, 5.0, OrderType::Market), T0)
        .unwrap();
    b.place(
        &order("far", Side::Buy, 5.0, OrderType::Limit { price: 1.0 }),
        T0,
    )
    .unwrap();
    let before_told = Instant::now();
    // Filled, but not yet told: not folded.
    let fold_at = |told_before| {
        b.with_book(NEXT + 5, true, |b, book, j, _| {
            b.fold(book, j, 0, 1, told_before)
        })
        .unwrap()
    };
    assert_eq!(fold_at(Instant::now()), 0);
    b.poll(NEXT + 5).unwrap();
    // Told after the bound: not yet.
    assert_eq!(fold_at(before_told), 0);
    assert_eq!(fold_at(Instant::now()), 1, "the working order stays");
    let left: Vec<String> = b
        .orders(NEXT + 5)
        .unwrap()
        .into_iter()
        .map(|o| o.request.order_ref)
        .collect();
    assert_eq!(left, ["far"]);
    // A broker that does not fold (`keep_orders` unset) never does.
    assert_eq!(b.fold_if_due(NEXT + 5), Ok(0));
}

#[test]
fn reference_sets_merge_runs_and_tell_their_members() {
    let mut set = RefSet::default();
    for r in ["a1-5", "a1-7", "a1-6", "a1-1", "x", "a1-3", "b-0", "c-07"] {
        set.insert(r);
    }
    let shown: Vec<String> = set.runs().iter().map(|r| r.to_string()).collect();
    assert_eq!(shown, ["a1-1", "a1-3", "a1-5 to a1-7", "b-0", "c-07", "x"]);
    for (r, member) in [
        ("a1-1", true),
        ("a1-2", false),
        ("a1-6", true),
        ("a1-8", false),
        ("x", true),
        ("a1", false),
        ("c-07", true),
        ("c-7", false),
        ("b-0", true),
    ] {
        assert_eq!(set.contains(r), member, "{r}");
    }
    set.insert("a1-2");
    set.insert("a1-4");
    assert_eq!(set.runs()[0].numbers, Some((1, 7)));
    assert_eq!(set.runs()[0].len(), 7);
    // Runs as a journal keeps them come back the same.
    let mut back = RefSet::default();
    for run in set.runs() {
        let line = Entry::Folded(run).to_line();
        match Entry::parse(line.trim_end()) {
            Some(Entry::Folded(run)) => back.insert_run(&run),
            other => panic!("{line:?} read as {other:?}"),
        }
    }
    assert_eq!(back, set);
}

#[test]
fn fold_lines_round_trip() {
    for entry in [
        Entry::Fold {
            gen: 3,
            orders: 12_345,
            time: T0,
            max_id: 12_400,
            cash_flows: -0.1 - 0.2,
        },
        Entry::Base {
            symbol: "SPY".into(),
            quantity: -15.0,
            avg: 1.0 / 3.0,
        },
    ] {
        let line = entry.to_line();
        assert_eq!(Entry::parse(line.trim_end()), Some(entry));
    }
    for bad in [
        "F\t1\t2\t3\t4\tNaN",
        "S\tSPY\tinf\t1",
        "R\tbad ref\t-\t-",
        "R\tx\t5\t4",
    ] {
        assert_eq!(Entry::parse(bad), None, "{bad}");
    }
}

#[test]
fn an_order_a_lagging_pass_may_still_fill_keeps_the_later_fills_of_its_symbol() {
    let file = clocked("fold-lag");
    let b = broker(Some(&file.0));
    // `far` works on, unfilled; `quick` fills at the next bar.
    b.place(
        &order("far", Side::Buy, 5.0, OrderType::Limit { price: 1.0 }),
        T0,
    )
    .unwrap();
    b.place(&order("quick", Side::Buy, 5.0, OrderType::Market), T0)
        .unwrap();
    b.poll(NEXT + 10).unwrap();
    {
        // A pass capped before it reached now: `far` may yet fill at a bar before `quick`'s.
        let mut book = b.book.lock();
        let i = book.by_ref["far"];
        book.orders[i].next_bar = T0 - 100;
    }
    let folded = b
        .with_book(NEXT + 10, true, |b, book, j, _| {
            // Not brought up to date first: the lag stands.
            book.orders[book.by_ref["far"]].next_bar = T0 - 100;
            b.fold(book, j, 0, 1, Instant::now())
        })
        .unwrap();
    assert_eq!(folded, 0, "quick's fill may come after far's next");
    // Caught up, `far`'s next bar is past `quick`'s fill: `quick` goes.
    b.poll(NEXT + 20).unwrap();
    assert_eq!(fold_now(&b, NEXT + 20, 0), 1);
}

#[test]
fn a_journal_removed_by_its_run_is_not_made_again_by_a_fold() {
    let file = clocked("fold-removed");
    let b = broker(Some(&file.0));
    let mut now = T0;
    for step in 0..20u64 {
        b.place(
            &order(&format!("r-{step}"), Side::Buy, 1.0, OrderType::Market),
            now,
        )
        .unwrap();
        now += 5;
        b.poll(now).unwrap();
    }
    let folded = b
        .with_book(now, true, |b, book, j, _| {
            // The run ends and removes its journal while this worker holds it.
            std::fs::remove_file(&file.0).unwrap();
            b.fold(book, j, 0, 1, Instant::now())
        })
        .unwrap();
    assert_eq!(folded, 0);
    assert!(!file.0.exists(), "the journal was made again");
    assert!(!fold_file(&file.0).exists());
    assert_eq!(
        b.orders(now).map(|o| o.len()).ok(),
        None,
        "no journal to read"
    );
}
