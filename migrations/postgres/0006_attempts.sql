-- Each batch's attempts: see migrations/sqlite/0014_attempts.sql.
CREATE TABLE attempts (
    batch_id    UUID     NOT NULL,
    attempt     INTEGER  NOT NULL,
    replica     TEXT     NOT NULL,
    started_at  BIGINT   NOT NULL,
    finished_at BIGINT,
    outcome     TEXT CHECK (outcome IN ('completed', 'retrying', 'failed')),
    error       TEXT,
    status_code INTEGER,
    PRIMARY KEY (batch_id, attempt)
);
