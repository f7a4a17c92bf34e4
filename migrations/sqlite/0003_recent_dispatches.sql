-- Recent dispatches for the queue view, newest first, without scanning every batch.
CREATE INDEX batches_by_start ON batches (started_at) WHERE started_at IS NOT NULL;
