//! The ring's run-time errors: what was found wrong in its memory, and why a push was refused.
//! Invariants: both are `Copy` and allocation-free, so the hot path can return them. (Why a geometry was
//! refused is in `geometry.rs`, with the limits it names.)

#![forbid(unsafe_code)]

use std::fmt;

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

impl std::error::Error for PushError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PushError::Corrupt(c) => Some(c),
            PushError::Full | PushError::TooLarge { .. } => None,
        }
    }
}
