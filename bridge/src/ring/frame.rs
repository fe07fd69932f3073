//! The frame format and the checks applied to everything read from a ring's memory.
//!
//! A frame is an 8-byte header (`len: u32`, `kind: u32`, little-endian) followed by `len`
//! payload bytes, padded to a multiple of 8. A data frame's kind says how its payload is
//! encoded ([`Layout`]): by the codec, or in a message type's fixed layout of its own. A frame never wraps: when one does not fit before
//! the end of the data area, a padding frame fills the rest and the real frame starts at
//! offset 0, published together with the padding.
//!
//! Invariants checked here, on values a hostile peer may have written:
//! - positions are multiples of 8, `head ≤ tail ≤ head + capacity`, and both stay below
//!   [`POSITION_LIMIT`], so no arithmetic on them can overflow;
//! - a data frame's length is at most the ring's maximum frame and its padded size fits both
//!   before the end of the data area and within what was published;
//! - a padding frame reaches exactly to the end of the data area and is followed by more
//!   published bytes.

#![forbid(unsafe_code)]

use super::error::Corruption;

/// Bytes of the header in front of every frame.
pub const FRAME_HEADER: usize = 8;
/// Positions are refused at or above this value: with a capacity of at most 2^40 (the largest
/// accepted), adding a frame and its padding to a valid position can never overflow a `u64`.
/// A ring reaches it after 4 EiB of traffic (over ten years at 10 GB/s).
pub const POSITION_LIMIT: u64 = 1 << 62;

pub(crate) const KIND_DATA: u32 = 0xDA7A_F4A3;
pub(crate) const KIND_FIXED: u32 = 0xF1CE_D0A7;
pub(crate) const KIND_PAD: u32 = 0x9ADD_1465;

/// How a data frame's payload is encoded; the ring only carries it, the channel reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// By the codec (any message).
    #[default]
    Codec,
    /// In a message type's fixed layout of its own (its hot messages: see
    /// `bridge::channel::Wire`).
    Fixed,
}

impl Layout {
    /// The layout a data frame's kind says; `None` for any other kind.
    #[inline]
    pub(crate) fn of_kind(kind: u32) -> Option<Layout> {
        match kind {
            KIND_DATA => Some(Layout::Codec),
            KIND_FIXED => Some(Layout::Fixed),
            _ => None,
        }
    }

    pub(crate) fn kind(self) -> u32 {
        match self {
            Layout::Codec => KIND_DATA,
            Layout::Fixed => KIND_FIXED,
        }
    }
}

/// A frame taken by [`Consumer::take_batch`](super::Consumer::take_batch): where its
/// payload lies in the batch, and how it is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Taken {
    /// Offset of the payload in the batch.
    pub start: usize,
    /// Bytes of payload.
    pub len: usize,
    /// How the payload is encoded.
    pub layout: Layout,
}

/// The frame at offset `at` of a batch taken by
/// [`Consumer::take_frames`](super::Consumer::take_frames) (its data frames back to back,
/// each checked there): where its payload lies in the batch and how it is encoded, and
/// where the next frame starts. `None` at the batch's end.
#[inline(always)]
pub(crate) fn frame_at(batch: &[u8], at: usize) -> Option<(Taken, usize)> {
    let (len, kind) = parse_header(header_in(batch, at)?);
    let taken = Taken {
        start: at + FRAME_HEADER,
        len: len as usize,
        // Every frame of the batch is a data frame: its kind is one of the two layouts.
        layout: Layout::of_kind(kind).unwrap_or_default(),
    };
    Some((taken, at + frame_size(len as usize)))
}

/// Bytes a frame with `len` payload bytes occupies in the ring.
#[inline]
pub const fn frame_size(len: usize) -> usize {
    (FRAME_HEADER + len + 7) & !7
}

/// What a validated frame header says.
pub(crate) enum FrameCheck {
    /// A padding frame: the rest of the data area is skipped.
    Pad,
    /// A data frame (of either [`Layout`]) occupying `need` bytes.
    Data { need: u64 },
}

/// Validates the frame header `(len, kind)` found at position `at`, with `to_end` bytes left
/// before the end of the data area and `avail` bytes published from `at`.
#[inline]
pub(crate) fn check_frame(
    at: u64,
    to_end: u64,
    avail: u64,
    len: u32,
    kind: u32,
    max_frame: usize,
) -> Result<FrameCheck, Corruption> {
    match kind {
        // A padding frame reaches exactly to the end and is always followed by a real frame
        // published with it.
        KIND_PAD if len as u64 + FRAME_HEADER as u64 == to_end && avail > to_end => {
            Ok(FrameCheck::Pad)
        }
        KIND_PAD => Err(Corruption::Padding { at, len }),
        kind => {
            if Layout::of_kind(kind).is_none() {
                return Err(Corruption::FrameKind { at, kind });
            }
            let need = frame_size(len as usize) as u64;
            if len as usize > max_frame || need > to_end || need > avail {
                Err(Corruption::FrameLength { at, len })
            } else {
                Ok(FrameCheck::Data { need })
            }
        }
    }
}

/// `head ≤ tail ≤ head + capacity`, both multiples of 8 and below [`POSITION_LIMIT`].
#[inline]
pub(crate) fn positions_valid(head: u64, tail: u64, capacity: usize) -> bool {
    head <= tail
        && tail < POSITION_LIMIT
        && tail - head <= capacity as u64
        && head.is_multiple_of(8)
        && tail.is_multiple_of(8)
}

/// Encodes a frame header.
#[inline]
pub(crate) fn header_bytes(len: u32, kind: u32) -> [u8; FRAME_HEADER] {
    let mut h = [0u8; FRAME_HEADER];
    h[..4].copy_from_slice(&len.to_le_bytes());
    h[4..].copy_from_slice(&kind.to_le_bytes());
    h
}

/// The 8 header bytes at `at` of a private copy of frames, if they are all there.
#[inline(always)]
pub(crate) fn header_in(bytes: &[u8], at: usize) -> Option<[u8; FRAME_HEADER]> {
    bytes
        .get(at..at.checked_add(FRAME_HEADER)?)
        .and_then(|h| <[u8; FRAME_HEADER]>::try_from(h).ok())
}

/// Decodes a frame header.
#[inline]
pub(crate) fn parse_header(h: [u8; FRAME_HEADER]) -> (u32, u32) {
    (
        u32::from_le_bytes([h[0], h[1], h[2], h[3]]),
        u32::from_le_bytes([h[4], h[5], h[6], h[7]]),
    )
}
