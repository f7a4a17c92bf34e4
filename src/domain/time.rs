//! Timestamps: microseconds since the Unix epoch inside, RFC 3339 UTC with milliseconds on the wire.
//!
//! Microseconds keep the rate limit exact (a start recorded in milliseconds could make the next
//! slot up to 1 ms early); the wire keeps the reference's millisecond precision.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_micros(us: i64) -> Self {
        Self(us)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// This instant plus `d`, saturating instead of overflowing.
    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        )
    }

    /// This instant less `d`, saturating instead of overflowing.
    pub fn minus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        )
    }

    /// How long after `earlier` this is (zero if it is not after).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// `2026-11-28T14:36:08.125Z`: UTC, milliseconds (truncated).
    pub fn to_rfc3339(self) -> String {
        let (days, micros) = (self.0.div_euclid(DAY_US), self.0.rem_euclid(DAY_US));
        let (y, m, d) = civil_from_days(days);
        let (h, min, s, ms) = (
            micros / 3_600_000_000,
            micros / 60_000_000 % 60,
            micros / 1_000_000 % 60,
            micros / 1_000 % 1_000,
        );
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{ms:03}Z")
    }

    /// `HH:MM:SS` of the UTC time of day.
    pub fn clock_utc(self) -> String {
        let secs = self.0.rem_euclid(DAY_US) / 1_000_000;
        format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    }

    /// An RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (`T` may be `t` or a
    /// space, `Z` may be `z`); the fraction is kept to the microsecond.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        let num = |from: usize, len: usize| -> Option<i64> {
            let digits = b.get(from..from + len)?;
            digits.iter().try_fold(0i64, |n, &c| {
                c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
            })
        };
        let sep = |at: usize, ok: &[u8]| b.get(at).is_some_and(|c| ok.contains(c));
        if b.len() < 20 || !sep(4, b"-") || !sep(7, b"-") || !sep(10, b"Tt ") {
            return None;
        }
        if !sep(13, b":") || !sep(16, b":") {
            return None;
        }
        let (y, m, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
        let (h, min, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
        if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) || h > 23 || min > 59 {
            return None;
        }
        // 60 is a leap second; like chrono, read as the next second's start.
        if sec > 60 {
            return None;
        }
        let mut at = 19;
        let mut micros = 0;
        if sep(at, b".") {
            at += 1;
            let start = at;
            while b.get(at).is_some_and(u8::is_ascii_digit) {
                if at - start < 6 {
                    micros = micros * 10 + i64::from(b[at] - b'0');
                }
                at += 1;
            }
            if at == start {
                return None;
            }
            for _ in (at - start)..6 {
                micros *= 10;
            }
        }
        let offset_secs = match b.get(at)? {
            b'Z' | b'z' if at + 1 == b.len() => 0,
            sign @ (b'+' | b'-') if at + 6 == b.len() && sep(at + 3, b":") => {
                let (oh, om) = (num(at + 1, 2)?, num(at + 4, 2)?);
                if oh > 23 || om > 59 {
                    return None;
                }
                let offset = oh * 3600 + om * 60;
                if *sign == b'-' {
                    -offset
                } else {
                    offset
                }
            }
            _ => return None,
        };
        let secs = days_from_civil(y, m, d) * 86_400 + h * 3600 + min * 60 + sec - offset_secs;
        Some(Self(secs * 1_000_000 + micros))
    }
}

const DAY_US: i64 = 86_400_000_000;

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of `days_from_civil`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse_rfc3339(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {s}")))
    }
}

/// In the OpenAPI document: an RFC 3339 date-time string (UTC, milliseconds).
#[cfg(feature = "ssr")]
impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("RFC 3339, UTC, millisecond precision"))
            .examples(["2026-11-28T14:36:08.125Z"])
            .into()
    }
}

#[cfg(feature = "ssr")]
impl utoipa::ToSchema for Timestamp {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_as_utc_with_milliseconds() {
        let t = Timestamp::from_micros(1_764_340_568_123_999);
        assert_eq!(t.to_rfc3339(), "2025-11-28T14:36:08.123Z");
    }

    #[test]
    fn dates_across_leap_years_and_the_epoch_are_written_as_the_calendar_says() {
        for (micros, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (-1_000, "1969-12-31T23:59:59.999Z"),
            (951_782_400_000_000, "2000-02-29T00:00:00.000Z"),
            (4_107_542_399_999_000, "2100-02-28T23:59:59.999Z"),
            (4_107_542_400_000_000, "2100-03-01T00:00:00.000Z"),
        ] {
            assert_eq!(Timestamp::from_micros(micros).to_rfc3339(), text);
            assert_eq!(
                Timestamp::parse_rfc3339(text),
                Some(Timestamp::from_micros(micros))
            );
        }
        assert_eq!(
            Timestamp::from_micros(1_764_340_568_123_999).clock_utc(),
            "14:36:08"
        );
    }

    #[test]
    fn rfc_3339_offsets_fractions_and_bad_dates_are_read_as_the_standard_says() {
        let t = |s| Timestamp::parse_rfc3339(s).map(Timestamp::as_micros);
        assert_eq!(t("2025-11-28T14:36:08Z"), Some(1_764_340_568_000_000));
        assert_eq!(t("2025-11-28t14:36:08.5z"), Some(1_764_340_568_500_000));
        assert_eq!(
            t("2025-11-28 15:36:08.123456789+01:00"),
            Some(1_764_340_568_123_456)
        );
        assert_eq!(t("2025-11-28T09:06:08-05:30"), Some(1_764_340_568_000_000));
        for bad in [
            "",
            "2025-11-28",
            "2025-11-28T14:36:08",
            "2025-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2025-11-28T24:00:00Z",
            "2025-11-28T14:36:08.Z",
            "2025-11-28T14:36:08+0100",
            "2025-11-28T14:36:08Zjunk",
            "2025-11-28T14:36:08+01:00x",
            "２０25-11-28T14:36:08Z",
        ] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_written_timestamp_reads_back_to_the_millisecond() {
        let t = Timestamp::from_micros(1_764_340_568_123_000);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }
}
