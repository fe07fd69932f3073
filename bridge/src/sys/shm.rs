//! Segment names and what keeps them tidy: how a name is chosen, how a live creator keeps its
//! name from being swept, how the memory is reserved, how a name is removed, and how names left
//! behind by creators that died are found and removed.
//!
//! Names, on both platforms: `/ibbridge-<creator pid>-<random>`, exactly [`NAME_LEN`]
//! characters with the slash (macOS refuses names over 31), the random part in lowercase
//! base32 from `getentropy`: at least 60 bits with a Linux pid, 70 with a macOS one.
//!
//! What differs is where names are kept track of ([`Bookkeeping`]):
//!
//! | | Linux ([`Bookkeeping::DevShm`]) | macOS ([`Bookkeeping::Registry`]) |
//! |---|---|---|
//! | where names are seen | files in `/dev/shm` (tmpfs) | nowhere: shared memory objects cannot be listed, so a per-user directory of lock files, one per name, records them ([`Registry`]) |
//! | the creator's hold | an exclusive `flock` on the `/dev/shm` file itself, taken right after creation | an exclusive `flock` on the name's lock file, made before the object (a creator dying in between leaves only a lock file, which the sweep removes) |
//! | space | reserved at creation (`posix_fallocate`): a short `/dev/shm` is an error then, never a SIGBUS later | pageable memory, sized once by `ftruncate`: nothing to reserve |
//! | removal | unlink the file | `shm_unlink` the name, then remove its lock file |
//! | sweep | names in `/dev/shm` | lock files in the registry, each name `shm_unlink`ed |
//!
//! Invariants: the sweep's rule is the same: a name is removed only when nobody holds its lock and its
//! record is older than [`SWEEP_GRACE`] (a pid in a name means nothing in another PID
//! namespace; a lock does). The registry also works on Linux, where its tests run.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Prefix of segment names (after the leading `/`).
pub(crate) const NAME_PREFIX: &str = "ibbridge-";
/// Length of a segment name with its leading `/`.
pub(crate) const NAME_LEN: usize = 30;
/// Fewest random characters in a name (5 bits each).
const MIN_RANDOM: usize = 12;
/// The alphabet of the random part: RFC 4648 base32, lowercase.
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Where Linux shows shared memory objects as files.
pub(crate) const DEV_SHM: &str = "/dev/shm";
/// A name whose record is younger than this is never swept: its creator may not have taken
/// its lock yet (it does so right after making the record).
pub(crate) const SWEEP_GRACE: Duration = Duration::from_secs(2);

/// `buf.len()` random bytes from the kernel.
fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    // getentropy fills at most 256 bytes per call.
    for chunk in buf.chunks_mut(256) {
        // SAFETY: `chunk` is a writable buffer of exactly `chunk.len()` (<= 256) bytes.
        let rc = unsafe { libc::getentropy(chunk.as_mut_ptr().cast(), chunk.len()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// How many random characters follow a pid of `digits` digits.
fn random_len(digits: usize) -> usize {
    NAME_LEN
        .saturating_sub(1 + NAME_PREFIX.len() + digits + 1)
        .max(MIN_RANDOM)
}

/// A new segment name for the creator `pid`.
pub(crate) fn new_name(pid: u32) -> io::Result<String> {
    let pid = pid.to_string();
    let mut name = format!("/{NAME_PREFIX}{pid}-");
    let mut bytes = vec![0u8; random_len(pid.len())];
    random_bytes(&mut bytes)?;
    name.extend(bytes.iter().map(|b| BASE32[usize::from(b & 31)] as char));
    Ok(name)
}

/// Whether `file_name` (a name without its leading `/`) is one of our segment names: this
/// release's, or the earlier form `ibbridge-<pid>-<32 hex digits>` a previous release may
/// have left behind.
pub(crate) fn is_segment_name(file_name: &str) -> bool {
    let Some(rest) = file_name.strip_prefix(NAME_PREFIX) else {
        return false;
    };
    let Some((pid, random)) = rest.split_once('-') else {
        return false;
    };
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) || pid.parse::<u32>().is_err() {
        return false;
    }
    let current =
        random.len() == random_len(pid.len()) && random.bytes().all(|b| BASE32.contains(&b));
    let earlier = random.len() == 32 && random.bytes().all(|b| b.is_ascii_hexdigit());
    current || earlier
}

/// The creator's hold on its name: while it lives, no sweep removes the name.
#[derive(Debug)]
pub(crate) struct Claim {
    /// The open file whose exclusive lock is the hold (the object itself on Linux, its lock
    /// file in the registry); none before the object exists on Linux.
    _lock: Option<File>,
}

/// Why the memory of a new segment could not be reserved.
#[derive(Debug)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) enum ReserveError {
    /// The file system holding the objects is short of room.
    NoSpace {
        /// Bytes free there, if it could be asked.
        available: Option<u64>,
    },
    /// Anything else, in words.
    Other(String),
}

/// Where names are kept track of; see the module's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bookkeeping {
    /// Linux: the objects are files in `/dev/shm`.
    #[cfg(target_os = "linux")]
    DevShm,
    /// A directory of lock files (macOS; on Linux for its tests).
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    Registry(Registry),
}

impl Bookkeeping {
    /// This platform's.
    pub(crate) fn native() -> Bookkeeping {
        #[cfg(target_os = "linux")]
        return Bookkeeping::DevShm;
        #[cfg(not(target_os = "linux"))]
        return Bookkeeping::Registry(Registry::for_user());
    }

    /// Where the place of the records is, for messages ("not enough shared memory in ...").
    pub(crate) fn place(&self) -> String {
        match self {
            #[cfg(target_os = "linux")]
            Bookkeeping::DevShm => DEV_SHM.to_string(),
            Bookkeeping::Registry(r) => r.dir.display().to_string(),
        }
    }

    /// Claims `name` before its object is made. Fails if the name is taken (the caller picks
    /// another).
    pub(crate) fn claim(&self, name: &str) -> io::Result<Claim> {
        match self {
            #[cfg(target_os = "linux")]
            Bookkeeping::DevShm => Ok(Claim { _lock: None }),
            Bookkeeping::Registry(r) => Ok(Claim {
                _lock: Some(r.claim(name)?),
            }),
        }
    }

    /// The object of `name` (`total` bytes) was made: completes the claim and reserves the
    /// memory.
    pub(crate) fn created(
        &self,
        claim: &mut Claim,
        name: &str,
        total: u64,
    ) -> Result<(), ReserveError> {
        match self {
            #[cfg(target_os = "linux")]
            Bookkeeping::DevShm => {
                let file = dev_shm::lock_and_reserve(name, total)?;
                claim._lock = Some(file);
                Ok(())
            }
            Bookkeeping::Registry(_) => {
                let _ = (claim, name, total);
                Ok(())
            }
        }
    }

    /// Gives up a claim whose object could not be made.
    pub(crate) fn abandon(&self, claim: Claim, name: &str) {
        match self {
            #[cfg(target_os = "linux")]
            Bookkeeping::DevShm => {}
            Bookkeeping::Registry(r) => r.forget(name),
        }
        drop(claim);
    }

    /// Removes `name`: nobody can open the object from now on; mappings stay valid. A name
    /// already gone is not an error.
    pub(crate) fn unlink(&self, name: &str) -> io::Result<()> {
        match self {
            #[cfg(target_os = "linux")]
            Bookkeeping::DevShm => ignore_missing(std::fs::remove_file(dev_shm::path_of(name))),
            Bookkeeping::Registry(r) => r.unlink(name),
        }
    }

    /// Removes the names left behind by creators that died; returns how many.
    pub(crate) fn sweep_stale(&self) -> usize {
        match self {
            #[cfg(target_os = "linux")]
            Bookkeeping::DevShm => dev_shm::sweep_stale(),
            Bookkeeping::Registry(r) => r.sweep_stale(),
        }
    }

    /// The segment names recorded now (without their leading `/`), live or not.
    pub(crate) fn names(&self) -> Vec<String> {
        let (dir, suffix) = match self {
            #[cfg(target_os = "linux")]
            Bookkeeping::DevShm => (Path::new(DEV_SHM), ""),
            Bookkeeping::Registry(r) => {
                if !matches!(r.check_dir(), Ok(true)) {
                    return Vec::new();
                }
                (r.dir.as_path(), LOCK_SUFFIX)
            }
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let file_name = e.file_name();
                let name = file_name.to_str()?.strip_suffix(suffix)?;
                is_segment_name(name).then(|| name.to_string())
            })
            .collect()
    }
}

fn ignore_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// `shm_unlink(name)`; a name already gone is not an error.
fn shm_unlink(name: &str) -> io::Result<()> {
    let c_name = std::ffi::CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `c_name` is a valid NUL-terminated string for the whole call.
    let rc = unsafe { libc::shm_unlink(c_name.as_ptr()) };
    if rc == 0 {
        return Ok(());
    }
    ignore_missing(Err(io::Error::last_os_error()))
}

/// Takes an exclusive `flock` on `file` without waiting: `Ok(false)` if another open file
/// holds it. The lock lasts as long as this open file (in any process that inherits it).
pub(crate) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: the descriptor is open for the whole call (we borrow the File).
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(err),
        }
    }
}

/// Whether the record at `path` is older than [`SWEEP_GRACE`] (an unreadable age is young).
fn old_enough(file: &File) -> bool {
    file.metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age >= SWEEP_GRACE)
}

/// The suffix of a lock file in a [`Registry`].
const LOCK_SUFFIX: &str = ".lock";

/// A directory of lock files, one per segment name: the record of names where the system
/// keeps none that can be listed (macOS). Private to its user (mode 0700).
///
/// Invariants: a lock file is made (exclusively) and locked before its object, and removed
/// after its object is unlinked; whoever holds its lock is its creator, alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registry {
    dir: PathBuf,
}

#[cfg_attr(target_os = "linux", allow(dead_code))]
impl Registry {
    /// This user's registry: `ibbridge-<uid>` in the user's own temporary directory (macOS:
    /// the one `confstr(_CS_DARWIN_USER_TEMP_DIR)` names, the same whatever `$TMPDIR` says,
    /// so runners started from a terminal, launchd or cron share it).
    pub(crate) fn for_user() -> Registry {
        Registry::at(user_dir())
    }

    /// A registry in `dir`.
    pub(crate) fn at(dir: PathBuf) -> Registry {
        Registry { dir }
    }

    /// The lock file of `name`, which must be one of our names (it comes from the
    /// environment on the worker's side: no `../` can lead elsewhere).
    fn lock_path(&self, name: &str) -> io::Result<PathBuf> {
        let bare = name.trim_start_matches('/');
        if !is_segment_name(bare) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not a segment name"),
            ));
        }
        Ok(self.dir.join(format!("{bare}{LOCK_SUFFIX}")))
    }

    /// Checks that the directory is ours alone: a directory (not a link), owned by us, mode
    /// 0700. `Ok(false)` if it does not exist.
    fn check_dir(&self) -> io::Result<bool> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = match std::fs::symlink_metadata(&self.dir) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} must be a directory of this user's with mode 0700",
                    self.dir.display()
                ),
            ));
        }
        Ok(true)
    }

    /// Makes the directory if needed, and checks it ([`Self::check_dir`]).
    fn ensure_dir(&self) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        self.check_dir().map(|_| ())
    }

    /// Makes and locks the lock file of `name`: fails with `AlreadyExists` if it exists or
    /// was swept between the two (the caller picks another name).
    fn claim(&self, name: &str) -> io::Result<File> {
        self.ensure_dir()?;
        let path = self.lock_path(name)?;
        let file = create_locked(&path)?;
        // The file at the path must still be the one we locked: a sweep that took it for a
        // dead creator's (a clock step over the grace) removed it.
        if !same_file(&file, &path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} was removed as it was made", path.display()),
            ));
        }
        Ok(file)
    }

    /// Removes the lock file of `name`, if any.
    fn forget(&self, name: &str) {
        if let Ok(path) = self.lock_path(name) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Removes `name`: unlinks its object, and then its record (a record is kept while its
    /// object may exist, so that a later sweep finds it).
    fn unlink(&self, name: &str) -> io::Result<()> {
        let record = self.lock_path(name)?;
        shm_unlink(name)?;
        let _ = std::fs::remove_file(record);
        Ok(())
    }

    /// Removes every name whose lock file is old enough and unlocked: unlinks its object (if
    /// it was ever made) and then the lock file. A directory that is not ours alone is left
    /// untouched.
    fn sweep_stale(&self) -> usize {
        if !matches!(self.check_dir(), Ok(true)) {
            return 0;
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(LOCK_SUFFIX)) else {
                continue;
            };
            if !is_segment_name(name) {
                continue;
            }
            let Ok(file) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(entry.path())
            else {
                continue;
            };
            if !old_enough(&file) || !matches!(try_lock_exclusive(&file), Ok(true)) {
                continue;
            }
            // We hold the lock: its creator is gone, and no creator reuses a name.
            if shm_unlink(&format!("/{name}")).is_ok() && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        removed
    }
}

/// Makes the file at `path` (mode 0600, failing if it exists) and takes its exclusive lock.
/// macOS does both in one call (`O_EXLOCK`); elsewhere the lock follows the creation.
fn create_locked(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create_new(true).mode(0o600);
    #[cfg(target_os = "macos")]
    options.custom_flags(libc::O_EXLOCK | libc::O_NONBLOCK);
    let file = options.open(path)?;
    if cfg!(target_os = "macos") {
        return Ok(file);
    }
    match try_lock_exclusive(&file) {
        Ok(true) => Ok(file),
        // Someone locked the file we just made (a sweep, see `Registry::claim`).
        Ok(false) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} is locked by another process", path.display()),
        )),
        Err(e) => {
            let _ = std::fs::remove_file(path);
            Err(e)
        }
    }
}

/// Whether `path` names the very file `file` is open on (device and inode).
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// This user's directory of the bridge's files: `ibbridge-<uid>` in the user's own temporary
/// directory (the registry's, and the hubs' parent).
pub(crate) fn user_dir() -> PathBuf {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    user_temp_dir().join(format!("ibbridge-{uid}"))
}

/// The user's own temporary directory.
fn user_temp_dir() -> PathBuf {
    #[cfg(target_os = "macos")]
    {
        let mut buf = vec![0u8; libc::PATH_MAX as usize];
        // SAFETY: `buf` is a writable buffer of `buf.len()` bytes; confstr writes at most that
        // many, NUL included, and returns the length it needed.
        let needed = unsafe {
            libc::confstr(
                libc::_CS_DARWIN_USER_TEMP_DIR,
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if needed > 1 && needed <= buf.len() {
            buf.truncate(needed - 1);
            if let Ok(dir) = String::from_utf8(buf) {
                return PathBuf::from(dir);
            }
        }
    }
    std::env::temp_dir()
}

#[cfg(target_os = "linux")]
mod dev_shm {
    use std::fs::File;
    use std::io;
    use std::path::{Path, PathBuf};

    use super::{
        is_segment_name, old_enough, same_file, try_lock_exclusive, ReserveError, DEV_SHM,
    };

    pub(super) fn path_of(name: &str) -> PathBuf {
        Path::new(DEV_SHM).join(name.trim_start_matches('/'))
    }

    /// Takes the creator's lock on the new object's file and reserves `total` bytes of memory
    /// for it. tmpfs reserves nothing at `ftruncate`: without this, the first write to a page
    /// that does not fit would kill the process with SIGBUS.
    pub(super) fn lock_and_reserve(name: &str, total: u64) -> Result<File, ReserveError> {
        let path = path_of(name);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| ReserveError::Other(format!("{}: {e}", path.display())))?;
        match try_lock_exclusive(&file) {
            // Still the object we made (a sweep that took it for a dead creator's, over a
            // clock step, would have removed it).
            Ok(true) if same_file(&file, &path) => {}
            Ok(true) => {
                return Err(ReserveError::Other(format!(
                    "{} was removed as it was made",
                    path.display()
                )))
            }
            Ok(false) => {
                return Err(ReserveError::Other(format!(
                    "{} is locked by another process",
                    path.display()
                )))
            }
            Err(e) => return Err(ReserveError::Other(format!("cannot lock: {e}"))),
        }
        match reserve(&file, total) {
            Ok(()) => Ok(file),
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => Err(ReserveError::NoSpace {
                available: free_bytes(DEV_SHM),
            }),
            Err(e) => Err(ReserveError::Other(format!(
                "cannot reserve {total} bytes: {e}"
            ))),
        }
    }

    /// Reserves `len` bytes of storage for `file` (`posix_fallocate`), so that writing to any
    /// of them through a mapping cannot fault for want of space. A file system that cannot
    /// reserve (`EOPNOTSUPP`) is accepted as it is.
    fn reserve(file: &File, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let Ok(len) = libc::off_t::try_from(len) else {
            return Err(io::Error::from_raw_os_error(libc::EFBIG));
        };
        loop {
            // SAFETY: the descriptor is open for the whole call; posix_fallocate touches no
            // user memory.
            let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
            match rc {
                0 => return Ok(()),
                libc::EINTR => continue,
                libc::EOPNOTSUPP | libc::EINVAL => return Ok(()),
                e => return Err(io::Error::from_raw_os_error(e)),
            }
        }
    }

    /// Bytes free for unprivileged users on the file system holding `path`.
    fn free_bytes(path: &str) -> Option<u64> {
        let c_path = std::ffi::CString::new(path).ok()?;
        // SAFETY: an all-zero statvfs is a valid value to be overwritten.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c_path` is a valid NUL-terminated string and `st` a writable statvfs.
        let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut st) };
        (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
    }

    /// Removes names in `/dev/shm` whose creator is gone; see [`super::Bookkeeping::sweep_stale`].
    pub(super) fn sweep_stale() -> usize {
        let Ok(dir) = std::fs::read_dir(DEV_SHM) else {
            return 0;
        };
        let mut removed = 0;
        for entry in dir.flatten() {
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else {
                continue;
            };
            if is_segment_name(name) && sweep_one(&entry.path()) {
                removed += 1;
            }
        }
        removed
    }

    fn sweep_one(path: &Path) -> bool {
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
        else {
            return false;
        };
        if !old_enough(&file) || !matches!(try_lock_exclusive(&file), Ok(true)) {
            return false;
        }
        // We hold the lock: its creator is gone, and no new creator can reuse a name.
        std::fs::remove_file(path).is_ok()
    }
}

/// Whether a shared memory object of this name exists (whatever any record says).
pub(crate) fn object_exists(name: &str) -> bool {
    let Ok(c_name) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: `c_name` is a valid NUL-terminated string; opening read-only creates nothing.
    #[cfg(target_os = "linux")]
    let fd = unsafe { libc::shm_open(c_name.as_ptr(), libc::O_RDONLY, 0) };
    // SAFETY: as above (macOS declares the mode as a variadic argument, unused here).
    #[cfg(not(target_os = "linux"))]
    let fd = unsafe { libc::shm_open(c_name.as_ptr(), libc::O_RDONLY) };
    if fd >= 0 {
        // SAFETY: `fd` was just opened by us and is closed once.
        unsafe { libc::close(fd) };
        return true;
    }
    // Another user's object, say, exists too.
    io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT)
}

/// Identifies the shared memory object mapped at `addr` in this process, whatever name it was
/// opened under: its device (`major:minor`, hex, as the kernel prints it) and inode. Linux
/// reads `/proc/self/maps`; macOS has no such view, and its objects have no other names (no
/// hard links, no file system), so the caller falls back to the name.
pub(crate) fn object_identity(addr: usize) -> Option<(String, u64)> {
    #[cfg(target_os = "linux")]
    {
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        maps.lines().find_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let start = usize::from_str_radix(range.split('-').next()?, 16).ok()?;
            if start != addr {
                return None;
            }
            let _perms = fields.next()?;
            let _offset = fields.next()?;
            let dev = fields.next()?.to_string();
            let inode = fields.next()?.parse().ok()?;
            Some((dev, inode))
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = addr;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_macos_and_are_ours() {
        // Up to Linux's largest pid (2^22) and macOS's (99,999).
        for pid in [1, 4242, 99_999, 4_194_304, u32::MAX] {
            let name = new_name(pid).unwrap();
            assert!(name.len() <= 31 || pid == u32::MAX, "{name}");
            assert!(name.starts_with(&format!("/{NAME_PREFIX}{pid}-")), "{name}");
            assert!(is_segment_name(&name[1..]), "{name}");
            let random = name.rsplit('-').next().unwrap();
            assert!(random.len() >= MIN_RANDOM, "{name}");
        }
        assert_eq!(new_name(4242).unwrap().len(), NAME_LEN);
        assert_ne!(new_name(1).unwrap(), new_name(1).unwrap());
    }

    #[test]
    fn only_our_names_are_candidates() {
        let ours = new_name(12).unwrap();
        assert!(is_segment_name(&ours[1..]));
        // A previous release's form.
        assert!(is_segment_name(&format!("{NAME_PREFIX}12-{:032x}", 5u128)));
        assert!(!is_segment_name(&format!("{}x", &ours[1..])));
        assert!(!is_segment_name(&ours[1..ours.len() - 1]));
        assert!(!is_segment_name(&format!("{NAME_PREFIX}12-notours")));
        assert!(!is_segment_name(&format!("{NAME_PREFIX}x-{:032x}", 5u128)));
        assert!(!is_segment_name(&format!(
            "{NAME_PREFIX}+12-{:032x}",
            5u128
        )));
        assert!(!is_segment_name(&format!("other-12-{:032x}", 5u128)));
        assert!(!is_segment_name(&ours[1..].replace('-', "_")));
    }
}
