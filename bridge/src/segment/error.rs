//! Why a segment could not be created, opened or validated, or its ring ends not handed out.
//!
//! Invariants: every variant says what to do or what was found; a cause from the operating
//! system is kept as the typed error and returned by `source()`.

#![forbid(unsafe_code)]

use std::fmt;
use std::io;

use shared_memory::ShmemError;

use super::role::Role;
use crate::ring::GeometryError;
use crate::sys::shm::DEV_SHM as SHM_DIR;

/// Why a segment could not be created or opened, or its ends not handed out.
#[derive(Debug)]
#[non_exhaustive]
pub enum SegmentError {
    /// The requested ring sizes are invalid.
    Geometry(GeometryError),
    /// The operating system refused to create the segment (or to make a name for it).
    Create(io::Error),
    /// `/dev/shm` has not enough room for the segment (Linux). Nothing was left behind.
    NoSpace {
        /// Bytes the segment needs.
        needed: u64,
        /// Bytes `/dev/shm` had free, if it could be asked.
        available: Option<u64>,
    },
    /// Not enough memory for a sealed segment (Linux). Nothing was left behind.
    NoMemory {
        /// Bytes the segment needs.
        needed: u64,
    },
    /// The segment this worker was to inherit from its runner cannot be used: no such
    /// descriptor, or not a memfd sealed against resizing (Linux).
    Inherited {
        /// How the environment referred to it (`fd:<number>`).
        reference: String,
        /// What is wrong with it.
        source: io::Error,
    },
    /// The segment a hub's client handed over cannot be used: not a memfd sealed against
    /// resizing (Linux).
    Received {
        /// Who handed it over (the client's name).
        reference: String,
        /// What is wrong with it.
        source: io::Error,
    },
    /// The directory where segment names are recorded (macOS) cannot be used.
    Registry {
        /// The directory.
        dir: String,
        /// What is wrong with it.
        source: io::Error,
    },
    /// No segment of that name (it was never made, or is already unlinked).
    Open {
        /// The name asked for.
        name: String,
        /// What the operating system said.
        source: ShmemError,
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
    /// This role's ring ends of this segment were already handed out in this process.
    EndpointsTaken(Role),
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
            SegmentError::NoMemory { needed } => write!(
                f,
                "not enough memory for the bridge's shared memory ({}); lower \
                 bridge.ring_capacity (each of the two rings takes that much)",
                mib(*needed)
            ),
            SegmentError::Inherited { reference, source } => write!(
                f,
                "cannot use the shared memory inherited from the runner ({reference}): {source}"
            ),
            SegmentError::Received { reference, source } => write!(
                f,
                "cannot use the shared memory handed over by {reference}: {source}"
            ),
            SegmentError::Registry { dir, source } => {
                write!(f, "cannot record shared memory segments in {dir}: {source}")
            }
            SegmentError::Open { name, source } => {
                write!(f, "cannot open shared memory segment {name}: {source}")
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
            SegmentError::EndpointsTaken(role) => write!(
                f,
                "the {role:?} side's ring ends of this segment are already in use in this process"
            ),
        }
    }
}

impl std::error::Error for SegmentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SegmentError::Geometry(e) | SegmentError::BadGeometry(e) => Some(e),
            SegmentError::Create(e) => Some(e),
            SegmentError::Registry { source, .. }
            | SegmentError::Inherited { source, .. }
            | SegmentError::Received { source, .. } => Some(source),
            SegmentError::Open { source, .. } => Some(source),
            SegmentError::NoSpace { .. }
            | SegmentError::NoMemory { .. }
            | SegmentError::Size { .. }
            | SegmentError::Magic(_)
            | SegmentError::LayoutVersion { .. }
            | SegmentError::EndpointsTaken(_) => None,
        }
    }
}
