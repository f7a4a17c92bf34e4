-- The fence for rolling upgrades (as in 0004 and 0005), first, so that it waits for every
-- older replica's open write and blocks the next until this commits: a replica of an older
-- build would change waiting work without `tenant_depth` and leave it wrong for good. Every
-- write path appends an event, so renaming the counter makes all of an old replica's writes
-- fail (503, rolled back) until it is replaced; the counts below are taken behind the fence.
ALTER TABLE event_ids RENAME TO event_serial;

-- Waiting batches per priority and tenant: see migrations/sqlite/0016_tenant_depth.sql. A row
-- exists while its count is not zero. Every path that changes one also holds its priority's
-- `queue_depth` row (locked first), so the two are always locked in the same order.
CREATE TABLE tenant_depth (
    priority smallint NOT NULL,
    tenant   text     NOT NULL,
    waiting  bigint   NOT NULL,
    PRIMARY KEY (priority, tenant)
);

INSERT INTO tenant_depth (priority, tenant, waiting)
SELECT priority, tenant, SUM(waiting) FROM ingestions WHERE waiting > 0
GROUP BY priority, tenant;
