//! Entry points for fuzzing the frame reader with arbitrary ring memory (`fuzz/`, and the
//! ring's own tests).
//!
//! Invariants: any bytes at all, and any head, give an error or frames, never a panic, an
//! overflow or a read out of bounds.

#![forbid(unsafe_code)]

use super::consumer::Consumer;
use super::region::heap_pair;
use crate::sync::Ordering;

/// Lays `input` out as a ring's memory (first 16 bytes: consumer and producer positions, any
/// `u64` at all; the rest: the data area of a 4 KiB ring) and reads frames until the ring is
/// empty or reported corrupt, in the one-by-one reader and the batch reader (its batches
/// also cut short, so that frames straddle the cut). Must never panic
/// (overflow checks included) or read outside the ring.
pub fn read_frames(input: &[u8]) {
    const CAP: usize = 4096;
    let word = |i: usize| {
        let mut b = [0u8; 8];
        for (j, x) in b.iter_mut().enumerate() {
            *x = input.get(i * 8 + j).copied().unwrap_or(0);
        }
        u64::from_le_bytes(b)
    };
    let data = input.get(16..).unwrap_or(&[]);
    // One by one, in batches, and in batches cut every 64 bytes.
    for (batch, bound) in [(false, None), (true, None), (true, Some(64))] {
        let (writer, reader) = heap_pair(CAP, 1024);
        writer
            .ctrl()
            .consumer
            .head
            .store(word(0), Ordering::Relaxed);
        writer
            .ctrl()
            .producer
            .tail
            .store(word(1), Ordering::Relaxed);
        writer.data.write(0, &data[..data.len().min(CAP)]);
        // The consumer starts from the (possibly hostile) head it finds.
        let mut c = Consumer::new(reader);
        if let Some(bytes) = bound {
            c.bound_batches(bytes);
        }
        let (mut out, mut frames) = (Vec::new(), Vec::new());
        for _ in 0..CAP {
            let more = if batch {
                c.take_batch(&mut out, &mut frames).map(|n| n > 0)
            } else {
                c.pop_into(&mut out)
            };
            match more {
                Ok(true) => {
                    for f in &frames {
                        assert!(f.start + f.len <= out.len());
                    }
                    c.release();
                }
                Ok(false) | Err(_) => break,
            }
        }
    }
}
