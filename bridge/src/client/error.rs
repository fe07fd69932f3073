//! Why a request failed: not sent, no reply in time, or the worker gone.
//!
//! Invariants: `RequestError::Send` never holds `SendError::PeerGone` (a gone worker is always
//! [`RequestError::PeerGone`], whichever path noticed it first).

#![forbid(unsafe_code)]

use std::fmt;

use crate::channel::{GoneReason, SendError};

/// A request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// The request was not sent: the ring stayed full until the deadline, the request is too
    /// large, or it could not be encoded. Never `SendError::PeerGone` (that is `PeerGone`).
    Send(SendError),
    /// No (final) reply before the deadline.
    Timeout,
    /// The worker is gone; the request may or may not have been carried out.
    PeerGone(GoneReason),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Send(e) => write!(f, "request not sent: {e}"),
            RequestError::Timeout => f.write_str("no reply before the deadline"),
            RequestError::PeerGone(r) => write!(f, "worker gone: {r}"),
        }
    }
}

impl std::error::Error for RequestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RequestError::Send(e) => Some(e),
            RequestError::Timeout | RequestError::PeerGone(_) => None,
        }
    }
}

impl From<SendError> for RequestError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::PeerGone(r) => RequestError::PeerGone(r),
            e => RequestError::Send(e),
        }
    }
}
