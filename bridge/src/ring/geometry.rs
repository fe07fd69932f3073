//! A ring's geometry: the limits on its capacity and maximum frame, the check applied to a
//! pair of them (by the creator, and to what an opener reads from a shared header), and the
//! error that check returns.
//!
//! Invariants: a capacity that passes is a power of two from [`MIN_CAPACITY`] to
//! [`MAX_CAPACITY`]; a maximum frame that passes is at least 1, fits a `u32`, and at most
//! [`max_frame_for`] the capacity, so that a frame always fits twice in the ring.

#![forbid(unsafe_code)]

use std::fmt;

use super::frame::FRAME_HEADER;

/// Smallest data area accepted.
pub const MIN_CAPACITY: usize = 64;
/// Largest data area accepted (1 TiB).
pub const MAX_CAPACITY: usize = 1 << 40;

/// The largest payload a ring of `capacity` bytes accepts: a frame must fit twice, so that the
/// padding at the wrap can never make a lone frame unplaceable.
pub const fn max_frame_for(capacity: usize) -> usize {
    capacity / 2 - FRAME_HEADER
}

/// Checks a capacity and maximum frame pair.
pub fn check_geometry(capacity: usize, max_frame: usize) -> Result<(), GeometryError> {
    if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) || !capacity.is_power_of_two() {
        return Err(GeometryError::Capacity(capacity));
    }
    if max_frame == 0 || max_frame > max_frame_for(capacity) || max_frame > u32::MAX as usize {
        return Err(GeometryError::MaxFrame {
            max_frame,
            capacity,
        });
    }
    Ok(())
}

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
