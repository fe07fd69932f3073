//! A single-producer single-consumer ring of variable-length byte frames over a memory region
//! that may be shared with another, untrusted process.
//!
//! Layout: a [`RingControl`] block (producer line, consumer line, two doorbells, each on its own
//! 128-byte line) and a data area of `capacity` bytes, a power of two. Positions are monotonic
//! `u64` byte counts; `position & (capacity - 1)` is the offset in the data area. Each frame is
//! an 8-byte header (`len: u32`, `kind: u32`) followed by `len` payload bytes, padded to a
//! multiple of 8. A frame never wraps: when it does not fit before the end of the data area the
//! producer writes a padding frame to the end and the real frame at offset 0, and publishes both
//! at once.
//!
//! Hostile memory: every index and header read from the region is validated before use, the
//! payload is copied into private memory exactly once, and any inconsistency returns a
//! [`Corruption`] and marks the endpoint broken for good. Nothing read from the region is ever
//! used to address memory outside it.

#[cfg(not(loom))]
use std::time::Instant;
use std::{fmt, sync::Arc};

use crate::doorbell::{Bell, Wait};
use crate::sync::{AtomicU64, Ordering};

/// Bytes of the header in front of every frame.
pub const FRAME_HEADER: usize = 8;
/// Smallest data area accepted.
pub const MIN_CAPACITY: usize = 64;

const KIND_DATA: u32 = 0xDA7A_F4A3;
const KIND_PAD: u32 = 0x9ADD_1465;

/// Bytes a frame with `len` payload bytes occupies in the ring.
#[inline]
pub const fn frame_size(len: usize) -> usize {
    (FRAME_HEADER + len + 7) & !7
}

/// The largest payload a ring of `capacity` bytes accepts: a frame must fit twice, so that the
/// padding at the wrap can never make a lone frame unplaceable.
pub const fn max_frame_for(capacity: usize) -> usize {
    capacity / 2 - FRAME_HEADER
}

/// A value on its own pair of cache lines (adjacent-line prefetchers pull 64-byte lines in
/// pairs, so 128 bytes keeps producer and consumer from sharing one).
#[repr(C, align(128))]
pub(crate) struct Line<T>(pub(crate) T);

/// Written only by the producer.
#[repr(C)]
pub(crate) struct ProducerLine {
    /// Position one past the last published frame. In `head ..= head + capacity`.
    tail: AtomicU64,
    frames: AtomicU64,
    bytes: AtomicU64,
    full_events: AtomicU64,
    wakes: AtomicU64,
}

/// Written only by the consumer.
#[repr(C)]
pub(crate) struct ConsumerLine {
    /// Position of the first frame not yet consumed. In `tail - capacity ..= tail`.
    head: AtomicU64,
    wakes: AtomicU64,
}

/// The control block of one ring. All-zero bytes are a valid empty ring.
#[repr(C)]
pub(crate) struct RingControl {
    producer: Line<ProducerLine>,
    consumer: Line<ConsumerLine>,
    /// The consumer sleeps here when the ring is empty.
    data_bell: Line<Bell>,
    /// The producer sleeps here when the ring is full.
    space_bell: Line<Bell>,
}

impl RingControl {
    #[cfg(loom)]
    fn new() -> Self {
        let zero = || AtomicU64::new(0);
        RingControl {
            producer: Line(ProducerLine {
                tail: zero(),
                frames: zero(),
                bytes: zero(),
                full_events: zero(),
                wakes: zero(),
            }),
            consumer: Line(ConsumerLine {
                head: zero(),
                wakes: zero(),
            }),
            data_bell: Line(Bell::new()),
            space_bell: Line(Bell::new()),
        }
    }

    /// Wakes every sleeper of this ring, on either side (used when a peer is declared gone).
    #[cfg(not(loom))]
    pub(crate) fn wake_all(&self) {
        self.data_bell.0.wake_all();
        self.space_bell.0.wake_all();
    }

    pub(crate) fn stats(&self) -> RingStats {
        let p = &self.producer.0;
        RingStats {
            frames: p.frames.load(Ordering::Relaxed),
            bytes: p.bytes.load(Ordering::Relaxed),
            full_events: p.full_events.load(Ordering::Relaxed),
            wakes: p.wakes.load(Ordering::Relaxed) + self.consumer.0.wakes.load(Ordering::Relaxed),
        }
    }
}

/// Counters of one ring, kept in its control block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Frames published.
    pub frames: u64,
    /// Payload bytes published.
    pub bytes: u64,
    /// Pushes refused because the ring was full.
    pub full_events: u64,
    /// Futex wakes issued by either side.
    pub wakes: u64,
}

/// What was found wrong in the ring's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// The consumer's position is not within one capacity behind the producer's.
    Head { head: u64, tail: u64 },
    /// The producer's position is not within one capacity ahead of the consumer's.
    Tail { head: u64, tail: u64 },
    /// A frame header carries an unknown kind.
    FrameKind { at: u64, kind: u32 },
    /// A frame's length is larger than allowed or runs past what was published.
    FrameLength { at: u64, len: u32 },
    /// A padding frame does not end exactly at the end of the data area.
    Padding { at: u64, len: u32 },
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
    TooLarge { len: usize, max: usize },
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
    /// Capacity must be a power of two of at least [`MIN_CAPACITY`] bytes.
    Capacity(usize),
    /// The maximum frame must be at least 1 and at most [`max_frame_for`] the capacity.
    MaxFrame { max_frame: usize, capacity: usize },
}

impl fmt::Display for GeometryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GeometryError::Capacity(c) => write!(
                f,
                "ring capacity {c} is not a power of two of at least {MIN_CAPACITY} bytes"
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

/// Checks a capacity and maximum frame pair.
pub fn check_geometry(capacity: usize, max_frame: usize) -> Result<(), GeometryError> {
    if capacity < MIN_CAPACITY || !capacity.is_power_of_two() || capacity > (1 << 40) {
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

// ---------------------------------------------------------------------------------------------
// The data area.

/// The data area of a ring: raw bytes, bounds-checked on every access.
#[cfg(not(loom))]
struct Buffer {
    ptr: *mut u8,
    len: usize,
}

#[cfg(not(loom))]
impl Buffer {
    #[inline]
    fn in_bounds(&self, off: usize, n: usize) -> bool {
        off.checked_add(n).is_some_and(|end| end <= self.len)
    }

    #[inline]
    fn write(&self, off: usize, src: &[u8]) {
        assert!(self.in_bounds(off, src.len()), "ring write out of bounds");
        // SAFETY: `ptr..ptr+len` is mapped and writable for the Buffer's life (RawRing
        // contract) and the range was bounds-checked; the producer owns this free space, and
        // `src` is private memory, so the ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(off), src.len()) }
    }

    #[inline]
    fn write_header(&self, off: usize, len: u32, kind: u32) {
        let mut h = [0u8; FRAME_HEADER];
        h[..4].copy_from_slice(&len.to_le_bytes());
        h[4..].copy_from_slice(&kind.to_le_bytes());
        self.write(off, &h);
    }

    /// Reads a frame header once. `None` if out of bounds (cannot happen for validated offsets).
    #[inline]
    fn read_header(&self, off: usize) -> Option<(u32, u32)> {
        if !self.in_bounds(off, FRAME_HEADER) {
            return None;
        }
        // SAFETY: in bounds of the mapped area; a volatile read of plain bytes, copied into a
        // local once, so a concurrent (hostile) writer can only make us read garbage, which the
        // caller validates.
        let h: [u8; FRAME_HEADER] =
            unsafe { std::ptr::read_volatile(self.ptr.add(off).cast::<[u8; FRAME_HEADER]>()) };
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let kind = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        Some((len, kind))
    }

    /// Appends `n` bytes at `off` to `out`. `false` if out of bounds.
    #[inline]
    fn read_into(&self, off: usize, n: usize, out: &mut Vec<u8>) -> bool {
        if !self.in_bounds(off, n) {
            return false;
        }
        out.reserve(n);
        let start = out.len();
        // SAFETY: the source range is in bounds of the mapped area; the destination has room
        // for `n` more bytes after `reserve`; they cannot overlap (private vs shared memory).
        // After the copy those bytes are initialised, so `set_len` is sound.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.add(off), out.as_mut_ptr().add(start), n);
            out.set_len(start + n);
        }
        true
    }
}

/// loom form of the data area: one tracked cell per byte, so loom sees data races on frames.
#[cfg(loom)]
struct Buffer {
    cells: Arc<[loom::cell::UnsafeCell<u8>]>,
    len: usize,
}

#[cfg(loom)]
impl Buffer {
    fn write(&self, off: usize, src: &[u8]) {
        for (i, b) in src.iter().enumerate() {
            // SAFETY: loom checks that no other thread accesses this cell concurrently.
            self.cells[off + i].with_mut(|p| unsafe { *p = *b });
        }
    }

    fn write_header(&self, off: usize, len: u32, kind: u32) {
        let mut h = [0u8; FRAME_HEADER];
        h[..4].copy_from_slice(&len.to_le_bytes());
        h[4..].copy_from_slice(&kind.to_le_bytes());
        self.write(off, &h);
    }

    fn read_header(&self, off: usize) -> Option<(u32, u32)> {
        let mut h = Vec::with_capacity(FRAME_HEADER);
        if !self.read_into(off, FRAME_HEADER, &mut h) {
            return None;
        }
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let kind = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        Some((len, kind))
    }

    fn read_into(&self, off: usize, n: usize, out: &mut Vec<u8>) -> bool {
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

// ---------------------------------------------------------------------------------------------
// The region a ring lives in.

/// A ring's control block and data area, kept alive by `owner`.
pub(crate) struct RawRing {
    #[cfg(not(loom))]
    ctrl: *const RingControl,
    #[cfg(loom)]
    ctrl: Arc<RingControl>,
    buf: Buffer,
    capacity: usize,
    max_frame: usize,
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
    /// `capacity` bytes, both mapped, aligned and writable for as long as `owner` lives. At most
    /// one producer and one consumer may be made over the same ring at a time.
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
        RawRing {
            ctrl,
            buf: Buffer {
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

    #[inline]
    fn mask(&self) -> u64 {
        self.capacity as u64 - 1
    }
}

/// Makes a ring over private heap memory: for tests, Miri, in-process use and benchmarks.
///
/// ```
/// let (mut tx, mut rx) = bridge::ring::heap(1024, 256).unwrap();
/// tx.try_push(b"first").unwrap();
/// tx.try_push(b"second").unwrap();
/// let mut frame = Vec::new();
/// assert!(rx.pop_into(&mut frame).unwrap());
/// assert_eq!(frame, b"first");
/// assert!(rx.pop_into(&mut frame).unwrap());
/// assert_eq!(frame, b"second");
/// assert!(!rx.pop_into(&mut frame).unwrap());
/// ```
pub fn heap(capacity: usize, max_frame: usize) -> Result<(Producer, Consumer), GeometryError> {
    check_geometry(capacity, max_frame)?;
    let (a, b) = heap_raw(capacity, max_frame);
    Ok((Producer::new(a), Consumer::new(b)))
}

#[cfg(not(loom))]
fn heap_raw(capacity: usize, max_frame: usize) -> (RawRing, RawRing) {
    let region = Arc::new(HeapRegion::new(capacity));
    let owner: Arc<dyn Send + Sync> = region.clone();
    // SAFETY: HeapRegion allocated a zeroed, aligned control block and `capacity` data bytes
    // that live as long as `owner`; exactly one producer and one consumer are made.
    unsafe {
        (
            RawRing::new(region.ctrl, region.data, capacity, max_frame, owner.clone()),
            RawRing::new(region.ctrl, region.data, capacity, max_frame, owner),
        )
    }
}

#[cfg(loom)]
fn heap_raw(capacity: usize, max_frame: usize) -> (RawRing, RawRing) {
    let ctrl = Arc::new(RingControl::new());
    let cells: Arc<[loom::cell::UnsafeCell<u8>]> = (0..capacity)
        .map(|_| loom::cell::UnsafeCell::new(0))
        .collect();
    let owner: Arc<dyn Send + Sync> = Arc::new(());
    let make = || RawRing {
        ctrl: ctrl.clone(),
        buf: Buffer {
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

// ---------------------------------------------------------------------------------------------
// Producer

/// The writing end of a ring.
pub struct Producer {
    ring: RawRing,
    /// Our position; the shared `tail` is only ever written from this.
    tail: u64,
    /// Position last published (`tail` may be ahead: written, not published).
    published: u64,
    /// Last validated consumer position.
    cached_head: u64,
    broken: Option<Corruption>,
    frames: u64,
    bytes: u64,
    full_events: u64,
    wakes: u64,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.ring.capacity)
            .field("tail", &self.tail)
            .field("broken", &self.broken)
            .finish()
    }
}

impl Producer {
    pub(crate) fn new(ring: RawRing) -> Self {
        let p = &ring.ctrl().producer.0;
        let tail = p.tail.load(Ordering::Relaxed);
        let head = ring.ctrl().consumer.0.head.load(Ordering::Acquire);
        let mut me = Producer {
            frames: p.frames.load(Ordering::Relaxed),
            bytes: p.bytes.load(Ordering::Relaxed),
            full_events: p.full_events.load(Ordering::Relaxed),
            wakes: p.wakes.load(Ordering::Relaxed),
            tail,
            published: tail,
            cached_head: head,
            broken: None,
            ring,
        };
        if !positions_valid(head, tail, me.ring.capacity) {
            me.broken = Some(Corruption::Tail { head, tail });
        }
        me
    }

    /// Bytes of the data area.
    pub fn capacity(&self) -> usize {
        self.ring.capacity
    }

    /// Largest payload accepted.
    pub fn max_frame(&self) -> usize {
        self.ring.max_frame
    }

    /// The corruption that broke this producer, if any.
    pub fn broken(&self) -> Option<Corruption> {
        self.broken
    }

    /// Writes one frame and publishes it, or refuses without writing anything.
    pub fn try_push(&mut self, payload: &[u8]) -> Result<(), PushError> {
        self.write(payload)?;
        self.publish();
        Ok(())
    }

    /// Writes one frame without publishing it: the consumer sees it after [`publish`]. Lets a
    /// producer batch several frames behind one release store and one doorbell check.
    ///
    /// [`publish`]: Self::publish
    pub fn write(&mut self, payload: &[u8]) -> Result<(), PushError> {
        if let Some(c) = self.broken {
            return Err(PushError::Corrupt(c));
        }
        let len = payload.len();
        if len > self.ring.max_frame {
            return Err(PushError::TooLarge {
                len,
                max: self.ring.max_frame,
            });
        }
        let cap = self.ring.capacity as u64;
        let need = frame_size(len) as u64;
        let off = self.tail & self.ring.mask();
        let to_end = cap - off;
        let total = if need <= to_end { need } else { to_end + need };
        if cap - (self.tail - self.cached_head) < total {
            self.refresh_head().map_err(PushError::Corrupt)?;
            if cap - (self.tail - self.cached_head) < total {
                self.full_events += 1;
                self.ring
                    .ctrl()
                    .producer
                    .0
                    .full_events
                    .store(self.full_events, Ordering::Relaxed);
                return Err(PushError::Full);
            }
        }
        if need > to_end {
            // `to_end` is a multiple of 8 and at least 8, so a header always fits.
            self.ring.buf.write_header(
                off as usize,
                (to_end as usize - FRAME_HEADER) as u32,
                KIND_PAD,
            );
            self.tail += to_end;
        }
        let off = (self.tail & self.ring.mask()) as usize;
        self.ring.buf.write_header(off, len as u32, KIND_DATA);
        self.ring.buf.write(off + FRAME_HEADER, payload);
        self.tail += need;
        self.frames += 1;
        self.bytes += len as u64;
        Ok(())
    }

    /// Makes every written frame visible to the consumer and wakes it if it sleeps.
    #[inline]
    pub fn publish(&mut self) {
        if self.published == self.tail {
            return;
        }
        self.published = self.tail;
        let p = &self.ring.ctrl().producer.0;
        // SYNC POINT: frame bytes written before this Release store are visible to the
        // consumer after its Acquire load of `tail` (in `refresh_tail` / `wait_for_data`).
        p.tail.store(self.tail, Ordering::Release);
        p.frames.store(self.frames, Ordering::Relaxed);
        p.bytes.store(self.bytes, Ordering::Relaxed);
        if self.ring.ctrl().data_bell.0.ring() {
            self.wakes += 1;
            p.wakes.store(self.wakes, Ordering::Relaxed);
        }
    }

    /// Bytes written but not yet published.
    pub fn unpublished(&self) -> usize {
        (self.tail - self.published) as usize
    }

    /// Bytes free for frames right now (from the last validated consumer position).
    pub fn free_bytes(&mut self) -> usize {
        let _ = self.refresh_head();
        (self.ring.capacity as u64 - (self.tail - self.cached_head)) as usize
    }

    fn refresh_head(&mut self) -> Result<(), Corruption> {
        // SYNC POINT: pairs with the consumer's Release store of `head` after it copied frames
        // out; the space before `head` may now be overwritten.
        let head = self.ring.ctrl().consumer.0.head.load(Ordering::Acquire);
        if head < self.cached_head || !positions_valid(head, self.tail, self.ring.capacity) {
            let c = Corruption::Head {
                head,
                tail: self.tail,
            };
            self.broken = Some(c);
            return Err(c);
        }
        self.cached_head = head;
        Ok(())
    }

    /// Waits until a frame of `len` payload bytes would fit, `abort()` is true, or the deadline
    /// passes. Returns whether the wait ended for space (or corruption, which the next push
    /// reports) rather than by timeout or abort.
    #[cfg(not(loom))]
    pub fn wait_for_space(&self, len: usize, deadline: Instant, abort: impl Fn() -> bool) -> bool {
        let ready = self.space_ready(len);
        let bell = &self.ring.ctrl().space_bell.0;
        bell.wait(|| ready() || abort(), deadline) == Wait::Ready && ready()
    }

    /// loom form of [`wait_for_space`](Self::wait_for_space): no deadline.
    #[cfg(loom)]
    pub fn wait_for_space(&self, len: usize, abort: impl Fn() -> bool) -> bool {
        let ready = self.space_ready(len);
        let bell = &self.ring.ctrl().space_bell.0;
        bell.wait(|| ready() || abort()) == Wait::Ready && ready()
    }

    fn space_ready(&self, len: usize) -> impl Fn() -> bool + '_ {
        let cap = self.ring.capacity as u64;
        let need = frame_size(len.min(self.ring.max_frame)) as u64;
        let to_end = cap - (self.tail & self.ring.mask());
        let total = if need <= to_end { need } else { to_end + need };
        let tail = self.tail;
        move || {
            let head = self.ring.ctrl().consumer.0.head.load(Ordering::Acquire);
            let used = tail.wrapping_sub(head);
            // An invalid position counts as ready: the next push validates and reports it.
            used > cap || cap - used >= total || self.broken.is_some()
        }
    }

    /// This ring's counters.
    pub fn stats(&self) -> RingStats {
        self.ring.ctrl().stats()
    }

    #[cfg(all(test, not(loom)))]
    pub(crate) fn raw(&self) -> &RawRing {
        &self.ring
    }
}

// ---------------------------------------------------------------------------------------------
// Consumer

/// The reading end of a ring.
pub struct Consumer {
    ring: RawRing,
    /// Our position; the shared `head` is only ever written from this.
    head: u64,
    /// Last validated producer position.
    cached_tail: u64,
    /// Position last published to the producer (`head` may be ahead: taken, not released).
    released: u64,
    broken: Option<Corruption>,
    wakes: u64,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.ring.capacity)
            .field("head", &self.head)
            .field("broken", &self.broken)
            .finish()
    }
}

impl Consumer {
    pub(crate) fn new(ring: RawRing) -> Self {
        let c = &ring.ctrl().consumer.0;
        let head = c.head.load(Ordering::Relaxed);
        Consumer {
            wakes: c.wakes.load(Ordering::Relaxed),
            head,
            cached_tail: head,
            released: head,
            broken: None,
            ring,
        }
    }

    /// Bytes of the data area.
    pub fn capacity(&self) -> usize {
        self.ring.capacity
    }

    /// The corruption that broke this consumer, if any.
    pub fn broken(&self) -> Option<Corruption> {
        self.broken
    }

    /// Copies the next frame's payload into `out` (cleared first) and frees its space.
    /// `Ok(false)` when the ring is empty.
    pub fn pop_into(&mut self, out: &mut Vec<u8>) -> Result<bool, Corruption> {
        out.clear();
        if !self.take(out)? {
            return Ok(false);
        }
        self.release();
        Ok(true)
    }

    /// Like [`pop_into`](Self::pop_into), but appends to `out` and does not free the space
    /// until [`release`](Self::release): lets a consumer drain a batch with one release store.
    /// Returns the payload length.
    pub fn take(&mut self, out: &mut Vec<u8>) -> Result<bool, Corruption> {
        if let Some(c) = self.broken {
            return Err(c);
        }
        let cap = self.ring.capacity as u64;
        loop {
            if self.head == self.cached_tail {
                self.refresh_tail()?;
                if self.head == self.cached_tail {
                    return Ok(false);
                }
            }
            let at = self.head;
            let off = at & self.ring.mask();
            let to_end = cap - off;
            let avail = self.cached_tail - at;
            let Some((len, kind)) = self.ring.buf.read_header(off as usize) else {
                return self.fail(Corruption::FrameLength { at, len: 0 });
            };
            match check_frame(at, to_end, avail, len, kind, self.ring.max_frame) {
                Err(c) => return self.fail(c),
                Ok(Step::Pad) => self.head += to_end,
                Ok(Step::Data { need }) => {
                    if !self
                        .ring
                        .buf
                        .read_into(off as usize + FRAME_HEADER, len as usize, out)
                    {
                        return self.fail(Corruption::FrameLength { at, len });
                    }
                    self.head += need;
                    return Ok(true);
                }
            }
        }
    }

    /// Takes every published frame (up to the end of the data area, and past the wrap) with
    /// one bulk copy per contiguous span into `out` (cleared first), then parses and validates
    /// the frames in that private copy; `frames` receives each payload's `(start, len)` in
    /// `out`. Like [`take`](Self::take), the space is freed by [`release`](Self::release).
    /// Returns the number of frames.
    pub fn take_batch(
        &mut self,
        out: &mut Vec<u8>,
        frames: &mut Vec<(usize, usize)>,
    ) -> Result<usize, Corruption> {
        out.clear();
        frames.clear();
        if let Some(c) = self.broken {
            return Err(c);
        }
        if self.head == self.cached_tail {
            self.refresh_tail()?;
        }
        let cap = self.ring.capacity as u64;
        while self.head < self.cached_tail {
            let at = self.head;
            let off = at & self.ring.mask();
            let to_end = cap - off;
            let avail = self.cached_tail - at;
            let span = avail.min(to_end);
            let base = out.len();
            if !self.ring.buf.read_into(off as usize, span as usize, out) {
                return self.fail(Corruption::FrameLength { at, len: 0 });
            }
            let mut pos = 0u64;
            while pos < span {
                let i = base + pos as usize;
                let (len, kind) = match out.get(i..i + FRAME_HEADER) {
                    Some(h) => (
                        u32::from_le_bytes([h[0], h[1], h[2], h[3]]),
                        u32::from_le_bytes([h[4], h[5], h[6], h[7]]),
                    ),
                    None => {
                        return self.fail(Corruption::FrameLength {
                            at: at + pos,
                            len: 0,
                        })
                    }
                };
                match check_frame(
                    at + pos,
                    to_end - pos,
                    avail - pos,
                    len,
                    kind,
                    self.ring.max_frame,
                ) {
                    Err(c) => return self.fail(c),
                    Ok(Step::Pad) => pos = span,
                    Ok(Step::Data { need }) => {
                        frames.push((i + FRAME_HEADER, len as usize));
                        pos += need;
                    }
                }
            }
            self.head += span;
        }
        Ok(frames.len())
    }

    /// Frees the space of every frame taken so far and wakes the producer if it waits for it.
    #[inline]
    pub fn release(&mut self) {
        if self.released == self.head {
            return;
        }
        self.released = self.head;
        let c = &self.ring.ctrl().consumer.0;
        // SYNC POINT: the frames before `head` were copied out; pairs with the producer's
        // Acquire load of `head` in `refresh_head`, after which it may overwrite them.
        c.head.store(self.head, Ordering::Release);
        if self.ring.ctrl().space_bell.0.ring() {
            self.wakes += 1;
            c.wakes.store(self.wakes, Ordering::Relaxed);
        }
    }

    /// Whether a frame (or corruption) is waiting, without consuming it.
    pub fn has_data(&self) -> bool {
        self.broken.is_some()
            || self.head != self.cached_tail
            || self.ring.ctrl().producer.0.tail.load(Ordering::Acquire) != self.head
    }

    fn refresh_tail(&mut self) -> Result<(), Corruption> {
        // SYNC POINT: pairs with the producer's Release store in `publish`: the frames before
        // `tail` are fully written.
        let tail = self.ring.ctrl().producer.0.tail.load(Ordering::Acquire);
        if tail < self.cached_tail
            || !positions_valid(self.head, tail, self.ring.capacity)
            || !tail.is_multiple_of(8)
        {
            return self.fail(Corruption::Tail {
                head: self.head,
                tail,
            });
        }
        self.cached_tail = tail;
        Ok(())
    }

    fn fail<T>(&mut self, c: Corruption) -> Result<T, Corruption> {
        self.broken = Some(c);
        Err(c)
    }

    /// Waits until a frame is available, `abort()` is true, or the deadline passes. Returns
    /// whether data (or corruption) is waiting.
    #[cfg(not(loom))]
    pub fn wait_for_data(&self, deadline: Instant, abort: impl Fn() -> bool) -> bool {
        let bell = &self.ring.ctrl().data_bell.0;
        bell.wait(|| self.has_data() || abort(), deadline) == Wait::Ready && self.has_data()
    }

    /// loom form of [`wait_for_data`](Self::wait_for_data): no deadline.
    #[cfg(loom)]
    pub fn wait_for_data(&self, abort: impl Fn() -> bool) -> bool {
        let bell = &self.ring.ctrl().data_bell.0;
        bell.wait(|| self.has_data() || abort()) == Wait::Ready && self.has_data()
    }

    /// This ring's counters.
    pub fn stats(&self) -> RingStats {
        self.ring.ctrl().stats()
    }
}

enum Step {
    /// A padding frame: the rest of the data area is skipped.
    Pad,
    /// A data frame occupying `need` bytes.
    Data { need: u64 },
}

/// Validates the frame header `(len, kind)` found at position `at`, with `to_end` bytes left
/// before the end of the data area and `avail` bytes published from `at`.
#[inline]
fn check_frame(
    at: u64,
    to_end: u64,
    avail: u64,
    len: u32,
    kind: u32,
    max_frame: usize,
) -> Result<Step, Corruption> {
    match kind {
        // A padding frame reaches exactly to the end and is always followed by a real frame
        // published with it.
        KIND_PAD if len as u64 + FRAME_HEADER as u64 == to_end && avail > to_end => Ok(Step::Pad),
        KIND_PAD => Err(Corruption::Padding { at, len }),
        KIND_DATA => {
            let need = frame_size(len as usize) as u64;
            if len as usize > max_frame || need > to_end || need > avail {
                Err(Corruption::FrameLength { at, len })
            } else {
                Ok(Step::Data { need })
            }
        }
        kind => Err(Corruption::FrameKind { at, kind }),
    }
}

/// `head ≤ tail ≤ head + capacity`, both multiples of 8.
#[inline]
fn positions_valid(head: u64, tail: u64, capacity: usize) -> bool {
    head <= tail
        && tail - head <= capacity as u64
        && head.is_multiple_of(8)
        && tail.is_multiple_of(8)
}

/// Entry points for fuzzing the frame reader with arbitrary ring memory.
#[cfg(not(loom))]
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Lays `input` out as a ring's memory (first 16 bytes: consumer and producer positions;
    /// the rest: the data area of a 4 KiB ring) and reads frames until the ring is empty or
    /// reported corrupt, in both the one-by-one and the batch reader. Must never panic or read
    /// outside the ring.
    pub fn read_frames(input: &[u8]) {
        const CAP: usize = 4096;
        let word = |i: usize| {
            let mut b = [0u8; 8];
            for (j, x) in b.iter_mut().enumerate() {
                *x = input.get(i * 8 + j).copied().unwrap_or(0);
            }
            u64::from_le_bytes(b)
        };
        let data = input.get(16..).unwrap_or(&[]);
        for batch in [false, true] {
            let Ok((p, c)) = heap(CAP, 1024) else {
                return;
            };
            let ctrl = p.ring.ctrl();
            ctrl.consumer
                .0
                .head
                .store(word(0) % (1 << 40), Ordering::Relaxed);
            ctrl.producer.0.tail.store(word(1), Ordering::Relaxed);
            p.ring.buf.write(0, &data[..data.len().min(CAP)]);
            // The consumer starts from the (possibly hostile) head it finds.
            let mut c2 = Consumer::new(RawRing {
                ctrl: c.ring.ctrl,
                buf: Buffer {
                    ptr: c.ring.buf.ptr,
                    len: CAP,
                },
                capacity: CAP,
                max_frame: 1024,
                _owner: c.ring._owner.clone(),
            });
            let (mut out, mut frames) = (Vec::new(), Vec::new());
            for _ in 0..CAP {
                let more = if batch {
                    c2.take_batch(&mut out, &mut frames).map(|n| n > 0)
                } else {
                    c2.pop_into(&mut out)
                };
                match more {
                    Ok(true) => {
                        for &(start, len) in &frames {
                            assert!(start + len <= out.len());
                        }
                        c2.release();
                    }
                    Ok(false) | Err(_) => break,
                }
            }
            drop(c);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
