//! Statuses and the read-side views of an ingestion (`GET /status/{id}`).

use super::{Priority, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where one batch is in its life: `yet_to_start` → `triggered` → `completed`;
/// `yet_to_start` → `cancelled` when its ingestion is cancelled before the batch starts;
/// `triggered` → `failed` when the downstream refused it on every attempt (a failed attempt
/// with attempts left goes back to `yet_to_start` until its retry time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    YetToStart,
    Triggered,
    Completed,
    Cancelled,
    Failed,
}

/// The overall status of an ingestion, derived from its batches (never stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum IngestionStatus {
    YetToStart,
    Triggered,
    Completed,
    /// Cancelled, and every batch that had started has finished.
    Cancelled,
    /// Every batch has finished and at least one failed.
    Failed,
}

impl BatchStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::YetToStart => "yet_to_start",
            BatchStatus::Triggered => "triggered",
            BatchStatus::Completed => "completed",
            BatchStatus::Cancelled => "cancelled",
            BatchStatus::Failed => "failed",
        }
    }

    /// Nothing more will happen to the batch (an operator may still retry a failed one).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            BatchStatus::Completed | BatchStatus::Cancelled | BatchStatus::Failed
        )
    }
}

impl IngestionStatus {
    pub const ALL: [IngestionStatus; 5] = [
        IngestionStatus::YetToStart,
        IngestionStatus::Triggered,
        IngestionStatus::Completed,
        IngestionStatus::Cancelled,
        IngestionStatus::Failed,
    ];

    /// The status named as `as_str` writes it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IngestionStatus::YetToStart => "yet_to_start",
            IngestionStatus::Triggered => "triggered",
            IngestionStatus::Completed => "completed",
            IngestionStatus::Cancelled => "cancelled",
            IngestionStatus::Failed => "failed",
        }
    }

    /// Nothing more will happen to the ingestion.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            IngestionStatus::Completed | IngestionStatus::Cancelled | IngestionStatus::Failed
        )
    }

    /// SPEC §2: `yet_to_start` if every batch is, `completed` if every batch is, otherwise
    /// `triggered` (so `[completed, yet_to_start]` is `triggered`). Cancelling adds one rule:
    /// once every batch is completed or cancelled, and at least one is cancelled, the
    /// ingestion is `cancelled` (a batch still running keeps it `triggered` until it ends).
    /// Failures add another: once every batch is final and at least one failed, `failed`.
    pub fn of(batches: impl IntoIterator<Item = BatchStatus>) -> Self {
        let mut counts = StatusCounts::default();
        for status in batches {
            *match status {
                BatchStatus::YetToStart => &mut counts.waiting,
                BatchStatus::Triggered => &mut counts.running,
                BatchStatus::Completed => &mut counts.completed,
                BatchStatus::Cancelled => &mut counts.cancelled,
                BatchStatus::Failed => &mut counts.failed,
            } += 1;
        }
        Self::of_counts(counts)
    }

    /// The same rule from how many batches are in each status (what a store can count).
    pub fn of_counts(counts: StatusCounts) -> Self {
        let StatusCounts {
            waiting,
            running,
            completed,
            cancelled,
            failed,
        } = counts;
        let (waiting, done, cancelled, running, failed) = (
            waiting > 0,
            completed > 0,
            cancelled > 0,
            running > 0,
            failed > 0,
        );
        match (waiting, done, cancelled, running, failed) {
            (_, false, false, false, false) => IngestionStatus::YetToStart,
            (false, _, _, false, true) => IngestionStatus::Failed,
            (false, true, false, false, false) => IngestionStatus::Completed,
            (false, _, true, false, false) => IngestionStatus::Cancelled,
            _ => IngestionStatus::Triggered,
        }
    }
}

/// How many of an ingestion's batches are in each status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub waiting: u64,
    pub running: u64,
    pub completed: u64,
    pub cancelled: u64,
    pub failed: u64,
}

impl StatusCounts {
    /// All the batches.
    pub fn total(self) -> u64 {
        self.waiting + self.running + self.completed + self.cancelled + self.failed
    }
}

/// What processing one ID produced, e.g. `{"id": 7, "data": "processed"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct IdResult {
    pub id: u64,
    pub data: serde_json::Value,
    /// What the downstream said went wrong for this ID, if it reported a per-ID error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl IdResult {
    /// What the simulated downstream records for an ID.
    pub fn processed(id: u64) -> Self {
        Self {
            id,
            data: serde_json::Value::from("processed"),
            error: None,
        }
    }
}

/// One batch as `GET /status/{id}` shows it. The reference's fields come first and are never
/// renamed; `results` is sluice's addition (empty until the batch completes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
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
    /// Times the batch was dispatched (retries and rescues count).
    #[serde(default)]
    pub attempts: u32,
    /// The last failed attempt's error (kept on a failed batch, and while a retry waits).
    #[serde(default)]
    pub error: Option<String>,
    /// A waiting retry's earliest start (backoff), if the last attempt failed.
    #[serde(default)]
    pub retry_at: Option<Timestamp>,
}

/// An ingestion as `GET /status/{id}` shows it; `batches` in split order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct IngestionView {
    pub ingestion_id: Uuid,
    pub status: IngestionStatus,
    pub priority: Priority,
    /// Who the work belongs to (`default` unless named).
    #[serde(default = "default_tenant")]
    pub tenant: String,
    pub created_at: Timestamp,
    pub batches: Vec<BatchView>,
    /// When the last batch is expected to finish at the fixed pace; null once completed.
    #[serde(default)]
    pub predicted_completion: Option<Timestamp>,
    /// When the ingestion was cancelled, if it was (its waiting batches show `cancelled`).
    #[serde(default)]
    pub cancelled_at: Option<Timestamp>,
}

fn default_tenant() -> String {
    super::request::DEFAULT_TENANT.to_owned()
}

/// An ingestion as a list shows it: counts for the whole, and a window of its batches around
/// the work in progress (an ingestion can have tens of thousands of batches).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct IngestionSummary {
    pub ingestion_id: Uuid,
    pub status: IngestionStatus,
    pub priority: Priority,
    #[serde(default = "default_tenant")]
    pub tenant: String,
    pub created_at: Timestamp,
    pub predicted_completion: Option<Timestamp>,
    /// When the last batch completed, once every batch has.
    pub completed_at: Option<Timestamp>,
    #[serde(default)]
    pub cancelled_at: Option<Timestamp>,
    pub id_count: u64,
    pub batch_count: u32,
    pub triggered_batches: u32,
    pub completed_batches: u32,
    #[serde(default)]
    pub cancelled_batches: u32,
    #[serde(default)]
    pub failed_batches: u32,
    /// The position of `batches[0]` in the ingestion.
    pub first_shown: u32,
    pub batches: Vec<BatchView>,
}

/// The batches an ingestion's summary shows, by position, out of `total`: at most `window`,
/// all of them if they fit, otherwise a few (an eighth of the window) completed ones before
/// `frontier` (its first batch not completed, or `total` if none) and what follows it.
pub fn summary_window(frontier: u32, total: u32, window: u32) -> std::ops::Range<u32> {
    let window = window.max(1);
    let first = frontier
        .min(total)
        .saturating_sub(window / 8)
        .min(total.saturating_sub(window));
    first..total.min(first.saturating_add(window))
}

/// The batches a page of an ingestion shows, by position, out of `total`: at most `window`
/// from `first` (a `first` past the end shows the last batch).
pub fn page_window(first: u32, total: u32, window: u32) -> std::ops::Range<u32> {
    let first = first.min(total.saturating_sub(1));
    first..total.min(first.saturating_add(window.max(1)))
}

/// One ID's result, as `GET /status/{id}/results` lists them (in split order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct IdResultView {
    pub batch_id: Uuid,
    pub id: u64,
    pub status: BatchStatus,
    pub data: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A page of an ingestion's per-ID results: every ID, in split order, with its batch's
/// status; `data` is null until the batch completes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ResultsPage {
    pub ingestion_id: Uuid,
    /// IDs in the ingestion.
    pub total: u64,
    pub offset: u64,
    pub results: Vec<IdResultView>,
}

/// One attempt of a batch, as `GET /batches/{batch_id}/attempts` lists them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AttemptView {
    /// The attempt number: the fencing token the downstream receives.
    pub attempt: u32,
    /// The replica that ran it (`--replica-name`).
    pub replica: String,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// `completed`, `retrying` (failed, another attempt follows), `failed` (for good);
    /// `running` for the attempt that holds the batch now; `cut_off` for one that never got
    /// an outcome (its lease was lost, a newer attempt took the batch over, or its process
    /// died).
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The downstream's HTTP status, when it answered a failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
}

/// A batch's attempts, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct BatchAttempts {
    pub batch_id: Uuid,
    pub attempts: Vec<AttemptView>,
}

/// What `POST /ingest/{id}/cancel` answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct CancelResponse {
    pub ingestion_id: Uuid,
    /// Batches cancelled by this request (0 when repeated, or when nothing was waiting).
    pub cancelled_batches: u32,
    /// The ingestion's status after the cancel: `cancelled`, or `triggered` while a batch that
    /// had started is still running, or `completed` if everything had already run.
    pub status: IngestionStatus,
    pub cancelled_at: Option<Timestamp>,
}

/// The newest ingestions, newest first, as the dashboard lists them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RecentIngestions {
    /// The server's time when the list was read (countdowns start from it).
    pub now: Timestamp,
    pub ingestions: Vec<IngestionSummary>,
    /// The newest event reflected here: stream `/events` after it to stay current.
    pub last_event_id: u64,
}

/// One ingestion with a page of its batches, as its page at `/ingestions/{id}` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct IngestionPage {
    /// The server's time when it was read (countdowns start from it).
    pub now: Timestamp,
    /// The ingestion; `batches` are the page's, from `first_shown`.
    pub ingestion: IngestionSummary,
    /// Batches per page.
    pub page_size: u32,
    /// The newest event reflected here: stream `/events` after it to stay current.
    pub last_event_id: u64,
}

/// What a search found: the ingestions whose id, or one of whose batches' ids, is the one
/// searched for, or whose id ends with the digits searched for; newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Found {
    pub ingestions: Vec<Uuid>,
}

/// What the caller's token may do with writes (`POST /api/access`): the dashboard disables
/// its buttons, saying why, where a write would be refused anyway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WriteAccess {
    /// Writes are open, or the token may write.
    Allowed,
    /// Writes need a token, and none (or an unknown one) was sent.
    NeedsToken,
    /// The token may only read.
    ReadOnly,
}

impl WriteAccess {
    /// Why a write button is disabled, if it is.
    pub fn refusal(self) -> Option<&'static str> {
        match self {
            WriteAccess::ReadOnly => Some("This session's token may only read"),
            WriteAccess::Allowed | WriteAccess::NeedsToken => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BatchStatus::*;

    #[test]
    fn a_summary_shows_a_window_around_the_work_in_progress() {
        // 50 completed, then the one in flight and 49 waiting: two completed ones before it.
        assert_eq!(summary_window(50, 100, 16), 48..64);
        // At the start, nothing before it.
        assert_eq!(summary_window(0, 100, 16), 0..16);
        // Near the end, the last window.
        assert_eq!(summary_window(95, 100, 16), 84..100);
    }

    #[test]
    fn a_small_or_finished_ingestion_shows_what_fits() {
        assert_eq!(summary_window(1, 2, 16), 0..2);
        assert_eq!(
            summary_window(40, 40, 16),
            24..40,
            "finished: the last batches"
        );
        assert_eq!(summary_window(0, 0, 16), 0..0);
    }

    #[test]
    fn an_ingestion_is_as_far_along_as_its_batches_say() {
        let cases: [(&[BatchStatus], IngestionStatus); 14] = [
            (&[Completed, Failed], IngestionStatus::Failed),
            (&[Cancelled, Failed], IngestionStatus::Failed),
            (&[Triggered, Failed], IngestionStatus::Triggered),
            (&[Completed, Cancelled], IngestionStatus::Cancelled),
            (&[Cancelled, Cancelled], IngestionStatus::Cancelled),
            (&[Triggered, Cancelled], IngestionStatus::Triggered),
            (
                &[Completed, Triggered, Cancelled],
                IngestionStatus::Triggered,
            ),
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
        for s in [
            IngestionStatus::YetToStart,
            IngestionStatus::Triggered,
            IngestionStatus::Completed,
            IngestionStatus::Cancelled,
            IngestionStatus::Failed,
        ] {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        for s in [YetToStart, Triggered, Completed, Cancelled, Failed] {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
    }
}
