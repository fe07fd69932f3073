//! How a session starts its workers: `python -c` running this very library's
//! `serve_worker` ([`WORKER_PROGRAM`]), with the run's journal and the worker's options, and
//! the build id both ends check ([`remember_image`]).
//!
//! Invariants: a worker runs the code loaded in this process, or is refused (the build id is
//! the one of the library's file as it was at import); nothing of the working directory is
//! on a worker's module path; a process started as a worker never starts one.

use std::path::PathBuf;
use std::sync::OnceLock;

use pyo3::prelude::*;
use runner::config::Config;
use runner::supervisor::SupervisorError;
use runner::worker_setup::{self, PreparedRun, WorkerProgram};

use crate::failure::Failure;

/// The program `python -c` runs in a worker: this library, loaded from its file (the first
/// argument) without the package around it, and with the working directory (which `-c`
/// puts first) off the module path: nothing there can stand in for the standard library.
/// (Not `-I`, which would also ignore `PYTHONHOME`, which some installations need.)
const WORKER_PROGRAM: &str =
    "import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; \
     import importlib.util as u; \
     s = u.spec_from_file_location('ibbridge._native', sys.argv[1]); \
     m = u.module_from_spec(s); s.loader.exec_module(m); m.serve_worker(sys.argv[1])";

/// The build id of this library as it was when it was imported ([`remember_image`]): a worker
/// started from a file replaced since then (a `pip install` of another build) is refused, as
/// the code loaded here is not the new file's.
static BUILD_ID: OnceLock<String> = OnceLock::new();

/// Takes the build id of this library's file `image`, once (at import).
#[pyfunction]
pub(crate) fn remember_image(image: PathBuf) {
    BUILD_ID.get_or_init(|| worker::build_id_of(&image));
}

/// A session's name at a hub, unless `hub.client` (or `client=`) names one.
const PYTHON_CLIENT: &str = "python";

/// How to start a worker: the interpreter and this library's file.
pub(super) struct Program {
    pub(super) python: PathBuf,
    pub(super) image: PathBuf,
}

impl Program {
    /// How to start the workers of a session of `cfg`, and the journal they share (kept for
    /// as long as they run). Refused in a process started as a worker.
    pub(super) fn prepare(&self, cfg: &Config) -> Result<PreparedRun, Failure> {
        worker::entry::refuse_session_in_worker()?;
        let program = WorkerProgram::interpreted(
            self.python.clone(),
            vec![
                "-c".into(),
                WORKER_PROGRAM.into(),
                self.image.clone().into_os_string(),
            ],
            // The worker's code is this library, not the interpreter: both ends name its file.
            BUILD_ID
                .get_or_init(|| worker::build_id_of(&self.image))
                .clone(),
        );
        let mut cfg = cfg.clone();
        let mut prepared = worker_setup::prepare(&mut cfg, program, worker::SimFaults::default())
            .map_err(|e| Failure::from(SupervisorError::from(e)))?;
        // Through a hub, one namespace for the sessions (unless named): a reference given
        // again finds its order, as it does without a hub.
        prepared.setup.hub = worker_setup::HubTarget::of(&cfg, PYTHON_CLIENT);
        Ok(prepared)
    }
}
