//! `ibbridge._native`: the Python package's core. A session ([`session::Core`]) is the
//! runner's supervisor in this process, over workers that are this very library loaded by
//! `python` ([`serve_worker`]); the Python layer (`ibbridge/__init__.py`) builds its API on it.
//!
//! Invariants: no call waits with the GIL held, and no thread of the library waits for the GIL
//! while it holds anything the bridge needs (replies are read by the bridge's own dispatcher,
//! which never touches Python); an asynchronous call's answer is handed to its event loop with
//! `call_soon_threadsafe`, never by a thread of asyncio's executor; every error reaches Python
//! as `NativeError(category, kind, code, message)` ([`failure`]), which the Python layer turns
//! into the package's exceptions.

mod bar;
mod failure;
mod interpreter;
mod log;
mod mailbox;
mod pool;
mod session;
mod stream;

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::failure::{Failure, FailureKind};

/// The extension's own heap allocations (every string and byte payload the codec decodes)
/// through the per-thread cache: see [`bridge::Allocator`].
#[global_allocator]
static ALLOC: bridge::Allocator = bridge::Allocator;

/// Serves as a session's worker when this process was started as one (`python -c ...
/// worker` with the worker's options in the environment), then ends the process with the
/// worker's exit code; `image` is this library's file (its build id is the one the session
/// checks). Raises if the process was not started as a worker.
#[pyfunction]
fn serve_worker(py: Python<'_>, image: PathBuf) -> PyResult<()> {
    if !worker::entry::started_as_worker() {
        return Err(Failure::new(
            FailureKind::Error,
            "not started as a session's worker (sessions start their workers themselves)",
        )
        .into_pyerr());
    }
    let code = py.detach(|| worker::entry::serve(Some(&image)));
    // Not back into the interpreter: the worker's threads may still hold the broker's
    // connection closed, and nothing of Python's needs finishing in a worker.
    std::process::exit(i32::from(code))
}

/// The package's native module.
#[pymodule]
mod _native {
    #[pymodule_export]
    use super::bar::Bar;
    #[pymodule_export]
    use super::failure::NativeError;
    #[pymodule_export]
    use super::interpreter::after_fork_in_child;
    #[pymodule_export]
    use super::interpreter::at_exit;
    #[pymodule_export]
    use super::serve_worker;
    #[pymodule_export]
    use super::session::remember_image;
    #[pymodule_export]
    use super::session::Core;
}
