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
        ibapi::Error::Notice(n) => notice_kind(n.code, &lower),
        _ if lower.contains("pacing") => ErrorKind::Pacing,
        _ if lower.contains("no security definition") => ErrorKind::NoSecurityDefinition,
        _ => ErrorKind::Internal,
    };
    error(kind, text)
}

/// The kind of an IB error or notice by its code and (lowercase) text.
pub fn notice_kind(code: i32, lower: &str) -> ErrorKind {
    match code {
        162 if lower.contains("pacing") => ErrorKind::Pacing,
        162 if lower.contains("permission") => ErrorKind::NotPermitted,
        162 | 166 if lower.contains("no data") => ErrorKind::NoData,
        162 => ErrorKind::NoData,
        200 => ErrorKind::NoSecurityDefinition,
        354 | 420 | 10089 | 10090 | 10091 | 10167 => ErrorKind::NotPermitted,
        10197 => ErrorKind::CompetingSession,
        1100 | 1300 | 2110 => ErrorKind::Disconnected,
        2103 | 2105 | 2157 => ErrorKind::FarmDown,
        _ => ErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_and_advisories_are_told_apart() {
        let k = |code, text: &str| notice_kind(code, &text.to_lowercase());
        assert_eq!(
            k(354, "Requested market data is not subscribed."),
            ErrorKind::NotPermitted
        );
        assert_eq!(
            k(
                10089,
                "Requested market data requires additional subscription"
            ),
            ErrorKind::NotPermitted
        );
        assert_eq!(
            k(420, "Invalid real-time query: No market data permissions"),
            ErrorKind::NotPermitted
        );
        assert_eq!(
            k(162, "Historical Market Data Service error message:No market data permissions for ISLAND STK"),
            ErrorKind::NotPermitted
        );
        assert_eq!(
            k(162, "Historical Market Data Service error message:HMDS query returned no data: SPY@SMART Trades"),
            ErrorKind::NoData
        );
        assert_eq!(
            k(162, "Historical Market Data Service error message:Historical data request pacing violation"),
            ErrorKind::Pacing
        );
        assert_eq!(
            k(10197, "No market data during competing live session"),
            ErrorKind::CompetingSession
        );
        assert_eq!(
            k(200, "No security definition has been found for the request"),
            ErrorKind::NoSecurityDefinition
        );
        assert_eq!(
            k(2105, "HMDS data farm connection is broken:euhmds"),
            ErrorKind::FarmDown
        );
        assert_eq!(k(9999, "something new"), ErrorKind::Internal);
    }
}
