//! Why the supervisor could not do what was asked ([`SupervisorError`]), with each cause as
//! the value it came from: a worker that could not start ([`StartFailure`]), a machine that
//! cannot host it ([`EnvironmentFailure`]), an answer that does not fit ([`ProtocolError`]).
//!
//! Invariants: every error with a cause gives it as [`std::error::Error::source`]; the
//! texts are the ones the runner prints (`cannot start the worker: ...`, `unexpected answer:
//! ...`); an error is cheap to clone (a supervisor that gave up hands its reason to every
//! caller), so causes that cannot be cloned are shared.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bridge::codec::CodecError;
use bridge::protocol::{RemoteError, Reply};
use bridge::{RequestError, StartError};

use crate::worker_setup::SetupError;

/// Why the supervisor could not do what was asked.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SupervisorError {
    /// A worker could not be started.
    Start(StartFailure),
    /// A worker could not be started for a reason of this machine's, not the worker's: the
    /// shared memory the bridge needs is missing (`/dev/shm` short of space), the directory
    /// where segment names are recorded is unusable, the worker executable is now another
    /// build (replaced on disk mid-run), or the run's workers cannot be set up (the simulated
    /// broker's orders file). Retrying does not help; the operator must change the
    /// configuration or the machine.
    Environment(EnvironmentFailure),
    /// A worker started but could not connect to the broker.
    Connect(RemoteError),
    /// Too many restarts within the restart window.
    GaveUp {
        /// Restarts within the window.
        restarts: u32,
        /// The window.
        window: Duration,
        /// Why the last worker did not start; `None`: it died.
        last: Option<Box<SupervisorError>>,
    },
    /// The hub this program is a client of did not come back within the wait.
    HubGone {
        /// The hub's name.
        hub: String,
        /// How long it was waited for.
        waited: Duration,
        /// Why the last attach failed.
        last: Option<Box<SupervisorError>>,
    },
    /// The request failed and is not retried.
    Request(RequestError),
    /// The broker refused the request.
    Remote(RemoteError),
    /// The worker answered something that does not fit the request.
    Protocol(ProtocolError),
    /// The runner is shutting down.
    Stopped,
}

impl fmt::Display for SupervisorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SupervisorError::Start(e) => write!(f, "cannot start the worker: {e}"),
            SupervisorError::Environment(e) => write!(f, "cannot start the worker: {e}"),
            SupervisorError::Connect(e) => write!(f, "cannot connect to the broker: {e}"),
            SupervisorError::GaveUp {
                restarts,
                window,
                last,
            } => {
                let secs = window.as_secs();
                write!(
                    f,
                    "gave up after {restarts} worker restarts within {secs} s; "
                )?;
                match last {
                    Some(e) => write!(f, "last failure: {e}"),
                    None => f.write_str("last failure: worker gone"),
                }
            }
            SupervisorError::HubGone { hub, waited, last } => {
                write!(
                    f,
                    "hub {hub} did not come back within {} s",
                    waited.as_secs()
                )?;
                match last {
                    Some(e) => write!(f, "; last failure: {e}"),
                    None => Ok(()),
                }
            }
            SupervisorError::Request(e) => e.fmt(f),
            SupervisorError::Remote(e) => e.fmt(f),
            SupervisorError::Protocol(e) => write!(f, "unexpected answer: {e}"),
            SupervisorError::Stopped => f.write_str("stopped"),
        }
    }
}

impl Error for SupervisorError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            SupervisorError::Start(e) => Some(e),
            SupervisorError::Environment(e) => Some(e),
            SupervisorError::Connect(e) | SupervisorError::Remote(e) => Some(e),
            SupervisorError::Request(e) => Some(e),
            SupervisorError::Protocol(e) => Some(e),
            SupervisorError::GaveUp { last, .. } | SupervisorError::HubGone { last, .. } => {
                last.as_deref().map(|e| e as _)
            }
            SupervisorError::Stopped => None,
        }
    }
}

impl From<SetupError> for SupervisorError {
    fn from(e: SetupError) -> SupervisorError {
        SupervisorError::Environment(EnvironmentFailure::Setup(e))
    }
}

/// Why a worker could not be started or connected (the runner's side of it may be retried).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StartFailure {
    /// Its options could not be encoded into its environment.
    Options(CodecError),
    /// The bridge could not start it (the process, the segment, the hello).
    Spawn(Arc<StartError>),
    /// The thread that watches the workers could not be started.
    Thread(Arc<std::io::Error>),
    /// Its `connect` request failed.
    Connect(RequestError),
    /// Restoring a subscription on it failed.
    Resubscribe(RequestError),
}

impl fmt::Display for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartFailure::Options(e) => e.fmt(f),
            StartFailure::Spawn(e) => e.fmt(f),
            StartFailure::Thread(e) => write!(f, "cannot start supervisor thread: {e}"),
            StartFailure::Connect(e) => write!(f, "connect: {e}"),
            StartFailure::Resubscribe(e) => write!(f, "resubscribe: {e}"),
        }
    }
}

impl Error for StartFailure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            StartFailure::Options(e) => Some(e),
            StartFailure::Spawn(e) => Some(e.as_ref()),
            StartFailure::Thread(e) => Some(e.as_ref()),
            StartFailure::Connect(e) | StartFailure::Resubscribe(e) => Some(e),
        }
    }
}

/// What of this machine's keeps a worker from starting.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EnvironmentFailure {
    /// The bridge cannot be hosted (shared memory, the registry of segment names), or the
    /// worker is another build.
    Bridge(Arc<StartError>),
    /// The run's workers cannot be set up.
    Setup(SetupError),
}

impl fmt::Display for EnvironmentFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvironmentFailure::Bridge(e) => e.fmt(f),
            EnvironmentFailure::Setup(e) => e.fmt(f),
        }
    }
}

impl Error for EnvironmentFailure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            EnvironmentFailure::Bridge(e) => Some(e.as_ref()),
            EnvironmentFailure::Setup(e) => Some(e),
        }
    }
}

/// An answer of the worker's that does not fit its request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// `reply` came to a request of kind `to` (`connect`, `history`, `orders`, ...).
    Unexpected {
        /// What came.
        reply: Box<Reply>,
        /// The request it came to.
        to: &'static str,
    },
    /// A history stream's end marker counted other bars than arrived.
    HistoryCount {
        /// The history's symbol.
        symbol: String,
        /// Bars the end marker announced.
        announced: u64,
        /// Bars that arrived.
        arrived: usize,
    },
    /// A history stream ended without its end marker.
    HistoryEndedEarly,
    /// An order the broker took is not in the answer that must hold it.
    OrderLost,
}

impl ProtocolError {
    /// `reply` to a request of kind `to`.
    pub fn unexpected(reply: Reply, to: &'static str) -> ProtocolError {
        ProtocolError::Unexpected {
            reply: Box::new(reply),
            to,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Unexpected { reply, to } => write!(f, "{reply:?} to {to}"),
            ProtocolError::HistoryCount {
                symbol,
                announced,
                arrived,
            } => write!(
                f,
                "history of {symbol} announced {announced} bars, {arrived} arrived"
            ),
            ProtocolError::HistoryEndedEarly => f.write_str("history stream ended early"),
            ProtocolError::OrderLost => f.write_str("order lost"),
        }
    }
}

impl Error for ProtocolError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_the_ones_printed_and_causes_are_sources() {
        let e = SupervisorError::Start(StartFailure::Connect(RequestError::Timeout));
        assert!(e
            .to_string()
            .starts_with("cannot start the worker: connect: "));
        assert!(e.source().is_some());
        let p = SupervisorError::Protocol(ProtocolError::unexpected(Reply::Subscribed, "ping"));
        assert_eq!(p.to_string(), "unexpected answer: Subscribed to ping");
        assert_eq!(
            SupervisorError::Protocol(ProtocolError::HistoryCount {
                symbol: "SPY".into(),
                announced: 3,
                arrived: 2
            })
            .to_string(),
            "unexpected answer: history of SPY announced 3 bars, 2 arrived"
        );
    }
}
