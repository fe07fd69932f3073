//! Encoding of messages: bincode 2 with its own derived `Encode` and `Decode` (not through
//! serde: decoding a live bar takes a third of the time serde's visitors took), in one module
//! so the encoding can change without touching anything else; the protocol's envelope and the
//! messages it carries are decoded by hand, in one pass (`protocol/decode.rs`). Values are
//! encoded into a reusable buffer and decoded from a private copy of the frame, never from
//! shared memory. A frame of up to 128 bytes is decoded in line, in its caller's place.
//!
//! Invariants: decoding is bounded by the frame it reads: a length prefix may claim at most a few times
//! the frame's own size (see [`decode_limit`]), so a small hostile frame cannot make the
//! decoder allocate much more than itself.

#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use bincode::de::read::Reader;
use bincode::de::{Decoder, DecoderImpl};
use bincode::error::DecodeError;
use bincode::{Decode, Encode};

/// Upper bound on what decoding one frame may allocate, whatever its size.
pub const DECODE_LIMIT: usize = 1 << 40;

type Config<const N: usize> = Configuration<LittleEndian, Fixint, Limit<N>>;

fn config<const N: usize>() -> Config<N> {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<N>()
}

/// How many bytes of memory one byte of a valid message's encoding may need once decoded.
/// A sequence claims its elements' size in memory before decoding them, and in the bridge's
/// messages the worst case is a folded list of order references with empty prefixes: 9 bytes
/// each (an empty string and no numbers), decoded into 48-byte `RefRun`s (5.3 times; a list of
/// empty strings is 3 times).
pub const MEMORY_PER_BYTE: usize = 6;

/// The smallest size class: that of every frame up to 128 bytes.
const FIRST_CLASS: usize = 768;

/// The most a frame of `len` bytes may claim while decoding: [`MEMORY_PER_BYTE`] times its
/// length rounded up to the next of a few fixed sizes (768 B, then ×4 up to
/// [`DECODE_LIMIT`]), so at most 24 times the frame and never less than 768 bytes; a valid
/// message always fits.
pub fn decode_limit(len: usize) -> usize {
    limit_class(len.saturating_mul(MEMORY_PER_BYTE))
}

/// The smallest size class holding `want`.
fn limit_class(want: usize) -> usize {
    let mut class = FIRST_CLASS;
    while class < want && class < DECODE_LIMIT {
        class *= 4;
    }
    class.min(DECODE_LIMIT)
}

/// A value could not be encoded or decoded. Two errors are equal when they are of the same
/// kind and say the same.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CodecError {
    /// The value could not be encoded: bincode's error.
    Encode(Arc<bincode::error::EncodeError>),
    /// The bytes are not a valid encoding of the expected type: bincode's error.
    Decode(Arc<bincode::error::DecodeError>),
    /// The bytes hold a valid value followed by `extra` unexpected bytes.
    Trailing {
        /// How many bytes follow the value.
        extra: usize,
    },
    /// The value does not fit the buffer given to [`encode_to_slice`].
    BufferTooSmall,
    /// The bytes (or the text they came in) are not what a decoder of this kind takes, for
    /// this reason.
    Invalid(&'static str),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Encode(e) => write!(f, "cannot encode message: {e}"),
            CodecError::Decode(e) => write!(f, "cannot decode message: {e}"),
            CodecError::Trailing { extra } => {
                write!(f, "message followed by {extra} unexpected bytes")
            }
            CodecError::BufferTooSmall => f.write_str("message does not fit the buffer"),
            CodecError::Invalid(why) => write!(f, "cannot decode message: {why}"),
        }
    }
}

impl PartialEq for CodecError {
    fn eq(&self, other: &CodecError) -> bool {
        match (self, other) {
            (CodecError::Encode(a), CodecError::Encode(b)) => a.to_string() == b.to_string(),
            (CodecError::Decode(a), CodecError::Decode(b)) => a.to_string() == b.to_string(),
            (CodecError::Trailing { extra: a }, CodecError::Trailing { extra: b }) => a == b,
            (CodecError::BufferTooSmall, CodecError::BufferTooSmall) => true,
            (CodecError::Invalid(a), CodecError::Invalid(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for CodecError {}

// Its text says bincode's error: the source is what that one has below it.
impl std::error::Error for CodecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CodecError::Encode(e) => e.source(),
            CodecError::Decode(e) => e.source(),
            CodecError::Trailing { .. } | CodecError::BufferTooSmall | CodecError::Invalid(_) => {
                None
            }
        }
    }
}

/// Bytes of the longest fixed layout a [`Wire`] type may give a value.
pub const FIXED_MAX: usize = 64;

/// A message type the channel carries: encoded by the codec, or, for the values the type
/// chooses, in a fixed layout of its own, sent in a frame marked so
/// ([`Layout::Fixed`](crate::ring::Layout)) and read back without the codec: the hot
/// messages (a live bar crosses as one cache line and is read back by a few loads, with no
/// envelope to walk). The fixed layout is read from the same private copy as any frame and
/// checked as strictly: bytes that are not one are corruption. Types without a fixed layout
/// implement it with no methods. Sending takes `Wire`, receiving `Wire + Decode`.
pub trait Wire: Encode {
    /// Writes this value's fixed layout at the start of `out` and returns its length, or
    /// `None` to send it through the codec (as a length above [`FIXED_MAX`] is).
    fn to_fixed(&self, out: &mut [u8; FIXED_MAX]) -> Option<usize> {
        let _ = out;
        None
    }

    /// Reads a value back from its fixed layout; `None` if `bytes` are not one.
    fn from_fixed(bytes: &[u8]) -> Option<Self>
    where
        Self: Sized,
    {
        let _ = bytes;
        None
    }
}

macro_rules! codec_only {
    ($($t:ty),*) => {$(impl Wire for $t {})*};
}
codec_only!(
    u8,
    u16,
    u32,
    u64,
    i32,
    i64,
    bool,
    String,
    Vec<u8>,
    str,
    [u8]
);

/// Encodes `value` into `out`, replacing its contents (its allocation is reused).
pub fn encode_into<T: Encode + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    out.clear();
    bincode::encode_into_std_write(value, out, config::<DECODE_LIMIT>())
        .map(|_| ())
        .map_err(|e| CodecError::Encode(Arc::new(e)))
}

/// Encodes `value` at the start of `buf`; returns the length. Faster than
/// [`encode_into`] (no growth checks per field); fails with [`CodecError::BufferTooSmall`]
/// as soon as `buf` is found too short, leaving the caller to grow it.
pub fn encode_to_slice<T: Encode + ?Sized>(value: &T, buf: &mut [u8]) -> Result<usize, CodecError> {
    bincode::encode_into_slice(value, buf, config::<DECODE_LIMIT>()).map_err(|e| match e {
        bincode::error::EncodeError::UnexpectedEnd => CodecError::BufferTooSmall,
        e => CodecError::Encode(Arc::new(e)),
    })
}

/// Encodes `value` into a new buffer.
pub fn encode<T: Encode + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Decodes exactly one `T` from `bytes`, claiming at most [`decode_limit`]`(bytes.len())`
/// bytes of memory for what the bytes announce.
///
/// ```
/// use bridge::protocol::{Body, Envelope, Request};
/// let env = Envelope { id: 7, body: Body::Request(Request::Connect) };
/// let bytes = bridge::codec::encode(&env).unwrap();
/// assert_eq!(bridge::codec::decode::<Envelope>(&bytes).unwrap(), env);
/// assert!(bridge::codec::decode::<Envelope>(&bytes[..3]).is_err());
/// ```
#[inline]
pub fn decode<T: Decode<()>>(bytes: &[u8]) -> Result<T, CodecError> {
    // The smallest class, that of every frame up to 128 bytes, is decoded in the caller's
    // place: a small message is then built where it is used rather than moved out of calls.
    if bytes.len() <= SMALL {
        decode_with::<T, FIRST_CLASS>(bytes)
    } else {
        // `decode_limit` is a size class already.
        decode_in_class(bytes, decode_limit(bytes.len()))
    }
}

/// The longest frame of the smallest size class.
const SMALL: usize = FIRST_CLASS / MEMORY_PER_BYTE;

/// Decodes exactly one `T` from `bytes`, claiming at most `limit` bytes of memory (rounded up
/// to the next size class of [`decode_limit`]) for what the bytes announce: for data whose
/// decoded form may be larger than [`MEMORY_PER_BYTE`] times its encoding.
pub fn decode_at_most<T: Decode<()>>(bytes: &[u8], limit: usize) -> Result<T, CodecError> {
    decode_in_class(bytes, limit_class(limit))
}

/// Decodes with the decoder of size class `class` (one of [`limit_class`]'s values).
#[inline(never)]
fn decode_in_class<T: Decode<()>>(bytes: &[u8], class: usize) -> Result<T, CodecError> {
    // One monomorphized decoder per class: bincode takes its limit as a constant.
    macro_rules! by_class {
        ($($class:expr),*) => {{
            $(if class <= $class {
                return decode_with::<T, { $class }>(bytes);
            })*
            decode_with::<T, DECODE_LIMIT>(bytes)
        }};
    }
    by_class!(
        FIRST_CLASS,
        FIRST_CLASS << 2,
        FIRST_CLASS << 4,
        FIRST_CLASS << 6,
        FIRST_CLASS << 8,
        FIRST_CLASS << 10,
        FIRST_CLASS << 12,
        FIRST_CLASS << 14,
        FIRST_CLASS << 16,
        FIRST_CLASS << 18,
        FIRST_CLASS << 20,
        FIRST_CLASS << 22,
        FIRST_CLASS << 24,
        FIRST_CLASS << 26,
        FIRST_CLASS << 28,
        FIRST_CLASS << 30
    )
}

/// The bytes of a frame not yet decoded: bincode's slice reader, with what is left in sight.
struct Frame<'a> {
    rest: &'a [u8],
}

impl Reader for Frame<'_> {
    #[inline(always)]
    fn read(&mut self, bytes: &mut [u8]) -> Result<(), DecodeError> {
        let Some((head, rest)) = self.rest.split_at_checked(bytes.len()) else {
            return Err(DecodeError::UnexpectedEnd {
                additional: bytes.len() - self.rest.len(),
            });
        };
        bytes.copy_from_slice(head);
        self.rest = rest;
        Ok(())
    }

    #[inline(always)]
    fn peek_read(&mut self, n: usize) -> Option<&[u8]> {
        self.rest.get(..n)
    }

    #[inline(always)]
    fn consume(&mut self, n: usize) {
        self.rest = self.rest.get(n..).unwrap_or_default();
    }
}

#[inline(always)]
fn decode_with<T: Decode<()>, const N: usize>(bytes: &[u8]) -> Result<T, CodecError> {
    let mut decoder = DecoderImpl::new(Frame { rest: bytes }, config::<N>(), ());
    let value = T::decode(&mut decoder).map_err(decode_error)?;
    match decoder.reader().rest.len() {
        0 => Ok(value),
        extra => Err(CodecError::Trailing { extra }),
    }
}

#[cold]
#[inline(never)]
fn decode_error(e: DecodeError) -> CodecError {
    CodecError::Decode(Arc::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Encode, Decode)]
    struct Sample {
        id: u64,
        name: String,
        values: Vec<f64>,
        maybe: Option<i32>,
    }

    #[test]
    fn round_trip() {
        let s = Sample {
            id: 7,
            name: "SPY".into(),
            values: vec![1.5, -2.0],
            maybe: None,
        };
        let bytes = encode(&s).unwrap();
        assert_eq!(decode::<Sample>(&bytes).unwrap(), s);
    }

    #[test]
    fn encoding_into_a_slice_matches_and_reports_a_short_buffer() {
        let s = Sample {
            id: 7,
            name: "SPY".into(),
            values: vec![1.5, -2.0],
            maybe: Some(1),
        };
        let expected = encode(&s).unwrap();
        let mut buf = vec![0u8; 256];
        let n = encode_to_slice(&s, &mut buf).unwrap();
        assert_eq!(&buf[..n], expected.as_slice());
        assert_eq!(
            encode_to_slice(&s, &mut buf[..n - 1]),
            Err(CodecError::BufferTooSmall)
        );
    }

    #[test]
    fn truncated_and_trailing_bytes_are_errors() {
        let bytes = encode(&Sample {
            id: 1,
            name: "x".into(),
            values: vec![1.0],
            maybe: Some(3),
        })
        .unwrap();
        for cut in 0..bytes.len() {
            assert!(matches!(
                decode::<Sample>(&bytes[..cut]),
                Err(CodecError::Decode(_))
            ));
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            decode::<Sample>(&longer),
            Err(CodecError::Trailing { extra: 1 })
        );
    }

    #[test]
    fn a_hostile_length_prefix_does_not_allocate_past_the_limit() {
        // A Vec<u8> claiming u64::MAX elements, with no elements behind it.
        let bytes = u64::MAX.to_le_bytes();
        assert!(matches!(
            decode::<Vec<u8>>(&bytes),
            Err(CodecError::Decode(_))
        ));
        let bytes = ((DECODE_LIMIT as u64) + 1).to_le_bytes();
        assert!(matches!(
            decode::<Vec<u64>>(&bytes),
            Err(CodecError::Decode(_))
        ));
    }

    /// A 20-byte frame announcing a 16 MiB string, byte buffer or sequence: the decoder may
    /// not reserve more than a small multiple of the frame for it.
    #[test]
    #[cfg(not(loom))]
    fn a_small_frame_cannot_make_the_decoder_allocate_much() {
        for claimed in [16u64 << 20, 1 << 30, DECODE_LIMIT as u64] {
            let mut bytes = claimed.to_le_bytes().to_vec();
            bytes.extend_from_slice(&[b'a'; 12]);
            let (result, largest) = crate::test_alloc::largest_allocation_during(|| {
                (
                    decode::<String>(&bytes).is_err(),
                    decode::<Vec<u8>>(&bytes).is_err(),
                    decode::<Vec<f64>>(&bytes).is_err(),
                )
            });
            assert_eq!(result, (true, true, true));
            assert!(largest <= decode_limit(20), "allocated {largest} bytes");
        }
        assert_eq!(decode_limit(20), 768);
        assert_eq!(decode_limit(300), 3072);
        assert_eq!(decode_limit(256 << 10), 3 << 20);
        assert_eq!(decode_limit(usize::MAX), DECODE_LIMIT);
    }

    /// The limit never refuses a valid message: every size class holds twice its frames.
    #[test]
    fn a_valid_message_of_any_size_decodes_under_its_limit() {
        for len in [0usize, 1, 200, 256, 2000, 40_000, 300_000, 3 << 20] {
            let s = Sample {
                id: 1,
                name: "n".repeat(len),
                values: vec![0.5; len / 64],
                maybe: None,
            };
            let bytes = encode(&s).unwrap();
            assert_eq!(decode::<Sample>(&bytes).unwrap(), s, "{len}");
            let strings: Vec<String> = vec![String::new(); len / 8];
            let bytes = encode(&strings).unwrap();
            assert_eq!(decode::<Vec<String>>(&bytes).unwrap(), strings, "{len}");
        }
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut bytes = 2u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe]);
        assert!(matches!(
            decode::<String>(&bytes),
            Err(CodecError::Decode(_))
        ));
    }
}
