//! The writing end of a side: encodes messages into a reused scratch buffer and writes them
//! into the ring, waiting for room until a deadline.
//!
//! Invariants:
//! - a send succeeds, or fails by its deadline with `Full`/`Timeout`/`TooLarge`/`PeerGone`/
//!   `Encode`, and then nothing of it was written;
//! - encoding never does more than `max_frame + 1` bytes of work: a message that does not fit
//!   is refused as soon as that is known;
//! - frames written without publishing ([`Batch`]) are published when the batch ends, when
//!   the sender is dropped, and whenever a quarter of the ring is pending: never lost.

#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use super::error::{Damage, GoneReason, SendError};
use super::link::{CloseOnDrop, Link};
use crate::codec::{self, CodecError, Wire, FIXED_MAX};
use crate::ring::{Layout, Producer, PushError};

/// Smallest scratch buffer grown for encoding.
const MIN_SCRATCH: usize = 256;

/// The writing end of a side.
pub struct Sender {
    tx: Producer,
    link: Arc<Link>,
    _close: Arc<CloseOnDrop>,
    scratch: Vec<u8>,
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").field("ring", &self.tx).finish()
    }
}

impl Sender {
    pub(crate) fn new(tx: Producer, close: Arc<CloseOnDrop>) -> Self {
        Sender {
            tx,
            link: close.link.clone(),
            _close: close,
            scratch: Vec::new(),
        }
    }

    /// Sends one frame, waiting for room until `deadline` (`None`: not at all, `Full` if
    /// there is no room now).
    pub fn send_bytes(&mut self, bytes: &[u8], deadline: Option<Instant>) -> Result<(), SendError> {
        write_frame(&mut self.tx, &self.link, bytes, Layout::Codec, deadline)?;
        self.publish();
        Ok(())
    }

    /// Encodes and sends one message, waiting for room until `deadline` (`None`: not at all).
    pub fn send<T: Wire + ?Sized>(
        &mut self,
        msg: &T,
        deadline: Option<Instant>,
    ) -> Result<(), SendError> {
        self.put(msg, deadline)?;
        self.publish();
        Ok(())
    }

    /// Starts a batch: messages fed into it are written without publishing, and published
    /// together when the batch is dropped (or [`Batch::publish`]ed, or a quarter of the ring
    /// is pending). For a producer with more to send.
    pub fn batch(&mut self) -> Batch<'_> {
        Batch { sender: self }
    }

    /// Largest frame accepted.
    pub fn max_frame(&self) -> usize {
        self.tx.max_frame()
    }

    fn publish(&mut self) {
        self.tx.publish();
        self.link.sent.store(self.tx.stats());
    }

    /// Encodes `msg` and writes it as one frame (unpublished), waiting for room until
    /// `deadline` (`None`: not at all).
    ///
    /// A message with a fixed layout is written in it; any other (or a layout longer than
    /// the buffer, a `Wire` implementation's mistake, or than a frame) goes through the codec
    /// into the scratch buffer. The frame's bytes go to [`write_frame`] as a plain slice: a
    /// payload description returned through memory stalled the hot path (the caller read in
    /// one wide load what the callee had written in narrow stores).
    #[inline]
    fn put<T: Wire + ?Sized>(
        &mut self,
        msg: &T,
        deadline: Option<Instant>,
    ) -> Result<(), SendError> {
        // A local buffer, not one of `self`'s: once `to_fixed` and the ring's word-by-word
        // write are in line here, the layout's words go from the message to the ring in
        // registers. Through memory, the ring's loads waited on the layout's stores where
        // the compiler had merged two of those into one (most of the producer's time).
        let mut fixed = [0u8; FIXED_MAX];
        if let Some(n) = msg.to_fixed(&mut fixed) {
            if n <= self.tx.max_frame() && n <= FIXED_MAX {
                return write_frame(
                    &mut self.tx,
                    &self.link,
                    &fixed[..n],
                    Layout::Fixed,
                    deadline,
                );
            }
        }
        let n = self.encode(msg)?;
        write_frame(
            &mut self.tx,
            &self.link,
            &self.scratch[..n],
            Layout::Codec,
            deadline,
        )
    }

    /// Encodes `msg` at the start of the scratch buffer, growing it as needed up to one byte
    /// more than the maximum frame; returns the encoding's length. Encoding stops at that
    /// size, so an oversized message costs at most `max_frame + 1` bytes of work.
    fn encode<T: Wire + ?Sized>(&mut self, msg: &T) -> Result<usize, SendError> {
        let max = self.tx.max_frame();
        loop {
            match codec::encode_to_slice(msg, &mut self.scratch) {
                Ok(n) if n > max => return Err(SendError::TooLarge { len: n, max }),
                Ok(n) => return Ok(n),
                Err(CodecError::BufferTooSmall) if self.scratch.len() <= max => {
                    let grown = (self.scratch.len() * 2).max(MIN_SCRATCH).min(max + 1);
                    self.scratch.resize(grown, 0);
                }
                Err(CodecError::BufferTooSmall) => {
                    return Err(SendError::TooLarge { len: max + 1, max })
                }
                Err(e) => return Err(SendError::Encode(e)),
            }
        }
    }
}

/// Writes one frame (unpublished). Waits for room until `deadline` (`None`: not at all).
/// The common case, room at hand, is in line; the rest out of line.
#[inline(always)]
fn write_frame(
    tx: &mut Producer,
    link: &Link,
    frame: &[u8],
    layout: Layout,
    deadline: Option<Instant>,
) -> Result<(), SendError> {
    if !link.is_gone() && tx.write_fast(frame, layout) {
        return Ok(());
    }
    write_frame_waiting(tx, link, frame, layout, deadline)
}

#[inline(never)]
fn write_frame_waiting(
    tx: &mut Producer,
    link: &Link,
    frame: &[u8],
    layout: Layout,
    deadline: Option<Instant>,
) -> Result<(), SendError> {
    loop {
        if link.is_gone() {
            return Err(SendError::PeerGone(link.gone_or_closed()));
        }
        match tx.write_as(frame, layout) {
            Ok(()) => return Ok(()),
            // What is pending must be visible, or the consumer cannot make room.
            Err(PushError::Full) => {
                tx.publish();
                link.sent.store(tx.stats());
            }
            Err(PushError::TooLarge { len, max }) => return Err(SendError::TooLarge { len, max }),
            Err(PushError::Corrupt(c)) => {
                return Err(SendError::PeerGone(
                    link.declare_gone(GoneReason::Corrupt(Damage::Ring(c))),
                ))
            }
        }
        let Some(deadline) = deadline else {
            return Err(SendError::Full);
        };
        if Instant::now() >= deadline {
            return Err(SendError::Timeout);
        }
        tx.wait_for_space(frame.len(), deadline, || link.is_gone());
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        // Anything written is delivered, even if a caller forgot to publish.
        self.tx.publish();
    }
}

/// Messages written without publishing, published together when the batch ends (on drop, or
/// [`publish`](Batch::publish)).
pub struct Batch<'a> {
    sender: &'a mut Sender,
}

impl fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("unpublished", &self.sender.tx.unpublished())
            .finish()
    }
}

impl Batch<'_> {
    /// Encodes and writes one message, waiting for room until `deadline`. The receiver sees
    /// it when the batch ends, or sooner once a quarter of the ring is pending (or the ring
    /// fills).
    pub fn feed<T: Wire + ?Sized>(
        &mut self,
        msg: &T,
        deadline: Option<Instant>,
    ) -> Result<(), SendError> {
        let s = &mut *self.sender;
        s.put(msg, deadline)?;
        if s.tx.unpublished() >= s.tx.capacity() / 4 {
            s.publish();
        }
        Ok(())
    }

    /// Publishes everything fed so far; the batch goes on.
    pub fn publish(&mut self) {
        self.sender.publish();
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.sender.publish();
    }
}
