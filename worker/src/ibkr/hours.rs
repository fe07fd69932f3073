//! When a symbol has a session: IB's trading hours (or liquid hours, its regular ones) as the
//! gateway tells them in a contract's details, read into instants, so that a live stream
//! that is quiet while the market is closed (a weekend, a holiday, outside regular hours) is
//! not taken for a dead one.
//!
//! IB writes the hours in the exchange's time zone (`time_zone_id`), one day per entry:
//! `20261204:0930-20261204:1600` (a session, which may end on a later day),
//! `20261205:CLOSED` (a day without one), or in the older form `20090507:0700-1830,1830-2330`
//! (the times of the entry's day, an end before its start being the next day's).
//!
//! Invariants: a [`Sessions`] answers only for the days its text covered (from the first
//! day's local midnight to the end of the last day, or the last session's end if later) and
//! says "unknown" beyond them; a text that cannot be read, or a time zone that is not known,
//! is an error, never a guess; a wall time in a daylight saving gap is taken an hour later,
//! one that repeats at its first occurrence.

use time::{Date, Month, PrimitiveDateTime, Time};
use time_tz::{OffsetResult, PrimitiveDateTimeExt, Tz};

/// The sessions of a few days, as Unix-second spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sessions {
    /// Each session's open and close, Unix seconds.
    spans: Vec<(i64, i64)>,
    /// The instants the text told of: before `from` or from `to` on, nothing is known.
    from: i64,
    to: i64,
}

impl Sessions {
    /// Reads IB's hours (`entries`: the text split at `;`) in time zone `zone` (IB's
    /// `time_zone_id`: an IANA name such as `US/Eastern`, or an abbreviation IB uses, see
    /// [`zone_named`]).
    pub(super) fn parse(entries: &[String], zone: &str) -> Result<Sessions, String> {
        let tz = zone_named(zone).ok_or_else(|| format!("unknown time zone {zone:?}"))?;
        let mut spans = Vec::new();
        let (mut from, mut to) = (i64::MAX, i64::MIN);
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let bad = || format!("unreadable trading hours {entry:?}");
            let (day, rest) = entry.split_once(':').ok_or_else(bad)?;
            let day = date(day).ok_or_else(bad)?;
            let midnight = instant(day, Time::MIDNIGHT, tz);
            let next = day.next_day().ok_or_else(bad)?;
            from = from.min(midnight);
            to = to.max(instant(next, Time::MIDNIGHT, tz));
            if rest == "CLOSED" {
                continue;
            }
            for part in rest.split(',') {
                let (open, close) = part.split_once('-').ok_or_else(bad)?;
                let open_at = instant(day, clock(open).ok_or_else(bad)?, tz);
                let close_at = match close.split_once(':') {
                    // The newer form: the close carries its own day.
                    Some((close_day, hhmm)) => instant(
                        date(close_day).ok_or_else(bad)?,
                        clock(hhmm).ok_or_else(bad)?,
                        tz,
                    ),
                    // The older form: the entry's day, or the next if it closes before it
                    // opens.
                    None => {
                        let at = clock(close).ok_or_else(bad)?;
                        let close_day = if at <= clock(open).ok_or_else(bad)? {
                            next
                        } else {
                            day
                        };
                        instant(close_day, at, tz)
                    }
                };
                if close_at <= open_at {
                    return Err(bad());
                }
                to = to.max(close_at);
                spans.push((open_at, close_at));
            }
        }
        if spans.is_empty() && from > to {
            return Err("no trading hours given".into());
        }
        spans.sort_unstable();
        Ok(Sessions { spans, from, to })
    }

    /// Whether the market is in session at `t` (Unix seconds); `None` if `t` is outside
    /// the days the hours told of.
    pub(super) fn open_at(&self, t: i64) -> Option<bool> {
        if t < self.from || t >= self.to {
            return None;
        }
        Some(
            self.spans
                .iter()
                .any(|(open, close)| *open <= t && t < *close),
        )
    }
}

/// `YYYYMMDD`.
/// IB's abbreviations of exchange time zones, and the zone each means. An abbreviation IB
/// sends for a market that keeps daylight saving time names that market's zone, never the
/// fixed offset the same name has in the time zone database (`EST` there is UTC-5 all year:
/// sessions in summer would be read an hour late).
const ZONE_ABBREVIATIONS: &[(&str, &str)] = &[
    ("EST", "America/New_York"),
    ("EDT", "America/New_York"),
    ("EST5EDT", "America/New_York"),
    ("CST", "America/Chicago"),
    ("CDT", "America/Chicago"),
    ("CST6CDT", "America/Chicago"),
    ("MST", "America/Denver"),
    ("MDT", "America/Denver"),
    ("MST7MDT", "America/Denver"),
    ("PST", "America/Los_Angeles"),
    ("PDT", "America/Los_Angeles"),
    ("PST8PDT", "America/Los_Angeles"),
    ("GB", "Europe/London"),
    ("GMT", "Europe/London"),
    ("BST", "Europe/London"),
    ("MET", "Europe/Berlin"),
    ("CET", "Europe/Berlin"),
    ("CEST", "Europe/Berlin"),
    ("JST", "Asia/Tokyo"),
    ("HKT", "Asia/Hong_Kong"),
    ("CTT", "Asia/Shanghai"),
    ("AET", "Australia/Sydney"),
    ("AEST", "Australia/Sydney"),
];

/// The time zone `name` means at IB: an abbreviation of [`ZONE_ABBREVIATIONS`], else the
/// time zone database's zone of that name.
fn zone_named(name: &str) -> Option<&'static Tz> {
    let name = name.trim();
    let iana = ZONE_ABBREVIATIONS
        .iter()
        .find(|(abbreviation, _)| abbreviation.eq_ignore_ascii_case(name))
        .map_or(name, |(_, iana)| iana);
    time_tz::timezones::get_by_name(iana)
}

fn date(text: &str) -> Option<Date> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i32 = text[..4].parse().ok()?;
    let month: u8 = text[4..6].parse().ok()?;
    let day: u8 = text[6..].parse().ok()?;
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

/// `HHMM`; `2400` is the end of the day.
fn clock(text: &str) -> Option<Time> {
    if text.len() != 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hour: u8 = text[..2].parse().ok()?;
    let minute: u8 = text[2..].parse().ok()?;
    match (hour, minute) {
        (24, 0) => Time::from_hms(23, 59, 59).ok(),
        _ => Time::from_hms(hour, minute, 0).ok(),
    }
}

/// The instant of wall time `at` on `day` in `tz`, Unix seconds.
fn instant(day: Date, at: Time, tz: &Tz) -> i64 {
    let local = PrimitiveDateTime::new(day, at);
    match local.assume_timezone(tz) {
        OffsetResult::Some(t) | OffsetResult::Ambiguous(t, _) => t.unix_timestamp(),
        // A wall time the clocks skipped: an hour later is on both sides of the gap.
        OffsetResult::None => {
            let later = local.saturating_add(time::Duration::HOUR);
            match later.assume_timezone(tz) {
                OffsetResult::Some(t) | OffsetResult::Ambiguous(t, _) => t.unix_timestamp(),
                OffsetResult::None => later.assume_utc().unix_timestamp(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<String> {
        text.split(';').map(String::from).collect()
    }

    /// Unix seconds of a UTC wall time.
    fn utc(y: i32, mo: u8, d: u8, h: u8, mi: u8) -> i64 {
        PrimitiveDateTime::new(
            Date::from_calendar_date(y, Month::try_from(mo).unwrap(), d).unwrap(),
            Time::from_hms(h, mi, 0).unwrap(),
        )
        .assume_utc()
        .unix_timestamp()
    }

    #[test]
    fn regular_hours_in_new_york_are_read_in_its_time_zone() {
        // Friday 2026-12-04 and a holiday the next Monday; winter: UTC-5.
        let s = Sessions::parse(
            &entries("20261204:0930-20261204:1600;20261205:CLOSED;20261206:CLOSED;20261207:CLOSED"),
            "US/Eastern",
        )
        .unwrap();
        assert_eq!(s.open_at(utc(2026, 12, 4, 14, 29)), Some(false));
        assert_eq!(s.open_at(utc(2026, 12, 4, 14, 30)), Some(true));
        assert_eq!(s.open_at(utc(2026, 12, 4, 20, 59)), Some(true));
        assert_eq!(s.open_at(utc(2026, 12, 4, 21, 0)), Some(false));
        assert_eq!(
            s.open_at(utc(2026, 12, 7, 15, 0)),
            Some(false),
            "the holiday"
        );
        assert_eq!(s.open_at(utc(2026, 12, 8, 15, 0)), None, "beyond the text");
        assert_eq!(
            s.open_at(utc(2026, 12, 4, 4, 59)),
            None,
            "before its first day"
        );
        assert_eq!(
            s.open_at(utc(2026, 12, 4, 5, 0)),
            Some(false),
            "its midnight"
        );
    }

    #[test]
    fn summer_time_moves_the_session_in_utc() {
        let s =
            Sessions::parse(&entries("20260701:0930-20260701:1600"), "America/New_York").unwrap();
        assert_eq!(s.open_at(utc(2026, 7, 1, 13, 30)), Some(true), "UTC-4");
        assert_eq!(s.open_at(utc(2026, 7, 1, 13, 29)), Some(false));
    }

    #[test]
    fn ibs_abbreviations_name_the_markets_zone_with_its_summer_time() {
        let july = entries("20260701:0930-20260701:1600");
        for zone in ["EST", "est", "EDT", "EST5EDT", " US/Eastern "] {
            let s = Sessions::parse(&july, zone).unwrap();
            assert_eq!(
                s.open_at(utc(2026, 7, 1, 13, 30)),
                Some(true),
                "{zone}: UTC-4"
            );
            assert_eq!(
                s.open_at(utc(2026, 7, 1, 20, 0)),
                Some(false),
                "{zone}: closed"
            );
        }
        let s = Sessions::parse(&entries("20260701:0830-20260701:1500"), "CST").unwrap();
        assert_eq!(
            s.open_at(utc(2026, 7, 1, 13, 30)),
            Some(true),
            "CST: UTC-5 in summer"
        );
        let s = Sessions::parse(&entries("20260701:0900-20260701:1500"), "JST").unwrap();
        assert_eq!(s.open_at(utc(2026, 7, 1, 0, 0)), Some(true), "JST: UTC+9");
        assert!(Sessions::parse(&july, "Mars/Olympus").is_err());
    }

    #[test]
    fn a_session_may_end_on_the_next_day() {
        // A future's evening session, Chicago time.
        let s = Sessions::parse(
            &entries("20261203:1700-20261204:1600;20261204:1700-20261205:1600"),
            "US/Central",
        )
        .unwrap();
        assert_eq!(s.open_at(utc(2026, 12, 4, 3, 0)), Some(true), "overnight");
        assert_eq!(
            s.open_at(utc(2026, 12, 4, 22, 30)),
            Some(false),
            "the break"
        );
        assert_eq!(s.open_at(utc(2026, 12, 5, 21, 59)), Some(true));
        assert_eq!(
            s.open_at(utc(2026, 12, 5, 22, 0)),
            None,
            "after the last close"
        );
    }

    #[test]
    fn the_older_form_lists_times_of_the_entrys_day() {
        let s = Sessions::parse(
            &entries("20090507:0700-1830,1830-2330;20090508:CLOSED"),
            "US/Eastern",
        )
        .unwrap();
        assert_eq!(s.open_at(utc(2009, 5, 7, 11, 0)), Some(true));
        assert_eq!(s.open_at(utc(2009, 5, 8, 3, 29)), Some(true), "23:29 EDT");
        assert_eq!(s.open_at(utc(2009, 5, 8, 3, 30)), Some(false));
        assert_eq!(s.open_at(utc(2009, 5, 8, 15, 0)), Some(false), "closed");
    }

    #[test]
    fn what_cannot_be_read_is_an_error_not_a_guess() {
        for text in [
            "2026120:0930-20261204:1600",
            "20261204",
            "20261204:0930",
            "20261204:0960-1600",
            "20261204:1600-20261204:0930",
            "20261304:0930-1600",
            "20261204:OPEN",
        ] {
            assert!(
                Sessions::parse(&entries(text), "US/Eastern").is_err(),
                "{text}"
            );
        }
        assert!(Sessions::parse(&[], "US/Eastern").is_err(), "nothing told");
        assert_eq!(
            Sessions::parse(&entries("20261204:CLOSED"), "Mars/Olympus"),
            Err("unknown time zone \"Mars/Olympus\"".into())
        );
    }
}
