-- Each batch's attempts (issue 18): which replica ran it, when, and how it ended. A row is
-- written by the claim that starts the attempt (in its transaction) and finished by the
-- completion or failure that records its outcome; an attempt cut off (its lease lost, the
-- downstream saying a newer one exists, its process killed) keeps no end.
CREATE TABLE attempts (
    batch_id    TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    replica     TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    outcome     TEXT CHECK (outcome IN ('completed', 'retrying', 'failed')),
    error       TEXT,
    status_code INTEGER,  -- the downstream's HTTP status, when it answered a failed attempt
    PRIMARY KEY (batch_id, attempt)
) WITHOUT ROWID;
