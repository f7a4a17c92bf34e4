//! The schema: migrations in order, applied once each under an advisory lock.

use super::*;

/// Migrations in order; `sluice_schema` records how many are applied.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../../../migrations/postgres/0001_init.sql"),
    include_str!("../../../../migrations/postgres/0002_failures.sql"),
    include_str!("../../../../migrations/postgres/0003_queue_depth.sql"),
    include_str!("../../../../migrations/postgres/0004_counts.sql"),
    include_str!("../../../../migrations/postgres/0005_summaries.sql"),
    include_str!("../../../../migrations/postgres/0006_attempts.sql"),
    include_str!("../../../../migrations/postgres/0007_flush_marks.sql"),
    include_str!("../../../../migrations/postgres/0008_tenants.sql"),
    include_str!("../../../../migrations/postgres/0009_tenant_depth.sql"),
];

pub(super) async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    let err = |e: tokio_postgres::Error| StoreError::Migration(e.to_string());
    let tx = client.transaction().await.map_err(err)?;
    // One replica migrates at a time; the others wait here, then find nothing to do.
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(7368273);
         CREATE TABLE IF NOT EXISTS sluice_schema (version INTEGER NOT NULL);",
    )
    .await
    .map_err(err)?;
    let applied: Option<i32> = tx
        .query_opt("SELECT version FROM sluice_schema", &[])
        .await
        .map_err(err)?
        .map(|r| r.get(0));
    let applied = applied.unwrap_or(0) as usize;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Migration(format!(
            "the database is at schema version {applied}, newer than this build knows ({}); \
             run a newer sluice",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.batch_execute(sql)
            .await
            .map_err(|e| StoreError::Migration(format!("migration {}: {e}", i + 1)))?;
    }
    tx.execute("DELETE FROM sluice_schema", &[])
        .await
        .map_err(err)?;
    tx.execute(
        "INSERT INTO sluice_schema (version) VALUES ($1)",
        &[&(MIGRATIONS.len() as i32)],
    )
    .await
    .map_err(err)?;
    tx.commit().await.map_err(err)
}
