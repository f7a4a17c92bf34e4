//! The claim, on SQLite: the facts `domain::decide` needs, read in the writer's transaction,
//! and its decision applied.

use super::*;

/// Dispatch order key: (priority, ingestion acceptance order, position).
pub(super) type OrderKey = (i64, i64, i64);

/// The claim: read the facts the rule needs (`domain::decide`), apply its decision.
pub(super) fn claim(
    conn: &Connection,
    now: Timestamp,
    interval: Duration,
    lease: Duration,
    replica: &str,
) -> Result<Claim, StoreError> {
    let Slot {
        last_start,
        paused,
        rate_interval,
    } = slot(conn)?;
    let interval = rate_interval.unwrap_or(interval);
    let latest_lease: Option<i64> = conn
        .prepare_cached("SELECT MAX(lease_until) FROM batches WHERE status = 1")
        .and_then(|mut st| st.query_row([], |r| r.get(0)))
        .map_err(unavailable)?;
    let first = |sql: &str| -> Result<Option<OrderKey>, StoreError> {
        conn.prepare_cached(sql)
            .and_then(|mut st| {
                st.query_row([now.as_micros()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(unavailable)
    };
    // The first abandoned batch (triggered, lease run out) and the first waiting batch that is
    // not backing off after a failed attempt: the candidate is the earlier of the two.
    let abandoned = first(concat!(
        "SELECT priority, ingestion_seq, position FROM batches
         WHERE status = 1 AND lease_until <= ?1 ORDER BY ",
        dispatch_order!(),
        " LIMIT 1"
    ))?;
    let waiting = first(concat!(
        "SELECT priority, ingestion_seq, position FROM batches
         WHERE status = 0 AND (retry_at IS NULL OR retry_at <= ?1) ORDER BY ",
        dispatch_order!(),
        " LIMIT 1"
    ))?;
    let candidate = abandoned.into_iter().chain(waiting).min();
    // Only asked when it can matter (it scans the waiting batches).
    let next_retry: Option<i64> = match candidate {
        Some(_) => None,
        None => conn
            .prepare_cached("SELECT MIN(retry_at) FROM batches WHERE status = 0")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(unavailable)?,
    };
    let chosen = match decide(ClaimFacts {
        now,
        paused,
        last_start,
        interval,
        latest_lease: latest_lease.map(Timestamp::from_micros),
        candidate,
        next_retry: next_retry.map(Timestamp::from_micros),
    })
    .start_or_answer()
    {
        Ok(chosen) => chosen,
        Err(answer) => return Ok(answer),
    };
    let (_, seq, position) = chosen;
    let from_waiting = waiting == Some(chosen);

    let lease_until = now.plus(lease);
    let (batch_id, ids, attempt, priority, ingestion_id): (String, String, i64, i64, String) = conn
        .prepare_cached(
            "UPDATE batches
             SET status = 1, attempt = attempt + 1, started_at = ?1, lease_until = ?2,
                 completed_at = NULL, results = NULL, retry_at = NULL
             WHERE ingestion_seq = ?3 AND position = ?4
             RETURNING id, ids, attempt, priority,
                       (SELECT id FROM ingestions WHERE seq = ingestion_seq)",
        )
        .and_then(|mut st| {
            st.query_row(
                params![now.as_micros(), lease_until.as_micros(), seq, position],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
        })
        .map_err(unavailable)?;
    conn.prepare_cached("UPDATE dispatch_slot SET last_start = ?1 WHERE id = 1")
        .and_then(|mut st| st.execute([now.as_micros()]))
        .map_err(unavailable)?;
    if from_waiting {
        moved(conn, seq, WAITING, TRIGGERED, 1, now)?;
    }
    conn.prepare_cached(
        "INSERT INTO attempts (batch_id, attempt, replica, started_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (batch_id, attempt) DO NOTHING",
    )
    .and_then(|mut st| st.execute(params![batch_id, attempt, replica, now.as_micros()]))
    .map_err(unavailable)?;
    let (batch_id, ingestion_id) = (uuid_of(&batch_id)?, uuid_of(&ingestion_id)?);
    append_event(
        conn,
        now,
        &EventBody::BatchTriggered {
            ingestion_id,
            batch_id,
            position: position as u32,
            attempt: attempt as u32,
        },
    )?;

    Ok(Claim::Claimed(ClaimedBatch {
        batch_id,
        ingestion_id,
        priority: priority_of(priority)?,
        position: position as u32,
        ids: ids_of(&ids)?,
        attempt: attempt as u32,
        started_at: now,
        lease_until,
        interval,
    }))
}
