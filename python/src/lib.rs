//! `ibbridge._native`: the Python package's core. A session ([`session::Core`]) is the
//! runner's supervisor in this process, over workers that are this very library loaded by
//! `python` ([`serve_worker`]); the Python layer (`ibbridge/__init__.py`) builds its API on it.
//!
//! Invariants: no call waits with the GIL held, and no thread of the library waits for the GIL
//! while it holds anything the bridge needs (replies are read by the bridge's own dispatcher,
//! which never touches Python); an asynchronous call's answer is handed to its event loop with
//! `call_soon_threadsafe`, never by a thread of asyncio's executor; every error reaches Python
//! as `NativeError(category, kind, code, message)`, which the Python layer turns into the
//! package's exceptions.

mod log;
mod pool;
mod session;
mod stream;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use runner::supervisor::SupervisorError;

create_exception!(
    _native,
    NativeError,
    PyException,
    "An error of the bridge: (category, kind, code, message)."
);

/// One bar: its start (Unix seconds) and prices.
#[pyclass(module = "ibbridge", frozen, get_all, eq)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bar {
    /// Start of the bar, Unix seconds.
    time: i64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
}

#[pymethods]
impl Bar {
    #[new]
    fn new(time: i64, open: f64, high: f64, low: f64, close: f64, volume: f64) -> Bar {
        Bar {
            time,
            open,
            high,
            low,
            close,
            volume,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Bar(time={}, open={}, high={}, low={}, close={}, volume={})",
            self.time, self.open, self.high, self.low, self.close, self.volume
        )
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let args = (
            self.time,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
        );
        (py.get_type::<Bar>(), args).into_pyobject(py)
    }
}

impl From<bridge::protocol::Bar> for Bar {
    fn from(b: bridge::protocol::Bar) -> Bar {
        Bar {
            time: b.time,
            open: b.open,
            high: b.high,
            low: b.low,
            close: b.close,
            volume: b.volume,
        }
    }
}

/// Why a call failed, as the Python layer tells it: `category` picks the exception class
/// (`timeout`, `worker_gone`, `broker`, `closed`, `config`, `error`), `kind` the broker's
/// error kind, `code` IB's error code when the message carries one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub(crate) category: &'static str,
    pub(crate) kind: Option<String>,
    pub(crate) code: Option<i64>,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(category: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            category,
            kind: None,
            code: None,
            message: message.into(),
        }
    }

    fn remote(e: &bridge::protocol::RemoteError) -> Failure {
        let category = match e.kind {
            bridge::protocol::ErrorKind::Timeout => "timeout",
            _ => "broker",
        };
        Failure {
            category,
            kind: Some(snake_case(&format!("{:?}", e.kind))),
            code: ib_code(&e.message),
            message: e.to_string(),
        }
    }

    /// The arguments of the `NativeError` it raises.
    pub(crate) fn args(&self) -> (&'static str, Option<String>, Option<i64>, String) {
        (
            self.category,
            self.kind.clone(),
            self.code,
            self.message.clone(),
        )
    }

    pub(crate) fn into_pyerr(self) -> PyErr {
        NativeError::new_err(self.args())
    }
}

impl From<SupervisorError> for Failure {
    fn from(e: SupervisorError) -> Failure {
        use bridge::{RequestError, SendError};
        match &e {
            SupervisorError::Connect(r) | SupervisorError::Remote(r) => Failure::remote(r),
            SupervisorError::Request(
                RequestError::Timeout | RequestError::Send(SendError::Timeout | SendError::Full),
            ) => Failure::new("timeout", e.to_string()),
            // The request itself cannot be sent (larger than a frame): the caller's input.
            SupervisorError::Request(RequestError::Send(
                SendError::TooLarge { .. } | SendError::Encode(_),
            )) => Failure::new("config", e.to_string()),
            SupervisorError::Request(RequestError::PeerGone(_))
            | SupervisorError::GaveUp { .. }
            | SupervisorError::Start(_)
            | SupervisorError::Environment(_) => Failure::new("worker_gone", e.to_string()),
            SupervisorError::Stopped => Failure::new("closed", "the session is closed"),
            _ => Failure::new("error", e.to_string()),
        }
    }
}

/// `UnknownSymbol` -> `unknown_symbol`.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// IB's error code in a message that carries one as `[200] ...`.
fn ib_code(message: &str) -> Option<i64> {
    let start = message.find('[')? + 1;
    let len = message[start..].find(']')?;
    let digits = &message[start..start + len];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

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
/// (then `None`). Every such thread goes through here: a thread that takes the GIL while the
/// interpreter finishes is ended by it mid-call, which brings the process down.
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
fn at_exit(py: Python<'_>) {
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
fn after_fork_in_child() {
    ATTACHED.store(0, Ordering::SeqCst);
}

/// Serves as a session's worker when this process was started as one (`python -c ...
/// worker` with the worker's options in the environment), then ends the process with the
/// worker's exit code; `image` is this library's file (its build id is the one the session
/// checks). Raises if the process was not started as a worker.
#[pyfunction]
fn serve_worker(py: Python<'_>, image: PathBuf) -> PyResult<()> {
    let asked = std::env::args_os().any(|a| a == "worker")
        && std::env::var_os(worker::OPTIONS_ENV).is_some();
    if !asked {
        return Err(Failure::new(
            "error",
            "not started as a session's worker (sessions start their workers themselves)",
        )
        .into_pyerr());
    }
    let code = py.detach(|| match worker::run_as(&image) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("worker: {e}");
            2
        }
    });
    // Not back into the interpreter: the worker's threads may still hold the broker's
    // connection closed, and nothing of Python's needs finishing in a worker.
    std::process::exit(code)
}

/// The package's native module.
#[pymodule]
mod _native {
    #[pymodule_export]
    use super::after_fork_in_child;
    #[pymodule_export]
    use super::at_exit;
    #[pymodule_export]
    use super::serve_worker;
    #[pymodule_export]
    use super::session::remember_image;
    #[pymodule_export]
    use super::session::Core;
    #[pymodule_export]
    use super::Bar;
    #[pymodule_export]
    use super::NativeError;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_and_codes_read_as_python_sees_them() {
        assert_eq!(snake_case("UnknownSymbol"), "unknown_symbol");
        assert_eq!(snake_case("Timeout"), "timeout");
        assert_eq!(ib_code("Internal: [200] No security definition"), Some(200));
        assert_eq!(ib_code("[x] nothing"), None);
        assert_eq!(ib_code("no code"), None);
        assert_eq!(ib_code("[] empty"), None);
    }
}
