//! The shared-memory segment: creation, opening, validation, unlinking and sweeping.
//!
//! Layout (all `#[repr(C)]`, positions as integers, no pointers):
//!
//! ```text
//! 0                      Header (magic, versions, geometry, pids, states, heartbeats, counters)
//! HEADER_BYTES           RingControl of the runner→worker ring
//! HEADER_BYTES + 512     RingControl of the worker→runner ring
//! DATA_OFFSET            data area of the runner→worker ring (capacity bytes)
//! DATA_OFFSET + capacity data area of the worker→runner ring (capacity bytes)
//! ```
//!
//! Names are `/ibbridge-<creator pid>-<128 random bits>`: unguessable, mode 0600, and unlinked
//! as soon as the worker has attached, so a crash afterwards leaks nothing and nobody can open
//! the segment later. Names whose creator pid is dead are swept by [`sweep_stale`].

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use shared_memory::{Shmem, ShmemConf, ShmemError};

use crate::ring::{self, Consumer, GeometryError, Line, Producer, RawRing, RingControl, RingStats};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::sys;

/// `"IBBRIDGE"` in little-endian: the first eight bytes of every segment.
pub const MAGIC: u64 = u64::from_le_bytes(*b"IBBRIDGE");
/// Version of the memory layout described here.
pub const LAYOUT_VERSION: u32 = 1;
/// Prefix of segment names (after the leading `/`).
pub const NAME_PREFIX: &str = "ibbridge-";

const HEADER_BYTES: usize = 4096;
const CONTROL_BYTES: usize = std::mem::size_of::<RingControl>();
const DATA_OFFSET: usize = 8192;
const SHM_DIR: &str = "/dev/shm";

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
}

/// A side's state in the header.
pub(crate) const STATE_ATTACHED: u32 = 1;
pub(crate) const STATE_CLOSED: u32 = 2;

#[repr(C)]
pub(crate) struct SideBlock {
    pub(crate) pid: AtomicU32,
    pub(crate) state: AtomicU32,
    pub(crate) heartbeat: AtomicU64,
}

#[repr(C)]
pub(crate) struct Counters {
    pub(crate) stray_replies: AtomicU64,
    pub(crate) dropped_logs: AtomicU64,
    pub(crate) dropped_events: AtomicU64,
}

/// The segment header. Written by the creator before the worker starts; afterwards only the
/// atomics of each side's own block and the counters change.
#[repr(C)]
pub(crate) struct Header {
    magic: AtomicU64,
    layout_version: AtomicU32,
    protocol_version: AtomicU32,
    header_bytes: AtomicU32,
    max_frame: AtomicU32,
    ring_capacity: AtomicU64,
    total_bytes: AtomicU64,
    runner: Line<SideBlock>,
    worker: Line<SideBlock>,
    pub(crate) counters: Line<Counters>,
}

impl Header {
    pub(crate) fn side(&self, side: Side) -> &SideBlock {
        match side {
            Side::Runner => &self.runner.0,
            Side::Worker => &self.worker.0,
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

impl Default for Geometry {
    fn default() -> Self {
        Geometry {
            ring_capacity: 1 << 20,
            max_frame: 256 << 10,
        }
    }
}

impl Geometry {
    fn total_bytes(&self) -> usize {
        DATA_OFFSET + 2 * self.ring_capacity
    }
}

/// Why a segment could not be created or opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum SegmentError {
    /// The requested ring sizes are invalid.
    Geometry(GeometryError),
    /// The operating system refused to create the segment.
    Create(String),
    /// No segment of that name (it was never made, or is already unlinked).
    Open { name: String, reason: String },
    /// The segment is smaller than its header claims, or than a header.
    Size { expected: usize, found: usize },
    /// Not a bridge segment.
    Magic(u64),
    /// A segment of another layout version.
    LayoutVersion { ours: u32, theirs: u32 },
    /// The header's geometry is invalid.
    BadGeometry(GeometryError),
}

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentError::Geometry(e) => write!(f, "invalid ring geometry: {e}"),
            SegmentError::Create(e) => write!(f, "cannot create shared memory segment: {e}"),
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
        }
    }
}

impl std::error::Error for SegmentError {}

/// A mapped bridge segment.
pub struct Segment {
    shmem: Shmem,
    name: String,
    geometry: Geometry,
    created: bool,
    unlinked: AtomicBool,
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
    /// Creates a new segment named after this process, initialised and zeroed.
    pub fn create(geometry: Geometry, protocol_version: u32) -> Result<Arc<Segment>, SegmentError> {
        ring::check_geometry(geometry.ring_capacity, geometry.max_frame)
            .map_err(SegmentError::Geometry)?;
        let total = geometry.total_bytes();
        let (shmem, name) = loop {
            let rand = sys::random_u128().map_err(|e| SegmentError::Create(e.to_string()))?;
            let name = format!("/{NAME_PREFIX}{}-{rand:032x}", std::process::id());
            match ShmemConf::new().size(total).os_id(&name).create() {
                Ok(shmem) => break (shmem, name),
                Err(ShmemError::MappingIdExists) => continue,
                Err(e) => return Err(SegmentError::Create(e.to_string())),
            }
        };
        let mut shmem = shmem;
        // We unlink ourselves (earlier than drop, and exactly once).
        shmem.set_owner(false);
        let seg = Segment {
            shmem,
            name,
            geometry,
            created: true,
            unlinked: AtomicBool::new(false),
        };
        if seg.shmem.len() < total {
            return Err(SegmentError::Size {
                expected: total,
                found: seg.shmem.len(),
            });
        }
        // SAFETY: the mapping is `total` writable bytes; nobody else has opened it yet. Writing
        // zeros faults every page in now rather than on the first messages.
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
        h.runner.0.pid.store(std::process::id(), Ordering::Relaxed);
        h.runner.0.state.store(STATE_ATTACHED, Ordering::Relaxed);
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
        let mut seg = Segment {
            shmem,
            name: name.to_string(),
            geometry: Geometry::default(),
            created: false,
            unlinked: AtomicBool::new(false),
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

    /// Where the name appears in the file system while it is linked.
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
        match std::fs::remove_file(self.path()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the mapping is at least DATA_OFFSET bytes (checked at create/open), page
        // aligned, and lives as long as `self`; a zeroed or hostile header is still a valid
        // Header since it consists only of atomics.
        unsafe { &*self.shmem.as_ptr().cast::<Header>() }
    }

    fn control(&self, index: usize) -> *const RingControl {
        // SAFETY: index is 0 or 1, so the offset is inside the mapping's first DATA_OFFSET
        // bytes (static assertion above) and aligned for RingControl.
        unsafe {
            self.shmem
                .as_ptr()
                .add(HEADER_BYTES + index * CONTROL_BYTES)
                .cast()
        }
    }

    fn data(&self, index: usize) -> *mut u8 {
        // SAFETY: the mapping holds DATA_OFFSET + 2 * capacity bytes (validated).
        unsafe {
            self.shmem
                .as_ptr()
                .add(DATA_OFFSET + index * self.geometry.ring_capacity)
        }
    }

    fn raw_ring(self: &Arc<Self>, index: usize) -> RawRing {
        let owner: Arc<dyn Send + Sync> = self.clone();
        // SAFETY: control block and data area lie inside the mapping, which `owner` keeps alive;
        // the geometry was validated; `endpoints` makes one producer and one consumer per ring
        // per side, and the protocol gives each ring one producer side and one consumer side.
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
    /// worker the opposite. Call once per side.
    pub fn endpoints(self: &Arc<Self>, side: Side) -> (Producer, Consumer) {
        let (tx, rx) = match side {
            Side::Runner => (0, 1),
            Side::Worker => (1, 0),
        };
        (
            Producer::new(self.raw_ring(tx)),
            Consumer::new(self.raw_ring(rx)),
        )
    }

    /// Wakes every sleeper on every doorbell of the segment, in both processes.
    pub(crate) fn wake_all(&self) {
        for i in 0..2 {
            // SAFETY: see `control`.
            unsafe { &*self.control(i) }.wake_all();
        }
    }

    /// Counters of the ring a side writes.
    pub fn ring_stats(&self, writer: Side) -> RingStats {
        let i = match writer {
            Side::Runner => 0,
            Side::Worker => 1,
        };
        // SAFETY: see `control`.
        unsafe { &*self.control(i) }.stats()
    }

    /// The header's counters and both rings' counters.
    pub fn stats(&self) -> SegmentStats {
        let c = &self.header().counters.0;
        SegmentStats {
            to_worker: self.ring_stats(Side::Runner),
            to_runner: self.ring_stats(Side::Worker),
            stray_replies: c.stray_replies.load(Ordering::Relaxed),
            dropped_logs: c.dropped_logs.load(Ordering::Relaxed),
            dropped_events: c.dropped_events.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.created {
            let _ = self.unlink();
        }
    }
}

/// Diagnostic counters of a segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentStats {
    /// The runner→worker ring.
    pub to_worker: RingStats,
    /// The worker→runner ring.
    pub to_runner: RingStats,
    /// Replies whose request id was not (or no longer) awaited; dropped.
    pub stray_replies: u64,
    /// Worker log records dropped because the ring was full.
    pub dropped_logs: u64,
    /// Events dropped because nobody drained them.
    pub dropped_events: u64,
}

/// Removes segment names left by processes that no longer exist (earlier crashes). Returns how
/// many were removed. Names of live processes, and of other users, are left alone.
pub fn sweep_stale() -> usize {
    let Ok(dir) = std::fs::read_dir(SHM_DIR) else {
        return 0;
    };
    let me = std::process::id();
    let mut removed = 0;
    for entry in dir.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        let Some(pid) = stale_candidate_pid(name) else {
            continue;
        };
        if pid != me && !sys::process_alive(pid) && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The creator pid in a segment file name, if the name is one of ours.
fn stale_candidate_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let (pid, rand) = rest.split_once('-')?;
    if rand.len() != 32 || !rand.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_created_segment_is_private_and_opens_with_its_geometry() {
        let g = Geometry {
            ring_capacity: 4096,
            max_frame: 1024,
        };
        let seg = Segment::create(g, 7).unwrap();
        let meta = std::fs::metadata(seg.path()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(seg.name().contains(&format!("-{}-", std::process::id())));
        let other = Segment::open(seg.name()).unwrap();
        assert_eq!(other.geometry(), g);
        assert_eq!(other.protocol_version(), 7);
        seg.unlink().unwrap();
        assert!(!seg.path().exists());
        assert!(matches!(
            Segment::open(seg.name()),
            Err(SegmentError::Open { .. })
        ));
        // Both mappings still work after the unlink.
        let (mut tx, _) = seg.endpoints(Side::Runner);
        let (_, mut rx) = other.endpoints(Side::Worker);
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
        assert_eq!(rand.len(), 32);
    }

    #[test]
    fn dropping_the_creator_removes_the_name() {
        let seg = Segment::create(Geometry::default(), 1).unwrap();
        let path = seg.path();
        assert!(path.exists());
        drop(seg);
        assert!(!path.exists());
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

    #[test]
    fn stale_names_of_dead_pids_are_swept_and_live_ones_kept() {
        // A pid that cannot exist (above the kernel's pid_max limit of 2^22).
        let dead = format!(
            "{SHM_DIR}/{NAME_PREFIX}{}-{:032x}",
            4_194_999u32, 0xabcdu128
        );
        let live = format!(
            "{SHM_DIR}/{NAME_PREFIX}{}-{:032x}",
            std::process::id(),
            0xabcdu128
        );
        let unrelated = format!("{SHM_DIR}/{NAME_PREFIX}{}-notours", 4_194_999u32);
        for p in [&dead, &live, &unrelated] {
            std::fs::write(p, b"").unwrap();
        }
        assert!(sweep_stale() >= 1);
        assert!(!std::path::Path::new(&dead).exists());
        assert!(std::path::Path::new(&live).exists());
        assert!(std::path::Path::new(&unrelated).exists());
        std::fs::remove_file(&live).unwrap();
        std::fs::remove_file(&unrelated).unwrap();
    }
}
