//! The reading end of a side.
//!
//! Frames are taken from the ring in batches: everything published is copied out with one
//! bulk copy per contiguous span, its space freed at once, and the frames are then handed out
//! one by one from the private copy; they are decoded from there, never from shared memory.
//!
//! Invariants: once the peer is gone, the frames it published before are still delivered, and
//! only then comes `PeerGone` (and nothing it publishes later); a corrupt ring or an undecodable frame tears the connection
//! down (`PeerGone(Corrupt)`).

#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use bincode::Decode;

use super::error::{Damage, GoneReason, RecvError};
use super::link::{CloseOnDrop, Link};
use crate::codec::{self, CodecError, Wire};
use crate::ring::{frame_at, Consumer, Layout, Taken};

/// The reading end of a side.
pub struct Receiver {
    rx: Consumer,
    link: Arc<Link>,
    _close: Arc<CloseOnDrop>,
    /// Private copy of the frames last taken from the ring, checked, back to back
    /// ([`Consumer::take_frames`]).
    batch: Vec<u8>,
    /// Offset in `batch` of the next frame to hand out.
    next: usize,
    /// The frame handed out last.
    current: Taken,
    /// Whether the last batch, taken once the peer was gone, was taken.
    last_taken: bool,
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").field("ring", &self.rx).finish()
    }
}

impl Receiver {
    pub(crate) fn new(rx: Consumer, close: Arc<CloseOnDrop>) -> Self {
        Receiver {
            rx,
            link: close.link.clone(),
            _close: close,
            batch: Vec::new(),
            next: 0,
            current: Taken::default(),
            last_taken: false,
        }
    }

    #[inline]
    fn frame(&self) -> &[u8] {
        let Taken { start, len, .. } = self.current;
        &self.batch[start..start + len]
    }

    /// Takes the next batch from the ring: `Ok(true)` if it holds a frame. A corrupt ring
    /// ends the connection: nothing of the batch is handed out, nor anything after it.
    fn take_batch(&mut self) -> Result<bool, RecvError> {
        match self.rx.take_frames(&mut self.batch) {
            Ok(n) => {
                // Copied out: the producer may reuse the space right away.
                self.rx.release();
                self.link.received.store(self.rx.stats());
                self.next = 0;
                Ok(n > 0)
            }
            Err(c) => Err(self.corrupt(Damage::Ring(c))),
        }
    }

    /// Declares the peer gone for `damage` and hands out nothing more.
    fn corrupt(&mut self, damage: Damage) -> RecvError {
        self.batch.clear();
        self.next = 0;
        self.last_taken = true;
        RecvError::PeerGone(self.link.declare_gone(GoneReason::Corrupt(damage)))
    }

    /// Makes the next frame current: `Ok(true)` if there was one. Once the peer is gone,
    /// frames it published before are still delivered: its position is read one last time
    /// ([`Consumer::freeze`]) and everything up to it taken, in as many batches as that
    /// needs; only then comes `PeerGone`. Nothing published after that last read is taken: a
    /// peer declared gone that goes on (a hub or a client stopped past the hang timeout and
    /// continued) is not read any more.
    fn advance(&mut self) -> Result<bool, RecvError> {
        if self.next >= self.batch.len() {
            if self.last_taken {
                return Err(self.gone());
            }
            let ending = self.ending();
            if ending {
                self.freeze()?;
            }
            if !self.take_batch()? {
                if !ending {
                    if !self.ending() {
                        return Ok(false);
                    }
                    // Frames published just before the close or death are still delivered.
                    self.freeze()?;
                    if self.take_batch()? {
                        return self.hand_out();
                    }
                }
                self.last_taken = true;
                return Err(self.gone());
            }
        }
        self.hand_out()
    }

    /// Whether the peer is gone or closed its end.
    #[inline]
    fn ending(&self) -> bool {
        self.link.is_gone() || self.link.peer_closed()
    }

    /// Makes the next frame of the batch current.
    #[inline]
    fn hand_out(&mut self) -> Result<bool, RecvError> {
        let Some((taken, next)) = frame_at(&self.batch, self.next) else {
            return Ok(false);
        };
        self.current = taken;
        self.next = next;
        Ok(true)
    }

    /// Reads the peer's position for the last time.
    fn freeze(&mut self) -> Result<(), RecvError> {
        self.rx.freeze().map_err(|c| self.corrupt(Damage::Ring(c)))
    }

    /// Why nothing more comes: the peer closed, or the reason it was declared gone for.
    fn gone(&self) -> RecvError {
        RecvError::PeerGone(if self.link.peer_closed() {
            self.link.declare_gone(GoneReason::Closed)
        } else {
            self.link.gone_or_closed()
        })
    }

    /// The next frame's payload if one is waiting: bytes as sent by
    /// [`Sender::send_bytes`](super::Sender::send_bytes) (a message's fixed layout comes as
    /// its bytes too; [`recv`](Self::recv) reads both).
    pub fn try_recv_bytes(&mut self) -> Result<Option<&[u8]>, RecvError> {
        Ok(if self.advance()? {
            Some(self.frame())
        } else {
            None
        })
    }

    /// The next frame's payload, waiting until `deadline` (as
    /// [`try_recv_bytes`](Self::try_recv_bytes)).
    pub fn recv_bytes(&mut self, deadline: Instant) -> Result<&[u8], RecvError> {
        self.recv_bytes_as(deadline, || false, true)
    }

    /// `spin` false: sleeps at once rather than spinning and yielding first.
    fn recv_bytes_as(
        &mut self,
        deadline: Instant,
        stop: impl Fn() -> bool,
        spin: bool,
    ) -> Result<&[u8], RecvError> {
        loop {
            if self.advance()? {
                return Ok(self.frame());
            }
            if Instant::now() >= deadline || stop() {
                return Err(RecvError::Timeout);
            }
            let link = &self.link;
            self.rx.wait_for_data_as(
                deadline,
                || link.is_gone() || link.peer_closed() || stop(),
                spin,
            );
        }
    }

    /// The next message, waiting until `deadline`: decoded by the codec, or read from its
    /// fixed layout ([`Wire`]) when the frame says so. A frame that does not decode is
    /// corruption: the connection is torn down.
    #[inline(always)]
    pub fn recv<T: Wire + Decode<()>>(&mut self, deadline: Instant) -> Result<T, RecvError> {
        // A frame of the batch in hand: nothing to look at but the frame.
        if let Some((taken, next)) = frame_at(&self.batch, self.next) {
            self.current = taken;
            self.next = next;
        } else {
            self.wait_next(deadline)?;
        }
        self.decode()
    }

    /// [`recv`](Self::recv)'s way to the next frame when the batch in hand is spent: kept out
    /// of line, so that `recv` is small enough to inline into its caller (where a message
    /// with a fixed layout is then built in place).
    #[inline(never)]
    fn wait_next(&mut self, deadline: Instant) -> Result<(), RecvError> {
        self.recv_bytes(deadline).map(|_| ())
    }

    /// [`recv`](Self::recv), given up early (`Timeout`) once `stop()` is true (looked at after
    /// every wake; whoever makes it true wakes this side's sleeper with
    /// [`Control::interrupt_reader`](super::Control::interrupt_reader)). `spin` false: sleeps
    /// at once rather than spinning and yielding first (for a wait that expects nothing soon).
    pub(crate) fn recv_as<T: Wire + Decode<()>>(
        &mut self,
        deadline: Instant,
        stop: impl Fn() -> bool,
        spin: bool,
    ) -> Result<T, RecvError> {
        self.recv_bytes_as(deadline, stop, spin)?;
        self.decode()
    }

    /// The next message if one is waiting.
    pub fn try_recv<T: Wire + Decode<()>>(&mut self) -> Result<Option<T>, RecvError> {
        if self.advance()? {
            self.decode().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Decodes the current frame. The fixed layout is read in line, where the message is
    /// built in the caller's place: a message built in a callee and returned through memory
    /// is read back by the caller in wider loads than it was written with, which stalls. The
    /// codec's path and the errors are out of line.
    #[inline]
    fn decode<T: Wire + Decode<()>>(&mut self) -> Result<T, RecvError> {
        match self.current.layout {
            Layout::Fixed => match T::from_fixed(self.frame()) {
                Some(msg) => Ok(msg),
                None => Err(self.not_fixed()),
            },
            Layout::Codec => self.decode_codec(),
        }
    }

    #[inline(never)]
    fn decode_codec<T: Decode<()>>(&mut self) -> Result<T, RecvError> {
        codec::decode(self.frame()).map_err(|e| self.corrupt(Damage::Frame(e)))
    }

    #[cold]
    #[inline(never)]
    fn not_fixed(&mut self) -> RecvError {
        self.corrupt(Damage::Frame(CodecError::Invalid(
            "not a fixed layout of the expected message",
        )))
    }
}
