-- Waiting batches per priority (replacing the single counter beside the slot): the queue view,
-- admission control and the "ahead of you" count of other priorities read three rows.
CREATE TABLE queue_depth (
    priority INTEGER PRIMARY KEY CHECK (priority IN (0, 1, 2)),
    waiting  INTEGER NOT NULL
);
INSERT INTO queue_depth (priority, waiting)
    SELECT p, (SELECT COUNT(*) FROM batches WHERE status = 0 AND priority = p)
    FROM (SELECT 0 AS p UNION ALL SELECT 1 UNION ALL SELECT 2);
ALTER TABLE dispatch_slot DROP COLUMN waiting;
