//! Orders through the ibkr backend against the fake TWS gateway: exactly once when the
//! gateway drops the connection right after it received an order, and when the worker is
//! killed right after the order reached the gateway; a rejection, a live account, and what
//! the gateway holds afterwards.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tests::gateway::{Behaviour, Gateway};
use tests::{signal, within, Signal};

mod common;

/// `runner ARGS --backend ibkr --gateway <gw> --client-id 7`.
fn ibkr(gw: &Gateway, args: &[&str]) -> Command {
    let address = gw.address();
    let mut cmd = common::runner(args);
    cmd.args([
        "--backend",
        "ibkr",
        "--gateway",
        &address,
        "--client-id",
        "7",
    ]);
    cmd
}

/// The gateway's orders with this reference.
fn at_gateway(gw: &Gateway, order_ref: &str) -> usize {
    gw.orders()
        .iter()
        .filter(|o| o.order_ref == order_ref)
        .count()
}

#[test]
fn a_hand_order_through_the_gateway_is_acknowledged_filled_and_held_once() {
    let gw = Gateway::start(Behaviour::default()).unwrap();
    let (code, stdout, stderr) = common::output(ibkr(
        &gw,
        &["order", "buy", "SPY", "10", "--ref", "ib-1", "--wait", "10"],
    ));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("order ib-1 (broker #"),
        "the acknowledged order first: {stdout}"
    );
    assert!(stdout.contains(": filled, 10 filled @ "), "{stdout}");
    assert!(stdout.contains("order ib-1: fill 10 @ "), "{stdout}");
    assert_eq!(at_gateway(&gw, "ib-1"), 1);
    assert_eq!(gw.place_order_messages("ib-1"), 1);
    // What the gateway holds, through new workers.
    let (code, stdout, stderr) = common::output(ibkr(&gw, &["positions"]));
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
    let (code, stdout, _) = common::output(ibkr(&gw, &["orders"]));
    assert_eq!(code, 0);
    assert!(stdout.contains("order ib-1 (broker #"), "{stdout}");
    assert!(stdout.contains(": filled"), "{stdout}");
}

/// The gateway closes the connection right after it received the order, before any
/// acknowledgement: the worker waits for `ibapi` to reconnect, finds the order at the gateway
/// by its reference, and does not place it again.
#[test]
fn the_gateway_dropping_the_connection_right_after_an_order_leaves_one_order() {
    let gw = Gateway::start(Behaviour {
        drop_after_order: Some(0),
        ..Behaviour::default()
    })
    .unwrap();
    let (code, stdout, stderr) = common::output(ibkr(
        &gw,
        &[
            "order", "buy", "SPY", "5", "--limit", "1", "--ref", "drop-1", "--wait", "2",
        ],
    ));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("gateway connection lost before the order was acknowledged"),
        "{stderr}"
    );
    assert!(
        stderr.contains("order already at the gateway; not placed again"),
        "{stderr}"
    );
    assert!(stdout.starts_with("order drop-1 (broker #"), "{stdout}");
    assert_eq!(at_gateway(&gw, "drop-1"), 1);
    assert_eq!(gw.place_order_messages("drop-1"), 1);
    assert!(gw.connections().len() >= 2, "ibapi reconnected");
}

/// The worker is SIGKILLed once the gateway has the order and before it answered (its
/// acknowledgement is held back): the runner's next worker finds the order by its reference
/// and places nothing.
#[test]
fn a_worker_killed_right_after_the_order_reached_the_gateway_leaves_one_order() {
    let gw = Gateway::start(Behaviour {
        order_ack_delay: Duration::from_secs(3),
        ..Behaviour::default()
    })
    .unwrap();
    let mut child = ibkr(
        &gw,
        &[
            "order", "buy", "SPY", "5", "--limit", "1", "--ref", "kill-1", "--wait", "2",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let log = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
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
        .find_map(|l| {
            l.contains("worker started")
                .then(|| {
                    l.split("pid=")
                        .nth(1)?
                        .split_whitespace()
                        .next()?
                        .parse::<u32>()
                        .ok()
                })
                .flatten()
        })
        .expect("the worker's pid in the log");
    signal(pid, Signal::Kill).unwrap();
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
    assert_eq!(at_gateway(&gw, "kill-1"), 1);
    assert_eq!(gw.place_order_messages("kill-1"), 1);
}

#[test]
fn a_rejected_order_says_why_and_fails() {
    let gw = Gateway::start(Behaviour {
        reject_orders: vec!["TSLA".into()],
        ..Behaviour::default()
    })
    .unwrap();
    let (code, stdout, stderr) = common::output(ibkr(
        &gw,
        &[
            "order", "buy", "TSLA", "1", "--limit", "10", "--ref", "rej-1", "--wait", "5",
        ],
    ));
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
    let gw = Gateway::start(Behaviour {
        accounts: vec!["U7654321".into()],
        ..Behaviour::default()
    })
    .unwrap();
    let (code, _, stderr) =
        common::output(ibkr(&gw, &["order", "buy", "SPY", "1", "--limit", "10"]));
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
    let gw = Gateway::start(Behaviour::default()).unwrap();
    let (code, stdout, stderr) = common::output(ibkr(
        &gw,
        &[
            "order", "buy", "SPY", "5", "--limit", "1", "--tif", "gtc", "--ref", "chg-1", "--wait",
            "0",
        ],
    ));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let (code, stdout, stderr) = common::output(ibkr(
        &gw,
        &["order", "modify", "--ref", "chg-1", "--limit", "500"],
    ));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
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
    let gw = Gateway::start(Behaviour {
        drop_after_order: Some(0),
        order_ack_delay: Duration::from_secs(8),
        ..Behaviour::default()
    })
    .unwrap();
    let (code, stdout, stderr) = common::output(ibkr(
        &gw,
        &[
            "order", "buy", "SPY", "5", "--limit", "1", "--ref", "pend-1", "--wait", "1",
        ],
    ));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("order already at the gateway; not placed again"),
        "{stderr}"
    );
    assert_eq!(at_gateway(&gw, "pend-1"), 1);
    assert_eq!(gw.place_order_messages("pend-1"), 1);
}

/// The gateway acknowledges only after 12 s, past the worker's 10 s wait: the runner sends
/// the placement again with its reference, the worker waits again instead of placing it a
/// second time, and the order is answered.
#[test]
fn a_slow_acknowledgement_is_waited_for_again_not_placed_again() {
    let gw = Gateway::start(Behaviour {
        order_ack_delay: Duration::from_secs(12),
        ..Behaviour::default()
    })
    .unwrap();
    let (code, stdout, stderr) = common::output(ibkr(
        &gw,
        &[
            "order", "buy", "SPY", "5", "--limit", "1", "--ref", "slow-1", "--wait", "1",
        ],
    ));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("sending it again with the same reference"),
        "{stderr}"
    );
    assert!(stdout.starts_with("order slow-1 (broker #"), "{stdout}");
    assert!(stdout.contains(": working"), "{stdout}");
    assert_eq!(at_gateway(&gw, "slow-1"), 1);
    assert_eq!(gw.place_order_messages("slow-1"), 1);
}

/// An order placed by another API client (another client id) with the same reference is
/// found, never placed again, and not cancelled by its id from here (the id is that client's).
#[test]
fn another_clients_order_is_found_and_left_to_that_client() {
    let gw = Gateway::start(Behaviour::default()).unwrap();
    let (code, stdout, stderr) = common::output(ibkr(
        &gw,
        &[
            "order", "buy", "SPY", "5", "--limit", "1", "--tif", "gtc", "--ref", "x-1", "--wait",
            "0",
        ],
    ));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let other = |args: &[&str]| {
        let address = gw.address();
        let mut cmd = common::runner(args);
        cmd.args([
            "--backend",
            "ibkr",
            "--gateway",
            &address,
            "--client-id",
            "8",
        ]);
        common::output(cmd)
    };
    let (code, stdout, stderr) = other(&[
        "order", "buy", "SPY", "5", "--limit", "1", "--tif", "gtc", "--ref", "x-1", "--wait", "0",
    ]);
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
