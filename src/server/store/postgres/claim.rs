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
        type Key = (i16, i64, i32);
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
            .map(|r| -> Key { (r.get(0), r.get(1), r.get(2)) });
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
            .map(|r| -> Key { (r.get(0), r.get(1), r.get(2)) });
        let now = self.now_in(&tx, now).await?;
        let candidate = abandoned.into_iter().chain(waiting).min();
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
        let (_, seq, position) = chosen;
        let lease_until = now.plus(lease);
        let row = tx
            .query_one(
                "UPDATE batches b
                 SET status = 1, attempt = attempt + 1, started_at = $1, lease_until = $2,
                     completed_at = NULL, results = NULL, retry_at = NULL
                 FROM ingestions i
                 WHERE b.ingestion_seq = $3 AND b.position = $4 AND i.seq = b.ingestion_seq
                 RETURNING b.id, b.ids, b.attempt, b.priority, i.id",
                &[&now.as_micros(), &lease_until.as_micros(), &seq, &position],
            )
            .await
            .map_err(pg)?;
        let (batch_id, ids, attempt, priority, ingestion_id): (Uuid, Vec<i64>, i32, i16, Uuid) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        tx.execute(
            "UPDATE dispatch_slot SET last_start = $1 WHERE id = 1",
            &[&now.as_micros()],
        )
        .await
        .map_err(pg)?;
        if waiting == Some(chosen) {
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
