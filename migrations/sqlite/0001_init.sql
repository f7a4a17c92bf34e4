-- sluice on SQLite: ingestions, their batches, and the global dispatch slot.
-- Times are microseconds since the Unix epoch (UTC).

CREATE TABLE ingestions (
    -- Acceptance order: the FIFO tiebreak within a priority.
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL UNIQUE,
    priority   INTEGER NOT NULL CHECK (priority IN (0, 1, 2)),  -- 0 HIGH, 1 MEDIUM, 2 LOW
    created_at INTEGER NOT NULL
);

CREATE TABLE batches (
    id            TEXT    NOT NULL UNIQUE,
    ingestion_seq INTEGER NOT NULL REFERENCES ingestions (seq),
    position      INTEGER NOT NULL,
    -- Copied from the ingestion so the claim reads one index in dispatch order.
    priority      INTEGER NOT NULL,
    ids           TEXT    NOT NULL,                       -- JSON array of integers
    status        INTEGER NOT NULL DEFAULT 0 CHECK (status IN (0, 1, 2)),  -- yet_to_start, triggered, completed
    attempt       INTEGER NOT NULL DEFAULT 0,              -- dispatch count and fencing token
    lease_until   INTEGER,
    started_at    INTEGER,
    completed_at  INTEGER,
    results       TEXT,                                    -- JSON array of {"id", "data"}
    PRIMARY KEY (ingestion_seq, position)
) WITHOUT ROWID;

-- The claim: first waiting batch in dispatch order, O(log n) whatever the backlog.
CREATE INDEX batches_waiting ON batches (priority, ingestion_seq, position) WHERE status = 0;
-- Batches in flight (normally at most one).
CREATE INDEX batches_in_flight ON batches (priority, ingestion_seq, position) WHERE status = 1;

-- One row: when the last batch started. Durable, so a restart keeps the spacing.
CREATE TABLE dispatch_slot (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    last_start INTEGER
);
INSERT INTO dispatch_slot (id, last_start) VALUES (1, NULL);
