//! The `Store` contract: durable ingestions, batches and the global dispatch slot.
//!
//! The store knows nothing of HTTP or of the scheduler's loop. Claiming and completing are
//! single atomic operations, the way job queues do them: `claim_next` checks the rate slot,
//! refuses while another batch holds a live lease, picks the first waiting batch in dispatch
//! order (priority, ingestion acceptance order, position), marks it triggered with a fresh
//! lease and fencing token, and advances the slot, all in one transaction. Each backend keeps
//! its row types private; only the records below cross this boundary.

/// Dispatch order (SPEC §2: priority, then the ingestion's acceptance order, then the batch's
/// position), as an SQL `ORDER BY` list over `batches`: the one copy every query of both
/// backends uses (`dispatch_order!()` for a bare table, `dispatch_order!(b)` for an alias).
macro_rules! dispatch_order {
    () => {
        "priority, ingestion_seq, position"
    };
    (b) => {
        "b.priority, b.ingestion_seq, b.position"
    };
}

mod codec;
mod postgres;
mod sqlite;

/// Claims hand these to the dispatcher (defined with the claim rule, in `domain`).
pub use crate::domain::ClaimedBatch;
pub use postgres::{PostgresStore, SlotClock};
pub use sqlite::SqliteStore;

use crate::domain::{
    Ahead, BatchStatus, Decision, Event, EventBody, Fairness, IdResult, IngestionStatus, Priority,
    StatusCounts, Tenant, Timestamp,
};
use async_trait::async_trait;
use std::{sync::Arc, time::Duration};
use tokio::sync::watch;
use uuid::Uuid;

/// A new ingestion with its batches already split, in split order.
#[derive(Clone, Debug)]
pub struct NewIngestionRecord {
    pub id: Uuid,
    pub priority: Priority,
    pub tenant: Tenant,
    pub created_at: Timestamp,
    pub batches: Vec<NewBatchRecord>,
}

impl NewIngestionRecord {
    /// How many IDs it holds, in all its batches.
    pub fn id_count(&self) -> u64 {
        self.batches.iter().map(|b| b.ids.len() as u64).sum()
    }
}

#[derive(Clone, Debug)]
pub struct NewBatchRecord {
    pub id: Uuid,
    pub ids: Vec<u64>,
}

/// An `Idempotency-Key` and the fingerprint of the request it came with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    pub fingerprint: String,
}

/// How long a key is remembered: a retry within this window returns the first ingestion.
pub const IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Events kept in the log: older ones are pruned by housekeeping. A client that was away for
/// longer than this many events receives what is left, from the oldest kept event.
pub const EVENT_RETENTION: u64 = 100_000;

/// How long a tenant's last start at a priority (its turn, `tenant_starts`) is kept once it has
/// no waiting work there. A tenant whose turn was forgotten counts as never started, so it goes
/// first when it returns: where it would have been anyway, its last start being older than
/// every tenant's that started meanwhile.
pub const TURN_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// What housekeeping keeps: the newest `events` events, keys seen within `keys`, and the turns
/// of tenants without waiting work that started within `turns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub events: u64,
    pub keys: Duration,
    pub turns: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            events: EVENT_RETENTION,
            keys: IDEMPOTENCY_RETENTION,
            turns: TURN_RETENTION,
        }
    }
}

/// What one round of housekeeping deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Housekept {
    pub events: u64,
    pub keys: u64,
    pub turns: u64,
}

/// What an insert must respect besides the ingestion itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// Remember (or replay) the request under this key.
    pub key: Option<IdempotencyKey>,
    /// Refuse the ingestion if the waiting batches would exceed this many.
    pub max_waiting: Option<u64>,
}

/// The outcome of `insert_ingestion`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// Stored now.
    Created,
    /// The key was seen with the same request: this is the ingestion it created; nothing stored.
    Replayed(Uuid),
    /// The key was seen with a different request; nothing stored.
    KeyConflict,
    /// Storing it would pass `max_waiting`; `waiting` batches are waiting. Nothing stored.
    QueueFull { waiting: u64 },
}

/// An ingestion as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct IngestionRecord {
    pub id: Uuid,
    pub priority: Priority,
    pub tenant: String,
    pub created_at: Timestamp,
    /// When it was cancelled, if it was.
    pub cancelled_at: Option<Timestamp>,
    pub batches: Vec<BatchRecord>,
}

/// A batch as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchRecord {
    pub id: Uuid,
    pub position: u32,
    pub ids: Vec<u64>,
    pub status: BatchStatus,
    /// How many times the batch has been dispatched; also its fencing token.
    pub attempt: u32,
    pub started_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    pub results: Vec<IdResult>,
    /// The last failed attempt's error, if any (cleared when an attempt succeeds).
    pub error: Option<String>,
    /// A waiting retry is not started before this.
    pub retry_at: Option<Timestamp>,
}

/// An ingestion as the dashboard lists it, read in O(window) whatever its size: its counts,
/// the batches around its work in progress, and its place in the queue.
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryRecord {
    pub id: Uuid,
    pub priority: Priority,
    pub tenant: String,
    pub created_at: Timestamp,
    pub cancelled_at: Option<Timestamp>,
    /// Its batches per status.
    pub counts: StatusCounts,
    pub id_count: u64,
    /// When the last of its batches completed so far.
    pub last_completed_at: Option<Timestamp>,
    /// When the latest of its running batches started, if one runs.
    pub running_since: Option<Timestamp>,
    /// The batches `domain::summary_window` chooses, in split order; the first is at
    /// `first_shown`.
    pub first_shown: u32,
    pub batches: Vec<BatchRecord>,
    /// Its waiting batches before `first_shown` (only a page from `Selection::from` has any).
    pub waiting_before_shown: u64,
    /// Its place, read in the same snapshot, if it has waiting or running batches.
    pub place: Option<QueuePlace>,
}

/// Which ingestions `Store::summaries` reads: the newest first, at most `limit`, of those
/// that meet every condition given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub limit: usize,
    /// Only ingestions accepted before this one (the next page of older ones); none if it is
    /// unknown.
    pub before: Option<Uuid>,
    pub priority: Option<Priority>,
    pub status: Option<IngestionStatus>,
    /// Only this ingestion.
    pub only: Option<Uuid>,
    /// Show the batches from this position (`domain::page_window`) rather than those around
    /// the work in progress.
    pub from: Option<u32>,
}

impl Selection {
    /// The newest `limit` ingestions, whatever they are.
    pub fn newest(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// One ingestion, its batches shown from position `from`.
    pub fn one(id: Uuid, from: u32) -> Self {
        Self {
            limit: 1,
            only: Some(id),
            from: Some(from),
            ..Self::default()
        }
    }
}

/// What `Store::find_ingestions` looks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// An ingestion's id, or one of its batches'.
    Id(Uuid),
    /// The last hex digits of an ingestion's id (lowercase, at most 12: the id's last group,
    /// so the same in the hyphenated form).
    Suffix(String),
}

/// The batches holding a page of an ingestion's IDs (see `Store::id_page`).
#[derive(Clone, Debug, PartialEq)]
pub struct IdPage {
    /// IDs in the whole ingestion.
    pub id_count: u64,
    /// Where the first ID of `batches[0]` is in the ingestion (in split order).
    pub first_offset: u64,
    pub batches: Vec<BatchRecord>,
}

/// One attempt of a batch: who ran it, when, and how it ended (`outcome` and `finished_at`
/// are `None` while it runs, and for good if it was cut off: lease lost, superseded, killed).
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub replica: String,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// `completed`, `retrying` or `failed`.
    pub outcome: Option<String>,
    pub error: Option<String>,
    /// The downstream's HTTP status, when it answered a failed attempt.
    pub status_code: Option<u16>,
}

/// A batch's attempts, and which of them holds it now.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptsRecord {
    /// The attempt the batch is `triggered` under, if it is (its lease may have run out if
    /// its process died, until another takes it over).
    pub running: Option<u32>,
    pub attempts: Vec<AttemptRecord>,
}

/// A batch that has started, for the queue's in-flight and recent-dispatch lists.
#[derive(Clone, Debug, PartialEq)]
pub struct DispatchRecord {
    pub batch_id: Uuid,
    pub ingestion_id: Uuid,
    pub priority: Priority,
    pub position: u32,
    pub ids: Vec<u64>,
    pub attempt: u32,
    pub started_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}

/// The queue as it stands, read in one consistent snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueRecord {
    /// Waiting batches per priority, indexed by `Priority::rank()` (HIGH, MEDIUM, LOW).
    pub waiting: [u64; 3],
    /// Per priority (as `waiting`), the `TOP_TENANTS` tenants with the most waiting batches
    /// there and their counts, most first (ties by name).
    pub tenants: [Vec<(String, u64)>; 3],
    /// Batches marked triggered (normally at most one), in dispatch order.
    pub in_flight: Vec<DispatchRecord>,
    /// The most recently started batches, newest first.
    pub recent: Vec<DispatchRecord>,
    /// When the last batch started, if ever.
    pub last_start: Option<Timestamp>,
    /// Dispatch is paused by an operator.
    pub paused: bool,
    /// The rate interval set at run time, if any (it overrides the configured one).
    pub rate_interval: Option<Duration>,
    /// When the oldest waiting batch was submitted, if any waits.
    pub oldest_waiting: Option<Timestamp>,
}

/// What `Store::pace` reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PaceRecord {
    /// Waiting batches per priority, indexed by `Priority::rank()`.
    pub waiting: [u64; 3],
    /// Starts, newest first: when, at which priority, which batch.
    pub starts: Vec<(Timestamp, Priority, Uuid)>,
    /// Dispatch is paused by an operator.
    pub paused: bool,
    /// The rate interval set at run time, if any.
    pub rate_interval: Option<Duration>,
}

/// Where one ingestion's waiting work stands in the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuePlace {
    /// Waiting batches that will be dispatched before each of this one's, under the fairness
    /// asked for.
    pub ahead: Ahead,
    /// Dispatch is paused: nothing can be predicted.
    pub paused: bool,
    /// The rate interval set at run time, if any.
    pub rate_interval: Option<Duration>,
    /// When the last batch started, if ever.
    pub last_start: Option<Timestamp>,
    /// When the batch in flight started, if one is.
    pub in_flight_since: Option<Timestamp>,
}

/// What every queue place read in one snapshot shares: the slot and the batch in flight.
/// Each backend reads it once per snapshot and adds each ingestion's count ahead.
#[derive(Clone, Copy, Debug)]
struct PlaceContext {
    paused: bool,
    rate_interval: Option<Duration>,
    last_start: Option<Timestamp>,
    in_flight_since: Option<Timestamp>,
}

impl PlaceContext {
    fn place(self, ahead: Ahead) -> QueuePlace {
        QueuePlace {
            ahead,
            paused: self.paused,
            rate_interval: self.rate_interval,
            last_start: self.last_start,
            in_flight_since: self.in_flight_since,
        }
    }
}

/// What `claim_next` found: the claim rule's decision (`domain::decide`) as the store applied
/// it, `Claimed` with the batch it dispatched (the slot has moved to its start). Waits are
/// durations on the store's clock, from the moment it decided.
pub type Claim = Decision<ClaimedBatch>;

/// The outcome of `complete`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    Completed,
    /// The batch was re-dispatched (or finished) under a newer attempt: this result is stale.
    Fenced,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("store migration failed: {0}")]
    Migration(String),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Store an ingestion and all its batches, durably, before returning. In the same
    /// transaction: a key seen within [`IDEMPOTENCY_RETENTION`] replays or conflicts instead
    /// (keys older than that are forgotten); then the bound on waiting batches is checked.
    async fn insert_ingestion(
        &self,
        ingestion: NewIngestionRecord,
        admission: Admission,
    ) -> Result<Inserted, StoreError>;

    /// An ingestion with its batches in split order, or `None` if unknown.
    async fn ingestion(&self, id: Uuid) -> Result<Option<IngestionRecord>, StoreError>;

    /// Dispatch the next batch if the rate slot and the in-flight rule allow it (see module doc).
    /// `interval` is the configured one; an interval set at run time overrides it. The
    /// attempt it starts is recorded as run by `replica`, in the same transaction, and so is
    /// its tenant's last start at its priority. Which batch goes is `fairness`'s choice
    /// (`domain::candidate`): every replica of a cluster must use the same.
    async fn claim_next(
        &self,
        now: Timestamp,
        interval: Duration,
        lease: Duration,
        replica: &str,
        fairness: Fairness,
    ) -> Result<Claim, StoreError>;

    /// Extend the lease of a batch still held under `attempt` to `lease` from now (the
    /// store's now, where the store keeps the time), if the lease is still live; false if it
    /// has run out or the batch was taken over (its holder must then stop: the next claim may
    /// already have started another batch).
    async fn renew_lease(
        &self,
        batch_id: Uuid,
        attempt: u32,
        now: Timestamp,
        lease: Duration,
    ) -> Result<bool, StoreError>;

    /// Record a batch's results and mark it completed, if `attempt` is still current.
    async fn complete(
        &self,
        batch_id: Uuid,
        attempt: u32,
        at: Timestamp,
        results: Vec<IdResult>,
    ) -> Result<Completion, StoreError>;

    /// Record a failed attempt of a batch still held under `attempt` (else `Fenced`), with the
    /// downstream's HTTP status if it answered (kept in the attempt's history): with
    /// `retry_at` the batch waits again, not claimable before then, keeping `error`
    /// (`batch_retrying`); without, it is `failed` for good (`batch_failed`, then the
    /// ingestion's last event if nothing else of it is left).
    async fn fail(
        &self,
        batch_id: Uuid,
        attempt: u32,
        at: Timestamp,
        error: String,
        status_code: Option<u16>,
        retry_at: Option<Timestamp>,
    ) -> Result<Completion, StoreError>;

    /// An operator's retry: put a failed batch back in the queue (`batch_requeued`). `None`
    /// if the batch is unknown, `Some(false)` if it is not failed.
    async fn requeue(&self, batch_id: Uuid, at: Timestamp) -> Result<Option<bool>, StoreError>;

    /// Cancel every batch of the ingestion that has not started, in one transaction with its
    /// events (`batches_cancelled`, then `ingestion_cancelled` if nothing of it is running);
    /// returns how many were cancelled now (0 if none was waiting), `None` if it is unknown.
    /// Started batches run to the end.
    async fn cancel(&self, ingestion: Uuid, at: Timestamp) -> Result<Option<u32>, StoreError>;

    /// Called once when a dispatcher starts. A backend that only one process can use takes
    /// over every batch a dead process left triggered, making it claimable at once (ahead of
    /// newer work of the same priority, by dispatch order); returns how many. A shared backend
    /// leaves other processes' leases alone.
    async fn recover_abandoned(&self) -> Result<u64, StoreError>;

    /// When the last batch started, if ever (the durable start of the rate limit).
    async fn last_start(&self) -> Result<Option<Timestamp>, StoreError>;

    /// The newest ingestions, newest first, at most `limit`, with all their batches (for
    /// tools and tests: the dashboard reads `summaries`).
    async fn recent_ingestions(&self, limit: usize) -> Result<Vec<IngestionRecord>, StoreError>;

    /// The ingestions `selection` picks, newest first, each summarized with at most `window`
    /// batches (`domain::summary_window`, or `domain::page_window` from `selection.from`), in
    /// one snapshot. Costs O(limit × (window + a queue place)), whatever the ingestions' sizes
    /// and the backlog; a status filter walks past the newer ingestions that do not match.
    async fn summaries(
        &self,
        selection: &Selection,
        window: u32,
        fairness: Fairness,
    ) -> Result<Vec<SummaryRecord>, StoreError>;

    /// The ingestions `lookup` finds, newest first, at most `limit`. A whole id is looked up
    /// by index (as an ingestion's, then as a batch's); an id's end is compared with every
    /// ingestion's, O(ingestions).
    async fn find_ingestions(&self, lookup: &Lookup, limit: usize)
        -> Result<Vec<Uuid>, StoreError>;

    /// The batches holding the ingestion's IDs from `offset` (in split order), for up to
    /// `limit` of them, or `None` if it is unknown. O(limit), whatever the ingestion's size:
    /// it was split into batches of one size (the last may be shorter), so the batch holding
    /// an offset is found by arithmetic from the first batch's size.
    async fn id_page(
        &self,
        ingestion: Uuid,
        offset: u64,
        limit: u64,
    ) -> Result<Option<IdPage>, StoreError>;

    /// A batch's attempts, oldest first, or `None` if the batch is unknown.
    async fn attempts(&self, batch_id: Uuid) -> Result<Option<AttemptsRecord>, StoreError>;

    /// The queue: depth per priority, what is in flight, the last `recent` dispatches.
    async fn queue(&self, recent: usize) -> Result<QueueRecord, StoreError>;

    /// The pace: waiting batches per priority now, and the newest `limit` starts at or after
    /// `since` (each batch's latest), newest first, in one snapshot. O(limit) by the start
    /// index; `limit` 0 reads only the counts.
    async fn pace(&self, since: Timestamp, limit: usize) -> Result<PaceRecord, StoreError>;

    /// Where an ingestion's waiting batches stand in the queue under `fairness`, or `None` if
    /// it is unknown.
    async fn queue_place(
        &self,
        ingestion: Uuid,
        fairness: Fairness,
    ) -> Result<Option<QueuePlace>, StoreError>;

    /// Events with an id above `after`, oldest first, at most `limit`; only those of one
    /// ingestion if given. Every state change above appends its event in its own transaction.
    async fn events_after(
        &self,
        after: u64,
        ingestion: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError>;

    /// The id of the newest committed event, updated after every commit that appends one.
    fn event_feed(&self) -> watch::Receiver<u64>;

    /// The id of the newest event committed, as the store holds it now: every change that
    /// returned before this call (through any process) has an event at most this, and a read
    /// begun after it sees those changes. Reads remembered under this value stay exact while
    /// it stands still (see `server::memo`), so it must be cheap: no I/O where this process
    /// is the only writer (its feed moves with every write), one indexed row otherwise.
    async fn latest_event(&self) -> Result<u64, StoreError>;

    /// Pause or resume dispatch (durably, with its event); false if it already was so.
    async fn set_paused(&self, paused: bool, at: Timestamp) -> Result<bool, StoreError>;

    /// Set (or with `None`, clear) the run-time rate interval, durably, with its event.
    async fn set_rate_interval(
        &self,
        interval: Option<Duration>,
        effective_ms: u64,
        at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Readiness: the store answers a read and its schema is the one this build expects.
    async fn check(&self) -> Result<(), StoreError>;

    /// Delete what `keep` no longer keeps at `now`: events older than the newest
    /// `keep.events`, keys first seen more than `keep.keys` ago, the turns of tenants with no
    /// waiting work at their priority whose last start there is more than `keep.turns` ago.
    /// Runs on a timer (`server::housekeeping`), whatever else happens: a downstream that never
    /// succeeds must not grow the log without bound. Idempotent; safe from several replicas at
    /// once.
    async fn housekeep(&self, now: Timestamp, keep: Retention) -> Result<Housekept, StoreError>;
}

pub type DynStore = Arc<dyn Store>;

/// The positions of the batches holding IDs `offset..offset + limit` of an ingestion of
/// `id_count` IDs split into batches of `size` (the last may be shorter); empty past its end.
fn page_positions(id_count: u64, size: u64, offset: u64, limit: u64) -> std::ops::Range<u32> {
    if size == 0 || limit == 0 || offset >= id_count {
        return 0..0;
    }
    let last = offset.saturating_add(limit - 1).min(id_count - 1);
    let pos = |id: u64| u32::try_from(id / size).unwrap_or(u32::MAX);
    pos(offset)..pos(last).saturating_add(1)
}

/// The ingestion's last event, once nothing of it is left to run: the overall-status rule
/// (`IngestionStatus::of_counts`) applied to the counts a backend read in the transaction that
/// finished its last batch.
fn ending_event(ingestion_id: Uuid, counts: StatusCounts) -> Option<EventBody> {
    match IngestionStatus::of_counts(counts) {
        IngestionStatus::Completed => Some(EventBody::IngestionCompleted { ingestion_id }),
        IngestionStatus::Cancelled => Some(EventBody::IngestionCancelled { ingestion_id }),
        IngestionStatus::Failed => Some(EventBody::IngestionFailed { ingestion_id }),
        IngestionStatus::YetToStart | IngestionStatus::Triggered => None,
    }
}

/// How a failed attempt ends in its history: `retrying` with a `retry_at`, else `failed`
/// (the same choice as `failure_event`).
fn failure_outcome(retry_at: Option<Timestamp>) -> &'static str {
    match retry_at {
        Some(_) => "retrying",
        None => "failed",
    }
}

/// The event of a failed attempt: another one not before `retry_at`, or failed for good.
fn failure_event(
    ingestion_id: Uuid,
    batch_id: Uuid,
    position: u32,
    attempt: u32,
    error: String,
    retry_at: Option<Timestamp>,
) -> EventBody {
    match retry_at {
        Some(retry_at) => EventBody::BatchRetrying {
            ingestion_id,
            batch_id,
            position,
            attempt,
            error,
            retry_at,
        },
        None => EventBody::BatchFailed {
            ingestion_id,
            batch_id,
            position,
            attempt,
            error,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::page_positions;

    #[test]
    fn a_page_of_ids_is_found_in_the_batches_that_hold_it() {
        // 10 IDs in batches of 3: [0 1 2] [3 4 5] [6 7 8] [9].
        assert_eq!(page_positions(10, 3, 0, 3), 0..1);
        assert_eq!(page_positions(10, 3, 2, 2), 0..2);
        assert_eq!(page_positions(10, 3, 4, 100), 1..4, "cut at the last ID");
        assert_eq!(page_positions(10, 3, 9, 1), 3..4);
        assert_eq!(page_positions(10, 3, 10, 5), 0..0, "past the end");
        assert_eq!(page_positions(10, 3, 0, 0), 0..0);
        assert_eq!(page_positions(0, 0, 0, 5), 0..0, "no batches");
        assert_eq!(page_positions(10, 3, u64::MAX, u64::MAX), 0..0);
        assert_eq!(page_positions(10, 3, 1, u64::MAX), 0..4);
    }
}
