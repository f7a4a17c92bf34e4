//! The queue as clients see it, and the one rule that predicts when waiting work runs.
//!
//! Dispatch runs at a fixed pace, so a prediction is deterministic: the next batch starts at
//! the first moment the rate slot and the in-flight rule allow, and each batch after it one
//! spacing later (the interval, or the expected work per batch if that is longer). Work that
//! arrives later with a higher priority moves predictions back; clients re-read them on events.

use super::{Priority, Timestamp};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

/// The fixed pace of dispatch: the rate interval and the expected work per batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    pub interval: Duration,
    pub work: Duration,
}

impl Pace {
    /// Start-to-start spacing while work is waiting.
    pub fn spacing(self) -> Duration {
        self.interval.max(self.work)
    }

    /// The earliest the next waiting batch can start: not before `now`, not before the rate
    /// slot after the last start, not before the batch in flight is expected to finish.
    pub fn next_start(
        self,
        now: Timestamp,
        last_start: Option<Timestamp>,
        in_flight_since: Option<Timestamp>,
    ) -> Timestamp {
        let slot = super::slot_after(last_start, self.interval);
        let free = in_flight_since.map(|t| t.plus(self.work));
        [Some(now), slot, free]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(now)
    }

    /// When the waiting batch with `ahead` waiting batches before it is expected to start.
    pub fn start_after(self, next_start: Timestamp, ahead: u64) -> Timestamp {
        let spacing = i64::try_from(self.spacing().as_micros()).unwrap_or(i64::MAX);
        let offset = spacing.saturating_mul(i64::try_from(ahead).unwrap_or(i64::MAX));
        Timestamp::from_micros(next_start.as_micros().saturating_add(offset))
    }

    /// When a batch that starts (or started) at `start` is expected to finish.
    pub fn finish_of(self, start: Timestamp) -> Timestamp {
        start.plus(self.work)
    }
}

/// Waiting batches of one priority.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Depth {
    pub priority: Priority,
    pub batches: u64,
}

/// A batch that has started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DispatchView {
    pub batch_id: Uuid,
    pub ingestion_id: Uuid,
    pub priority: Priority,
    /// The batch's position in its ingestion, from 0.
    pub position: u32,
    pub ids: Vec<u64>,
    pub started_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}

/// The queue snapshot: what waits, what runs, when the next batch may start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct QueueView {
    /// The server's time when the snapshot was taken (clients correct their clock by it).
    pub now: Timestamp,
    pub rate_interval_ms: u64,
    /// Dispatch is paused by an operator: nothing starts until it is resumed.
    pub paused: bool,
    /// IDs per batch.
    pub batch_size: u64,
    /// Most IDs one submission may carry.
    pub max_ids: u64,
    /// Waiting batches per priority, HIGH first.
    pub waiting: Vec<Depth>,
    /// When the oldest waiting batch was submitted (null when none waits).
    #[serde(default)]
    pub oldest_waiting: Option<Timestamp>,
    pub in_flight: Option<DispatchView>,
    pub last_start: Option<Timestamp>,
    /// The earliest the next waiting batch can start (`now` if it could start at once).
    pub next_slot: Timestamp,
    /// The latest dispatches, newest first.
    pub recent: Vec<DispatchView>,
    /// The newest event reflected here: stream `/events` after it to stay current.
    pub last_event_id: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_micros(ms * 1000)
    }

    const PACE: Pace = Pace {
        interval: Duration::from_secs(5),
        work: Duration::from_secs(1),
    };

    #[test]
    fn an_idle_queue_starts_the_next_batch_now() {
        assert_eq!(PACE.next_start(t(100_000), None, None), t(100_000));
        assert_eq!(
            PACE.next_start(t(100_000), Some(t(90_000)), None),
            t(100_000)
        );
    }

    #[test]
    fn the_next_start_waits_for_the_rate_slot_and_for_long_work() {
        assert_eq!(PACE.next_start(t(1_000), Some(t(0)), Some(t(0))), t(5_000));
        let slow = Pace {
            work: Duration::from_secs(8),
            ..PACE
        };
        assert_eq!(slow.next_start(t(1_000), Some(t(0)), Some(t(0))), t(8_000));
        assert_eq!(slow.spacing(), Duration::from_secs(8));
    }

    #[test]
    fn each_batch_ahead_adds_one_spacing() {
        assert_eq!(PACE.start_after(t(5_000), 0), t(5_000));
        assert_eq!(PACE.start_after(t(5_000), 3), t(20_000));
        assert_eq!(PACE.finish_of(t(20_000)), t(21_000));
        assert_eq!(
            PACE.start_after(t(0), u64::MAX),
            Timestamp::from_micros(i64::MAX)
        );
    }

    #[test]
    fn the_canonical_case_is_predicted_exactly() {
        // MEDIUM [1..5] at T0 (started at once), HIGH [6..9] at T4: [6,7,8] at T5, [9] at
        // T10, then MEDIUM's [4,5] at T15.
        let next = PACE.next_start(t(4_000), Some(t(0)), Some(t(0)));
        assert_eq!(PACE.start_after(next, 0), t(5_000));
        assert_eq!(PACE.start_after(next, 1), t(10_000));
        assert_eq!(PACE.start_after(next, 2), t(15_000));
    }
}
