//! Group commit on PostgreSQL: one writer per replica, on its own connection, stores every
//! ingestion that arrived while the previous group committed in one transaction (multi-row
//! inserts from arrays, one `event_seq` advance), and answers each submission only after that
//! commit.
//!
//! The rows every writer in the cluster contends for (`queue_depth`, `event_seq`) are locked
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
use futures::future::{join_all, maybe_done, MaybeDone};
use futures::{FutureExt, TryStreamExt};
use std::{collections::HashMap, future::Future, pin::Pin};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{types::ToSql, Statement};

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

/// The writer loop: runs until every `PostgresStore` handle is gone.
pub(super) async fn group_commit(pool: Pool, mut rx: mpsc::Receiver<Submission>, feed: Arc<Feed>) {
    while let Some(first) = rx.recv().await {
        let mut ids = ids_in(&first);
        let mut group = vec![first];
        while group.len() < MAX_GROUP && ids < MAX_GROUP_IDS {
            match rx.try_recv() {
                Ok(next) => {
                    ids += ids_in(&next);
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        // A submission whose caller is gone (client disconnected) is not stored: nobody would
        // learn of it, and a retry without a key would store it twice.
        group.retain(|submission| !submission.reply.is_closed());
        if group.is_empty() {
            continue;
        }
        let mut outcome = store(&pool, &group, &feed).await;
        if matches!(outcome, Err(GroupError::Collided(_))) {
            outcome = store(&pool, &group, &feed).await;
        }
        match outcome {
            Ok(answers) => {
                for (submission, answer) in group.into_iter().zip(answers) {
                    let _ = submission.reply.send(Ok(answer));
                }
            }
            Err(GroupError::Refused(_) | GroupError::Collided(_)) if group.len() > 1 => {
                for submission in group {
                    let alone = std::slice::from_ref(&submission);
                    let answer = store(&pool, alone, &feed)
                        .await
                        .map(|mut answers| answers.remove(0))
                        .map_err(GroupError::into_store);
                    let _ = submission.reply.send(answer);
                }
            }
            Err(e) => {
                let e = e.into_store();
                for submission in group {
                    let _ = submission.reply.send(Err(e.clone()));
                }
            }
        }
    }
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
/// executing them, not parsing and planning them again; and only a prepared statement can be
/// pipelined: see `pipeline`).
struct Prepared {
    seqs: Statement,
    rows: Statement,
    keys: Statement,
    lock: Statement,
    depth: Statement,
    blocks: Statement,
    events: Statement,
}

impl Prepared {
    async fn on(client: &deadpool_postgres::Object) -> Result<Self, GroupError> {
        Ok(Self {
            seqs: client.prepare_cached(NEXT_SEQS).await?,
            rows: client.prepare_cached(INSERT_ROWS).await?,
            keys: client.prepare_cached(UPSERT_KEYS).await?,
            lock: client.prepare_cached(LOCK_DEPTH).await?,
            depth: client.prepare_cached(ADD_DEPTH).await?,
            blocks: client.prepare_cached(ADD_BLOCKS).await?,
            events: client.prepare_cached(APPEND_EVENTS).await?,
        })
    }
}

/// `$1` acceptance numbers (`seq`, the FIFO order within a priority) for a group's ingestions,
/// taken before its transaction (a sequence is not transactional: a group that fails leaves a
/// gap, nothing else). Knowing them, the writer counts the group in its blocks without reading
/// the rows back.
const NEXT_SEQS: &str =
    "SELECT nextval('ingestions_seq_seq') FROM generate_series(1, $1::int) ORDER BY 1";

/// The created ingestions (all their batches waiting) and all their batches.
const INSERT_ROWS: &str = "WITH ing AS (
           INSERT INTO ingestions (seq, id, priority, created_at, waiting)
           SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::smallint[], $4::bigint[], $5::int[]))
         INSERT INTO batches (id, ingestion_seq, position, priority, ids)
         SELECT b.id, b.seq, b.position, b.priority, ($12::bigint[])[b.lo:b.hi]
         FROM unnest($6::uuid[], $7::bigint[], $8::int[], $9::smallint[], $10::int[], $11::int[])
              AS b(id, seq, position, priority, lo, hi)";

/// The group's keys (a key still stored but past the retention of its submission is replaced).
const UPSERT_KEYS: &str =
    "INSERT INTO idempotency_keys (key, fingerprint, ingestion_id, created_at)
         SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::bigint[])
         ON CONFLICT (key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,
           ingestion_id = EXCLUDED.ingestion_id, created_at = EXCLUDED.created_at";

/// The waiting counts of the group's priorities, locked in priority order, as every writer and
/// claim locks them (no deadlock).
const LOCK_DEPTH: &str =
    "SELECT 1 FROM queue_depth WHERE priority = ANY($1) ORDER BY priority FOR UPDATE";

const ADD_DEPTH: &str = "UPDATE queue_depth q SET waiting = q.waiting + d.n
         FROM unnest($1::smallint[], $2::bigint[]) AS d(p, n) WHERE q.priority = d.p";

/// The group's events, with ids from `event_seq` under its row lock, held to commit: events
/// become visible in id order, across replicas.
const APPEND_EVENTS: &str =
    "WITH next AS (UPDATE event_seq SET last = last + $1 WHERE id = 1 RETURNING last),
         appended AS (
           INSERT INTO events (id, at, ingestion_id, body)
           SELECT next.last - $1 + e.ord, e.at, e.ingestion_id, e.body
           FROM next, unnest($2::bigint[], $3::text[], $4::text[]) WITH ORDINALITY
                AS e(at, ingestion_id, body, ord))
         SELECT last FROM next";

/// Store one group in one transaction and move the feed to its newest event once committed:
/// each submission's answer, in order. Whatever fails, the connection goes back to the pool
/// with no transaction open (or not at all).
async fn store(
    pool: &Pool,
    group: &[Submission],
    feed: &Feed,
) -> Result<Vec<Inserted>, GroupError> {
    let client = connection(pool).await.map_err(GroupError::Unavailable)?;
    let prepared = Prepared::on(&client).await?;
    let outcome = transaction(&client, &prepared, group).await;
    if outcome.is_err() && client.batch_execute("ROLLBACK").await.is_err() {
        // Whatever state it is in, it must not serve another group.
        drop(deadpool_postgres::Object::take(client));
    }
    let (answers, latest) = outcome?;
    if let Some(latest) = latest {
        feed.committed(latest);
    }
    Ok(answers)
}

/// The group's transaction: reads only where a decision needs them (keys, a waiting bound),
/// then every write and the COMMIT in one round trip. Returns the answers and, if anything was
/// stored, the newest event id.
async fn transaction(
    client: &tokio_postgres::Client,
    prepared: &Prepared,
    group: &[Submission],
) -> Result<(Vec<Inserted>, Option<u64>), GroupError> {
    let keyed = group.iter().any(|s| s.admission.key.is_some());
    let bounded = group.iter().any(|s| s.admission.max_waiting.is_some());
    let (seen, waiting) = match keyed || bounded {
        false => (HashMap::new(), 0),
        true => {
            client.batch_execute("BEGIN").await?;
            let seen = seen_keys(client, group).await?;
            let waiting = match bounded {
                // Locked to commit (in priority order, as every writer locks them), so no
                // other writer can pass the bound between this check and this commit.
                true => client
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
            (seen, waiting)
        }
    };
    let answers = admit(group, &seen, waiting);
    let created: Vec<&Submission> = group
        .iter()
        .zip(&answers)
        .filter(|(_, answer)| **answer == Inserted::Created)
        .map(|(s, _)| s)
        .collect();
    if created.is_empty() {
        if keyed || bounded {
            client.batch_execute("COMMIT").await?;
        }
        return Ok((answers, None));
    }
    let seqs: Vec<i64> = client
        .query(&prepared.seqs, &[&(created.len() as i32)])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let writes = Writes::of(&created, &seqs)?;
    let mut statements = Vec::new();
    if !(keyed || bounded) {
        statements.push(Box::pin(async move {
            client.batch_execute("BEGIN").await?;
            Ok(Vec::new())
        }) as Pending<'_>);
    }
    statements.extend(writes.statements(client, prepared));
    let results = pipeline(client, statements).await?;
    let latest = results
        .last()
        .and_then(|rows| rows.first())
        .map(|row| row.get::<_, i64>(0) as u64)
        .ok_or_else(|| GroupError::Refused(StoreError::Corrupt("no event id".into())))?;
    Ok((answers, Some(latest)))
}

/// A statement on its way (see `pipeline`).
type Pending<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send + 'a>>;

/// A prepared statement, sent when first polled.
fn send<'a>(
    client: &'a tokio_postgres::Client,
    statement: &'a Statement,
    params: Vec<&'a (dyn ToSql + Sync)>,
) -> Pending<'a> {
    Box::pin(async move {
        let rows = client.query_raw(statement, params).await?;
        rows.try_collect().await
    })
}

/// Send every statement, in order, then COMMIT, before waiting for any answer: one round trip,
/// and the rows every writer contends for are held only for the server's own work and the
/// commit. COMMIT goes out only once every statement before it has been sent (one the driver
/// refused to send must not let the others commit without it); a statement the server refuses
/// turns that COMMIT into a rollback. Each statement's rows, in order.
async fn pipeline(
    client: &tokio_postgres::Client,
    statements: Vec<Pending<'_>>,
) -> Result<Vec<Vec<Row>>, GroupError> {
    let mut sent: Vec<_> = statements.into_iter().map(maybe_done).collect();
    for statement in sent.iter_mut() {
        let _ = futures::poll!(&mut *statement);
        if let MaybeDone::Done(Err(_)) = statement {
            let Some(Err(e)) = Pin::new(statement).take_output() else {
                unreachable!("matched above")
            };
            // Not all sent: the caller rolls back.
            return Err(e.into());
        }
    }
    let commit = client.batch_execute("COMMIT");
    let ((), committed) = futures::join!(join_all(sent.iter_mut()).map(|_| ()), commit);
    let mut results = Vec::with_capacity(sent.len());
    for statement in sent {
        let mut statement = statement;
        match Pin::new(&mut statement).take_output() {
            Some(Ok(rows)) => results.push(rows),
            Some(Err(e)) => return Err(e.into()),
            None => unreachable!("joined"),
        }
    }
    committed?;
    Ok(results)
}

/// A key as stored: its request's fingerprint, its ingestion, when it was first seen.
type SeenKey = (String, Uuid, i64);

/// Lock the group's keys and read those already stored (expired ones are deleted first).
async fn seen_keys(
    client: &tokio_postgres::Client,
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
    client
        .execute(
            "SELECT pg_advisory_xact_lock(h) FROM (
           SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest($1::text[]) AS k ORDER BY h
         ) AS locks",
            &[&keys],
        )
        .await?;
    client
        .execute(
            "DELETE FROM idempotency_keys WHERE created_at < $1",
            &[&retention_horizon(oldest)],
        )
        .await?;
    let rows = client
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

/// A group's writes as the statements take them: parallel arrays, built once.
struct Writes<'g> {
    seqs: Vec<i64>,
    ids: Vec<Uuid>,
    ranks: Vec<i16>,
    times: Vec<i64>,
    counts: Vec<i32>,
    batch_ids: Vec<Uuid>,
    batch_seqs: Vec<i64>,
    positions: Vec<i32>,
    batch_ranks: Vec<i16>,
    lows: Vec<i32>,
    highs: Vec<i32>,
    /// Every batch's IDs in one flat array, each batch a slice of it.
    flat: Vec<i64>,
    key_names: Vec<&'g str>,
    key_fingerprints: Vec<&'g str>,
    key_owners: Vec<Uuid>,
    key_times: Vec<i64>,
    depth_ranks: Vec<i16>,
    depth_added: Vec<i64>,
    block_ranks: Vec<i16>,
    blocks: Vec<i64>,
    block_added: Vec<i64>,
    event_count: i64,
    event_times: Vec<i64>,
    event_owners: Vec<String>,
    event_bodies: Vec<String>,
}

impl<'g> Writes<'g> {
    fn of(created: &[&'g Submission], seqs: &[i64]) -> Result<Self, GroupError> {
        if seqs.len() != created.len() {
            return Err(GroupError::Refused(StoreError::Corrupt(
                "fewer acceptance numbers than ingestions".into(),
            )));
        }
        let mut w = Writes {
            seqs: seqs.to_vec(),
            ids: Vec::new(),
            ranks: Vec::new(),
            times: Vec::new(),
            counts: Vec::new(),
            batch_ids: Vec::new(),
            batch_seqs: Vec::new(),
            positions: Vec::new(),
            batch_ranks: Vec::new(),
            lows: Vec::new(),
            highs: Vec::new(),
            flat: Vec::new(),
            key_names: Vec::new(),
            key_fingerprints: Vec::new(),
            key_owners: Vec::new(),
            key_times: Vec::new(),
            depth_ranks: Vec::new(),
            depth_added: Vec::new(),
            block_ranks: Vec::new(),
            blocks: Vec::new(),
            block_added: Vec::new(),
            event_count: created.len() as i64,
            event_times: Vec::new(),
            event_owners: Vec::new(),
            event_bodies: Vec::new(),
        };
        let mut per_priority = [0i64; 3];
        let mut per_block: std::collections::BTreeMap<(i16, i64), i64> = Default::default();
        for (s, &seq) in created.iter().zip(seqs) {
            let ingestion = &s.ingestion;
            let rank = ingestion.priority.rank() as i16;
            let at = ingestion.created_at.as_micros();
            w.ids.push(ingestion.id);
            w.ranks.push(ingestion.priority.rank() as i16);
            w.times.push(at);
            w.counts.push(ingestion.batches.len() as i32);
            per_priority[rank as usize] += ingestion.batches.len() as i64;
            *per_block
                .entry((rank, codec::queue_block(seq)))
                .or_default() += ingestion.batches.len() as i64;
            for (position, NewBatchRecord { id, ids }) in ingestion.batches.iter().enumerate() {
                w.batch_ids.push(*id);
                w.batch_seqs.push(seq);
                w.positions.push(position as i32);
                w.batch_ranks.push(rank);
                w.lows.push(w.flat.len() as i32 + 1);
                w.flat.extend(ids.iter().map(|&id| id as i64));
                w.highs.push(w.flat.len() as i32);
            }
            if let Some(key) = &s.admission.key {
                w.key_names.push(&key.key);
                w.key_fingerprints.push(&key.fingerprint);
                w.key_owners.push(ingestion.id);
                w.key_times.push(at);
            }
            let body = EventBody::IngestionCreated {
                ingestion_id: ingestion.id,
                priority: ingestion.priority,
                batches: ingestion.batches.len() as u32,
            };
            w.event_bodies
                .push(serde_json::to_string(&body).map_err(|e| {
                    GroupError::Refused(StoreError::Corrupt(format!("event: {e}")))
                })?);
            w.event_owners.push(ingestion.id.to_string());
            w.event_times.push(at);
        }
        for (p, &n) in per_priority.iter().enumerate() {
            if n > 0 {
                w.depth_ranks.push(p as i16);
                w.depth_added.push(n);
            }
        }
        for ((rank, block), n) in per_block {
            w.block_ranks.push(rank);
            w.blocks.push(block);
            w.block_added.push(n);
        }
        Ok(w)
    }

    /// The group's statements in the order they must run: the rows (and keys), then the
    /// contended tail just before the commit: the waiting counts (per priority, then per
    /// block) and the events. The last one answers the newest event id.
    fn statements<'a>(
        &'a self,
        client: &'a tokio_postgres::Client,
        prepared: &'a Prepared,
    ) -> Vec<Pending<'a>> {
        let mut statements = vec![send(
            client,
            &prepared.rows,
            vec![
                &self.seqs,
                &self.ids,
                &self.ranks,
                &self.times,
                &self.counts,
                &self.batch_ids,
                &self.batch_seqs,
                &self.positions,
                &self.batch_ranks,
                &self.lows,
                &self.highs,
                &self.flat,
            ],
        )];
        if !self.key_names.is_empty() {
            statements.push(send(
                client,
                &prepared.keys,
                vec![
                    &self.key_names,
                    &self.key_fingerprints,
                    &self.key_owners,
                    &self.key_times,
                ],
            ));
        }
        statements.extend([
            send(client, &prepared.lock, vec![&self.depth_ranks]),
            send(
                client,
                &prepared.depth,
                vec![&self.depth_ranks, &self.depth_added],
            ),
            send(
                client,
                &prepared.blocks,
                vec![&self.block_ranks, &self.blocks, &self.block_added],
            ),
            send(
                client,
                &prepared.events,
                vec![
                    &self.event_count,
                    &self.event_times,
                    &self.event_owners,
                    &self.event_bodies,
                ],
            ),
        ]);
        statements
    }
}
