//! Orders through the ibkr backend against the fake TWS gateway: exactly once when the
//! gateway drops the connection right after it received an order, and when the worker is
//! killed right after the order reached the gateway; a rejection, a live account, and what
//! the gateway holds afterwards.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tests::gateway::{Behaviour, Gateway};
use tests::{signal, within, ProcessSignal};

mod common;
use common::gateway;

/// `runner ARGS --backend ibkr --gateway <gw> --client-id <client_id>`.
fn ibkr_as(gw: &Gateway, client_id: &str, args: &[&str]) -> Command {
    let address = gw.address();
    let mut cmd = common::runner(args);
    cmd.args([
        "--backend",
        "ibkr",
        "--gateway",
        &address,
        "--client-id",
        client_id,
    ]);
    cmd
}

/// `runner ARGS --backend ibkr --gateway <gw> --client-id 7`.
fn ibkr(gw: &Gateway, args: &[&str]) -> Command {
    ibkr_as(gw, "7", args)
}

/// Runs `runner ARGS` against `gw` as client 7: exit code, stdout, stderr.
fn run(gw: &Gateway, args: &[&str]) -> (i32, String, String) {
    common::output(ibkr(gw, args))
}

/// Runs `runner ARGS` against `gw` as client 7 and checks it exits with 0: stdout, stderr.
fn run_ok(gw: &Gateway, args: &[&str]) -> (String, String) {
    let (code, stdout, stderr) = run(gw, args);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    (stdout, stderr)
}

/// `order buy SPY 5 --limit 1 --ref <order_ref> --wait <wait>`, and `--tif gtc` if `gtc`: an
/// order that rests (SPY trades far above 1).
fn resting_buy<'a>(order_ref: &'a str, wait: &'a str, gtc: bool) -> Vec<&'a str> {
    let mut args = vec![
        "order", "buy", "SPY", "5", "--limit", "1", "--ref", order_ref, "--wait", wait,
    ];
    if gtc {
        args.extend(["--tif", "gtc"]);
    }
    args
}

/// The gateway's orders with this reference.
fn at_gateway(gw: &Gateway, order_ref: &str) -> usize {
    gw.orders()
        .iter()
        .filter(|o| o.order_ref == order_ref)
        .count()
}

/// Asserts the gateway holds one order with this reference, placed in one message.
#[track_caller]
fn placed_once(gw: &Gateway, order_ref: &str) {
    assert_eq!(at_gateway(gw, order_ref), 1);
    assert_eq!(gw.place_order_messages(order_ref), 1);
}

#[test]
fn a_hand_order_through_the_gateway_is_acknowledged_filled_and_held_once() {
    let gw = gateway(Behaviour::default());
    let (stdout, _) = run_ok(
        &gw,
        &["order", "buy", "SPY", "10", "--ref", "ib-1", "--wait", "10"],
    );
    assert!(
        stdout.starts_with("order ib-1 (broker #"),
        "the acknowledged order first: {stdout}"
    );
    assert!(stdout.contains(": filled, 10 filled @ "), "{stdout}");
    assert!(stdout.contains("order ib-1: fill 10 @ "), "{stdout}");
    placed_once(&gw, "ib-1");
    // What the gateway holds, through new workers.
    let (code, stdout, stderr) = run(&gw, &["positions"]);
    assert_eq!(code, 0, "{stderr}");
    let row = stdout.lines().nth(1).unwrap_or_default();
    assert_eq!(
        row.split_whitespace().take(3).collect::<Vec<_>>(),
        ["DU1234567", "SPY", "10"],
        "{stdout}"
    );
    assert!(
        stdout.contains("account DU1234567: net liquidation "),
        "{stdout}"
    );
    let (code, stdout, _) = run(&gw, &["orders"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("order ib-1 (broker #"), "{stdout}");
    assert!(stdout.contains(": filled"), "{stdout}");
}

/// The gateway closes the connection right after it received the order, before any
/// acknowledgement: the worker waits for `ibapi` to reconnect, finds the order at the gateway
/// by its reference, and does not place it again.
#[test]
fn the_gateway_dropping_the_connection_right_after_an_order_leaves_one_order() {
    let gw = gateway(Behaviour {
        drop_after_order: Some(0),
        ..Behaviour::default()
    });
    let (stdout, stderr) = run_ok(&gw, &resting_buy("drop-1", "2", false));
    assert!(
        stderr.contains("gateway connection lost before the order was acknowledged"),
        "{stderr}"
    );
    assert!(
        stderr.contains("order already at the gateway; not placed again"),
        "{stderr}"
    );
    assert!(stdout.starts_with("order drop-1 (broker #"), "{stdout}");
    placed_once(&gw, "drop-1");
    assert!(gw.connections().len() >= 2, "ibapi reconnected");
}

/// The worker is SIGKILLed once the gateway has the order and before it answered (its
/// acknowledgement is held back): the runner's next worker finds the order by its reference
/// and places nothing.
#[test]
fn a_worker_killed_right_after_the_order_reached_the_gateway_leaves_one_order() {
    let gw = gateway(Behaviour {
        order_ack_delay: Duration::from_secs(3),
        ..Behaviour::default()
    });
    let (child, lines) = common::spawn_logged(ibkr(&gw, &resting_buy("kill-1", "2", false)));
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                log.lock().unwrap().push(line);
            }
        })
    };
    let arrived = within(Duration::from_secs(20), || at_gateway(&gw, "kill-1") == 1);
    assert!(arrived.is_some(), "the order reached the gateway");
    let pid = log
        .lock()
        .unwrap()
        .iter()
        .find_map(|l| common::started_worker(l, 0))
        .expect("the worker's pid in the log");
    signal(pid, ProcessSignal::Kill).unwrap();
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    let stderr = log.lock().unwrap().join("\n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("replacing worker"), "{stderr}");
    assert!(
        stderr.contains("order already at the gateway; not placed again"),
        "{stderr}"
    );
    placed_once(&gw, "kill-1");
}

#[test]
fn a_rejected_order_says_why_and_fails() {
    let gw = gateway(Behaviour {
        reject_orders: vec!["TSLA".into()],
        ..Behaviour::default()
    });
    let (code, stdout, stderr) = run(
        &gw,
        &[
            "order", "buy", "TSLA", "1", "--limit", "10", "--ref", "rej-1", "--wait", "5",
        ],
    );
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("error: order rej-1 rejected: IB 201: "),
        "{last}"
    );
    assert_eq!(at_gateway(&gw, "rej-1"), 1);
}

#[test]
fn a_live_account_at_the_gateway_is_refused_before_anything_is_sent() {
    let gw = gateway(Behaviour {
        accounts: vec!["U7654321".into()],
        ..Behaviour::default()
    });
    let (code, _, stderr) = run(&gw, &["order", "buy", "SPY", "1", "--limit", "10"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .contains("live account (U7654321)"),
        "{stderr}"
    );
    assert!(gw.orders().is_empty());
}

#[test]
fn a_resting_order_changed_to_a_marketable_limit_fills_once() {
    let gw = gateway(Behaviour::default());
    run_ok(&gw, &resting_buy("chg-1", "0", true));
    let (stdout, _) = run_ok(
        &gw,
        &["order", "modify", "--ref", "chg-1", "--limit", "500"],
    );
    assert!(stdout.contains("buy 5 SPY limit 500 gtc"), "{stdout}");
    let order = gw
        .orders()
        .into_iter()
        .find(|o| o.order_ref == "chg-1")
        .unwrap();
    assert_eq!(order.limit, Some(500.0));
    assert_eq!(order.status, "Filled");
    assert_eq!(at_gateway(&gw, "chg-1"), 1);
    assert_eq!(gw.place_order_messages("chg-1"), 2, "placed, then changed");
}

/// The gateway drops the connection after it received the order and before it acknowledged
/// it, and still holds it as pending when the worker is back: found as pending, not placed
/// again.
#[test]
fn an_order_still_pending_at_the_gateway_after_a_drop_is_not_placed_again() {
    let gw = gateway(Behaviour {
        drop_after_order: Some(0),
        order_ack_delay: Duration::from_secs(8),
        ..Behaviour::default()
    });
    let (_, stderr) = run_ok(&gw, &resting_buy("pend-1", "1", false));
    assert!(
        stderr.contains("order already at the gateway; not placed again"),
        "{stderr}"
    );
    placed_once(&gw, "pend-1");
}

/// The gateway acknowledges only after 12 s, past the worker's 10 s wait: the runner sends
/// the placement again with its reference, the worker waits again instead of placing it a
/// second time, and the order is answered.
#[test]
fn a_slow_acknowledgement_is_waited_for_again_not_placed_again() {
    let gw = gateway(Behaviour {
        order_ack_delay: Duration::from_secs(12),
        ..Behaviour::default()
    });
    let (stdout, stderr) = run_ok(&gw, &resting_buy("slow-1", "1", false));
    assert!(
        stderr.contains("sending it again with the same reference"),
        "{stderr}"
    );
    assert!(stdout.starts_with("order slow-1 (broker #"), "{stdout}");
    assert!(stdout.contains(": working"), "{stdout}");
    placed_once(&gw, "slow-1");
}

/// An order placed by another API client (another client id) with the same reference is
/// found, never placed again, and not cancelled by its id from here (the id is that client's).
#[test]
fn another_clients_order_is_found_and_left_to_that_client() {
    let gw = gateway(Behaviour::default());
    run_ok(&gw, &resting_buy("x-1", "0", true));
    let other = |args: &[&str]| common::output(ibkr_as(&gw, "8", args));
    let (code, stdout, stderr) = other(&resting_buy("x-1", "0", true));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("not placed again"), "{stderr}");
    let (code, _, stderr) = other(&["order", "cancel", "--ref", "x-1"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("was placed by another API client (client id 7)"),
        "{stderr}"
    );
    assert_eq!(at_gateway(&gw, "x-1"), 1);
    assert!(gw.orders().iter().all(|o| o.status == "Submitted"));
}
