-- A downstream that fails: see migrations/sqlite/0009_failures.sql.
ALTER TABLE batches ADD COLUMN retry_at BIGINT;
ALTER TABLE batches ADD COLUMN error TEXT;
