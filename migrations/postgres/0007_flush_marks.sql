-- A writer's group commits without waiting for its WAL to reach the disk (so the writers' turn
-- and the shared counters are not held through a flush) and is acknowledged only after a later
-- synchronous commit has flushed the WAL past it. A commit flushes only if it wrote something:
-- this is what it writes, one row per database backend (each writer's flusher, each listener),
-- so no two replicas ever wait for each other's row.
CREATE TABLE flush_marks (
    backend INTEGER PRIMARY KEY,
    flushes BIGINT  NOT NULL DEFAULT 0
);
