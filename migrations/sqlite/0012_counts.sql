-- Counts that make reads O(1) instead of O(ingestion) or O(backlog):
--  * each ingestion's batches per status (its summary, and whether it has ended), moved with
--    every status change of one of its batches;
--  * waiting batches per priority and block of 128 consecutive ingestions (seq >> 7: the
--    constant QUEUE_BLOCK_SHIFT in src/server/store/codec.rs), so "how many wait ahead of this
--    ingestion" adds at most (backlog / 128) block rows and 128 ingestion rows. A block row
--    exists only while it has waiting batches.
ALTER TABLE ingestions ADD COLUMN waiting   INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ingestions ADD COLUMN running   INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ingestions ADD COLUMN completed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ingestions ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ingestions ADD COLUMN failed    INTEGER NOT NULL DEFAULT 0;
UPDATE ingestions SET
    waiting   = (SELECT COUNT(*) FROM batches WHERE ingestion_seq = ingestions.seq AND status = 0),
    running   = (SELECT COUNT(*) FROM batches WHERE ingestion_seq = ingestions.seq AND status = 1),
    completed = (SELECT COUNT(*) FROM batches WHERE ingestion_seq = ingestions.seq AND status = 2),
    cancelled = (SELECT COUNT(*) FROM batches WHERE ingestion_seq = ingestions.seq AND status = 3),
    failed    = (SELECT COUNT(*) FROM batches WHERE ingestion_seq = ingestions.seq AND status = 4);
CREATE TABLE queue_blocks (
    priority INTEGER NOT NULL,
    block    INTEGER NOT NULL,
    waiting  INTEGER NOT NULL,
    PRIMARY KEY (priority, block)
) WITHOUT ROWID;
INSERT INTO queue_blocks (priority, block, waiting)
    SELECT priority, seq >> 7, SUM(waiting) FROM ingestions WHERE waiting > 0
    GROUP BY priority, seq >> 7;
