//! A recorded run: every bar a run received (history and live), its configuration and its
//! strategy's signals, in one file, and that file read back to be replayed ([`Recording`]).
//!
//! The file: [`MAGIC`], the format's version ([`FORMAT_VERSION`], 4 bytes little-endian),
//! then records, each its payload's length and CRC-32 (4 bytes little-endian each) and the
//! payload, a bincode-encoded [`Record`]. The first record is the run's ([`Record::Run`]); a
//! symbol is named once ([`Record::Symbol`]) before the records that carry its id.
//!
//! Written by the runner ([`RecordingWriter`], `runner run --record FILE`), read by a worker
//! replaying it ([`Recording::open`]) and by the runner before it starts one.
//!
//! Invariants: a record is written whole or the file ends in a truncated one, which reading
//! reports with its offset (so is a record whose checksum fails, an unknown format version,
//! and a file that is no recording); reading never allocates more than the file holds; a
//! symbol's bars read back are in time order, each time once.

mod format;
mod read;
mod write;

#[cfg(test)]
mod tests;

pub use format::{
    crc32, Record, RecordingError, RecordingErrorKind, FORMAT_VERSION, HEADER_LEN, MAGIC,
    MAX_RECORD,
};
pub use read::{RecordedLive, Recording};
pub use write::RecordingWriter;
