//! How a session's calls wait: a blocking call runs on the session's pool and is waited for
//! without the GIL, looking for Ctrl-C ([`interruptible`]); an asynchronous call runs there
//! and answers its `done(error, value)` callback ([`later`], [`answer`]).
//!
//! Invariants: no call waits with the GIL held; a blocking call looks for Python's signals
//! every [`SIGNAL_CHECK`] and, on one, raises it and leaves its work to finish on its own; an
//! asynchronous call returns at once and `done` is called exactly once (on a thread of the
//! pool, or at once if the call is refused), never by a thread of asyncio's executor, and
//! never once the interpreter is exiting; a call panicking answers an error; nothing runs on
//! the pool of a session inherited by a forked child (its threads are the parent's).

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;
use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::BoundObject;

use super::inner::Inner;
use crate::failure::{Failure, FailureKind};
use crate::pool::Refused;

/// How often a blocking call looks for Ctrl-C.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// The error of a call the pool refused.
fn refusal(refused: Refused) -> Failure {
    match refused {
        Refused::Closed => Failure::closed(),
        Refused::NoThread => Failure::new(FailureKind::Error, "cannot start a thread for the call"),
    }
}

/// A result as Python takes it: the failure raised as `NativeError`.
pub(super) fn raise<T>(r: Result<T, Failure>) -> PyResult<T> {
    r.map_err(Failure::into_pyerr)
}

/// Calls `done(None, value)` or `done((category, kind, code, message), None)`.
pub(super) fn answer<T>(done: Py<PyAny>, result: Result<T, Failure>)
where
    T: for<'py> IntoPyObject<'py>,
{
    let _ = crate::interpreter::attach(|py| {
        let called = match result {
            Ok(v) => v
                .into_pyobject(py)
                .map_err(Into::into)
                .and_then(|v| done.call1(py, (py.None(), v.into_bound().into_any()))),
            Err(f) => done.call1(py, (f.args(), py.None())),
        };
        if let Err(e) = called {
            e.print(py);
        }
    });
}

/// Runs `f` on the session's pool and waits for it without the GIL, looking for Ctrl-C
/// (and any other signal Python handles) every 100 ms; on one, raises it and leaves `f`
/// to finish on its own.
pub(super) fn interruptible<T: Send + 'static>(
    py: Python<'_>,
    inner: &Arc<Inner>,
    f: impl FnOnce(&Inner) -> Result<T, Failure> + Send + 'static,
) -> PyResult<T> {
    // In a forked child the pool's threads are the parent's: nothing would run the call.
    raise(inner.life.not_forgotten())?;
    let (tx, rx) = crossbeam_channel::bounded(1);
    let for_job = inner.clone();
    if let Err(refused) = inner.pool.submit(move || {
        let _ = tx.send(f(&for_job));
    }) {
        return Err(refusal(refused).into_pyerr());
    }
    loop {
        match py.detach(|| rx.recv_timeout(SIGNAL_CHECK)) {
            Ok(r) => return raise(r),
            Err(RecvTimeoutError::Timeout) => py.check_signals()?,
            Err(RecvTimeoutError::Disconnected) => {
                let why = "the call ended without an answer";
                return Err(Failure::new(FailureKind::Error, why).into_pyerr());
            }
        }
    }
}

/// Runs `f` on the session's pool and answers `done` with its result. Raises instead
/// once the interpreter is exiting (no thread of the library could answer then).
pub(super) fn later<T>(
    inner: &Arc<Inner>,
    done: Py<PyAny>,
    f: impl FnOnce(&Inner) -> Result<T, Failure> + Send + 'static,
) -> PyResult<()>
where
    T: for<'py> IntoPyObject<'py>,
{
    if crate::interpreter::exiting() {
        return Err(Failure::closed().into_pyerr());
    }
    raise(inner.life.not_forgotten())?;
    let for_job = inner.clone();
    let answered = Arc::new(Mutex::new(Some(done)));
    let done_by_job = answered.clone();
    let submitted = inner.pool.submit(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&for_job)))
            .unwrap_or_else(|_| Err(Failure::new(FailureKind::Error, "internal error (a panic)")));
        if let Some(done) = done_by_job.lock().take() {
            answer(done, result);
        }
    });
    if let Err(refused) = submitted {
        if let Some(done) = answered.lock().take() {
            answer::<Option<bool>>(done, Err(refusal(refused)));
        }
    }
    Ok(())
}
