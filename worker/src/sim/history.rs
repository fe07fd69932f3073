//! Which bars a history request covers on the simulated market ([`history_range`]), and the
//! most one request may ask for ([`MAX_BARS`]).
//!
//! Invariants: the last bar of a range is complete at the request's end (or now); a range
//! holds exactly `duration / bar size` bars, at least one and at most [`MAX_BARS`].

use bridge::protocol::{ErrorKind, HistoryRequest, RemoteError};

use crate::backend::error;

/// Most bars one request may ask for.
pub const MAX_BARS: u64 = 5_000_000;

/// The (start, count) of the bars a history request covers: the last complete bar ends at or
/// before `end`.
pub fn history_range(req: &HistoryRequest, now: i64) -> Result<(i64, u64), RemoteError> {
    if req.bar_seconds == 0 {
        return Err(error(
            ErrorKind::BadRequest,
            "bar size must be at least 1 second",
        ));
    }
    let size = u64::from(req.bar_seconds);
    let count = req.duration_seconds / size;
    if count == 0 {
        return Err(error(
            ErrorKind::BadRequest,
            format!(
                "duration {} s is shorter than one {} s bar",
                req.duration_seconds, req.bar_seconds
            ),
        ));
    }
    if count > MAX_BARS {
        return Err(error(
            ErrorKind::BadRequest,
            format!("{count} bars requested, at most {MAX_BARS} per request"),
        ));
    }
    let size = i64::from(req.bar_seconds);
    let end = req.end.unwrap_or(now);
    let last = end.div_euclid(size) * size - size;
    Ok((last - (count as i64 - 1) * size, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_range_counts_exactly() {
        let req = HistoryRequest {
            symbol: "SPY".into(),
            bar_seconds: 60,
            duration_seconds: 86_400,
            end: Some(1_700_000_030),
        };
        let (first, count) = history_range(&req, 0).unwrap();
        assert_eq!(count, 1440);
        assert_eq!(first % 60, 0);
        // The last complete bar ends at 1_699_999_980, before `end`.
        assert_eq!(first + 1439 * 60, 1_699_999_920);
        let zero = HistoryRequest {
            bar_seconds: 0,
            ..req.clone()
        };
        assert_eq!(
            history_range(&zero, 0).unwrap_err().kind,
            ErrorKind::BadRequest
        );
    }
}
