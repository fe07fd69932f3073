//! What IB's errors mean for the runner: each `ibapi` error mapped to the [`ErrorKind`] the
//! runner tells apart.
//!
//! Invariants: the message is IB's own text, unchanged; a code or text not recognised is
//! [`ErrorKind::Internal`], never guessed to be retryable.

use bridge::protocol::{ErrorKind, RemoteError};

use crate::backend::error;

/// Tells IB's errors apart.
pub fn classify(e: &ibapi::Error) -> RemoteError {
    let text = e.to_string();
    let lower = text.to_lowercase();
    let kind = match e {
        ibapi::Error::ClientIdInUse { .. } => ErrorKind::ClientIdInUse,
        ibapi::Error::Timeout => ErrorKind::Timeout,
        ibapi::Error::ConnectionReset
        | ibapi::Error::ConnectionFailed
        | ibapi::Error::Shutdown
        | ibapi::Error::Io(_) => ErrorKind::Disconnected,
        ibapi::Error::Notice(n) => match n.code {
            162 if lower.contains("pacing") => ErrorKind::Pacing,
            162 | 166 if lower.contains("no data") => ErrorKind::NoData,
            162 => ErrorKind::NoData,
            200 => ErrorKind::NoSecurityDefinition,
            1100 | 1300 | 2110 => ErrorKind::Disconnected,
            2103 | 2105 | 2157 => ErrorKind::FarmDown,
            _ => ErrorKind::Internal,
        },
        _ if lower.contains("pacing") => ErrorKind::Pacing,
        _ if lower.contains("no security definition") => ErrorKind::NoSecurityDefinition,
        _ => ErrorKind::Internal,
    };
    error(kind, text)
}
