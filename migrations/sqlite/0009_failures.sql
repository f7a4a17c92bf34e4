-- A downstream that fails: a failed attempt keeps its error and, while attempts remain, the
-- batch waits again until `retry_at` (backoff); after the last one it is failed (status 4).
ALTER TABLE batches ADD COLUMN retry_at INTEGER;
ALTER TABLE batches ADD COLUMN error TEXT;
