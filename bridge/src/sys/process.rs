//! Processes: whether one is alive, our parent, killing a process group, the executable this
//! process runs, and a process's resident memory.
//!
//! Invariants: the same on Linux and macOS: `kill(pid, 0)` for existence, `getppid` (it changes when the
//! parent dies), `kill(-pgid, SIGKILL)` for a group. What differs:
//!
//! | | Linux | macOS |
//! |---|---|---|
//! | is it a zombie? | state letter in `/proc/<pid>/stat` | `proc_pidinfo(PROC_PIDT_SHORTBSDINFO)`: `pbsi_status == SZOMB` |
//! | our executable | `/proc/self/exe`: the file we run, even after its path was replaced by a new build | its path (`current_exe`): a replaced file is the new build, which the hello's build id check then refuses |
//! | resident memory | `VmRSS` in `/proc/<pid>/status` | `proc_pidinfo(PROC_PIDTASKINFO)`: `pti_resident_size` |

use std::io;
use std::path::PathBuf;

/// Whether a process with this pid exists (a zombie counts as gone).
pub(crate) fn process_alive(pid: u32) -> bool {
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid_t <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission check.
    let rc = unsafe { libc::kill(pid_t, 0) };
    // EPERM: it exists, as another user's.
    if rc != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
        return false;
    }
    // A zombie still answers kill(0).
    native::is_zombie(pid_t) != Some(true)
}

/// The pid of our parent process right now (1 or a subreaper's once the parent has died).
pub(crate) fn parent_pid() -> u32 {
    // SAFETY: getppid has no preconditions and cannot fail.
    let pid = unsafe { libc::getppid() };
    pid as u32
}

/// Sends SIGKILL to every process of the group `pgid` (the worker runs in a group of its own,
/// so whatever it started dies with it). A group already gone is not an error.
pub(crate) fn kill_process_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill has no memory preconditions; a negative pid names a process group.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

/// The monotonic clock (`CLOCK_MONOTONIC`), nanoseconds: one clock for every process of the
/// machine, so that a time taken in one process can be compared with one taken in another.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC exists on both systems.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// The executable this process runs, to start a worker of the very same build.
pub(crate) fn executable() -> io::Result<PathBuf> {
    native::executable()
}

/// Resident memory of process `pid`, in bytes, if it can be read.
pub(crate) fn resident_bytes(pid: u32) -> Option<u64> {
    native::resident_bytes(libc::pid_t::try_from(pid).ok()?)
}

#[cfg(target_os = "linux")]
mod native {
    use std::io;
    use std::path::PathBuf;

    pub(super) fn is_zombie(pid: libc::pid_t) -> Option<bool> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())?;
        Some(matches!(state, 'Z' | 'X'))
    }

    pub(super) fn executable() -> io::Result<PathBuf> {
        Ok(PathBuf::from("/proc/self/exe"))
    }

    pub(super) fn resident_bytes(pid: libc::pid_t) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib: u64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kib * 1024)
    }
}

#[cfg(target_os = "macos")]
mod native {
    use std::io;
    use std::path::PathBuf;

    /// `proc_pidinfo` of one fixed-size flavour into `T`.
    fn pidinfo<T>(pid: libc::pid_t, flavor: libc::c_int) -> Option<T> {
        let size = libc::c_int::try_from(std::mem::size_of::<T>()).ok()?;
        let mut info = std::mem::MaybeUninit::<T>::zeroed();
        // SAFETY: `info` is a writable buffer of exactly `size` bytes; the kernel fills at
        // most that many and returns how many it wrote.
        let n = unsafe { libc::proc_pidinfo(pid, flavor, 0, info.as_mut_ptr().cast(), size) };
        // SAFETY: the call wrote the whole structure (it returns its size on success), and
        // the zeroed start is a valid value of these plain C structs anyway.
        (n == size).then(|| unsafe { info.assume_init() })
    }

    pub(super) fn is_zombie(pid: libc::pid_t) -> Option<bool> {
        // The short form answers for other users' processes too.
        let info: libc::proc_bsdshortinfo = pidinfo(pid, libc::PROC_PIDT_SHORTBSDINFO)?;
        Some(info.pbsi_status == libc::SZOMB)
    }

    pub(super) fn executable() -> io::Result<PathBuf> {
        std::env::current_exe()
    }

    pub(super) fn resident_bytes(pid: libc::pid_t) -> Option<u64> {
        let info: libc::proc_taskinfo = pidinfo(pid, libc::PROC_PIDTASKINFO)?;
        Some(info.pti_resident_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_child_is_alive_until_it_exits_and_its_zombie_is_not() {
        assert!(process_alive(std::process::id()));
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        assert!(process_alive(child.id()));
        child.kill().unwrap();
        // Not reaped yet: a zombie, which counts as gone.
        let pid = child.id();
        let start = std::time::Instant::now();
        while process_alive(pid) && start.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!process_alive(pid));
        child.wait().unwrap();
        assert!(!process_alive(pid));
        assert!(!process_alive(0));
        assert!(!process_alive(u32::MAX));
        // Another user's process exists all the same (pid 1 is root's; we may be root).
        assert!(process_alive(1));
    }

    #[test]
    fn the_monotonic_clock_moves_with_instant() {
        let (a, start) = (monotonic_ns(), std::time::Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (b, took) = (monotonic_ns(), start.elapsed());
        let diff = b - a;
        assert!(diff >= 20_000_000, "{diff}");
        assert!(
            diff <= took.as_nanos() as u64 + 5_000_000,
            "{diff} vs {took:?}"
        );
    }

    #[test]
    fn our_memory_and_executable_can_be_read() {
        let rss = resident_bytes(std::process::id()).unwrap();
        assert!(rss > 1 << 20, "{rss}");
        assert!(std::fs::metadata(executable().unwrap()).unwrap().is_file());
        assert_eq!(resident_bytes(u32::MAX), None);
    }
}
