-- What an ingestion's summary (the dashboard's list, GET /ingestions) reads without going
-- through its batches, so a summary costs O(window), not O(ingestion size) (issue 17):
--  * how many IDs it holds, written with it;
--  * when its last batch completed so far, moved with every completion (`moved`);
--  * its batches that were cancelled or failed, by position: with the waiting and in-flight
--    indexes, the first batch not completed is three index probes away.
ALTER TABLE ingestions ADD COLUMN id_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ingestions ADD COLUMN last_completed_at INTEGER;
UPDATE ingestions SET
    id_count = (SELECT COALESCE(SUM(json_array_length(ids)), 0) FROM batches
                WHERE ingestion_seq = ingestions.seq),
    last_completed_at = (SELECT MAX(completed_at) FROM batches
                         WHERE ingestion_seq = ingestions.seq AND status = 2);
CREATE INDEX batches_stopped ON batches (ingestion_seq, position) WHERE status >= 3;
