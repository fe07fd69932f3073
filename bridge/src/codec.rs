//! Encoding of messages: bincode 2 through serde, in one module so the encoding can change
//! without touching anything else. Values are encoded into a reusable buffer and decoded from
//! a private copy of the frame, never from shared memory.

use std::fmt;

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use serde::{de::DeserializeOwned, Serialize};

/// Upper bound on what decoding one frame may allocate: a hostile length prefix cannot make
/// the decoder reserve more than this.
pub const DECODE_LIMIT: usize = 16 << 20;

type Config = Configuration<LittleEndian, Fixint, Limit<DECODE_LIMIT>>;

fn config() -> Config {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<DECODE_LIMIT>()
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
    Trailing { extra: usize },
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
    bincode::serde::encode_into_std_write(value, out, config())
        .map(|_| ())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Encodes `value` at the start of `buf`; returns the length. Faster than
/// [`encode_into`] (no growth checks per field); fails with [`CodecError::BufferTooSmall`]
/// when `buf` is too short, leaving the caller to grow it.
pub fn encode_to_slice<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut [u8],
) -> Result<usize, CodecError> {
    bincode::serde::encode_into_slice(value, buf, config()).map_err(|e| match e {
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

/// Decodes exactly one `T` from `bytes`.
///
/// ```
/// use bridge::protocol::{Body, Envelope};
/// let env = Envelope { id: 7, body: Body::Heartbeat { seq: 1 } };
/// let bytes = bridge::codec::encode(&env).unwrap();
/// assert_eq!(bridge::codec::decode::<Envelope>(&bytes).unwrap(), env);
/// assert!(bridge::codec::decode::<Envelope>(&bytes[..3]).is_err());
/// ```
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
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
