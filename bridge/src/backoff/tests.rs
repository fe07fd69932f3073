//! The backoff's schedule: spin hints, a yield every `YIELD_EVERY` turns, completion after the
//! first yield, and a reset that starts over.

#![forbid(unsafe_code)]

use super::*;

#[test]
fn it_spins_until_the_yield_every_turn_and_is_completed_after_it() {
    let mut b = Backoff::new();
    for turn in 1..Backoff::YIELD_EVERY {
        b.snooze();
        assert_eq!(b.turns(), turn);
        assert!(!b.is_completed(), "completed after {turn} spin hints");
    }
    b.snooze();
    assert!(
        b.is_completed(),
        "no yield at turn {}",
        Backoff::YIELD_EVERY
    );
}

#[test]
fn a_reset_starts_a_whole_round_over() {
    let mut b = Backoff::new();
    for _ in 0..Backoff::YIELD_EVERY + 5 {
        b.snooze();
    }
    assert!(b.is_completed());
    b.reset();
    assert_eq!(b.turns(), 0);
    assert!(!b.is_completed());
    for _ in 1..Backoff::YIELD_EVERY {
        b.snooze();
    }
    assert!(!b.is_completed());
}

#[test]
fn the_schedule_survives_the_counter_wrapping() {
    // One turn before the counter wraps: the wrap lands on a multiple of YIELD_EVERY, so the
    // yields keep their spacing across it.
    let mut b = Backoff {
        turns: u32::MAX - 1,
        yielded: false,
    };
    b.snooze();
    assert!(!b.is_completed());
    b.snooze();
    assert_eq!(b.turns(), 0);
    assert!(b.is_completed());
    assert!(u32::MAX
        .wrapping_add(1)
        .is_multiple_of(Backoff::YIELD_EVERY));
}

#[test]
fn default_is_new() {
    let b = Backoff::default();
    assert_eq!(b.turns(), 0);
    assert!(!b.is_completed());
}
