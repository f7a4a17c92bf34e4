//! PostgreSQL backend: any number of sluice processes, one queue, one rate limit.
//!
//! - Every claim locks the one `dispatch_slot` row (`FOR UPDATE`) for its transaction, then
//!   locks the triggered and the first waiting batch (`FOR UPDATE`, never `SKIP LOCKED`: a
//!   lease being renewed is waited for, not taken for run out), applies the claim rule
//!   (`domain::decide`) and advances the slot before committing:
//!   claims are serialized cluster-wide, so start-to-start spacing and "at most one in flight"
//!   hold across replicas, with no leader.
//! - Slots are read on the database's clock (`SlotClock::Database`): replicas' clocks need not
//!   agree. (The conformance suite drives the store with given times, `SlotClock::Caller`.)
//! - A dead replica's batch is rescued when its lease runs out: the next claim takes an expired
//!   triggered batch first (by dispatch order) under a new attempt, and the dead replica's late
//!   completion is fenced by the attempt number.
//! - Events get ids from `event_serial` under a row lock held to commit, so they become visible in
//!   id order; `pg_notify` tells every replica's listener once they are durable (in the same
//!   transaction, or for ingestions in the flush after their group: see `writer`). A replica
//!   serves events up to its feed only, which moves to durable ids only.

use super::{
    ending_event, failure_event, failure_outcome, page_positions, Admission, AttemptRecord,
    AttemptsRecord, BatchRecord, Claim, ClaimedBatch, Completion, DispatchRecord, Housekept,
    IdPage, IdempotencyKey, IngestionRecord, Inserted, Lookup, NewIngestionRecord, PaceRecord,
    PlaceContext, QueuePlace, QueueRecord, Retention, Selection, Store, StoreError, SummaryRecord,
    IDEMPOTENCY_RETENTION,
};
use crate::domain::{
    candidate, decide, page_window, summary_window, Ahead, ClaimFacts, Event, EventBody, Fairness,
    IdResult, Priority, QueueKey, StatusCounts, TenantHead, TenantQueue, Timestamp, Turns,
    TOP_TENANTS,
};
use async_trait::async_trait;
use deadpool_postgres::{Object, Pool, Runtime};
use futures::StreamExt;
use std::{sync::Arc, time::Duration};
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};
use tokio_postgres::{AsyncMessage, GenericClient, NoTls, Row};
use uuid::Uuid;

mod claim;
mod listen;
mod migrate;
mod rows;
mod writer;

use listen::*;
use migrate::*;
use rows::*;
use writer::{group_commit, Submission};

/// The channel every replica listens on; the payload is the new event's id.
const CHANNEL: &str = "sluice_events";

/// Connections kept for the dispatcher, beside the request pool.
const DISPATCH_CONNECTIONS: usize = 2;

/// Whose clock decides the rate slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotClock {
    /// The database's (`clock_timestamp()`): replicas' clocks need not agree. The default.
    Database,
    /// The `now` each call passes: deterministic tests.
    Caller,
}

pub struct PostgresStore {
    /// Reads and operators' changes (pause, rate, cancel, requeue).
    pool: Pool,
    /// Ingestions, to the group-commit writer (see `writer`).
    writes: mpsc::Sender<Submission>,
    /// The dispatcher's own connections (claims, renewals, completions): request traffic
    /// waiting for `pool` can never delay a claim or a lease renewal.
    dispatch: Pool,
    clock: SlotClock,
    events: watch::Receiver<u64>,
    feed: Arc<watch::Sender<u64>>,
    listener: JoinHandle<()>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// The driver's client behind a pooled connection (the pool's own wrappers have their own
/// transaction types; the helpers here take the driver's).
fn raw(object: &mut Object) -> &mut tokio_postgres::Client {
    object
}

/// A read-only transaction that sees one snapshot (every read of a record or of the queue).
async fn snapshot(object: &mut Object) -> Result<tokio_postgres::Transaction<'_>, StoreError> {
    raw(object)
        .build_transaction()
        .read_only(true)
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(pg)
}

/// The database's time in µs since the epoch.
const DB_NOW: &str = "(extract(epoch from clock_timestamp()) * 1000000)::bigint";

/// A connection from `pool`, or why there is none.
async fn connection(pool: &Pool) -> Result<Object, StoreError> {
    pool.get()
        .await
        .map_err(|e| StoreError::Unavailable(format!("no database connection: {e}")))
}

fn pg(e: tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl PostgresStore {
    /// The statement with which a replica's writer takes the writers' turn for one group
    /// (held to its commit); it shows in `pg_locks` as an advisory lock. Tests hold it to
    /// stand in for another replica's group.
    pub const WRITERS_TURN: &'static str = writer::TURN;

    /// Connect, bring the schema up to date (one process at a time, under an advisory lock),
    /// and start listening for other replicas' events.
    pub async fn open(url: &str, clock: SlotClock, pool_size: usize) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("invalid PostgreSQL URL: {e}")))?;
        let pool_of = |size: usize| {
            let manager = deadpool_postgres::Manager::from_config(
                config.clone(),
                NoTls,
                deadpool_postgres::ManagerConfig {
                    recycling_method: deadpool_postgres::RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(size)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(Duration::from_secs(10)))
                .create_timeout(Some(Duration::from_secs(10)))
                .build()
                .map_err(|e| StoreError::Unavailable(format!("connection pool: {e}")))
        };
        let pool = pool_of(pool_size.max(2))?;
        // One dispatcher asks one thing at a time, but a renewal dropped mid-query (its lease
        // given up) may still hold its connection while the next claim runs.
        let dispatch = pool_of(DISPATCH_CONNECTIONS)?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to PostgreSQL: {e}")))?;
        migrate(raw(&mut client)).await?;
        let latest = durable_latest_event(&**client).await?;
        drop(client);
        let (feed, events) = watch::channel(latest);
        let feed = Arc::new(feed);
        // The writer has a connection of its own and stops once every handle is dropped,
        // after storing what was queued.
        let (writes, queued) = mpsc::channel(writer::QUEUE);
        tokio::spawn(group_commit(pool_of(1)?, pool_of(1)?, queued, feed.clone()));
        let listener = tokio::spawn(listen(config, feed.clone()));
        Ok(Self {
            pool,
            writes,
            dispatch,
            clock,
            events,
            feed,
            listener,
        })
    }

    async fn client(&self) -> Result<Object, StoreError> {
        connection(&self.pool).await
    }

    /// A connection of the dispatcher's own (see `dispatch`).
    async fn dispatch_client(&self) -> Result<Object, StoreError> {
        connection(&self.dispatch).await
    }

    /// Tell this process's listeners at once (other replicas hear the NOTIFY).
    fn published(&self, id: Option<u64>) {
        if let Some(id) = id {
            advance(&self.feed, id);
        }
    }

    async fn now_in<C: GenericClient>(
        &self,
        client: &C,
        given: Timestamp,
    ) -> Result<Timestamp, StoreError> {
        match self.clock {
            SlotClock::Caller => Ok(given),
            SlotClock::Database => {
                let row = client
                    .query_one(&format!("SELECT {DB_NOW}"), &[])
                    .await
                    .map_err(pg)?;
                Ok(Timestamp::from_micros(row.get(0)))
            }
        }
    }
}

/// Waiting batches per priority, indexed by rank.
async fn waiting_counts<C: GenericClient>(client: &C) -> Result<[u64; 3], StoreError> {
    let mut waiting = [0u64; 3];
    for row in client
        .query("SELECT priority, waiting FROM queue_depth", &[])
        .await
        .map_err(pg)?
    {
        let rank: i16 = row.get(0);
        let slot = waiting
            .get_mut(rank as usize)
            .ok_or_else(|| StoreError::Corrupt(format!("priority {rank}")))?;
        *slot = row.get::<_, i64>(1) as u64;
    }
    Ok(waiting)
}

#[async_trait]
impl Store for PostgresStore {
    async fn insert_ingestion(
        &self,
        ingestion: NewIngestionRecord,
        admission: Admission,
    ) -> Result<Inserted, StoreError> {
        let (reply, answer) = oneshot::channel();
        let submission = Submission {
            ingestion,
            admission,
            reply,
        };
        let stopped = || StoreError::Unavailable("the writer has stopped".into());
        self.writes.send(submission).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn ingestion(&self, id: Uuid) -> Result<Option<IngestionRecord>, StoreError> {
        let mut client = self.client().await?;
        let tx = snapshot(&mut client).await?;
        let head = tx
            .query_opt(&format!("{HEAD} WHERE id = $1"), &[&id])
            .await
            .map_err(pg)?;
        match head {
            Some(head) => Ok(Some(ingestion_of(&tx, &head).await?)),
            None => Ok(None),
        }
    }

    async fn claim_next(
        &self,
        now: Timestamp,
        interval: Duration,
        lease: Duration,
        replica: &str,
        fairness: Fairness,
    ) -> Result<Claim, StoreError> {
        self.claim(now, interval, lease, replica, fairness).await
    }

    async fn attempts(&self, batch_id: Uuid) -> Result<Option<AttemptsRecord>, StoreError> {
        let mut client = self.client().await?;
        let tx = snapshot(&mut client).await?;
        let Some(batch) = tx
            .query_opt(
                "SELECT status, attempt FROM batches WHERE id = $1",
                &[&batch_id],
            )
            .await
            .map_err(pg)?
        else {
            return Ok(None);
        };
        let (status, current): (i16, i32) = (batch.get(0), batch.get(1));
        let rows = tx
            .query(
                "SELECT attempt, replica, started_at, finished_at, outcome, error, status_code
                 FROM attempts WHERE batch_id = $1 ORDER BY attempt",
                &[&batch_id],
            )
            .await
            .map_err(pg)?;
        Ok(Some(AttemptsRecord {
            running: (i64::from(status) == codec::TRIGGERED).then_some(current as u32),
            attempts: rows
                .iter()
                .map(|r| AttemptRecord {
                    attempt: r.get::<_, i32>(0) as u32,
                    replica: r.get(1),
                    started_at: Timestamp::from_micros(r.get(2)),
                    finished_at: r.get::<_, Option<i64>>(3).map(Timestamp::from_micros),
                    outcome: r.get(4),
                    error: r.get(5),
                    status_code: r.get::<_, Option<i32>>(6).map(|c| c as u16),
                })
                .collect(),
        }))
    }

    async fn renew_lease(
        &self,
        batch_id: Uuid,
        attempt: u32,
        now: Timestamp,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let client = self.dispatch_client().await?;
        let now = match self.clock {
            SlotClock::Caller => format!("{}", now.as_micros()),
            SlotClock::Database => DB_NOW.to_owned(),
        };
        // Only a live lease is extended: once it has run out, the batch may already belong to
        // the next claim, and its holder must stop.
        let changed = client
            .execute(
                &format!(
                    "UPDATE batches SET lease_until = {now} + {}
                     WHERE id = $1 AND attempt = $2 AND status = 1 AND lease_until > {now}",
                    micros(lease)
                ),
                &[&batch_id, &(attempt as i32)],
            )
            .await
            .map_err(pg)?;
        Ok(changed == 1)
    }

    async fn complete(
        &self,
        batch_id: Uuid,
        attempt: u32,
        at: Timestamp,
        results: Vec<IdResult>,
    ) -> Result<Completion, StoreError> {
        let results = serde_json::to_value(&results)
            .map_err(|e| StoreError::Corrupt(format!("results: {e}")))?;
        let mut client = self.dispatch_client().await?;
        let tx = raw(&mut client).transaction().await.map_err(pg)?;
        let done = tx
            .query_opt(
                "UPDATE batches b
                 SET status = 2, completed_at = $1, results = $2, lease_until = NULL,
                     error = NULL, retry_at = NULL
                 FROM ingestions i
                 WHERE b.id = $3 AND b.attempt = $4 AND b.status = 1 AND i.seq = b.ingestion_seq
                 RETURNING b.ingestion_seq, b.position, i.id",
                &[&at.as_micros(), &results, &batch_id, &(attempt as i32)],
            )
            .await
            .map_err(pg)?;
        let Some(done) = done else {
            return Ok(Completion::Fenced);
        };
        let (seq, position, ingestion_id): (i64, i32, Uuid) =
            (done.get(0), done.get(1), done.get(2));
        moved(&tx, seq, codec::TRIGGERED, codec::COMPLETED, 1, at).await?;
        attempt_ended(&tx, batch_id, attempt, at, "completed", None, None).await?;
        let mut last = append_event(
            &tx,
            at,
            &EventBody::BatchCompleted {
                ingestion_id,
                batch_id,
                position: position as u32,
            },
        )
        .await?;
        if let Some(end) = ending(&tx, seq, ingestion_id).await? {
            last = append_event(&tx, at, &end).await?;
        }
        tx.commit().await.map_err(pg)?;
        self.published(Some(last));
        Ok(Completion::Completed)
    }

    async fn fail(
        &self,
        batch_id: Uuid,
        attempt: u32,
        at: Timestamp,
        error: String,
        status_code: Option<u16>,
        retry_at: Option<Timestamp>,
    ) -> Result<Completion, StoreError> {
        let mut client = self.dispatch_client().await?;
        let tx = raw(&mut client).transaction().await.map_err(pg)?;
        let retry = retry_at.map(Timestamp::as_micros);
        let done = tx
            .query_opt(
                "UPDATE batches b
                 SET status = CASE WHEN $1::bigint IS NULL THEN 4 ELSE 0 END, retry_at = $1,
                     error = $2, lease_until = NULL,
                     completed_at = CASE WHEN $1::bigint IS NULL THEN $3::bigint END
                 FROM ingestions i
                 WHERE b.id = $4 AND b.attempt = $5 AND b.status = 1 AND i.seq = b.ingestion_seq
                 RETURNING b.ingestion_seq, b.position, i.id",
                &[
                    &retry,
                    &error,
                    &at.as_micros(),
                    &batch_id,
                    &(attempt as i32),
                ],
            )
            .await
            .map_err(pg)?;
        let Some(done) = done else {
            return Ok(Completion::Fenced);
        };
        let (seq, position, ingestion_id): (i64, i32, Uuid) =
            (done.get(0), done.get(1), done.get(2));
        let position = position as u32;
        let to = match retry_at {
            Some(_) => codec::WAITING,
            None => codec::FAILED,
        };
        moved(&tx, seq, codec::TRIGGERED, to, 1, at).await?;
        let outcome = failure_outcome(retry_at);
        attempt_ended(
            &tx,
            batch_id,
            attempt,
            at,
            outcome,
            Some(&error),
            status_code,
        )
        .await?;
        let body = failure_event(ingestion_id, batch_id, position, attempt, error, retry_at);
        let mut last = append_event(&tx, at, &body).await?;
        if let Some(end) = ending(&tx, seq, ingestion_id).await? {
            last = append_event(&tx, at, &end).await?;
        }
        tx.commit().await.map_err(pg)?;
        self.published(Some(last));
        Ok(Completion::Completed)
    }

    async fn requeue(&self, batch_id: Uuid, at: Timestamp) -> Result<Option<bool>, StoreError> {
        let mut client = self.client().await?;
        let tx = raw(&mut client).transaction().await.map_err(pg)?;
        let Some(row) = tx
            .query_opt(
                "SELECT b.status, b.position, i.id, i.seq FROM batches b
                 JOIN ingestions i ON i.seq = b.ingestion_seq WHERE b.id = $1 FOR UPDATE OF b",
                &[&batch_id],
            )
            .await
            .map_err(pg)?
        else {
            return Ok(None);
        };
        let (status, position, ingestion_id, seq): (i16, i32, Uuid, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if status != FAILED {
            return Ok(Some(false));
        }
        tx.execute(
            "UPDATE batches SET status = 0, retry_at = NULL, completed_at = NULL WHERE id = $1",
            &[&batch_id],
        )
        .await
        .map_err(pg)?;
        moved(&tx, seq, codec::FAILED, codec::WAITING, 1, at).await?;
        let body = EventBody::BatchRequeued {
            ingestion_id,
            batch_id,
            position: position as u32,
        };
        let last = append_event(&tx, at, &body).await?;
        tx.commit().await.map_err(pg)?;
        self.published(Some(last));
        Ok(Some(true))
    }

    async fn cancel(&self, ingestion: Uuid, at: Timestamp) -> Result<Option<u32>, StoreError> {
        let mut client = self.client().await?;
        let tx = raw(&mut client).transaction().await.map_err(pg)?;
        let Some(row) = tx
            .query_opt("SELECT seq FROM ingestions WHERE id = $1", &[&ingestion])
            .await
            .map_err(pg)?
        else {
            return Ok(None);
        };
        let seq: i64 = row.get(0);
        let cancelled = tx
            .execute(
                "UPDATE batches SET status = 3 WHERE ingestion_seq = $1 AND status = 0",
                &[&seq],
            )
            .await
            .map_err(pg)? as i64;
        if cancelled == 0 {
            return Ok(Some(0));
        }
        moved(&tx, seq, codec::WAITING, codec::CANCELLED, cancelled, at).await?;
        tx.execute(
            "UPDATE ingestions SET cancelled_at = COALESCE(cancelled_at, $1) WHERE seq = $2",
            &[&at.as_micros(), &seq],
        )
        .await
        .map_err(pg)?;
        let mut last = append_event(
            &tx,
            at,
            &EventBody::BatchesCancelled {
                ingestion_id: ingestion,
                batches: cancelled as u32,
            },
        )
        .await?;
        if let Some(end) = ending(&tx, seq, ingestion).await? {
            last = append_event(&tx, at, &end).await?;
        }
        tx.commit().await.map_err(pg)?;
        self.published(Some(last));
        Ok(Some(cancelled as u32))
    }

    async fn recover_abandoned(&self) -> Result<u64, StoreError> {
        // Shared by many processes: a triggered batch may be another replica's, alive. Leases
        // decide; an expired one is rescued by the next claim.
        Ok(0)
    }

    async fn last_start(&self) -> Result<Option<Timestamp>, StoreError> {
        let client = self.client().await?;
        Ok(slot(&**client, false).await?.last_start)
    }

    async fn recent_ingestions(&self, limit: usize) -> Result<Vec<IngestionRecord>, StoreError> {
        let mut client = self.client().await?;
        let tx = snapshot(&mut client).await?;
        let heads = tx
            .query(
                &format!("{HEAD} ORDER BY seq DESC LIMIT $1"),
                &[&(limit as i64)],
            )
            .await
            .map_err(pg)?;
        let mut out = Vec::with_capacity(heads.len());
        for head in &heads {
            out.push(ingestion_of(&tx, head).await?);
        }
        Ok(out)
    }

    async fn summaries(
        &self,
        selection: &Selection,
        window: u32,
        fairness: Fairness,
    ) -> Result<Vec<SummaryRecord>, StoreError> {
        let mut client = self.client().await?;
        let tx = snapshot(&mut client).await?;
        summaries(&tx, selection, window, fairness).await
    }

    async fn find_ingestions(
        &self,
        lookup: &Lookup,
        limit: usize,
    ) -> Result<Vec<Uuid>, StoreError> {
        let client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match lookup {
            Lookup::Id(id) => {
                client
                    .query(
                        "(SELECT id FROM ingestions WHERE id = $1)
                         UNION ALL
                         (SELECT i.id FROM batches b JOIN ingestions i ON i.seq = b.ingestion_seq
                          WHERE b.id = $1)
                         LIMIT $2",
                        &[id, &limit],
                    )
                    .await
            }
            // `uuid::text` is lowercase and hyphenated; its last group has 12 digits.
            Lookup::Suffix(end) => client
                .query(
                    "SELECT id FROM ingestions WHERE right(id::text, length($1::text)) = $1::text
                         ORDER BY seq DESC LIMIT $2",
                    &[end, &limit],
                )
                .await,
        }
        .map_err(pg)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn id_page(
        &self,
        ingestion: Uuid,
        offset: u64,
        limit: u64,
    ) -> Result<Option<IdPage>, StoreError> {
        let mut client = self.client().await?;
        let tx = snapshot(&mut client).await?;
        let Some(head) = tx
            .query_opt(
                "SELECT seq, id_count,
                        (SELECT cardinality(ids) FROM batches
                         WHERE ingestion_seq = ingestions.seq AND position = 0)
                 FROM ingestions WHERE id = $1",
                &[&ingestion],
            )
            .await
            .map_err(pg)?
        else {
            return Ok(None);
        };
        let seq: i64 = head.get(0);
        let id_count = head.get::<_, i64>(1).max(0) as u64;
        let size = head.get::<_, Option<i32>>(2).unwrap_or(0).max(0) as u64;
        let positions = page_positions(id_count, size, offset, limit);
        Ok(Some(IdPage {
            id_count,
            first_offset: u64::from(positions.start) * size,
            batches: batches_of(&tx, seq, positions).await?,
        }))
    }

    async fn queue(&self, recent: usize) -> Result<QueueRecord, StoreError> {
        let mut client = self.client().await?;
        let tx = snapshot(&mut client).await?;
        let waiting = waiting_counts(&tx).await?;
        let mut tenants: [Vec<(String, u64)>; 3] = Default::default();
        for (rank, top) in tenants.iter_mut().enumerate() {
            *top = tx
                .query(
                    "SELECT tenant, waiting FROM tenant_depth WHERE priority = $1
                     ORDER BY waiting DESC, tenant COLLATE \"C\" LIMIT $2",
                    &[&(rank as i16), &(TOP_TENANTS as i64)],
                )
                .await
                .map_err(pg)?
                .into_iter()
                .map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64))
                .collect();
        }
        let in_flight = dispatches(
            &tx,
            concat!("WHERE b.status = 1 ORDER BY ", dispatch_order!(b)),
            i64::MAX,
        )
        .await?;
        let recent = dispatches(
            &tx,
            "WHERE b.started_at IS NOT NULL ORDER BY b.started_at DESC",
            recent as i64,
        )
        .await?;
        let oldest: Option<i64> = tx
            .query_one(
                concat!(
                    "SELECT MIN(created_at) FROM ingestions WHERE seq IN (
                       SELECT (SELECT ingestion_seq FROM batches WHERE status = 0 AND priority = p
                               ORDER BY ",
                    dispatch_order!(),
                    " LIMIT 1)
                       FROM (VALUES (0::smallint), (1::smallint), (2::smallint)) AS v(p))"
                ),
                &[],
            )
            .await
            .map_err(pg)?
            .get(0);
        let slot = slot(&tx, false).await?;
        Ok(QueueRecord {
            waiting,
            tenants,
            in_flight,
            recent,
            last_start: slot.last_start,
            paused: slot.paused,
            rate_interval: slot.rate_interval,
            oldest_waiting: oldest.map(Timestamp::from_micros),
        })
    }

    async fn pace(&self, since: Timestamp, limit: usize) -> Result<PaceRecord, StoreError> {
        let mut client = self.client().await?;
        let tx = snapshot(&mut client).await?;
        let waiting = waiting_counts(&tx).await?;
        let rows = match limit {
            0 => Vec::new(),
            _ => tx
                .query(
                    "SELECT started_at, priority, id FROM batches
                     WHERE started_at >= $1 ORDER BY started_at DESC LIMIT $2",
                    &[
                        &since.as_micros(),
                        &i64::try_from(limit).unwrap_or(i64::MAX),
                    ],
                )
                .await
                .map_err(pg)?,
        };
        let starts = rows
            .iter()
            .map(|r| {
                let priority = super::codec::priority_of(i64::from(r.get::<_, i16>(1)))?;
                Ok((Timestamp::from_micros(r.get(0)), priority, r.get(2)))
            })
            .collect::<Result<_, StoreError>>()?;
        let slot = slot(&tx, false).await?;
        Ok(PaceRecord {
            waiting,
            starts,
            paused: slot.paused,
            rate_interval: slot.rate_interval,
        })
    }

    async fn queue_place(
        &self,
        ingestion: Uuid,
        fairness: Fairness,
    ) -> Result<Option<QueuePlace>, StoreError> {
        let mut client = self.client().await?;
        let tx = snapshot(&mut client).await?;
        let Some(head) = tx
            .query_opt(
                "SELECT seq, priority, tenant FROM ingestions WHERE id = $1",
                &[&ingestion],
            )
            .await
            .map_err(pg)?
        else {
            return Ok(None);
        };
        let (seq, priority, tenant): (i64, i16, &str) = (head.get(0), head.get(1), head.get(2));
        let ahead = ahead_of(
            &tx,
            priority,
            seq,
            tenant,
            fairness,
            &mut Default::default(),
        )
        .await?;
        Ok(Some(place_context(&tx).await?.place(ahead)))
    }

    async fn events_after(
        &self,
        after: u64,
        ingestion: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        // Up to the feed: a group's events are visible a moment before they are durable (see
        // `writer`), and the feed moves only to durable ids.
        let ceiling = *self.events.borrow() as i64;
        let client = self.client().await?;
        let (after, limit) = (after as i64, limit as i64);
        let rows = match ingestion {
            None => {
                client
                    .query(
                        "SELECT id, at, body FROM events WHERE id > $1 AND id <= $3
                         ORDER BY id LIMIT $2",
                        &[&after, &limit, &ceiling],
                    )
                    .await
            }
            Some(id) => {
                client
                    .query(
                        "SELECT id, at, body FROM events WHERE ingestion_id = $1 AND id > $2
                         AND id <= $4 ORDER BY id LIMIT $3",
                        &[&id.to_string(), &after, &limit, &ceiling],
                    )
                    .await
            }
        }
        .map_err(pg)?;
        rows.into_iter()
            .map(|r| {
                let id: i64 = r.get(0);
                Ok(Event {
                    id: id as u64,
                    at: Timestamp::from_micros(r.get(1)),
                    body: serde_json::from_str(r.get::<_, &str>(2))
                        .map_err(|e| StoreError::Corrupt(format!("event {id}: {e}")))?,
                })
            })
            .collect()
    }

    fn event_feed(&self) -> watch::Receiver<u64> {
        self.events.clone()
    }

    /// Other replicas' writes reach the feed by NOTIFY, a moment after they commit: the
    /// counter itself is read instead.
    async fn latest_event(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        // Asked before every status read: prepared once per connection (one round trip).
        let statement = client.prepare_cached(LATEST_EVENT).await.map_err(pg)?;
        let row = client.query_one(&statement, &[]).await.map_err(pg)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn set_paused(&self, paused: bool, at: Timestamp) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = raw(&mut client).transaction().await.map_err(pg)?;
        let changed = tx
            .execute(
                "UPDATE dispatch_slot SET paused = $1 WHERE id = 1 AND paused != $1",
                &[&paused],
            )
            .await
            .map_err(pg)?
            > 0;
        let mut event = None;
        if changed {
            let body = match paused {
                true => EventBody::DispatchPaused {},
                false => EventBody::DispatchResumed {},
            };
            event = Some(append_event(&tx, at, &body).await?);
        }
        tx.commit().await.map_err(pg)?;
        self.published(event);
        Ok(changed)
    }

    async fn set_rate_interval(
        &self,
        interval: Option<Duration>,
        effective_ms: u64,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = raw(&mut client).transaction().await.map_err(pg)?;
        tx.execute(
            "UPDATE dispatch_slot SET rate_interval = $1 WHERE id = 1",
            &[&interval.map(micros)],
        )
        .await
        .map_err(pg)?;
        let event = append_event(
            &tx,
            at,
            &EventBody::RateChanged {
                rate_interval_ms: effective_ms,
            },
        )
        .await?;
        tx.commit().await.map_err(pg)?;
        self.published(Some(event));
        Ok(())
    }

    async fn housekeep(&self, now: Timestamp, keep: Retention) -> Result<Housekept, StoreError> {
        let events = keep.events.min(i64::MAX as u64) as i64;
        let before = |age: Duration| {
            now.as_micros()
                .saturating_sub(age.as_micros().min(i64::MAX as u128) as i64)
        };
        let (horizon, turns_horizon) = (before(keep.keys), before(keep.turns));
        let client = self.client().await?;
        // The newest event id from the counter (one row), not max(id) over the log.
        let events = client
            .execute(
                "DELETE FROM events WHERE id <= (SELECT last FROM event_serial WHERE id = 1) - $1",
                &[&events],
            )
            .await
            .map_err(pg)?;
        let keys = client
            .execute(
                "DELETE FROM idempotency_keys WHERE created_at < $1",
                &[&horizon],
            )
            .await
            .map_err(pg)?;
        // A claim that starts the tenant meanwhile moves its last start past the horizon, and
        // the row is then kept (the condition is checked again once its lock is had).
        let turns = client
            .execute(
                "DELETE FROM tenant_starts s WHERE last_start < $1 AND NOT EXISTS (
                   SELECT 1 FROM tenant_depth d
                   WHERE d.priority = s.priority AND d.tenant = s.tenant)",
                &[&turns_horizon],
            )
            .await
            .map_err(pg)?;
        Ok(Housekept {
            events,
            keys,
            turns,
        })
    }

    async fn check(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        let version: i32 = client
            .query_one("SELECT version FROM sluice_schema", &[])
            .await
            .map_err(pg)?
            .get(0);
        if version as usize != MIGRATIONS.len() {
            return Err(StoreError::Migration(format!(
                "schema version {version}, this build expects {}",
                MIGRATIONS.len()
            )));
        }
        Ok(())
    }
}
