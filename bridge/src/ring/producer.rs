//! The writing end of a ring.
//!
//! Invariants: the producer owns its position (`tail`) privately and publishes it with a Release store;
//! the shared `tail` is only ever written from the private one, never read back. The
//! consumer's `head` is read (Acquire) only when the cached copy says the ring may be full
//! ("possibly full → refresh → really full"), and validated before use. A hostile `head` breaks
//! the producer for good ([`PushError::Corrupt`]); nothing is written past the space the
//! consumer has really freed.

#![forbid(unsafe_code)]

use std::fmt;
#[cfg(not(loom))]
use std::time::Instant;

use super::control::RingStats;
use super::error::{Corruption, PushError};
use super::frame::{frame_size, positions_valid, Layout, FRAME_HEADER, KIND_PAD};
use super::region::RawRing;
use crate::doorbell::Wait;
use crate::sync::Ordering;

/// How far ahead of the frame being written the producer asks for the cache line it will
/// write next ([`DataArea::prefetch_for_write`](super::region::DataArea::prefetch_for_write)).
const PREFETCH_AHEAD: u64 = 512;

/// The writing end of a ring.
pub struct Producer {
    ring: RawRing,
    /// Our position; the shared `tail` is only ever written from this.
    tail: u64,
    /// Position last published (`tail` may be ahead: written, not published).
    published: u64,
    /// Last validated consumer position. `cached_head ≤ tail ≤ cached_head + capacity`.
    cached_head: u64,
    broken: Option<Corruption>,
    stats: RingStats,
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
    /// Takes over the ring from the positions found in its control block; positions that are
    /// invalid (a hostile or corrupt block) leave the producer broken from the start.
    pub(crate) fn new(ring: RawRing) -> Self {
        let tail = ring.ctrl().producer.tail.load(Ordering::Relaxed);
        let head = ring.ctrl().consumer.head.load(Ordering::Acquire);
        let valid = positions_valid(head, tail, ring.capacity);
        Producer {
            tail,
            published: tail,
            cached_head: if valid { head } else { tail },
            broken: (!valid).then_some(Corruption::Tail { head, tail }),
            stats: RingStats::default(),
            ring,
        }
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
        self.write_as(payload, Layout::Codec)
    }

    /// [`write_as`](Self::write_as) of a frame that fits before the data area's end in the
    /// space known to be free (by the cached consumer position), which is nearly every
    /// frame: small enough to inline into a sender's loop. `false`: nothing was written (a
    /// broken producer, a frame too large, one that would wrap, or a ring possibly full), and
    /// `write_as` says why or writes it.
    #[inline(always)]
    pub fn write_fast(&mut self, payload: &[u8], layout: Layout) -> bool {
        let len = payload.len();
        if self.broken.is_some() || len > self.ring.max_frame {
            return false;
        }
        let cap = self.ring.capacity as u64;
        let need = frame_size(len) as u64;
        let off = self.tail & self.ring.mask();
        if need > cap - off || cap - (self.tail - self.cached_head) < need {
            return false;
        }
        self.put_frame(payload, layout, need);
        true
    }

    /// [`write`](Self::write), the frame marked as encoded by `layout`.
    pub fn write_as(&mut self, payload: &[u8], layout: Layout) -> Result<(), PushError> {
        if self.write_fast(payload, layout) {
            return Ok(());
        }
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
        // Possibly full by the cached head: refresh it, and only then is it really full.
        if cap - (self.tail - self.cached_head) < total {
            self.refresh_head().map_err(PushError::Corrupt)?;
            if cap - (self.tail - self.cached_head) < total {
                self.stats.full_events = self.stats.full_events.wrapping_add(1);
                return Err(PushError::Full);
            }
        }
        if need > to_end {
            // `to_end` is a multiple of 8 and at least 8, so a header always fits.
            self.ring.data.write_header(
                off as usize,
                (to_end as usize - FRAME_HEADER) as u32,
                KIND_PAD,
            );
            self.tail += to_end;
        }
        self.put_frame(payload, layout, need);
        Ok(())
    }

    /// Writes a frame of `need` bytes at `tail`, where the caller made sure it fits, and
    /// counts it.
    #[inline(always)]
    fn put_frame(&mut self, payload: &[u8], layout: Layout, need: u64) {
        let off = (self.tail & self.ring.mask()) as usize;
        // The line `PREFETCH_AHEAD` bytes on, if the consumer is done with all of it (by the
        // cached position; the line starts at or after `ahead`'s 64-byte boundary, past
        // `tail`): taken for writing while this frame is written.
        let ahead = self.tail + PREFETCH_AHEAD;
        if ahead + 64 <= self.cached_head + self.ring.capacity as u64 {
            self.ring
                .data
                .prefetch_for_write((ahead & self.ring.mask()) as usize);
        }
        self.ring.data.write_frame(off, payload, layout.kind());
        self.tail += need;
        self.stats.frames = self.stats.frames.wrapping_add(1);
        self.stats.bytes = self.stats.bytes.wrapping_add(payload.len() as u64);
    }

    /// Makes every written frame visible to the consumer and wakes it if it sleeps.
    #[inline]
    pub fn publish(&mut self) {
        if self.published == self.tail {
            return;
        }
        self.published = self.tail;
        // SYNC POINT: frame bytes written before this Release store are visible to the
        // consumer after its Acquire load of `tail` (in `refresh_tail` / `has_data`).
        self.ring
            .ctrl()
            .producer
            .tail
            .store(self.tail, Ordering::Release);
        if self.ring.ctrl().data_bell.ring() {
            self.stats.wakes = self.stats.wakes.wrapping_add(1);
        }
    }

    /// Bytes written but not yet published.
    pub fn unpublished(&self) -> usize {
        (self.tail - self.published) as usize
    }

    /// Bytes free for frames right now (from the last validated consumer position); 0 once
    /// broken.
    pub fn free_bytes(&mut self) -> usize {
        if self.refresh_head().is_err() {
            return 0;
        }
        (self.ring.capacity as u64 - (self.tail - self.cached_head)) as usize
    }

    fn refresh_head(&mut self) -> Result<(), Corruption> {
        if let Some(c) = self.broken {
            return Err(c);
        }
        // SYNC POINT: pairs with the consumer's Release store of `head` after it copied frames
        // out; the space before `head` may now be overwritten.
        let head = self.ring.ctrl().consumer.head.load(Ordering::Acquire);
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
        let bell = &self.ring.ctrl().space_bell;
        bell.wait(|| ready() || abort(), deadline) == Wait::Ready && ready()
    }

    /// loom form of [`wait_for_space`](Self::wait_for_space): no deadline.
    #[cfg(loom)]
    pub fn wait_for_space(&self, len: usize, abort: impl Fn() -> bool) -> bool {
        let ready = self.space_ready(len);
        let bell = &self.ring.ctrl().space_bell;
        bell.wait(|| ready() || abort()) == Wait::Ready && ready()
    }

    fn space_ready(&self, len: usize) -> impl Fn() -> bool + '_ {
        let cap = self.ring.capacity as u64;
        let need = frame_size(len.min(self.ring.max_frame)) as u64;
        let to_end = cap - (self.tail & self.ring.mask());
        let total = if need <= to_end { need } else { to_end + need };
        let tail = self.tail;
        move || {
            let head = self.ring.ctrl().consumer.head.load(Ordering::Acquire);
            let used = tail.wrapping_sub(head);
            // An invalid position counts as ready: the next push validates and reports it.
            used > cap || cap - used >= total || self.broken.is_some()
        }
    }

    /// What this producer did: frames and bytes published, full events, wakes issued.
    pub fn stats(&self) -> RingStats {
        self.stats
    }

    #[cfg(all(test, not(loom)))]
    pub(crate) fn raw(&self) -> &RawRing {
        &self.ring
    }

    /// This end's private position.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn position(&self) -> u64 {
        self.tail
    }
}
