//! Rows and codecs: how records, batches, events and keys are read and written.

use super::*;

/// The newest committed event id.
pub(super) const LATEST_EVENT: &str = "SELECT last FROM event_seq WHERE id = 1";

pub(super) async fn latest_event<C: GenericClient>(client: &C) -> Result<u64, StoreError> {
    let row = client.query_one(LATEST_EVENT, &[]).await.map_err(pg)?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// Append an event with the next id (locking `event_seq` to commit) and notify every replica
/// on commit. Returns its id.
pub(super) async fn append_event<C: GenericClient>(
    client: &C,
    at: Timestamp,
    body: &EventBody,
) -> Result<u64, StoreError> {
    let json =
        serde_json::to_string(body).map_err(|e| StoreError::Corrupt(format!("event: {e}")))?;
    let ingestion = body
        .ingestion_id()
        .map(|id| id.to_string())
        .unwrap_or_default();
    let row = client
        .query_one(
            "WITH next AS (UPDATE event_seq SET last = last + 1 WHERE id = 1 RETURNING last)
             INSERT INTO events (id, at, ingestion_id, body)
             SELECT last, $1, $2, $3 FROM next
             RETURNING id",
            &[&at.as_micros(), &ingestion, &json],
        )
        .await
        .map_err(pg)?;
    let id: i64 = row.get(0);
    client
        .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &id.to_string()])
        .await
        .map_err(pg)?;
    Ok(id as u64)
}

use crate::server::store::codec;

/// The shared code (`store::codec`) in this schema's `smallint`.
pub(super) const FAILED: i16 = codec::FAILED as i16;

pub(super) fn ids_of(ids: Vec<i64>) -> Vec<u64> {
    ids.into_iter().map(|id| id as u64).collect()
}

pub(super) fn priority_of(rank: i16) -> Result<Priority, StoreError> {
    codec::priority_of(i64::from(rank))
}

pub(super) fn results_of(json: Option<serde_json::Value>) -> Result<Vec<IdResult>, StoreError> {
    match json {
        Some(v) => serde_json::from_value(v)
            .map_err(|e| StoreError::Corrupt(format!("batch results: {e}"))),
        None => Ok(Vec::new()),
    }
}

pub(super) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The one row beside the queue, locked (`FOR UPDATE`) or not.
pub(super) struct Slot {
    pub(super) last_start: Option<Timestamp>,
    pub(super) paused: bool,
    pub(super) rate_interval: Option<Duration>,
}

pub(super) async fn slot<C: GenericClient>(client: &C, lock: bool) -> Result<Slot, StoreError> {
    let sql = format!(
        "SELECT last_start, paused, rate_interval FROM dispatch_slot WHERE id = 1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = client.query_one(&sql, &[]).await.map_err(pg)?;
    Ok(Slot {
        last_start: row.get::<_, Option<i64>>(0).map(Timestamp::from_micros),
        paused: row.get(1),
        rate_interval: row
            .get::<_, Option<i64>>(2)
            .map(|us| Duration::from_micros(us.max(0) as u64)),
    })
}

pub(super) const HEAD: &str = "SELECT seq, id, priority, created_at, cancelled_at FROM ingestions";

pub(super) async fn ingestion_of<C: GenericClient>(
    client: &C,
    head: &Row,
) -> Result<IngestionRecord, StoreError> {
    let seq: i64 = head.get(0);
    let rows = client
        .query(
            "SELECT id, position, ids, status, attempt, started_at, completed_at, results, error,
                    retry_at
             FROM batches WHERE ingestion_seq = $1 ORDER BY position",
            &[&seq],
        )
        .await
        .map_err(pg)?;
    let batches = rows
        .into_iter()
        .map(|r| {
            let status = codec::batch_status(i64::from(r.get::<_, i16>(3)))?;
            Ok(BatchRecord {
                id: r.get(0),
                position: r.get::<_, i32>(1) as u32,
                ids: ids_of(r.get(2)),
                status,
                attempt: r.get::<_, i32>(4) as u32,
                started_at: r.get::<_, Option<i64>>(5).map(Timestamp::from_micros),
                completed_at: r.get::<_, Option<i64>>(6).map(Timestamp::from_micros),
                results: results_of(r.get(7))?,
                error: r.get(8),
                retry_at: r.get::<_, Option<i64>>(9).map(Timestamp::from_micros),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(IngestionRecord {
        id: head.get(1),
        priority: priority_of(head.get(2))?,
        created_at: Timestamp::from_micros(head.get(3)),
        cancelled_at: head.get::<_, Option<i64>>(4).map(Timestamp::from_micros),
        batches,
    })
}

/// Started batches chosen and ordered by `filter` (a fixed clause, never user input).
pub(super) async fn dispatches<C: GenericClient>(
    client: &C,
    filter: &str,
    limit: i64,
) -> Result<Vec<DispatchRecord>, StoreError> {
    let sql = format!(
        "SELECT b.id, i.id, b.priority, b.position, b.ids, b.attempt, b.started_at, b.completed_at
         FROM batches b JOIN ingestions i ON i.seq = b.ingestion_seq {filter} LIMIT $1"
    );
    let rows = client.query(&sql, &[&limit]).await.map_err(pg)?;
    rows.into_iter()
        .map(|r| {
            Ok(DispatchRecord {
                batch_id: r.get(0),
                ingestion_id: r.get(1),
                priority: priority_of(r.get(2))?,
                position: r.get::<_, i32>(3) as u32,
                ids: ids_of(r.get(4)),
                attempt: r.get::<_, i32>(5) as u32,
                started_at: Timestamp::from_micros(r.get(6)),
                completed_at: r.get::<_, Option<i64>>(7).map(Timestamp::from_micros),
            })
        })
        .collect()
}

/// A batch went back to waiting (a retry, or an operator's requeue): count it in its priority.
pub(super) async fn one_more_waiting<C: GenericClient>(
    client: &C,
    batch_id: Uuid,
) -> Result<(), StoreError> {
    client
        .execute(
            "UPDATE queue_depth SET waiting = waiting + 1
             WHERE priority = (SELECT priority FROM batches WHERE id = $1)",
            &[&batch_id],
        )
        .await
        .map_err(pg)?;
    Ok(())
}

/// The ingestion's last event, if nothing of it is left to run (see `ending_event`).
pub(super) async fn ending<C: GenericClient>(
    client: &C,
    seq: i64,
    ingestion_id: Uuid,
) -> Result<Option<EventBody>, StoreError> {
    let row = client
        .query_one(
            "SELECT COUNT(*) FILTER (WHERE status = 0), COUNT(*) FILTER (WHERE status = 1),
                    COUNT(*) FILTER (WHERE status = 2), COUNT(*) FILTER (WHERE status = 3),
                    COUNT(*) FILTER (WHERE status = 4)
             FROM batches WHERE ingestion_seq = $1",
            &[&seq],
        )
        .await
        .map_err(pg)?;
    let count = |i: usize| row.get::<_, i64>(i) as u64;
    let counts = StatusCounts {
        waiting: count(0),
        running: count(1),
        completed: count(2),
        cancelled: count(3),
        failed: count(4),
    };
    Ok(ending_event(ingestion_id, counts))
}
