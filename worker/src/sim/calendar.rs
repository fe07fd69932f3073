//! The simulated market's calendar ([`SimCalendar`]): when the exchange has a session and
//! when the gateway is down for its daily restart or its weekly re-login, on the market
//! clock, in US/Eastern time (daylight saving included).
//!
//! Invariants: every answer is a pure function of the options and the market time asked
//! about; an outage is a half-open span `[from, until)`; a calendar left at its default has
//! every hour in session and no outage.

use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};
use time_tz::{OffsetDateTimeExt, OffsetResult, PrimitiveDateTimeExt, Tz};

use crate::options::SimCalendar;

/// Why the gateway is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Downtime {
    /// Its daily restart.
    Restart,
    /// Its weekly re-login.
    Relogin,
}

/// A span the gateway is down for, market seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Outage {
    pub(super) why: Downtime,
    pub(super) from: i64,
    pub(super) until: i64,
}

impl Outage {
    /// The outage in words, for the connection's loss.
    pub(super) fn reason(&self) -> String {
        match self.why {
            Downtime::Restart => "the gateway's daily restart".into(),
            Downtime::Relogin => "the gateway's weekly re-login".into(),
        }
    }
}

/// US/Eastern.
fn eastern() -> &'static Tz {
    time_tz::timezones::db::america::NEW_YORK
}

/// The US/Eastern date of market time `t`.
fn eastern_date(t: i64) -> Option<Date> {
    let utc = OffsetDateTime::from_unix_timestamp(t).ok()?;
    Some(utc.to_timezone(eastern()).date())
}

/// The market time of `minute` past midnight (US/Eastern) on `date`; a wall time in the
/// spring gap is taken an hour later, one that repeats in autumn at its first occurrence.
fn eastern_instant(date: Date, minute: u32) -> Option<i64> {
    let at = Time::from_hms((minute / 60).min(23) as u8, (minute % 60) as u8, 0).ok()?;
    let local = PrimitiveDateTime::new(date, at);
    match local.assume_timezone(eastern()) {
        OffsetResult::Some(t) => Some(t.unix_timestamp()),
        OffsetResult::Ambiguous(first, _) => Some(first.unix_timestamp()),
        OffsetResult::None => {
            let later = local + time::Duration::HOUR;
            match later.assume_timezone(eastern()) {
                OffsetResult::Some(t) | OffsetResult::Ambiguous(t, _) => Some(t.unix_timestamp()),
                OffsetResult::None => None,
            }
        }
    }
}

impl SimCalendar {
    /// Whether the exchange is in session at market time `t` (always, without sessions).
    pub(super) fn in_session(&self, t: i64) -> bool {
        if !self.sessions {
            return true;
        }
        let Some(date) = eastern_date(t) else {
            return false;
        };
        if date.weekday().number_days_from_monday() >= 5 {
            return false;
        }
        let (open, close) = if self.regular_hours_only {
            (9 * 60 + 30, 16 * 60)
        } else {
            (4 * 60, 20 * 60)
        };
        match (eastern_instant(date, open), eastern_instant(date, close)) {
            (Some(open), Some(close)) => (open..close).contains(&t),
            _ => false,
        }
    }

    /// The outage of the gateway at market time `t`, if it is down then.
    pub(super) fn outage_at(&self, t: i64) -> Option<Outage> {
        let minute = self.daily_restart_minute?;
        let today = eastern_date(t)?;
        // A restart late in the day before may last past midnight.
        [today.previous_day(), Some(today)]
            .into_iter()
            .flatten()
            .filter_map(|date| self.outage_of(date, minute))
            .find(|o| (o.from..o.until).contains(&t))
    }

    /// The restart (or re-login) of `date`, at `minute` past its midnight.
    fn outage_of(&self, date: Date, minute: u32) -> Option<Outage> {
        let from = eastern_instant(date, minute)?;
        let relogin = self
            .relogin_weekday
            .is_some_and(|d| date.weekday().number_days_from_monday() == d);
        let (why, lasts) = if relogin {
            (Downtime::Relogin, self.relogin_seconds)
        } else {
            (Downtime::Restart, self.restart_seconds)
        };
        (lasts > 0).then(|| Outage {
            why,
            from,
            until: from + i64::from(lasts),
        })
    }

    /// The first market time after `t` at which whether the gateway is down changes, looked
    /// for within a day (`None`: no change within it).
    pub(super) fn next_change(&self, t: i64) -> Option<i64> {
        let minute = self.daily_restart_minute?;
        let today = eastern_date(t)?;
        [today.previous_day(), Some(today), today.next_day()]
            .into_iter()
            .flatten()
            .filter_map(|date| self.outage_of(date, minute))
            .flat_map(|o| [o.from, o.until])
            .filter(|&edge| edge > t)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC time.
    fn utc(y: i32, mo: u8, d: u8, h: u8, mi: u8) -> i64 {
        PrimitiveDateTime::new(
            Date::from_calendar_date(y, time::Month::try_from(mo).unwrap(), d).unwrap(),
            Time::from_hms(h, mi, 0).unwrap(),
        )
        .assume_utc()
        .unix_timestamp()
    }

    fn calendar() -> SimCalendar {
        SimCalendar {
            sessions: true,
            regular_hours_only: true,
            daily_restart_minute: Some(23 * 60 + 45),
            restart_seconds: 120,
            relogin_weekday: Some(6),
            relogin_seconds: 1800,
        }
    }

    #[test]
    fn sessions_are_weekdays_at_the_exchanges_hours_in_its_time_zone() {
        let c = calendar();
        // Friday 2026-12-04, winter: 09:30 ET is 14:30 UTC.
        assert!(!c.in_session(utc(2026, 12, 4, 14, 29)));
        assert!(c.in_session(utc(2026, 12, 4, 14, 30)));
        assert!(c.in_session(utc(2026, 12, 4, 20, 59)));
        assert!(!c.in_session(utc(2026, 12, 4, 21, 0)));
        assert!(!c.in_session(utc(2026, 12, 5, 15, 0)), "a Saturday");
        // Summer: 09:30 ET is 13:30 UTC.
        assert!(c.in_session(utc(2026, 7, 1, 13, 30)));
        let extended = SimCalendar {
            regular_hours_only: false,
            ..calendar()
        };
        assert!(extended.in_session(utc(2026, 12, 4, 9, 0)), "04:00 ET");
        assert!(SimCalendar::default().in_session(utc(2026, 12, 5, 3, 0)));
    }

    #[test]
    fn the_gateway_restarts_daily_and_longer_for_the_weekly_re_login() {
        let c = calendar();
        // Friday 23:45 ET is Saturday 04:45 UTC.
        let friday = utc(2026, 12, 5, 4, 45);
        assert_eq!(c.outage_at(friday - 1), None);
        let o = c.outage_at(friday).unwrap();
        assert_eq!(
            (o.why, o.from, o.until),
            (Downtime::Restart, friday, friday + 120)
        );
        assert_eq!(c.outage_at(friday + 120), None);
        assert_eq!(c.next_change(friday - 10), Some(friday));
        assert_eq!(c.next_change(friday), Some(friday + 120));
        // Sunday's is the re-login, past midnight.
        let sunday = utc(2026, 12, 7, 4, 45);
        let o = c.outage_at(sunday + 1_000).unwrap();
        assert_eq!((o.why, o.until), (Downtime::Relogin, sunday + 1800));
        assert_eq!(o.reason(), "the gateway's weekly re-login");
        assert_eq!(SimCalendar::default().outage_at(friday), None);
    }
}
