-- sluice on PostgreSQL: the same model as the SQLite schema (migrations/sqlite), in one step.
-- Times are microseconds since the Unix epoch (UTC).

CREATE TABLE ingestions (
    -- Acceptance order: the FIFO tiebreak within a priority.
    seq          BIGSERIAL PRIMARY KEY,
    id           UUID     NOT NULL UNIQUE,
    priority     SMALLINT NOT NULL CHECK (priority IN (0, 1, 2)),  -- 0 HIGH, 1 MEDIUM, 2 LOW
    created_at   BIGINT   NOT NULL,
    cancelled_at BIGINT
);

CREATE TABLE batches (
    id            UUID     NOT NULL UNIQUE,
    ingestion_seq BIGINT   NOT NULL REFERENCES ingestions (seq),
    position      INTEGER  NOT NULL,
    -- Copied from the ingestion so the claim reads one index in dispatch order.
    priority      SMALLINT NOT NULL,
    ids           BIGINT[] NOT NULL,
    -- yet_to_start, triggered, completed, cancelled, failed
    status        SMALLINT NOT NULL DEFAULT 0 CHECK (status IN (0, 1, 2, 3, 4)),
    attempt       INTEGER  NOT NULL DEFAULT 0,   -- dispatch count and fencing token
    lease_until   BIGINT,
    started_at    BIGINT,
    completed_at  BIGINT,
    results       JSONB,
    PRIMARY KEY (ingestion_seq, position)
);

-- The claim: first waiting batch in dispatch order, O(log n) whatever the backlog.
CREATE INDEX batches_waiting ON batches (priority, ingestion_seq, position) WHERE status = 0;
CREATE INDEX batches_in_flight ON batches (priority, ingestion_seq, position) WHERE status = 1;
CREATE INDEX batches_by_start ON batches (started_at) WHERE started_at IS NOT NULL;

-- One row, locked by every claim: the global rate limit and everything beside it.
CREATE TABLE dispatch_slot (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    last_start    BIGINT,
    waiting       BIGINT  NOT NULL DEFAULT 0,
    paused        BOOLEAN NOT NULL DEFAULT FALSE,
    rate_interval BIGINT          -- µs, set at run time; NULL: the configured one
);
INSERT INTO dispatch_slot (id) VALUES (1);

-- The event log. Ids are handed out by `event_seq` under a row lock held to commit, so they
-- become visible in id order: a reader that has seen id n never later finds a smaller one.
CREATE TABLE events (
    id           BIGINT PRIMARY KEY,
    at           BIGINT NOT NULL,
    ingestion_id TEXT   NOT NULL,   -- '' for queue-wide events
    body         TEXT   NOT NULL
);
CREATE INDEX events_by_ingestion ON events (ingestion_id, id);
CREATE TABLE event_seq (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    last BIGINT  NOT NULL
);
INSERT INTO event_seq (id, last) VALUES (1, 0);

CREATE TABLE idempotency_keys (
    key          TEXT   PRIMARY KEY,
    fingerprint  TEXT   NOT NULL,
    ingestion_id UUID   NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
