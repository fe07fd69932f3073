//! The machine's floor, for the benchmarks: a region of shared memory seen by two processes
//! as plain atomic words, with no ring, codec, protocol or doorbell. The harness's `floor`
//! transport spins on these words (a ping-pong, and fixed 64-byte slots), so that every
//! figure of the bridge can be given as a ratio to what this machine allows.
//!
//! Invariants: the region is zeroed at creation, mode 0600, named and recorded like a segment
//! (its creator holds the record's lock, so no sweep removes it while it lives, and a crash
//! leaves a record the sweep removes), and unlinked by its creator when it drops; it is only
//! ever accessed through atomics. Built for the benchmarks and tests only (feature `bench`).

use std::fmt;
use std::io;
use std::sync::atomic::AtomicU64;

use shared_memory::{Shmem, ShmemConf};

use crate::sys::shm::{Bookkeeping, Claim};

/// A region of shared atomic words (see the module).
pub struct Floor {
    shmem: Shmem,
    name: String,
    words: usize,
    /// The creator's record of the name and its hold on it; none for an opener.
    created: Option<(Bookkeeping, Claim)>,
}

// SAFETY: the mapping stays valid while the Floor lives and is only accessed through atomics.
unsafe impl Send for Floor {}
// SAFETY: as above.
unsafe impl Sync for Floor {}

impl fmt::Debug for Floor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Floor")
            .field("name", &self.name)
            .field("words", &self.words)
            .finish()
    }
}

impl Floor {
    /// Creates a zeroed region of `words` 64-bit words.
    pub fn create(words: usize) -> io::Result<Floor> {
        let bytes = words
            .checked_mul(8)
            .filter(|b| *b > 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad size"))?;
        let books = Bookkeeping::native();
        let (shmem, name, claim) = crate::segment::create_recorded(&books, bytes)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let floor = Floor {
            shmem,
            name,
            words,
            created: Some((books, claim)),
        };
        for w in floor.words() {
            w.store(0, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(floor)
    }

    /// Opens the region `name` made by [`create`](Self::create) in another process.
    pub fn open(name: &str) -> io::Result<Floor> {
        let shmem = ShmemConf::new()
            .os_id(name)
            .open()
            .map_err(|e| io::Error::other(e.to_string()))?;
        let words = shmem.len() / 8;
        Ok(Floor {
            shmem,
            name: name.to_string(),
            words,
            created: None,
        })
    }

    /// The region's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The region as atomic words.
    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is at least `words * 8` bytes (created so, or its length read
        // at open), page aligned (so aligned for AtomicU64), and lives as long as `self`;
        // every bit pattern is a valid AtomicU64, and all access through the slice is atomic.
        unsafe { std::slice::from_raw_parts(self.shmem.as_ptr().cast::<AtomicU64>(), self.words) }
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        if let Some((books, _claim)) = &self.created {
            let _ = books.unlink(&self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn two_mappings_see_the_same_words_and_the_creator_removes_the_name() {
        let a = Floor::create(64).unwrap();
        let b = Floor::open(a.name()).unwrap();
        assert!(a.name().len() <= 31);
        a.words()[17].store(42, Ordering::Release);
        assert_eq!(b.words()[17].load(Ordering::Acquire), 42);
        assert!(b.words().len() >= 64);
        let name = a.name().to_string();
        // Recorded while it lives, like a segment: no sweep takes it.
        let bare = name.trim_start_matches('/').to_string();
        assert!(crate::segment::recorded_names().contains(&bare));
        drop(b);
        drop(a);
        assert!(!crate::sys::shm::object_exists(&name));
        assert!(!crate::segment::recorded_names().contains(&bare));
    }
}
