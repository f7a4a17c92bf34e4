-- Waiting batches per priority and tenant (issue 19): the queue's and the metrics' tenants,
-- and the counts round-robin predictions are computed from. Kept with every change of waiting
-- work, as `queue_depth` is; a row exists while its count is not zero, so the table holds
-- one row per tenant with waiting work at a priority.
CREATE TABLE tenant_depth (
    priority INTEGER NOT NULL,
    tenant   TEXT    NOT NULL,
    waiting  INTEGER NOT NULL,
    PRIMARY KEY (priority, tenant)
) WITHOUT ROWID;

INSERT INTO tenant_depth (priority, tenant, waiting)
SELECT priority, tenant, SUM(waiting) FROM ingestions WHERE waiting > 0
GROUP BY priority, tenant;
