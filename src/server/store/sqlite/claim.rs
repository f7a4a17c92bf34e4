//! The claim, on SQLite: the facts `domain::decide` needs, read in the writer's transaction,
//! and its decision applied.

use super::*;

/// The claim: read the facts the rule needs (`domain::candidate`, `domain::decide`), apply
/// its decision.
pub(super) fn claim(
    conn: &Connection,
    now: Timestamp,
    interval: Duration,
    lease: Duration,
    replica: &str,
    fairness: Fairness,
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
    let first = |sql: &str| -> Result<Option<QueueKey>, StoreError> {
        conn.prepare_cached(sql)
            .and_then(|mut st| {
                st.query_row([now.as_micros()], |r| {
                    Ok(QueueKey {
                        rank: r.get(0)?,
                        seq: r.get(1)?,
                        position: r.get(2)?,
                    })
                })
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
    let heads = match (fairness, waiting) {
        (Fairness::Tenant, Some(first)) => tenant_heads(conn, first.rank, now)?,
        (_, first) => TenantHead::first_only(first),
    };
    let candidate = candidate(fairness, abandoned, &heads);
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
    let QueueKey { seq, position, .. } = chosen;
    let from_waiting = abandoned != Some(chosen);

    let lease_until = now.plus(lease);
    type Started = (String, String, i64, i64, String, String);
    let (batch_id, ids, attempt, priority, ingestion_id, tenant): Started = conn
        .prepare_cached(
            "UPDATE batches
             SET status = 1, attempt = attempt + 1, started_at = ?1, lease_until = ?2,
                 completed_at = NULL, results = NULL, retry_at = NULL
             WHERE ingestion_seq = ?3 AND position = ?4
             RETURNING id, ids, attempt, priority,
                       (SELECT id FROM ingestions WHERE seq = ingestion_seq),
                       (SELECT tenant FROM ingestions WHERE seq = ingestion_seq)",
        )
        .and_then(|mut st| {
            st.query_row(
                params![now.as_micros(), lease_until.as_micros(), seq, position],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
        })
        .map_err(unavailable)?;
    // The tenant's turn, whatever the fairness in force (so switching to `tenant` finds it).
    conn.prepare_cached(
        "INSERT INTO tenant_starts (priority, tenant, last_start) VALUES (?1, ?2, ?3)
         ON CONFLICT (priority, tenant) DO UPDATE SET last_start = excluded.last_start",
    )
    .and_then(|mut st| st.execute(params![priority, tenant, now.as_micros()]))
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

/// Each tenant with waiting work at priority `rank`: its first claimable waiting batch (none if
/// all of its batches there back off until after `now`) and its last start there. Walks the
/// tenants by index (a skip scan, one probe per tenant), then one probe each for its first
/// batch: O(tenants × log n), whatever the backlog.
fn tenant_heads(
    conn: &Connection,
    rank: i64,
    now: Timestamp,
) -> Result<Vec<TenantHead>, StoreError> {
    let tenants: Vec<(String, Option<i64>)> = conn
        .prepare_cached(
            "WITH RECURSIVE t(tenant) AS (
               SELECT MIN(tenant) FROM ingestions WHERE priority = ?1 AND waiting > 0
               UNION ALL
               SELECT (SELECT MIN(tenant) FROM ingestions
                       WHERE priority = ?1 AND waiting > 0 AND tenant > t.tenant)
               FROM t WHERE t.tenant IS NOT NULL)
             SELECT t.tenant, s.last_start FROM t
             LEFT JOIN tenant_starts s ON s.priority = ?1 AND s.tenant = t.tenant
             WHERE t.tenant IS NOT NULL",
        )
        .and_then(|mut st| {
            st.query_map([rank], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .map_err(unavailable)?;
    let mut first = conn
        .prepare_cached(
            "SELECT b.ingestion_seq, b.position
             FROM ingestions i INDEXED BY ingestions_fair
             JOIN batches b INDEXED BY batches_waiting
               ON b.priority = i.priority AND b.ingestion_seq = i.seq AND b.status = 0
             WHERE i.priority = ?1 AND i.tenant = ?2 AND i.waiting > 0
               AND (b.retry_at IS NULL OR b.retry_at <= ?3)
             ORDER BY i.seq, b.position LIMIT 1",
        )
        .map_err(unavailable)?;
    let mut heads = Vec::with_capacity(tenants.len());
    for (tenant, last_start) in tenants {
        let found: Option<(i64, i64)> = first
            .query_row(params![rank, tenant, now.as_micros()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(unavailable)?;
        if let Some((seq, position)) = found {
            heads.push(TenantHead {
                first: QueueKey {
                    rank,
                    seq,
                    position,
                },
                last_start: last_start.map(Timestamp::from_micros),
            });
        }
    }
    Ok(heads)
}
