//! Group commit on PostgreSQL: one writer per replica, on its own connection, stores every
//! ingestion that arrived while the previous group committed in one transaction (multi-row
//! inserts from arrays, one `event_serial` advance), and answers each submission only after that
//! commit has reached the disk.
//!
//! The commit itself does not wait for the disk (`synchronous_commit = off` for the group's
//! transaction): the locks below are then held for the group's statements only, not through a
//! WAL flush, and the replicas' groups no longer commit one flush at a time. A flusher on a
//! connection of its own then makes one synchronous commit that flushes the WAL past every
//! group committed so far and only then answers their submissions and NOTIFYs their events
//! (see [`flush`]). What a committed group changed is readable by others a fraction of a
//! millisecond before it is durable (a claim of one of its batches commits synchronously, so
//! it flushes the group first); nothing of it is acknowledged or announced before.
//!
//! Replicas' writers take turns: an advisory lock, taken before the group is complete (what
//! arrives while another replica's group commits joins this one) and held to commit (see
//! `store`). The rows a claim also needs (`queue_depth`, `event_serial`) are locked
//! at the end of the group, just before its commit, so a claim on another connection waits at
//! most for one group's tail and commit, never for its inserts. Exceptions, for exactness:
//! a group with a waiting bound locks `queue_depth` first (the bound is checked against counts
//! no other writer can change before this group commits), and a group with idempotency keys
//! takes each key's advisory lock first (in one order for every writer, so two groups sharing
//! keys cannot deadlock).
//!
//! A statement the server refuses fails the whole group's transaction; the group is then
//! stored again one submission per transaction, so the one that fails is undone alone. A lost
//! connection fails the whole group (nothing acknowledged is uncommitted; a commit whose
//! answer was lost may have stored the group, which an `Idempotency-Key` makes safe to retry).

use super::*;
use crate::server::store::{NewBatchRecord, NewIngestionRecord};
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;

/// Most submissions in one group (bounds a group's latency)...
pub(super) const MAX_GROUP: usize = 512;
/// ...and most IDs (large submissions make small groups).
const MAX_GROUP_IDS: usize = 200_000;
/// Submissions waiting for the writer; past it `insert_ingestion` waits to queue.
pub(super) const QUEUE: usize = 4 * MAX_GROUP;

/// An ingestion waiting for the next group.
pub(super) struct Submission {
    pub(super) ingestion: NewIngestionRecord,
    pub(super) admission: Admission,
    pub(super) reply: oneshot::Sender<Result<Inserted, StoreError>>,
}

/// Why a group did not commit.
enum GroupError {
    /// A deadlock or serialization failure with another transaction: worth one more try.
    Collided(StoreError),
    /// The server refused a statement (the connection is fine): store the group one by one.
    Refused(StoreError),
    /// No connection, or it was lost: every submission of the group gets this.
    Unavailable(StoreError),
}

impl GroupError {
    fn into_store(self) -> StoreError {
        match self {
            GroupError::Collided(e) | GroupError::Refused(e) | GroupError::Unavailable(e) => e,
        }
    }
}

impl From<tokio_postgres::Error> for GroupError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        match e.code() {
            Some(code)
                if *code == SqlState::T_R_DEADLOCK_DETECTED
                    || *code == SqlState::T_R_SERIALIZATION_FAILURE =>
            {
                GroupError::Collided(pg(e))
            }
            _ if e.as_db_error().is_some() => GroupError::Refused(pg(e)),
            _ => GroupError::Unavailable(pg(e)),
        }
    }
}

/// The writer loop: runs until every `PostgresStore` handle is gone. `pool` is the writer's
/// own connection, whose group commits do not wait for the WAL flush ([`ASYNC_COMMIT`]);
/// `flushing` is the flusher's, which makes them durable before anyone is answered.
pub(super) async fn group_commit(
    pool: Pool,
    flushing: Pool,
    mut rx: mpsc::Receiver<Submission>,
    feed: Arc<watch::Sender<u64>>,
) {
    let (committed, to_flush) = mpsc::channel(QUEUE);
    let flusher = tokio::spawn(flush(flushing, to_flush, feed));
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        top_up(&mut group, &mut rx);
        if group.is_empty() {
            continue;
        }
        let mut outcome = store(&pool, &mut group, Some(&mut rx)).await;
        if matches!(outcome, Err(GroupError::Collided(_))) {
            outcome = store(&pool, &mut group, None).await;
        }
        let mut stored = Committed::default();
        match outcome {
            Ok((answers, latest)) => {
                stored.latest = latest;
                for (submission, answer) in group.into_iter().zip(answers) {
                    stored.answers.push((submission.reply, answer));
                }
            }
            Err(GroupError::Refused(_) | GroupError::Collided(_)) if group.len() > 1 => {
                for submission in group {
                    let mut alone = vec![submission];
                    let outcome = store(&pool, &mut alone, None).await;
                    let Some(submission) = alone.pop() else {
                        continue;
                    };
                    match outcome {
                        Ok((mut answers, latest)) => {
                            stored.latest = stored.latest.max(latest);
                            stored.answers.push((submission.reply, answers.remove(0)));
                        }
                        Err(e) => {
                            let _ = submission.reply.send(Err(e.into_store()));
                        }
                    }
                }
            }
            Err(e) => {
                let e = e.into_store();
                for submission in group {
                    let _ = submission.reply.send(Err(e.clone()));
                }
            }
        }
        if !stored.answers.is_empty() {
            // The flusher answers them; it only stops once this loop has.
            let _ = committed.send(stored).await;
        }
    }
    drop(committed);
    let _ = flusher.await;
}

/// A group's commit returns before the WAL is flushed, so the writers' turn and the rows a
/// claim needs are released at once (with every commit flushed while they were held,
/// replicas' groups would commit at most one per disk flush). Set per transaction, not on the
/// connection, so a URL's own `options` and poolers that refuse startup options are left
/// alone. Nothing it commits is acknowledged before [`flush`] has made it durable.
const ASYNC_COMMIT: &str = "SET LOCAL synchronous_commit = off";

/// Groups committed (visible, not yet known durable), waiting for the flusher: their answers
/// and their newest event id.
#[derive(Default)]
struct Committed {
    answers: Vec<(oneshot::Sender<Result<Inserted, StoreError>>, Inserted)>,
    latest: Option<u64>,
}

/// Make committed groups durable, then answer them: one synchronous commit (on a connection
/// of its own, so the writer goes on with its next group meanwhile) flushes the WAL past every
/// group committed before it, as many as are waiting. Its NOTIFY, which reaches the other
/// replicas only after that flush, announces their events, so no replica serves an event that
/// a crash of the database could still take back. If the flush fails, whether the groups are
/// durable is unknown, as with a commit whose answer was lost: they are answered unavailable.
async fn flush(pool: Pool, mut rx: mpsc::Receiver<Committed>, feed: Arc<watch::Sender<u64>>) {
    while let Some(first) = rx.recv().await {
        let mut waiting = vec![first];
        while let Ok(next) = rx.try_recv() {
            waiting.push(next);
        }
        let latest = waiting.iter().filter_map(|c| c.latest).max();
        let flushed = async {
            let client = connection(&pool).await?;
            let statement = client.prepare_cached(FLUSH).await.map_err(pg)?;
            let payload = latest.map(|id| id.to_string());
            client
                .execute(&statement, &[&CHANNEL, &payload])
                .await
                .map_err(pg)
        }
        .await;
        match flushed {
            Ok(_) => {
                if let Some(latest) = latest {
                    advance(&feed, latest);
                }
                for (reply, answer) in waiting.into_iter().flat_map(|c| c.answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(e) => {
                for (reply, _) in waiting.into_iter().flat_map(|c| c.answers) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// A synchronous commit that writes (a commit that wrote nothing does not flush): this
/// backend's flush mark moves, and the newest event id of the groups it makes durable is
/// announced.
const FLUSH: &str = "WITH mark AS (
           INSERT INTO flush_marks (backend) VALUES (pg_backend_pid())
           ON CONFLICT (backend) DO UPDATE SET flushes = flush_marks.flushes + 1)
         SELECT pg_notify($1, $2) WHERE $2 IS NOT NULL";

/// Add what has arrived to the group, up to its bounds, and drop the submissions whose caller
/// is gone (client disconnected): nobody would learn of them, and a retry without a key would
/// store them twice.
fn top_up(group: &mut Vec<Submission>, rx: &mut mpsc::Receiver<Submission>) {
    let mut ids: usize = group.iter().map(ids_in).sum();
    while group.len() < MAX_GROUP && ids < MAX_GROUP_IDS {
        match rx.try_recv() {
            Ok(next) => {
                ids += ids_in(&next);
                group.push(next);
            }
            Err(_) => break,
        }
    }
    group.retain(|submission| !submission.reply.is_closed());
}

fn ids_in(submission: &Submission) -> usize {
    submission
        .ingestion
        .batches
        .iter()
        .map(|b| b.ids.len())
        .sum()
}

/// The statements every group runs, prepared once per connection (a group's cost is then
/// executing them, not parsing and planning them again).
struct Prepared {
    turn: tokio_postgres::Statement,
    rows: tokio_postgres::Statement,
    lock: tokio_postgres::Statement,
    depth: tokio_postgres::Statement,
    blocks: tokio_postgres::Statement,
    tenants: tokio_postgres::Statement,
    events: tokio_postgres::Statement,
}

impl Prepared {
    async fn on(client: &deadpool_postgres::Object) -> Result<Self, GroupError> {
        Ok(Self {
            turn: client.prepare_cached(TURN).await?,
            rows: client.prepare_cached(INSERT_ROWS).await?,
            lock: client.prepare_cached(LOCK_DEPTH).await?,
            depth: client.prepare_cached(ADD_DEPTH).await?,
            blocks: client.prepare_cached(ADD_BLOCKS).await?,
            tenants: client.prepare_cached(ADD_TENANT_DEPTH).await?,
            events: client.prepare_cached(APPEND_EVENTS).await?,
        })
    }
}

/// The created ingestions (all their batches waiting) and all their batches; answers each
/// ingestion's `seq`, the FIFO order within a priority, taken in arrival order.
const INSERT_ROWS: &str = "WITH ing AS (
           INSERT INTO ingestions (id, priority, created_at, waiting, id_count, tenant)
           SELECT t.id, t.priority, t.created_at, t.waiting, t.id_count, t.tenant
           FROM unnest($1::uuid[], $2::smallint[], $3::bigint[], $10::int[], $11::bigint[],
                       $12::text[])
                WITH ORDINALITY AS t(id, priority, created_at, waiting, id_count, tenant, ord)
           ORDER BY t.ord
           RETURNING seq, id, priority),
         bat AS (
           INSERT INTO batches (id, ingestion_seq, position, priority, ids)
           SELECT b.id, ing.seq, b.position, ing.priority, ($9::bigint[])[b.lo:b.hi]
           FROM unnest($4::uuid[], $5::uuid[], $6::int[], $7::int[], $8::int[])
                AS b(id, owner, position, lo, hi)
           JOIN ing ON ing.id = b.owner)
         SELECT id, seq FROM ing";

/// The waiting counts of the group's priorities, locked in priority order, as every writer and
/// claim locks them (no deadlock).
const LOCK_DEPTH: &str =
    "SELECT 1 FROM queue_depth WHERE priority = ANY($1) ORDER BY priority FOR UPDATE";

const ADD_DEPTH: &str = "UPDATE queue_depth q SET waiting = q.waiting + d.n
         FROM unnest($1::smallint[], $2::bigint[]) AS d(p, n) WHERE q.priority = d.p";

/// The group's events, with ids from `event_serial` under its row lock, held to commit: events
/// become visible in id order, across replicas. (They are announced by [`flush`].)
const APPEND_EVENTS: &str =
    "WITH next AS (UPDATE event_serial SET last = last + $1 WHERE id = 1 RETURNING last),
         appended AS (
           INSERT INTO events (id, at, ingestion_id, body)
           SELECT next.last - $1 + e.ord, e.at, e.ingestion_id, e.body
           FROM next, unnest($2::bigint[], $3::text[], $4::text[]) WITH ORDINALITY
                AS e(at, ingestion_id, body, ord))
         SELECT last FROM next";

/// The writers' turn, one replica's writer at a time across the cluster (an advisory lock in
/// the two-key space, apart from the idempotency keys' one-key locks), held to commit.
pub(super) const TURN: &str = "SELECT pg_advisory_xact_lock(1936487777, 1)";

/// Store one group in one transaction: each submission's answer, in order, and the group's
/// newest event id (none if it created nothing). Committed, not yet known durable: see [`flush`].
///
/// The group first waits for the writers' turn; what arrives meanwhile joins it (`top_up`).
/// Groups held the contended counters to commit anyway, so replicas' groups committed one at
/// a time; taking the turn before the group is complete makes each group carry everything
/// that queued meanwhile instead of many small groups each paying a group's fixed cost. With
/// one replica the turn is always free, and the group still takes in what arrived during its
/// `BEGIN`.
async fn store(
    pool: &Pool,
    group: &mut Vec<Submission>,
    top_up_from: Option<&mut mpsc::Receiver<Submission>>,
) -> Result<(Vec<Inserted>, Option<u64>), GroupError> {
    let mut client = connection(pool).await.map_err(GroupError::Unavailable)?;
    let prepared = Prepared::on(&client).await?;
    let tx = raw(&mut client).transaction().await?;
    // Sent together: the group's commit will not wait for the disk (see `flush`), then the turn.
    futures::try_join!(
        tx.batch_execute(ASYNC_COMMIT),
        tx.execute(&prepared.turn, &[])
    )?;
    if let Some(rx) = top_up_from {
        top_up(group, rx);
    }
    let group: &[Submission] = group;
    let seen = seen_keys(&tx, group).await?;
    let bounded = group.iter().any(|s| s.admission.max_waiting.is_some());
    let waiting = match bounded {
        // Locked to commit (in priority order, as every writer locks them), so no other
        // writer can pass the bound between this check and this commit.
        true => tx
            .query(
                "SELECT waiting FROM queue_depth ORDER BY priority FOR UPDATE",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get::<_, i64>(0))
            .sum(),
        false => 0,
    };
    let answers = admit(group, &seen, waiting);
    let created: Vec<&Submission> = group
        .iter()
        .zip(&answers)
        .filter(|(_, answer)| **answer == Inserted::Created)
        .map(|(s, _)| s)
        .collect();
    if created.is_empty() {
        tx.commit().await?;
        return Ok((answers, None));
    }
    let seqs = insert_rows(&tx, &prepared, &created).await?;
    let latest = count_and_append_events(&tx, &prepared, &created, &seqs).await?;
    tx.commit().await?;
    Ok((answers, Some(latest)))
}

/// A key as stored: its request's fingerprint, its ingestion, when it was first seen.
type SeenKey = (String, Uuid, i64);

/// Lock the group's keys and read those already stored (expired ones are deleted first).
async fn seen_keys(
    tx: &tokio_postgres::Transaction<'_>,
    group: &[Submission],
) -> Result<HashMap<String, SeenKey>, GroupError> {
    let mut keys: Vec<&str> = group
        .iter()
        .filter_map(|s| s.admission.key.as_ref().map(|k| k.key.as_str()))
        .collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    keys.sort_unstable();
    keys.dedup();
    let oldest = group
        .iter()
        .filter(|s| s.admission.key.is_some())
        .map(|s| s.ingestion.created_at.as_micros())
        .min()
        .unwrap_or(0);
    // Two requests with one key wait for each other here, across replicas: one stores, one
    // replays. Locks are taken in hash order, the same in every group.
    tx.execute(
        "SELECT pg_advisory_xact_lock(h) FROM (
           SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest($1::text[]) AS k ORDER BY h
         ) AS locks",
        &[&keys],
    )
    .await?;
    tx.execute(
        "DELETE FROM idempotency_keys WHERE created_at < $1",
        &[&retention_horizon(oldest)],
    )
    .await?;
    let rows = tx
        .query(
            "SELECT key, fingerprint, ingestion_id, created_at FROM idempotency_keys
             WHERE key = ANY($1)",
            &[&keys],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect())
}

fn retention_horizon(now_us: i64) -> i64 {
    now_us.saturating_sub(IDEMPOTENCY_RETENTION.as_micros() as i64)
}

/// Each submission's answer, in arrival order: a key seen within its retention (stored, or
/// earlier in this group) replays or conflicts; past the waiting bound nothing is stored;
/// otherwise it is created and counts towards the bound of the submissions after it.
fn admit(group: &[Submission], seen: &HashMap<String, SeenKey>, mut waiting: i64) -> Vec<Inserted> {
    let mut keys_here: HashMap<&str, (&str, Uuid)> = HashMap::new();
    group
        .iter()
        .map(|s| {
            let new = s.ingestion.batches.len() as i64;
            let key = s.admission.key.as_ref();
            let known = key.and_then(|k| {
                let horizon = retention_horizon(s.ingestion.created_at.as_micros());
                keys_here.get(k.key.as_str()).copied().or_else(|| {
                    seen.get(&k.key)
                        .filter(|(_, _, at)| *at >= horizon)
                        .map(|(fingerprint, id, _)| (fingerprint.as_str(), *id))
                })
            });
            if let (Some(key), Some((fingerprint, id))) = (key, known) {
                return match fingerprint == key.fingerprint {
                    true => Inserted::Replayed(id),
                    false => Inserted::KeyConflict,
                };
            }
            if let Some(max) = s.admission.max_waiting {
                if waiting.saturating_add(new) > max as i64 {
                    return Inserted::QueueFull {
                        waiting: waiting.max(0) as u64,
                    };
                }
            }
            waiting += new;
            if let Some(key) = key {
                keys_here.insert(&key.key, (&key.fingerprint, s.ingestion.id));
            }
            Inserted::Created
        })
        .collect()
}

/// The created ingestions, their batches and their keys: two statements, pipelined. Returns
/// each created ingestion's `seq`.
async fn insert_rows(
    tx: &tokio_postgres::Transaction<'_>,
    prepared: &Prepared,
    created: &[&Submission],
) -> Result<HashMap<Uuid, i64>, GroupError> {
    let ids: Vec<Uuid> = created.iter().map(|s| s.ingestion.id).collect();
    let ranks: Vec<i16> = created
        .iter()
        .map(|s| s.ingestion.priority.rank() as i16)
        .collect();
    let times: Vec<i64> = created
        .iter()
        .map(|s| s.ingestion.created_at.as_micros())
        .collect();
    // Batches as parallel arrays; their IDs in one flat array, each batch a slice of it.
    let mut batch_ids = Vec::new();
    let mut owners = Vec::new();
    let mut positions = Vec::new();
    let mut lows = Vec::new();
    let mut highs = Vec::new();
    let mut flat: Vec<i64> = Vec::new();
    for s in created {
        for (position, NewBatchRecord { id, ids }) in s.ingestion.batches.iter().enumerate() {
            batch_ids.push(*id);
            owners.push(s.ingestion.id);
            positions.push(position as i32);
            lows.push(flat.len() as i32 + 1);
            flat.extend(ids.iter().map(|&id| id as i64));
            highs.push(flat.len() as i32);
        }
    }
    let counts: Vec<i32> = created
        .iter()
        .map(|s| s.ingestion.batches.len() as i32)
        .collect();
    let id_counts: Vec<i64> = created
        .iter()
        .map(|s| s.ingestion.id_count() as i64)
        .collect();
    let tenants: Vec<&str> = created
        .iter()
        .map(|s| s.ingestion.tenant.as_str())
        .collect();
    let params: [&(dyn ToSql + Sync); 12] = [
        &ids, &ranks, &times, &batch_ids, &owners, &positions, &lows, &highs, &flat, &counts,
        &id_counts, &tenants,
    ];
    let rows = async {
        let rows = tx.query(&prepared.rows, &params).await?;
        Ok::<_, tokio_postgres::Error>(
            rows.iter()
                .map(|r| (r.get::<_, Uuid>(0), r.get::<_, i64>(1)))
                .collect::<HashMap<_, _>>(),
        )
    };
    let keyed: Vec<(&IdempotencyKey, Uuid, i64)> = created
        .iter()
        .filter_map(|s| {
            let key = s.admission.key.as_ref()?;
            Some((key, s.ingestion.id, s.ingestion.created_at.as_micros()))
        })
        .collect();
    if keyed.is_empty() {
        return Ok(rows.await?);
    }
    let names: Vec<&str> = keyed.iter().map(|(k, _, _)| k.key.as_str()).collect();
    let fingerprints: Vec<&str> = keyed
        .iter()
        .map(|(k, _, _)| k.fingerprint.as_str())
        .collect();
    let owners: Vec<Uuid> = keyed.iter().map(|(_, id, _)| *id).collect();
    let at: Vec<i64> = keyed.iter().map(|(_, _, at)| *at).collect();
    let params: [&(dyn ToSql + Sync); 4] = [&names, &fingerprints, &owners, &at];
    // A key still stored but past the retention of this submission is replaced.
    let keys = tx.execute(
        "INSERT INTO idempotency_keys (key, fingerprint, ingestion_id, created_at)
         SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::bigint[])
         ON CONFLICT (key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,
           ingestion_id = EXCLUDED.ingestion_id, created_at = EXCLUDED.created_at",
        &params,
    );
    let (seqs, _) = futures::try_join!(rows, keys)?;
    Ok(seqs)
}

/// The contended tail of a group: the waiting counts (per priority, block and tenant) and the
/// events, in one pipelined round trip just before the commit. Returns the newest event id.
async fn count_and_append_events(
    tx: &tokio_postgres::Transaction<'_>,
    prepared: &Prepared,
    created: &[&Submission],
    seqs: &HashMap<Uuid, i64>,
) -> Result<u64, GroupError> {
    let mut per_priority = [0i64; 3];
    let mut per_block: std::collections::BTreeMap<(i16, i64), i64> = Default::default();
    let mut per_tenant: std::collections::BTreeMap<(i16, &str), i64> = Default::default();
    for s in created {
        let (rank, new) = (
            s.ingestion.priority.rank(),
            s.ingestion.batches.len() as i64,
        );
        per_priority[rank as usize] += new;
        let seq = seqs.get(&s.ingestion.id).copied().ok_or_else(|| {
            GroupError::Refused(StoreError::Corrupt(
                "an inserted ingestion has no seq".into(),
            ))
        })?;
        if new > 0 {
            *per_block
                .entry((rank as i16, codec::queue_block(seq)))
                .or_default() += new;
            *per_tenant
                .entry((rank as i16, s.ingestion.tenant.as_str()))
                .or_default() += new;
        }
    }
    // In (priority, tenant) order, as every writer locks them.
    let tenant_priorities: Vec<i16> = per_tenant.keys().map(|(p, _)| *p).collect();
    let tenants: Vec<&str> = per_tenant.keys().map(|(_, t)| *t).collect();
    let tenant_added: Vec<i64> = per_tenant.values().copied().collect();
    let block_priorities: Vec<i16> = per_block.keys().map(|(p, _)| *p).collect();
    let blocks: Vec<i64> = per_block.keys().map(|(_, b)| *b).collect();
    let block_added: Vec<i64> = per_block.values().copied().collect();
    let ranks: Vec<i16> = (0..3i16)
        .filter(|&p| per_priority[p as usize] > 0)
        .collect();
    let added: Vec<i64> = ranks.iter().map(|&p| per_priority[p as usize]).collect();
    let bodies = created
        .iter()
        .map(|s| {
            let body = EventBody::IngestionCreated {
                ingestion_id: s.ingestion.id,
                priority: s.ingestion.priority,
                batches: s.ingestion.batches.len() as u32,
            };
            serde_json::to_string(&body)
                .map_err(|e| GroupError::Refused(StoreError::Corrupt(format!("event: {e}"))))
        })
        .collect::<Result<Vec<String>, _>>()?;
    let owners: Vec<String> = created.iter().map(|s| s.ingestion.id.to_string()).collect();
    let at: Vec<i64> = created
        .iter()
        .map(|s| s.ingestion.created_at.as_micros())
        .collect();
    let count = created.len() as i64;
    let lock_params: [&(dyn ToSql + Sync); 1] = [&ranks];
    let depth_params: [&(dyn ToSql + Sync); 2] = [&ranks, &added];
    let block_params: [&(dyn ToSql + Sync); 3] = [&block_priorities, &blocks, &block_added];
    let tenant_params: [&(dyn ToSql + Sync); 3] = [&tenant_priorities, &tenants, &tenant_added];
    let event_params: [&(dyn ToSql + Sync); 4] = [&count, &at, &owners, &bodies];
    let lock = tx.execute(&prepared.lock, &lock_params);
    let depth = tx.execute(&prepared.depth, &depth_params);
    let blocks = tx.execute(&prepared.blocks, &block_params);
    let tenant_depth = tx.execute(&prepared.tenants, &tenant_params);
    let events = tx.query_one(&prepared.events, &event_params);
    let (_, _, _, _, row) = futures::try_join!(lock, depth, blocks, tenant_depth, events)?;
    Ok(row.get::<_, i64>(0) as u64)
}
