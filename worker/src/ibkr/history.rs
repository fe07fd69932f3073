//! Historical bars from IB: IB's units for a request, one request with its deadline,
//! pacing retries and re-sending across a reconnect, and the conversion of IB's bars into
//! ours.
//!
//! Invariants: a request holds one of the backend's history slots for as long as it runs (at
//! most [`MAX_CONCURRENT_HISTORY`](super::MAX_CONCURRENT_HISTORY) in flight); a pacing
//! violation is retried at most [`PACING_RETRIES`] times with a doubling backoff, a lost
//! connection at most [`RECONNECT_RETRIES`] times; a bar without valid prices never leaves
//! this module (`ibapi` turns a missing price into 0.0), nor does the bar still forming at the
//! end of the history (IB sends it when the history ends now; the simulated market never
//! does), and an answer left without bars is [`ErrorKind::NoData`].

use std::sync::Arc;
use std::time::Duration;

use bridge::protocol::{Bar, ErrorKind, HistoryRequest, RemoteError};
use ibapi::market_data::historical::{BarSize, BarTimestamp, Duration as IbDuration};
use ibapi::prelude::Contract;

use super::choice::DataChoice;
use super::connection::{reconnected, RECONNECT_WAIT};
use super::errors::classify;
use crate::backend::error;
use crate::pacing::max_request_span;

/// Deadline of one historical request.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(60);
/// Pacing violations retried per request.
const PACING_RETRIES: u32 = 4;
/// Times a read in flight is re-sent after the gateway connection was lost and came back.
const RECONNECT_RETRIES: u32 = 3;

/// IB's bar size for a number of seconds.
pub fn bar_size(seconds: u32) -> Option<BarSize> {
    Some(match seconds {
        1 => BarSize::Sec,
        5 => BarSize::Sec5,
        10 => BarSize::Sec10,
        15 => BarSize::Sec15,
        30 => BarSize::Sec30,
        60 => BarSize::Min,
        120 => BarSize::Min2,
        180 => BarSize::Min3,
        240 => BarSize::Min4,
        300 => BarSize::Min5,
        600 => BarSize::Min10,
        900 => BarSize::Min15,
        1200 => BarSize::Min20,
        1800 => BarSize::Min30,
        3600 => BarSize::Hour,
        7200 => BarSize::Hour2,
        10800 => BarSize::Hour3,
        14400 => BarSize::Hour4,
        28800 => BarSize::Hour8,
        86400 => BarSize::Day,
        604_800 => BarSize::Week,
        _ => return None,
    })
}

/// The IB requests that make up `req`, newest first: `req` itself when IB answers it in one,
/// else pages of at most [`max_request_span`] ending where the next newer one starts (the
/// newest at `req.end`, or `now`).
pub(super) fn pages(req: &HistoryRequest, now: i64) -> Vec<HistoryRequest> {
    let span = max_request_span(req.bar_seconds);
    if req.duration_seconds <= span {
        return vec![req.clone()];
    }
    let end = req.end.unwrap_or(now);
    let mut pages = Vec::new();
    let mut covered = 0u64;
    while covered < req.duration_seconds {
        let this = span.min(req.duration_seconds - covered);
        pages.push(HistoryRequest {
            end: Some(end.saturating_sub(covered as i64)),
            duration_seconds: this,
            ..req.clone()
        });
        covered += this;
    }
    pages
}

/// The bars of every page, oldest first, each time once (pages may meet on a bar).
pub(super) fn merge(pages: Vec<Arc<Vec<Bar>>>) -> Arc<Vec<Bar>> {
    if pages.len() == 1 {
        if let Some(only) = pages.into_iter().next() {
            return only;
        }
        return Arc::new(Vec::new());
    }
    let mut all: Vec<Bar> = pages.iter().flat_map(|p| p.iter().copied()).collect();
    all.sort_by_key(|b| b.time);
    all.dedup_by_key(|b| b.time);
    Arc::new(all)
}

/// IB's duration for a number of seconds: seconds up to a day, whole days beyond.
pub fn duration(seconds: u64) -> IbDuration {
    if seconds <= 86_400 {
        IbDuration::seconds(seconds as i32)
    } else {
        IbDuration::days(seconds.div_ceil(86_400).min(i32::MAX as u64) as i32)
    }
}

fn bar_time(b: &BarTimestamp) -> i64 {
    match b {
        BarTimestamp::DateTime(t) => t.unix_timestamp(),
        BarTimestamp::Date(d) => d.midnight().assume_utc().unix_timestamp(),
    }
}

/// Our bars from IB's: a bar without a positive, finite price is dropped (`ibapi` turns a
/// missing price into 0.0; it never reaches a strategy here), and so is the last bar if it
/// is a bar of `size` seconds not over at `until` (Unix seconds): the bar still forming when
/// the answer came. A daily bar is dated, not timed: it counts as over [`DAY_SETTLED`] after
/// its date is over in UTC, which is after every session of that date in the Americas and
/// Europe, US extended hours (to 20:00 US/Eastern, 01:00 UTC in winter) included; so today's
/// daily bar comes only tomorrow, never while it may still be forming. Weekly bars are kept.
/// For daily bars `until` is the time of the answer, not a page's end: an older page's last
/// day is over.
/// How long after its UTC date a daily bar is taken as over, in seconds.
pub(super) const DAY_SETTLED: i64 = 2 * 3600;

pub(super) fn convert(
    symbol: &str,
    bars: &[ibapi::market_data::historical::Bar],
    size: u32,
    until: i64,
) -> Result<Arc<Vec<Bar>>, RemoteError> {
    let mut ours: Vec<Bar> = bars
        .iter()
        .map(|b| Bar {
            time: bar_time(&b.date),
            open: b.open,
            high: b.high,
            low: b.low,
            close: b.close,
            volume: b.volume,
        })
        .collect();
    let over_after = if size >= 86_400 { DAY_SETTLED } else { 0 };
    if size <= 86_400
        && ours.last().is_some_and(|b| {
            b.time
                .saturating_add(i64::from(size))
                .saturating_add(over_after)
                > until
        })
    {
        if let Some(b) = ours.pop() {
            tracing::debug!(symbol, time = b.time, "bar still forming left out");
        }
    }
    keep_valid(symbol, ours.into_iter())
}

/// The bars with valid prices, in order; the others are counted in one warning. No bar left
/// is [`ErrorKind::NoData`].
fn keep_valid(symbol: &str, bars: impl Iterator<Item = Bar>) -> Result<Arc<Vec<Bar>>, RemoteError> {
    let mut dropped = 0usize;
    let kept: Vec<Bar> = bars
        .filter(|b| {
            let ok = b.has_valid_prices();
            dropped += usize::from(!ok);
            ok
        })
        .collect();
    if dropped > 0 {
        tracing::warn!(symbol, dropped, "bars without a valid price dropped");
    }
    if kept.is_empty() {
        return Err(error(ErrorKind::NoData, format!("no bars for {symbol}")));
    }
    Ok(Arc::new(kept))
}

/// What one historical request asks.
pub(super) struct Fetch<'a> {
    pub(super) contract: &'a Contract,
    pub(super) size: BarSize,
    pub(super) span: IbDuration,
    /// End of the history; `None`: now.
    pub(super) end: Option<time::OffsetDateTime>,
    pub(super) choice: DataChoice,
}

/// One historical request, with a slot of the concurrency cap, its deadline and pacing
/// retries.
pub(super) async fn fetch(
    client: &ibapi::Client,
    req: &Fetch<'_>,
    slots: &tokio::sync::Semaphore,
    symbol: &str,
) -> Result<Arc<Vec<ibapi::market_data::historical::Bar>>, RemoteError> {
    let _slot = slots
        .acquire()
        .await
        .map_err(|_| error(ErrorKind::Internal, "history slots closed"))?;
    let mut backoff = Duration::from_secs(2);
    let mut attempt = 0;
    let mut reconnects = 0;
    loop {
        let mut builder = client
            .historical_data(req.contract, req.size)
            .what_to_show(req.choice.historical())
            .trading_hours(req.choice.hours())
            .duration(req.span);
        if let Some(end) = req.end {
            builder = builder.ending(end);
        }
        let fetched = tokio::time::timeout(HISTORY_TIMEOUT, builder.fetch()).await;
        match fetched {
            Err(_) => {
                return Err(error(
                    ErrorKind::Timeout,
                    format!(
                        "history of {symbol} not answered within {} s",
                        HISTORY_TIMEOUT.as_secs()
                    ),
                ))
            }
            Ok(Ok(data)) => return Ok(Arc::new(data.bars)),
            Ok(Err(e)) if e.is_connection_lost() && reconnects < RECONNECT_RETRIES => {
                reconnects += 1;
                tracing::warn!(
                    symbol,
                    "gateway connection lost mid-request; re-sending after the reconnect"
                );
                if let Err(why) = reconnected(client, RECONNECT_WAIT).await {
                    return Err(error(ErrorKind::Disconnected, why));
                }
            }
            Ok(Err(e)) => {
                let e = classify(&e);
                if e.kind == ErrorKind::Pacing && attempt < PACING_RETRIES {
                    attempt += 1;
                    tracing::warn!(
                        symbol,
                        attempt,
                        "pacing violation; retrying in {} s",
                        backoff.as_secs()
                    );
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    continue;
                }
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_sizes_and_durations_map_to_ib_units() {
        assert!(matches!(bar_size(60), Some(BarSize::Min)));
        assert!(matches!(bar_size(5), Some(BarSize::Sec5)));
        assert!(bar_size(7).is_none());
        assert_eq!(duration(86_400).to_string(), "86400 S");
        assert_eq!(duration(86_401).to_string(), "2 D");
    }

    fn bar(time: i64, close: f64) -> Bar {
        Bar {
            time,
            open: 1.0,
            high: 2.0,
            low: 0.5,
            close,
            volume: 10.0,
        }
    }

    #[test]
    fn bars_without_valid_prices_are_dropped_and_the_rest_kept_in_order() {
        let kept = keep_valid(
            "SPY",
            [bar(0, 1.5), bar(60, 0.0), bar(120, f64::NAN), bar(180, 1.2)].into_iter(),
        )
        .unwrap();
        assert_eq!(*kept, vec![bar(0, 1.5), bar(180, 1.2)]);
    }

    #[test]
    fn an_answer_without_a_valid_bar_is_no_data() {
        let e = keep_valid("SPY", [bar(0, 0.0)].into_iter()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NoData);
        assert_eq!(e.message, "no bars for SPY");
        let e = keep_valid("QQQ", std::iter::empty()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NoData);
    }
}

#[cfg(test)]
mod forming_bar_tests {
    use super::*;

    fn ib_bar(time: i64, price: f64) -> ibapi::market_data::historical::Bar {
        ibapi::market_data::historical::Bar {
            date: BarTimestamp::DateTime(
                time::OffsetDateTime::from_unix_timestamp(time).expect("in range"),
            ),
            open: price,
            high: price,
            low: price,
            close: price,
            volume: 1.0,
            wap: price,
            count: 1,
        }
    }

    /// IB answers a history that ends now with the bar still forming last: it is left out, and
    /// only it.
    #[test]
    fn the_bar_still_forming_at_the_end_is_left_out() {
        let bars = [
            ib_bar(1_000_020, 1.0),
            ib_bar(1_000_080, 2.0),
            ib_bar(1_000_140, 3.0),
        ];
        // Asked at 1_000_170: the bar of 1_000_140 runs until 1_000_200.
        let got = convert("SPY", &bars, 60, 1_000_170).expect("bars");
        assert_eq!(
            got.iter().map(|b| b.time).collect::<Vec<_>>(),
            vec![1_000_020, 1_000_080]
        );
        // Asked once it ended: complete.
        let got = convert("SPY", &bars, 60, 1_000_200).expect("bars");
        assert_eq!(got.len(), 3);
        // Only a forming bar: no data.
        let err = convert("SPY", &bars[2..], 60, 1_000_150).unwrap_err();
        assert_eq!(err.kind, ErrorKind::NoData);
    }

    /// Only the last bar can be the one forming; a daily bar is over when its UTC date is.
    #[test]
    fn only_the_last_bar_can_be_left_out_and_a_daily_one_once_its_date_is_over() {
        // An hourly bar labelled 09:30 that ended at 10:00 (a session's first), then the 10:00
        // bar, forming at 10:15.
        let bars = [ib_bar(34_200, 1.0), ib_bar(36_000, 2.0)];
        let got = convert("SPY", &bars, 3600, 36_900).expect("bars");
        assert_eq!(got.iter().map(|b| b.time).collect::<Vec<_>>(), vec![34_200]);
        let day = ibapi::market_data::historical::Bar {
            date: BarTimestamp::Date(
                time::Date::from_calendar_date(2023, time::Month::November, 17).expect("date"),
            ),
            ..ib_bar(0, 3.0)
        };
        let yesterday = ibapi::market_data::historical::Bar {
            date: BarTimestamp::Date(
                time::Date::from_calendar_date(2023, time::Month::November, 16).expect("date"),
            ),
            ..ib_bar(0, 2.5)
        };
        // 2023-11-17 16:00 US/Eastern (21:00 UTC): the 17th is not over; the 16th is.
        let got = convert("SPY", &[yesterday, day], 86_400, 1_700_254_800).expect("bars");
        assert_eq!(got.iter().map(|b| b.close).collect::<Vec<_>>(), vec![2.5]);
        // At midnight UTC extended hours go on (to 01:00 UTC in winter); at 02:00 it is over.
        let got = convert("SPY", &[yesterday, day], 86_400, 1_700_265_600).expect("bars");
        assert_eq!(got.len(), 1);
        let got = convert("SPY", &[yesterday, day], 86_400, 1_700_272_800).expect("bars");
        assert_eq!(got.len(), 2);
    }
}

#[cfg(test)]
mod paging_tests {
    use super::*;

    fn req(bar_seconds: u32, duration_seconds: u64, end: Option<i64>) -> HistoryRequest {
        HistoryRequest {
            symbol: "SPY".into(),
            bar_seconds,
            duration_seconds,
            end,
        }
    }

    #[test]
    fn a_history_ib_answers_at_once_is_one_request() {
        assert_eq!(
            pages(&req(60, 86_400, None), 1_000_000),
            vec![req(60, 86_400, None)]
        );
        assert_eq!(pages(&req(1, 1800, None), 1_000_000).len(), 1);
    }

    #[test]
    fn a_longer_history_is_paged_newest_first_without_gaps() {
        let p = pages(&req(1, 5000, None), 1_000_000);
        let spans: Vec<(Option<i64>, u64)> =
            p.iter().map(|r| (r.end, r.duration_seconds)).collect();
        assert_eq!(
            spans,
            vec![
                (Some(1_000_000), 1800),
                (Some(998_200), 1800),
                (Some(996_400), 1400)
            ]
        );
        let p = pages(&req(60, 3 * 86_400, Some(2_000_000)), 0);
        assert_eq!(p.len(), 3);
        assert_eq!(p[2].end, Some(2_000_000 - 2 * 86_400));
    }

    #[test]
    fn pages_merge_oldest_first_each_bar_once() {
        let bar = |time| Bar {
            time,
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume: 1.0,
        };
        let newest = Arc::new(vec![bar(20), bar(30)]);
        let older = Arc::new(vec![bar(0), bar(10), bar(20)]);
        let merged = merge(vec![newest, older]);
        assert_eq!(
            merged.iter().map(|b| b.time).collect::<Vec<_>>(),
            vec![0, 10, 20, 30]
        );
    }
}
