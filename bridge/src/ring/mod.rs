//! A single-producer single-consumer ring of variable-length byte frames over a memory region
//! that may be shared with another, untrusted process.
//!
//! Layout: a control block (producer line, consumer line, two doorbells, each on its own
//! 128-byte line; `control.rs`) and a data area of `capacity` bytes, a power of two. Positions
//! are monotonic `u64` byte counts; `position & (capacity - 1)` is the offset in the data area.
//! Frames and their validation are described in `frame.rs`, the limits on a ring's size in
//! `geometry.rs`; the memory itself, the only
//! `unsafe` part, in `region.rs`; each end in a file of its own (`producer.rs`,
//! `consumer.rs`).
//!
//! Invariants:
//! - one [`Producer`] and one [`Consumer`] per ring, ever: the segment hands each side's ends
//!   out once, and [`heap`] makes exactly one pair;
//! - the producer writes only free space and publishes with a Release store of `tail`; the
//!   consumer reads only published frames, after an Acquire load of `tail`, and frees them with
//!   a Release store of `head` after it copied them out;
//! - every index and header read from the region is validated before use, the payload is
//!   copied into private memory exactly once, and any inconsistency returns a [`Corruption`]
//!   and marks the end broken for good. Nothing read from the region is ever used to address
//!   memory outside it, and no arithmetic on it can overflow.

mod cache_padded;
mod consumer;
mod control;
mod error;
mod frame;
#[cfg(not(loom))]
#[doc(hidden)]
pub mod fuzzing;
mod geometry;
mod producer;
mod region;

#[cfg(not(loom))]
pub(crate) use cache_padded::CachePadded;
pub use consumer::{Consumer, BATCH_BYTES};
#[cfg(not(loom))]
pub(crate) use control::RingControl;
pub use control::RingStats;
pub use error::{Corruption, PushError};
pub(crate) use frame::frame_at;
pub use frame::{frame_size, Layout, Taken, FRAME_HEADER, POSITION_LIMIT};
pub use geometry::{check_geometry, max_frame_for, GeometryError, MAX_CAPACITY, MIN_CAPACITY};
pub use producer::Producer;
#[cfg(not(loom))]
pub(crate) use region::RawRing;

/// Makes a ring over private heap memory: for tests, Miri, in-process use and benchmarks.
///
/// ```
/// let (mut tx, mut rx) = bridge::ring::heap(1024, 256).unwrap();
/// tx.try_push(b"first").unwrap();
/// tx.try_push(b"second").unwrap();
/// let mut frame = Vec::new();
/// assert!(rx.pop_into(&mut frame).unwrap());
/// assert_eq!(frame, b"first");
/// assert!(rx.pop_into(&mut frame).unwrap());
/// assert_eq!(frame, b"second");
/// assert!(!rx.pop_into(&mut frame).unwrap());
/// ```
pub fn heap(capacity: usize, max_frame: usize) -> Result<(Producer, Consumer), GeometryError> {
    check_geometry(capacity, max_frame)?;
    let (a, b) = region::heap_pair(capacity, max_frame);
    Ok((Producer::new(a), Consumer::new(b)))
}

#[cfg(all(test, not(loom)))]
mod tests;
