//! The claim, on PostgreSQL: the facts `domain::decide` needs, read under the slot row's
//! lock in one transaction, and its decision applied.

use super::*;

impl PostgresStore {
    /// `Store::claim_next` (see the module doc of `postgres` for the locking).
    pub(super) async fn claim(
        &self,
        now: Timestamp,
        interval: Duration,
        lease: Duration,
        replica: &str,
        fairness: Fairness,
    ) -> Result<Claim, StoreError> {
        let mut client = self.dispatch_client().await?;
        let tx = raw(&mut client).transaction().await.map_err(pg)?;
        // Every claimer in the cluster queues here: one claim at a time.
        let Slot {
            last_start,
            paused,
            rate_interval,
            ..
        } = slot(&tx, true).await?;
        let key = |r: &tokio_postgres::Row| QueueKey {
            rank: r.get::<_, i16>(0).into(),
            seq: r.get(1),
            position: r.get::<_, i32>(2).into(),
        };
        // Every triggered batch (normally at most one), locked: a lease being renewed right now
        // is waited for and read as renewed, never skipped as if it had run out.
        let triggered = tx
            .query(
                concat!(
                    "SELECT priority, ingestion_seq, position, lease_until FROM batches
                     WHERE status = 1 ORDER BY ",
                    dispatch_order!(),
                    " FOR UPDATE"
                ),
                &[],
            )
            .await
            .map_err(pg)?;
        // The time is read after each lock that may have been waited for, so a start is never
        // recorded before the wait that preceded it.
        let read_at = self.now_in(&tx, now).await?;
        let latest_lease = triggered
            .iter()
            .filter_map(|r| r.get::<_, Option<i64>>(3))
            .max();
        let abandoned = triggered
            .iter()
            .find(|r| {
                r.get::<_, Option<i64>>(3)
                    .is_none_or(|until| until <= read_at.as_micros())
            })
            .map(key);
        // The first waiting batch not backing off after a failed attempt, locked (not skipped:
        // claims queue on the slot row, so a locked waiting row is one being cancelled or
        // requeued, and passing it over would break dispatch order).
        let waiting = tx
            .query_opt(
                concat!(
                    "SELECT priority, ingestion_seq, position FROM batches
                     WHERE status = 0 AND (retry_at IS NULL OR retry_at <= $1) ORDER BY ",
                    dispatch_order!(),
                    " LIMIT 1 FOR UPDATE"
                ),
                &[&read_at.as_micros()],
            )
            .await
            .map_err(pg)?
            .map(|r| key(&r));
        let mut heads = match (fairness, waiting) {
            (Fairness::Tenant, Some(first)) => tenant_heads(&tx, first.rank, read_at).await?,
            (_, first) => TenantHead::first_only(first),
        };
        // Under `tenant`, the chosen waiting batch is locked too, if it is still waiting
        // (else a cancel or requeue committed meanwhile: look again).
        let mut looks = 0;
        let candidate = loop {
            let chosen = candidate(fairness, abandoned, &heads);
            let Some(other) = chosen.filter(|&c| Some(c) != abandoned && Some(c) != waiting) else {
                break chosen;
            };
            let locked = tx
                .query_opt(
                    "SELECT 1 FROM batches
                     WHERE ingestion_seq = $1 AND position = $2 AND status = 0
                       AND (retry_at IS NULL OR retry_at <= $3)
                     FOR UPDATE",
                    &[&other.seq, &(other.position as i32), &read_at.as_micros()],
                )
                .await
                .map_err(pg)?;
            looks += 1;
            match (locked, looks) {
                (Some(_), _) => break chosen,
                (None, 8..) => {
                    return Err(StoreError::Unavailable(
                        "the queue kept changing under the claim".into(),
                    ))
                }
                (None, _) => heads = tenant_heads(&tx, other.rank, read_at).await?,
            }
        };
        let now = self.now_in(&tx, now).await?;
        // Only asked when it can matter (it scans the waiting batches).
        let next_retry: Option<i64> = match candidate {
            Some(_) => None,
            None => tx
                .query_one("SELECT MIN(retry_at) FROM batches WHERE status = 0", &[])
                .await
                .map_err(pg)?
                .get(0),
        };
        let interval = rate_interval.unwrap_or(interval);
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
        let (seq, position) = (chosen.seq, chosen.position as i32);
        let lease_until = now.plus(lease);
        let row = tx
            .query_one(
                "UPDATE batches b
                 SET status = 1, attempt = attempt + 1, started_at = $1, lease_until = $2,
                     completed_at = NULL, results = NULL, retry_at = NULL
                 FROM ingestions i
                 WHERE b.ingestion_seq = $3 AND b.position = $4 AND i.seq = b.ingestion_seq
                 RETURNING b.id, b.ids, b.attempt, b.priority, i.id, i.tenant",
                &[&now.as_micros(), &lease_until.as_micros(), &seq, &position],
            )
            .await
            .map_err(pg)?;
        let (batch_id, ids, attempt, priority, ingestion_id): (Uuid, Vec<i64>, i32, i16, Uuid) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        // The tenant's turn, whatever the fairness in force (so switching to `tenant` finds it).
        tx.execute(
            "INSERT INTO tenant_starts (priority, tenant, last_start) VALUES ($1, $2, $3)
             ON CONFLICT (priority, tenant) DO UPDATE SET last_start = excluded.last_start",
            &[&priority, &row.get::<_, &str>(5), &now.as_micros()],
        )
        .await
        .map_err(pg)?;
        tx.execute(
            "UPDATE dispatch_slot SET last_start = $1 WHERE id = 1",
            &[&now.as_micros()],
        )
        .await
        .map_err(pg)?;
        if abandoned != Some(chosen) {
            moved(&tx, seq, codec::WAITING, codec::TRIGGERED, 1, now).await?;
        }
        tx.execute(
            "INSERT INTO attempts (batch_id, attempt, replica, started_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (batch_id, attempt) DO NOTHING",
            &[&batch_id, &attempt, &replica, &now.as_micros()],
        )
        .await
        .map_err(pg)?;
        let event = append_event(
            &tx,
            now,
            &EventBody::BatchTriggered {
                ingestion_id,
                batch_id,
                position: position as u32,
                attempt: attempt as u32,
            },
        )
        .await?;
        tx.commit().await.map_err(pg)?;
        self.published(Some(event));
        Ok(Claim::Claimed(ClaimedBatch {
            batch_id,
            ingestion_id,
            priority: priority_of(priority)?,
            position: position as u32,
            ids: ids_of(ids),
            attempt: attempt as u32,
            started_at: now,
            lease_until,
            interval,
        }))
    }
}

/// Each tenant with waiting work at priority `rank`: its first claimable waiting batch (a
/// tenant whose batches there all back off until after `now` has none and is left out) and
/// its last start there, in one statement. Walks the tenants by index (a skip scan, one probe
/// per tenant), then one probe each for its first batch: O(tenants × log n), whatever the
/// backlog. The batch probe is a scalar subquery per ingestion of the tenant, in `seq` order,
/// so the plan cannot become a walk of the whole priority's backlog filtered by tenant.
async fn tenant_heads(
    tx: &tokio_postgres::Transaction<'_>,
    rank: i64,
    now: Timestamp,
) -> Result<Vec<TenantHead>, StoreError> {
    let rows = tx
        .query(
            "WITH RECURSIVE t(tenant) AS (
               SELECT MIN(tenant) FROM ingestions WHERE priority = $1 AND waiting > 0
               UNION ALL
               SELECT (SELECT MIN(tenant) FROM ingestions
                       WHERE priority = $1 AND waiting > 0 AND tenant > t.tenant)
               FROM t WHERE t.tenant IS NOT NULL)
             SELECT s.last_start, h.ingestion_seq, h.position FROM t
             LEFT JOIN tenant_starts s ON s.priority = $1 AND s.tenant = t.tenant
             CROSS JOIN LATERAL (
               SELECT f.ingestion_seq, f.position FROM (
                 SELECT i.seq AS ingestion_seq,
                        (SELECT b.position FROM batches b
                         WHERE b.priority = $1 AND b.ingestion_seq = i.seq AND b.status = 0
                           AND (b.retry_at IS NULL OR b.retry_at <= $2)
                         ORDER BY b.position LIMIT 1) AS position
                 FROM ingestions i
                 WHERE i.priority = $1 AND i.tenant = t.tenant AND i.waiting > 0) f
               WHERE f.position IS NOT NULL
               ORDER BY f.ingestion_seq LIMIT 1) h
             WHERE t.tenant IS NOT NULL",
            &[&(rank as i16), &now.as_micros()],
        )
        .await
        .map_err(pg)?;
    Ok(rows
        .iter()
        .map(|r| TenantHead {
            first: QueueKey {
                rank,
                seq: r.get(1),
                position: r.get::<_, i32>(2).into(),
            },
            last_start: r.get::<_, Option<i64>>(0).map(Timestamp::from_micros),
        })
        .collect())
}
