-- Waiting batches per priority: see migrations/sqlite/0010_queue_depth.sql. One row per
-- priority also means inserts of different priorities do not queue on one counter row.
CREATE TABLE queue_depth (
    priority SMALLINT PRIMARY KEY CHECK (priority IN (0, 1, 2)),
    waiting  BIGINT   NOT NULL
);
INSERT INTO queue_depth (priority, waiting)
    SELECT p, (SELECT COUNT(*) FROM batches WHERE status = 0 AND priority = p)
    FROM (VALUES (0::smallint), (1::smallint), (2::smallint)) AS v(p);
ALTER TABLE dispatch_slot DROP COLUMN waiting;
