//! The one way into a worker process: whether this process was started as a worker
//! ([`started_as_worker`]), serving as one with the exit-code convention every front end shares
//! ([`serve`], [`serve_if_started_as_worker`]), and the guard that keeps a worker from opening
//! a session of its own ([`refuse_session_in_worker`]).
//!
//! Every program that starts workers (the `runner` binary, a program of one's own, the Python
//! extension run by `python -c <program> <library> worker`) starts them with a `worker`
//! argument and the worker's options in [`OPTIONS_ENV`], so one test recognises all of them.
//!
//! Invariants: a process counts as started as a worker only when both the `worker` argument
//! (the last one, after the program's name: [`crate::command_with`] puts it there) and
//! [`OPTIONS_ENV`] are present; a worker that fails prints one line, `worker: <why>`, on
//! stderr and exits with [`EXIT_FAILED`]; a process
//! with [`OPTIONS_ENV`] set never opens a session (it would start a worker that starts
//! another, for ever).

use std::fmt;
use std::path::Path;

use crate::options::OPTIONS_ENV;

/// The argument that starts a program as a worker ([`crate::command_with`] passes it).
pub const WORKER_ARG: &str = "worker";

/// Exit code of a worker that stopped with an error.
pub const EXIT_FAILED: u8 = 2;

/// Whether this process was started as a worker: a `worker` argument last, after the
/// program's name (`runner worker`, or after an interpreter's own, `python -c <program>
/// <library> worker`), and the worker's options in the environment.
pub fn started_as_worker() -> bool {
    let mut args = std::env::args_os().skip(1);
    let last_is_worker = args.next_back().is_some_and(|a| a == WORKER_ARG);
    last_is_worker && std::env::var_os(OPTIONS_ENV).is_some()
}

/// Serves as a worker until the runner shuts it down or goes away; the process's exit code:
/// 0, or [`EXIT_FAILED`] after `worker: <why>` on stderr. `image` is the file that holds the
/// worker's code when that is not the executable's own (a library an interpreter loaded,
/// [`crate::run_as`]); `None` for a program's own code ([`crate::run`]).
pub fn serve(image: Option<&Path>) -> u8 {
    let served = match image {
        Some(image) => crate::serve::run_as(image),
        None => crate::serve::run(),
    };
    match served {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("worker: {e}");
            EXIT_FAILED
        }
    }
}

/// [`serve`] if this process was [started as a worker](started_as_worker), with the exit
/// code; else `None` (the program goes on as itself).
pub fn serve_if_started_as_worker(image: Option<&Path>) -> Option<u8> {
    started_as_worker().then(|| serve(image))
}

/// A session was about to be opened in a process started as a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InWorker;

impl fmt::Display for InWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "this process was started as a session's worker ({OPTIONS_ENV} is set): it cannot \
             open a session"
        )
    }
}

impl std::error::Error for InWorker {}

/// Refuses to open a session in a process started as a worker (its options in the
/// environment): such a session would start workers that start sessions, one after another.
pub fn refuse_session_in_worker() -> Result<(), InWorker> {
    match std::env::var_os(OPTIONS_ENV) {
        Some(_) => Err(InWorker),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_the_variable() {
        assert!(InWorker.to_string().contains(OPTIONS_ENV));
        assert!(InWorker
            .to_string()
            .contains("started as a session's worker"));
    }
}
