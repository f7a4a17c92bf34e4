-- Cancel: a batch that has not started can be cancelled (status 3); the ingestion records when.
-- Status 4 is kept for batches a processor gives up on (failed), so that needs no rebuild.
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt.
ALTER TABLE ingestions ADD COLUMN cancelled_at INTEGER;

CREATE TABLE batches_v8 (
    id            TEXT    NOT NULL UNIQUE,
    ingestion_seq INTEGER NOT NULL REFERENCES ingestions (seq),
    position      INTEGER NOT NULL,
    priority      INTEGER NOT NULL,
    ids           TEXT    NOT NULL,
    -- yet_to_start, triggered, completed, cancelled, failed
    status        INTEGER NOT NULL DEFAULT 0 CHECK (status IN (0, 1, 2, 3, 4)),
    attempt       INTEGER NOT NULL DEFAULT 0,
    lease_until   INTEGER,
    started_at    INTEGER,
    completed_at  INTEGER,
    results       TEXT,
    PRIMARY KEY (ingestion_seq, position)
) WITHOUT ROWID;
INSERT INTO batches_v8 (id, ingestion_seq, position, priority, ids, status, attempt,
                        lease_until, started_at, completed_at, results)
    SELECT id, ingestion_seq, position, priority, ids, status, attempt,
           lease_until, started_at, completed_at, results
    FROM batches;
DROP TABLE batches;
ALTER TABLE batches_v8 RENAME TO batches;

CREATE INDEX batches_waiting ON batches (priority, ingestion_seq, position) WHERE status = 0;
CREATE INDEX batches_in_flight ON batches (priority, ingestion_seq, position) WHERE status = 1;
CREATE INDEX batches_by_start ON batches (started_at) WHERE started_at IS NOT NULL;
