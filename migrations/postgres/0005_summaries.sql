-- What an ingestion's summary reads without going through its batches: see
-- migrations/sqlite/0013_summaries.sql.
ALTER TABLE ingestions ADD COLUMN id_count BIGINT, ADD COLUMN last_completed_at BIGINT;
UPDATE ingestions i SET id_count = c.ids, last_completed_at = c.last
FROM (SELECT ingestion_seq, SUM(cardinality(ids)) AS ids,
             MAX(completed_at) FILTER (WHERE status = 2) AS last
      FROM batches GROUP BY ingestion_seq) AS c
WHERE c.ingestion_seq = i.seq;
UPDATE ingestions SET id_count = 0 WHERE id_count IS NULL;
ALTER TABLE ingestions ALTER COLUMN id_count SET NOT NULL;
CREATE INDEX batches_stopped ON batches (ingestion_seq, position) WHERE status >= 3;

-- The fence for rolling upgrades (as in 0004): a replica of an older build would store
-- ingestions without their count and complete batches without moving `last_completed_at`.
-- Every write path appends an event, so renaming the counter makes all of an old replica's
-- writes fail (503, rolled back) until it is replaced.
ALTER TABLE event_counter RENAME TO event_ids;
