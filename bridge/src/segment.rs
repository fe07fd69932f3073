//! The shared-memory segment: creation, opening, validation, unlinking and sweeping.
//!
//! Layout (all `#[repr(C)]`, positions as integers, no pointers):
//!
//! ```text
//! 0                      Header (magic, versions, geometry, and per side: pid, state, heartbeat)
//! HEADER_BYTES           RingControl of the runner→worker ring
//! HEADER_BYTES + 512     RingControl of the worker→runner ring
//! DATA_OFFSET            data area of the runner→worker ring (capacity bytes)
//! DATA_OFFSET + capacity data area of the worker→runner ring (capacity bytes)
//! ```
//!
//! Invariants:
//! - names are `/ibbridge-<creator pid>-<random>` (30 characters, at least 60 random bits):
//!   unguessable, mode 0600, and unlinked as soon as the worker has attached, so a crash
//!   afterwards leaks nothing and nobody can open the segment later;
//! - on Linux the creator reserves every byte of the segment before touching it (a short
//!   `/dev/shm` is an error at creation, [`SegmentError::NoSpace`], never a SIGBUS later);
//! - the creator holds an exclusive `flock` on the name's record (Linux: the `/dev/shm` file;
//!   macOS: a lock file in a per-user directory, made before the object) until the name is
//!   unlinked or the creator dies; [`sweep_stale`] removes a name only when nobody holds that
//!   lock and it is older than [`SWEEP_GRACE`]: a pid in a name means nothing in another PID
//!   namespace (containers sharing one `/dev/shm`), a lock does. How the two platforms differ
//!   is in `sys/shm.rs`;
//! - in one process each side's ring ends are handed out once per shared memory object
//!   (identified by its inode, whatever name it was opened under: [`Segment::endpoints`]), so
//!   safe code can never make two producers or two consumers of one ring;
//! - nothing read from the header is trusted: geometry and sizes are validated at open.

use std::fmt;
use std::io;
#[cfg(target_os = "linux")]
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared_memory::{Shmem, ShmemConf, ShmemError};

use crate::ring::{self, CachePadded, Consumer, GeometryError, Producer, RawRing, RingControl};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::sys;
use crate::sys::shm::{Bookkeeping, Claim, ReserveError};

/// `"IBBRIDGE"` in little-endian: the first eight bytes of every segment.
pub const MAGIC: u64 = u64::from_le_bytes(*b"IBBRIDGE");
/// Version of the memory layout described here.
pub const LAYOUT_VERSION: u32 = 2;
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

const HEADER_BYTES: usize = 4096;
const CONTROL_BYTES: usize = std::mem::size_of::<RingControl>();
const DATA_OFFSET: usize = 8192;

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_BYTES);
const _: () = assert!(HEADER_BYTES + 2 * CONTROL_BYTES <= DATA_OFFSET);
const _: () = assert!(HEADER_BYTES.is_multiple_of(std::mem::align_of::<RingControl>()));

/// Which process a value belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The process that created the segment and started the worker.
    Runner,
    /// The process started by the runner.
    Worker,
}

impl Side {
    /// The other side.
    pub fn peer(self) -> Side {
        match self {
            Side::Runner => Side::Worker,
            Side::Worker => Side::Runner,
        }
    }

    fn index(self) -> usize {
        match self {
            Side::Runner => 0,
            Side::Worker => 1,
        }
    }
}

/// A side's state in the header.
pub(crate) const STATE_ATTACHED: u32 = 1;
pub(crate) const STATE_CLOSED: u32 = 2;

/// One side's block of the header; written only by that side.
#[repr(C)]
pub(crate) struct SideBlock {
    pub(crate) pid: AtomicU32,
    pub(crate) state: AtomicU32,
    pub(crate) heartbeat: AtomicU64,
}

/// The segment header. Written by the creator before the worker starts; afterwards only the
/// atomics of each side's own block change.
#[repr(C)]
pub(crate) struct Header {
    magic: AtomicU64,
    layout_version: AtomicU32,
    protocol_version: AtomicU32,
    header_bytes: AtomicU32,
    max_frame: AtomicU32,
    ring_capacity: AtomicU64,
    total_bytes: AtomicU64,
    runner: CachePadded<SideBlock>,
    worker: CachePadded<SideBlock>,
}

impl Header {
    pub(crate) fn side(&self, side: Side) -> &SideBlock {
        match side {
            Side::Runner => &self.runner,
            Side::Worker => &self.worker,
        }
    }
}

/// Sizes of a segment's rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes of each ring's data area; a power of two.
    pub ring_capacity: usize,
    /// Largest frame payload, at most half a ring.
    pub max_frame: usize,
}

impl Geometry {
    /// The default ring capacity: 1 MiB per direction.
    pub const DEFAULT_RING_CAPACITY: usize = 1 << 20;
    /// The default maximum frame: 256 KiB.
    pub const DEFAULT_MAX_FRAME: usize = 256 << 10;

    /// Bytes of shared memory a segment of this geometry needs (header, control blocks and
    /// both data areas).
    pub fn total_bytes(&self) -> usize {
        DATA_OFFSET + 2 * self.ring_capacity
    }
}

impl Default for Geometry {
    fn default() -> Self {
        Geometry {
            ring_capacity: Self::DEFAULT_RING_CAPACITY,
            max_frame: Self::DEFAULT_MAX_FRAME,
        }
    }
}

/// Why a segment could not be created or opened, or its ends not handed out.
#[derive(Debug)]
#[non_exhaustive]
pub enum SegmentError {
    /// The requested ring sizes are invalid.
    Geometry(GeometryError),
    /// The operating system refused to create the segment.
    Create(String),
    /// `/dev/shm` has not enough room for the segment (Linux). Nothing was left behind.
    NoSpace {
        /// Bytes the segment needs.
        needed: u64,
        /// Bytes `/dev/shm` had free, if it could be asked.
        available: Option<u64>,
    },
    /// The directory where segment names are recorded (macOS) cannot be used.
    Registry {
        /// The directory.
        dir: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No segment of that name (it was never made, or is already unlinked).
    Open {
        /// The name asked for.
        name: String,
        /// What the operating system said.
        reason: String,
    },
    /// The segment is smaller than its header claims, or than a header.
    Size {
        /// Bytes the header (or the layout) requires.
        expected: usize,
        /// Bytes the mapping has.
        found: usize,
    },
    /// Not a bridge segment.
    Magic(u64),
    /// A segment of another layout version.
    LayoutVersion {
        /// This build's layout version.
        ours: u32,
        /// The segment's.
        theirs: u32,
    },
    /// The header's geometry is invalid.
    BadGeometry(GeometryError),
    /// This side's ring ends of this segment were already handed out in this process.
    EndpointsTaken(Side),
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentError::Geometry(e) => write!(f, "invalid ring geometry: {e}"),
            SegmentError::Create(e) => write!(f, "cannot create shared memory segment: {e}"),
            SegmentError::NoSpace { needed, available } => {
                write!(
                    f,
                    "not enough shared memory: the bridge needs {} in {SHM_DIR}",
                    mib(*needed)
                )?;
                if let Some(a) = available {
                    write!(f, ", which has {} free", mib(*a))?;
                }
                write!(
                    f,
                    "; lower bridge.ring_capacity (each of the two rings takes that much) or \
                     give {SHM_DIR} more room (in Docker: docker run --shm-size=256m)"
                )
            }
            SegmentError::Registry { dir, reason } => {
                write!(f, "cannot record shared memory segments in {dir}: {reason}")
            }
            SegmentError::Open { name, reason } => {
                write!(f, "cannot open shared memory segment {name}: {reason}")
            }
            SegmentError::Size { expected, found } => {
                write!(f, "segment is {found} bytes, its header says {expected}")
            }
            SegmentError::Magic(m) => write!(f, "not a bridge segment (magic {m:#018x})"),
            SegmentError::LayoutVersion { ours, theirs } => write!(
                f,
                "segment layout version {theirs} does not match this build's {ours}"
            ),
            SegmentError::BadGeometry(e) => write!(f, "segment header is invalid: {e}"),
            SegmentError::EndpointsTaken(side) => write!(
                f,
                "the {side:?} side's ring ends of this segment are already in use in this process"
            ),
        }
    }
}

impl std::error::Error for SegmentError {}

/// The (shared memory object, side) pairs whose ring ends this process handed out. A second
/// request for the same pair, from the same `Segment` or from another mapping of the same
/// object (under the same name, an alias of it, or a hard link), is refused: two producers
/// (or consumers) of one ring would race on its data area.
static CLAIMED: Mutex<Vec<(ObjectId, Side)>> = Mutex::new(Vec::new());

/// Identifies a shared memory object: its device and inode where `/proc` tells them (any
/// name of the object, or none, leads to the same), else its name without leading slashes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ObjectId {
    Inode(String, u64),
    Name(String),
}

impl ObjectId {
    fn of(shmem: &Shmem, name: &str) -> ObjectId {
        match sys::shm::object_identity(shmem.as_ptr() as usize) {
            Some((dev, inode)) => ObjectId::Inode(dev, inode),
            None => ObjectId::Name(name.trim_start_matches('/').to_string()),
        }
    }
}

/// A mapped bridge segment.
pub struct Segment {
    shmem: Shmem,
    name: String,
    geometry: Geometry,
    /// Whether this process created the name (and so removes it).
    created: bool,
    /// Where the name is recorded.
    books: Bookkeeping,
    /// The creator's hold on its name, until the Segment drops.
    _claim: Option<Claim>,
    unlinked: AtomicBool,
    /// The object mapped, for the take-once registry.
    id: ObjectId,
    /// Which sides' ends this Segment handed out (released when it drops).
    claimed: [AtomicBool; 2],
}

// SAFETY: the mapping stays valid while the Segment lives; everything in it is accessed through
// atomics or through the ring protocol, never through shared `&mut`.
unsafe impl Send for Segment {}
// SAFETY: as above.
unsafe impl Sync for Segment {}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("geometry", &self.geometry)
            .field("created", &self.created)
            .finish()
    }
}

impl Segment {
    /// Creates a new segment named after this process: reserves its memory, locks it, zeroes
    /// it and writes the header. On any error nothing is left behind.
    pub fn create(geometry: Geometry, protocol_version: u32) -> Result<Arc<Segment>, SegmentError> {
        Segment::create_with(Bookkeeping::native(), geometry, protocol_version)
    }

    /// [`create`](Self::create), with the name recorded in `books`.
    pub(crate) fn create_with(
        books: Bookkeeping,
        geometry: Geometry,
        protocol_version: u32,
    ) -> Result<Arc<Segment>, SegmentError> {
        ring::check_geometry(geometry.ring_capacity, geometry.max_frame)
            .map_err(SegmentError::Geometry)?;
        let total = geometry.total_bytes();
        let (shmem, name, claim) = create_recorded(&books, total)?;
        let id = ObjectId::of(&shmem, &name);
        let seg = Segment {
            shmem,
            name,
            geometry,
            created: true,
            books,
            _claim: Some(claim),
            id,
            unlinked: AtomicBool::new(false),
            claimed: [AtomicBool::new(false), AtomicBool::new(false)],
        };
        // From here on, dropping `seg` on an error unlinks the name.
        if seg.shmem.len() < total {
            return Err(SegmentError::Size {
                expected: total,
                found: seg.shmem.len(),
            });
        }
        // SAFETY: the mapping is `total` writable bytes (on Linux all of them reserved above,
        // so no page can fault for want of memory; macOS backs it with pageable memory);
        // nobody else has opened it yet. Writing zeros faults every page in now rather than on the first messages.
        unsafe { std::ptr::write_bytes(seg.shmem.as_ptr(), 0, total) };
        let h = seg.header();
        h.layout_version.store(LAYOUT_VERSION, Ordering::Relaxed);
        h.protocol_version
            .store(protocol_version, Ordering::Relaxed);
        h.header_bytes.store(HEADER_BYTES as u32, Ordering::Relaxed);
        h.max_frame
            .store(geometry.max_frame as u32, Ordering::Relaxed);
        h.ring_capacity
            .store(geometry.ring_capacity as u64, Ordering::Relaxed);
        h.total_bytes.store(total as u64, Ordering::Relaxed);
        h.runner.pid.store(std::process::id(), Ordering::Relaxed);
        h.runner.state.store(STATE_ATTACHED, Ordering::Relaxed);
        // SYNC POINT: everything above is visible to an opener that Acquire-loads the magic.
        h.magic.store(MAGIC, Ordering::Release);
        Ok(Arc::new(seg))
    }

    /// Opens and validates an existing segment by name.
    pub fn open(name: &str) -> Result<Arc<Segment>, SegmentError> {
        let shmem = ShmemConf::new()
            .os_id(name)
            .open()
            .map_err(|e| SegmentError::Open {
                name: name.to_string(),
                reason: e.to_string(),
            })?;
        let found = shmem.len();
        if found < DATA_OFFSET {
            return Err(SegmentError::Size {
                expected: DATA_OFFSET,
                found,
            });
        }
        let id = ObjectId::of(&shmem, name);
        let mut seg = Segment {
            shmem,
            name: name.to_string(),
            geometry: Geometry::default(),
            created: false,
            books: Bookkeeping::native(),
            _claim: None,
            id,
            unlinked: AtomicBool::new(false),
            claimed: [AtomicBool::new(false), AtomicBool::new(false)],
        };
        let h = seg.header();
        // SYNC POINT: pairs with the creator's Release store of the magic.
        let magic = h.magic.load(Ordering::Acquire);
        if magic != MAGIC {
            return Err(SegmentError::Magic(magic));
        }
        let layout = h.layout_version.load(Ordering::Relaxed);
        if layout != LAYOUT_VERSION {
            return Err(SegmentError::LayoutVersion {
                ours: LAYOUT_VERSION,
                theirs: layout,
            });
        }
        let capacity = usize::try_from(h.ring_capacity.load(Ordering::Relaxed)).unwrap_or(0);
        let max_frame = h.max_frame.load(Ordering::Relaxed) as usize;
        ring::check_geometry(capacity, max_frame).map_err(SegmentError::BadGeometry)?;
        let geometry = Geometry {
            ring_capacity: capacity,
            max_frame,
        };
        let expected = geometry.total_bytes();
        let claimed = h.total_bytes.load(Ordering::Relaxed);
        if claimed != expected as u64 || found < expected {
            return Err(SegmentError::Size { expected, found });
        }
        seg.geometry = geometry;
        Ok(Arc::new(seg))
    }

    /// The name the segment was created under (with its leading `/`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the name appears in the file system while it is linked (Linux).
    #[cfg(target_os = "linux")]
    pub fn path(&self) -> PathBuf {
        PathBuf::from(SHM_DIR).join(self.name.trim_start_matches('/'))
    }

    /// The ring sizes.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The protocol version the creator wrote into the header.
    pub fn protocol_version(&self) -> u32 {
        self.header().protocol_version.load(Ordering::Relaxed)
    }

    /// Removes the name, so nobody else can open the segment; the mapping stays valid for the
    /// processes that have it. Idempotent; a name already gone is not an error.
    pub fn unlink(&self) -> io::Result<()> {
        if self
            .unlinked
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return Ok(());
        }
        self.books.unlink(&self.name)
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the mapping is at least DATA_OFFSET bytes (checked at create/open), page
        // aligned, and lives as long as `self`; a zeroed or hostile header is still a valid
        // Header since it consists only of atomics.
        unsafe { &*self.shmem.as_ptr().cast::<Header>() }
    }

    fn control(&self, index: usize) -> &RingControl {
        debug_assert!(index < 2);
        // SAFETY: index is 0 or 1, so the offset is inside the mapping's first DATA_OFFSET
        // bytes (static assertion above) and aligned for RingControl, which consists only of
        // atomics (any bytes are a valid value); the mapping lives as long as `self`.
        unsafe {
            &*self
                .shmem
                .as_ptr()
                .add(HEADER_BYTES + index * CONTROL_BYTES)
                .cast::<RingControl>()
        }
    }

    fn data(&self, index: usize) -> *mut u8 {
        debug_assert!(index < 2);
        // SAFETY: the mapping holds DATA_OFFSET + 2 * capacity bytes (validated).
        unsafe {
            self.shmem
                .as_ptr()
                .add(DATA_OFFSET + index * self.geometry.ring_capacity)
        }
    }

    fn raw_ring(self: &Arc<Self>, index: usize) -> RawRing {
        let owner: Arc<dyn Send + Sync> = self.clone();
        // SAFETY: control block and data area lie inside the mapping, which `owner` keeps alive,
        // and the data area is page aligned plus a multiple of the capacity; the geometry was
        // validated; `endpoints` hands each ring's producer and consumer out at most once per
        // process (a side takes its producer of one ring and its consumer of the other).
        unsafe {
            RawRing::new(
                self.control(index),
                self.data(index),
                self.geometry.ring_capacity,
                self.geometry.max_frame,
                owner,
            )
        }
    }

    /// The producer and consumer a side uses: the runner writes ring 0 and reads ring 1, the
    /// worker the opposite. Each side's ends are handed out once per shared memory object in
    /// this process, whatever name it was opened under; a second call fails with
    /// [`SegmentError::EndpointsTaken`].
    pub fn endpoints(self: &Arc<Self>, side: Side) -> Result<(Producer, Consumer), SegmentError> {
        {
            let mut claimed = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
            if claimed.iter().any(|(id, s)| *id == self.id && *s == side) {
                return Err(SegmentError::EndpointsTaken(side));
            }
            claimed.push((self.id.clone(), side));
            self.claimed[side.index()].store(true, std::sync::atomic::Ordering::Release);
        }
        let (tx, rx) = match side {
            Side::Runner => (0, 1),
            Side::Worker => (1, 0),
        };
        Ok((
            Producer::new(self.raw_ring(tx)),
            Consumer::new(self.raw_ring(rx)),
        ))
    }

    /// Writes `bytes` at `offset` of the mapping, as a hostile peer could, with atomic stores
    /// of whole words (as another process's writes are to us): for tests. `offset` and the
    /// length are multiples of 8.
    #[cfg(test)]
    pub(crate) fn scribble(&self, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= self.geometry.total_bytes());
        assert!(offset.is_multiple_of(8) && bytes.len().is_multiple_of(8));
        for (i, chunk) in bytes.chunks_exact(8).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            // SAFETY: in bounds of the mapping (asserted), 8-aligned (the mapping is page
            // aligned and the offset a multiple of 8); every other access to these words is
            // atomic or ordered by the ring protocol.
            unsafe {
                let at = self.shmem.as_ptr().add(offset + 8 * i).cast::<u64>();
                std::sync::atomic::AtomicU64::from_ptr(at).store(
                    u64::from_ne_bytes(word),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
        }
    }

    /// Offset in the mapping of ring `index`'s control block (0: runner→worker), and of its
    /// consumer position within it: for tests.
    #[cfg(test)]
    pub(crate) fn control_offset(index: usize) -> usize {
        HEADER_BYTES + index * CONTROL_BYTES
    }

    /// Wakes every sleeper on every doorbell of the segment, in both processes.
    pub(crate) fn wake_all(&self) {
        for i in 0..2 {
            self.control(i).wake_all();
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.created {
            let _ = self.unlink();
        }
        // Every end made from this Segment held an Arc of it: none is left, so the sides it
        // handed out may be handed out again.
        if self
            .claimed
            .iter()
            .any(|c| c.load(std::sync::atomic::Ordering::Acquire))
        {
            let mut claimed = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
            claimed.retain(|(id, s)| {
                *id != self.id
                    || !self.claimed[s.index()].load(std::sync::atomic::Ordering::Acquire)
            });
        }
    }
}

/// Makes a new shared memory object of `bytes` under a new name of this process, recorded
/// in `books` with the creator's hold on it and its memory reserved: what a [`Segment`] (and
/// the benchmarks' floor) is created in. The object is not unlinked when the returned `Shmem`
/// drops: its creator unlinks it through `books`. On any error nothing is left behind.
pub(crate) fn create_recorded(
    books: &Bookkeeping,
    bytes: usize,
) -> Result<(Shmem, String, Claim), SegmentError> {
    for _ in 0..CREATE_TRIES {
        let name = sys::shm::new_name(std::process::id())
            .map_err(|e| SegmentError::Create(e.to_string()))?;
        let mut claim = match books.claim(&name) {
            Ok(claim) => claim,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(SegmentError::Registry {
                    dir: books.place(),
                    reason: e.to_string(),
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
                return Err(SegmentError::Create(e.to_string()));
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
                ReserveError::Other(e) => SegmentError::Create(e),
            });
        }
        return Ok((shmem, name, claim));
    }
    Err(SegmentError::Create(format!(
        "no free segment name after {CREATE_TRIES} tries"
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::shm::{try_lock_exclusive, Registry};
    use std::path::Path;
    use std::time::SystemTime;

    fn small() -> Geometry {
        Geometry {
            ring_capacity: 4096,
            max_frame: 1024,
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_created_segment_is_private_and_opens_with_its_geometry() {
        use std::os::unix::fs::PermissionsExt;
        let seg = Segment::create(small(), 7).unwrap();
        let meta = std::fs::metadata(seg.path()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(seg.name().contains(&format!("-{}-", std::process::id())));
        let other = Segment::open(seg.name()).unwrap();
        assert_eq!(other.geometry(), small());
        assert_eq!(other.protocol_version(), 7);
        seg.unlink().unwrap();
        assert!(!seg.path().exists());
        assert!(matches!(
            Segment::open(seg.name()),
            Err(SegmentError::Open { .. })
        ));
        // Both mappings still work after the unlink.
        let (mut tx, _) = seg.endpoints(Side::Runner).unwrap();
        let (_, mut rx) = other.endpoints(Side::Worker).unwrap();
        tx.try_push(b"still here").unwrap();
        let mut out = Vec::new();
        assert!(rx.pop_into(&mut out).unwrap());
        assert_eq!(out, b"still here");
    }

    #[test]
    fn names_are_unguessable() {
        let a = Segment::create(Geometry::default(), 1).unwrap();
        let b = Segment::create(Geometry::default(), 1).unwrap();
        assert_ne!(a.name(), b.name());
        let rand = a.name().rsplit('-').next().unwrap();
        assert!(rand.len() >= 12, "{}", a.name());
        assert!(a.name().len() <= 31, "{}", a.name());
    }

    #[test]
    fn dropping_the_creator_removes_the_name() {
        let seg = Segment::create(Geometry::default(), 1).unwrap();
        let name = seg.name().trim_start_matches('/').to_string();
        assert!(recorded_names().contains(&name));
        drop(seg);
        assert!(!recorded_names().contains(&name));
        assert!(matches!(
            Segment::open(&format!("/{name}")),
            Err(SegmentError::Open { .. })
        ));
    }

    #[test]
    fn a_bad_magic_or_layout_is_refused() {
        let seg = Segment::create(Geometry::default(), 1).unwrap();
        seg.header().magic.store(0x1234, Ordering::Release);
        assert!(matches!(
            Segment::open(seg.name()),
            Err(SegmentError::Magic(0x1234))
        ));
        seg.header().magic.store(MAGIC, Ordering::Release);
        seg.header().layout_version.store(99, Ordering::Relaxed);
        assert!(matches!(
            Segment::open(seg.name()),
            Err(SegmentError::LayoutVersion {
                ours: LAYOUT_VERSION,
                theirs: 99
            })
        ));
        seg.header()
            .layout_version
            .store(LAYOUT_VERSION, Ordering::Relaxed);
        seg.header().ring_capacity.store(1000, Ordering::Relaxed);
        assert!(matches!(
            Segment::open(seg.name()),
            Err(SegmentError::BadGeometry(_))
        ));
        seg.header().ring_capacity.store(1 << 30, Ordering::Relaxed);
        seg.header().max_frame.store(1024, Ordering::Relaxed);
        assert!(matches!(
            Segment::open(seg.name()),
            Err(SegmentError::Size { .. })
        ));
    }

    #[test]
    fn an_invalid_geometry_is_refused_at_create() {
        let g = Geometry {
            ring_capacity: 1000,
            max_frame: 10,
        };
        assert!(matches!(
            Segment::create(g, 1),
            Err(SegmentError::Geometry(_))
        ));
    }

    /// Two producers of one ring would race on its data area: safe code must not get them,
    /// neither from the same `Segment` nor from a second mapping of the same name.
    #[test]
    fn two_producers_of_one_ring_cannot_be_made_from_safe_code() {
        let seg = Segment::create(small(), 1).unwrap();
        let runner = seg.endpoints(Side::Runner).unwrap();
        assert!(matches!(
            seg.endpoints(Side::Runner),
            Err(SegmentError::EndpointsTaken(Side::Runner))
        ));
        let again = Segment::open(seg.name()).unwrap();
        assert!(matches!(
            again.endpoints(Side::Runner),
            Err(SegmentError::EndpointsTaken(Side::Runner))
        ));
        // The other side's ends are still there, once.
        let worker = again.endpoints(Side::Worker).unwrap();
        assert!(matches!(
            seg.endpoints(Side::Worker),
            Err(SegmentError::EndpointsTaken(Side::Worker))
        ));
        // Other names of the same object: without its leading slash, with two, a hard link.
        #[cfg(target_os = "linux")]
        {
            let bare = seg.name().trim_start_matches('/').to_string();
            let link = PathBuf::from(SHM_DIR).join(format!("{bare}-link"));
            std::fs::hard_link(seg.path(), &link).unwrap();
            for alias in [bare.clone(), format!("//{bare}"), format!("/{bare}-link")] {
                let other = Segment::open(&alias).unwrap();
                assert!(
                    matches!(
                        other.endpoints(Side::Runner),
                        Err(SegmentError::EndpointsTaken(Side::Runner))
                    ),
                    "{alias}"
                );
            }
            std::fs::remove_file(&link).unwrap();
        }
        // Once every end and mapping is gone, the claims are released with them.
        let name = seg.name().to_string();
        drop((runner, worker, again));
        let reopened = Segment::open(&name).unwrap();
        drop(seg);
        assert!(reopened.endpoints(Side::Runner).is_ok());
        assert!(reopened.endpoints(Side::Worker).is_ok());
    }

    #[cfg(target_os = "linux")]
    fn candidate(pid: u32, tag: u128) -> PathBuf {
        PathBuf::from(format!("{SHM_DIR}/{NAME_PREFIX}{pid}-{tag:032x}"))
    }

    fn age(path: &Path, by: Duration) {
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - by).unwrap();
    }

    /// Containers sharing one `/dev/shm` see each other's names, whose pids mean nothing in
    /// this PID namespace. A name whose creator still holds its lock is alive, whatever its
    /// pid says here; an unlocked one is stale, whatever its pid says here.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_sweep_trusts_the_creators_lock_not_the_pid_in_the_name() {
        let me = std::process::id();
        // A pid that cannot exist here (above the kernel's limit of 2^22), held locked by a
        // "creator in another namespace" (this test, through its own open file).
        let locked = candidate(4_194_999, me as u128);
        // A pid alive here (ours), but nobody holds the lock.
        let unlocked = candidate(me, 0xdead_0000 + me as u128);
        for p in [&locked, &unlocked] {
            std::fs::write(p, b"").unwrap();
            age(p, Duration::from_secs(60));
        }
        let holder = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&locked)
            .unwrap();
        assert!(try_lock_exclusive(&holder).unwrap());

        sweep_stale();
        assert!(locked.exists(), "a locked segment was swept");
        assert!(!unlocked.exists(), "an unlocked stale segment was kept");

        drop(holder);
        sweep_stale();
        assert!(!locked.exists(), "the lock was released but the name kept");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_young_name_is_not_swept_before_its_creator_could_lock_it() {
        let young = candidate(4_194_998, 0xbeef_0000 + std::process::id() as u128);
        std::fs::write(&young, b"").unwrap();
        sweep_stale();
        assert!(young.exists());
        age(&young, SWEEP_GRACE + Duration::from_secs(1));
        sweep_stale();
        assert!(!young.exists());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_live_creator_holds_its_lock_until_the_name_is_gone() {
        let seg = Segment::create(small(), 1).unwrap();
        age(&seg.path(), Duration::from_secs(60));
        sweep_stale();
        assert!(seg.path().exists());
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(seg.path())
            .unwrap();
        assert!(!try_lock_exclusive(&f).unwrap());
    }

    /// A registry of lock files in a directory of its own, removed when dropped.
    struct TestRegistry {
        dir: std::path::PathBuf,
        books: Bookkeeping,
    }

    impl TestRegistry {
        fn new(tag: &str) -> TestRegistry {
            let dir =
                std::env::temp_dir().join(format!("ibbridge-test-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            TestRegistry {
                books: Bookkeeping::Registry(Registry::at(dir.clone())),
                dir,
            }
        }

        fn lock_file(&self, name: &str) -> std::path::PathBuf {
            self.dir
                .join(format!("{}.lock", name.trim_start_matches('/')))
        }
    }

    impl Drop for TestRegistry {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// macOS's bookkeeping, run here: a segment's name is recorded by a locked lock file made
    /// before the object, and both go when the name is unlinked.
    #[test]
    fn a_registry_records_a_segment_until_it_is_unlinked() {
        let reg = TestRegistry::new("records");
        let seg = Segment::create_with(reg.books.clone(), small(), 3).unwrap();
        let bare = seg.name().trim_start_matches('/').to_string();
        assert_eq!(reg.books.names(), vec![bare.clone()]);
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(reg.lock_file(seg.name()))
            .unwrap();
        assert!(!try_lock_exclusive(&lock).unwrap(), "the creator holds it");
        // A live creator's name is not swept, however old its record.
        age(&reg.lock_file(seg.name()), Duration::from_secs(60));
        assert_eq!(reg.books.sweep_stale(), 0);
        let other = Segment::open(seg.name()).unwrap();
        assert_eq!(other.protocol_version(), 3);
        seg.unlink().unwrap();
        assert_eq!(reg.books.names(), Vec::<String>::new());
        assert!(matches!(
            Segment::open(seg.name()),
            Err(SegmentError::Open { .. })
        ));
        // The directory is private to its user.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&reg.dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    /// A creator that died leaves an unlocked lock file, with or without its object: the
    /// sweep unlinks the object and removes the record, once the record is old enough.
    #[test]
    fn a_registry_sweep_removes_what_a_dead_creator_left() {
        let reg = TestRegistry::new("sweep");
        // Died after making its object.
        let name = crate::sys::shm::new_name(std::process::id()).unwrap();
        let claim = reg.books.claim(&name).unwrap();
        let mut shmem = ShmemConf::new().size(4096).os_id(&name).create().unwrap();
        shmem.set_owner(false);
        drop(shmem);
        drop(claim);
        // Died between its lock file and its object.
        let early = crate::sys::shm::new_name(std::process::id()).unwrap();
        drop(reg.books.claim(&early).unwrap());
        assert!(ShmemConf::new().os_id(&name).open().is_ok());

        // Young records are left alone: their creators may be about to lock them.
        assert_eq!(reg.books.sweep_stale(), 0);
        assert_eq!(reg.books.names().len(), 2);
        for n in [&name, &early] {
            age(&reg.lock_file(n), SWEEP_GRACE + Duration::from_secs(1));
        }
        assert_eq!(reg.books.sweep_stale(), 2);
        assert_eq!(reg.books.names(), Vec::<String>::new());
        assert!(ShmemConf::new().os_id(&name).open().is_err(), "object left");
    }

    /// The worker learns its segment's name from its environment: a name that is not one of
    /// ours (`../` and the like) can make the registry remove nothing outside its directory.
    #[test]
    fn a_registry_refuses_names_that_are_not_segment_names() {
        let reg = TestRegistry::new("hostile");
        std::fs::create_dir_all(&reg.dir).unwrap();
        let outside = reg.dir.with_extension("victim.lock");
        std::fs::write(&outside, b"").unwrap();
        let hostile = format!("/../{}", outside.file_stem().unwrap().to_str().unwrap());
        let err = reg.books.unlink(&hostile).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        assert!(outside.exists(), "a file outside the registry was removed");
        assert!(reg.books.claim(&hostile).is_err());
        std::fs::remove_file(&outside).unwrap();
    }

    /// A registry directory someone else could write to is refused, with the directory named.
    #[test]
    fn a_registry_directory_open_to_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let reg = TestRegistry::new("open");
        std::fs::create_dir(&reg.dir).unwrap();
        std::fs::set_permissions(&reg.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        match Segment::create_with(reg.books.clone(), small(), 1) {
            Err(e @ SegmentError::Registry { .. }) => {
                let e = e.to_string();
                assert!(e.contains(&reg.dir.display().to_string()), "{e}");
                assert!(e.contains("0700"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read_dir(&reg.dir).unwrap().count(), 0);
    }
}
