-- Dispatch can be paused by an operator; durable, so a restart stays paused.
ALTER TABLE dispatch_slot ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
