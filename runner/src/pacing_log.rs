//! The historical requests of a run's workers that the broker's pacing still counts, handed
//! to each new worker so that IB's pacing holds across a replacement.
//!
//! A history longer than IB answers at once is sent by the worker in pages: it counts as
//! one request per page ([`worker::pacing::requests_counted`]). What is still counted is
//! handed to a new worker as part of its [`worker::Handover`] ([`PacingLog::handover`]).
//!
//! Invariants: a request counts from when it ended (answered, failed, or its worker died),
//! which is never before the gateway received it, however long the worker held it back for
//! pacing; a request still under way counts as sent at the moment it is asked about. So a
//! replacement worker paces at least as strictly as the broker does, never less. Requests
//! that ended more than [`PACING_MEMORY`] ago are forgotten.

use std::time::Duration;

use bridge::protocol::HistoryRequest;
use parking_lot::Mutex;

/// How long historical requests count for the broker's pacing (its longest window).
pub const PACING_MEMORY: Duration = Duration::from_secs(600);

/// One request: symbol, bar size, and when it ended (Unix ms), if it has.
#[derive(Debug, Clone)]
struct Entry {
    id: u64,
    /// Requests at the broker: one per page.
    pages: u64,
    symbol: String,
    bar_seconds: u32,
    ended_ms: Option<u64>,
}

/// The log of one run.
#[derive(Debug, Default)]
pub struct PacingLog {
    entries: Mutex<(u64, Vec<Entry>)>,
}

impl PacingLog {
    /// Notes that `request` is sent at Unix ms `now_ms`; returns its token for [`Self::ended`].
    pub fn sent(&self, request: &HistoryRequest, now_ms: u64) -> u64 {
        let oldest = now_ms.saturating_sub(PACING_MEMORY.as_millis() as u64);
        let mut guard = self.entries.lock();
        let (next, entries) = &mut *guard;
        entries.retain(|e| e.ended_ms.is_none_or(|t| t >= oldest));
        *next += 1;
        entries.push(Entry {
            id: *next,
            pages: worker::pacing::requests_counted(request),
            symbol: request.symbol.clone(),
            bar_seconds: request.bar_seconds,
            ended_ms: None,
        });
        *next
    }

    /// Notes that the request of `token` ended at Unix ms `now_ms`.
    pub fn ended(&self, token: u64, now_ms: u64) {
        if let Some(e) = self.entries.lock().1.iter_mut().find(|e| e.id == token) {
            e.ended_ms.get_or_insert(now_ms);
        }
    }

    /// What the broker still counts at Unix ms `now_ms`: (symbol, bar size, Unix ms), oldest
    /// first; requests under way as sent at `now_ms`.
    pub fn counted(&self, now_ms: u64) -> Vec<(String, u32, u64)> {
        let oldest = now_ms.saturating_sub(PACING_MEMORY.as_millis() as u64);
        let mut out: Vec<(String, u32, u64)> = self
            .entries
            .lock()
            .1
            .iter()
            .flat_map(|e| {
                let at = e.ended_ms.unwrap_or(now_ms);
                (0..e.pages).map(move |_| (e.symbol.clone(), e.bar_seconds, at))
            })
            .filter(|(_, _, at)| *at >= oldest)
            .collect();
        out.sort_by_key(|(_, _, at)| *at);
        out
    }

    /// What a new worker started at Unix ms `now_ms` inherits of this log: the requests
    /// the broker still counts ([`counted`](Self::counted)).
    pub fn handover(&self, now_ms: u64) -> worker::Handover {
        worker::Handover::paced_history(self.counted(now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(symbol: &str) -> HistoryRequest {
        HistoryRequest {
            symbol: symbol.into(),
            bar_seconds: 60,
            duration_seconds: 86_400,
            end: None,
        }
    }

    #[test]
    fn a_request_counts_from_when_it_ended_and_one_under_way_from_now() {
        let log = PacingLog::default();
        let spy = log.sent(&req("SPY"), 1_000);
        let _qqq = log.sent(&req("QQQ"), 1_500);
        // SPY was held back by the worker's pacing, then answered at 9 000.
        log.ended(spy, 9_000);
        // Ending twice keeps the first end.
        log.ended(spy, 9_500);
        assert_eq!(
            log.counted(10_000),
            vec![
                ("SPY".to_string(), 60, 9_000),
                ("QQQ".to_string(), 60, 10_000)
            ]
        );
    }

    /// One day of 1-second bars is 48 requests of 30 minutes at the broker.
    #[test]
    fn a_paged_history_counts_one_request_per_page() {
        let log = PacingLog::default();
        let day_of_seconds = HistoryRequest {
            bar_seconds: 1,
            ..req("SPY")
        };
        log.sent(&day_of_seconds, 1_000);
        let counted = log.counted(2_000);
        assert_eq!(counted.len(), 48);
        assert!(counted.iter().all(|c| *c == ("SPY".to_string(), 1, 2_000)));
    }

    #[test]
    fn requests_that_ended_ten_minutes_ago_are_forgotten() {
        let log = PacingLog::default();
        let memory = PACING_MEMORY.as_millis() as u64;
        let old = log.sent(&req("SPY"), 0);
        log.ended(old, 1_000);
        assert_eq!(log.counted(1_000 + memory).len(), 1);
        assert_eq!(log.counted(1_001 + memory), Vec::new());
        // And dropped from the log by the next request.
        log.sent(&req("QQQ"), 1_001 + memory);
        assert_eq!(log.entries.lock().1.len(), 1);
    }
}
