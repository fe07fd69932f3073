//! Unit tests of the ring over heap memory. They run under Miri too
//! (`cargo +nightly miri test -p bridge --lib ring::`), with smaller counts.

use super::frame::{KIND_DATA, KIND_FIXED, KIND_PAD};
use super::*;
use crate::sync::Ordering;
use std::collections::VecDeque;
use std::time::Instant;

const ROUNDS: usize = if cfg!(miri) { 300 } else { 20_000 };

/// Deterministic xorshift, so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seq as usize * 31 + i) as u8).collect()
}

fn pop(c: &mut Consumer) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    c.pop_into(&mut out).expect("no corruption").then_some(out)
}

#[test]
fn frames_come_out_in_order_with_their_content() {
    let (mut p, mut c) = heap(256, 64).unwrap();
    for i in 0..5u64 {
        p.try_push(&payload(i, i as usize * 3)).unwrap();
    }
    for i in 0..5u64 {
        assert_eq!(pop(&mut c), Some(payload(i, i as usize * 3)));
    }
    assert_eq!(pop(&mut c), None);
}

#[test]
fn empty_ring_pops_nothing_and_has_no_data() {
    let (_p, mut c) = heap(64, 8).unwrap();
    assert!(!c.has_data());
    assert_eq!(pop(&mut c), None);
    assert_eq!(pop(&mut c), None);
}

#[test]
fn zero_length_frames_are_frames() {
    let (mut p, mut c) = heap(64, 8).unwrap();
    p.try_push(&[]).unwrap();
    assert_eq!(pop(&mut c), Some(vec![]));
    assert_eq!(pop(&mut c), None);
}

#[test]
fn exact_fill_then_full_then_space_after_pop() {
    // 8-byte payloads take 16 bytes: four fill a 64-byte ring exactly.
    let (mut p, mut c) = heap(64, 24).unwrap();
    for i in 0..4u64 {
        p.try_push(&payload(i, 8)).unwrap();
    }
    assert_eq!(p.free_bytes(), 0);
    assert_eq!(p.try_push(&payload(9, 0)), Err(PushError::Full));
    assert_eq!(p.stats().full_events, 1);
    assert_eq!(pop(&mut c), Some(payload(0, 8)));
    p.try_push(&payload(4, 8)).unwrap();
    assert_eq!(p.try_push(&payload(5, 8)), Err(PushError::Full));
    for i in 1..5u64 {
        assert_eq!(pop(&mut c), Some(payload(i, 8)));
    }
    assert_eq!(pop(&mut c), None);
    assert_eq!(p.stats().frames, 5);
    assert_eq!(p.stats().bytes, 40);
}

#[test]
fn maximum_frame_passes_and_one_more_byte_is_too_large() {
    let cap = 64;
    let max = max_frame_for(cap);
    assert_eq!(max, 24);
    let (mut p, mut c) = heap(cap, max).unwrap();
    p.try_push(&payload(1, max)).unwrap();
    assert_eq!(
        p.try_push(&payload(2, max + 1)),
        Err(PushError::TooLarge { len: max + 1, max })
    );
    assert_eq!(pop(&mut c), Some(payload(1, max)));
    // A maximum frame always fits in an empty ring, wherever the positions stand.
    for i in 0..40u64 {
        p.try_push(&payload(i, max - (i as usize % 3))).unwrap();
        assert_eq!(pop(&mut c), Some(payload(i, max - (i as usize % 3))));
    }
}

#[test]
fn a_frame_that_does_not_fit_before_the_end_wraps_behind_padding() {
    let (mut p, mut c) = heap(64, 24).unwrap();
    p.try_push(&payload(0, 16)).unwrap(); // 0..24
    p.try_push(&payload(1, 16)).unwrap(); // 24..48
    assert_eq!(pop(&mut c), Some(payload(0, 16)));
    assert_eq!(pop(&mut c), Some(payload(1, 16)));
    // 16 bytes left before the end; a 24-byte frame pads them and goes to offset 0.
    p.try_push(&payload(2, 16)).unwrap();
    assert_eq!(p.position(), 48 + 16 + 24);
    assert_eq!(pop(&mut c), Some(payload(2, 16)));
    assert_eq!(c.position(), p.position());
}

#[test]
fn padding_counts_against_free_space() {
    let (mut p, mut c) = heap(64, 24).unwrap();
    p.try_push(&payload(0, 32 - 8)).unwrap(); // 0..32
    p.try_push(&payload(1, 8)).unwrap(); // 32..48
    assert_eq!(pop(&mut c), Some(payload(0, 24)));
    // Free: 48..64 and 0..32, 48 bytes. A 24-byte payload (32-byte frame) does not fit in
    // the 16 bytes before the end: 16 bytes of padding + 32 = exactly the 48 free.
    p.try_push(&payload(2, 24)).unwrap();
    assert_eq!(p.try_push(&payload(3, 0)), Err(PushError::Full));
    assert_eq!(pop(&mut c), Some(payload(1, 8)));
    assert_eq!(pop(&mut c), Some(payload(2, 24)));
    assert_eq!(pop(&mut c), None);
}

#[test]
fn random_traffic_matches_a_queue_model() {
    let (mut p, mut c) = heap(128, 40).unwrap();
    let mut model = VecDeque::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut seq = 0u64;
    let mut wraps = 0;
    let mut last_tail = 0;
    for _ in 0..ROUNDS {
        if rng.below(2) == 0 {
            let len = rng.below(41) as usize;
            let data = payload(seq, len);
            match p.try_push(&data) {
                Ok(()) => {
                    model.push_back(data);
                    seq += 1;
                }
                Err(PushError::Full) => assert!(!model.is_empty(), "full while empty"),
                Err(e) => panic!("unexpected {e}"),
            }
        } else {
            assert_eq!(pop(&mut c), model.pop_front());
        }
        if p.position() / 128 != last_tail / 128 {
            wraps += 1;
        }
        last_tail = p.position();
    }
    while let Some(expected) = model.pop_front() {
        assert_eq!(pop(&mut c), Some(expected));
    }
    assert_eq!(pop(&mut c), None);
    assert!(
        wraps > 10,
        "the test must cross the wrap many times, crossed {wraps}"
    );
}

#[test]
fn batched_writes_become_visible_on_publish() {
    let (mut p, mut c) = heap(256, 64).unwrap();
    p.write(b"one").unwrap();
    p.write(b"two").unwrap();
    assert_eq!(pop(&mut c), None, "nothing is visible before publish");
    p.publish();
    let mut out = Vec::new();
    assert!(c.take(&mut out).unwrap());
    assert!(c.take(&mut out).unwrap());
    assert!(!c.take(&mut out).unwrap());
    c.release();
    assert_eq!(out, b"onetwo");
    assert_eq!(p.free_bytes(), 256);
}

#[test]
fn geometry_is_checked() {
    assert_eq!(heap(100, 8).err(), Some(GeometryError::Capacity(100)));
    assert_eq!(heap(32, 8).err(), Some(GeometryError::Capacity(32)));
    assert!(matches!(heap(64, 25), Err(GeometryError::MaxFrame { .. })));
    assert!(matches!(heap(64, 0), Err(GeometryError::MaxFrame { .. })));
}

// --- hostile memory -----------------------------------------------------------------------

fn ctrl(p: &Producer) -> &RingControl {
    p.raw().ctrl()
}

#[test]
fn a_tail_beyond_one_capacity_breaks_the_consumer() {
    let (p, mut c) = heap(64, 24).unwrap();
    ctrl(&p).producer.tail.store(64 + 8, Ordering::Release);
    let mut out = Vec::new();
    let err = c.pop_into(&mut out).unwrap_err();
    assert_eq!(err, Corruption::Tail { head: 0, tail: 72 });
    // Broken for good, even if the index is put back.
    ctrl(&p).producer.tail.store(0, Ordering::Release);
    assert_eq!(c.pop_into(&mut out), Err(err));
    assert_eq!(c.broken(), Some(err));
}

#[test]
fn an_unaligned_or_backwards_tail_breaks_the_consumer() {
    let (mut p, mut c) = heap(64, 24).unwrap();
    p.try_push(b"abc").unwrap();
    assert_eq!(pop(&mut c), Some(b"abc".to_vec()));
    ctrl(&p).producer.tail.store(3, Ordering::Release);
    assert!(matches!(
        c.pop_into(&mut Vec::new()),
        Err(Corruption::Tail { .. })
    ));

    let (p, mut c) = heap(64, 24).unwrap();
    ctrl(&p).producer.tail.store(12, Ordering::Release);
    assert!(matches!(
        c.pop_into(&mut Vec::new()),
        Err(Corruption::Tail { .. })
    ));
}

#[test]
fn a_head_ahead_of_the_tail_breaks_the_producer() {
    let (mut p, _c) = heap(64, 24).unwrap();
    p.try_push(&payload(0, 24)).unwrap();
    p.try_push(&payload(1, 8)).unwrap();
    ctrl(&p).consumer.head.store(1024, Ordering::Release);
    // The next push needs more space, so it reads and validates the head.
    let err = p.try_push(&payload(2, 24)).unwrap_err();
    assert_eq!(
        err,
        PushError::Corrupt(Corruption::Head {
            head: 1024,
            tail: 48
        })
    );
    assert_eq!(p.try_push(&[]), Err(err));
    assert!(p.broken().is_some());
}

#[test]
fn a_frame_length_past_the_published_end_is_refused() {
    let (mut p, mut c) = heap(128, 48).unwrap();
    p.try_push(&payload(0, 8)).unwrap();
    // Claim 40 bytes where only 8 were published.
    p.raw().data.write_header(0, 40, KIND_DATA);
    assert_eq!(
        c.pop_into(&mut Vec::new()),
        Err(Corruption::FrameLength { at: 0, len: 40 })
    );
}

#[test]
fn a_frame_length_above_the_maximum_is_refused() {
    let (mut p, mut c) = heap(128, 16).unwrap();
    p.try_push(&payload(0, 16)).unwrap();
    p.try_push(&payload(0, 16)).unwrap();
    p.raw().data.write_header(0, u32::MAX, KIND_DATA);
    assert_eq!(
        c.pop_into(&mut Vec::new()),
        Err(Corruption::FrameLength {
            at: 0,
            len: u32::MAX
        })
    );
}

#[test]
fn an_unknown_frame_kind_is_refused() {
    let (mut p, mut c) = heap(64, 24).unwrap();
    p.try_push(&payload(0, 8)).unwrap();
    p.raw().data.write_header(0, 8, 0x1234);
    assert_eq!(
        c.pop_into(&mut Vec::new()),
        Err(Corruption::FrameKind {
            at: 0,
            kind: 0x1234
        })
    );
}

#[test]
fn padding_that_does_not_reach_the_end_is_refused() {
    let (mut p, mut c) = heap(64, 24).unwrap();
    p.try_push(&payload(0, 8)).unwrap();
    p.raw().data.write_header(0, 8, KIND_PAD);
    assert_eq!(
        c.pop_into(&mut Vec::new()),
        Err(Corruption::Padding { at: 0, len: 8 })
    );
}

#[test]
fn padding_with_nothing_after_it_is_refused() {
    let (mut p, mut c) = heap(64, 24).unwrap();
    p.try_push(&payload(0, 48)).unwrap_err();
    p.try_push(&payload(0, 16)).unwrap(); // 0..24
    assert_eq!(pop(&mut c), Some(payload(0, 16)));
    p.try_push(&payload(1, 16)).unwrap(); // 24..48
    assert_eq!(pop(&mut c), Some(payload(1, 16)));
    // Forge: a padding frame at 48 reaching the end, published alone.
    p.raw().data.write_header(48, 8, KIND_PAD);
    ctrl(&p).producer.tail.store(64, Ordering::Release);
    assert_eq!(
        c.pop_into(&mut Vec::new()),
        Err(Corruption::Padding { at: 48, len: 8 })
    );
}

#[test]
fn random_garbage_in_the_control_block_never_panics() {
    let mut rng = Rng(42);
    for _ in 0..if cfg!(miri) { 50 } else { 2_000 } {
        let (mut p, mut c) = heap(128, 48).unwrap();
        for i in 0..rng.below(6) {
            let _ = p.try_push(&payload(i, rng.below(49) as usize));
        }
        let _ = pop(&mut c);
        match rng.below(4) {
            0 => ctrl(&p).producer.tail.store(rng.next(), Ordering::Release),
            1 => ctrl(&p).consumer.head.store(rng.next(), Ordering::Release),
            2 => {
                let off = (rng.below(16) * 8) as usize;
                p.raw()
                    .data
                    .write_header(off, rng.next() as u32, rng.next() as u32);
            }
            _ => {
                let off = rng.below(120) as usize;
                p.raw().data.write(off, &rng.next().to_le_bytes());
            }
        }
        for _ in 0..8 {
            let _ = c.pop_into(&mut Vec::new());
            let _ = p.try_push(&payload(7, rng.below(49) as usize));
        }
    }
}

#[test]
fn a_consumer_waiting_for_data_is_woken_by_a_push() {
    let (mut p, mut c) = heap(1024, 64).unwrap();
    let t = std::thread::spawn(move || {
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        let mut got = Vec::new();
        while got.len() < 100 {
            assert!(c.wait_for_data(deadline, || false), "timed out");
            let mut out = Vec::new();
            while c.pop_into(&mut out).unwrap() {
                got.push(out.clone());
            }
        }
        got
    });
    for i in 0..100u64 {
        while p.try_push(&payload(i, 16)) == Err(PushError::Full) {
            std::thread::yield_now();
        }
        if i % 10 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    let got = t.join().unwrap();
    assert_eq!(got, (0..100).map(|i| payload(i, 16)).collect::<Vec<_>>());
}

#[test]
fn a_full_producer_waits_for_space_until_its_deadline() {
    let (mut p, _c) = heap(64, 24).unwrap();
    while p.try_push(&payload(0, 8)).is_ok() {}
    let deadline = Instant::now() + std::time::Duration::from_millis(30);
    assert!(!p.wait_for_space(8, deadline, || false));
    assert!(Instant::now() >= deadline);
}

// --- batches ----------------------------------------------------------------------------

fn batch(c: &mut Consumer) -> Vec<Vec<u8>> {
    let (mut out, mut frames) = (Vec::new(), Vec::new());
    c.take_batch(&mut out, &mut frames).expect("no corruption");
    c.release();
    frames
        .iter()
        .map(|f| out[f.start..f.start + f.len].to_vec())
        .collect()
}

/// Pushes up to five frames of random lengths (0 to 64 bytes), numbered from `seq`, and
/// remembers those that fit.
fn push_some(p: &mut Producer, rng: &mut Rng, seq: &mut u64, expected: &mut VecDeque<Vec<u8>>) {
    for _ in 0..rng.below(6) {
        let data = payload(*seq, rng.below(65) as usize);
        if p.try_push(&data).is_ok() {
            expected.push_back(data);
            *seq += 1;
        }
    }
}

#[test]
fn batches_return_every_published_frame_in_order_across_wraps() {
    let (mut p, mut c) = heap(256, 64).unwrap();
    let mut rng = Rng(7);
    let mut seq = 0u64;
    let mut expected = VecDeque::new();
    for _ in 0..ROUNDS / 10 {
        push_some(&mut p, &mut rng, &mut seq, &mut expected);
        for got in batch(&mut c) {
            assert_eq!(Some(got), expected.pop_front());
        }
        assert!(expected.is_empty(), "a batch takes everything published");
    }
    assert!(seq > ROUNDS as u64 / 10, "{seq} frames");
}

#[test]
fn a_batch_validates_frames_in_its_private_copy() {
    let (mut p, mut c) = heap(128, 48).unwrap();
    p.try_push(&payload(0, 8)).unwrap();
    p.try_push(&payload(1, 8)).unwrap();
    // The second frame claims more than was published.
    p.raw().data.write_header(16, 40, KIND_DATA);
    let (mut out, mut frames) = (Vec::new(), Vec::new());
    assert_eq!(
        c.take_batch(&mut out, &mut frames),
        Err(Corruption::FrameLength { at: 16, len: 40 })
    );
    assert!(c.broken().is_some());
    assert_eq!(
        c.pop_into(&mut out),
        Err(Corruption::FrameLength { at: 16, len: 40 })
    );
}

/// Runs of frames with one header (a stream of one message type, checked a comparison a
/// frame) end where the header changes, where the bound cuts, and where the data area ends:
/// every frame comes out once, in order, with its layout, at every bound.
#[test]
fn runs_of_equal_frames_are_taken_whole_at_any_bound() {
    for bound in [8, 64, 128, 200, 1000, 4096] {
        let (mut p, mut c) = heap(4096, 1024).unwrap();
        c.bound_batches(bound);
        let mut expected = VecDeque::new();
        let mut seq = 0u64;
        for round in 0..if cfg!(miri) { 20 } else { 200u64 } {
            // A run of 1 to 40 equal frames (56 bytes, fixed or not), then an odd one.
            let layout = if round % 3 == 0 {
                Layout::Codec
            } else {
                Layout::Fixed
            };
            for _ in 0..1 + round % 40 {
                let data = payload(seq, 56);
                if p.write_as(&data, layout).is_err() {
                    break;
                }
                expected.push_back((data, layout));
                seq += 1;
            }
            let data = payload(seq, (round % 70) as usize);
            if p.write(&data).is_ok() {
                expected.push_back((data, Layout::Codec));
                seq += 1;
            }
            p.publish();
            let (mut out, mut frames) = (Vec::new(), Vec::new());
            while c.take_batch(&mut out, &mut frames).expect("no corruption") > 0 {
                for f in &frames {
                    let (data, layout) = expected.pop_front().expect("a frame expected");
                    assert_eq!(
                        &out[f.start..f.start + f.len],
                        data.as_slice(),
                        "bound {bound}"
                    );
                    assert_eq!(f.layout, layout, "bound {bound}");
                }
                c.release();
            }
            assert!(expected.is_empty(), "bound {bound}, round {round}");
        }
        assert_eq!(c.stats().frames, seq, "bound {bound}");
    }
}

/// A frame inside a run that differs from the frames before it is checked on its own: a
/// hostile length or kind in the middle of a run of equal frames is corruption at its place.
#[test]
fn a_hostile_frame_inside_a_run_is_found_at_its_place() {
    for (len, kind, victim) in [
        (56, 0x1234_5678, 5u64),
        (4000, KIND_FIXED, 9),
        (900, KIND_FIXED, 25),
        (56, KIND_PAD, 20),
    ] {
        let (mut p, mut c) = heap(4096, 1024).unwrap();
        for i in 0..30 {
            p.write_as(&payload(i, 56), Layout::Fixed).unwrap();
        }
        p.publish();
        let at = victim * 64;
        p.raw().data.write_header(at as usize, len, kind);
        let (mut out, mut frames) = (Vec::new(), Vec::new());
        let got = c.take_batch(&mut out, &mut frames);
        let expected = match kind {
            KIND_FIXED => Corruption::FrameLength { at, len },
            KIND_PAD => Corruption::Padding { at, len },
            kind => Corruption::FrameKind { at, kind },
        };
        assert_eq!(got, Err(expected));
        // Nothing of the batch is counted as taken, the frames before the hostile one included.
        assert_eq!(c.stats().frames, 0);
    }
}

/// Payloads of every small length (written word by word, the last word padded) and a few
/// larger ones (a bulk copy) come out byte for byte, across wraps.
#[test]
fn payloads_of_every_length_come_out_byte_for_byte() {
    let (mut p, mut c) = heap(1024, 256).unwrap();
    for round in 0..3 {
        for len in 0..=256 {
            let data = payload(round * 1000 + len as u64, len);
            p.try_push(&data).unwrap();
            assert_eq!(pop(&mut c), Some(data), "length {len}");
        }
        // The same through batches of two frames each (their walk reads the headers the
        // words carry), a frame ending at the data area's end among them.
        let mut taken = 0;
        for len in 0..=256 {
            let data = payload(round * 1000 + len as u64, len);
            p.try_push(&data).unwrap();
            if len % 2 == 1 || p.position() % 1024 == 0 {
                for frame in batch(&mut c) {
                    let seq = round * 1000 + taken as u64;
                    assert_eq!(frame, payload(seq, taken), "length {taken}");
                    taken += 1;
                }
            }
        }
        for frame in batch(&mut c) {
            assert_eq!(frame, payload(round * 1000 + taken as u64, taken));
            taken += 1;
        }
        assert_eq!(taken, 257);
    }
}

/// A consumer far behind takes its backlog in batches of [`BATCH_BYTES`] and the frame that
/// crosses the bound at most, each frame once, in order, across the wrap.
#[test]
fn a_backlog_is_taken_in_bounded_batches_in_order() {
    let (mut p, mut c) = heap(1 << 20, 256 << 10).unwrap();
    let mut rng = Rng(11);
    let mut expected = VecDeque::new();
    let mut seq = 0u64;
    for round in 0..if cfg!(miri) { 2 } else { 6 } {
        // Most of the ring published at once, one large frame among small ones.
        while p.free_bytes() > 300 << 10 {
            let len = if seq % 97 == 50 {
                200 << 10
            } else {
                rng.below(3000) as usize
            };
            let data = payload(seq, len);
            p.try_push(&data).unwrap();
            expected.push_back(data);
            seq += 1;
        }
        let (mut out, mut frames) = (Vec::new(), Vec::new());
        let mut batches = 0;
        while c.take_batch(&mut out, &mut frames).expect("no corruption") > 0 {
            batches += 1;
            let sizes: Vec<usize> = frames.iter().map(|f| frame_size(f.len)).collect();
            let bytes: usize = sizes.iter().sum();
            let last = sizes.last().copied().unwrap_or(0);
            assert!(
                bytes - last < BATCH_BYTES,
                "round {round}: a batch of {bytes} bytes in {} frames",
                frames.len()
            );
            for f in &frames {
                assert_eq!(f.layout, Layout::Codec);
                assert_eq!(
                    Some(&out[f.start..f.start + f.len]),
                    expected.front().map(Vec::as_slice)
                );
                expected.pop_front();
            }
            c.release();
        }
        assert!(expected.is_empty(), "round {round}: every frame taken");
        assert!(batches >= 5, "round {round}: {batches} batches");
    }
}

/// Batches cut short at any bound (down to one header) still hand out every frame once, in
/// order, across wraps: a frame the cut splits is completed and ends the batch.
#[test]
fn batches_cut_at_any_bound_return_every_frame_in_order() {
    for bound in [8, 24, 64, 100, 200] {
        let (mut p, mut c) = heap(256, 64).unwrap();
        c.bound_batches(bound);
        let mut rng = Rng(bound as u64);
        let mut seq = 0u64;
        let mut expected = VecDeque::new();
        for _ in 0..ROUNDS / 10 {
            push_some(&mut p, &mut rng, &mut seq, &mut expected);
            loop {
                let got = batch(&mut c);
                if got.is_empty() {
                    break;
                }
                let sizes: Vec<usize> = got.iter().map(|f| frame_size(f.len())).collect();
                let before_last: usize = sizes[..sizes.len() - 1].iter().sum();
                assert!(before_last < (bound + 7) & !7, "{bound}: {sizes:?}");
                for frame in got {
                    assert_eq!(Some(frame), expected.pop_front(), "bound {bound}");
                }
            }
            assert!(expected.is_empty(), "bound {bound}");
        }
        assert!(seq > ROUNDS as u64 / 10, "{seq} frames");
    }
}

/// A padding frame longer than the batch bound (a large frame that did not fit before the
/// end of the data area) is skipped whole, and the frame behind it taken.
#[test]
fn a_padding_frame_longer_than_the_bound_is_skipped_whole() {
    let cap = 1 << 20;
    let (mut p, mut c) = heap(cap, 256 << 10).unwrap();
    let (mut out, mut frames) = (Vec::new(), Vec::new());
    // Move both ends to 100 KiB before the end of the data area.
    let mut seq = 0;
    while (p.position() as usize) < cap - (100 << 10) {
        let room = cap - (100 << 10) - p.position() as usize;
        p.try_push(&payload(seq, (room - 8).min(4000))).unwrap();
        seq += 1;
        while c.take_batch(&mut out, &mut frames).expect("no corruption") > 0 {
            c.release();
        }
    }
    assert_eq!(p.position() as usize, cap - (100 << 10));
    // 150 KiB do not fit before the end: 100 KiB of padding, then the frame at offset 0.
    let big = payload(7, 150 << 10);
    p.try_push(&big).unwrap();
    p.try_push(&payload(8, 10)).unwrap();
    assert_eq!(c.take_batch(&mut out, &mut frames), Ok(1));
    assert_eq!(&out[frames[0].start..][..frames[0].len], big.as_slice());
    c.release();
    assert_eq!(batch(&mut c), vec![payload(8, 10)]);
}

/// Once frozen, the consumer takes what was published up to the last read of the
/// producer's position, in as many batches as that needs, and nothing published after it.
#[test]
fn a_frozen_consumer_takes_what_was_published_before_and_nothing_after() {
    let (mut p, mut c) = heap(256, 64).unwrap();
    c.bound_batches(16);
    p.try_push(&payload(0, 8)).unwrap();
    p.try_push(&payload(1, 8)).unwrap();
    c.freeze().unwrap();
    p.try_push(&payload(2, 8)).unwrap();
    assert_eq!(batch(&mut c), vec![payload(0, 8)]);
    assert_eq!(batch(&mut c), vec![payload(1, 8)]);
    assert!(batch(&mut c).is_empty());
    assert_eq!(pop(&mut c), None);
}

/// The last read of a hostile producer position (past a ring's worth of data) is corruption
/// like any other: the freeze reports it, and the consumer takes nothing after it.
#[test]
fn a_frozen_consumer_reports_a_hostile_last_position() {
    let (mut p, mut c) = heap(64, 24).unwrap();
    p.try_push(&payload(0, 8)).unwrap();
    ctrl(&p).producer.tail.store(64 + 8, Ordering::Release);
    let hostile = Corruption::Tail { head: 0, tail: 72 };
    assert_eq!(c.freeze(), Err(hostile));
    // Broken for good: a sane position written afterwards changes nothing.
    ctrl(&p).producer.tail.store(16, Ordering::Release);
    assert_eq!(c.freeze(), Err(hostile));
    let (mut out, mut frames) = (Vec::new(), Vec::new());
    assert_eq!(c.take_batch(&mut out, &mut frames), Err(hostile));
    assert!(frames.is_empty());
}

/// Each frame says how its payload is encoded; both kinds are validated alike.
#[test]
fn a_batch_reports_each_frames_layout() {
    let (mut p, mut c) = heap(256, 64).unwrap();
    p.write(&payload(0, 5)).unwrap();
    p.write_as(&payload(1, 56), Layout::Fixed).unwrap();
    p.write(&payload(2, 0)).unwrap();
    p.publish();
    let (mut out, mut frames) = (Vec::new(), Vec::new());
    assert_eq!(c.take_batch(&mut out, &mut frames), Ok(3));
    let layouts: Vec<Layout> = frames.iter().map(|f| f.layout).collect();
    assert_eq!(layouts, [Layout::Codec, Layout::Fixed, Layout::Codec]);
    assert_eq!(&out[frames[1].start..][..56], payload(1, 56).as_slice());
    c.release();
    // A fixed frame claiming more than was published is refused like any other.
    p.write_as(&payload(3, 16), Layout::Fixed).unwrap();
    p.publish();
    let at = c.position();
    p.raw()
        .data
        .write_header((at % 256) as usize, 200, KIND_FIXED);
    assert_eq!(
        c.take_batch(&mut out, &mut frames),
        Err(Corruption::FrameLength { at, len: 200 })
    );
}

/// Where the bound cuts a frame, the frame's length is still checked against what was
/// published: a hostile length there is corruption, not a read past the published bytes.
#[test]
fn a_frame_cut_by_the_batch_bound_is_validated_against_what_was_published() {
    let (mut p, mut c) = heap(1 << 20, 256 << 10).unwrap();
    // 1,008-byte frames: the 66th straddles the 64 KiB bound.
    for i in 0..66 {
        p.try_push(&payload(i, 1000)).unwrap();
    }
    let cut = 65 * 1008;
    assert!(cut < BATCH_BYTES as u64 && cut + 1008 > BATCH_BYTES as u64);
    p.raw().data.write_header(cut as usize, 2000, KIND_DATA);
    let (mut out, mut frames) = (Vec::new(), Vec::new());
    assert_eq!(
        c.take_batch(&mut out, &mut frames),
        Err(Corruption::FrameLength { at: cut, len: 2000 })
    );
    assert!(c.broken().is_some());
}

#[test]
fn the_fuzzing_entry_point_survives_random_memory() {
    let mut rng = Rng(99);
    for _ in 0..if cfg!(miri) { 20 } else { 2_000 } {
        let len = rng.below(4200) as usize;
        let mut input: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Plausible positions half of the time, so frames are actually parsed.
        if rng.below(2) == 0 && input.len() >= 16 {
            let head = rng.below(64) * 8;
            let tail = head + rng.below(512) * 8;
            input[..8].copy_from_slice(&head.to_le_bytes());
            input[8..16].copy_from_slice(&tail.to_le_bytes());
        }
        super::fuzzing::read_frames(&input);
    }
}

// --- positions and counters near the end of the u64 range ---------------------------------

/// Ends made over memory whose positions a hostile peer set.
fn ends_over(head: u64, tail: u64) -> (Producer, Consumer) {
    let (a, b) = super::region::heap_pair(128, 48);
    a.ctrl().consumer.head.store(head, Ordering::Relaxed);
    a.ctrl().producer.tail.store(tail, Ordering::Relaxed);
    (Producer::new(a), Consumer::new(b))
}

/// head = tail = u64::MAX - 7 is aligned and consistent, yet any frame pushed or popped
/// would overflow the positions. Debug builds (the tests, the CI soak) check overflow.
#[test]
fn hostile_positions_near_the_end_of_u64_break_the_ends_without_overflow() {
    for pos in [
        u64::MAX - 7,
        u64::MAX - 127,
        POSITION_LIMIT,
        POSITION_LIMIT + 8,
    ] {
        let (mut p, mut c) = ends_over(pos, pos);
        assert!(
            matches!(p.try_push(b"x"), Err(PushError::Corrupt(_))),
            "{pos}"
        );
        assert!(c.pop_into(&mut Vec::new()).is_err(), "{pos}");
        assert!(
            c.take_batch(&mut Vec::new(), &mut Vec::new()).is_err(),
            "{pos}"
        );
        assert_eq!(p.free_bytes(), 0);
    }
    // Just below the limit, the ends work and stay below it.
    let pos = POSITION_LIMIT - 1024;
    let (mut p, mut c) = ends_over(pos, pos);
    for i in 0..10 {
        p.try_push(&payload(i, 40)).unwrap();
        assert_eq!(pop(&mut c), Some(payload(i, 40)));
    }
    // A tail the producer moves beyond the limit is refused by the consumer.
    let (p, mut c) = ends_over(POSITION_LIMIT - 64, POSITION_LIMIT - 64);
    ctrl(&p)
        .producer
        .tail
        .store(POSITION_LIMIT + 8, Ordering::Release);
    assert!(matches!(
        c.pop_into(&mut Vec::new()),
        Err(Corruption::Tail { .. })
    ));
}

#[test]
fn the_fuzzing_entry_point_takes_any_head_including_the_end_of_u64() {
    let mut input = Vec::new();
    for head in [u64::MAX - 7, u64::MAX, 1 << 63, POSITION_LIMIT - 8] {
        input.clear();
        input.extend_from_slice(&head.to_le_bytes());
        input.extend_from_slice(&head.wrapping_add(16).to_le_bytes());
        input.extend_from_slice(&header_for_fuzz(8));
        input.extend_from_slice(&[1; 8]);
        fuzzing::read_frames(&input);
    }
}

fn header_for_fuzz(len: u32) -> [u8; 8] {
    super::frame::header_bytes(len, KIND_DATA)
}

/// A peer that writes into the data area while the consumer copies frames out: the copies
/// are atomic loads, so this is no data race (Miri checks it), and whatever the consumer reads
/// is validated: it gets frames or a corruption, never a panic. (The producer's own writes
/// are ordered before the copies by the ring's Release/Acquire; the test scribbles only
/// while the consumer reads.)
#[test]
fn a_peer_writing_during_the_copy_is_no_data_race() {
    use std::sync::atomic::AtomicU64;
    let (mut p, mut c) = heap(256, 64).unwrap();
    let data = p.raw().data.data_ptr_for_tests() as usize;
    let (mut out, mut frames) = (Vec::new(), Vec::new());
    let mut rng = Rng(7);
    for round in 0..if cfg!(miri) { 20 } else { 2_000 } {
        for i in 0..3 {
            if p.try_push(&payload(round * 3 + i, rng.below(40) as usize))
                .is_err()
            {
                return;
            }
        }
        // Every other round the batches are cut short, so that frames straddle the cut.
        c.bound_batches(if round % 2 == 0 { BATCH_BYTES } else { 48 });
        let seed = rng.next();
        let result = std::thread::scope(|s| {
            s.spawn(move || {
                let mut rng = Rng(seed | 1);
                for _ in 0..16 {
                    let word = rng.below(32) as usize;
                    // SAFETY: within the 256-byte data area, 8-aligned, and only read
                    // atomically meanwhile: as a hostile process's store is to us.
                    let cell = unsafe { AtomicU64::from_ptr((data as *mut u64).add(word)) };
                    cell.store(rng.next(), Ordering::Relaxed);
                }
            });
            c.take_batch(&mut out, &mut frames)
        });
        match result {
            Ok(_) => c.release(),
            Err(_) => return,
        }
    }
}
