//! The operating system underneath the bridge: one small interface per concept, with the Linux
//! and the macOS implementation side by side in each file, so that what differs between them
//! is in one place.
//!
//! | concept | module | Linux | macOS |
//! |---|---|---|---|
//! | sleeping on, and waking, a word of shared memory (the doorbell) | [`wait`] | `futex` (shared, not private) | `os_sync_wait_on_address_with_timeout` / `os_sync_wake_by_address_all` with the shared flags (macOS 14.4 and newer, looked up at run time); polling with backoff before 14.4 |
//! | a segment nobody can resize, handed to the worker by inheritance | `memfd` | a memfd sealed with `F_SEAL_SHRINK \| F_SEAL_GROW \| F_SEAL_SEAL` | none: POSIX shared memory by name (a peer that truncates it kills the other with SIGBUS) |
//! | segment names, space, removal and the sweep of names left behind | [`shm`] | objects are files in `/dev/shm` (tmpfs): the creator locks the file itself, reserves its bytes (`posix_fallocate`), the sweep lists `/dev/shm` | objects are not files: a per-user directory of lock files records live segments and the sweep lists it; memory is pageable, there is nothing to reserve |
//! | identity of a mapped object | [`shm`] | device and inode (`/proc/self/maps`) | its name |
//! | a hub's socket: connecting without waiting, a descriptor passed with a message, the user at the other end | [`socket`] | `SO_PEERCRED`, `MSG_CMSG_CLOEXEC` | `getpeereid`, `FD_CLOEXEC` set after |
//! | the heap: small zeroed allocations through the per-thread cache | [`alloc`] | with glibc, `malloc` and a fill up to 1 KiB (glibc's `calloc` takes the arena's lock); other C libraries, `calloc` | the system's `calloc` |
//! | process liveness, executable, memory | [`process`] | `kill(pid, 0)`, zombies by `/proc/<pid>/stat`; `/proc/self/exe`; `/proc/<pid>/status` | `kill(pid, 0)`, zombies by `proc_pidinfo`; the executable's path; `proc_pidinfo` |
//!
//! Invariants, the same on both: names of at most 30 characters (macOS allows 31), `getentropy` for
//! their randomness, `flock`, process groups, `getppid` for the parent's death, signals.
//!
//! Everything of one platform that can run on the other is compiled and tested on Linux: the
//! lock-file registry ([`shm::Registry`]) and the polling doorbell ([`wait::Mechanism::polling`],
//! also chosen with `IBBRIDGE_DOORBELL=poll`).

pub(crate) mod alloc;
#[cfg(target_os = "linux")]
pub(crate) mod memfd;
pub(crate) mod process;
pub(crate) mod shm;
pub(crate) mod socket;
pub(crate) mod wait;
