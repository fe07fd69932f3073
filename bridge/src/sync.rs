//! The one place that decides where atomics come from: `std` normally, `loom` under `cfg(loom)`,
//! so the loom models check the same ring and doorbell code that ships.
//!
//! Invariants: no ring or doorbell code takes an atomic from anywhere else.

#![forbid(unsafe_code)]

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// A hint to the processor that we are spinning on a peer's write.
#[cfg(not(loom))]
#[inline]
pub(crate) fn spin_loop() {
    std::hint::spin_loop();
}
