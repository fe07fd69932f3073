//! Unix time: the wall clock now, the UTC calendar date and time of a Unix second (and its
//! time of day in words), and the Unix second of a UTC date and time written
//! `YYYY-MM-DDTHH:MM:SSZ`.
//!
//! Invariants: [`now`] never fails (a clock set before 1970 reads as zero, the epoch);
//! [`civil_time`] is exact on the proleptic Gregorian calendar for negative seconds too, with
//! no leap seconds (as Unix time has none).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time since the Unix epoch by the wall clock (zero if the clock reads earlier).
pub fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The UTC calendar date and time of Unix second `t`:
/// `(year, month, day, hour, minute, second)`. (Howard Hinnant's civil-from-days algorithm.)
pub fn civil_time(t: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, secs / 3600, secs / 60 % 60, secs % 60)
}

/// `HH:MM:SS UTC` of Unix second `t`: the time of day a log line or a summary row names.
pub fn clock_text(t: i64) -> String {
    let (.., h, m, s) = civil_time(t);
    format!("{h:02}:{m:02}:{s:02} UTC")
}

/// Days from 1970-01-01 to `year-month-day` (Howard Hinnant's days-from-civil algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The Unix second of `YYYY-MM-DDTHH:MM:SSZ` (UTC); `None` if it is not exactly that or names
/// no real date and time.
pub fn parse_utc(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || h > 23 || mi > 59 || s > 59 || d < 1 {
        return None;
    }
    let t = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s;
    // A day past the month's end (Feb 30) would come back as another date.
    (civil_time(t) == (y, mo, d, h, mi, s)).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_times() {
        assert_eq!(civil_time(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil_time(1_700_000_000), (2023, 11, 14, 22, 13, 20));
        assert_eq!(civil_time(951_825_600), (2000, 2, 29, 12, 0, 0));
        assert_eq!(civil_time(-1), (1969, 12, 31, 23, 59, 59));
        assert_eq!(clock_text(1_700_000_000), "22:13:20 UTC");
        assert_eq!(clock_text(0), "00:00:00 UTC");
    }

    #[test]
    fn utc_text_parses_to_the_unix_second_and_back() {
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_utc("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(parse_utc("2000-02-29T12:00:00Z"), Some(951_825_600));
        for bad in [
            "2023-02-29T00:00:00Z",
            "2023-13-01T00:00:00Z",
            "2023-11-14 22:13:20Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:13:20",
            "+023-11-14T22:13:20Z",
            "",
        ] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_wall_clock_is_after_2020() {
        assert!(now() > Duration::from_secs(1_577_836_800));
    }
}
