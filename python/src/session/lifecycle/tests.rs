//! The lifecycle's transitions and waits, without a worker: a connect owns `Connecting` until it
//! ends, a close wins over a connect, a second connect or close waits for the first, and a
//! forgotten session stays forgotten.

use std::time::Duration;

use super::*;
use crate::failure::FailureKind;

fn wait_a_little() {
    std::thread::sleep(Duration::from_millis(50));
}

#[test]
fn a_failed_connect_leaves_the_session_idle_for_the_next() {
    let life = Lifecycle::new();
    assert!(matches!(life.claim_connect(), Ok(ConnectClaim::Connect)));
    assert_eq!(life.phase(), Phase::Connecting);
    life.connect_failed();
    assert_eq!(life.phase(), Phase::Idle);
    assert!(matches!(life.claim_connect(), Ok(ConnectClaim::Connect)));
}

#[test]
fn a_second_connect_waits_for_the_first() {
    let life = Arc::new(Lifecycle::new());
    assert!(matches!(life.claim_connect(), Ok(ConnectClaim::Connect)));
    let second = {
        let life = life.clone();
        std::thread::spawn(move || matches!(life.claim_connect(), Ok(ConnectClaim::Connect)))
    };
    wait_a_little();
    assert!(!second.is_finished());
    life.connect_failed();
    assert!(second.join().unwrap_or(false));
    assert_eq!(life.phase(), Phase::Connecting);
}

#[test]
fn a_close_during_a_connect_ends_it_and_the_connect_does_not_undo_the_close() {
    let life = Arc::new(Lifecycle::new());
    assert!(matches!(life.claim_connect(), Ok(ConnectClaim::Connect)));
    let waiting = {
        let life = life.clone();
        std::thread::spawn(move || life.claim_connect().err().map(|f| f.category))
    };
    assert!(matches!(life.begin_close(), Some(ToStop::Nothing)));
    assert!(life.is_closed());
    // The connect waiting for the first hears of the close.
    assert_eq!(waiting.join().ok().flatten(), Some(FailureKind::Closed));
    life.connect_failed();
    assert_eq!(life.phase(), Phase::Closing);
    life.finish_close();
    assert_eq!(life.phase(), Phase::Closed);
    assert!(life.begin_close().is_none());
    assert_eq!(
        life.supervisor().err().map(|f| f.category),
        Some(FailureKind::Closed)
    );
}

#[test]
fn a_second_close_returns_once_the_first_is_done() {
    let life = Arc::new(Lifecycle::new());
    assert!(matches!(life.begin_close(), Some(ToStop::Nothing)));
    let second = {
        let life = life.clone();
        std::thread::spawn(move || life.begin_close().is_none())
    };
    wait_a_little();
    assert!(!second.is_finished());
    life.finish_close();
    assert!(second.join().unwrap_or(false));
}

#[test]
fn a_forgotten_session_stays_forgotten_and_refuses_everything() {
    let life = Lifecycle::new();
    assert!(matches!(life.claim_connect(), Ok(ConnectClaim::Connect)));
    assert!(life.forget());
    assert!(!life.forget());
    // A transition of the parent's, had it run here, does not bring it back.
    life.connect_failed();
    assert!(life.is_forgotten());
    assert!(life.not_forgotten().is_err());
    assert!(life.begin_close().is_none());
    let refused = life.claim_connect().err();
    assert_eq!(
        refused.map(|f| f.message),
        Some(Failure::forgotten().message)
    );
}

#[test]
fn not_connected_until_a_connect_is_done() {
    let life = Lifecycle::new();
    let refused = life.supervisor().err();
    assert_eq!(
        refused.map(|f| f.message),
        Some(Failure::not_connected().message)
    );
}
