-- A rate interval set at run time (µs), overriding the configured one; NULL: the configured one.
ALTER TABLE dispatch_slot ADD COLUMN rate_interval INTEGER;
