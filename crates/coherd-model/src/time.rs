//! Instants on the engine's clock.
//!
//! [`Time`] is a count of nanoseconds since the Unix epoch in an `i64`: cheap to
//! copy, compare and store by the million. It parses from and prints as RFC 3339.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant, in nanoseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(i64);

/// Why a string is not an RFC 3339 time.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid time {input:?}: expected RFC 3339 such as 2026-11-22T08:00:00Z ({reason})")]
pub struct TimeParseError {
    input: String,
    reason: String,
}

impl Time {
    /// The Unix epoch.
    pub const EPOCH: Time = Time(0);
    /// The latest representable instant (used as "never").
    pub const MAX: Time = Time(i64::MAX);

    /// From nanoseconds since the epoch.
    pub const fn from_nanos(nanos: i64) -> Time {
        Time(nanos)
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// From whole seconds since the epoch.
    pub const fn from_secs(secs: i64) -> Time {
        Time(secs.saturating_mul(1_000_000_000))
    }

    /// Seconds since the epoch, with fraction.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// `self + d`, saturating at [`Time::MAX`].
    #[allow(clippy::should_implement_trait)]
    pub fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(duration_nanos(d)))
    }

    /// `self - d`, saturating.
    #[allow(clippy::should_implement_trait)]
    pub fn sub(self, d: Duration) -> Time {
        Time(self.0.saturating_sub(duration_nanos(d)))
    }

    /// Seconds from `earlier` to `self` (negative when `earlier` is later).
    pub fn seconds_since(self, earlier: Time) -> f64 {
        (i128::from(self.0) - i128::from(earlier.0)) as f64 / 1e9
    }

    /// Time elapsed since `earlier`, zero when `earlier` is later.
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0).max(0) as u64)
    }
}

/// The wall clock now. The engine never calls this: its shells do, and hand
/// the time in.
pub fn wall_now() -> Time {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Time::EPOCH.add(since_epoch)
}

/// A duration in nanoseconds as `i64`, saturating.
pub fn duration_nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl FromStr for Time {
    type Err = TimeParseError;

    fn from_str(s: &str) -> Result<Time, TimeParseError> {
        let ts = jiff::Timestamp::from_str(s).map_err(|e| TimeParseError {
            input: s.chars().take(64).collect(),
            reason: e.to_string(),
        })?;
        let nanos = i64::try_from(ts.as_nanosecond()).map_err(|_| TimeParseError {
            input: s.chars().take(64).collect(),
            reason: "outside the times coherd can hold, 1677-09-21 to 2262-04-11".into(),
        })?;
        Ok(Time(nanos))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match jiff::Timestamp::from_nanosecond(self.0 as i128) {
            Ok(ts) => write!(f, "{ts}"),
            Err(_) => write!(f, "@{}ns", self.0),
        }
    }
}

/// RFC 3339 text in formats people read (JSON, YAML); nanoseconds since the
/// epoch in binary formats (checkpoints), which are smaller and exact.
impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Time, D::Error> {
        if !d.is_human_readable() {
            return i64::deserialize(d).map(Time);
        }
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses a duration such as `10s`, `30m`, `1h30m` or `1d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); write it like 10s, 30m, 2h or 1d"))
}

/// For `#[serde(deserialize_with = ...)]`: a duration written like `10s` or `1d`.
pub fn deserialize_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// Prints a duration compactly, such as `10m` or `1h 30m`.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Prints a duration the way Prometheus writes one: `0s`, `90s` as `1m30s`, `15m`, `3d`.
/// Whole seconds only; a fraction is dropped.
pub fn prometheus_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= len {
            out.push_str(&(secs / len).to_string());
            out.push_str(unit);
            secs %= len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_rfc3339() {
        let t: Time = "2026-11-22T08:00:00Z".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-22T08:00:00Z");
        let t2: Time = "2026-11-22T09:00:00.5+01:00".parse().unwrap();
        assert_eq!(t2.seconds_since(t), 0.5);
    }

    #[test]
    fn times_past_2262_are_refused_not_wrapped() {
        let err = "2300-01-01T00:00:00Z"
            .parse::<Time>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("2262"), "{err}");
        assert!("1600-01-01T00:00:00Z".parse::<Time>().is_err());
        assert_eq!(
            Time::MAX.seconds_since(Time::from_nanos(i64::MIN)),
            2f64.powi(64) / 1e9
        );
    }

    #[test]
    fn rejects_garbage_with_a_hint() {
        let err = "yesterday".parse::<Time>().unwrap_err().to_string();
        assert!(err.contains("RFC 3339"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        assert!(parse_duration("10x").is_err());
    }

    #[test]
    fn prometheus_durations() {
        let p = |s| prometheus_duration(Duration::from_secs(s));
        assert_eq!(
            [p(0), p(90), p(900), p(3600), p(3 * 86400), p(86400 + 61)],
            ["0s", "1m30s", "15m", "1h", "3d", "1d1m1s"]
        );
    }
}
