//! SQLite backend: the embedded default.
//!
//! - One writer connection behind a *group commit* loop: writes queue up while the previous
//!   group runs, then all of them run in the next transaction and are acknowledged only once
//!   that group is durable. Durable acknowledgement without one fsync per request. (Should a
//!   write fail, the group runs again with each write in its own savepoint, so one failing
//!   write does not undo the others: see `run_group`.)
//! - The fsync is pipelined: WAL with `synchronous = NORMAL` makes `COMMIT` a write into the
//!   WAL file without a sync, and a second task (`sync_loop`) fsyncs the WAL file itself
//!   before answering the group's writers and publishing its events. While it syncs, the
//!   writer already runs the next group; one fsync covers every group committed before it
//!   began. A write is acknowledged only after an fsync that started after its `COMMIT`, so an
//!   acknowledged write survives kill -9 and power loss as with `synchronous = FULL`. (Readers
//!   may see a committed group a moment before it is synced; events, which clients resume
//!   from, are only served once synced.)
//! - A few read-only connections serve reads concurrently with the writer (WAL allows it).
//! - All SQLite calls run in `spawn_blocking`, which also keeps tokio's paused test clock
//!   from jumping while the database works.
//!
//! `sqlite::memory:` uses one connection for everything (each in-memory connection would be
//! a separate database).

use super::{
    ending_event, failure_event, Admission, BatchRecord, Claim, ClaimedBatch, Completion,
    DispatchRecord, IdempotencyKey, IngestionRecord, Inserted, NewIngestionRecord, QueuePlace,
    QueueRecord, Store, StoreError, IDEMPOTENCY_RETENTION,
};
use crate::domain::{
    BatchStatus, ClaimFacts, Event, EventBody, IdResult, Priority, StatusCounts, Timestamp,
};
use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::Duration,
};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

/// Migrations in order; `PRAGMA user_version` records how many are applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/sqlite/0001_init.sql"),
    include_str!("../../../migrations/sqlite/0002_events.sql"),
    include_str!("../../../migrations/sqlite/0003_recent_dispatches.sql"),
    include_str!("../../../migrations/sqlite/0004_idempotency_keys.sql"),
    include_str!("../../../migrations/sqlite/0005_waiting_counter.sql"),
    include_str!("../../../migrations/sqlite/0006_pause.sql"),
    include_str!("../../../migrations/sqlite/0007_rate_override.sql"),
    include_str!("../../../migrations/sqlite/0008_cancel.sql"),
    include_str!("../../../migrations/sqlite/0009_failures.sql"),
    include_str!("../../../migrations/sqlite/0010_queue_depth.sql"),
    include_str!("../../../migrations/sqlite/0011_range_checks.sql"),
];

/// Events kept in the log; older ones are pruned as batches complete. A client that was away
/// for longer than this many events reloads instead of resuming.
const EVENT_RETENTION: i64 = 100_000;

/// Upper bound on writes grouped into one transaction (bounds the latency of the group).
const MAX_GROUP: usize = 512;
const READERS: usize = 4;

const WAITING: i64 = 0;
const TRIGGERED: i64 = 1;
const COMPLETED: i64 = 2;
const CANCELLED: i64 = 3;
const FAILED: i64 = 4;

type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type Job = Box<dyn WriteJob>;

/// A write queued for the next group transaction.
trait WriteJob: Send {
    /// Run inside the group's transaction; say whether it succeeded. It may run again (after
    /// the group was rolled back): only the last run's outcome is answered.
    fn run(&mut self, conn: &Connection) -> bool;
    /// How to answer the caller, with the last run's outcome, once the commit's is known.
    fn into_reply(self: Box<Self>) -> Reply;
    /// Answer without running (the group's transaction could not begin).
    fn fail(self: Box<Self>, error: StoreError);
}

struct Write<T, F> {
    f: F,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> WriteJob for Write<T, F>
where
    T: Send + 'static,
    F: FnMut(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let outcome = (self.f)(conn);
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn into_reply(self: Box<Self>) -> Reply {
        let Write { outcome, reply, .. } = *self;
        let outcome =
            outcome.unwrap_or_else(|| Err(StoreError::Unavailable("the write did not run".into())));
        Box::new(move |commit: Result<(), StoreError>| {
            let _ = reply.send(commit.and(outcome));
        })
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    /// Set when an fsync failed: what was written may not be on disk, so every later write is
    /// refused until a restart (the WAL is then recovered from what the disk really holds).
    broken: Arc<AtomicBool>,
    readers: Arc<Vec<Arc<Mutex<Connection>>>>,
    next_reader: AtomicUsize,
    events: watch::Receiver<u64>,
    /// Held for the store's life: one process per database file (see `open_file`).
    _owner: Option<std::fs::File>,
}

impl SqliteStore {
    /// Open (creating if missing) a database file and bring its schema up to date.
    ///
    /// The file belongs to this process alone while the store lives: an exclusive lock on
    /// `<file>.lock` (released by the OS even on kill -9) keeps a second sluice from taking
    /// over batches this one has in flight, which would break "at most one in flight".
    pub async fn open_file(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let (owner, writer, readers, latest, wal) = blocking(move || {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let owner = lock_owner(&path)?;
            let writer = Connection::open(&path).map_err(unavailable)?;
            writer
                .execute_batch(
                    "PRAGMA journal_mode = WAL;
                     PRAGMA synchronous = NORMAL;
                     PRAGMA temp_store = MEMORY;
                     PRAGMA cache_size = -32768;
                     PRAGMA foreign_keys = ON;
                     PRAGMA busy_timeout = 5000;",
                )
                .map_err(unavailable)?;
            migrate(&writer)?;
            // The migrations wrote, so the WAL file exists; it stays until the last connection
            // closes. Its directory entry is made durable once, here.
            let wal = wal_file(&path)?;
            let latest = latest_event(&writer)?;
            let readers = (0..READERS)
                .map(|_| {
                    let conn = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(unavailable)?;
                    conn.execute_batch("PRAGMA busy_timeout = 5000;")
                        .map_err(unavailable)?;
                    Ok(Arc::new(Mutex::new(conn)))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok((owner, Arc::new(Mutex::new(writer)), readers, latest, wal))
        })
        .await?;
        Ok(Self::start(writer, readers, latest, Some(owner), Some(wal)))
    }

    /// A throw-away database that lives as long as this store.
    pub async fn open_memory() -> Result<Self, StoreError> {
        let (writer, latest) = blocking(|| {
            let conn = Connection::open_in_memory().map_err(unavailable)?;
            conn.execute_batch("PRAGMA foreign_keys = ON;")
                .map_err(unavailable)?;
            migrate(&conn)?;
            let latest = latest_event(&conn)?;
            Ok((Arc::new(Mutex::new(conn)), latest))
        })
        .await?;
        Ok(Self::start(
            writer.clone(),
            vec![writer],
            latest,
            None,
            None,
        ))
    }

    fn start(
        writer: Arc<Mutex<Connection>>,
        readers: Vec<Arc<Mutex<Connection>>>,
        // Where the event feed starts: the newest event already in the database.
        latest_event: u64,
        owner: Option<std::fs::File>,
        // The WAL file to fsync after each commit; `None` for a database in memory.
        wal: Option<std::fs::File>,
    ) -> Self {
        let (jobs, rx) = mpsc::channel(4 * MAX_GROUP);
        let (feed, events) = watch::channel(latest_event);
        let broken = Arc::new(AtomicBool::new(false));
        let syncer = wal.map(|wal| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(sync_loop(Arc::new(wal), rx, feed.clone(), broken.clone()));
            tx
        });
        tokio::spawn(group_commit(writer, rx, feed, syncer, broken.clone()));
        Self {
            jobs,
            broken,
            readers: Arc::new(readers),
            next_reader: AtomicUsize::new(0),
            events,
            _owner: owner,
        }
    }

    /// Run `f` in the next group transaction; answer after the group committed.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(Write {
            f,
            outcome: None,
            reply,
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the write was abandoned".into()))?
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        let conn = self.readers[i].clone();
        blocking(move || f(&lock(&conn))).await
    }
}

/// A committed group waiting for the fsync that makes it durable.
struct Committed {
    replies: Vec<Reply>,
    /// The newest event id once the group is durable (0 if the group could not begin).
    latest: u64,
}

/// The group-commit loop: owns the writer connection until every `SqliteStore` handle is gone.
async fn group_commit(
    conn: Arc<Mutex<Connection>>,
    mut rx: mpsc::Receiver<Job>,
    feed: watch::Sender<u64>,
    syncer: Option<mpsc::UnboundedSender<Committed>>,
    broken: Arc<AtomicBool>,
) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if broken.load(Ordering::Acquire) {
            for job in jobs {
                job.fail(StoreError::Unavailable(BROKEN.into()));
            }
            continue;
        }
        let conn = conn.clone();
        // If the blocking task panics, its replies are dropped and every caller of the group
        // gets "abandoned"; the next group starts with a clean transaction state.
        let Ok((committed, outcome)) =
            tokio::task::spawn_blocking(move || run_group(&lock(&conn), jobs)).await
        else {
            continue;
        };
        match (outcome, &syncer) {
            // Durable once the sync thread's next fsync returns.
            (Ok(()), Some(syncer)) => {
                if let Err(unsent) = syncer.send(committed) {
                    for reply in unsent.0.replies {
                        reply(Err(StoreError::Unavailable(BROKEN.into())));
                    }
                }
            }
            // In memory there is nothing to sync.
            (Ok(()), None) => {
                advance(&feed, committed.latest);
                for reply in committed.replies {
                    reply(Ok(()));
                }
            }
            (Err(e), _) => {
                for reply in committed.replies {
                    reply(Err(e.clone()));
                }
            }
        }
    }
}

const BROKEN: &str = "an fsync of the database failed; writes are refused until sluice restarts";

/// Run one group in one transaction and commit it (without waiting for the disk).
///
/// All writes run in one transaction, without savepoints (a savepoint copies every page a
/// write touches to a statement journal first: ~8% of the writer's CPU). Should one fail, the
/// group is rolled back and run again with each write in its own savepoint, so the failing one
/// is undone without undoing the others.
fn run_group(conn: &Connection, jobs: Vec<Job>) -> (Committed, Result<(), StoreError>) {
    let mut committed = Committed {
        replies: Vec::with_capacity(jobs.len()),
        latest: 0,
    };
    if !conn.is_autocommit() {
        // Left open by a panic in an earlier group.
        let _ = conn.execute_batch("ROLLBACK");
    }
    let begin = |jobs: Vec<Job>| match run_cached(conn, "BEGIN IMMEDIATE") {
        Ok(_) => Some(jobs),
        Err(e) => {
            let err = unavailable(e);
            for job in jobs {
                job.fail(err.clone());
            }
            None
        }
    };
    let Some(mut jobs) = begin(jobs) else {
        return (committed, Ok(()));
    };
    if jobs.iter_mut().all(|job| job.run(conn)) {
        committed.replies = jobs.into_iter().map(|job| job.into_reply()).collect();
    } else {
        let _ = run_cached(conn, "ROLLBACK");
        let Some(jobs) = begin(jobs) else {
            return (committed, Ok(()));
        };
        for mut job in jobs {
            if let Err(e) = run_cached(conn, "SAVEPOINT job") {
                job.fail(unavailable(e));
                continue;
            }
            if !job.run(conn) {
                let _ = run_cached(conn, "ROLLBACK TO job");
            }
            let _ = run_cached(conn, "RELEASE job");
            committed.replies.push(job.into_reply());
        }
    }
    // The feed must move before any write of the group is acknowledged (status reads are
    // remembered until it moves), so a group whose newest event cannot be read is undone.
    let commit = latest_event(conn).and_then(|latest| {
        committed.latest = latest;
        run_cached(conn, "COMMIT").map(drop).map_err(unavailable)
    });
    if commit.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    (committed, commit)
}

/// A statement without parameters or rows, prepared once per connection.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute([])
}

/// The sync loop: fsync the WAL file for every committed group (one fsync for all groups
/// that committed while the previous one ran), then answer their writers and publish their
/// events. Groups arrive in commit order, so the event feed only moves forward. (The fsync
/// runs in `spawn_blocking`, like every SQLite call, so a paused test clock waits for it.)
async fn sync_loop(
    wal: Arc<std::fs::File>,
    mut rx: mpsc::UnboundedReceiver<Committed>,
    feed: watch::Sender<u64>,
    broken: Arc<AtomicBool>,
) {
    while let Some(first) = rx.recv().await {
        let mut groups = vec![first];
        while let Ok(more) = rx.try_recv() {
            groups.push(more);
        }
        let synced = if broken.load(Ordering::Acquire) {
            Err(StoreError::Unavailable(BROKEN.into()))
        } else {
            let wal = wal.clone();
            match tokio::task::spawn_blocking(move || wal.sync_data()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => {
                    broken.store(true, Ordering::Release);
                    tracing::error!(error = %e, "fsync of the SQLite WAL failed; refusing writes until restart");
                    Err(StoreError::Unavailable(BROKEN.into()))
                }
                Err(e) => Err(StoreError::Unavailable(format!(
                    "the sync task failed: {e}"
                ))),
            }
        };
        if synced.is_ok() {
            advance(&feed, groups.iter().map(|g| g.latest).max().unwrap_or(0));
        }
        for group in groups {
            for reply in group.replies {
                reply(synced.clone());
            }
        }
    }
}

/// Open `<db>-wal` for syncing, and make its directory entry durable.
fn wal_file(db: &Path) -> Result<std::fs::File, StoreError> {
    let wal = beside(
        db,
        "-wal",
        std::fs::OpenOptions::new().read(true).write(true),
    )?;
    let dir = match db.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir.to_path_buf(),
        None => std::path::PathBuf::from("."),
    };
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .and_then(|()| wal.sync_data())
        .map_err(|e| StoreError::Unavailable(format!("cannot sync {}: {e}", dir.display())))?;
    Ok(wal)
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_ingestion(
        &self,
        ingestion: NewIngestionRecord,
        admission: Admission,
    ) -> Result<Inserted, StoreError> {
        self.write(move |conn| {
            let new = ingestion.batches.len() as i64;
            if let Some(max) = admission.max_waiting {
                let waiting: i64 = conn
                    .prepare_cached("SELECT SUM(waiting) FROM queue_depth")
                    .and_then(|mut st| st.query_row([], |r| r.get(0)))
                    .map_err(unavailable)?;
                if waiting.saturating_add(new) > max as i64 {
                    // A retry of work already accepted is answered even when the queue is full.
                    let replay = match &admission.key {
                        Some(key) => seen_key(conn, key, ingestion.created_at)?,
                        None => None,
                    };
                    return Ok(replay.unwrap_or(Inserted::QueueFull {
                        waiting: waiting as u64,
                    }));
                }
            }
            if let Some(key) = &admission.key {
                if let Some(seen) = remember_key(conn, key, &ingestion)? {
                    return Ok(seen);
                }
            }
            conn.prepare_cached(
                "UPDATE queue_depth SET waiting = waiting + ?1 WHERE priority = ?2",
            )
            .and_then(|mut st| st.execute([new, ingestion.priority.rank()]))
            .map_err(unavailable)?;
            conn.prepare_cached(
                "INSERT INTO ingestions (id, priority, created_at) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    ingestion.id.to_string(),
                    ingestion.priority.rank(),
                    ingestion.created_at.as_micros()
                ])
            })
            .map_err(unavailable)?;
            let seq = conn.last_insert_rowid();
            let mut insert = conn
                .prepare_cached(
                    "INSERT INTO batches (id, ingestion_seq, position, priority, ids)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(unavailable)?;
            for (position, batch) in ingestion.batches.iter().enumerate() {
                insert
                    .execute(params![
                        batch.id.to_string(),
                        seq,
                        position as i64,
                        ingestion.priority.rank(),
                        ids_json(&batch.ids)
                    ])
                    .map_err(unavailable)?;
            }
            append_event(
                conn,
                ingestion.created_at,
                &EventBody::IngestionCreated {
                    ingestion_id: ingestion.id,
                    priority: ingestion.priority,
                    batches: ingestion.batches.len() as u32,
                },
            )?;
            Ok(Inserted::Created)
        })
        .await
    }

    async fn ingestion(&self, id: Uuid) -> Result<Option<IngestionRecord>, StoreError> {
        self.read(move |conn| {
            let tx = conn.unchecked_transaction().map_err(unavailable)?;
            let head = tx
                .prepare_cached(&format!("{HEAD} WHERE id = ?1"))
                .and_then(|mut st| st.query_row([id.to_string()], Head::of).optional())
                .map_err(unavailable)?;
            head.map(|head| ingestion_of(&tx, head)).transpose()
        })
        .await
    }

    async fn claim_next(
        &self,
        now: Timestamp,
        interval: Duration,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        self.write(move |conn| claim(conn, now, interval, lease))
            .await
    }

    async fn renew_lease(
        &self,
        batch_id: Uuid,
        attempt: u32,
        now: Timestamp,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let until = now.plus(lease);
        self.write(move |conn| {
            // Only a live lease is extended: once it has run out, the batch may already
            // belong to the next claim, and its holder must stop.
            let changed = conn
                .prepare_cached(
                    "UPDATE batches SET lease_until = ?1
                     WHERE id = ?2 AND attempt = ?3 AND status = 1 AND lease_until > ?4",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        until.as_micros(),
                        batch_id.to_string(),
                        attempt,
                        now.as_micros()
                    ])
                })
                .map_err(unavailable)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn complete(
        &self,
        batch_id: Uuid,
        attempt: u32,
        at: Timestamp,
        results: Vec<IdResult>,
    ) -> Result<Completion, StoreError> {
        let results = serde_json::to_string(&results)
            .map_err(|e| StoreError::Corrupt(format!("results: {e}")))?;
        self.write(move |conn| {
            let done: Option<(i64, i64, String)> = conn
                .prepare_cached(
                    "UPDATE batches
                     SET status = 2, completed_at = ?1, results = ?2, lease_until = NULL,
                         error = NULL, retry_at = NULL
                     WHERE id = ?3 AND attempt = ?4 AND status = 1
                     RETURNING ingestion_seq, position,
                               (SELECT id FROM ingestions WHERE seq = ingestion_seq)",
                )
                .and_then(|mut st| {
                    st.query_row(
                        params![at.as_micros(), results, batch_id.to_string(), attempt],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()
                })
                .map_err(unavailable)?;
            let Some((seq, position, ingestion_id)) = done else {
                return Ok(Completion::Fenced);
            };
            let ingestion_id = uuid_of(&ingestion_id)?;
            append_event(
                conn,
                at,
                &EventBody::BatchCompleted {
                    ingestion_id,
                    batch_id,
                    position: position as u32,
                },
            )?;
            if let Some(end) = ending(conn, seq, ingestion_id)? {
                append_event(conn, at, &end)?;
            }
            conn.prepare_cached("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?1")
                .and_then(|mut st| st.execute([EVENT_RETENTION]))
                .map_err(unavailable)?;
            Ok(Completion::Completed)
        })
        .await
    }

    async fn fail(
        &self,
        batch_id: Uuid,
        attempt: u32,
        at: Timestamp,
        error: String,
        retry_at: Option<Timestamp>,
    ) -> Result<Completion, StoreError> {
        self.write(move |conn| {
            let retry = retry_at.map(Timestamp::as_micros);
            let done: Option<(i64, i64, String)> = conn
                .prepare_cached(
                    "UPDATE batches
                     SET status = CASE WHEN ?1 IS NULL THEN 4 ELSE 0 END, retry_at = ?1,
                         error = ?2, lease_until = NULL,
                         completed_at = CASE WHEN ?1 IS NULL THEN ?3 END
                     WHERE id = ?4 AND attempt = ?5 AND status = 1
                     RETURNING ingestion_seq, position,
                               (SELECT id FROM ingestions WHERE seq = ingestion_seq)",
                )
                .and_then(|mut st| {
                    st.query_row(
                        params![retry, error, at.as_micros(), batch_id.to_string(), attempt],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()
                })
                .map_err(unavailable)?;
            let Some((seq, position, ingestion_id)) = done else {
                return Ok(Completion::Fenced);
            };
            let ingestion_id = uuid_of(&ingestion_id)?;
            let position = position as u32;
            if retry_at.is_some() {
                one_more_waiting(conn, batch_id)?;
            }
            let error = error.clone();
            let body = failure_event(ingestion_id, batch_id, position, attempt, error, retry_at);
            append_event(conn, at, &body)?;
            if let Some(end) = ending(conn, seq, ingestion_id)? {
                append_event(conn, at, &end)?;
            }
            Ok(Completion::Completed)
        })
        .await
    }

    async fn requeue(&self, batch_id: Uuid, at: Timestamp) -> Result<Option<bool>, StoreError> {
        self.write(move |conn| {
            let found: Option<(i64, i64, String)> = conn
                .prepare_cached(
                    "SELECT status, position,
                            (SELECT id FROM ingestions WHERE seq = ingestion_seq)
                     FROM batches WHERE id = ?1",
                )
                .and_then(|mut st| {
                    st.query_row([batch_id.to_string()], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()
                })
                .map_err(unavailable)?;
            let Some((status, position, ingestion_id)) = found else {
                return Ok(None);
            };
            if status != FAILED {
                return Ok(Some(false));
            }
            conn.prepare_cached(
                "UPDATE batches SET status = 0, retry_at = NULL, completed_at = NULL
                 WHERE id = ?1",
            )
            .and_then(|mut st| st.execute([batch_id.to_string()]))
            .map_err(unavailable)?;
            one_more_waiting(conn, batch_id)?;
            append_event(
                conn,
                at,
                &EventBody::BatchRequeued {
                    ingestion_id: uuid_of(&ingestion_id)?,
                    batch_id,
                    position: position as u32,
                },
            )?;
            Ok(Some(true))
        })
        .await
    }

    async fn cancel(&self, ingestion: Uuid, at: Timestamp) -> Result<Option<u32>, StoreError> {
        self.write(move |conn| {
            let seq: Option<i64> = conn
                .prepare_cached("SELECT seq FROM ingestions WHERE id = ?1")
                .and_then(|mut st| {
                    st.query_row([ingestion.to_string()], |r| r.get(0))
                        .optional()
                })
                .map_err(unavailable)?;
            let Some(seq) = seq else {
                return Ok(None);
            };
            let cancelled = conn
                .prepare_cached(
                    "UPDATE batches SET status = 3 WHERE ingestion_seq = ?1 AND status = 0",
                )
                .and_then(|mut st| st.execute([seq]))
                .map_err(unavailable)? as i64;
            if cancelled == 0 {
                return Ok(Some(0));
            }
            conn.prepare_cached(
                "UPDATE queue_depth SET waiting = waiting - ?1
                 WHERE priority = (SELECT priority FROM ingestions WHERE seq = ?2)",
            )
            .and_then(|mut st| st.execute([cancelled, seq]))
            .map_err(unavailable)?;
            conn.prepare_cached(
                "UPDATE ingestions SET cancelled_at = COALESCE(cancelled_at, ?1) WHERE seq = ?2",
            )
            .and_then(|mut st| st.execute([at.as_micros(), seq]))
            .map_err(unavailable)?;
            append_event(
                conn,
                at,
                &EventBody::BatchesCancelled {
                    ingestion_id: ingestion,
                    batches: cancelled as u32,
                },
            )?;
            if let Some(end) = ending(conn, seq, ingestion)? {
                append_event(conn, at, &end)?;
            }
            Ok(Some(cancelled as u32))
        })
        .await
    }

    async fn recover_abandoned(&self) -> Result<u64, StoreError> {
        // One process owns a SQLite database, so whatever is triggered now was left by a
        // process that died: expire its lease and the next claim takes it.
        self.write(|conn| {
            let n = conn
                .execute("UPDATE batches SET lease_until = 0 WHERE status = 1", [])
                .map_err(unavailable)?;
            Ok(n as u64)
        })
        .await
    }

    async fn last_start(&self) -> Result<Option<Timestamp>, StoreError> {
        self.read(|conn| Ok(slot(conn)?.last_start)).await
    }

    async fn recent_ingestions(&self, limit: usize) -> Result<Vec<IngestionRecord>, StoreError> {
        self.read(move |conn| {
            let tx = conn.unchecked_transaction().map_err(unavailable)?;
            let heads = tx
                .prepare_cached(&format!("{HEAD} ORDER BY seq DESC LIMIT ?1"))
                .and_then(|mut st| {
                    st.query_map([limit as i64], Head::of)?
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(unavailable)?;
            heads
                .into_iter()
                .map(|head| ingestion_of(&tx, head))
                .collect()
        })
        .await
    }

    async fn queue(&self, recent: usize) -> Result<QueueRecord, StoreError> {
        self.read(move |conn| {
            let tx = conn.unchecked_transaction().map_err(unavailable)?;
            let mut waiting = [0u64; 3];
            let counts = tx
                .prepare_cached("SELECT priority, waiting FROM queue_depth")
                .and_then(|mut st| {
                    st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(unavailable)?;
            for (rank, count) in counts {
                let slot = usize::try_from(rank)
                    .ok()
                    .and_then(|rank| waiting.get_mut(rank))
                    .ok_or_else(|| StoreError::Corrupt(format!("priority {rank}")))?;
                *slot = count as u64;
            }
            let in_flight = dispatches(
                &tx,
                concat!("WHERE b.status = 1 ORDER BY ", dispatch_order!(b)),
                i64::MAX,
            )?;
            let recent = dispatches(
                &tx,
                "WHERE b.started_at IS NOT NULL ORDER BY b.started_at DESC",
                recent as i64,
            )?;
            // The first waiting batch of each priority (three index seeks) holds the oldest.
            let oldest_waiting: Option<i64> = tx
                .prepare_cached(
                    concat!(
                        "SELECT MIN(created_at) FROM ingestions WHERE seq IN (
                           SELECT (SELECT ingestion_seq FROM batches WHERE status = 0 AND priority = p
                                   ORDER BY ",
                        dispatch_order!(),
                        " LIMIT 1)
                           FROM (SELECT 0 AS p UNION ALL SELECT 1 UNION ALL SELECT 2))"
                    ),
                )
                .and_then(|mut st| st.query_row([], |r| r.get(0)))
                .map_err(unavailable)?;
            let slot = slot(&tx)?;
            Ok(QueueRecord {
                waiting,
                in_flight,
                recent,
                last_start: slot.last_start,
                paused: slot.paused,
                rate_interval: slot.rate_interval,
                oldest_waiting: oldest_waiting.map(Timestamp::from_micros),
            })
        })
        .await
    }

    async fn queue_place(&self, ingestion: Uuid) -> Result<Option<QueuePlace>, StoreError> {
        self.read(move |conn| {
            let tx = conn.unchecked_transaction().map_err(unavailable)?;
            let head = tx
                .prepare_cached("SELECT seq, priority FROM ingestions WHERE id = ?1")
                .and_then(|mut st| {
                    st.query_row([ingestion.to_string()], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                    })
                    .optional()
                })
                .map_err(unavailable)?;
            let Some((seq, priority)) = head else {
                return Ok(None);
            };
            let ahead: i64 = tx
                .prepare_cached(
                    // Higher priorities from their counters; the same priority by counting
                    // the (earlier) waiting batches of the index range.
                    "SELECT (SELECT COALESCE(SUM(waiting), 0) FROM queue_depth WHERE priority < ?1)
                          + (SELECT COUNT(*) FROM batches
                             WHERE status = 0 AND priority = ?1 AND ingestion_seq < ?2)",
                )
                .and_then(|mut st| st.query_row(params![priority, seq], |r| r.get(0)))
                .map_err(unavailable)?;
            let in_flight_since: Option<i64> = tx
                .prepare_cached("SELECT MAX(started_at) FROM batches WHERE status = 1")
                .and_then(|mut st| st.query_row([], |r| r.get(0)))
                .map_err(unavailable)?;
            let slot = slot(&tx)?;
            Ok(Some(QueuePlace {
                ahead: ahead as u64,
                paused: slot.paused,
                rate_interval: slot.rate_interval,
                last_start: slot.last_start,
                in_flight_since: in_flight_since.map(Timestamp::from_micros),
            }))
        })
        .await
    }

    async fn events_after(
        &self,
        after: u64,
        ingestion: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        // Only events already synced to disk: a client resumes from the ids it saw, so it must
        // never see one that a power loss could still take back.
        let durable = *self.events.borrow() as i64;
        self.read(move |conn| {
            let map = |r: &rusqlite::Row<'_>| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            };
            let rows = match ingestion {
                None => conn
                    .prepare_cached(
                        "SELECT id, at, body FROM events WHERE id > ?1 AND id <= ?3
                         ORDER BY id LIMIT ?2",
                    )
                    .and_then(|mut st| {
                        st.query_map(params![after as i64, limit as i64, durable], map)?
                            .collect::<Result<Vec<_>, _>>()
                    }),
                Some(id) => conn
                    .prepare_cached(
                        "SELECT id, at, body FROM events WHERE ingestion_id = ?1 AND id > ?2
                         AND id <= ?4 ORDER BY id LIMIT ?3",
                    )
                    .and_then(|mut st| {
                        st.query_map(
                            params![id.to_string(), after as i64, limit as i64, durable],
                            map,
                        )?
                        .collect::<Result<Vec<_>, _>>()
                    }),
            }
            .map_err(unavailable)?;
            rows.into_iter()
                .map(|(id, at, body)| {
                    Ok(Event {
                        id: id as u64,
                        at: Timestamp::from_micros(at),
                        body: serde_json::from_str(&body)
                            .map_err(|e| StoreError::Corrupt(format!("event {id}: {e}")))?,
                    })
                })
                .collect()
        })
        .await
    }

    fn event_feed(&self) -> watch::Receiver<u64> {
        self.events.clone()
    }

    /// Every write goes through this process's one writer, which moves the feed first.
    fn feed_moves_with_every_write(&self) -> bool {
        true
    }

    async fn set_paused(&self, paused: bool, at: Timestamp) -> Result<bool, StoreError> {
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE dispatch_slot SET paused = ?1 WHERE id = 1 AND paused != ?1",
                )
                .and_then(|mut st| st.execute([paused]))
                .map_err(unavailable)?
                > 0;
            if changed {
                let body = match paused {
                    true => EventBody::DispatchPaused {},
                    false => EventBody::DispatchResumed {},
                };
                append_event(conn, at, &body)?;
            }
            Ok(changed)
        })
        .await
    }

    async fn set_rate_interval(
        &self,
        interval: Option<Duration>,
        effective_ms: u64,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            let us = interval.map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
            conn.prepare_cached("UPDATE dispatch_slot SET rate_interval = ?1 WHERE id = 1")
                .and_then(|mut st| st.execute([us]))
                .map_err(unavailable)?;
            append_event(
                conn,
                at,
                &EventBody::RateChanged {
                    rate_interval_ms: effective_ms,
                },
            )
        })
        .await
    }

    async fn check(&self) -> Result<(), StoreError> {
        if self.broken.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable(BROKEN.into()));
        }
        self.read(|conn| {
            let version: i64 = conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(unavailable)?;
            if version as usize != MIGRATIONS.len() {
                return Err(StoreError::Migration(format!(
                    "schema version {version}, this build expects {}",
                    MIGRATIONS.len()
                )));
            }
            Ok(())
        })
        .await
    }
}

/// Dispatch order key: (priority, ingestion acceptance order, position).
type OrderKey = (i64, i64, i64);

/// The claim: read the facts the rule needs (`domain::decide`), apply its decision.
fn claim(
    conn: &Connection,
    now: Timestamp,
    interval: Duration,
    lease: Duration,
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
    let chosen = match Claim::decide(ClaimFacts {
        now,
        paused,
        last_start,
        interval,
        latest_lease: latest_lease.map(Timestamp::from_micros),
        candidate,
        next_retry: next_retry.map(Timestamp::from_micros),
    }) {
        Ok(claim) => return Ok(claim),
        Err(chosen) => chosen,
    };
    let (rank, seq, position) = chosen;
    let from_waiting = i64::from(waiting == Some(chosen));

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
    conn.prepare_cached("UPDATE queue_depth SET waiting = waiting - ?1 WHERE priority = ?2")
        .and_then(|mut st| st.execute([from_waiting, rank]))
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

/// The ingestion's last event, if nothing of it is left to run: failed, cancelled or
/// A batch went back to waiting (a retry, or an operator's requeue): count it in its priority.
fn one_more_waiting(conn: &Connection, batch_id: Uuid) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE queue_depth SET waiting = waiting + 1
         WHERE priority = (SELECT priority FROM batches WHERE id = ?1)",
    )
    .and_then(|mut st| st.execute([batch_id.to_string()]))
    .map_err(unavailable)?;
    Ok(())
}

/// The ingestion's last event, if nothing of it is left to run (see `ending_event`).
fn ending(
    conn: &Connection,
    seq: i64,
    ingestion_id: Uuid,
) -> Result<Option<EventBody>, StoreError> {
    let counts = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(status = 0), 0), COALESCE(SUM(status = 1), 0),
                    COALESCE(SUM(status = 2), 0), COALESCE(SUM(status = 3), 0),
                    COALESCE(SUM(status = 4), 0)
             FROM batches WHERE ingestion_seq = ?1",
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
fn remember_key(
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
fn seen_key(
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
struct Slot {
    last_start: Option<Timestamp>,
    paused: bool,
    rate_interval: Option<Duration>,
}

fn slot(conn: &Connection) -> Result<Slot, StoreError> {
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
struct Head {
    seq: i64,
    id: String,
    priority: i64,
    created_at: i64,
    cancelled_at: Option<i64>,
}

const HEAD: &str = "SELECT seq, id, priority, created_at, cancelled_at FROM ingestions";

impl Head {
    fn of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            seq: r.get(0)?,
            id: r.get(1)?,
            priority: r.get(2)?,
            created_at: r.get(3)?,
            cancelled_at: r.get(4)?,
        })
    }
}

/// An ingestion's record from its head row and its batches.
fn ingestion_of(conn: &Connection, head: Head) -> Result<IngestionRecord, StoreError> {
    let mut st = conn
        .prepare_cached(
            "SELECT id, position, ids, status, attempt, started_at, completed_at, results, error,
                    retry_at
             FROM batches WHERE ingestion_seq = ?1 ORDER BY position",
        )
        .map_err(unavailable)?;
    let rows = st
        .query_map([head.seq], |r| {
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
    let batches = rows
        .map(|row| row.map_err(unavailable)?.into_record())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(IngestionRecord {
        id: uuid_of(&head.id)?,
        priority: priority_of(head.priority)?,
        created_at: Timestamp::from_micros(head.created_at),
        cancelled_at: head.cancelled_at.map(Timestamp::from_micros),
        batches,
    })
}

/// Started batches chosen and ordered by `filter` (a fixed clause, never user input).
fn dispatches(
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

struct BatchRow {
    id: String,
    position: i64,
    ids: String,
    status: i64,
    attempt: i64,
    started_at: Option<i64>,
    completed_at: Option<i64>,
    results: Option<String>,
    error: Option<String>,
    retry_at: Option<i64>,
}

impl BatchRow {
    fn into_record(self) -> Result<BatchRecord, StoreError> {
        let status = match self.status {
            WAITING => BatchStatus::YetToStart,
            TRIGGERED => BatchStatus::Triggered,
            COMPLETED => BatchStatus::Completed,
            CANCELLED => BatchStatus::Cancelled,
            FAILED => BatchStatus::Failed,
            other => return Err(StoreError::Corrupt(format!("batch status {other}"))),
        };
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

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let applied: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(|e| StoreError::Migration(e.to_string()))? as usize;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Migration(format!(
            "the database is at schema version {applied}, newer than this build knows ({}); \
             run a newer sluice",
            MIGRATIONS.len()
        )));
    }
    if applied == MIGRATIONS.len() {
        return Ok(());
    }
    // A migration may rebuild a table others refer to (SQLite's way of changing a constraint):
    // foreign keys are off while it runs (the pragma does nothing inside a transaction) and
    // checked before it commits.
    let fail = |version: usize, e: String| {
        let _ = conn.execute_batch("ROLLBACK; PRAGMA foreign_keys = ON;");
        StoreError::Migration(format!("migration {version}: {e}"))
    };
    conn.execute_batch("PRAGMA foreign_keys = OFF;")
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let version = i + 1;
        conn.execute_batch(&format!("BEGIN IMMEDIATE;\n{sql}"))
            .map_err(|e| fail(version, e.to_string()))?;
        let broken: Option<String> = conn
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .optional()
            .map_err(|e| fail(version, e.to_string()))?;
        if let Some(table) = broken {
            return Err(fail(
                version,
                format!("it would leave rows of {table} without their parent"),
            ));
        }
        conn.execute_batch(&format!("PRAGMA user_version = {version};\nCOMMIT;"))
            .map_err(|e| fail(version, e.to_string()))?;
    }
    conn.execute_batch("PRAGMA foreign_keys = ON;")
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    Ok(())
}

fn append_event(conn: &Connection, at: Timestamp, body: &EventBody) -> Result<(), StoreError> {
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
fn advance(feed: &watch::Sender<u64>, latest: u64) {
    feed.send_if_modified(|seen| {
        let newer = latest > *seen;
        if newer {
            *seen = latest;
        }
        newer
    });
}

fn latest_event(conn: &Connection) -> Result<u64, StoreError> {
    conn.prepare_cached("SELECT COALESCE(MAX(id), 0) FROM events")
        .and_then(|mut st| st.query_row([], |r| r.get::<_, i64>(0)))
        .map(|id| id as u64)
        .map_err(unavailable)
}

/// Open `<db><suffix>` (the WAL, the lock file) with `options`.
fn beside(
    db: &Path,
    suffix: &str,
    options: &std::fs::OpenOptions,
) -> Result<std::fs::File, StoreError> {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    options
        .open(&name)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {name:?}: {e}")))
}

fn lock_owner(db: &Path) -> Result<std::fs::File, StoreError> {
    let file = beside(
        db,
        ".lock",
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true),
    )?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Unavailable(format!(
            "{} is in use by another sluice process (one process per SQLite database; \
             use PostgreSQL to run several)",
            db.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Unavailable(format!(
            "cannot lock {}.lock: {e}",
            db.display()
        ))),
    }
}

fn ids_json(ids: &[u64]) -> String {
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

fn ids_of(json: &str) -> Result<Vec<u64>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("batch ids: {e}")))
}

fn uuid_of(s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(|e| StoreError::Corrupt(format!("uuid {s:?}: {e}")))
}

fn priority_of(rank: i64) -> Result<Priority, StoreError> {
    Priority::from_rank(rank).ok_or_else(|| StoreError::Corrupt(format!("priority {rank}")))
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// A poisoned lock only means an earlier task panicked; the connection itself is still usable
/// (`run_group` rolls back any transaction that panic left open).
fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unavailable(format!("database task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database written by the build before migration `version`, holding one ingestion.
    fn database_at(path: &Path, version: usize, ingestion: Uuid) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
        for (i, sql) in MIGRATIONS[..version].iter().enumerate() {
            conn.execute_batch(&format!(
                "BEGIN;\n{sql}\nPRAGMA user_version = {};\nCOMMIT;",
                i + 1
            ))
            .unwrap();
        }
        conn.execute(
            "INSERT INTO ingestions (id, priority, created_at) VALUES (?1, 1, 5)",
            [ingestion.to_string()],
        )
        .unwrap();
        for (position, status) in [(0, COMPLETED), (1, WAITING)] {
            conn.execute(
                "INSERT INTO batches (id, ingestion_seq, position, priority, ids, status)
                 VALUES (?1, 1, ?2, 1, ?3, ?4)",
                params![
                    Uuid::now_v7().to_string(),
                    position,
                    ids_json(&[7, 8]),
                    status
                ],
            )
            .unwrap();
        }
    }

    fn add_waiting(priority: i64, n: i64) -> impl FnMut(&Connection) -> Result<(), StoreError> {
        move |conn| {
            conn.execute(
                "UPDATE queue_depth SET waiting = waiting + ?1 WHERE priority = ?2",
                [n, priority],
            )
            .map_err(unavailable)?;
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failing_write_is_undone_alone_and_the_rest_of_its_group_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_file(&dir.path().join("s.db"))
            .await
            .unwrap();
        // One task on one thread: all three are queued before the writer takes a group.
        let mut fails = add_waiting(1, 100);
        let (a, b, c) = tokio::join!(
            store.write(add_waiting(0, 1)),
            store.write(move |conn| {
                fails(conn)?;
                Err::<(), _>(StoreError::Corrupt("this write fails".into()))
            }),
            store.write(add_waiting(2, 1)),
        );
        assert!(a.is_ok() && c.is_ok());
        assert!(matches!(b, Err(StoreError::Corrupt(_))), "{b:?}");
        let depth = store
            .read(|conn| {
                conn.prepare("SELECT waiting FROM queue_depth ORDER BY priority")
                    .and_then(|mut st| {
                        st.query_map([], |r| r.get::<_, i64>(0))?
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .map_err(unavailable)
            })
            .await
            .unwrap();
        assert_eq!(
            depth,
            [1, 0, 1],
            "the failed write's change is gone, the others kept"
        );
    }

    #[tokio::test]
    async fn an_ingestion_stored_before_the_range_checks_is_read_back_after_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let id = Uuid::now_v7();
        database_at(&path, 10, id);

        let store = SqliteStore::open_file(&path).await.unwrap();
        let record = store.ingestion(id).await.unwrap().expect("kept");
        assert_eq!(record.priority, Priority::Medium);
        let statuses: Vec<_> = record.batches.iter().map(|b| b.status).collect();
        assert_eq!(statuses, [BatchStatus::Completed, BatchStatus::YetToStart]);
        assert_eq!(record.batches[1].ids, [7, 8]);
        drop(store);

        // The rebuilt tables still refuse what the old checks refused, and keep their links.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version as usize, MIGRATIONS.len());
        for bad in [
            "INSERT INTO ingestions (id, priority, created_at) VALUES ('x', 3, 1)",
            "UPDATE batches SET status = 5",
            "INSERT INTO batches (id, ingestion_seq, position, priority, ids)
             VALUES ('y', 99, 0, 1, '[1]')",
        ] {
            assert!(conn.execute(bad, []).is_err(), "{bad}");
        }
    }
}
