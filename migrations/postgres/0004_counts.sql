-- Counts that make reads O(1) instead of O(ingestion) or O(backlog): see
-- migrations/sqlite/0012_counts.sql.
ALTER TABLE ingestions
    ADD COLUMN waiting   INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN running   INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN completed INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN failed    INTEGER NOT NULL DEFAULT 0;
UPDATE ingestions i SET
    waiting = c.waiting, running = c.running, completed = c.completed,
    cancelled = c.cancelled, failed = c.failed
FROM (SELECT ingestion_seq,
             COUNT(*) FILTER (WHERE status = 0) AS waiting,
             COUNT(*) FILTER (WHERE status = 1) AS running,
             COUNT(*) FILTER (WHERE status = 2) AS completed,
             COUNT(*) FILTER (WHERE status = 3) AS cancelled,
             COUNT(*) FILTER (WHERE status = 4) AS failed
      FROM batches GROUP BY ingestion_seq) AS c
WHERE c.ingestion_seq = i.seq;
CREATE TABLE queue_blocks (
    priority SMALLINT NOT NULL,
    block    BIGINT   NOT NULL,
    waiting  BIGINT   NOT NULL,
    PRIMARY KEY (priority, block)
);
INSERT INTO queue_blocks (priority, block, waiting)
    SELECT priority, seq >> 7, SUM(waiting) FROM ingestions WHERE waiting > 0
    GROUP BY priority, seq >> 7;

-- A fence for rolling upgrades: a replica of an older build would keep writing without these
-- counts and leave them wrong for good. Every write path appends an event, so renaming the
-- event counter makes an old replica's writes fail (503, nothing half-done) until it is
-- replaced, instead of corrupting the counts.
ALTER TABLE event_seq RENAME TO event_counter;
