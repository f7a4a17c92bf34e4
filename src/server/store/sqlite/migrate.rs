//! The schema: migrations in order, applied once each (`PRAGMA user_version`).

use super::*;

/// Migrations in order; `PRAGMA user_version` records how many are applied.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../../../migrations/sqlite/0001_init.sql"),
    include_str!("../../../../migrations/sqlite/0002_events.sql"),
    include_str!("../../../../migrations/sqlite/0003_recent_dispatches.sql"),
    include_str!("../../../../migrations/sqlite/0004_idempotency_keys.sql"),
    include_str!("../../../../migrations/sqlite/0005_waiting_counter.sql"),
    include_str!("../../../../migrations/sqlite/0006_pause.sql"),
    include_str!("../../../../migrations/sqlite/0007_rate_override.sql"),
    include_str!("../../../../migrations/sqlite/0008_cancel.sql"),
    include_str!("../../../../migrations/sqlite/0009_failures.sql"),
    include_str!("../../../../migrations/sqlite/0010_queue_depth.sql"),
    include_str!("../../../../migrations/sqlite/0011_range_checks.sql"),
    include_str!("../../../../migrations/sqlite/0012_counts.sql"),
    include_str!("../../../../migrations/sqlite/0013_summaries.sql"),
    include_str!("../../../../migrations/sqlite/0014_attempts.sql"),
    include_str!("../../../../migrations/sqlite/0015_tenants.sql"),
    include_str!("../../../../migrations/sqlite/0016_tenant_depth.sql"),
];

pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let applied: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(|e| StoreError::Migration(e.to_string()))? as usize;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Migration(format!(
            "the database is at schema version {applied}, newer than this build knows ({}); \
             run a newer sluice",
            MIGRATIONS.len()
        )));
    }
    if applied == MIGRATIONS.len() {
        return Ok(());
    }
    // A migration may rebuild a table others refer to (SQLite's way of changing a constraint):
    // foreign keys are off while it runs (the pragma does nothing inside a transaction) and
    // checked before it commits.
    let fail = |version: usize, e: String| {
        let _ = conn.execute_batch("ROLLBACK; PRAGMA foreign_keys = ON;");
        StoreError::Migration(format!("migration {version}: {e}"))
    };
    conn.execute_batch("PRAGMA foreign_keys = OFF;")
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let version = i + 1;
        conn.execute_batch(&format!("BEGIN IMMEDIATE;\n{sql}"))
            .map_err(|e| fail(version, e.to_string()))?;
        let broken: Option<String> = conn
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .optional()
            .map_err(|e| fail(version, e.to_string()))?;
        if let Some(table) = broken {
            return Err(fail(
                version,
                format!("it would leave rows of {table} without their parent"),
            ));
        }
        conn.execute_batch(&format!("PRAGMA user_version = {version};\nCOMMIT;"))
            .map_err(|e| fail(version, e.to_string()))?;
    }
    conn.execute_batch("PRAGMA foreign_keys = ON;")
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    Ok(())
}
