//! Choices written as text in the configuration and held as their typed values: how each is
//! read from its text ([`as_text`], [`option_as_text`], [`tif_from_text`]) and written back,
//! and the end of the history ([`HistoryEnd`]).
//!
//! Invariants: a value read is the value used: nothing is parsed again later; text that is
//! no such value is refused where the document is read, with the line and what was
//! expected; writing a value gives text that reads back as the same value.

use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};

/// A value written as its text (`Display`) and read from it (`FromStr`).
pub(crate) mod as_text {
    use super::*;

    pub(crate) fn serialize<T: fmt::Display, S: Serializer>(
        v: &T,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub(crate) fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: fmt::Display,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(d)?;
        text.parse().map_err(D::Error::custom)
    }
}

/// An optional value written as its text, absent when unset.
pub(crate) mod option_as_text {
    use super::*;

    pub(crate) fn serialize<T: fmt::Display, S: Serializer>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: fmt::Display,
        D: Deserializer<'de>,
    {
        match Option::<String>::deserialize(d)? {
            Some(text) => text.parse().map(Some).map_err(D::Error::custom),
            None => Ok(None),
        }
    }
}

/// The time in force, from `day` or `gtc`.
pub(crate) fn tif_from_text<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<bridge::protocol::TimeInForce, D::Error> {
    let text = String::deserialize(d)?;
    parse_tif(&text).map_err(D::Error::custom)
}

/// `day` or `gtc`.
pub fn parse_tif(text: &str) -> Result<bridge::protocol::TimeInForce, String> {
    match text {
        "day" => Ok(bridge::protocol::TimeInForce::Day),
        "gtc" => Ok(bridge::protocol::TimeInForce::Gtc),
        other => Err(format!("time in force must be day or gtc, got {other:?}")),
    }
}

/// The end of the history: a Unix second, written `YYYY-MM-DDTHH:MM:SSZ` (UTC) and read from
/// that or from Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryEnd(pub i64);

impl FromStr for HistoryEnd {
    type Err = String;

    fn from_str(text: &str) -> Result<HistoryEnd, String> {
        let t = text.trim();
        if let Ok(secs) = t.parse::<i64>() {
            return Ok(HistoryEnd(secs));
        }
        base::unix_time::parse_utc(t).map(HistoryEnd).ok_or_else(|| {
            format!("the end of the history must be Unix seconds or YYYY-MM-DDTHH:MM:SSZ, got {text:?}")
        })
    }
}

impl fmt::Display for HistoryEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, mo, d, h, mi, s) = base::unix_time::civil_time(self.0);
        match y {
            // What the calendar form can say; any other second is written as itself.
            1..=9999 => write!(f, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
            _ => write!(f, "{}", self.0),
        }
    }
}
