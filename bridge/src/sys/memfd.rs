//! Sealed anonymous shared memory (Linux): a `memfd` whose size nobody can change once it is
//! made, mapped shared, and handed to a child process by inheritance.
//!
//! Why: a POSIX shared memory object can be truncated by anyone holding a descriptor of it
//! (`ftruncate`), and every process that maps it then dies of SIGBUS on its next access. A
//! memfd sealed with `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL` cannot be resized by anyone,
//! its creator included, and the seals cannot be lifted: `ftruncate` fails with `EPERM`
//! whichever descriptor (inherited, or reopened through `/proc/<pid>/fd`) it is called on.
//! A memfd has no name in any file system, so nothing is left behind by a crash and there is
//! nothing to sweep.
//!
//! Invariants: a [`SealedMemory`] maps exactly the bytes the memfd holds, and the memfd carries
//! both size seals before the mapping is made (by [`SealedMemory::create`]) or is refused
//! (by [`SealedMemory::adopt`]); the descriptor is close-on-exec except in the one child
//! [`inherit`] hands it to; the mapping lives until the value drops.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The seals every segment carries: its size is fixed, and so are the seals.
const SIZE_SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;

/// A memfd of fixed size, mapped shared.
pub(crate) struct SealedMemory {
    fd: OwnedFd,
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is process-wide memory valid until drop; the raw pointer is only an
// address, and every access through it is the caller's (atomics or the ring protocol).
unsafe impl Send for SealedMemory {}
// SAFETY: as above; `&SealedMemory` hands out only the address and the length.
unsafe impl Sync for SealedMemory {}

/// Why a memory could not be made: the reserve failed for want of room, or another error.
pub(crate) enum CreateError {
    /// `ENOSPC` or `ENOMEM` while reserving the bytes: the memory (or the limit of its
    /// control group) is short.
    NoSpace,
    /// Any other failure.
    Other(io::Error),
}

impl SealedMemory {
    /// Makes a memfd of `len` bytes named `name` (shown in `/proc/<pid>/fd`, never a file),
    /// reserves every byte (so no page faults later for want of memory), seals its size and
    /// maps it.
    pub(crate) fn create(name: &str, len: usize) -> Result<SealedMemory, CreateError> {
        let c_name = std::ffi::CString::new(name.trim_start_matches('/'))
            .map_err(|e| CreateError::Other(io::Error::other(e)))?;
        // SAFETY: `c_name` is a valid NUL-terminated string; memfd_create touches no other
        // memory of ours.
        let raw = unsafe {
            libc::memfd_create(c_name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
        if raw < 0 {
            return Err(CreateError::Other(io::Error::last_os_error()));
        }
        // SAFETY: memfd_create returned a new descriptor that nothing else owns.
        let mut fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if raw <= 2 {
            // A process started with its standard streams closed gets 0, 1 or 2 here; the
            // child's standard streams are put there before it inherits this one, so it must
            // live above them.
            // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own makes a new one we own.
            let high = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
            if high < 0 {
                return Err(CreateError::Other(io::Error::last_os_error()));
            }
            // SAFETY: fcntl returned a new descriptor that nothing else owns; the low one
            // closes as `fd` is replaced.
            fd = unsafe { OwnedFd::from_raw_fd(high) };
        }
        let size = libc::off_t::try_from(len)
            .map_err(|_| CreateError::Other(io::Error::from_raw_os_error(libc::EFBIG)))?;
        // SAFETY: a plain system call on a descriptor we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
            return Err(CreateError::Other(io::Error::last_os_error()));
        }
        loop {
            // SAFETY: as above; posix_fallocate touches no memory of ours.
            match unsafe { libc::posix_fallocate(fd.as_raw_fd(), 0, size) } {
                0 => break,
                libc::EINTR => continue,
                libc::ENOSPC | libc::ENOMEM => return Err(CreateError::NoSpace),
                e => return Err(CreateError::Other(io::Error::from_raw_os_error(e))),
            }
        }
        let seals = SIZE_SEALS | libc::F_SEAL_SEAL;
        // SAFETY: fcntl(F_ADD_SEALS) on a descriptor we own, with an integer argument.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(CreateError::Other(io::Error::last_os_error()));
        }
        SealedMemory::map(fd, len).map_err(CreateError::Other)
    }

    /// Takes over descriptor `raw`, inherited from the process that made it: refuses anything
    /// but a memfd sealed against resizing, makes it close-on-exec, and maps all of it.
    ///
    /// The descriptor is closed when the returned value drops (or at once on an error);
    /// nothing else in this process may use or close it. Only the first call in a process
    /// takes a descriptor (a process inherits one segment); later ones fail with `EALREADY`,
    /// so no descriptor is ever owned twice.
    pub(crate) fn adopt(raw: RawFd) -> io::Result<SealedMemory> {
        static ADOPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if ADOPTED.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return Err(io::Error::from_raw_os_error(libc::EALREADY));
        }
        SealedMemory::take(raw)
    }

    /// Checks descriptor `raw` without touching it (a number from the environment may name
    /// anything: standard input, another library's file), and takes it over only if it is a
    /// memfd sealed against resizing.
    fn take(raw: RawFd) -> io::Result<SealedMemory> {
        // SAFETY: fcntl(F_GETFD) on any number is harmless; it only asks whether it is open.
        if raw < 0 || unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        check_seals(raw)?;
        // SAFETY: the descriptor is open (checked above) and is a sealed memfd, which only the
        // runner makes and hands to this process to own (`inherit`): nothing else here
        // closes it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        SealedMemory::own(fd)
    }

    /// Takes over descriptor `fd`, received from another process (a hub's client passes its
    /// segment so): refuses anything but a memfd sealed against resizing, and maps all of it.
    pub(crate) fn receive(fd: OwnedFd) -> io::Result<SealedMemory> {
        check_seals(fd.as_raw_fd())?;
        SealedMemory::own(fd)
    }

    /// Makes `fd`, a sealed memfd of ours, close-on-exec and maps all of it.
    fn own(fd: OwnedFd) -> io::Result<SealedMemory> {
        // SAFETY: fcntl(F_SETFD) with an integer argument on a descriptor we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let len = usize::try_from(std::fs::File::from(fd.try_clone()?).metadata()?.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        SealedMemory::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<SealedMemory> {
        if len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: a new shared mapping of `len` bytes of a descriptor we own, at an address
        // the kernel picks; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SealedMemory {
            fd,
            ptr: ptr.cast(),
            len,
        })
    }

    /// The start of the mapping (page aligned).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// The mapping's length in bytes (the memfd's whole size, which cannot change).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The descriptor, to pass to another process over a socket.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// The descriptor, for [`inherit`].
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Refuses descriptor `raw` unless it carries both size seals.
fn check_seals(raw: RawFd) -> io::Result<()> {
    // SAFETY: fcntl(F_GET_SEALS) only reads the seals of an open descriptor; it changes
    // nothing, whoever owns it (a descriptor that is not open fails with EBADF).
    let seals = unsafe { libc::fcntl(raw, libc::F_GET_SEALS) };
    let refused = || {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the shared memory handed over is not a memfd sealed against resizing",
        )
    };
    if seals < 0 {
        let e = io::Error::last_os_error();
        // EINVAL: not a memfd at all (a file, a socket).
        return Err(match e.raw_os_error() {
            Some(libc::EINVAL) => refused(),
            _ => e,
        });
    }
    if seals & SIZE_SEALS != SIZE_SEALS {
        return Err(refused());
    }
    Ok(())
}

impl Drop for SealedMemory {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `map`, unmapped once here; every
        // user of the memory held this value alive (the Segment's Arc) and is gone.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Lets the child `cmd` starts inherit descriptor `fd` under the same number (it stays
/// close-on-exec in this process, so no other child gets it).
pub(crate) fn inherit(cmd: &mut Command, fd: RawFd) {
    // SAFETY: the hook runs in the child between fork and exec, where only async-signal-safe
    // calls are allowed: it makes one `fcntl` call and allocates nothing. `fd` is open in the
    // parent when `spawn` forks (the caller holds the memory until the child has started), so
    // it is open in the child.
    unsafe {
        cmd.pre_exec(move || {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{File, OpenOptions};

    fn memory() -> SealedMemory {
        match SealedMemory::create("ibbridge-test-sealed", 1 << 16) {
            Ok(m) => m,
            Err(CreateError::NoSpace) => panic!("no space"),
            Err(CreateError::Other(e)) => panic!("{e}"),
        }
    }

    fn assert_refused(file: &File) {
        for len in [0, 4096, 1 << 20] {
            let err = file.set_len(len).unwrap_err();
            assert_eq!(
                err.raw_os_error(),
                Some(libc::EPERM),
                "set_len({len}): {err}"
            );
        }
        assert_eq!(file.metadata().unwrap().len(), 1 << 16);
    }

    #[test]
    fn its_size_cannot_be_changed_through_any_descriptor() {
        let m = memory();
        // The creator's own descriptor.
        assert_refused(&File::from(m.fd.try_clone().unwrap()));
        // A new open file description, as another process of the same user gets it.
        let reopened = OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/self/fd/{}", m.raw_fd()))
            .unwrap();
        assert_refused(&reopened);
        // The seals themselves are sealed.
        // SAFETY: (test) fcntl on an open descriptor.
        let rc = unsafe { libc::fcntl(m.raw_fd(), libc::F_ADD_SEALS, 0) };
        assert_eq!(rc, -1);
        // Every byte is still there to be used.
        // SAFETY: (test) in bounds of the live mapping, which nothing else uses.
        unsafe { m.as_ptr().add(m.len() - 1).write(7) };
    }

    #[test]
    fn only_a_sealed_memfd_is_adopted() {
        let file = tempfile_in_tmp();
        let raw = std::os::fd::AsRawFd::as_raw_fd(&file);
        let err = SealedMemory::take(raw).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        assert!(err
            .to_string()
            .ends_with("not a memfd sealed against resizing"));
        // Refused and left alone: still open, still ours.
        assert_eq!(file.metadata().unwrap().len(), 4096);
        drop(file);
        let err = SealedMemory::take(-1).err().unwrap();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));

        let m = memory();
        let dup = m.fd.try_clone().unwrap();
        let adopted = SealedMemory::take(std::os::fd::IntoRawFd::into_raw_fd(dup)).unwrap();
        assert_eq!(adopted.len(), 1 << 16);
        // SAFETY: (test) both mappings are of the same live memfd, in bounds.
        unsafe {
            m.as_ptr().add(100).write(42);
            assert_eq!(adopted.as_ptr().add(100).read_volatile(), 42);
        }
    }

    fn tempfile_in_tmp() -> File {
        let path = std::env::temp_dir().join(format!("ibbridge-memfd-test-{}", std::process::id()));
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let _ = std::fs::remove_file(&path);
        f.set_len(4096).unwrap();
        f
    }
}
