//! Segment names: making a new one (recorded, locked and with its memory reserved), asking
//! whether one exists, listing those recorded, and sweeping those left behind by processes
//! that died.
//!
//! Invariants: names are `/ibbridge-<creator pid>-<random>` (30 characters, at least 60 random
//! bits); a name is created with its creator's lock already held on its record, and removed by
//! a sweep only when nobody holds that lock and it is older than [`SWEEP_GRACE`]; a creation
//! that fails leaves nothing behind. How the two platforms keep their records is in
//! `sys/shm.rs`.

#![forbid(unsafe_code)]

use std::io;
use std::time::Duration;

use shared_memory::{Shmem, ShmemConf, ShmemError};

use super::error::SegmentError;
use crate::sys;
use crate::sys::shm::{Bookkeeping, Claim, ReserveError};

/// Prefix of segment names (after the leading `/`).
pub const NAME_PREFIX: &str = sys::shm::NAME_PREFIX;
/// Where Linux shows segment names as files (macOS shows them nowhere; see
/// [`recorded_names`]).
pub const SHM_DIR: &str = sys::shm::DEV_SHM;
/// A segment name younger than this is never swept: its creator may not have taken its lock
/// yet (the lock is taken right after the name is created).
pub const SWEEP_GRACE: Duration = sys::shm::SWEEP_GRACE;

/// How many new names a creation tries before it gives up (a name is taken only by a
/// collision of random names, or a sweep racing a clock step).
const CREATE_TRIES: u32 = 16;

/// Makes a new shared memory object of `bytes` under a new name of this process, recorded
/// in `books` with the creator's hold on it and its memory reserved: what a `Segment` (and
/// the benchmarks' floor) is created in. The object is not unlinked when the returned
/// `Shmem` drops: its creator unlinks it through `books`. On any error nothing is left behind.
pub(crate) fn create_recorded(
    books: &Bookkeeping,
    bytes: usize,
) -> Result<(Shmem, String, Claim), SegmentError> {
    for _ in 0..CREATE_TRIES {
        let name = sys::shm::new_name(std::process::id()).map_err(SegmentError::Create)?;
        let mut claim = match books.claim(&name) {
            Ok(claim) => claim,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(SegmentError::Registry {
                    dir: books.place(),
                    source: e,
                })
            }
        };
        let mut shmem = match ShmemConf::new().size(bytes).os_id(&name).create() {
            Ok(shmem) => shmem,
            Err(ShmemError::MappingIdExists) => {
                books.abandon(claim, &name);
                continue;
            }
            Err(e) => {
                books.abandon(claim, &name);
                return Err(SegmentError::Create(io::Error::other(e)));
            }
        };
        // The creator unlinks it (earlier than drop, and exactly once).
        shmem.set_owner(false);
        if let Err(e) = books.created(&mut claim, &name, bytes as u64) {
            let _ = books.unlink(&name);
            return Err(match e {
                ReserveError::NoSpace { available } => SegmentError::NoSpace {
                    needed: bytes as u64,
                    available,
                },
                ReserveError::Other(e) => SegmentError::Create(io::Error::other(e)),
            });
        }
        return Ok((shmem, name, claim));
    }
    Err(SegmentError::Create(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free segment name after {CREATE_TRIES} tries"),
    )))
}

/// Removes segment names left behind by processes that died before their worker attached
/// (earlier crashes). Returns how many were removed. A name is removed only when nobody holds
/// its creator's lock and it is older than [`SWEEP_GRACE`]; names of other users are left
/// alone (they cannot be opened).
pub fn sweep_stale() -> usize {
    Bookkeeping::native().sweep_stale()
}

/// Whether a shared memory object named `name` exists now, whatever any record says.
pub fn exists(name: &str) -> bool {
    sys::shm::object_exists(name)
}

/// The segment names recorded on this machine now (without their leading `/`), live or left
/// behind: the files in `/dev/shm` on Linux, this user's lock files on macOS.
pub fn recorded_names() -> Vec<String> {
    Bookkeeping::native().names()
}
