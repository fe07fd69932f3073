//! The shared-memory segment: creation, opening, validation, unlinking and sweeping.
//!
//! The memory holds a header, then each ring's control block, then each ring's data area
//! (`layout.rs` draws it): all `#[repr(C)]`, positions as integers, no pointers.
//!
//! Invariants:
//! - names are `/ibbridge-<creator pid>-<random>` (30 characters, at least 60 random bits):
//!   unguessable, mode 0600, and unlinked as soon as the worker has attached, so a crash
//!   afterwards leaks nothing and nobody can open the segment later;
//! - on Linux a worker's segment is a memfd sealed against shrinking and growing
//!   ([`Segment::create_sealed`]), which it inherits: nobody, whatever descriptor they hold,
//!   can truncate it and make the other side die of SIGBUS, and it has no name to leave
//!   behind;
//! - on Linux the creator reserves every byte of the segment before touching it (a short
//!   `/dev/shm` or too little memory is an error at creation, [`SegmentError::NoSpace`] or
//!   [`SegmentError::NoMemory`], never a SIGBUS later);
//! - the creator holds an exclusive `flock` on the name's record (Linux: the `/dev/shm` file;
//!   macOS: a lock file in a per-user directory, made before the object) until the name is
//!   unlinked or the creator dies; [`sweep_stale`] removes a name only when nobody holds that
//!   lock and it is older than [`SWEEP_GRACE`]: a pid in a name means nothing in another PID
//!   namespace (containers sharing one `/dev/shm`), a lock does. How the two platforms differ
//!   is in `sys/shm.rs`;
//! - in one process each role's ring ends are handed out once per shared memory object
//!   (identified by its inode, whatever name it was opened under: [`Segment::endpoints`]), so
//!   safe code can never make two producers or two consumers of one ring;
//! - nothing read from the header is trusted: geometry and sizes are validated at open.
//!
//! Files, one concept each: `layout.rs` (the header and where everything lies, [`Geometry`]),
//! `role.rs` ([`Role`]: runner or worker), `mapping.rs` ([`Segment`]: create, open, unlink,
//! ring ends), `claims.rs` (the take-once rule), `names.rs` (making, listing and sweeping
//! names), `error.rs` ([`SegmentError`]). This file only names them.

mod claims;
mod error;
mod layout;
mod mapping;
mod names;
mod role;

pub use error::SegmentError;
pub use layout::{Geometry, LAYOUT_VERSION, MAGIC};
pub(crate) use layout::{STATE_ATTACHED, STATE_CLOSED};
pub use mapping::Segment;
#[cfg(target_os = "linux")]
pub(crate) use mapping::INHERITED_PREFIX;
#[cfg(any(test, feature = "bench"))]
pub(crate) use names::create_recorded;
pub use names::{exists, recorded_names, sweep_stale, NAME_PREFIX, SHM_DIR, SWEEP_GRACE};
pub use role::Role;

#[cfg(test)]
mod tests;
