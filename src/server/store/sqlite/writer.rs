//! The writer: one connection behind a group-commit loop, and the fsync pipeline (see the
//! module doc of `sqlite`).

use super::*;

/// Upper bound on writes grouped into one transaction (bounds the latency of the group).
pub(super) const MAX_GROUP: usize = 512;

pub(super) type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
pub(super) type Job = Box<dyn WriteJob>;

/// A write queued for the next group transaction.
pub(super) trait WriteJob: Send {
    /// Run inside the group's transaction; say whether it succeeded. It may run again (after
    /// the group was rolled back): only the last run's outcome is answered.
    fn run(&mut self, conn: &Connection) -> bool;
    /// How to answer the caller, with the last run's outcome, once the commit's is known.
    fn into_reply(self: Box<Self>) -> Reply;
    /// Answer without running (the group's transaction could not begin).
    fn fail(self: Box<Self>, error: StoreError);
}

pub(super) struct Write<T, F> {
    pub(super) f: F,
    pub(super) outcome: Option<Result<T, StoreError>>,
    pub(super) reply: oneshot::Sender<Result<T, StoreError>>,
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

/// A committed group waiting for the fsync that makes it durable.
pub(super) struct Committed {
    pub(super) replies: Vec<Reply>,
    /// The newest event id once the group is durable (0 if the group could not begin).
    pub(super) latest: u64,
}

/// The group-commit loop: owns the writer connection until every `SqliteStore` handle is gone.
pub(super) async fn group_commit(
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

pub(super) const BROKEN: &str =
    "an fsync of the database failed; writes are refused until sluice restarts";

/// Run one group in one transaction and commit it (without waiting for the disk).
///
/// All writes run in one transaction, without savepoints (a savepoint copies every page a
/// write touches to a statement journal first: ~8% of the writer's CPU). Should one fail, the
/// group is rolled back and run again with each write in its own savepoint, so the failing one
/// is undone without undoing the others.
pub(super) fn run_group(conn: &Connection, jobs: Vec<Job>) -> (Committed, Result<(), StoreError>) {
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
pub(super) fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute([])
}

/// The sync loop: fsync the WAL file for every committed group (one fsync for all groups
/// that committed while the previous one ran), then answer their writers and publish their
/// events. Groups arrive in commit order, so the event feed only moves forward. (The fsync
/// runs in `spawn_blocking`, like every SQLite call, so a paused test clock waits for it.)
pub(super) async fn sync_loop(
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
pub(super) fn wal_file(db: &Path) -> Result<std::fs::File, StoreError> {
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
