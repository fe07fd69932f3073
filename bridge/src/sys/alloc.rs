//! The heap allocator the project's programs install: the system's, except that a small
//! zeroed allocation is made as a plain allocation and a fill.
//!
//! Why: glibc's `calloc` (before 2.41) bypasses the per-thread cache, so in a process with a
//! second thread — every process the bridge runs in has one (the liveness watch) — each small
//! zeroed allocation takes the arena's lock and the general allocation path. The codec makes
//! one for every `Vec<u8>` and `String` it decodes (bincode fills a zeroed buffer), so a
//! small message's receive spent a third of its time there (the 64-byte `stream` of
//! `bridge-bench` is half as fast again without it). `malloc` serves the same sizes from the
//! per-thread cache without a lock; filling 1 KiB costs less than the lock. Larger zeroed
//! allocations still go to `calloc`, which gets fresh pages already zero.
//!
//! Install it in a binary or a library that builds a whole program (`cdylib`):
//! `#[global_allocator] static ALLOC: bridge::Allocator = bridge::Allocator;`
//!
//! Invariants: every call but a small zeroed allocation goes to the system allocator
//! unchanged; a small zeroed allocation returns memory from `alloc` with the same layout,
//! every byte zero, or null where `alloc` failed.

use std::alloc::{GlobalAlloc, Layout, System};

/// The largest zeroed allocation made as a plain one and a fill: glibc's per-thread cache
/// serves allocations up to 1,032 bytes.
const SMALL: usize = 1024;

/// The project's heap allocator (see the module).
#[derive(Debug, Clone, Copy, Default)]
pub struct Allocator;

// SAFETY: every call is forwarded to the system allocator with the caller's layout; a small
// zeroed allocation is `System.alloc` with that layout, zeroed over its whole size before it
// is returned, which is what `alloc_zeroed` promises.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if cfg!(target_env = "gnu") && layout.size() <= SMALL {
            // SAFETY: the caller's contract is System's (a non-zero size).
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                // SAFETY: `p` is a fresh allocation of `layout.size()` bytes.
                unsafe { std::ptr::write_bytes(p, 0, layout.size()) };
            }
            return p;
        }
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract is System's; `ptr` came from System (every path
        // above allocates there).
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small and large zeroed allocations, at several alignments, come back zero over their
    /// whole size, even where the memory was used and freed just before.
    #[test]
    fn zeroed_allocations_are_zero_over_their_whole_size() {
        let a = Allocator;
        for size in [1, 7, 8, 63, 64, 100, 1023, 1024, 1025, 4096, 70_000] {
            for align in [1, 8, 16, 64, 4096] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero sizes; every pointer is freed with its layout.
                unsafe {
                    let dirty = a.alloc(layout);
                    assert!(!dirty.is_null());
                    std::ptr::write_bytes(dirty, 0xA5, size);
                    a.dealloc(dirty, layout);
                    let p = a.alloc_zeroed(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    let bytes = std::slice::from_raw_parts(p, size);
                    assert!(bytes.iter().all(|&b| b == 0), "size {size} align {align}");
                    a.dealloc(p, layout);
                }
            }
        }
    }
}
