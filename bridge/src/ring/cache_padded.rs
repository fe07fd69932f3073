//! A value on its own pair of cache lines.
//!
//! Adjacent-line prefetchers pull 64-byte lines in pairs, so 128 bytes (as crossbeam's
//! `CachePadded` on x86-64) keeps a producer's and a consumer's hot words from sharing one.
//! Invariants: `#[repr(C)]` and 128-byte aligned, so it can live in shared memory and no
//! two padded values share a pair of lines.

#![forbid(unsafe_code)]

use std::ops::Deref;

/// `T` aligned and padded to 128 bytes.
#[repr(C, align(128))]
pub(crate) struct CachePadded<T>(T);

impl<T> CachePadded<T> {
    /// Wraps `value`.
    #[cfg(loom)]
    pub(crate) fn new(value: T) -> Self {
        CachePadded(value)
    }
}

impl<T> Deref for CachePadded<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}
