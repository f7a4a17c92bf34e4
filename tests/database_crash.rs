//! A crash of the database itself (PostgreSQL, on a server of the test's own): what was
//! acknowledged is still there after it restarts. In a binary of its own: the processes it
//! starts would, between fork and exec, hold another test's SQLite lock file a moment longer
//! than its store (the store suite's reopen test failed once that way).

#[path = "support/private_postgres.rs"]
mod private_postgres;

use sluice::domain::{Priority, Tenant, Timestamp};
use sluice::server::store::{
    Admission, DynStore, Inserted, NewBatchRecord, NewIngestionRecord, PostgresStore, SlotClock,
};
use std::sync::Arc;
use uuid::Uuid;

fn at(secs: u64) -> Timestamp {
    Timestamp::from_micros(1_800_000_000_000_000 + (secs * 1_000_000) as i64)
}

fn record(priority: Priority, created: Timestamp, batches: &[&[u64]]) -> NewIngestionRecord {
    NewIngestionRecord {
        id: Uuid::new_v4(),
        priority,
        tenant: Tenant::default_tenant(),
        created_at: created,
        batches: batches
            .iter()
            .map(|ids| NewBatchRecord {
                id: Uuid::new_v4(),
                ids: ids.to_vec(),
            })
            .collect(),
    }
}

async fn open_postgres(url: &str) -> DynStore {
    Arc::new(
        PostgresStore::open(url, SlotClock::Caller, 4)
            .await
            .unwrap(),
    )
}

/// A replica's writer commits its groups without waiting for the disk (so the replicas'
/// groups do not queue behind each other's WAL flushes) and answers only once a later commit
/// has flushed them: a crash of the database right after the answers keeps every one. (With
/// the answers sent at the writer's commit, the last groups were lost here.)
#[cfg_attr(skip_postgres, ignore = "SLUICE_SKIP_POSTGRES=1")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ingestion_acknowledged_on_postgres_survives_a_crash_of_the_database_right_after() {
    let server = private_postgres::PrivateServer::start();
    let store = open_postgres(&server.url()).await;
    let mut acknowledged = Vec::new();
    for round in 0..5u64 {
        let records: Vec<NewIngestionRecord> = (0..40)
            .map(|i| record(Priority::Medium, at(round * 100 + i), &[&[i]]))
            .collect();
        let ids: Vec<Uuid> = records.iter().map(|r| r.id).collect();
        let answers = futures::future::join_all(
            records
                .into_iter()
                .map(|r| store.insert_ingestion(r, Admission::default())),
        )
        .await;
        for (id, answer) in ids.into_iter().zip(answers) {
            assert_eq!(answer.unwrap(), Inserted::Created);
            acknowledged.push(id);
        }
    }
    let last = record(Priority::High, at(1000), &[&[1]]);
    acknowledged.push(last.id);
    let answer = store.insert_ingestion(last, Admission::default()).await;
    assert_eq!(answer.unwrap(), Inserted::Created);
    server.crash();
    drop(store);
    server.up();
    let (client, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let stored: std::collections::HashSet<Uuid> = client
        .query("SELECT id FROM ingestions", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let lost = acknowledged
        .iter()
        .filter(|id| !stored.contains(id))
        .count();
    assert_eq!(
        lost,
        0,
        "{lost} of {} acknowledged ingestions were lost",
        acknowledged.len()
    );
}
