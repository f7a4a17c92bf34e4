//! Statuses and the read-side views of an ingestion (`GET /status/{id}`).

use super::{Priority, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where one batch is in its life: `yet_to_start` → `triggered` → `completed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    YetToStart,
    Triggered,
    Completed,
}

/// The overall status of an ingestion, derived from its batches (never stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestionStatus {
    YetToStart,
    Triggered,
    Completed,
}

impl BatchStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::YetToStart => "yet_to_start",
            BatchStatus::Triggered => "triggered",
            BatchStatus::Completed => "completed",
        }
    }
}

impl IngestionStatus {
    /// SPEC §2: `yet_to_start` if every batch is, `completed` if every batch is, otherwise
    /// `triggered` (so `[completed, yet_to_start]` is `triggered`).
    pub fn of(batches: impl IntoIterator<Item = BatchStatus>) -> Self {
        let (mut any_waiting, mut any_done, mut any_other) = (false, false, false);
        for status in batches {
            match status {
                BatchStatus::YetToStart => any_waiting = true,
                BatchStatus::Completed => any_done = true,
                BatchStatus::Triggered => any_other = true,
            }
        }
        match (any_waiting, any_done, any_other) {
            (_, false, false) => IngestionStatus::YetToStart,
            (false, true, false) => IngestionStatus::Completed,
            _ => IngestionStatus::Triggered,
        }
    }
}

/// What processing one ID produced, e.g. `{"id": 7, "data": "processed"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdResult {
    pub id: u64,
    pub data: serde_json::Value,
}

impl IdResult {
    /// What the simulated downstream records for an ID.
    pub fn processed(id: u64) -> Self {
        Self {
            id,
            data: serde_json::Value::from("processed"),
        }
    }
}

/// One batch as `GET /status/{id}` shows it. The reference's fields come first and are never
/// renamed; `results` is sluice's addition (empty until the batch completes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchView {
    pub batch_id: Uuid,
    pub ids: Vec<u64>,
    pub status: BatchStatus,
    pub started_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    #[serde(default)]
    pub results: Vec<IdResult>,
    /// For a waiting batch, when it is expected to start at the fixed pace; otherwise null.
    #[serde(default)]
    pub predicted_start: Option<Timestamp>,
}

/// An ingestion as `GET /status/{id}` shows it; `batches` in split order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IngestionView {
    pub ingestion_id: Uuid,
    pub status: IngestionStatus,
    pub priority: Priority,
    pub created_at: Timestamp,
    pub batches: Vec<BatchView>,
    /// When the last batch is expected to finish at the fixed pace; null once completed.
    #[serde(default)]
    pub predicted_completion: Option<Timestamp>,
}

/// The newest ingestions, newest first, as the dashboard lists them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecentIngestions {
    pub ingestions: Vec<IngestionView>,
    /// The newest event reflected here: stream `/events` after it to stay current.
    pub last_event_id: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use BatchStatus::*;

    #[test]
    fn an_ingestion_is_as_far_along_as_its_batches_say() {
        let cases: [(&[BatchStatus], IngestionStatus); 7] = [
            (&[YetToStart, YetToStart], IngestionStatus::YetToStart),
            (&[Completed, Completed], IngestionStatus::Completed),
            (&[Triggered, YetToStart], IngestionStatus::Triggered),
            (&[Completed, YetToStart], IngestionStatus::Triggered),
            (&[Completed, Triggered], IngestionStatus::Triggered),
            (&[Triggered], IngestionStatus::Triggered),
            (&[Completed], IngestionStatus::Completed),
        ];
        for (batches, expected) in cases {
            assert_eq!(
                IngestionStatus::of(batches.iter().copied()),
                expected,
                "{batches:?}"
            );
        }
    }

    #[test]
    fn statuses_use_the_reference_spelling() {
        assert_eq!(
            serde_json::to_string(&YetToStart).unwrap(),
            "\"yet_to_start\""
        );
        assert_eq!(
            serde_json::to_string(&IngestionStatus::Completed).unwrap(),
            "\"completed\""
        );
        for s in [YetToStart, Triggered, Completed] {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
    }
}
