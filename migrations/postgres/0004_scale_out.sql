-- Scale-out without a cluster-wide commit lock (see src/server/store/postgres/publish.rs).
--
-- Events are written unnumbered (id NULL) in the transaction of their change, in `written`
-- order, and numbered after they commit by a short "publish" transaction under the
-- `event_seq` row lock: ids still become visible in id order, but no writer holds a lock
-- shared with the other replicas' writers through its commit.
ALTER TABLE events DROP CONSTRAINT events_pkey;
ALTER TABLE events ALTER COLUMN id DROP NOT NULL;
ALTER TABLE events ADD COLUMN written BIGINT GENERATED ALWAYS AS IDENTITY;
CREATE UNIQUE INDEX events_by_id ON events (id);
CREATE INDEX events_unnumbered ON events (written) WHERE id IS NULL;

-- Waiting batches per priority, in shards: shard 0 for the dispatcher and operators, one
-- shard per writer (created when it starts), so replicas' writers never wait for each other
-- on a counter. The waiting count of a priority is the sum of its shards.
ALTER TABLE queue_depth ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE queue_depth DROP CONSTRAINT queue_depth_pkey;
ALTER TABLE queue_depth ADD PRIMARY KEY (priority, shard);
