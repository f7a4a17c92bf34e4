-- Idempotency-Key on POST /ingest: the first request's ingestion, per key, for a retention window.
CREATE TABLE idempotency_keys (
    key          TEXT    PRIMARY KEY,
    fingerprint  TEXT    NOT NULL,   -- SHA-256 of the request's priority and IDs
    ingestion_id TEXT    NOT NULL,
    created_at   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
