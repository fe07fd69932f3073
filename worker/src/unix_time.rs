//! Unix time: the wall clock now, and the UTC calendar date and time of a Unix second.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_times() {
        assert_eq!(civil_time(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil_time(1_700_000_000), (2023, 11, 14, 22, 13, 20));
        assert_eq!(civil_time(951_825_600), (2000, 2, 29, 12, 0, 0));
        assert_eq!(civil_time(-1), (1969, 12, 31, 23, 59, 59));
    }

    #[test]
    fn the_wall_clock_is_after_2020() {
        assert!(now() > Duration::from_secs(1_577_836_800));
    }
}
