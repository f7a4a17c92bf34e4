-- What an ingestion's summary reads without going through its batches: see
-- migrations/sqlite/0013_summaries.sql.
ALTER TABLE ingestions ADD COLUMN id_count BIGINT, ADD COLUMN last_completed_at BIGINT;
UPDATE ingestions i SET id_count = c.ids, last_completed_at = c.last
FROM (SELECT ingestion_seq, SUM(cardinality(ids)) AS ids, MAX(completed_at) AS last
      FROM batches GROUP BY ingestion_seq) AS c
WHERE c.ingestion_seq = i.seq;
UPDATE ingestions SET id_count = 0 WHERE id_count IS NULL;
-- No default: a replica of an older build, which would store ingestions without their count,
-- fails its inserts (503, nothing stored) until it is replaced, instead of storing 0.
ALTER TABLE ingestions ALTER COLUMN id_count SET NOT NULL;
CREATE INDEX batches_stopped ON batches (ingestion_seq, position) WHERE status >= 3;
