//! The segment's memory layout: the header, where each ring's control block and data area
//! lie, and the ring sizes ([`Geometry`]) that fix the segment's length.
//!
//! ```text
//! 0                      Header (magic, versions, geometry, and per role: pid, state, heartbeat)
//! HEADER_BYTES           RingControl of the runner→worker ring
//! HEADER_BYTES + 512     RingControl of the worker→runner ring
//! DATA_OFFSET            data area of the runner→worker ring (capacity bytes)
//! DATA_OFFSET + capacity data area of the worker→runner ring (capacity bytes)
//! ```
//!
//! Invariants: everything is `#[repr(C)]`, positions are integers, never pointers; the header
//! and both control blocks fit before `DATA_OFFSET` and are aligned for their types (checked
//! at compile time below); the header consists only of atomics, so any bytes a peer wrote are
//! a valid value (and are validated before use).

#![forbid(unsafe_code)]

use super::role::Role;
use crate::ring::{CachePadded, RingControl};
use crate::sync::{AtomicU32, AtomicU64};

/// `"IBBRIDGE"` in little-endian: the first eight bytes of every segment.
pub const MAGIC: u64 = u64::from_le_bytes(*b"IBBRIDGE");
/// Version of the memory layout described here.
pub const LAYOUT_VERSION: u32 = 2;
/// Bytes reserved for the header.
pub(super) const HEADER_BYTES: usize = 4096;
/// Bytes of one ring's control block.
pub(super) const CONTROL_BYTES: usize = std::mem::size_of::<RingControl>();
/// Where the first ring's data area starts.
pub(super) const DATA_OFFSET: usize = 8192;

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_BYTES);
const _: () = assert!(HEADER_BYTES + 2 * CONTROL_BYTES <= DATA_OFFSET);
const _: () = assert!(HEADER_BYTES.is_multiple_of(std::mem::align_of::<RingControl>()));

/// A role's state in the header: attached.
pub(crate) const STATE_ATTACHED: u32 = 1;
/// A role's state in the header: closed.
pub(crate) const STATE_CLOSED: u32 = 2;

/// One role's block of the header; written only by that role's process.
#[repr(C)]
pub(crate) struct RoleBlock {
    pub(crate) pid: AtomicU32,
    pub(crate) state: AtomicU32,
    pub(crate) heartbeat: AtomicU64,
}

/// The segment header. Written by the creator before the worker starts; afterwards only the
/// atomics of each role's own block change.
#[repr(C)]
pub(crate) struct Header {
    pub(super) magic: AtomicU64,
    pub(super) layout_version: AtomicU32,
    pub(super) protocol_version: AtomicU32,
    pub(super) header_bytes: AtomicU32,
    pub(super) max_frame: AtomicU32,
    pub(super) ring_capacity: AtomicU64,
    pub(super) total_bytes: AtomicU64,
    pub(super) runner: CachePadded<RoleBlock>,
    pub(super) worker: CachePadded<RoleBlock>,
}

impl Header {
    /// The block of `role`.
    pub(crate) fn block(&self, role: Role) -> &RoleBlock {
        match role {
            Role::Runner => &self.runner,
            Role::Worker => &self.worker,
        }
    }
}

/// Sizes of a segment's rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes of each ring's data area; a power of two.
    pub ring_capacity: usize,
    /// Largest frame payload, at most half a ring.
    pub max_frame: usize,
}

impl Geometry {
    /// The default ring capacity: 1 MiB per direction.
    pub const DEFAULT_RING_CAPACITY: usize = 1 << 20;
    /// The default maximum frame: 256 KiB.
    pub const DEFAULT_MAX_FRAME: usize = 256 << 10;

    /// Bytes of shared memory a segment of this geometry needs (header, control blocks and
    /// both data areas).
    pub fn total_bytes(&self) -> usize {
        DATA_OFFSET + 2 * self.ring_capacity
    }
}

impl Default for Geometry {
    fn default() -> Self {
        Geometry {
            ring_capacity: Self::DEFAULT_RING_CAPACITY,
            max_frame: Self::DEFAULT_MAX_FRAME,
        }
    }
}
