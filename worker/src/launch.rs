//! How a worker is started: the command that runs an executable as a worker with its options
//! ([`command`], [`command_with`]), and the build id both ends present ([`build_id_of`]).
//!
//! Invariants: the worker runs the very file the runner runs, so both compute the same build
//! id of it; a file replaced on disk since is another build (its identity changed); the
//! options travel in the environment ([`OPTIONS_ENV`]), never on the command line.

use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::process::Command;

use bridge::codec::CodecError;

use crate::options::{WorkerOptions, OPTIONS_ENV};

/// Identifies a build of an executable: its version and the identity of the file (device,
/// inode, size, modification time). The worker runs the very file the runner runs, so both
/// compute the same id; another build of it does not.
pub fn build_id_of(exe: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match std::fs::metadata(exe) {
        Ok(m) => (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()).hash(&mut h),
        Err(_) => exe.hash(&mut h),
    }
    format!("{}-{:016x}", env!("CARGO_PKG_VERSION"), h.finish())
}

/// The build id of the running executable.
pub fn build_id() -> String {
    match bridge::platform::own_executable() {
        Ok(exe) => build_id_of(&exe),
        Err(_) => build_id_of(Path::new("")),
    }
}

/// The command that starts `exe` as a worker with `options`.
pub fn command(exe: &Path, options: &WorkerOptions) -> Result<Command, CodecError> {
    command_with(exe, &[], options)
}

/// The command that starts `exe` with `args` (an interpreter's, before the program's own
/// arguments) as a worker with `options`.
pub fn command_with(
    exe: &Path,
    args: &[OsString],
    options: &WorkerOptions,
) -> Result<Command, CodecError> {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .arg("worker")
        .env(OPTIONS_ENV, options.encode()?);
    Ok(cmd)
}
