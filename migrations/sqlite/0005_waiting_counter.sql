-- Waiting batches, kept with the slot so admission control (backpressure) is O(1).
ALTER TABLE dispatch_slot ADD COLUMN waiting INTEGER NOT NULL DEFAULT 0;
UPDATE dispatch_slot SET waiting = (SELECT COUNT(*) FROM batches WHERE status = 0);
