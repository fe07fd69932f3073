//! A global allocator that counts, per thread, the heap allocations made and remembers the
//! largest one: for the benchmarks' `allocs_per_msg` and for tests that show a path allocates
//! nothing (or nothing large). Install it in a binary with
//! `#[global_allocator] static A: bridge::alloc_count::CountingAllocator = bridge::alloc_count::CountingAllocator;`.
//!
//! Invariants: every call goes to the project's allocator ([`crate::Allocator`]) unchanged; counting touches only
//! thread-local cells and never allocates.

use std::alloc::{GlobalAlloc, Layout};

use crate::Allocator;
use std::cell::Cell;

thread_local! {
    static COUNT: Cell<u64> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// The counting allocator (see the module).
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAllocator;

fn note(size: usize) {
    // A thread being torn down has no cells any more: not counted.
    let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    let _ = LARGEST.try_with(|c| c.set(c.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to the project's allocator; noting a size touches
// only thread-local Cells and never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract is the allocator's.
        unsafe { Allocator.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract is the allocator's.
        unsafe { Allocator.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: the caller's contract is the allocator's.
        unsafe { Allocator.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is the allocator's.
        unsafe { Allocator.dealloc(ptr, layout) }
    }
}

/// Heap allocations (and reallocations) this thread has made so far, if the process runs
/// [`CountingAllocator`]; 0 otherwise.
pub fn allocations_on_this_thread() -> u64 {
    COUNT.with(Cell::get)
}

/// Runs `f` and returns its result with the number of allocations this thread made meanwhile
/// and the largest of them (bytes).
pub fn during<T>(f: impl FnOnce() -> T) -> (T, u64, usize) {
    let before = COUNT.with(Cell::get);
    LARGEST.with(|c| c.set(0));
    let out = f();
    (out, COUNT.with(Cell::get) - before, LARGEST.with(Cell::get))
}
