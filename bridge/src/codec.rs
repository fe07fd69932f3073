//! Encoding of messages: bincode 2 through serde, in one module so the encoding can change
//! without touching anything else. Values are encoded into a reusable buffer and decoded from
//! a private copy of the frame, never from shared memory.
//!
//! Decoding is bounded by the frame it reads: a length prefix may claim at most a few times
//! the frame's own size (see [`decode_limit`]), so a small hostile frame cannot make the
//! decoder allocate much more than itself.

#![forbid(unsafe_code)]

use std::fmt;

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use serde::{de::DeserializeOwned, Serialize};

/// Upper bound on what decoding one frame may allocate, whatever its size.
pub const DECODE_LIMIT: usize = 1 << 40;

type Config<const N: usize> = Configuration<LittleEndian, Fixint, Limit<N>>;

fn config<const N: usize>() -> Config<N> {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<N>()
}

/// The most a frame of `len` bytes may claim while decoding: twice its length rounded up to
/// the next of a few fixed sizes (512 B, then ×8 up to [`DECODE_LIMIT`]), so at most 16 times
/// the frame and never less than 512 bytes. Every byte of a valid message's encoding claims
/// at most one byte of memory, so a valid message always fits.
pub fn decode_limit(len: usize) -> usize {
    let want = len.saturating_mul(2);
    let mut class = 512usize;
    while class < want && class < DECODE_LIMIT {
        class *= 8;
    }
    class.min(DECODE_LIMIT)
}

/// A value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// The value could not be encoded.
    Encode(String),
    /// The bytes are not a valid encoding of the expected type.
    Decode(String),
    /// The bytes hold a valid value followed by `extra` unexpected bytes.
    Trailing {
        /// How many bytes follow the value.
        extra: usize,
    },
    /// The value does not fit the buffer given to [`encode_to_slice`].
    BufferTooSmall,
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
        }
    }
}

impl std::error::Error for CodecError {}

/// Encodes `value` into `out`, replacing its contents (its allocation is reused).
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    out.clear();
    bincode::serde::encode_into_std_write(value, out, config::<DECODE_LIMIT>())
        .map(|_| ())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Encodes `value` at the start of `buf`; returns the length. Faster than
/// [`encode_into`] (no growth checks per field); fails with [`CodecError::BufferTooSmall`]
/// as soon as `buf` is found too short, leaving the caller to grow it.
pub fn encode_to_slice<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut [u8],
) -> Result<usize, CodecError> {
    bincode::serde::encode_into_slice(value, buf, config::<DECODE_LIMIT>()).map_err(|e| match e {
        bincode::error::EncodeError::UnexpectedEnd => CodecError::BufferTooSmall,
        e => CodecError::Encode(e.to_string()),
    })
}

/// Encodes `value` into a new buffer.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
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
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    const KIB: usize = 1 << 10;
    match decode_limit(bytes.len()) {
        n if n <= 512 => decode_with::<T, 512>(bytes),
        n if n <= 4 * KIB => decode_with::<T, { 4 * KIB }>(bytes),
        n if n <= 32 * KIB => decode_with::<T, { 32 * KIB }>(bytes),
        n if n <= 256 * KIB => decode_with::<T, { 256 * KIB }>(bytes),
        n if n <= 2048 * KIB => decode_with::<T, { 2048 * KIB }>(bytes),
        n if n <= 16384 * KIB => decode_with::<T, { 16384 * KIB }>(bytes),
        n if n <= 131072 * KIB => decode_with::<T, { 131072 * KIB }>(bytes),
        n if n <= 1 << 30 => decode_with::<T, { 1 << 30 }>(bytes),
        n if n <= 8 << 30 => decode_with::<T, { 8 << 30 }>(bytes),
        n if n <= 64 << 30 => decode_with::<T, { 64 << 30 }>(bytes),
        n if n <= 512 << 30 => decode_with::<T, { 512 << 30 }>(bytes),
        _ => decode_with::<T, DECODE_LIMIT>(bytes),
    }
}

fn decode_with<T: DeserializeOwned, const N: usize>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config::<N>())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::Trailing {
            extra: bytes.len() - used,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
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

    /// A 20-byte frame announcing a 16 MiB string or byte buffer: the decoder may not
    /// reserve more than a small multiple of the frame for it. (Sequences of other types are
    /// preallocated by serde itself, which caps that at 1 MiB whatever the limit.)
    #[test]
    #[cfg(not(loom))]
    fn a_small_frame_cannot_make_the_decoder_allocate_much() {
        #[derive(Debug, Deserialize)]
        struct Bytes(
            #[serde(with = "serde_bytes")]
            #[allow(dead_code)]
            Vec<u8>,
        );
        for claimed in [16u64 << 20, 1 << 30, DECODE_LIMIT as u64] {
            let mut bytes = claimed.to_le_bytes().to_vec();
            bytes.extend_from_slice(&[b'a'; 12]);
            let (result, largest) = crate::test_alloc::largest_allocation_during(|| {
                (decode::<String>(&bytes), decode::<Bytes>(&bytes))
            });
            assert!(result.0.is_err() && result.1.is_err());
            assert!(largest <= decode_limit(20), "allocated {largest} bytes");
            let (result, largest) =
                crate::test_alloc::largest_allocation_during(|| decode::<Vec<f64>>(&bytes));
            assert!(result.is_err());
            assert!(largest <= 1 << 20, "allocated {largest} bytes");
        }
        assert_eq!(decode_limit(20), 512);
        assert_eq!(decode_limit(300), 4096);
        assert_eq!(decode_limit(256 << 10), 2 << 20);
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
