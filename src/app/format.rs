//! How times, spans and identifiers read on the dashboard. Times are UTC (the server's and
//! the API's clock), so the server-rendered page and the hydrated one agree to the character.

use crate::domain::Timestamp;
use uuid::Uuid;

/// `14:03:25` (UTC).
pub fn clock(t: Timestamp) -> String {
    t.clock_utc()
}

/// A span of milliseconds, as precise as is useful: `0.4 s`, `12 s`, `3 min 05 s`, `2 h 07 min`.
pub fn span(ms: i64) -> String {
    let ms = ms.max(0);
    let secs = ms / 1000;
    match secs {
        0..=9 => format!("{}.{} s", secs, (ms % 1000) / 100),
        10..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min {:02} s", secs / 60, secs % 60),
        _ => format!("{} h {:02} min", secs / 3600, (secs % 3600) / 60),
    }
}

/// How far `t` is from `now`: `in 4.2 s`, `now` once reached.
pub fn countdown(t: Timestamp, now: Timestamp) -> String {
    let ms = (t.as_micros() - now.as_micros()) / 1000;
    if ms <= 0 {
        "now".to_owned()
    } else {
        format!("in {}", span(ms))
    }
}

/// The span from `from` to `to` (zero if `to` is not after it), as [`span`] writes it.
pub fn elapsed(from: Timestamp, to: Timestamp) -> String {
    span(i64::try_from(to.since(from).as_millis()).unwrap_or(i64::MAX))
}

/// The last 8 hex digits of an id: enough to tell ingestions apart on one screen. (The first
/// ones of a version 7 id are its creation time, shared by everything made in the same
/// minute; the last ones are random.)
pub fn short(id: Uuid) -> String {
    let simple = id.simple().to_string();
    simple[simple.len() - 8..].to_owned()
}

/// A batch's IDs: all of them when few, else the first and last with a count.
pub fn ids(ids: &[u64]) -> String {
    const SHOWN: usize = 6;
    if ids.len() <= SHOWN {
        ids.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        format!(
            "{}, … {} ({} IDs)",
            ids[..SHOWN - 1]
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            ids[ids.len() - 1],
            ids.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_at_a_useful_precision() {
        assert_eq!(span(-5), "0.0 s");
        assert_eq!(span(4_260), "4.2 s");
        assert_eq!(span(42_000), "42 s");
        assert_eq!(span(185_000), "3 min 05 s");
        assert_eq!(span(7_620_000), "2 h 07 min");
    }

    #[test]
    fn a_countdown_stops_at_now() {
        let now = Timestamp::from_micros(10_000_000);
        assert_eq!(
            countdown(Timestamp::from_micros(14_300_000), now),
            "in 4.3 s"
        );
        assert_eq!(countdown(Timestamp::from_micros(9_000_000), now), "now");
    }

    #[test]
    fn clock_times_are_utc_and_ids_are_short() {
        assert_eq!(clock(Timestamp::from_micros(3_723_000_000)), "01:02:03");
        assert_eq!(short(Uuid::nil()), "00000000");
        assert_eq!(ids(&[1, 2, 3]), "1, 2, 3");
        assert_eq!(
            ids(&(1..=10).collect::<Vec<_>>()),
            "1, 2, 3, 4, 5, … 10 (10 IDs)"
        );
    }
}
