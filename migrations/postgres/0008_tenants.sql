-- Tenants (issue 19): who an ingestion belongs to, for fair shares under the global rate.
ALTER TABLE ingestions ADD COLUMN tenant text NOT NULL DEFAULT 'default'
    CHECK (length(tenant) BETWEEN 1 AND 64);

-- The fair claim (`--fairness tenant`) walks the tenants that have waiting work at a
-- priority, each with its oldest such ingestion first: one entry per ingestion with work left.
CREATE INDEX ingestions_fair ON ingestions (priority, tenant, seq) WHERE waiting > 0;

-- When each tenant last started a batch at each priority: the fair claim's turn order, written
-- by every claim (in its transaction), so the order holds across restarts and replicas.
CREATE TABLE tenant_starts (
    priority   smallint NOT NULL,
    tenant     text     NOT NULL,
    last_start bigint   NOT NULL,
    PRIMARY KEY (priority, tenant)
);
