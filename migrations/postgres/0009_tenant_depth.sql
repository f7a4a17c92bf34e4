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
