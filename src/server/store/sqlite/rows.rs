//! Rows and codecs: how records, batches, events and keys are read and written.

use super::*;
use crate::server::store::codec;

pub(super) use crate::server::store::codec::{
    batch_status, priority_of, queue_block, queue_block_bounds, tenant_queue, waiting_change,
    TenantQueues, CANCELLED, COMPLETED, FAILED, TRIGGERED, WAITING,
};

/// `n` batches of ingestion `seq` went from status `from` to `to` at `at`: the ingestion's
/// counts move (and its last completion, if they completed), and where waiting work changed,
/// its priority's and its block's (`waiting_moved`). Every status change after an insert goes
/// through here.
pub(super) fn moved(
    conn: &Connection,
    seq: i64,
    from: i64,
    to: i64,
    n: i64,
    at: Timestamp,
) -> Result<(), StoreError> {
    let (priority, tenant): (i64, String) = conn
        .prepare_cached(
            "UPDATE ingestions SET
               waiting   = waiting   + ?3 * ((?2 = 0) - (?1 = 0)),
               running   = running   + ?3 * ((?2 = 1) - (?1 = 1)),
               completed = completed + ?3 * ((?2 = 2) - (?1 = 2)),
               cancelled = cancelled + ?3 * ((?2 = 3) - (?1 = 3)),
               failed    = failed    + ?3 * ((?2 = 4) - (?1 = 4)),
               last_completed_at = CASE WHEN ?2 = 2
                   THEN MAX(COALESCE(last_completed_at, ?5), ?5) ELSE last_completed_at END
             WHERE seq = ?4 RETURNING priority, tenant",
        )
        .and_then(|mut st| {
            st.query_row(params![from, to, n, seq, at.as_micros()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
        })
        .map_err(unavailable)?;
    waiting_moved(conn, priority, &tenant, seq, waiting_change(from, to, n))
}

/// Attempt `attempt` of `batch_id` ended at `at` with `outcome` (`completed`, `retrying`,
/// `failed`), its error and the downstream's status, if any.
pub(super) fn attempt_ended(
    conn: &Connection,
    batch_id: Uuid,
    attempt: u32,
    at: Timestamp,
    outcome: &str,
    error: Option<&str>,
    status_code: Option<u16>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE attempts SET finished_at = ?1, outcome = ?2, error = ?3, status_code = ?6
         WHERE batch_id = ?4 AND attempt = ?5",
    )
    .and_then(|mut st| {
        st.execute(params![
            at.as_micros(),
            outcome,
            error,
            batch_id.to_string(),
            attempt,
            status_code
        ])
    })
    .map_err(unavailable)?;
    Ok(())
}

/// Ingestion `seq` (of `priority` and `tenant`) has `delta` more waiting batches: count them
/// in its priority (`queue_depth`), its block (`queue_blocks`) and its tenant's
/// (`tenant_depth`); rows of the last two exist while non-zero.
pub(super) fn waiting_moved(
    conn: &Connection,
    priority: i64,
    tenant: &str,
    seq: i64,
    delta: i64,
) -> Result<(), StoreError> {
    if delta == 0 {
        return Ok(());
    }
    let block = queue_block(seq);
    conn.prepare_cached("UPDATE queue_depth SET waiting = waiting + ?1 WHERE priority = ?2")
        .and_then(|mut st| st.execute([delta, priority]))
        .map_err(unavailable)?;
    conn.prepare_cached(
        "INSERT INTO queue_blocks (priority, block, waiting) VALUES (?1, ?2, ?3)
         ON CONFLICT (priority, block) DO UPDATE SET waiting = waiting + excluded.waiting",
    )
    .and_then(|mut st| st.execute([priority, block, delta]))
    .map_err(unavailable)?;

    conn.prepare_cached(
        "INSERT INTO tenant_depth (priority, tenant, waiting) VALUES (?1, ?2, ?3)
         ON CONFLICT (priority, tenant) DO UPDATE SET waiting = waiting + excluded.waiting",
    )
    .and_then(|mut st| st.execute(params![priority, tenant, delta]))
    .map_err(unavailable)?;
    // Only fewer waiting batches can empty a row.
    if delta < 0 {
        conn.prepare_cached(
            "DELETE FROM queue_blocks WHERE priority = ?1 AND block = ?2 AND waiting = 0",
        )
        .and_then(|mut st| st.execute([priority, block]))
        .map_err(unavailable)?;
        conn.prepare_cached(
            "DELETE FROM tenant_depth WHERE priority = ?1 AND tenant = ?2 AND waiting = 0",
        )
        .and_then(|mut st| st.execute(params![priority, tenant]))
        .map_err(unavailable)?;
    }
    Ok(())
}

/// Waiting batches dispatched before ingestion `?2` (of priority `?1`, in block `?3`, which
/// starts at seq `?4`): every higher priority from its counter, then this priority's earlier
/// blocks, then the earlier ingestions of its own block. O(backlog / 128 + 128) rows.
pub(super) const AHEAD: &str =
    "SELECT (SELECT COALESCE(SUM(waiting), 0) FROM queue_depth WHERE priority < ?1)
          + (SELECT COALESCE(SUM(waiting), 0) FROM queue_blocks WHERE priority = ?1 AND block < ?3)
          + (SELECT COALESCE(SUM(waiting), 0) FROM ingestions
             WHERE seq >= ?4 AND seq < ?2 AND priority = ?1)";

/// The ingestion's last event, if nothing of it is left to run (see `ending_event`).
pub(super) fn ending(
    conn: &Connection,
    seq: i64,
    ingestion_id: Uuid,
) -> Result<Option<EventBody>, StoreError> {
    let counts = conn
        .prepare_cached(
            "SELECT waiting, running, completed, cancelled, failed FROM ingestions WHERE seq = ?1",
        )
        .and_then(|mut st| {
            st.query_row([seq], |r| {
                Ok(StatusCounts {
                    waiting: r.get(0)?,
                    running: r.get(1)?,
                    completed: r.get(2)?,
                    cancelled: r.get(3)?,
                    failed: r.get(4)?,
                })
            })
        })
        .map_err(unavailable)?;
    Ok(ending_event(ingestion_id, counts))
}

/// Forget expired keys; then answer for a key seen before, or record it for `ingestion`.
pub(super) fn remember_key(
    conn: &Connection,
    key: &IdempotencyKey,
    ingestion: &NewIngestionRecord,
) -> Result<Option<Inserted>, StoreError> {
    let now = ingestion.created_at.as_micros();
    let horizon = now.saturating_sub(IDEMPOTENCY_RETENTION.as_micros() as i64);
    conn.prepare_cached("DELETE FROM idempotency_keys WHERE created_at < ?1")
        .and_then(|mut st| st.execute([horizon]))
        .map_err(unavailable)?;
    match seen_key(conn, key, ingestion.created_at)? {
        Some(seen) => Ok(Some(seen)),
        None => {
            conn.prepare_cached(
                "INSERT INTO idempotency_keys (key, fingerprint, ingestion_id, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    key.key,
                    key.fingerprint,
                    ingestion.id.to_string(),
                    now
                ])
            })
            .map_err(unavailable)?;
            Ok(None)
        }
    }
}

/// How a key seen within the retention window answers, if it was seen.
pub(super) fn seen_key(
    conn: &Connection,
    key: &IdempotencyKey,
    now: Timestamp,
) -> Result<Option<Inserted>, StoreError> {
    let horizon = now
        .as_micros()
        .saturating_sub(IDEMPOTENCY_RETENTION.as_micros() as i64);
    let seen: Option<(String, String)> = conn
        .prepare_cached(
            "SELECT fingerprint, ingestion_id FROM idempotency_keys
             WHERE key = ?1 AND created_at >= ?2",
        )
        .and_then(|mut st| {
            st.query_row(params![key.key, horizon], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(unavailable)?;
    Ok(match seen {
        Some((fingerprint, id)) if fingerprint == key.fingerprint => {
            Some(Inserted::Replayed(uuid_of(&id)?))
        }
        Some(_) => Some(Inserted::KeyConflict),
        None => None,
    })
}

/// The one row beside the queue: last start, pause flag, run-time rate interval.
pub(super) struct Slot {
    pub(super) last_start: Option<Timestamp>,
    pub(super) paused: bool,
    pub(super) rate_interval: Option<Duration>,
}

pub(super) fn slot(conn: &Connection) -> Result<Slot, StoreError> {
    conn.prepare_cached("SELECT last_start, paused, rate_interval FROM dispatch_slot WHERE id = 1")
        .and_then(|mut st| {
            st.query_row([], |r| {
                Ok(Slot {
                    last_start: r.get::<_, Option<i64>>(0)?.map(Timestamp::from_micros),
                    paused: r.get(1)?,
                    rate_interval: r
                        .get::<_, Option<i64>>(2)?
                        .map(|us| Duration::from_micros(us.max(0) as u64)),
                })
            })
        })
        .map_err(unavailable)
}

/// An ingestion's own row; `HEAD` selects it.
pub(super) struct Head {
    pub(super) seq: i64,
    pub(super) id: String,
    pub(super) priority: i64,
    pub(super) created_at: i64,
    pub(super) cancelled_at: Option<i64>,
    pub(super) tenant: String,
}

pub(super) const HEAD: &str =
    "SELECT seq, id, priority, created_at, cancelled_at, tenant FROM ingestions";

impl Head {
    pub(super) fn of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            seq: r.get(0)?,
            id: r.get(1)?,
            priority: r.get(2)?,
            created_at: r.get(3)?,
            cancelled_at: r.get(4)?,
            tenant: r.get(5)?,
        })
    }
}

/// An ingestion's record from its head row and its batches.
pub(super) fn ingestion_of(conn: &Connection, head: Head) -> Result<IngestionRecord, StoreError> {
    Ok(IngestionRecord {
        id: uuid_of(&head.id)?,
        priority: priority_of(head.priority)?,
        tenant: head.tenant,
        created_at: Timestamp::from_micros(head.created_at),
        cancelled_at: head.cancelled_at.map(Timestamp::from_micros),
        batches: batches_of(conn, head.seq, 0..u32::MAX)?,
    })
}

/// Ingestion `seq`'s batches at `positions`, in split order.
pub(super) fn batches_of(
    conn: &Connection,
    seq: i64,
    positions: std::ops::Range<u32>,
) -> Result<Vec<BatchRecord>, StoreError> {
    let mut st = conn
        .prepare_cached(
            "SELECT id, position, ids, status, attempt, started_at, completed_at, results, error,
                    retry_at
             FROM batches WHERE ingestion_seq = ?1 AND position >= ?2 AND position < ?3
             ORDER BY position",
        )
        .map_err(unavailable)?;
    let rows = st
        .query_map(params![seq, positions.start, positions.end], |r| {
            Ok(BatchRow {
                id: r.get(0)?,
                position: r.get(1)?,
                ids: r.get(2)?,
                status: r.get(3)?,
                attempt: r.get(4)?,
                started_at: r.get(5)?,
                completed_at: r.get(6)?,
                results: r.get(7)?,
                error: r.get(8)?,
                retry_at: r.get(9)?,
            })
        })
        .map_err(unavailable)?;
    rows.map(|row| row.map_err(unavailable)?.into_record())
        .collect()
}

/// The ingestions `selection` picks, summarized (see `Store::summaries`): the counts and the
/// last completion from the ingestion's row, its first batch not completed from three index
/// probes, the window of batches by primary key, and its place.
pub(super) fn summaries(
    conn: &Connection,
    selection: &Selection,
    window: u32,
    fairness: Fairness,
) -> Result<Vec<SummaryRecord>, StoreError> {
    type Row = (
        i64,
        String,
        i64,
        i64,
        Option<i64>,
        [i64; 5],
        i64,
        Option<i64>,
        String,
    );
    let (sql, bound) = codec::selection_query(
        "seq, id, priority, created_at, cancelled_at,
         waiting, running, completed, cancelled, failed, id_count, last_completed_at, tenant",
        selection,
        |n| format!("?{n}"),
    );
    let values: Vec<rusqlite::types::Value> = bound
        .into_iter()
        .map(|b| match b {
            codec::Bound::Id(id) => id.to_string().into(),
            codec::Bound::Rank(n) | codec::Bound::Count(n) => n.into(),
        })
        .collect();
    let rows: Vec<Row> = conn
        .prepare_cached(&sql)
        .and_then(|mut st| {
            st.query_map(rusqlite::params_from_iter(values), |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    [r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?],
                    r.get(10)?,
                    r.get(11)?,
                    r.get(12)?,
                ))
            })?
            .collect()
        })
        .map_err(unavailable)?;
    // What every place shares, read once if any ingestion has work left.
    let (mut shared, mut queues) = (None, TenantQueues::default());
    let mut out = Vec::with_capacity(rows.len());
    for (
        seq,
        id,
        priority,
        created_at,
        cancelled_at,
        counts,
        id_count,
        last_completed_at,
        tenant,
    ) in rows
    {
        let [waiting, running, completed, cancelled, failed] = counts.map(|c| c.max(0) as u64);
        let counts = StatusCounts {
            waiting,
            running,
            completed,
            cancelled,
            failed,
        };
        let total = counts.total() as u32;
        // The first batch not completed: the first of each other status, from its index
        // (named: without statistics the planner would walk the primary key from position 0).
        // And when the latest of its running batches started, from the same probe.
        let (mut frontier, mut running_since) = (total, None);
        for (count, sql) in [
            (
                waiting,
                "SELECT MIN(position), NULL FROM batches INDEXED BY batches_waiting
                 WHERE priority = ?1 AND ingestion_seq = ?2 AND status = 0",
            ),
            (
                running,
                "SELECT MIN(position), MAX(started_at) FROM batches INDEXED BY batches_in_flight
                 WHERE priority = ?1 AND ingestion_seq = ?2 AND status = 1",
            ),
            (
                cancelled + failed,
                "SELECT MIN(position), NULL FROM batches INDEXED BY batches_stopped
                 WHERE ingestion_seq = ?2 AND status >= 3",
            ),
        ] {
            if count == 0 {
                continue;
            }
            let (first, started): (Option<i64>, Option<i64>) = conn
                .prepare_cached(sql)
                .and_then(|mut st| st.query_row([priority, seq], |r| Ok((r.get(0)?, r.get(1)?))))
                .map_err(unavailable)?;
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
        let waiting_before_shown = match waiting > 0 && first_shown > frontier {
            false => 0,
            true => conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM batches INDEXED BY batches_waiting
                     WHERE priority = ?1 AND ingestion_seq = ?2 AND status = 0 AND position < ?3",
                )
                .and_then(|mut st| {
                    st.query_row(params![priority, seq, first_shown], |r| r.get::<_, i64>(0))
                })
                .map_err(unavailable)?
                .max(0) as u64,
        };
        let batches = batches_of(conn, seq, shown)?;
        let place = match waiting + running {
            0 => None,
            _ => {
                let context = match shared {
                    Some(context) => context,
                    None => *shared.insert(place_context(conn)?),
                };
                let ahead = ahead_of(conn, priority, seq, &tenant, fairness, &mut queues)?;
                Some(context.place(ahead))
            }
        };
        out.push(SummaryRecord {
            id: uuid_of(&id)?,
            priority: priority_of(priority)?,
            tenant,
            created_at: Timestamp::from_micros(created_at),
            cancelled_at: cancelled_at.map(Timestamp::from_micros),
            counts,
            id_count: id_count as u64,
            last_completed_at: last_completed_at.map(Timestamp::from_micros),
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
pub(super) fn place_context(conn: &Connection) -> Result<PlaceContext, StoreError> {
    let in_flight_since: Option<i64> = conn
        .prepare_cached("SELECT MAX(started_at) FROM batches WHERE status = 1")
        .and_then(|mut st| st.query_row([], |r| r.get(0)))
        .map_err(unavailable)?;
    let slot = slot(conn)?;
    Ok(PlaceContext {
        paused: slot.paused,
        rate_interval: slot.rate_interval,
        last_start: slot.last_start,
        in_flight_since: in_flight_since.map(Timestamp::from_micros),
    })
}

/// Waiting batches dispatched before those of ingestion `seq` (of `priority` and `tenant`)
/// under `fairness`: in dispatch order (`AHEAD`), or by turns (`turns_of`, its priority's
/// tenants read once into `queues` for every place of a snapshot).
pub(super) fn ahead_of(
    conn: &Connection,
    priority: i64,
    seq: i64,
    tenant: &str,
    fairness: Fairness,
    queues: &mut TenantQueues,
) -> Result<Ahead, StoreError> {
    if fairness == Fairness::Tenant {
        return turns_of(conn, priority, seq, tenant, queues).map(Ahead::Turns);
    }
    let (block, first) = queue_block_bounds(seq);
    let ahead: i64 = conn
        .prepare_cached(AHEAD)
        .and_then(|mut st| st.query_row(params![priority, seq, block, first], |r| r.get(0)))
        .map_err(unavailable)?;
    Ok(Ahead::Fifo(ahead as u64))
}

/// What round-robin predictions need (`domain::Turns`): the waiting work of higher
/// priorities (their counters), the tenant's own waiting batches before ingestion `seq`
/// (its earlier ingestions with work, from `ingestions_fair`), and each tenant with waiting
/// work at the priority (`tenant_depth`) with its turn: its last start there and its first
/// ingestion with waiting work. O(tenants × log n + the tenant's ingestions ahead).
fn turns_of(
    conn: &Connection,
    priority: i64,
    seq: i64,
    tenant: &str,
    queues: &mut TenantQueues,
) -> Result<Turns, StoreError> {
    let (higher, own): (i64, i64) = conn
        .prepare_cached(
            "SELECT (SELECT COALESCE(SUM(waiting), 0) FROM queue_depth WHERE priority < ?1),
                    (SELECT COALESCE(SUM(waiting), 0) FROM ingestions INDEXED BY ingestions_fair
                     WHERE priority = ?1 AND tenant = ?2 AND waiting > 0 AND seq < ?3)",
        )
        .and_then(|mut st| {
            st.query_row(params![priority, tenant, seq], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
        })
        .map_err(unavailable)?;
    let slot = usize::try_from(priority)
        .ok()
        .and_then(|rank| queues.get_mut(rank))
        .ok_or_else(|| StoreError::Corrupt(format!("priority {priority}")))?;
    let tenants = match slot {
        Some(tenants) => tenants,
        None => slot.insert(tenant_queues(conn, priority)?),
    };
    Ok(Turns::new(
        higher.max(0) as u64,
        own.max(0) as u64,
        tenant,
        tenants,
    ))
}

/// The tenants with waiting work at `priority`, with their turns (see `turns_of`).
fn tenant_queues(conn: &Connection, priority: i64) -> Result<Vec<TenantQueue>, StoreError> {
    conn.prepare_cached(
        "SELECT d.tenant, d.waiting, s.last_start,
                (SELECT MIN(i.seq) FROM ingestions i INDEXED BY ingestions_fair
                 WHERE i.priority = d.priority AND i.tenant = d.tenant AND i.waiting > 0)
         FROM tenant_depth d
         LEFT JOIN tenant_starts s ON s.priority = d.priority AND s.tenant = d.tenant
         WHERE d.priority = ?1",
    )
    .and_then(|mut st| {
        st.query_map(params![priority], |r| {
            Ok(tenant_queue(
                priority,
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
            ))
        })?
        .collect()
    })
    .map_err(unavailable)
}

/// Started batches chosen and ordered by `filter` (a fixed clause, never user input).
pub(super) fn dispatches(
    conn: &Connection,
    filter: &str,
    limit: i64,
) -> Result<Vec<DispatchRecord>, StoreError> {
    let sql = format!(
        "SELECT b.id, i.id, b.priority, b.position, b.ids, b.attempt, b.started_at, b.completed_at
         FROM batches b JOIN ingestions i ON i.seq = b.ingestion_seq {filter} LIMIT ?1"
    );
    type Row = (String, String, i64, i64, String, i64, i64, Option<i64>);
    let rows = conn
        .prepare_cached(&sql)
        .and_then(|mut st| {
            st.query_map([limit], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })?
            .collect::<Result<Vec<Row>, _>>()
        })
        .map_err(unavailable)?;
    rows.into_iter()
        .map(
            |(batch, ingestion, priority, position, ids, attempt, started, completed)| {
                Ok(DispatchRecord {
                    batch_id: uuid_of(&batch)?,
                    ingestion_id: uuid_of(&ingestion)?,
                    priority: priority_of(priority)?,
                    position: position as u32,
                    ids: ids_of(&ids)?,
                    attempt: attempt as u32,
                    started_at: Timestamp::from_micros(started),
                    completed_at: completed.map(Timestamp::from_micros),
                })
            },
        )
        .collect()
}

pub(super) struct BatchRow {
    pub(super) id: String,
    pub(super) position: i64,
    pub(super) ids: String,
    pub(super) status: i64,
    pub(super) attempt: i64,
    pub(super) started_at: Option<i64>,
    pub(super) completed_at: Option<i64>,
    pub(super) results: Option<String>,
    pub(super) error: Option<String>,
    pub(super) retry_at: Option<i64>,
}

impl BatchRow {
    pub(super) fn into_record(self) -> Result<BatchRecord, StoreError> {
        let status = batch_status(self.status)?;
        let results = match self.results {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("batch results: {e}")))?,
            None => Vec::new(),
        };
        Ok(BatchRecord {
            id: uuid_of(&self.id)?,
            position: self.position as u32,
            ids: ids_of(&self.ids)?,
            status,
            attempt: self.attempt as u32,
            started_at: self.started_at.map(Timestamp::from_micros),
            completed_at: self.completed_at.map(Timestamp::from_micros),
            results,
            error: self.error,
            retry_at: self.retry_at.map(Timestamp::from_micros),
        })
    }
}

pub(super) fn append_event(
    conn: &Connection,
    at: Timestamp,
    body: &EventBody,
) -> Result<(), StoreError> {
    let json =
        serde_json::to_string(body).map_err(|e| StoreError::Corrupt(format!("event: {e}")))?;
    conn.prepare_cached("INSERT INTO events (at, ingestion_id, body) VALUES (?1, ?2, ?3)")
        .and_then(|mut st| {
            st.execute(params![
                at.as_micros(),
                // Queue-wide events have no ingestion: '' never matches one's stream.
                body.ingestion_id()
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                json
            ])
        })
        .map_err(unavailable)?;
    Ok(())
}

/// Move the feed forward to `latest` (never back).
pub(super) fn advance(feed: &watch::Sender<u64>, latest: u64) {
    feed.send_if_modified(|seen| {
        let newer = latest > *seen;
        if newer {
            *seen = latest;
        }
        newer
    });
}

pub(super) fn latest_event(conn: &Connection) -> Result<u64, StoreError> {
    conn.prepare_cached("SELECT COALESCE(MAX(id), 0) FROM events")
        .and_then(|mut st| st.query_row([], |r| r.get::<_, i64>(0)))
        .map(|id| id as u64)
        .map_err(unavailable)
}

pub(super) fn ids_json(ids: &[u64]) -> String {
    let mut out = String::with_capacity(ids.len() * 11 + 2);
    out.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&id.to_string());
    }
    out.push(']');
    out
}

pub(super) fn ids_of(json: &str) -> Result<Vec<u64>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("batch ids: {e}")))
}

pub(super) fn uuid_of(s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(|e| StoreError::Corrupt(format!("uuid {s:?}: {e}")))
}

pub(super) fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// A poisoned lock only means an earlier task panicked; the connection itself is still usable
/// (`run_group` rolls back any transaction that panic left open).
pub(super) fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unavailable(format!("database task failed: {e}")))?
}
