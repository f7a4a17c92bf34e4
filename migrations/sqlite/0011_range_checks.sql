-- CHECK (x IN (0, 1, 2)) made SQLite build a temporary index of the list on every insert and
-- status update (a constant IN list of more than two values is searched through an ephemeral
-- table): about 7% of the writer's CPU under ingest load (docs/benchmarks.md). A range says the
-- same of these integer columns. SQLite cannot change a CHECK in place, so both tables are
-- rebuilt (migrations run with foreign keys off and are checked before they commit).
-- Ingestions are never deleted, so a plain rowid key (the largest plus one) grows exactly as
-- AUTOINCREMENT did, without its sqlite_sequence read and write on every insert.
CREATE TABLE ingestions_v11 (
    -- Acceptance order: the FIFO tiebreak within a priority.
    seq          INTEGER PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,
    priority     INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 2),  -- 0 HIGH, 1 MEDIUM, 2 LOW
    created_at   INTEGER NOT NULL,
    cancelled_at INTEGER
);
INSERT INTO ingestions_v11 (seq, id, priority, created_at, cancelled_at)
    SELECT seq, id, priority, created_at, cancelled_at FROM ingestions;
DROP TABLE ingestions;
ALTER TABLE ingestions_v11 RENAME TO ingestions;

CREATE TABLE batches_v11 (
    id            TEXT    NOT NULL UNIQUE,
    ingestion_seq INTEGER NOT NULL REFERENCES ingestions (seq),
    position      INTEGER NOT NULL,
    -- Copied from the ingestion so the claim reads one index in dispatch order.
    priority      INTEGER NOT NULL,
    ids           TEXT    NOT NULL,                       -- JSON array of integers
    -- 0 yet_to_start, 1 triggered, 2 completed, 3 cancelled, 4 failed
    status        INTEGER NOT NULL DEFAULT 0 CHECK (status BETWEEN 0 AND 4),
    attempt       INTEGER NOT NULL DEFAULT 0,              -- dispatch count and fencing token
    lease_until   INTEGER,
    started_at    INTEGER,
    completed_at  INTEGER,
    results       TEXT,                                    -- JSON array of {"id", "data"}
    retry_at      INTEGER,
    error         TEXT,
    PRIMARY KEY (ingestion_seq, position)
) WITHOUT ROWID;
INSERT INTO batches_v11 (id, ingestion_seq, position, priority, ids, status, attempt,
                         lease_until, started_at, completed_at, results, retry_at, error)
    SELECT id, ingestion_seq, position, priority, ids, status, attempt,
           lease_until, started_at, completed_at, results, retry_at, error
    FROM batches;
DROP TABLE batches;
ALTER TABLE batches_v11 RENAME TO batches;

CREATE INDEX batches_waiting ON batches (priority, ingestion_seq, position) WHERE status = 0;
CREATE INDEX batches_in_flight ON batches (priority, ingestion_seq, position) WHERE status = 1;
CREATE INDEX batches_by_start ON batches (started_at) WHERE started_at IS NOT NULL;
