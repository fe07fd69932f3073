//! A mapped segment ([`Segment`]): creating one (name, memory, header), opening and
//! validating one by name, unlinking its name, and handing out each role's ring ends.
//!
//! Invariants: nothing read from the header is trusted: geometry and sizes are validated at
//! open, before any ring is made; the creator writes the whole header before it publishes the
//! magic (Release), and an opener reads nothing before it has read the magic (Acquire); the
//! creator's name is unlinked when its `Segment` drops, if not before.

use std::fmt;
use std::io;
#[cfg(target_os = "linux")]
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use shared_memory::{Shmem, ShmemConf};

use super::claims::{self, ObjectId};
use super::error::SegmentError;
use super::layout::{
    Geometry, Header, CONTROL_BYTES, DATA_OFFSET, HEADER_BYTES, LAYOUT_VERSION, MAGIC,
    STATE_ATTACHED,
};
use super::names::create_recorded;
use super::role::Role;
use crate::ring::{self, Consumer, Producer, RawRing, RingControl};
use crate::sync::Ordering;
#[cfg(target_os = "linux")]
use crate::sys::memfd::{CreateError, SealedMemory};
use crate::sys::shm::{Bookkeeping, Claim};

/// The memory a segment lives in.
enum Memory {
    /// A POSIX shared memory object, opened by name.
    Named(Shmem),
    /// A memfd sealed against resizing, handed over by inheritance (Linux).
    #[cfg(target_os = "linux")]
    Sealed(SealedMemory),
}

impl Memory {
    fn as_ptr(&self) -> *mut u8 {
        match self {
            Memory::Named(m) => m.as_ptr(),
            #[cfg(target_os = "linux")]
            Memory::Sealed(m) => m.as_ptr(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Memory::Named(m) => m.len(),
            #[cfg(target_os = "linux")]
            Memory::Sealed(m) => m.len(),
        }
    }
}

/// How a worker's environment refers to a sealed segment it inherited: this prefix, then the
/// descriptor's number.
#[cfg(target_os = "linux")]
pub(crate) const INHERITED_PREFIX: &str = "fd:";

/// A mapped bridge segment.
pub struct Segment {
    shmem: Memory,
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
    /// Which roles' ends this Segment handed out (released when it drops).
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
        let id = ObjectId::of(shmem.as_ptr(), &name);
        let seg = Segment {
            shmem: Memory::Named(shmem),
            name,
            geometry,
            created: true,
            books,
            _claim: Some(claim),
            id,
            unlinked: AtomicBool::new(false),
            claimed: [AtomicBool::new(false), AtomicBool::new(false)],
        };
        seg.initialize(total, protocol_version)
    }

    /// Creates a new segment in sealed anonymous memory (Linux): a memfd whose size nobody
    /// can change, whatever descriptor of it they hold (`ftruncate` fails with `EPERM`), so no
    /// peer can make the other side die of SIGBUS by shrinking it. It has no name to open or
    /// to leave behind: a worker gets it by inheritance (`channel::spawn` arranges it) and
    /// takes it over with `channel::attach`.
    #[cfg(target_os = "linux")]
    pub fn create_sealed(
        geometry: Geometry,
        protocol_version: u32,
    ) -> Result<Arc<Segment>, SegmentError> {
        ring::check_geometry(geometry.ring_capacity, geometry.max_frame)
            .map_err(SegmentError::Geometry)?;
        let total = geometry.total_bytes();
        let name = crate::sys::shm::new_name(std::process::id()).map_err(SegmentError::Create)?;
        let memory = SealedMemory::create(&name, total).map_err(|e| match e {
            CreateError::NoSpace => SegmentError::NoMemory {
                needed: total as u64,
            },
            CreateError::Other(e) => SegmentError::Create(e),
        })?;
        let id = ObjectId::of(memory.as_ptr(), &name);
        let seg = Segment {
            shmem: Memory::Sealed(memory),
            name,
            geometry,
            created: true,
            books: Bookkeeping::native(),
            _claim: None,
            id,
            // Nothing to unlink.
            unlinked: AtomicBool::new(true),
            claimed: [AtomicBool::new(false), AtomicBool::new(false)],
        };
        seg.initialize(total, protocol_version)
    }

    /// Lets the child `cmd` starts inherit this segment's memory (a sealed segment's
    /// descriptor, under the same number); returns what [`attach`](crate::channel::attach)
    /// finds in the environment to take it over: `fd:<number>`. `None` for a named segment,
    /// which is opened by its name.
    #[cfg(target_os = "linux")]
    pub(crate) fn inherit_by(&self, cmd: &mut std::process::Command) -> Option<String> {
        match &self.shmem {
            Memory::Sealed(m) => {
                crate::sys::memfd::inherit(cmd, m.raw_fd());
                Some(format!("{INHERITED_PREFIX}{}", m.raw_fd()))
            }
            Memory::Named(_) => None,
        }
    }

    /// The descriptor of a sealed segment, to hand to another process over a socket; `None`
    /// for a named segment, which is opened by its name.
    #[cfg(target_os = "linux")]
    pub(crate) fn sealed_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        match &self.shmem {
            Memory::Sealed(m) => Some(m.fd()),
            Memory::Named(_) => None,
        }
    }

    /// Takes over the sealed segment this process inherited as `reference`
    /// (`fd:<number>`, from the runner's `channel::spawn`) and validates it as
    /// [`open`](Self::open) does. Refuses a descriptor that is not a memfd sealed against
    /// resizing. The descriptor belongs to the segment from now on.
    ///
    /// Only the first call in a process takes a descriptor over (a process inherits one
    /// segment); later calls fail, so no descriptor is ever owned twice.
    #[cfg(target_os = "linux")]
    pub(crate) fn adopt(reference: &str) -> Result<Arc<Segment>, SegmentError> {
        let inherited = |source| SegmentError::Inherited {
            reference: reference.to_string(),
            source,
        };
        let fd = reference
            .strip_prefix(INHERITED_PREFIX)
            .and_then(|n| n.parse::<std::os::fd::RawFd>().ok())
            .ok_or_else(|| inherited(io::Error::from(io::ErrorKind::InvalidInput)))?;
        let memory = SealedMemory::adopt(fd).map_err(inherited)?;
        let id = ObjectId::of(memory.as_ptr(), reference);
        Segment::validate(Memory::Sealed(memory), reference, id)
    }

    /// Takes over the sealed segment another process handed over as descriptor `fd` (a hub's
    /// client passes its segment so) and validates it as [`open`](Self::open) does; refuses a
    /// descriptor that is not a memfd sealed against resizing. `reference` names it in errors.
    #[cfg(target_os = "linux")]
    pub(crate) fn receive(
        fd: std::os::fd::OwnedFd,
        reference: &str,
    ) -> Result<Arc<Segment>, SegmentError> {
        let memory = SealedMemory::receive(fd).map_err(|source| SegmentError::Received {
            reference: reference.to_string(),
            source,
        })?;
        let id = ObjectId::of(memory.as_ptr(), reference);
        Segment::validate(Memory::Sealed(memory), reference, id)
    }

    /// Zeroes a new segment's memory and writes its header, the magic last.
    fn initialize(self, total: usize, protocol_version: u32) -> Result<Arc<Segment>, SegmentError> {
        let seg = self;
        let geometry = seg.geometry;
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
            .map_err(|source| SegmentError::Open {
                name: name.to_string(),
                source,
            })?;
        let id = ObjectId::of(shmem.as_ptr(), name);
        Segment::validate(Memory::Named(shmem), name, id)
    }

    /// Checks the header of a segment someone else created and sizes it from there.
    fn validate(shmem: Memory, name: &str, id: ObjectId) -> Result<Arc<Segment>, SegmentError> {
        let found = shmem.len();
        if found < DATA_OFFSET {
            return Err(SegmentError::Size {
                expected: DATA_OFFSET,
                found,
            });
        }
        // A sealed segment has no name to unlink.
        let named = matches!(shmem, Memory::Named(_));
        let mut seg = Segment {
            shmem,
            name: name.to_string(),
            geometry: Geometry::default(),
            created: false,
            books: Bookkeeping::native(),
            _claim: None,
            id,
            unlinked: AtomicBool::new(!named),
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

    /// The name the segment was created under (with its leading `/`); a sealed segment's
    /// name is only shown in `/proc/<pid>/fd`, and one taken over by
    /// `channel::attach` is called by its reference (`fd:<number>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the name appears in the file system while it is linked (Linux; a sealed
    /// segment's never does).
    #[cfg(target_os = "linux")]
    pub fn path(&self) -> PathBuf {
        PathBuf::from(super::names::SHM_DIR).join(self.name.trim_start_matches('/'))
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

    /// The producer and consumer a role uses: the runner writes ring 0 and reads ring 1, the
    /// worker the opposite. Each role's ends are handed out once per shared memory object in
    /// this process, whatever name it was opened under; a second call fails with
    /// [`SegmentError::EndpointsTaken`].
    pub fn endpoints(self: &Arc<Self>, role: Role) -> Result<(Producer, Consumer), SegmentError> {
        if !claims::claim(&self.id, role) {
            return Err(SegmentError::EndpointsTaken(role));
        }
        self.claimed[role.index()].store(true, std::sync::atomic::Ordering::Release);
        let (tx, rx) = role.rings();
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

    /// Wakes whoever of `role`'s own process sleeps waiting for data on the ring `role`
    /// reads (a thread that wants the reading end from a thread asleep on it); the peer's
    /// sleepers are not disturbed.
    pub(crate) fn wake_reader(&self, role: Role) {
        self.control(role.rings().1).data_bell.wake_all();
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
        // Every end made from this Segment held an Arc of it: none is left, so the roles it
        // handed out may be handed out again.
        if self
            .claimed
            .iter()
            .any(|c| c.load(std::sync::atomic::Ordering::Acquire))
        {
            claims::release(&self.id, |role| {
                self.claimed[role.index()].load(std::sync::atomic::Ordering::Acquire)
            });
        }
    }
}
