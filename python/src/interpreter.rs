//! The library's threads and the interpreter's end: every thread of the library's own that
//! takes the GIL goes through [`attach`], and [`at_exit`] (run by the package's `atexit`
//! handler once every session is closed) keeps them from taking it again.
//!
//! Invariants: once [`at_exit`] has returned, no thread of the library holds the GIL or waits
//! for it, and none takes it again (a thread that takes it while the interpreter finishes is
//! ended by it mid-call, which brings the process down); [`attach`] counts itself before it
//! looks at whether the interpreter is exiting and [`at_exit`] marks the exit before it
//! counts (both `SeqCst`), so either the thread sees the exit or the exit sees the thread;
//! in a child made by `os.fork` the parent's threads are not counted ([`after_fork_in_child`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// Set at the interpreter's exit: no thread of the library takes the GIL any more.
static EXITING: AtomicBool = AtomicBool::new(false);
/// Threads of the library with the GIL or waiting for it.
static ATTACHED: AtomicUsize = AtomicUsize::new(0);
/// How long the exit waits for them (they hold the GIL for microseconds at a time).
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// Whether the interpreter is exiting (its `atexit` functions have run ours).
pub(crate) fn exiting() -> bool {
    EXITING.load(Ordering::SeqCst)
}

/// Runs `f` with the GIL on a thread of the library's own, unless the interpreter is exiting
/// (then `None`). Every such thread goes through here.
pub(crate) fn attach<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> Option<R> {
    // Counted before looking at EXITING, and `at_exit` sets it before it counts (both SeqCst):
    // either this sees it set, or `at_exit` sees this counted and waits.
    ATTACHED.fetch_add(1, Ordering::SeqCst);
    let r = match EXITING.load(Ordering::SeqCst) {
        true => None,
        false => Python::try_attach(f),
    };
    ATTACHED.fetch_sub(1, Ordering::SeqCst);
    r
}

/// Called at the interpreter's exit, after every session is closed: waits, without the GIL,
/// for the library's threads that hold it or wait for it to be done, and keeps them from
/// taking it again. (Python's exit runs its `atexit` functions before it starts to finish.)
#[pyfunction]
pub(crate) fn at_exit(py: Python<'_>) {
    py.detach(|| {
        EXITING.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + EXIT_WAIT;
        while ATTACHED.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
    });
}

/// Called in a child made by `os.fork`: the parent's threads counted in [`ATTACHED`] do not
/// exist here.
#[pyfunction]
pub(crate) fn after_fork_in_child() {
    ATTACHED.store(0, Ordering::SeqCst);
}
