//! The memory a ring lives in: its control block and its data area, kept alive by an owner
//! (a shared-memory [`Segment`](crate::segment::Segment) or a private heap allocation).
//!
//! Invariants: this is the only part of the ring with `unsafe` code. Every access to the data area is
//! bounds-checked against its length, whatever offset the caller computed. Reads of the data
//! area are relaxed atomic loads (whole aligned words where possible) into private memory: a
//! peer that writes concurrently can only make us copy garbage, which the caller then
//! validates; nothing is ever read twice from shared memory.
//!
//! Under `cfg(loom)` the data area is one tracked cell per byte instead, so that loom reports
//! a read of a frame before it was published as a data race.

use std::sync::Arc;

use super::control::RingControl;
use super::frame::{header_bytes, parse_header, FRAME_HEADER};

/// Payloads up to this size are written word by word ([`DataArea::write_frame`]), larger ones
/// by a bulk copy.
#[cfg(not(loom))]
const SMALL_FRAME: usize = 128;
#[cfg(not(loom))]
use super::geometry::check_geometry;

/// The data area of a ring: raw bytes, bounds-checked on every access.
#[cfg(not(loom))]
pub(crate) struct DataArea {
    ptr: *mut u8,
    len: usize,
}

#[cfg(not(loom))]
impl DataArea {
    #[inline]
    fn in_bounds(&self, off: usize, n: usize) -> bool {
        off.checked_add(n).is_some_and(|end| end <= self.len)
    }

    /// Copies `src` to `off`. The producer's offsets come from its private position, so an
    /// out-of-bounds write is a bug of ours, never an effect of hostile memory: it panics.
    #[inline]
    pub(crate) fn write(&self, off: usize, src: &[u8]) {
        assert!(self.in_bounds(off, src.len()), "ring write out of bounds");
        // SAFETY: `ptr..ptr+len` is mapped and writable for the DataArea's life (RawRing
        // contract) and the range was bounds-checked; the producer owns this free space, and
        // `src` is private memory, so the ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(off), src.len()) }
    }

    #[inline]
    pub(crate) fn write_header(&self, off: usize, len: u32, kind: u32) {
        self.write(off, &header_bytes(len, kind));
    }

    /// Writes a whole frame at `off`: a payload of up to [`SMALL_FRAME`] bytes word by word
    /// ([`write_frame_words`](Self::write_frame_words)), a larger one by a bulk copy after its
    /// header.
    #[inline(always)]
    pub(crate) fn write_frame(&self, off: usize, payload: &[u8], kind: u32) {
        if payload.len() <= SMALL_FRAME {
            self.write_frame_words(off, payload, kind);
        } else {
            self.write_header(off, payload.len() as u32, kind);
            self.write(off + FRAME_HEADER, payload);
        }
    }

    /// Writes a whole frame of a small payload at `off` (a multiple of 8): its header, then
    /// the payload, as 8-byte words (the last one zero-padded), each with one relaxed atomic
    /// store. Out of bounds, or `off` not a multiple of 8, is a bug of ours: it panics.
    ///
    /// For small payloads, rather than [`write_header`](Self::write_header) and
    /// [`write`](Self::write): a payload just built by narrower stores (a message's fixed
    /// layout, a short encoding) is read back here in loads of at most its stores' width,
    /// where a bulk copy's 16- or 32-byte loads would wait for those stores to reach the
    /// cache (a store-forwarding stall, most of the producer's time per live bar).
    #[inline(always)]
    fn write_frame_words(&self, off: usize, payload: &[u8], kind: u32) {
        let full = payload.len() / 8;
        let words = 1 + payload.len().div_ceil(8);
        assert!(
            off.is_multiple_of(8) && self.in_bounds(off, words * 8),
            "ring write out of bounds"
        );
        // Each word holds its bytes in memory order (native, like the consumer's loads).
        let header = u64::from_ne_bytes(header_bytes(payload.len() as u32, kind));
        // Every store here is of word `k < words` of the frame: `off + 8 k` is 8-aligned (the
        // area is, and `off` is a multiple of 8) and in bounds of the mapped, writable area
        // (checked above), and the producer owns this free space.
        // SAFETY: as above, word 0.
        unsafe { store_word(self.ptr.add(off), header) };
        let mut chunks = payload.chunks_exact(8);
        for (k, chunk) in (&mut chunks).enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            // SAFETY: as above, `k + 1 < words`.
            unsafe { store_word(self.ptr.add(off + 8 * (k + 1)), u64::from_ne_bytes(w)) };
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // The bytes, then zeros, in memory order: built by shifts (no byte stores read
            // back by a wider load), little-endian, and swapped where the target is not.
            let w = rest
                .iter()
                .rev()
                .fold(0u64, |w, &b| (w << 8) | u64::from(b))
                .to_le();
            // SAFETY: as above, `full + 1 < words` when a remainder exists.
            unsafe { store_word(self.ptr.add(off + 8 * (full + 1)), w) };
        }
    }

    /// Asks the processor to fetch the cache line holding `off` for writing: the producer
    /// writes a line the consumer read last, which its store would otherwise have to take
    /// from the consumer's cache while later stores wait behind it. A hint: no effect on
    /// what memory holds; nothing at all off x86-64 (or under Miri) or out of bounds.
    #[inline(always)]
    pub(crate) fn prefetch_for_write(&self, off: usize) {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        if off < self.len {
            // SAFETY: `ptr + off` is within the mapped area (checked); PREFETCHW only hints
            // the cache (it reads nor writes no memory, cannot fault, and is a no-op on
            // processors that lack it), and touches no register but its address operand.
            unsafe {
                std::arch::asm!(
                    "prefetchw [{0}]",
                    in(reg) self.ptr.add(off),
                    options(nostack, preserves_flags, readonly)
                )
            };
        }
        #[cfg(any(not(target_arch = "x86_64"), miri))]
        let _ = off;
    }

    /// Reads a frame header once. `None` if out of bounds (cannot happen for validated offsets).
    #[inline]
    pub(crate) fn read_header(&self, off: usize) -> Option<(u32, u32)> {
        if !off.is_multiple_of(8) || !self.in_bounds(off, FRAME_HEADER) {
            return None;
        }
        let mut h = [0u8; FRAME_HEADER];
        // SAFETY: one aligned word in bounds of the mapped area, into a private 8-byte buffer.
        unsafe { copy_atomic(self.ptr.add(off), h.as_mut_ptr(), 1) };
        Some(parse_header(h))
    }

    /// The start of the data area, for tests that play a hostile peer.
    #[cfg(test)]
    pub(crate) fn data_ptr_for_tests(&self) -> *mut u8 {
        self.ptr
    }

    /// Appends the `n` bytes at `off` to `out`. `false` if out of bounds, or if `off` is not a
    /// multiple of 8 (frames and payloads always start on one).
    ///
    /// The copy reads whole 8-byte words, so it reads up to 7 bytes past `n`: they belong to
    /// the frame's padding and must be inside the data area too.
    #[inline]
    pub(crate) fn read_into(&self, off: usize, n: usize, out: &mut Vec<u8>) -> bool {
        let words = n.div_ceil(8);
        if !off.is_multiple_of(8) || !self.in_bounds(off, words * 8) {
            return false;
        }
        out.reserve(words * 8);
        let start = out.len();
        // SAFETY: the source words are in bounds of the mapped area and 8-aligned (the area
        // is, and `off` is a multiple of 8); the destination has room for `words * 8` more
        // bytes after `reserve`; they cannot overlap (private vs shared memory). After the
        // copy the first `n` of those bytes are initialised, so `set_len` is sound.
        unsafe {
            copy_atomic(self.ptr.add(off), out.as_mut_ptr().add(start), words);
            out.set_len(start + n);
        }
        true
    }
}

/// Copies `words` 8-byte words out of shared memory with relaxed atomic loads. A peer that
/// writes the same words during the copy (a hostile process, or a test playing one with
/// atomic stores) is then no data race: each load reads some value once, and the caller
/// validates what it got. Relaxed loads compile to plain moves; only the compiler's freedom
/// to merge, widen or repeat them is given up (docs/performance.md gives the cost). Every
/// read of the data area goes through here, as whole aligned words, so no location is ever
/// read with atomics of two sizes.
///
/// # Safety
///
/// `src` must be 8-aligned and valid for `8 * words` bytes of reads, `dst` valid for as many
/// bytes of writes, and the two ranges must not overlap.
#[cfg(not(loom))]
#[inline]
unsafe fn copy_atomic(src: *const u8, dst: *mut u8, words: usize) {
    use std::sync::atomic::{AtomicU64, Ordering};
    for i in 0..words {
        // SAFETY: word `i` is within the readable, aligned source range and only accessed
        // atomically or under the ring's happens-before; `dst + 8 i .. + 8` is within the
        // writable range, written unaligned.
        unsafe {
            let word = AtomicU64::from_ptr(src.add(8 * i).cast_mut().cast::<u64>())
                .load(Ordering::Relaxed);
            std::ptr::write_unaligned(dst.add(8 * i).cast::<u64>(), word);
        }
    }
}

/// Stores one word into shared memory with a relaxed atomic store (a plain move; the compiler
/// may not merge it with its neighbours into a wider copy).
///
/// # Safety
///
/// `dst` must be 8-aligned and valid for 8 bytes of writes.
#[cfg(not(loom))]
#[inline(always)]
unsafe fn store_word(dst: *mut u8, word: u64) {
    use std::sync::atomic::{AtomicU64, Ordering};
    // SAFETY: the caller's contract; the word is only accessed atomically or under the ring's
    // happens-before.
    unsafe { AtomicU64::from_ptr(dst.cast::<u64>()).store(word, Ordering::Relaxed) }
}

/// loom form of the data area: one tracked cell per byte, so loom sees data races on frames.
#[cfg(loom)]
pub(crate) struct DataArea {
    cells: Arc<[loom::cell::UnsafeCell<u8>]>,
    len: usize,
}

#[cfg(loom)]
impl DataArea {
    pub(crate) fn write(&self, off: usize, src: &[u8]) {
        for (i, b) in src.iter().enumerate() {
            // SAFETY: loom checks that no other thread accesses this cell concurrently.
            self.cells[off + i].with_mut(|p| unsafe { *p = *b });
        }
    }

    pub(crate) fn write_header(&self, off: usize, len: u32, kind: u32) {
        self.write(off, &header_bytes(len, kind));
    }

    pub(crate) fn write_frame(&self, off: usize, payload: &[u8], kind: u32) {
        self.write_header(off, payload.len() as u32, kind);
        self.write(off + FRAME_HEADER, payload);
    }

    pub(crate) fn prefetch_for_write(&self, _off: usize) {}

    pub(crate) fn read_header(&self, off: usize) -> Option<(u32, u32)> {
        let mut h = Vec::with_capacity(FRAME_HEADER);
        if !self.read_into(off, FRAME_HEADER, &mut h) {
            return None;
        }
        let mut bytes = [0u8; FRAME_HEADER];
        bytes.copy_from_slice(&h);
        Some(parse_header(bytes))
    }

    pub(crate) fn read_into(&self, off: usize, n: usize, out: &mut Vec<u8>) -> bool {
        if off + n > self.len {
            return false;
        }
        for i in 0..n {
            // SAFETY: loom checks that no other thread writes this cell concurrently.
            out.push(self.cells[off + i].with(|p| unsafe { *p }));
        }
        true
    }
}

/// A ring's control block and data area, kept alive by `owner`.
pub(crate) struct RawRing {
    #[cfg(not(loom))]
    ctrl: *const RingControl,
    #[cfg(loom)]
    ctrl: Arc<RingControl>,
    pub(crate) data: DataArea,
    pub(crate) capacity: usize,
    pub(crate) max_frame: usize,
    _owner: Arc<dyn Send + Sync>,
}

// SAFETY: the control block holds only atomics, the data area is accessed only by the one
// producer or one consumer that owns this RawRing under the ring protocol, and `owner` keeps
// the memory alive wherever the value moves.
unsafe impl Send for RawRing {}

impl RawRing {
    /// # Safety
    ///
    /// `ctrl` must point to a `RingControl` (all-zero or previously used as one) and `data` to
    /// `capacity` bytes aligned to 8, both mapped and writable for as long as `owner` lives.
    /// At most one producer and one consumer may be made over the same ring at a time.
    #[cfg(not(loom))]
    pub(crate) unsafe fn new(
        ctrl: *const RingControl,
        data: *mut u8,
        capacity: usize,
        max_frame: usize,
        owner: Arc<dyn Send + Sync>,
    ) -> Self {
        debug_assert!(check_geometry(capacity, max_frame).is_ok());
        debug_assert!((ctrl as usize).is_multiple_of(std::mem::align_of::<RingControl>()));
        debug_assert!((data as usize).is_multiple_of(8));
        RawRing {
            ctrl,
            data: DataArea {
                ptr: data,
                len: capacity,
            },
            capacity,
            max_frame,
            _owner: owner,
        }
    }

    #[inline]
    pub(crate) fn ctrl(&self) -> &RingControl {
        #[cfg(not(loom))]
        // SAFETY: valid for as long as `_owner` lives (constructor contract), which is as long
        // as `self`.
        unsafe {
            &*self.ctrl
        }
        #[cfg(loom)]
        &self.ctrl
    }

    /// `capacity - 1`: a position masked with it is an offset in the data area.
    #[inline]
    pub(crate) fn mask(&self) -> u64 {
        self.capacity as u64 - 1
    }
}

/// Two views (producer's and consumer's) of one ring over private heap memory.
#[cfg(not(loom))]
pub(crate) fn heap_pair(capacity: usize, max_frame: usize) -> (RawRing, RawRing) {
    let region = Arc::new(HeapRegion::new(capacity));
    let owner: Arc<dyn Send + Sync> = region.clone();
    // SAFETY: HeapRegion allocated a zeroed, aligned control block and `capacity` data bytes
    // aligned to 128 that live as long as `owner`; the caller makes exactly one producer and
    // one consumer of the pair.
    unsafe {
        (
            RawRing::new(region.ctrl, region.data, capacity, max_frame, owner.clone()),
            RawRing::new(region.ctrl, region.data, capacity, max_frame, owner),
        )
    }
}

#[cfg(loom)]
pub(crate) fn heap_pair(capacity: usize, max_frame: usize) -> (RawRing, RawRing) {
    let ctrl = Arc::new(RingControl::new());
    let cells: Arc<[loom::cell::UnsafeCell<u8>]> = (0..capacity)
        .map(|_| loom::cell::UnsafeCell::new(0))
        .collect();
    let owner: Arc<dyn Send + Sync> = Arc::new(());
    let make = || RawRing {
        ctrl: ctrl.clone(),
        data: DataArea {
            cells: cells.clone(),
            len: capacity,
        },
        capacity,
        max_frame,
        _owner: owner.clone(),
    };
    (make(), make())
}

#[cfg(not(loom))]
struct HeapRegion {
    ctrl: *const RingControl,
    data: *mut u8,
    ctrl_layout: std::alloc::Layout,
    data_layout: std::alloc::Layout,
}

// SAFETY: the region is plain memory; all shared access goes through the ring protocol.
#[cfg(not(loom))]
unsafe impl Send for HeapRegion {}
// SAFETY: as above.
#[cfg(not(loom))]
unsafe impl Sync for HeapRegion {}

#[cfg(not(loom))]
impl HeapRegion {
    fn new(capacity: usize) -> Self {
        use std::alloc::{alloc_zeroed, handle_alloc_error, Layout};
        let ctrl_layout = Layout::new::<RingControl>();
        let data_layout = match Layout::from_size_align(capacity, 128) {
            Ok(l) => l,
            Err(_) => handle_alloc_error(ctrl_layout),
        };
        // SAFETY: both layouts have non-zero size.
        let (ctrl, data) = unsafe { (alloc_zeroed(ctrl_layout), alloc_zeroed(data_layout)) };
        if ctrl.is_null() {
            handle_alloc_error(ctrl_layout);
        }
        if data.is_null() {
            handle_alloc_error(data_layout);
        }
        HeapRegion {
            ctrl: ctrl.cast::<RingControl>(),
            data,
            ctrl_layout,
            data_layout,
        }
    }
}

#[cfg(not(loom))]
impl Drop for HeapRegion {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly these layouts, freed once.
        unsafe {
            std::alloc::dealloc(self.ctrl as *mut u8, self.ctrl_layout);
            std::alloc::dealloc(self.data, self.data_layout);
        }
    }
}
