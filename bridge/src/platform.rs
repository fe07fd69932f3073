//! What the rest of the system needs to know of the operating system, the same on Linux and
//! macOS (the differences are inside; see the `sys` module's table).
//!
//! Invariants: each function means the same on both systems; none of them panics on what
//! the system answers.

#![forbid(unsafe_code)]

use std::io;
use std::path::PathBuf;

/// The executable this process runs, for starting a worker of the very same build. On Linux
/// `/proc/self/exe`, which names the running file even after its path was replaced by a new
/// build; on macOS the executable's path.
pub fn own_executable() -> io::Result<PathBuf> {
    crate::sys::process::executable()
}

/// Resident memory of process `pid`, in bytes, if it can be read.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    crate::sys::process::resident_bytes(pid)
}

/// The machine's monotonic clock in nanoseconds, comparable across processes (to time a
/// message from one process to another).
pub fn monotonic_ns() -> u64 {
    crate::sys::process::monotonic_ns()
}

/// Whether process `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    crate::sys::process::process_alive(pid)
}

/// How this process sleeps on and wakes the doorbells: `futex` (Linux), `os_sync` (macOS 14.4
/// and newer) or `poll` (older macOS, or `IBBRIDGE_DOORBELL=poll`).
pub fn doorbell_mechanism() -> &'static str {
    crate::sys::wait::Mechanism::current().name()
}

/// The system's own doorbell mechanism, if it has one (`futex`, `os_sync`), whatever this
/// process uses.
pub fn native_doorbell() -> Option<&'static str> {
    crate::sys::wait::Mechanism::native().map(|m| m.name())
}
