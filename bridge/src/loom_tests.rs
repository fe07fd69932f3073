//! loom models of the ring and of the doorbell's no-lost-wakeup protocol, at small capacities.
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p bridge --release --lib loom`
//!
//! Under loom the ring's data area is one tracked cell per byte, so a frame read before it was
//! published is reported as a data race; the futex is modelled by a mutex and condvar with no
//! timeout, so a lost wakeup is reported as a deadlock.

#![forbid(unsafe_code)]

use crate::ring::{self, Consumer, Producer, PushError};
use loom::thread;

/// Exhaustive up to this many preemptions per execution (loom's recommended bound: bugs of
/// this kind show within two or three).
const PREEMPTIONS: usize = 3;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(PREEMPTIONS);
    }
    b.check(f);
}

/// A 64-byte ring whose positions stand at 48, so the next 24-byte frame wraps behind 16 bytes
/// of padding.
fn ring_before_the_wrap() -> (Producer, Consumer) {
    let (mut p, mut c) = ring::heap(64, 24).unwrap();
    let mut out = Vec::new();
    for _ in 0..2 {
        p.try_push(&[0; 16]).unwrap();
        assert!(c.pop_into(&mut out).unwrap());
    }
    (p, c)
}

fn frame(i: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| i.wrapping_mul(31).wrapping_add(j as u8))
        .collect()
}

/// Pushes, sleeping on the space doorbell while full.
fn push(p: &mut Producer, data: &[u8]) {
    loop {
        match p.try_push(data) {
            Ok(()) => return,
            Err(PushError::Full) => {
                assert!(p.wait_for_space(data.len(), || false));
            }
            Err(e) => panic!("push failed: {e}"),
        }
    }
}

/// Pops, sleeping on the data doorbell while empty.
fn pop(c: &mut Consumer) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        if c.pop_into(&mut out).expect("no corruption") {
            return out;
        }
        assert!(c.wait_for_data(|| false));
    }
}

/// Frames cross the wrap (padding) and arrive whole and in order; the consumer sleeps when
/// the ring is empty and is always woken.
#[test]
fn loom_frames_cross_the_wrap_in_order_and_no_wakeup_is_lost() {
    model(|| {
        let (mut p, mut c) = ring_before_the_wrap();
        let sizes = [16usize, 8];
        let producer = thread::spawn(move || {
            for (i, len) in sizes.iter().enumerate() {
                push(&mut p, &frame(i as u8, *len));
            }
        });
        for (i, len) in sizes.iter().enumerate() {
            assert_eq!(pop(&mut c), frame(i as u8, *len));
        }
        producer.join().unwrap();
    });
}

/// The producer fills the ring and sleeps on the space doorbell; every release by the
/// consumer that it needs must wake it.
#[test]
fn loom_a_full_producer_is_always_woken_by_the_consumer() {
    model(|| {
        // Two 32-byte frames fill the 64 bytes; the third must wait for space.
        let (mut p, mut c) = ring::heap(64, 24).unwrap();
        p.try_push(&frame(0, 24)).unwrap();
        p.try_push(&frame(1, 24)).unwrap();
        let producer = thread::spawn(move || {
            push(&mut p, &frame(2, 24));
        });
        for i in 0..3u8 {
            assert_eq!(pop(&mut c), frame(i, 24));
        }
        producer.join().unwrap();
    });
}

/// Batched writes become visible together at publish, never torn.
#[test]
fn loom_a_batch_is_published_at_once() {
    model(|| {
        let (mut p, mut c) = ring::heap(64, 24).unwrap();
        let producer = thread::spawn(move || {
            p.write(&frame(1, 8)).unwrap();
            p.write(&frame(2, 8)).unwrap();
            p.publish();
        });
        let first = pop(&mut c);
        assert_eq!(first, frame(1, 8));
        let mut out = Vec::new();
        // Published together: the second is there as soon as the first is.
        assert!(c.pop_into(&mut out).unwrap());
        assert_eq!(out, frame(2, 8));
        producer.join().unwrap();
    });
}
