//! Why a call failed, as the Python layer tells it: a [`Failure`] of one [`FailureKind`],
//! raised as `NativeError(category, kind, code, message)` (or handed to an asynchronous call's
//! `done` as that tuple), which `ibbridge/__init__.py` turns into the package's exceptions.
//!
//! Invariants: [`FailureKind::category`] is the one place a kind becomes the name the Python
//! layer maps to its exception class (`_error` and `_CLASSES` in `ibbridge/__init__.py`); the
//! runner's errors are sorted by their type ([`SupervisorError`]'s variants, the request's
//! [`RequestError`]), never by their text; a closed session says why (the interpreter is
//! exiting, the session is closed, or it belongs to the parent process).

use bridge::protocol::{ErrorKind, RemoteError};
use bridge::{RequestError, SendError};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::PyErr;
use runner::config::ConfigError;
use runner::supervisor::SupervisorError;
use worker::entry::InWorker;

create_exception!(
    _native,
    NativeError,
    PyException,
    "An error of the bridge: (category, kind, code, message)."
);

/// What kind of failure, which picks the Python exception raised for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// No answer in time (`ibbridge.Timeout`).
    Timeout,
    /// The worker died or hung and could not be replaced, or could not be started
    /// (`ibbridge.WorkerGone`).
    WorkerGone,
    /// The broker refused (`ibbridge.BrokerError`, with the broker's kind and IB's code).
    Broker,
    /// A setting or argument that cannot be used (`ibbridge.ConfigError`).
    Config,
    /// The session is closed, not connected yet, or not this process's
    /// (`ibbridge.SessionClosed`).
    Closed,
    /// A risk limit of the configuration refused an order before it left
    /// (`ibbridge.RiskLimit`, its kind the limit's key).
    RiskLimit,
    /// Anything else (`ibbridge.Error`).
    Error,
}

impl FailureKind {
    /// The name the Python layer knows the kind by.
    pub(crate) fn category(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::WorkerGone => "worker_gone",
            FailureKind::Broker => "broker",
            FailureKind::Config => "config",
            FailureKind::Closed => "closed",
            FailureKind::RiskLimit => "risk_limit",
            FailureKind::Error => "error",
        }
    }
}

/// Why a call failed: `category` picks the exception class, `kind` is the broker's error kind
/// and `code` IB's error code when the message carries one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub(crate) category: FailureKind,
    pub(crate) kind: Option<String>,
    pub(crate) code: Option<i64>,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(category: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            category,
            kind: None,
            code: None,
            message: message.into(),
        }
    }

    /// The session is closed (or the interpreter exiting, which closes every session).
    pub(crate) fn closed() -> Failure {
        match crate::interpreter::exiting() {
            true => Failure::new(FailureKind::Closed, "the interpreter is exiting"),
            false => Failure::new(FailureKind::Closed, "the session is closed"),
        }
    }

    /// The session was inherited from the parent process by `os.fork`.
    pub(crate) fn forgotten() -> Failure {
        Failure::new(
            FailureKind::Closed,
            "this session belongs to the parent process (os.fork): open a new one here",
        )
    }

    /// No worker yet.
    pub(crate) fn not_connected() -> Failure {
        Failure::new(
            FailureKind::Closed,
            "the session is not connected: call connect() first",
        )
    }

    /// The broker refused, for `kind`.
    pub(crate) fn broker(kind: &str, code: Option<i64>, message: impl Into<String>) -> Failure {
        Failure {
            category: FailureKind::Broker,
            kind: Some(kind.to_owned()),
            code,
            message: message.into(),
        }
    }

    /// The worker's or the broker's refusal.
    pub(crate) fn from_remote(e: &RemoteError) -> Failure {
        let category = match e.kind {
            ErrorKind::Timeout => FailureKind::Timeout,
            _ => FailureKind::Broker,
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
            self.category.category(),
            self.kind.clone(),
            self.code,
            self.message.clone(),
        )
    }

    pub(crate) fn into_pyerr(self) -> PyErr {
        NativeError::new_err(self.args())
    }
}

impl From<InWorker> for Failure {
    fn from(e: InWorker) -> Failure {
        Failure::new(FailureKind::Error, e.to_string())
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Failure {
        Failure::new(FailureKind::Config, e.to_string())
    }
}

impl From<SupervisorError> for Failure {
    fn from(e: SupervisorError) -> Failure {
        let category = match &e {
            SupervisorError::Connect(r) | SupervisorError::Remote(r) => {
                return Failure::from_remote(r)
            }
            SupervisorError::Request(
                RequestError::Timeout | RequestError::Send(SendError::Timeout | SendError::Full),
            ) => FailureKind::Timeout,
            // The request itself cannot be sent (larger than a frame): the caller's input.
            SupervisorError::Request(RequestError::Send(
                SendError::TooLarge { .. } | SendError::Encode(_),
            )) => FailureKind::Config,
            SupervisorError::Request(RequestError::PeerGone(_))
            | SupervisorError::GaveUp { .. }
            | SupervisorError::Start(_)
            | SupervisorError::Environment(_) => FailureKind::WorkerGone,
            SupervisorError::Stopped => {
                return Failure::new(FailureKind::Closed, "the session is closed")
            }
            _ => FailureKind::Error,
        };
        Failure::new(category, e.to_string())
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
