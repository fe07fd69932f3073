//! The exchange's clock, for history answered the way the real gateway answers it: US/Eastern
//! wall time (the US daylight saving rule in force since 2007), its text as the gateway writes
//! it (`YYYYMMDD HH:MM:SS US/Eastern`), the trading sessions of US stocks (regular
//! 09:30-16:00, extended 04:00-20:00, on weekdays; holidays only where a caller names them),
//! and the text of a week's sessions as contract details tell them.
//!
//! Invariants: every function is a pure function of its arguments; times are Unix seconds and
//! days are days since 1970-01-01 of a US/Eastern date; a session opens before it closes, on a
//! weekday, and its bounds are exact (no session bound falls in a daylight saving transition,
//! which happen at 02:00).

use base::unix_time::civil_time;

/// Which hours of the day a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hours {
    /// 09:30-16:00 US/Eastern.
    Regular,
    /// 04:00-20:00 US/Eastern.
    Extended,
}

const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(super) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Day of the week of a day since 1970-01-01: 0 Monday .. 6 Sunday.
pub(super) fn weekday(days: i64) -> i64 {
    (days + 3).rem_euclid(7)
}

/// The day of the month of the `n`-th Sunday of `month`.
fn nth_sunday(year: i64, month: i64, n: i64) -> i64 {
    let first = days_from_civil(year, month, 1);
    1 + (6 - weekday(first)).rem_euclid(7) + 7 * (n - 1)
}

/// Offset of US/Eastern from UTC at `t`, in seconds: -4 h from the second Sunday of March,
/// 02:00 EST, to the first Sunday of November, 02:00 EDT; -5 h otherwise.
pub(super) fn eastern_offset(t: i64) -> i64 {
    let (year, ..) = civil_time(t);
    let starts = days_from_civil(year, 3, nth_sunday(year, 3, 2)) * DAY + 7 * HOUR;
    let ends = days_from_civil(year, 11, nth_sunday(year, 11, 1)) * DAY + 6 * HOUR;
    if (starts..ends).contains(&t) {
        -4 * HOUR
    } else {
        -5 * HOUR
    }
}

/// The US/Eastern date of `t`, as days since 1970-01-01.
pub(super) fn eastern_day(t: i64) -> i64 {
    (t + eastern_offset(t)).div_euclid(DAY)
}

/// The instant of `seconds` past midnight on US/Eastern date `day` (outside the 02:00
/// transitions).
fn eastern_instant(day: i64, seconds: i64) -> i64 {
    let local = day * DAY + seconds;
    local - eastern_offset(local + 5 * HOUR)
}

/// `YYYYMMDD HH:MM:SS US/Eastern` of `t`.
pub(super) fn eastern_text(t: i64) -> String {
    let (year, month, day, h, m, s) = civil_time(t + eastern_offset(t));
    format!("{year:04}{month:02}{day:02} {h:02}:{m:02}:{s:02} US/Eastern")
}

/// `YYYYMMDD` of US/Eastern date `day`.
pub(super) fn date_text(day: i64) -> String {
    let (year, month, day, ..) = civil_time(day * DAY);
    format!("{year:04}{month:02}{day:02}")
}

/// The session (open, close) of US/Eastern date `day`, `None` at the weekend.
pub(super) fn session(day: i64, hours: Hours) -> Option<(i64, i64)> {
    if weekday(day) >= 5 {
        return None;
    }
    let (open, close) = match hours {
        Hours::Regular => (9 * HOUR + 30 * 60, 16 * HOUR),
        Hours::Extended => (4 * HOUR, 20 * HOUR),
    };
    Some((eastern_instant(day, open), eastern_instant(day, close)))
}

/// Whether `t` lies in a session of `hours` (a weekday that is none of `holidays`).
pub(super) fn in_session(t: i64, hours: Hours, holidays: &[i64]) -> bool {
    let day = eastern_day(t);
    !holidays.contains(&day) && session(day, hours).is_some_and(|(o, c)| (o..c).contains(&t))
}

/// `HHMM` of `t` in US/Eastern.
fn eastern_hhmm(t: i64) -> String {
    let (.., h, m, _) = civil_time(t + eastern_offset(t));
    format!("{h:02}{m:02}")
}

/// The sessions of `hours` of the week from `t`'s day on, as contract details tell them
/// (trading hours or liquid hours, in US/Eastern): `YYYYMMDD:HHMM-YYYYMMDD:HHMM` for a day
/// with a session, `YYYYMMDD:CLOSED` for a weekend day or one of `holidays`, `;`-separated.
pub(super) fn hours_text(t: i64, hours: Hours, holidays: &[i64]) -> String {
    let today = eastern_day(t);
    (today..today + 7)
        .map(
            |day| match session(day, hours).filter(|_| !holidays.contains(&day)) {
                Some((open, close)) => format!(
                    "{d}:{}-{d}:{}",
                    eastern_hhmm(open),
                    eastern_hhmm(close),
                    d = date_text(day)
                ),
                None => format!("{}:CLOSED", date_text(day)),
            },
        )
        .collect::<Vec<_>>()
        .join(";")
}

/// The last `n` sessions that opened before `end`, oldest first.
pub(super) fn sessions_before(end: i64, n: usize, hours: Hours) -> Vec<(i64, i64)> {
    let mut found = Vec::with_capacity(n);
    let mut day = eastern_day(end);
    // Two weekend days in every seven, and a margin.
    let oldest = day - (n as i64) * 7 / 5 - 7;
    while found.len() < n && day >= oldest {
        if let Some(s) = session(day, hours).filter(|(open, _)| *open < end) {
            found.push(s);
        }
        day -= 1;
    }
    found.reverse();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_and_weekdays() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2025, 11, 21), 20_413);
        assert_eq!(weekday(0), 3, "1970-01-01 was a Thursday");
        assert_eq!(weekday(days_from_civil(2025, 11, 22)), 5, "a Saturday");
        assert_eq!(nth_sunday(2025, 3, 2), 9);
        assert_eq!(nth_sunday(2025, 11, 1), 2);
        assert_eq!(nth_sunday(2026, 3, 2), 8);
        assert_eq!(date_text(days_from_civil(2024, 2, 29)), "20240229");
    }

    #[test]
    fn eastern_time_follows_daylight_saving() {
        // 2025-03-09 07:00 UTC: clocks go from 02:00 EST to 03:00 EDT.
        let spring = days_from_civil(2025, 3, 9) * DAY + 7 * HOUR;
        assert_eq!(eastern_offset(spring - 1), -5 * HOUR);
        assert_eq!(eastern_offset(spring), -4 * HOUR);
        assert_eq!(eastern_text(spring - 1), "20250309 01:59:59 US/Eastern");
        assert_eq!(eastern_text(spring), "20250309 03:00:00 US/Eastern");
        // 2025-11-02 06:00 UTC: clocks go from 02:00 EDT back to 01:00 EST.
        let autumn = days_from_civil(2025, 11, 2) * DAY + 6 * HOUR;
        assert_eq!(eastern_offset(autumn - 1), -4 * HOUR);
        assert_eq!(eastern_offset(autumn), -5 * HOUR);
        assert_eq!(eastern_text(1_763_805_600), "20251122 05:00:00 US/Eastern");
    }

    #[test]
    fn sessions_are_weekdays_at_the_exchange_hours() {
        let friday = days_from_civil(2025, 11, 21);
        let (open, close) = session(friday, Hours::Regular).unwrap();
        assert_eq!(eastern_text(open), "20251121 09:30:00 US/Eastern");
        assert_eq!(eastern_text(close), "20251121 16:00:00 US/Eastern");
        assert_eq!(close - open, 390 * 60);
        assert_eq!(
            open,
            days_from_civil(2025, 11, 21) * DAY + 14 * HOUR + 30 * 60
        );
        let july = days_from_civil(2025, 7, 11);
        let (open, _) = session(july, Hours::Regular).unwrap();
        assert_eq!(
            open,
            july * DAY + 13 * HOUR + 30 * 60,
            "13:30 UTC in summer"
        );
        let (open, close) = session(friday, Hours::Extended).unwrap();
        assert_eq!(close - open, 16 * HOUR);
        assert_eq!(session(friday + 1, Hours::Regular), None);
        assert_eq!(session(friday + 2, Hours::Regular), None);
        // Before Monday's open on a Monday: the last two are Thursday's and Friday's.
        let monday_morning = days_from_civil(2025, 11, 24) * DAY + 12 * HOUR;
        let found = sessions_before(monday_morning, 2, Hours::Regular);
        assert_eq!(found.len(), 2);
        assert_eq!(eastern_day(found[0].0), friday - 1);
        assert_eq!(eastern_day(found[1].0), friday);
    }

    #[test]
    fn a_weeks_hours_close_weekends_and_holidays() {
        let thursday = days_from_civil(2025, 11, 20);
        let noon = thursday * DAY + 17 * HOUR;
        assert_eq!(
            hours_text(noon, Hours::Regular, &[thursday + 1]),
            "20251120:0930-20251120:1600;20251121:CLOSED;20251122:CLOSED;20251123:CLOSED;\
             20251124:0930-20251124:1600;20251125:0930-20251125:1600;20251126:0930-20251126:1600"
        );
        assert!(hours_text(noon, Hours::Extended, &[]).starts_with("20251120:0400-20251120:2000;"));
        assert!(in_session(noon, Hours::Regular, &[]));
        assert!(!in_session(noon, Hours::Regular, &[thursday]), "a holiday");
        assert!(
            !in_session(thursday * DAY + 13 * HOUR, Hours::Regular, &[]),
            "08:00"
        );
        assert!(in_session(thursday * DAY + 13 * HOUR, Hours::Extended, &[]));
        assert!(
            !in_session(noon + 2 * DAY, Hours::Extended, &[]),
            "a Saturday"
        );
    }
}
