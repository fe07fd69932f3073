//! The recording's format: its header, its records, its errors and its checksum.

use std::fmt;
use std::path::PathBuf;

use bincode::{Decode, Encode};
use bridge::protocol::Bar;

/// The first bytes of every recording.
pub const MAGIC: &[u8; 8] = b"IBBRREC\n";
/// The format's version: a reader refuses any other.
pub const FORMAT_VERSION: u32 = 1;
/// The largest record taken: a length beyond it is corruption, not a record.
pub const MAX_RECORD: u32 = 16 << 20;
/// Bytes before the first record: the magic and the version.
pub const HEADER_LEN: u64 = 12;

/// One record of a recording.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum Record {
    /// The run: what recorded it, its configuration, its bar size and when it began.
    Run {
        /// The program and its version (`runner 0.1.0`).
        program: String,
        /// The run's configuration, as TOML.
        config: String,
        /// The bars' size in seconds.
        bar_seconds: u32,
        /// When the run began (Unix seconds, wall clock).
        started: i64,
    },
    /// A symbol's id in the records after this one.
    Symbol {
        /// Its id.
        id: u32,
        /// The symbol.
        symbol: String,
    },
    /// Bars of a symbol's history, oldest first (a long history takes several records).
    History {
        /// The symbol's id.
        id: u32,
        /// The bars.
        bars: Vec<Bar>,
    },
    /// A live bar, what the strategy said on it, and the order it placed.
    Live {
        /// The symbol's id.
        id: u32,
        /// The bar.
        bar: Bar,
        /// The strategy's signal (`buy`, `sell`, `hold`).
        signal: String,
        /// The reference of the order it placed, if any.
        order: Option<String>,
    },
}

/// Why a recording cannot be read, with the file and the byte offset it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingError {
    /// The file.
    pub file: PathBuf,
    /// Where in it (bytes from its start).
    pub offset: u64,
    /// What is wrong.
    pub kind: RecordingErrorKind,
}

/// What is wrong with a recording ([`RecordingError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordingErrorKind {
    /// The file cannot be read (the system's reason).
    Io(String),
    /// It does not begin with [`MAGIC`].
    NotARecording,
    /// Written in another format version.
    Version(u32),
    /// It ends inside a record (or its header): the recording was cut short.
    Truncated,
    /// A record's length or checksum is wrong, or it does not decode (what).
    Corrupt(String),
    /// The records make no sense together (what): no run first, an unknown symbol id.
    Inconsistent(String),
}

impl fmt::Display for RecordingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (file, at) = (self.file.display(), self.offset);
        match &self.kind {
            RecordingErrorKind::Io(e) => write!(f, "recording {file}: {e}"),
            RecordingErrorKind::NotARecording => {
                write!(
                    f,
                    "{file} is not a recording (offset {at}: no recording header)"
                )
            }
            RecordingErrorKind::Version(v) => write!(
                f,
                "recording {file} is of format version {v}; this program reads version \
                 {FORMAT_VERSION} (offset {at})"
            ),
            RecordingErrorKind::Truncated => {
                write!(
                    f,
                    "recording {file} is truncated: it ends inside a record at offset {at}"
                )
            }
            RecordingErrorKind::Corrupt(what) => {
                write!(f, "recording {file} is corrupt at offset {at}: {what}")
            }
            RecordingErrorKind::Inconsistent(what) => {
                write!(f, "recording {file} is inconsistent at offset {at}: {what}")
            }
        }
    }
}

impl std::error::Error for RecordingError {}

/// The bincode configuration of records (the bridge's, fixed-width integers).
pub(super) fn codec() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<{ MAX_RECORD as usize }>()
}

/// CRC-32 (IEEE 802.3) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc = CRC_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}
