//! The bridge's own tests run under [`crate::alloc_count::CountingAllocator`], so a test can
//! show what decoding costs: how many allocations, and the largest.
//!
//! Invariants: built for the bridge's tests only; it changes no allocation, it counts them.

#[global_allocator]
static ALLOCATOR: crate::alloc_count::CountingAllocator = crate::alloc_count::CountingAllocator;

/// Runs `f` and returns its result with the largest single allocation this thread made
/// meanwhile.
pub(crate) fn largest_allocation_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let (out, _, largest) = crate::alloc_count::during(f);
    (out, largest)
}
