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
    ending_event, failure_event, failure_outcome, page_positions, Admission, AttemptRecord,
    AttemptsRecord, BatchRecord, Claim, ClaimedBatch, Completion, DispatchRecord, Housekept,
    IdPage, IdempotencyKey, IngestionRecord, Inserted, Lookup, NewIngestionRecord, PaceRecord,
    PlaceContext, QueuePlace, QueueRecord, Retention, Selection, Store, StoreError, SummaryRecord,
    IDEMPOTENCY_RETENTION,
};
use crate::domain::{
    candidate, decide, page_window, summary_window, Ahead, ClaimFacts, Event, EventBody, Fairness,
    IdResult, QueueKey, StatusCounts, TenantHead, TenantQueue, Timestamp, Turns, TOP_TENANTS,
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

mod claim;
mod files;
mod migrate;
mod rows;
mod writer;

use claim::*;
use files::*;
use migrate::*;
use rows::*;
use writer::*;

const READERS: usize = 4;
/// Most rows of each kind one housekeeping write deletes (about a millisecond of the writer).
const HOUSEKEEPING_SLICE: i64 = 1_000;

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

/// Waiting batches per priority, indexed by rank.
fn waiting_counts(conn: &Connection) -> Result<[u64; 3], StoreError> {
    let mut waiting = [0u64; 3];
    let counts = conn
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
    Ok(waiting)
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
                "INSERT INTO ingestions (id, priority, created_at, waiting, id_count, tenant)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    ingestion.id.to_string(),
                    ingestion.priority.rank(),
                    ingestion.created_at.as_micros(),
                    new,
                    ingestion.id_count() as i64,
                    ingestion.tenant.as_str()
                ])
            })
            .map_err(unavailable)?;
            let seq = conn.last_insert_rowid();
            waiting_moved(
                conn,
                ingestion.priority.rank(),
                ingestion.tenant.as_str(),
                seq,
                new,
            )?;
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
        replica: &str,
        fairness: Fairness,
    ) -> Result<Claim, StoreError> {
        let replica = replica.to_owned();
        self.write(move |conn| claim(conn, now, interval, lease, &replica, fairness))
            .await
    }

    async fn attempts(&self, batch_id: Uuid) -> Result<Option<AttemptsRecord>, StoreError> {
        self.read(move |conn| {
            let tx = conn.unchecked_transaction().map_err(unavailable)?;
            let id = batch_id.to_string();
            let batch: Option<(i64, i64)> = tx
                .prepare_cached("SELECT status, attempt FROM batches WHERE id = ?1")
                .and_then(|mut st| {
                    st.query_row([&id], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(unavailable)?;
            let Some((status, current)) = batch else {
                return Ok(None);
            };
            let rows = tx
                .prepare_cached(
                    "SELECT attempt, replica, started_at, finished_at, outcome, error, status_code
                     FROM attempts WHERE batch_id = ?1 ORDER BY attempt",
                )
                .and_then(|mut st| {
                    st.query_map([&id], |r| {
                        Ok(AttemptRecord {
                            attempt: r.get::<_, i64>(0)? as u32,
                            replica: r.get(1)?,
                            started_at: Timestamp::from_micros(r.get(2)?),
                            finished_at: r.get::<_, Option<i64>>(3)?.map(Timestamp::from_micros),
                            outcome: r.get(4)?,
                            error: r.get(5)?,
                            status_code: r.get::<_, Option<i64>>(6)?.map(|c| c as u16),
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()
                })
                .map_err(unavailable)?;
            Ok(Some(AttemptsRecord {
                running: (status == TRIGGERED).then_some(current as u32),
                attempts: rows,
            }))
        })
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
            moved(conn, seq, TRIGGERED, COMPLETED, 1, at)?;
            attempt_ended(conn, batch_id, attempt, at, "completed", None, None)?;
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
        status_code: Option<u16>,
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
            let to = if retry_at.is_some() { WAITING } else { FAILED };
            moved(conn, seq, TRIGGERED, to, 1, at)?;
            let outcome = failure_outcome(retry_at);
            attempt_ended(
                conn,
                batch_id,
                attempt,
                at,
                outcome,
                Some(&error),
                status_code,
            )?;
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
            let found: Option<(i64, i64, String, i64)> = conn
                .prepare_cached(
                    "SELECT status, position,
                            (SELECT id FROM ingestions WHERE seq = ingestion_seq), ingestion_seq
                     FROM batches WHERE id = ?1",
                )
                .and_then(|mut st| {
                    st.query_row([batch_id.to_string()], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .optional()
                })
                .map_err(unavailable)?;
            let Some((status, position, ingestion_id, seq)) = found else {
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
            moved(conn, seq, FAILED, WAITING, 1, at)?;
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
            moved(conn, seq, WAITING, CANCELLED, cancelled, at)?;
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

    async fn summaries(
        &self,
        selection: &Selection,
        window: u32,
        fairness: Fairness,
    ) -> Result<Vec<SummaryRecord>, StoreError> {
        let selection = selection.clone();
        self.read(move |conn| {
            let tx = conn.unchecked_transaction().map_err(unavailable)?;
            summaries(&tx, &selection, window, fairness)
        })
        .await
    }

    async fn find_ingestions(
        &self,
        lookup: &Lookup,
        limit: usize,
    ) -> Result<Vec<Uuid>, StoreError> {
        let (sql, text) = match lookup {
            Lookup::Id(id) => (
                "SELECT id FROM ingestions WHERE id = ?1
                 UNION ALL
                 SELECT i.id FROM batches b JOIN ingestions i ON i.seq = b.ingestion_seq
                 WHERE b.id = ?1
                 LIMIT ?2",
                id.to_string(),
            ),
            // Stored ids are lowercase and hyphenated; their last group has 12 digits.
            Lookup::Suffix(end) => (
                "SELECT id FROM ingestions WHERE substr(id, -length(?1)) = ?1
                 ORDER BY seq DESC LIMIT ?2",
                end.clone(),
            ),
        };
        self.read(move |conn| {
            let ids: Vec<String> = conn
                .prepare_cached(sql)
                .and_then(|mut st| {
                    st.query_map(params![text, limit as i64], |r| r.get(0))?
                        .collect()
                })
                .map_err(unavailable)?;
            ids.iter().map(|id| uuid_of(id)).collect()
        })
        .await
    }

    async fn id_page(
        &self,
        ingestion: Uuid,
        offset: u64,
        limit: u64,
    ) -> Result<Option<IdPage>, StoreError> {
        self.read(move |conn| {
            let tx = conn.unchecked_transaction().map_err(unavailable)?;
            let head: Option<(i64, i64, Option<i64>)> = tx
                .prepare_cached(
                    "SELECT seq, id_count,
                            (SELECT json_array_length(ids) FROM batches
                             WHERE ingestion_seq = ingestions.seq AND position = 0)
                     FROM ingestions WHERE id = ?1",
                )
                .and_then(|mut st| {
                    st.query_row([ingestion.to_string()], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()
                })
                .map_err(unavailable)?;
            let Some((seq, id_count, size)) = head else {
                return Ok(None);
            };
            let (id_count, size) = (id_count.max(0) as u64, size.unwrap_or(0).max(0) as u64);
            let positions = page_positions(id_count, size, offset, limit);
            Ok(Some(IdPage {
                id_count,
                first_offset: u64::from(positions.start) * size,
                batches: batches_of(&tx, seq, positions)?,
            }))
        })
        .await
    }

    async fn queue(&self, recent: usize) -> Result<QueueRecord, StoreError> {
        self.read(move |conn| {
            let tx = conn.unchecked_transaction().map_err(unavailable)?;
            let waiting = waiting_counts(&tx)?;
            let mut tenants: [Vec<(String, u64)>; 3] = Default::default();
            for (rank, top) in tenants.iter_mut().enumerate() {
                *top = tx
                    .prepare_cached(
                        "SELECT tenant, waiting FROM tenant_depth WHERE priority = ?1
                         ORDER BY waiting DESC, tenant LIMIT ?2",
                    )
                    .and_then(|mut st| {
                        st.query_map(params![rank as i64, TOP_TENANTS as i64], |r| {
                            Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64))
                        })?
                        .collect::<Result<Vec<_>, _>>()
                    })
                    .map_err(unavailable)?;
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
                tenants,
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

    async fn pace(&self, since: Timestamp, limit: usize) -> Result<PaceRecord, StoreError> {
        self.read(move |conn| {
            let tx = conn.unchecked_transaction().map_err(unavailable)?;
            let waiting = waiting_counts(&tx)?;
            let rows = tx
                .prepare_cached(
                    "SELECT started_at, priority, id FROM batches INDEXED BY batches_by_start
                     WHERE started_at IS NOT NULL AND started_at >= ?1
                     ORDER BY started_at DESC LIMIT ?2",
                )
                .and_then(|mut st| {
                    st.query_map(
                        params![since.as_micros(), i64::try_from(limit).unwrap_or(i64::MAX)],
                        |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, i64>(1)?,
                                r.get::<_, String>(2)?,
                            ))
                        },
                    )?
                    .collect::<Result<Vec<_>, _>>()
                })
                .map_err(unavailable)?;
            let starts = rows
                .into_iter()
                .map(|(at, rank, id)| {
                    Ok((
                        Timestamp::from_micros(at),
                        super::codec::priority_of(rank)?,
                        uuid_of(&id)?,
                    ))
                })
                .collect::<Result<_, StoreError>>()?;
            let slot = slot(&tx)?;
            Ok(PaceRecord {
                waiting,
                starts,
                paused: slot.paused,
                rate_interval: slot.rate_interval,
            })
        })
        .await
    }

    async fn queue_place(
        &self,
        ingestion: Uuid,
        fairness: Fairness,
    ) -> Result<Option<QueuePlace>, StoreError> {
        self.read(move |conn| {
            let tx = conn.unchecked_transaction().map_err(unavailable)?;
            let head = tx
                .prepare_cached("SELECT seq, priority, tenant FROM ingestions WHERE id = ?1")
                .and_then(|mut st| {
                    st.query_row([ingestion.to_string()], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, String>(2)?,
                        ))
                    })
                    .optional()
                })
                .map_err(unavailable)?;
            let Some((seq, priority, tenant)) = head else {
                return Ok(None);
            };
            let ahead = ahead_of(
                &tx,
                priority,
                seq,
                &tenant,
                fairness,
                &mut Default::default(),
            )?;
            Ok(Some(place_context(&tx)?.place(ahead)))
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

    /// Every write goes through this process's one writer, which moves the feed before the
    /// write returns: the feed is exact.
    async fn latest_event(&self) -> Result<u64, StoreError> {
        Ok(*self.events.borrow())
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

    async fn housekeep(&self, now: Timestamp, keep: Retention) -> Result<Housekept, StoreError> {
        let events = keep.events.min(i64::MAX as u64) as i64;
        let before = |age: Duration| {
            now.as_micros()
                .saturating_sub(age.as_micros().min(i64::MAX as u128) as i64)
        };
        let (horizon, turns_horizon) = (before(keep.keys), before(keep.turns));
        // In slices, each its own write among the others: deleting a round's worth at once
        // (200 000 events after 10 s of full ingest) held the writer for up to half a second
        // every round, and every write queued behind it (docs/benchmarks.md). The cut is
        // fixed before the first slice, so a round ends however fast events keep coming.
        let cut = (*self.events.borrow() as i64).saturating_sub(events);
        let mut done = Housekept::default();
        loop {
            let slice = self
                .write(move |conn| {
                    let events = conn
                        .prepare_cached(
                            "DELETE FROM events WHERE id IN (
                               SELECT id FROM events WHERE id <= ?1 ORDER BY id LIMIT ?2)",
                        )
                        .and_then(|mut st| st.execute([cut, HOUSEKEEPING_SLICE]))
                        .map_err(unavailable)? as u64;
                    let keys = conn
                        .prepare_cached(
                            "DELETE FROM idempotency_keys WHERE key IN (
                               SELECT key FROM idempotency_keys WHERE created_at < ?1 LIMIT ?2)",
                        )
                        .and_then(|mut st| st.execute([horizon, HOUSEKEEPING_SLICE]))
                        .map_err(unavailable)? as u64;
                    let turns = conn
                        .prepare_cached(
                            "DELETE FROM tenant_starts WHERE (priority, tenant) IN (
                               SELECT priority, tenant FROM tenant_starts s
                               WHERE last_start < ?1 AND NOT EXISTS (
                                 SELECT 1 FROM tenant_depth d
                                 WHERE d.priority = s.priority AND d.tenant = s.tenant)
                               LIMIT ?2)",
                        )
                        .and_then(|mut st| st.execute([turns_horizon, HOUSEKEEPING_SLICE]))
                        .map_err(unavailable)? as u64;
                    Ok(Housekept {
                        events,
                        keys,
                        turns,
                    })
                })
                .await?;
            done.events += slice.events;
            done.keys += slice.keys;
            done.turns += slice.turns;
            if slice.events.max(slice.keys).max(slice.turns) < HOUSEKEEPING_SLICE as u64 {
                return Ok(done);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BatchStatus, Priority};
    use crate::server::store::codec::{COMPLETED, WAITING};
    use crate::server::store::NewBatchRecord;

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
                "INSERT INTO batches (id, ingestion_seq, position, priority, ids, status,
                                      completed_at)
                 VALUES (?1, 1, ?2, 1, ?3, ?4, ?5)",
                params![
                    Uuid::now_v7().to_string(),
                    position,
                    ids_json(&[7, 8]),
                    status,
                    (status == COMPLETED).then_some(4)
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
    async fn an_ingestion_stored_before_the_range_checks_and_the_counts_is_read_back_and_counted_after_the_upgrade(
    ) {
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
        // So were its IDs and its last completion, for its summary.
        let summary = store
            .summaries(&Selection::newest(1), 16, Fairness::Fifo)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(summary.id_count, 4);
        assert_eq!(summary.last_completed_at, Some(Timestamp::from_micros(4)));
        assert_eq!((summary.first_shown, summary.batches.len()), (0, 2));
        // Its counts were taken at the upgrade: its waiting batch is ahead of a new one's, and
        // cancelling it ends it (nothing of it left to run).
        let later = NewIngestionRecord {
            id: Uuid::now_v7(),
            priority: Priority::Medium,
            tenant: crate::domain::Tenant::default_tenant(),
            created_at: Timestamp::from_micros(6),
            batches: vec![NewBatchRecord {
                id: Uuid::now_v7(),
                ids: vec![9],
            }],
        };
        let later_id = later.id;
        store
            .insert_ingestion(later, Admission::default())
            .await
            .unwrap();
        let ahead = |fairness| {
            let store = &store;
            async move {
                let place = store
                    .queue_place(later_id, fairness)
                    .await
                    .unwrap()
                    .unwrap();
                place.ahead.before(0)
            }
        };
        assert_eq!(ahead(Fairness::Fifo).await, 1);
        // Its tenant's count too (the default tenant's, taken at the upgrade).
        assert_eq!(ahead(Fairness::Tenant).await, 1);
        assert_eq!(
            store.cancel(id, Timestamp::from_micros(7)).await.unwrap(),
            Some(1)
        );
        assert_eq!(ahead(Fairness::Fifo).await, 0);
        assert_eq!(ahead(Fairness::Tenant).await, 0);
        let events = store.events_after(0, Some(id), 10).await.unwrap();
        assert!(
            matches!(
                events.last().map(|e| &e.body),
                Some(EventBody::IngestionCancelled { .. })
            ),
            "{events:?}"
        );
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
