//! The reading end of a ring.
//!
//! Invariants: the consumer owns its position (`head`) privately and publishes it with a Release store
//! once the frames before it were copied out ([`Consumer::release`]). The producer's `tail` is
//! read (Acquire) only when the cached copy says the ring may be empty, and validated before
//! use. Every frame header is validated ([`check_frame`]) and every payload copied into private
//! memory exactly once, before anything interprets it. A hostile value breaks the consumer for
//! good: every later call returns the same [`Corruption`].

#![forbid(unsafe_code)]

use std::fmt;
#[cfg(not(loom))]
use std::time::Instant;

use super::control::RingStats;
use super::error::Corruption;
use super::frame::{
    check_frame, frame_at, frame_size, header_in, parse_header, positions_valid, FrameCheck, Taken,
    FRAME_HEADER, KIND_DATA, KIND_FIXED, KIND_PAD,
};
use super::region::RawRing;
use crate::doorbell::Wait;
use crate::sync::Ordering;

/// About the most [`Consumer::take_batch`] copies out at once: well inside a core's L2 cache.
pub const BATCH_BYTES: usize = 64 << 10;

/// The reading end of a ring.
pub struct Consumer {
    ring: RawRing,
    /// Our position; the shared `head` is only ever written from this.
    head: u64,
    /// Last validated producer position. `head ≤ cached_tail ≤ head + capacity`.
    cached_tail: u64,
    /// Position last published to the producer (`head` may be ahead: taken, not released).
    released: u64,
    broken: Option<Corruption>,
    stats: RingStats,
    /// About the most one batch copies out: [`BATCH_BYTES`], smaller in tests.
    batch_bytes: usize,
    /// Whether the producer's position was read for the last time ([`freeze`](Self::freeze)).
    frozen: bool,
}

/// How many frames of `stride` bytes from the start of `bytes` begin with `header`, in a row.
/// Each is one comparison whose load does not wait for the last (the next frame's place is
/// known without reading this one's length), where walking frames by their lengths is one
/// dependent load after another: a stream of one message type is checked at the speed of
/// its loads.
#[inline(always)]
fn same_headers(bytes: &[u8], header: [u8; FRAME_HEADER], stride: usize) -> u64 {
    let header = u64::from_le_bytes(header);
    bytes
        .chunks_exact(stride)
        .take_while(|frame| header_in(frame, 0).map(u64::from_le_bytes) == Some(header))
        .count() as u64
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
    /// Takes over the ring from the position found in its control block; a position that is
    /// invalid on its own (unaligned, or too close to overflow) leaves the consumer broken.
    pub(crate) fn new(ring: RawRing) -> Self {
        let head = ring.ctrl().consumer.head.load(Ordering::Relaxed);
        let valid = positions_valid(head, head, ring.capacity);
        Consumer {
            head,
            cached_tail: head,
            released: head,
            broken: (!valid).then_some(Corruption::Head { head, tail: head }),
            stats: RingStats::default(),
            batch_bytes: BATCH_BYTES,
            frozen: false,
            ring,
        }
    }

    /// Reads the producer's position one last time: from then on the consumer takes what was
    /// published up to it, in as many batches as that needs, and nothing published later (a
    /// peer declared gone that goes on is not read any more). Idempotent; a broken consumer
    /// reports its corruption and reads nothing.
    pub fn freeze(&mut self) -> Result<(), Corruption> {
        if let Some(c) = self.broken {
            return Err(c);
        }
        if !self.frozen {
            self.refresh_tail()?;
            self.frozen = true;
        }
        Ok(())
    }

    /// Bounds batches at `bytes` (a multiple of 8, at least one header) instead of
    /// [`BATCH_BYTES`]: lets the tests and the fuzzer cut frames in small rings.
    pub(crate) fn bound_batches(&mut self, bytes: usize) {
        self.batch_bytes = (bytes.max(FRAME_HEADER) + 7) & !7;
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
    /// `Ok(false)` when the ring is empty. The payload is handed over whatever its
    /// [`Layout`](super::Layout); [`take_batch`](Self::take_batch) says which it is.
    pub fn pop_into(&mut self, out: &mut Vec<u8>) -> Result<bool, Corruption> {
        out.clear();
        if !self.take(out)? {
            return Ok(false);
        }
        self.release();
        Ok(true)
    }

    /// Like [`pop_into`](Self::pop_into), but appends the payload to `out` and does not free
    /// its space until [`release`](Self::release): lets a consumer drain several frames with
    /// one release store. `Ok(false)` when the ring is empty.
    pub fn take(&mut self, out: &mut Vec<u8>) -> Result<bool, Corruption> {
        if let Some(c) = self.broken {
            return Err(c);
        }
        let cap = self.ring.capacity as u64;
        loop {
            if self.head == self.cached_tail {
                if self.frozen {
                    return Ok(false);
                }
                self.refresh_tail()?;
                if self.head == self.cached_tail {
                    return Ok(false);
                }
            }
            let at = self.head;
            let off = at & self.ring.mask();
            let to_end = cap - off;
            let avail = self.cached_tail - at;
            let Some((len, kind)) = self.ring.data.read_header(off as usize) else {
                return self.fail(Corruption::FrameLength { at, len: 0 });
            };
            match check_frame(at, to_end, avail, len, kind, self.ring.max_frame) {
                Err(c) => return self.fail(c),
                Ok(FrameCheck::Pad) => self.head += to_end,
                Ok(FrameCheck::Data { need, .. }) => {
                    if !self
                        .ring
                        .data
                        .read_into(off as usize + FRAME_HEADER, len as usize, out)
                    {
                        return self.fail(Corruption::FrameLength { at, len });
                    }
                    self.head += need;
                    self.count(1, len as u64);
                    return Ok(true);
                }
            }
        }
    }

    /// Takes the published frames, [`BATCH_BYTES`] of them and the rest of the frame that
    /// crosses that bound at most, with one bulk copy per contiguous span into `out` (cleared
    /// first), then validates the frames in that private copy. `out` then holds the data
    /// frames back to back, each its header, payload and padding to 8 bytes (no padding
    /// frame): [`frame_at`](super::frame_at) walks them. Like [`take`](Self::take), the space
    /// is freed by [`release`](Self::release). Returns the number of frames; on corruption
    /// nothing of the batch is to be used.
    ///
    /// The bound keeps the private copy in the cache while its frames are decoded: a
    /// consumer behind by a quarter of the ring would otherwise copy that much out first, and
    /// read it back from memory. No list of the frames is made: a reader finds each one as
    /// it comes to it, its header already checked here.
    pub(crate) fn take_frames(&mut self, out: &mut Vec<u8>) -> Result<usize, Corruption> {
        out.clear();
        if let Some(c) = self.broken {
            return Err(c);
        }
        if self.head == self.cached_tail && !self.frozen {
            self.refresh_tail()?;
        }
        let cap = self.ring.capacity as u64;
        let max_frame = self.ring.max_frame as u64;
        // Counted here and stored once: a store per frame into `self` cost as much as the
        // frame's check.
        let (mut frames, mut bytes) = (0u64, 0u64);
        while self.head < self.cached_tail && out.len() < self.batch_bytes {
            let at = self.head;
            let off = at & self.ring.mask();
            let to_end = cap - off;
            let avail = self.cached_tail - at;
            // What is published up to the end of the data area, and the part of it copied now.
            let whole = avail.min(to_end);
            let mut span = whole.min((self.batch_bytes - out.len()) as u64);
            let base = out.len();
            if !self.ring.data.read_into(off as usize, span as usize, out) {
                return self.fail(Corruption::FrameLength { at, len: 0 });
            }
            let mut pos = 0u64;
            while pos < span {
                let i = base + pos as usize;
                let Some(header) = header_in(out, i) else {
                    return self.fail(Corruption::FrameLength {
                        at: at + pos,
                        len: 0,
                    });
                };
                let (len, kind) = parse_header(header);
                let need = frame_size(len as usize) as u64;
                // Nearly every frame: a data frame wholly inside what was copied, which lies
                // before the data area's end and within what was published, so that
                // `check_frame` would pass it; no bound cut it. The frames right behind it
                // with the same header pass for the same reasons.
                if need <= span - pos
                    && u64::from(len) <= max_frame
                    && (kind == KIND_DATA || kind == KIND_FIXED)
                {
                    let rest = out.get(i + need as usize..base + span as usize);
                    let n = 1 + rest.map_or(0, |rest| same_headers(rest, header, need as usize));
                    frames += n;
                    bytes += n * u64::from(len);
                    pos += n * need;
                    continue;
                }
                // Only where the bound cut the span (rare) is a frame looked at before its check.
                if span < whole
                    && (kind == KIND_DATA || kind == KIND_FIXED)
                    && need > span - pos
                    && need <= whole - pos
                    && u64::from(len) <= max_frame
                {
                    // A frame the bound cut: its start is copied already, so the rest of it
                    // is too, and the batch ends with it.
                    let more = need - (span - pos);
                    if !self
                        .ring
                        .data
                        .read_into((off + span) as usize, more as usize, out)
                    {
                        return self.fail(Corruption::FrameLength { at: at + pos, len });
                    }
                    span += more;
                }
                // Past the bound's cut only what was copied counts as published; a padding
                // frame is not copied, so its check is against what was published.
                let published = if span < whole && kind != KIND_PAD {
                    span - pos
                } else {
                    avail - pos
                };
                match check_frame(
                    at + pos,
                    to_end - pos,
                    published,
                    len,
                    kind,
                    self.ring.max_frame,
                ) {
                    Err(c) => return self.fail(c),
                    Ok(FrameCheck::Pad) => {
                        // It reaches to the end of the data area, past the bound's cut
                        // perhaps: none of it is kept.
                        out.truncate(i);
                        span = to_end;
                        pos = span;
                    }
                    Ok(FrameCheck::Data { need, .. }) => {
                        frames += 1;
                        bytes += u64::from(len);
                        pos += need;
                    }
                }
            }
            self.head += span;
        }
        self.count(frames, bytes);
        Ok(frames as usize)
    }

    /// Takes the published frames, [`BATCH_BYTES`] of them and the rest of the frame that
    /// crosses that bound at most, with one bulk copy per contiguous span into `out` (cleared
    /// first), and validates them there; `frames` (cleared first) receives where each payload
    /// lies in `out` and its layout. Like [`take`](Self::take), the space is freed by
    /// [`release`](Self::release). Returns the number of frames. (The channel's receiver
    /// takes the same batches without the list, walking the checked copy instead.)
    pub fn take_batch(
        &mut self,
        out: &mut Vec<u8>,
        frames: &mut Vec<Taken>,
    ) -> Result<usize, Corruption> {
        frames.clear();
        let n = self.take_frames(out)?;
        let mut at = 0;
        while let Some((taken, next)) = frame_at(out, at) {
            frames.push(taken);
            at = next;
        }
        debug_assert_eq!(frames.len(), n);
        Ok(n)
    }

    /// Frees the space of every frame taken so far and wakes the producer if it waits for it.
    #[inline]
    pub fn release(&mut self) {
        if self.released == self.head {
            return;
        }
        self.released = self.head;
        let c = &self.ring.ctrl().consumer;
        // SYNC POINT: the frames before `head` were copied out; pairs with the producer's
        // Acquire load of `head` in `refresh_head`, after which it may overwrite them.
        c.head.store(self.head, Ordering::Release);
        if self.ring.ctrl().space_bell.ring() {
            self.stats.wakes = self.stats.wakes.wrapping_add(1);
        }
    }

    /// Whether a frame (or corruption) is waiting, without consuming it.
    pub fn has_data(&self) -> bool {
        self.broken.is_some()
            || self.head != self.cached_tail
            || self.ring.ctrl().producer.tail.load(Ordering::Acquire) != self.head
    }

    fn refresh_tail(&mut self) -> Result<(), Corruption> {
        // SYNC POINT: pairs with the producer's Release store in `publish`: the frames before
        // `tail` are fully written.
        let tail = self.ring.ctrl().producer.tail.load(Ordering::Acquire);
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
    /// Each sleep on the doorbell is counted ([`RingStats::sleeps`]).
    #[cfg(not(loom))]
    pub fn wait_for_data(&mut self, deadline: Instant, abort: impl Fn() -> bool) -> bool {
        self.wait_for_data_as(deadline, abort, true)
    }

    /// [`wait_for_data`](Self::wait_for_data); with `spin` false it sleeps at once (no spin
    /// or yield phase first).
    #[cfg(not(loom))]
    pub fn wait_for_data_as(
        &mut self,
        deadline: Instant,
        abort: impl Fn() -> bool,
        spin: bool,
    ) -> bool {
        let mut sleeps = 0;
        let bell = &self.ring.ctrl().data_bell;
        let ready =
            bell.wait_counted_as(|| self.has_data() || abort(), deadline, &mut sleeps, spin)
                == Wait::Ready
                && self.has_data();
        self.stats.sleeps = self.stats.sleeps.wrapping_add(sleeps);
        ready
    }

    /// loom form of [`wait_for_data`](Self::wait_for_data): no deadline.
    #[cfg(loom)]
    pub fn wait_for_data(&self, abort: impl Fn() -> bool) -> bool {
        let bell = &self.ring.ctrl().data_bell;
        bell.wait(|| self.has_data() || abort()) == Wait::Ready && self.has_data()
    }

    /// What this consumer did: frames and bytes taken, wakes issued to the producer.
    pub fn stats(&self) -> RingStats {
        self.stats
    }

    #[inline]
    fn count(&mut self, frames: u64, bytes: u64) {
        self.stats.frames = self.stats.frames.wrapping_add(frames);
        self.stats.bytes = self.stats.bytes.wrapping_add(bytes);
    }

    /// This end's private position.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn position(&self) -> u64 {
        self.head
    }
}
