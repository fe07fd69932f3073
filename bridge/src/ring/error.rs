//! The ring's errors: what was found wrong in its memory, why a push was refused, and why a
//! geometry was refused. All are `Copy` and allocation-free, so the hot path can return them.

#![forbid(unsafe_code)]

use std::fmt;

use super::frame::{max_frame_for, MAX_CAPACITY, MIN_CAPACITY};

/// What was found wrong in the ring's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// The consumer's position is not within one capacity behind the producer's.
    Head {
        /// The consumer position found.
        head: u64,
        /// The producer position it was checked against.
        tail: u64,
    },
    /// The producer's position is not within one capacity ahead of the consumer's.
    Tail {
        /// The consumer position it was checked against.
        head: u64,
        /// The producer position found.
        tail: u64,
    },
    /// A frame header carries an unknown kind.
    FrameKind {
        /// Position of the frame.
        at: u64,
        /// The kind found.
        kind: u32,
    },
    /// A frame's length is larger than allowed or runs past what was published.
    FrameLength {
        /// Position of the frame.
        at: u64,
        /// The length found.
        len: u32,
    },
    /// A padding frame does not end exactly at the end of the data area.
    Padding {
        /// Position of the padding frame.
        at: u64,
        /// The length found.
        len: u32,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Corruption::Head { head, tail } => {
                write!(
                    f,
                    "consumer position {head} is invalid for producer position {tail}"
                )
            }
            Corruption::Tail { head, tail } => {
                write!(
                    f,
                    "producer position {tail} is invalid for consumer position {head}"
                )
            }
            Corruption::FrameKind { at, kind } => {
                write!(f, "frame at {at} has unknown kind {kind:#x}")
            }
            Corruption::FrameLength { at, len } => write!(f, "frame at {at} has bad length {len}"),
            Corruption::Padding { at, len } => write!(f, "padding at {at} has bad length {len}"),
        }
    }
}

impl std::error::Error for Corruption {}

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushError {
    /// Not enough free space right now; nothing was written.
    Full,
    /// The payload is larger than the ring's maximum frame.
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The ring's maximum frame.
        max: usize,
    },
    /// The ring's memory is corrupt; the producer is broken for good.
    Corrupt(Corruption),
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full => f.write_str("ring is full"),
            PushError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max}")
            }
            PushError::Corrupt(c) => write!(f, "ring is corrupt: {c}"),
        }
    }
}

impl std::error::Error for PushError {}

/// A ring's geometry was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GeometryError {
    /// Capacity must be a power of two from [`MIN_CAPACITY`] to [`MAX_CAPACITY`] bytes.
    Capacity(usize),
    /// The maximum frame must be at least 1 and at most [`max_frame_for`] the capacity.
    MaxFrame {
        /// The maximum frame asked for.
        max_frame: usize,
        /// The capacity asked for.
        capacity: usize,
    },
}

impl fmt::Display for GeometryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GeometryError::Capacity(c) => write!(
                f,
                "ring capacity {c} is not a power of two between {MIN_CAPACITY} and \
                 {MAX_CAPACITY} bytes"
            ),
            GeometryError::MaxFrame {
                max_frame,
                capacity,
            } => write!(
                f,
                "maximum frame {max_frame} must be between 1 and {} for a ring of {capacity} bytes",
                max_frame_for(capacity)
            ),
        }
    }
}

impl std::error::Error for GeometryError {}
