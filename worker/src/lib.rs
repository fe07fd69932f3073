//! The broker worker: attaches to the runner over the bridge, owns the broker connection
//! (the simulated market or Interactive Brokers), and answers the runner's requests.
//!
//! The worker is the runner's own executable started with its hidden `worker` subcommand, so
//! the code that runs is always the code that was built. Its options travel in the environment
//! ([`OPTIONS_ENV`]); its `tracing` events travel over the bridge and appear in the runner's log.
//!
//! Modules: the main loop (`serve`), what a broker offers ([`backend`]) and the two brokers
//! ([`sim`], [`ibkr`] with IB's [`pacing`]), the options ([`options`]), log forwarding
//! (`logging`); and three small helpers the runner and the tests use too: [`unix_time`],
//! [`random`], [`signal`].
#![forbid(unsafe_code)]

pub mod backend;
pub mod ibkr;
mod logging;
pub mod options;
pub mod pacing;
pub mod random;
mod serve;
pub mod signal;
pub mod sim;
pub mod unix_time;

pub use options::{BackendOptions, SimFaults, SimOptions, WorkerOptions, OPTIONS_ENV};
pub use serve::{run, run_as, WorkerError};

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::process::Command;

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
pub fn command(exe: &Path, options: &WorkerOptions) -> Result<Command, bridge::codec::CodecError> {
    command_with(exe, &[], options)
}

/// The command that starts `exe` with `args` (an interpreter's, before the program's own
/// arguments) as a worker with `options`.
pub fn command_with(
    exe: &Path,
    args: &[std::ffi::OsString],
    options: &WorkerOptions,
) -> Result<Command, bridge::codec::CodecError> {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .arg("worker")
        .env(OPTIONS_ENV, options.encode()?);
    Ok(cmd)
}
