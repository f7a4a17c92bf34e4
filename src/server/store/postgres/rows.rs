//! Rows and codecs: how records, batches, events and keys are read and written.

use super::*;

/// The newest committed event id.
pub(super) const LATEST_EVENT: &str = "SELECT last FROM event_serial WHERE id = 1";

/// The newest event id, durable once this statement returns: its commit writes (a flush mark)
/// and so flushes the WAL past every commit its snapshot saw, including a writer's group
/// committed without a flush (see `writer`). What the feed may move to from a read.
pub(super) const DURABLE_LATEST_EVENT: &str = "WITH mark AS (
           INSERT INTO flush_marks (backend) VALUES (pg_backend_pid())
           ON CONFLICT (backend) DO UPDATE SET flushes = flush_marks.flushes + 1)
         SELECT last FROM event_serial WHERE id = 1";

pub(super) async fn durable_latest_event<C: GenericClient>(client: &C) -> Result<u64, StoreError> {
    let row = client
        .query_one(DURABLE_LATEST_EVENT, &[])
        .await
        .map_err(pg)?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// Append an event with the next id (locking `event_serial` to commit) and notify every replica
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
            "WITH next AS (UPDATE event_serial SET last = last + 1 WHERE id = 1 RETURNING last)
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

pub(super) use crate::server::store::codec;

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

pub(super) const HEAD: &str =
    "SELECT seq, id, priority, created_at, cancelled_at, tenant FROM ingestions";

pub(super) async fn ingestion_of<C: GenericClient>(
    client: &C,
    head: &Row,
) -> Result<IngestionRecord, StoreError> {
    Ok(IngestionRecord {
        id: head.get(1),
        priority: priority_of(head.get(2))?,
        tenant: head.get(5),
        created_at: Timestamp::from_micros(head.get(3)),
        cancelled_at: head.get::<_, Option<i64>>(4).map(Timestamp::from_micros),
        batches: batches_of(client, head.get(0), 0..i32::MAX as u32).await?,
    })
}

/// Ingestion `seq`'s batches at `positions`, in split order.
pub(super) async fn batches_of<C: GenericClient>(
    client: &C,
    seq: i64,
    positions: std::ops::Range<u32>,
) -> Result<Vec<BatchRecord>, StoreError> {
    let (from, to) = (
        positions.start as i32,
        positions.end.min(i32::MAX as u32) as i32,
    );
    let rows = client
        .query(
            "SELECT id, position, ids, status, attempt, started_at, completed_at, results, error,
                    retry_at
             FROM batches WHERE ingestion_seq = $1 AND position >= $2 AND position < $3
             ORDER BY position",
            &[&seq, &from, &to],
        )
        .await
        .map_err(pg)?;
    rows.into_iter()
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
        .collect()
}

/// The ingestions `selection` picks, summarized (see `Store::summaries`): the counts and the
/// last completion from the ingestion's row, its first batch not completed from three index
/// probes, the window of batches by primary key, and its place.
pub(super) async fn summaries<C: GenericClient>(
    client: &C,
    selection: &Selection,
    window: u32,
    fairness: Fairness,
) -> Result<Vec<SummaryRecord>, StoreError> {
    let (sql, bound) = codec::selection_query(
        "seq, id, priority, created_at, cancelled_at,
         waiting, running, completed, cancelled, failed, id_count, last_completed_at, tenant",
        selection,
        |n| format!("${n}"),
    );
    let values: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> = bound
        .into_iter()
        .map(|b| -> Box<dyn tokio_postgres::types::ToSql + Sync + Send> {
            match b {
                codec::Bound::Id(id) => Box::new(id),
                codec::Bound::Rank(n) => Box::new(n as i16),
                codec::Bound::Count(n) => Box::new(n),
            }
        })
        .collect();
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
        .iter()
        .map(|v| v.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let heads = client.query(&sql, &params).await.map_err(pg)?;
    let (mut shared, mut queues) = (None, codec::TenantQueues::default());
    let mut out = Vec::with_capacity(heads.len());
    for head in &heads {
        let (seq, priority): (i64, i16) = (head.get(0), head.get(2));
        let count = |i: usize| head.get::<_, i32>(i).max(0) as u64;
        let counts = StatusCounts {
            waiting: count(5),
            running: count(6),
            completed: count(7),
            cancelled: count(8),
            failed: count(9),
        };
        let total = counts.total() as u32;
        // The first batch not completed: the first of each other status, from its index.
        // And when the latest of its running batches started, from the same probe.
        let (mut frontier, mut running_since) = (total, None);
        for (n, sql) in [
            (
                counts.waiting,
                "SELECT MIN(position), NULL::bigint FROM batches
                 WHERE priority = $1 AND ingestion_seq = $2 AND status = 0",
            ),
            (
                counts.running,
                "SELECT MIN(position), MAX(started_at) FROM batches
                 WHERE priority = $1 AND ingestion_seq = $2 AND status = 1",
            ),
            (
                counts.cancelled + counts.failed,
                "SELECT MIN(position), NULL::bigint FROM batches
                 WHERE priority = $1 AND ingestion_seq = $2 AND status >= 3",
            ),
        ] {
            if n == 0 {
                continue;
            }
            let row = client
                .query_one(sql, &[&priority, &seq])
                .await
                .map_err(pg)?;
            let (first, started): (Option<i32>, Option<i64>) = (row.get(0), row.get(1));
            frontier = frontier.min(first.map_or(total, |p| p as u32));
            running_since = running_since.or(started.map(Timestamp::from_micros));
        }
        let shown = match selection.from {
            Some(first) => page_window(first, total, window),
            None => summary_window(frontier, total, window),
        };
        let first_shown = shown.start;
        // Where a page begins past its first waiting batch, how many wait before it (by
        // index; what its predictions count from).
        let waiting_before_shown = match counts.waiting > 0 && first_shown > frontier {
            false => 0,
            true => client
                .query_one(
                    "SELECT COUNT(*) FROM batches
                     WHERE priority = $1 AND ingestion_seq = $2 AND status = 0 AND position < $3",
                    &[&priority, &seq, &(first_shown as i32)],
                )
                .await
                .map_err(pg)?
                .get::<_, i64>(0)
                .max(0) as u64,
        };
        let batches = batches_of(client, seq, shown).await?;
        let place = match counts.waiting + counts.running {
            0 => None,
            _ => {
                let context = match shared {
                    Some(context) => context,
                    None => *shared.insert(place_context(client).await?),
                };
                let tenant: &str = head.get(12);
                let ahead = ahead_of(client, priority, seq, tenant, fairness, &mut queues).await?;
                Some(context.place(ahead))
            }
        };
        out.push(SummaryRecord {
            id: head.get(1),
            priority: priority_of(priority)?,
            tenant: head.get(12),
            created_at: Timestamp::from_micros(head.get(3)),
            cancelled_at: head.get::<_, Option<i64>>(4).map(Timestamp::from_micros),
            counts,
            id_count: head.get::<_, i64>(10).max(0) as u64,
            last_completed_at: head.get::<_, Option<i64>>(11).map(Timestamp::from_micros),
            running_since,
            first_shown,
            batches,
            waiting_before_shown,
            place,
        });
    }
    Ok(out)
}

/// What every queue place shares (`PlaceContext`): the slot, and when the batch in flight
/// started.
pub(super) async fn place_context<C: GenericClient>(
    client: &C,
) -> Result<PlaceContext, StoreError> {
    let in_flight_since: Option<i64> = client
        .query_one("SELECT MAX(started_at) FROM batches WHERE status = 1", &[])
        .await
        .map_err(pg)?
        .get(0);
    let slot = slot(client, false).await?;
    Ok(PlaceContext {
        paused: slot.paused,
        rate_interval: slot.rate_interval,
        last_start: slot.last_start,
        in_flight_since: in_flight_since.map(Timestamp::from_micros),
    })
}

/// Waiting batches dispatched before ingestion `seq` of `priority` (`AHEAD`).
pub(super) async fn ahead_of<C: GenericClient>(
    client: &C,
    priority: i16,
    seq: i64,
    tenant: &str,
    fairness: Fairness,
    queues: &mut codec::TenantQueues,
) -> Result<Ahead, StoreError> {
    if fairness == Fairness::Tenant {
        return turns_of(client, priority, seq, tenant, queues)
            .await
            .map(Ahead::Turns);
    }
    let (block, first) = codec::queue_block_bounds(seq);
    let ahead: i64 = client
        .query_one(AHEAD, &[&priority, &seq, &block, &first])
        .await
        .map_err(pg)?
        .get(0);
    Ok(Ahead::Fifo(ahead as u64))
}

/// What round-robin predictions need: see the SQLite store's `turns_of`.
async fn turns_of<C: GenericClient>(
    client: &C,
    priority: i16,
    seq: i64,
    tenant: &str,
    queues: &mut codec::TenantQueues,
) -> Result<Turns, StoreError> {
    let counts = client
        .query_one(
            "SELECT (SELECT COALESCE(SUM(waiting), 0) FROM queue_depth WHERE priority < $1)::bigint,
                    (SELECT COALESCE(SUM(waiting), 0) FROM ingestions
                     WHERE priority = $1 AND tenant = $2 AND waiting > 0 AND seq < $3)::bigint",
            &[&priority, &tenant, &seq],
        )
        .await
        .map_err(pg)?;
    let (higher, own): (i64, i64) = (counts.get(0), counts.get(1));
    let slot = queues
        .get_mut(priority as usize)
        .ok_or_else(|| StoreError::Corrupt(format!("priority {priority}")))?;
    let tenants = match slot {
        Some(tenants) => tenants,
        None => slot.insert(tenant_queues(client, priority).await?),
    };
    Ok(Turns::new(
        higher.max(0) as u64,
        own.max(0) as u64,
        tenant,
        tenants,
    ))
}

/// The tenants with waiting work at `priority`, with their turns.
async fn tenant_queues<C: GenericClient>(
    client: &C,
    priority: i16,
) -> Result<Vec<TenantQueue>, StoreError> {
    let rows = client
        .query(
            "SELECT d.tenant, d.waiting, s.last_start,
                    (SELECT MIN(i.seq) FROM ingestions i
                     WHERE i.priority = d.priority AND i.tenant = d.tenant AND i.waiting > 0)
             FROM tenant_depth d
             LEFT JOIN tenant_starts s ON s.priority = d.priority AND s.tenant = d.tenant
             WHERE d.priority = $1",
            &[&priority],
        )
        .await
        .map_err(pg)?;
    let rank = i64::from(priority);
    Ok(rows
        .into_iter()
        .map(|r| codec::tenant_queue(rank, r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
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

/// `n` batches of ingestion `seq` went from status `from` to `to` (codes of `store::codec`)
/// at `at`: the ingestion's counts move (and its last completion, if they completed), and
/// where waiting work changed, its priority's and its block's (`waiting_moved`). Every status
/// change after an insert goes through here (the writer counts what it inserts itself, from
/// arrays).
pub(super) async fn moved<C: GenericClient>(
    client: &C,
    seq: i64,
    from: i64,
    to: i64,
    n: i64,
    at: Timestamp,
) -> Result<(), StoreError> {
    let waiting = codec::waiting_change(from, to, n);
    let (from, to, count) = (from as i32, to as i32, n as i32);
    let row = client
        .query_one(
            "UPDATE ingestions SET
               waiting   = waiting   + $3 * (($2 = 0)::int - ($1 = 0)::int),
               running   = running   + $3 * (($2 = 1)::int - ($1 = 1)::int),
               completed = completed + $3 * (($2 = 2)::int - ($1 = 2)::int),
               cancelled = cancelled + $3 * (($2 = 3)::int - ($1 = 3)::int),
               failed    = failed    + $3 * (($2 = 4)::int - ($1 = 4)::int),
               last_completed_at = CASE WHEN $2 = 2
                   THEN GREATEST(last_completed_at, $5) ELSE last_completed_at END
             WHERE seq = $4 RETURNING priority, tenant",
            &[&from, &to, &count, &seq, &at.as_micros()],
        )
        .await
        .map_err(pg)?;
    waiting_moved(client, row.get(0), row.get(1), seq, waiting).await
}

/// Attempt `attempt` of `batch_id` ended at `at` with `outcome` (`completed`, `retrying`,
/// `failed`), its error and the downstream's status, if any.
pub(super) async fn attempt_ended<C: GenericClient>(
    client: &C,
    batch_id: Uuid,
    attempt: u32,
    at: Timestamp,
    outcome: &str,
    error: Option<&str>,
    status_code: Option<u16>,
) -> Result<(), StoreError> {
    let status_code = status_code.map(i32::from);
    client
        .execute(
            "UPDATE attempts SET finished_at = $1, outcome = $2, error = $3, status_code = $6
             WHERE batch_id = $4 AND attempt = $5",
            &[
                &at.as_micros(),
                &outcome,
                &error,
                &batch_id,
                &(attempt as i32),
                &status_code,
            ],
        )
        .await
        .map_err(pg)?;
    Ok(())
}

/// Ingestion `seq` (of `priority` and `tenant`) has `delta` more waiting batches: count them
/// in its priority (`queue_depth`), its block (`queue_blocks`) and its tenant's
/// (`tenant_depth`); rows of the last two exist while non-zero. Locks the priority's row
/// before the others, as the writer does (no deadlock).
pub(super) async fn waiting_moved<C: GenericClient>(
    client: &C,
    priority: i16,
    tenant: &str,
    seq: i64,
    delta: i64,
) -> Result<(), StoreError> {
    if delta == 0 {
        return Ok(());
    }
    let block = codec::queue_block(seq);
    client
        .execute(
            "UPDATE queue_depth SET waiting = waiting + $1 WHERE priority = $2",
            &[&delta, &priority],
        )
        .await
        .map_err(pg)?;
    let (priorities, blocks) = (vec![priority], vec![block]);
    client
        .execute(ADD_BLOCKS, &[&priorities, &blocks, &vec![delta]])
        .await
        .map_err(pg)?;
    let tenants = vec![tenant];
    client
        .execute(ADD_TENANT_DEPTH, &[&priorities, &tenants, &vec![delta]])
        .await
        .map_err(pg)?;
    // Only fewer waiting batches can empty a row.
    if delta < 0 {
        client
            .execute(DROP_EMPTY_BLOCKS, &[&priorities, &blocks])
            .await
            .map_err(pg)?;
        client
            .execute(DROP_EMPTY_TENANTS, &[&priorities, &tenants])
            .await
            .map_err(pg)?;
    }
    Ok(())
}

/// Add waiting batches to tenants: `$1` priorities, `$2` tenants, `$3` deltas, one entry per
/// (priority, tenant), in that order (rows are locked in it). Then `DROP_EMPTY_TENANTS`.
pub(super) const ADD_TENANT_DEPTH: &str =
    "INSERT INTO tenant_depth AS d (priority, tenant, waiting)
         SELECT * FROM unnest($1::smallint[], $2::text[], $3::bigint[])
         ON CONFLICT (priority, tenant) DO UPDATE SET waiting = d.waiting + EXCLUDED.waiting";

/// A tenant's row exists only while it has waiting batches.
pub(super) const DROP_EMPTY_TENANTS: &str = "DELETE FROM tenant_depth
         WHERE waiting = 0 AND (priority, tenant) IN (SELECT * FROM unnest($1::smallint[], $2::text[]))";

/// Add waiting batches to blocks: `$1` priorities, `$2` blocks, `$3` deltas, one entry per
/// block. Then `DROP_EMPTY_BLOCKS` with the same first two.
pub(super) const ADD_BLOCKS: &str = "INSERT INTO queue_blocks AS q (priority, block, waiting)
         SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bigint[])
         ON CONFLICT (priority, block) DO UPDATE SET waiting = q.waiting + EXCLUDED.waiting";

/// A block row exists only while it has waiting batches.
pub(super) const DROP_EMPTY_BLOCKS: &str = "DELETE FROM queue_blocks
         WHERE waiting = 0 AND (priority, block) IN (SELECT * FROM unnest($1::smallint[], $2::bigint[]))";

/// Waiting batches dispatched before ingestion `$2` (of priority `$1`, in block `$3`, which
/// starts at seq `$4`): every higher priority from its counter, then this priority's earlier
/// blocks, then the earlier ingestions of its own block. O(backlog / 128 + 128) rows.
pub(super) const AHEAD: &str =
    "SELECT (SELECT COALESCE(SUM(waiting), 0) FROM queue_depth WHERE priority < $1)::bigint
          + (SELECT COALESCE(SUM(waiting), 0) FROM queue_blocks WHERE priority = $1 AND block < $3)::bigint
          + (SELECT COALESCE(SUM(waiting), 0) FROM ingestions
             WHERE seq >= $4 AND seq < $2 AND priority = $1)::bigint";

/// The ingestion's last event, if nothing of it is left to run (see `ending_event`).
pub(super) async fn ending<C: GenericClient>(
    client: &C,
    seq: i64,
    ingestion_id: Uuid,
) -> Result<Option<EventBody>, StoreError> {
    let row = client
        .query_one(
            "SELECT waiting, running, completed, cancelled, failed FROM ingestions WHERE seq = $1",
            &[&seq],
        )
        .await
        .map_err(pg)?;
    let count = |i: usize| row.get::<_, i32>(i) as u64;
    let counts = StatusCounts {
        waiting: count(0),
        running: count(1),
        completed: count(2),
        cancelled: count(3),
        failed: count(4),
    };
    Ok(ending_event(ingestion_id, counts))
}
