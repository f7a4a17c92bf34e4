//! Event ids, given after commit: how replicas append events without one cluster-wide lock
//! held through every commit, while ids still become visible in id order.
//!
//! Every change inserts its events unnumbered (`id` NULL) in its own transaction; the
//! identity column `written` records the order they were written in. A publish is a short
//! transaction that takes the `event_seq` row lock, then (in a snapshot taken after the lock,
//! so what the previous publish numbered is seen numbered) numbers every committed unnumbered
//! event after the last id, in `written` order, advances `event_seq`, trims the log and
//! NOTIFYs every replica, then commits durably. Publishes are serialized, each one's ids are
//! above the previous one's, and each commits before the next begins: a reader that has seen
//! id n never later finds a smaller one.
//!
//! Causal order is kept: a change that saw another's effects wrote its events after that
//! other committed, so it has the larger `written` and, if numbered in a later publish, the
//! larger id anyway.
//!
//! Each replica has one publisher task. Every change asks it for a publish after its commit
//! and returns (or answers its request) once that publish has ended, so its events are
//! readable when it returns; requests that arrive while a publish runs are served by the next. Every [`listen::POLL`] it also
//! looks for events nobody published (a replica that died between its commit and its publish).

use super::*;
use tokio::sync::{mpsc, oneshot};

/// Most events numbered by one publish transaction (a larger backlog takes several).
const MOST_PER_PUBLISH: i64 = 50_000;

/// A handle on this replica's publisher task.
#[derive(Clone)]
pub(super) struct Publisher {
    requests: mpsc::UnboundedSender<oneshot::Sender<()>>,
}

impl Publisher {
    /// Start the task, on connections from `pool`; it ends once every handle is dropped.
    pub(super) fn spawn(pool: Pool, feed: Arc<watch::Sender<u64>>) -> Self {
        let (requests, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, rx, feed));
        Self { requests }
    }

    /// Number what has committed so far, and wait until that publish has ended (had it
    /// failed, the events are numbered by a later one).
    pub(super) async fn done(&self) {
        let (tx, rx) = oneshot::channel();
        if self.requests.send(tx).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(
    pool: Pool,
    mut requests: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    feed: Arc<watch::Sender<u64>>,
) {
    let mut tick = tokio::time::interval(listen::POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut waiters = Vec::new();
        tokio::select! {
            request = requests.recv() => match request {
                Some(waiter) => waiters.push(waiter),
                None => return,
            },
            _ = tick.tick() => {}
        }
        // Everything asked before this publish begins is served by it.
        while let Ok(waiter) = requests.try_recv() {
            waiters.push(waiter);
        }
        loop {
            match publish(&pool).await {
                Ok(Some((last, full))) => {
                    advance(&feed, last);
                    if full {
                        continue;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not number new events; retrying"),
            }
            break;
        }
        for waiter in waiters {
            let _ = waiter.send(());
        }
    }
}

/// One publish: the newest id and whether the batch was full (more may wait), or `None` if
/// nothing was waiting to be numbered.
async fn publish(pool: &Pool) -> Result<Option<(u64, bool)>, StoreError> {
    let mut client = pool
        .get()
        .await
        .map_err(|e| StoreError::Unavailable(format!("no database connection: {e}")))?;
    // Nothing to number: no lock taken, nothing committed.
    if client
        .query_opt("SELECT 1 FROM events WHERE id IS NULL LIMIT 1", &[])
        .await
        .map_err(pg)?
        .is_none()
    {
        return Ok(None);
    }
    let tx = raw(&mut client).transaction().await.map_err(pg)?;
    let last: i64 = tx
        .query_one("SELECT last FROM event_seq WHERE id = 1 FOR UPDATE", &[])
        .await
        .map_err(pg)?
        .get(0);
    // A new statement, a new snapshot: taken after the lock was granted.
    let numbered: i64 = tx
        .query_one(
            "WITH todo AS (
               SELECT written, row_number() OVER (ORDER BY written) AS n
               FROM events WHERE id IS NULL ORDER BY written LIMIT $2),
             numbered AS (
               UPDATE events e SET id = $1 + todo.n FROM todo
               WHERE e.written = todo.written AND e.id IS NULL RETURNING 1)
             SELECT COUNT(*) FROM numbered",
            &[&last, &MOST_PER_PUBLISH],
        )
        .await
        .map_err(pg)?
        .get(0);
    let newest = last + numbered;
    let (horizon, payload) = (newest - EVENT_RETENTION, newest.to_string());
    tx.execute(
        "WITH seq AS (UPDATE event_seq SET last = $1 WHERE id = 1),
              trimmed AS (DELETE FROM events WHERE id <= $2)
         SELECT pg_notify($3, $4)",
        &[&newest, &horizon, &CHANNEL, &payload],
    )
    .await
    .map_err(pg)?;
    tx.commit().await.map_err(pg)?;
    Ok(Some((newest as u64, numbered == MOST_PER_PUBLISH)))
}
