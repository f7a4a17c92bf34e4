//! The store conformance suite: one set of cases over the `Store` trait, run against every
//! backend: SQLite in memory and on disk, and PostgreSQL (a fresh database per test on the
//! server in `SLUICE_TEST_POSTGRES`; see `support/postgres.rs`).

#[path = "support/postgres.rs"]
mod postgres;

use sluice::domain::{
    BatchStatus, EventBody, Fairness, IdResult, IngestionStatus, Priority, StatusCounts, Tenant,
    Timestamp,
};
use sluice::server::store::{
    Admission, Claim, ClaimedBatch, Completion, DynStore, Housekept, IdempotencyKey, Inserted,
    Lookup, NewBatchRecord, NewIngestionRecord, PostgresStore, Retention, Selection, SlotClock,
    SqliteStore,
};
use std::{future::Future, pin::Pin, sync::Arc, time::Duration};
use uuid::Uuid;

const INTERVAL: Duration = Duration::from_secs(5);
const LEASE: Duration = Duration::from_secs(30);

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

async fn ingest(
    store: &DynStore,
    priority: Priority,
    created: Timestamp,
    batches: &[&[u64]],
) -> Uuid {
    ingest_for(store, "default", priority, created, batches).await
}

async fn claim(store: &DynStore, now: Timestamp) -> Claim {
    store
        .claim_next(now, INTERVAL, LEASE, "test", Fairness::Fifo)
        .await
        .unwrap()
}

/// An ingestion of `tenant`.
async fn ingest_for(
    store: &DynStore,
    tenant: &str,
    priority: Priority,
    created: Timestamp,
    batches: &[&[u64]],
) -> Uuid {
    let record = NewIngestionRecord {
        tenant: Tenant::parse(tenant).unwrap(),
        ..record(priority, created, batches)
    };
    let id = record.id;
    let inserted = store
        .insert_ingestion(record, Admission::default())
        .await
        .unwrap();
    assert_eq!(inserted, Inserted::Created);
    id
}

/// Claim under `fairness`, then complete at once: the IDs of the batch that started.
async fn start_and_finish(store: &DynStore, now: Timestamp, fairness: Fairness) -> Vec<u64> {
    let batch = match store
        .claim_next(now, INTERVAL, LEASE, "test", fairness)
        .await
        .unwrap()
    {
        Claim::Claimed(batch) => batch,
        other => panic!("expected a claim at {now:?}, got {other:?}"),
    };
    finish(store, &batch, now).await;
    batch.ids
}

async fn claimed(store: &DynStore, now: Timestamp) -> ClaimedBatch {
    match claim(store, now).await {
        Claim::Claimed(batch) => batch,
        other => panic!("expected a claim at {now:?}, got {other:?}"),
    }
}

/// The answer while the rate slot at `slot` is not due at `now`.
fn not_before(now: Timestamp, slot: Timestamp) -> Claim {
    Claim::SlotNotDue {
        slot,
        wait: slot.since(now),
        interval: INTERVAL,
    }
}

/// The answer at `now` while another batch's lease runs until `until`.
fn in_flight(now: Timestamp, until: Timestamp) -> Claim {
    Claim::InFlight {
        until,
        wait: until.since(now),
    }
}

fn results(batch: &ClaimedBatch) -> Vec<IdResult> {
    batch
        .ids
        .iter()
        .map(|&id| IdResult::processed(id))
        .collect()
}

async fn finish(store: &DynStore, batch: &ClaimedBatch, now: Timestamp) {
    let outcome = store
        .complete(batch.batch_id, batch.attempt, now, results(batch))
        .await
        .unwrap();
    assert_eq!(outcome, Completion::Completed);
}

type Open = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = DynStore> + Send>> + Send + Sync>;

/// Cases every backend must pass on a fresh store.
mod cases {
    use super::*;

    pub async fn an_inserted_ingestion_reads_back_with_its_batches_in_split_order(store: DynStore) {
        let id = ingest(&store, Priority::Medium, at(0), &[&[1, 2, 3], &[4, 5]]).await;
        let record = store.ingestion(id).await.unwrap().expect("stored");
        assert_eq!(record.id, id);
        assert_eq!(record.priority, Priority::Medium);
        assert_eq!(record.created_at, at(0));
        let ids: Vec<_> = record.batches.iter().map(|b| b.ids.clone()).collect();
        assert_eq!(ids, vec![vec![1, 2, 3], vec![4, 5]]);
        for (i, b) in record.batches.iter().enumerate() {
            assert_eq!(b.position as usize, i);
            assert_eq!(b.status, BatchStatus::YetToStart);
            assert_eq!((b.started_at, b.completed_at, b.attempt), (None, None, 0));
            assert!(b.results.is_empty());
        }
    }

    pub async fn an_unknown_ingestion_is_not_found(store: DynStore) {
        assert_eq!(store.ingestion(Uuid::new_v4()).await.unwrap(), None);
    }

    pub async fn an_empty_queue_is_idle(store: DynStore) {
        assert_eq!(claim(&store, at(0)).await, Claim::Idle);
        assert_eq!(store.last_start().await.unwrap(), None);
    }

    pub async fn batches_go_by_priority_then_acceptance_then_position(store: DynStore) {
        let low = ingest(&store, Priority::Low, at(0), &[&[1]]).await;
        let medium_a = ingest(&store, Priority::Medium, at(1), &[&[2], &[3]]).await;
        let high = ingest(&store, Priority::High, at(2), &[&[4]]).await;
        let medium_b = ingest(&store, Priority::Medium, at(3), &[&[5]]).await;
        let mut order = Vec::new();
        for step in 0..5 {
            let now = at(10 + step * 5);
            let batch = claimed(&store, now).await;
            order.push((batch.ingestion_id, batch.ids.clone()));
            finish(&store, &batch, now).await;
        }
        assert_eq!(
            order,
            vec![
                (high, vec![4]),
                (medium_a, vec![2]),
                (medium_a, vec![3]),
                (medium_b, vec![5]),
                (low, vec![1]),
            ]
        );
        assert_eq!(claim(&store, at(100)).await, Claim::Idle);
    }

    pub async fn a_claim_marks_the_batch_triggered_and_moves_the_slot(store: DynStore) {
        let id = ingest(&store, Priority::High, at(0), &[&[1, 2, 3], &[4]]).await;
        let batch = claimed(&store, at(1)).await;
        assert_eq!((batch.attempt, batch.started_at), (1, at(1)));
        assert_eq!(batch.lease_until, at(1).plus(LEASE));
        assert_eq!(store.last_start().await.unwrap(), Some(at(1)));
        let record = store.ingestion(id).await.unwrap().unwrap();
        assert_eq!(record.batches[0].status, BatchStatus::Triggered);
        assert_eq!(record.batches[0].started_at, Some(at(1)));
        assert_eq!(record.batches[1].status, BatchStatus::YetToStart);
    }

    pub async fn the_next_start_waits_for_the_interval_and_not_a_microsecond_less(store: DynStore) {
        ingest(&store, Priority::High, at(0), &[&[1], &[2]]).await;
        let first = claimed(&store, at(0)).await;
        finish(&store, &first, at(1)).await;
        let almost = Timestamp::from_micros(at(5).as_micros() - 1);
        assert_eq!(claim(&store, almost).await, not_before(almost, at(5)));
        assert_eq!(claimed(&store, at(5)).await.ids, vec![2]);
    }

    pub async fn nothing_starts_while_another_batch_holds_a_live_lease(store: DynStore) {
        ingest(&store, Priority::High, at(0), &[&[1], &[2]]).await;
        let first = claimed(&store, at(0)).await;
        assert_eq!(
            claim(&store, at(6)).await,
            in_flight(at(6), first.lease_until)
        );
        finish(&store, &first, at(7)).await;
        assert_eq!(claimed(&store, at(7)).await.ids, vec![2]);
    }

    pub async fn an_expired_lease_is_taken_over_and_the_late_completion_is_fenced(store: DynStore) {
        let id = ingest(&store, Priority::High, at(0), &[&[1], &[2]]).await;
        let first = claimed(&store, at(0)).await;
        let expired = at(0).plus(LEASE);
        let again = claimed(&store, expired).await;
        assert_eq!((again.batch_id, again.attempt), (first.batch_id, 2));
        let late = store
            .complete(first.batch_id, first.attempt, expired, results(&first))
            .await
            .unwrap();
        assert_eq!(late, Completion::Fenced);
        assert!(!store
            .renew_lease(first.batch_id, first.attempt, at(60), LEASE)
            .await
            .unwrap());
        // The new holder's lease (until 60) is live a moment before it runs out.
        assert!(store
            .renew_lease(again.batch_id, again.attempt, at(59), LEASE)
            .await
            .unwrap());
        finish(&store, &again, at(40)).await;
        let record = store.ingestion(id).await.unwrap().unwrap();
        assert_eq!(record.batches[0].status, BatchStatus::Completed);
        assert_eq!(record.batches[0].attempt, 2);
    }

    pub async fn a_completed_batch_keeps_its_results_and_times(store: DynStore) {
        let id = ingest(&store, Priority::Low, at(0), &[&[7, 8]]).await;
        let batch = claimed(&store, at(2)).await;
        finish(&store, &batch, at(3)).await;
        let record = store.ingestion(id).await.unwrap().unwrap();
        let b = &record.batches[0];
        assert_eq!(b.status, BatchStatus::Completed);
        assert_eq!((b.started_at, b.completed_at), (Some(at(2)), Some(at(3))));
        assert_eq!(b.results, results(&batch));
        // Completing twice is refused: the batch is no longer in flight.
        let twice = store
            .complete(batch.batch_id, batch.attempt, at(4), vec![])
            .await
            .unwrap();
        assert_eq!(twice, Completion::Fenced);
    }

    pub async fn concurrent_inserts_are_all_stored(store: DynStore) {
        let tasks: Vec<_> = (0..200u64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    ingest(&store, Priority::Medium, at(i), &[&[i + 1], &[i + 2]]).await
                })
            })
            .collect();
        for task in tasks {
            let id = task.await.unwrap();
            assert_eq!(store.ingestion(id).await.unwrap().unwrap().batches.len(), 2);
        }
    }

    pub async fn concurrent_submissions_never_pass_the_waiting_bound(store: DynStore) {
        let bounded = Admission {
            key: None,
            max_waiting: Some(50),
        };
        let tasks: Vec<_> = (0..80u64)
            .map(|i| {
                let (store, bounded) = (store.clone(), bounded.clone());
                tokio::spawn(async move {
                    let two = record(Priority::Low, at(i), &[&[i], &[i + 1]]);
                    store.insert_ingestion(two, bounded).await.unwrap()
                })
            })
            .collect();
        let mut created = 0;
        for task in tasks {
            match task.await.unwrap() {
                Inserted::Created => created += 1,
                Inserted::QueueFull { waiting } => assert!(waiting + 2 > 50, "{waiting}"),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(created, 25, "exactly as many as fit");
        assert_eq!(store.queue(0).await.unwrap().waiting, [0, 0, 50]);
        assert_eq!(store.recent_ingestions(100).await.unwrap().len(), 25);
    }

    pub async fn concurrent_retries_with_one_key_store_one_ingestion(store: DynStore) {
        let keyed = |fingerprint: &str| Admission {
            key: Some(IdempotencyKey {
                key: "retry-me".into(),
                fingerprint: fingerprint.into(),
            }),
            max_waiting: None,
        };
        let tasks: Vec<_> = (0..40u64)
            .map(|i| {
                let store = store.clone();
                // Every fourth one is a different request under the same key.
                let admission = keyed(if i % 4 == 3 { "other" } else { "same" });
                tokio::spawn(async move {
                    let record = record(Priority::High, at(i), &[&[1, 2, 3]]);
                    let id = record.id;
                    (
                        id,
                        admission.clone(),
                        store.insert_ingestion(record, admission).await,
                    )
                })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        let stored = store.recent_ingestions(100).await.unwrap();
        assert_eq!(stored.len(), 1, "one ingestion for one key");
        let first = stored[0].id;
        let winner = answers
            .iter()
            .find(|(_, _, answer)| *answer == Ok(Inserted::Created))
            .expect("one submission stored");
        assert_eq!(winner.0, first);
        let fingerprint = |a: &Admission| a.key.as_ref().unwrap().fingerprint.clone();
        for (id, admission, answer) in &answers {
            if *id == first {
                continue;
            }
            let expected = match fingerprint(admission) == fingerprint(&winner.1) {
                true => Inserted::Replayed(first),
                false => Inserted::KeyConflict,
            };
            assert_eq!(answer, &Ok(expected));
        }
    }

    pub async fn a_write_that_fails_fails_alone_and_the_others_are_stored(store: DynStore) {
        let taken = ingest(&store, Priority::Medium, at(0), &[&[1]]).await;
        let tasks: Vec<_> = (0..30u64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut record = record(Priority::Medium, at(i + 1), &[&[i]]);
                    if i == 15 {
                        // An id already stored: the store refuses this one.
                        record.id = taken;
                    }
                    let id = record.id;
                    (
                        i,
                        id,
                        store.insert_ingestion(record, Admission::default()).await,
                    )
                })
            })
            .collect();
        for task in tasks {
            let (i, id, answer) = task.await.unwrap();
            if i == 15 {
                assert!(answer.is_err(), "{answer:?}");
            } else {
                assert_eq!(answer, Ok(Inserted::Created));
                assert_eq!(store.ingestion(id).await.unwrap().unwrap().batches.len(), 1);
            }
        }
        let ours = store.ingestion(taken).await.unwrap().unwrap();
        assert_eq!(ours.batches[0].ids, vec![1], "the first one is untouched");
        assert_eq!(store.queue(0).await.unwrap().waiting, [0, 30, 0]);
    }

    pub async fn recent_ingestions_come_newest_first_with_their_batches(store: DynStore) {
        assert!(store.recent_ingestions(10).await.unwrap().is_empty());
        let first = ingest(&store, Priority::High, at(0), &[&[1, 2, 3], &[4]]).await;
        let second = ingest(&store, Priority::Low, at(1), &[&[5]]).await;
        let third = ingest(&store, Priority::Medium, at(2), &[&[6]]).await;
        let recent = store.recent_ingestions(2).await.unwrap();
        let ids: Vec<_> = recent.iter().map(|r| r.id).collect();
        assert_eq!(ids, [third, second]);
        let all = store.recent_ingestions(10).await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[2], store.ingestion(first).await.unwrap().unwrap());
        assert_eq!(all[2].batches.len(), 2);
    }

    pub async fn a_summary_reads_the_counts_and_a_window_of_batches_around_the_work_in_progress(
        store: DynStore,
    ) {
        assert!(store
            .summaries(&Selection::newest(10), 16, Fairness::Fifo)
            .await
            .unwrap()
            .is_empty());
        // 100 batches: 99 of three IDs and a last of one; then a small one behind it.
        let ids: Vec<Vec<u64>> = (0..100u64)
            .map(|b| match b {
                99 => vec![298],
                _ => vec![3 * b + 1, 3 * b + 2, 3 * b + 3],
            })
            .collect();
        let shapes: Vec<&[u64]> = ids.iter().map(|v| v.as_slice()).collect();
        let big = ingest(&store, Priority::Medium, at(0), &shapes).await;
        let small = ingest(&store, Priority::Medium, at(1), &[&[7], &[8]]).await;
        // 50 batches run, the 51st is in flight.
        let mut t = 10;
        for _ in 0..50 {
            let batch = claimed(&store, at(t)).await;
            finish(&store, &batch, at(t + 1)).await;
            t += 5;
        }
        let running = claimed(&store, at(t)).await;
        let summaries = store
            .summaries(&Selection::newest(10), 16, Fairness::Fifo)
            .await
            .unwrap();
        let order: Vec<Uuid> = summaries.iter().map(|s| s.id).collect();
        assert_eq!(order, [small, big], "newest first");
        let s = &summaries[1];
        assert_eq!(
            s.counts,
            StatusCounts {
                waiting: 49,
                running: 1,
                completed: 50,
                cancelled: 0,
                failed: 0
            }
        );
        assert_eq!(s.id_count, 298);
        assert_eq!(s.last_completed_at, Some(at(t - 4)));
        assert_eq!(s.running_since, Some(at(t)));
        // Two completed batches before the one in flight, then what follows it.
        assert_eq!(s.first_shown, 48);
        let positions: Vec<u32> = s.batches.iter().map(|b| b.position).collect();
        assert_eq!(positions, (48..64).collect::<Vec<u32>>());
        assert_eq!(s.batches[2].status, BatchStatus::Triggered);
        assert_eq!(s.batches[3].ids, vec![154, 155, 156]);
        let place = s.place.clone().expect("work is left");
        assert_eq!(place.ahead.before(0), 0);
        assert_eq!(place.in_flight_since, Some(at(t)));
        assert_eq!(summaries[0].place.clone().unwrap().ahead.before(0), 49);
        assert_eq!(summaries[0].first_shown, 0);
        assert_eq!(summaries[0].batches.len(), 2);

        // Cancelled: the window moves to the first batch that did not complete.
        assert_eq!(store.cancel(big, at(t + 1)).await.unwrap(), Some(49));
        finish(&store, &running, at(t + 2)).await;
        let s = store
            .summaries(&Selection::newest(10), 16, Fairness::Fifo)
            .await
            .unwrap()
            .remove(1);
        assert_eq!((s.counts.completed, s.counts.cancelled), (51, 49));
        assert_eq!(s.first_shown, 49);
        assert_eq!(s.batches[2].status, BatchStatus::Cancelled);
        assert_eq!(s.place, None, "nothing of it is left to run");
        assert_eq!(s.running_since, None);
        assert_eq!(s.last_completed_at, Some(at(t + 2)));

        // The small one runs to the end: its last completion, no place.
        for k in 0..2 {
            let batch = claimed(&store, at(t + 10 + 5 * k)).await;
            finish(&store, &batch, at(t + 11 + 5 * k)).await;
        }
        let s = store
            .summaries(&Selection::newest(1), 16, Fairness::Fifo)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(s.id, small);
        assert_eq!(s.counts.completed, 2);
        assert_eq!(s.last_completed_at, Some(at(t + 16)));
        assert_eq!((s.first_shown, s.batches.len(), s.place), (0, 2, None));
    }

    pub async fn a_selection_filters_by_priority_and_status_and_pages_to_older_ingestions(
        store: DynStore,
    ) {
        // Oldest first: a LOW, a HIGH that will run, a MEDIUM cancelled,
        // a LOW and a HIGH waiting.
        let oldest = ingest(&store, Priority::Low, at(0), &[&[1]]).await;
        let running = ingest(&store, Priority::High, at(1), &[&[2], &[3]]).await;
        let cancelled = ingest(&store, Priority::Medium, at(2), &[&[4]]).await;
        let low = ingest(&store, Priority::Low, at(3), &[&[5]]).await;
        let high = ingest(&store, Priority::High, at(4), &[&[6]]).await;
        assert_eq!(store.cancel(cancelled, at(5)).await.unwrap(), Some(1));
        // HIGH first: `running`'s first batch completes, its second is in flight...
        let first = claimed(&store, at(10)).await;
        finish(&store, &first, at(11)).await;
        claimed(&store, at(15)).await;
        let read = |selection: Selection| {
            let store = store.clone();
            async move {
                let listed = store
                    .summaries(&selection, 16, Fairness::Fifo)
                    .await
                    .unwrap();
                listed.iter().map(|s| s.id).collect::<Vec<Uuid>>()
            }
        };
        assert_eq!(
            read(Selection::newest(10)).await,
            [high, low, cancelled, running, oldest]
        );
        let of = |status| Selection {
            status: Some(status),
            ..Selection::newest(10)
        };
        assert_eq!(
            read(of(IngestionStatus::YetToStart)).await,
            [high, low, oldest]
        );
        assert_eq!(read(of(IngestionStatus::Triggered)).await, [running]);
        assert_eq!(read(of(IngestionStatus::Cancelled)).await, [cancelled]);
        assert!(read(of(IngestionStatus::Completed)).await.is_empty());
        let at_low = Selection {
            priority: Some(Priority::Low),
            ..Selection::newest(10)
        };
        assert_eq!(read(at_low.clone()).await, [low, oldest]);
        // Paging: two at a time, each page older than the last one shown.
        let page = |before| Selection {
            before,
            ..Selection::newest(2)
        };
        assert_eq!(read(page(None)).await, [high, low]);
        assert_eq!(read(page(Some(low))).await, [cancelled, running]);
        assert_eq!(read(page(Some(running))).await, [oldest]);
        assert!(read(page(Some(oldest))).await.is_empty());
        assert!(
            read(page(Some(Uuid::new_v4()))).await.is_empty(),
            "older than an unknown ingestion: nothing"
        );
        // Conditions combine.
        let both = Selection {
            before: Some(low),
            status: Some(IngestionStatus::YetToStart),
            ..at_low
        };
        assert_eq!(read(both).await, [oldest]);
    }

    pub async fn the_pace_lists_the_starts_since_a_time_newest_first_with_the_waiting_counts(
        store: DynStore,
    ) {
        let empty = store.pace(at(0), 10).await.unwrap();
        assert_eq!(empty.waiting, [0, 0, 0]);
        assert!(empty.starts.is_empty());
        ingest(&store, Priority::Low, at(0), &[&[1], &[2], &[3]]).await;
        ingest(&store, Priority::High, at(1), &[&[4]]).await;
        let mut started = Vec::new();
        for (i, secs) in [10, 15, 20].into_iter().enumerate() {
            let batch = claimed(&store, at(secs)).await;
            finish(&store, &batch, at(secs)).await;
            started.push((batch.started_at, batch.priority, batch.batch_id));
            assert_eq!(batch.started_at, at(secs), "start {i}");
        }
        assert_eq!(started[0].1, Priority::High, "HIGH first");
        let pace = store.pace(at(0), 10).await.unwrap();
        assert_eq!(pace.waiting, [0, 0, 1], "one LOW batch still waits");
        assert_eq!(
            pace.starts,
            started.iter().rev().copied().collect::<Vec<_>>()
        );
        assert!(!pace.paused);
        assert_eq!(pace.rate_interval, None);
        // Since a time: only the starts at or after it; at most `limit`, the newest.
        let since = store.pace(at(15), 10).await.unwrap();
        assert_eq!(since.starts, [started[2], started[1]]);
        let newest = store.pace(at(0), 1).await.unwrap();
        assert_eq!(newest.starts, [started[2]]);
        // Counts only.
        let counts = store.pace(at(0), 0).await.unwrap();
        assert!(counts.starts.is_empty());
        assert_eq!(counts.waiting, [0, 0, 1]);
        store.set_paused(true, at(21)).await.unwrap();
        assert!(store.pace(at(0), 0).await.unwrap().paused);
    }

    pub async fn one_ingestion_is_summarized_with_the_page_of_batches_asked_for(store: DynStore) {
        let shapes: Vec<Vec<u64>> = (0..250u64).map(|b| vec![2 * b, 2 * b + 1]).collect();
        let shapes: Vec<&[u64]> = shapes.iter().map(|v| v.as_slice()).collect();
        let big = ingest(&store, Priority::Medium, at(0), &shapes).await;
        ingest(&store, Priority::Medium, at(1), &[&[9]]).await;
        let one = |from| {
            let store = store.clone();
            async move {
                let mut listed = store
                    .summaries(&Selection::one(big, from), 100, Fairness::Fifo)
                    .await
                    .unwrap();
                assert_eq!(listed.len(), 1);
                listed.remove(0)
            }
        };
        let s = one(100).await;
        assert_eq!(s.id, big);
        assert_eq!(s.counts.waiting, 250);
        assert_eq!(s.first_shown, 100);
        let positions: Vec<u32> = s.batches.iter().map(|b| b.position).collect();
        assert_eq!(positions, (100..200).collect::<Vec<u32>>());
        assert_eq!(s.batches[0].ids, [200, 201]);
        assert_eq!(
            s.waiting_before_shown, 100,
            "its predictions count from there"
        );
        assert_eq!(s.place.expect("it waits").ahead.before(0), 0);
        // The last page is short; past the end shows the last batch.
        assert_eq!(one(200).await.batches.len(), 50);
        let past = one(10_000).await;
        assert_eq!((past.first_shown, past.batches.len()), (249, 1));
        assert!(store
            .summaries(&Selection::one(Uuid::new_v4(), 0), 100, Fairness::Fifo)
            .await
            .unwrap()
            .is_empty());
    }

    pub async fn an_ingestion_is_found_by_its_id_a_batch_id_or_the_end_of_its_id(store: DynStore) {
        let first = ingest(&store, Priority::Medium, at(0), &[&[1], &[2]]).await;
        let second = ingest(&store, Priority::High, at(1), &[&[3]]).await;
        let found = |lookup: Lookup| {
            let store = store.clone();
            async move { store.find_ingestions(&lookup, 10).await.unwrap() }
        };
        assert_eq!(found(Lookup::Id(first)).await, [first]);
        let batch = store.ingestion(second).await.unwrap().unwrap().batches[0].id;
        assert_eq!(found(Lookup::Id(batch)).await, [second], "by a batch's id");
        assert!(found(Lookup::Id(Uuid::new_v4())).await.is_empty());
        let short = |id: Uuid| {
            let text = id.simple().to_string();
            text[text.len() - 8..].to_owned()
        };
        assert_eq!(found(Lookup::Suffix(short(second))).await, [second]);
        let whole_group = first.simple().to_string()[20..].to_owned();
        assert_eq!(found(Lookup::Suffix(whole_group)).await, [first]);
        assert!(found(Lookup::Suffix("zzzzzzzz".into())).await.is_empty());
    }

    pub async fn a_batch_keeps_the_record_of_its_attempts(store: DynStore) {
        assert_eq!(store.attempts(Uuid::new_v4()).await.unwrap(), None);
        ingest(&store, Priority::High, at(0), &[&[1, 2]]).await;
        let first = claimed(&store, at(0)).await;
        let running = store.attempts(first.batch_id).await.unwrap().unwrap();
        assert_eq!(running.running, Some(1), "attempt 1 holds the batch");
        assert_eq!(running.attempts[0].outcome, None);
        // Its lease runs out: attempt 2 takes it over; attempt 1 never gets an outcome.
        let second = claimed(&store, at(40)).await;
        assert_eq!(second.attempt, 2);
        let failed = store
            .fail(
                second.batch_id,
                2,
                at(41),
                "down".into(),
                Some(503),
                Some(at(100)),
            )
            .await
            .unwrap();
        assert_eq!(failed, Completion::Completed);
        let third = claimed(&store, at(100)).await;
        finish(&store, &third, at(101)).await;
        let attempts = store.attempts(first.batch_id).await.unwrap().unwrap();
        assert_eq!(attempts.running, None, "completed");
        let codes: Vec<Option<u16>> = attempts.attempts.iter().map(|a| a.status_code).collect();
        assert_eq!(codes, [None, Some(503), None]);
        let summary: Vec<_> = attempts
            .attempts
            .iter()
            .map(|a| {
                (
                    a.attempt,
                    a.replica.as_str(),
                    a.started_at,
                    a.finished_at,
                    a.outcome.as_deref(),
                    a.error.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (1, "test", at(0), None, None, None),
                (
                    2,
                    "test",
                    at(40),
                    Some(at(41)),
                    Some("retrying"),
                    Some("down")
                ),
                (3, "test", at(100), Some(at(101)), Some("completed"), None),
            ]
        );
    }

    pub async fn a_page_of_ids_reads_only_the_batches_that_hold_it(store: DynStore) {
        assert_eq!(store.id_page(Uuid::new_v4(), 0, 10).await.unwrap(), None);
        let id = ingest(
            &store,
            Priority::Low,
            at(0),
            &[&[1, 2, 3], &[4, 5, 6], &[7, 8, 9], &[10]],
        )
        .await;
        let page = store.id_page(id, 4, 4).await.unwrap().unwrap();
        assert_eq!((page.id_count, page.first_offset), (10, 3));
        let positions: Vec<u32> = page.batches.iter().map(|b| b.position).collect();
        assert_eq!(positions, [1, 2], "IDs 5 to 8");
        let last = store.id_page(id, 9, 100).await.unwrap().unwrap();
        assert_eq!(last.batches.len(), 1);
        assert_eq!(
            (last.first_offset, &last.batches[0].ids[..]),
            (9, &[10][..])
        );
        let past = store.id_page(id, 10, 5).await.unwrap().unwrap();
        assert_eq!((past.id_count, past.batches.len()), (10, 0));
    }

    pub async fn the_queue_shows_depth_in_flight_and_recent_dispatches(store: DynStore) {
        let empty = store.queue(5).await.unwrap();
        assert_eq!(empty.waiting, [0, 0, 0]);
        assert!(empty.in_flight.is_empty() && empty.recent.is_empty());
        assert_eq!(empty.last_start, None);
        assert_eq!(empty.oldest_waiting, None);

        let low = ingest(&store, Priority::Low, at(0), &[&[1], &[2]]).await;
        ingest(&store, Priority::High, at(1), &[&[3], &[4], &[5]]).await;
        // The oldest waiting work is the LOW ingestion's, though HIGH goes first.
        assert_eq!(store.queue(5).await.unwrap().oldest_waiting, Some(at(0)));
        let first = claimed(&store, at(1)).await;
        let queue = store.queue(5).await.unwrap();
        assert_eq!(queue.waiting, [2, 0, 2]);
        assert_eq!(queue.in_flight.len(), 1);
        assert_eq!(queue.in_flight[0].batch_id, first.batch_id);
        assert_eq!(queue.in_flight[0].completed_at, None);
        assert_eq!(queue.last_start, Some(at(1)));

        finish(&store, &first, at(2)).await;
        let second = claimed(&store, at(6)).await;
        let queue = store.queue(5).await.unwrap();
        assert_eq!(queue.waiting, [1, 0, 2]);
        let recent: Vec<_> = queue.recent.iter().map(|d| d.batch_id).collect();
        assert_eq!(recent, [second.batch_id, first.batch_id]);
        assert_eq!(queue.recent[1].completed_at, Some(at(2)));
        assert_eq!(queue.recent[1].priority, Priority::High);
        assert_eq!(store.queue(1).await.unwrap().recent.len(), 1);
        assert!(queue.recent.iter().all(|d| d.ingestion_id != low));
    }

    pub async fn an_ingestions_place_counts_the_waiting_batches_dispatched_before_it(
        store: DynStore,
    ) {
        assert_eq!(
            store
                .queue_place(Uuid::new_v4(), Fairness::Fifo)
                .await
                .unwrap(),
            None
        );
        let early_low = ingest(&store, Priority::Low, at(0), &[&[1], &[2]]).await;
        let medium = ingest(&store, Priority::Medium, at(1), &[&[3], &[4], &[5]]).await;
        let late_low = ingest(&store, Priority::Low, at(2), &[&[6]]).await;
        let high = ingest(&store, Priority::High, at(3), &[&[7]]).await;
        let ahead =
            |place: Option<sluice::server::store::QueuePlace>| place.unwrap().ahead.before(0);
        assert_eq!(
            ahead(store.queue_place(high, Fairness::Fifo).await.unwrap()),
            0
        );
        assert_eq!(
            ahead(store.queue_place(medium, Fairness::Fifo).await.unwrap()),
            1
        );
        assert_eq!(
            ahead(store.queue_place(early_low, Fairness::Fifo).await.unwrap()),
            4
        );
        assert_eq!(
            ahead(store.queue_place(late_low, Fairness::Fifo).await.unwrap()),
            6
        );

        let batch = claimed(&store, at(4)).await;
        let place = store
            .queue_place(late_low, Fairness::Fifo)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(place.ahead.before(0), 5);
        assert_eq!(place.last_start, Some(at(4)));
        assert_eq!(place.in_flight_since, Some(at(4)));
        finish(&store, &batch, at(5)).await;
        let place = store
            .queue_place(late_low, Fairness::Fifo)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(place.in_flight_since, None);
    }

    pub async fn places_stay_exact_across_blocks_of_ingestions_stored_together(store: DynStore) {
        // More ingestions than one block (128) holds, stored concurrently so that groups span
        // a block boundary; each has one batch, behind a HIGH ingestion of two.
        ingest(&store, Priority::High, at(0), &[&[1], &[2]]).await;
        let stored = futures::future::join_all((0..300u64).map(|i| {
            let store = store.clone();
            async move { ingest(&store, Priority::Medium, at(1), &[&[i]]).await }
        }))
        .await;
        // Their places: every count from 2 (the HIGH batches) to 301 once, whatever order
        // they were accepted in.
        let places = |ids: Vec<Uuid>| {
            let store = store.clone();
            async move {
                let mut places = Vec::new();
                for id in ids {
                    places.push(
                        store
                            .queue_place(id, Fairness::Fifo)
                            .await
                            .unwrap()
                            .unwrap()
                            .ahead
                            .before(0),
                    );
                }
                places.sort_unstable();
                places
            }
        };
        assert_eq!(places(stored.clone()).await, (2..302).collect::<Vec<u64>>());
        // Cancelling some (in several blocks) and starting three batches moves every later
        // place by exactly what left the queue before it.
        for id in stored.iter().step_by(7) {
            assert_eq!(store.cancel(*id, at(2)).await.unwrap(), Some(1));
        }
        let mut started = Vec::new();
        for k in 0..3u64 {
            let batch = claimed(&store, at(10 + 10 * k)).await;
            finish(&store, &batch, at(11 + 10 * k)).await;
            started.push(batch.ingestion_id);
        }
        let waiting: Vec<Uuid> = stored
            .iter()
            .enumerate()
            .filter(|(i, id)| i % 7 != 0 && !started.contains(id))
            .map(|(_, id)| *id)
            .collect();
        // The HIGH ingestion's two batches and one MEDIUM batch started.
        assert_eq!(waiting.len(), 300 - 43 - 1);
        assert_eq!(
            places(waiting.clone()).await,
            (0..waiting.len() as u64).collect::<Vec<u64>>()
        );
    }

    /// A downstream that never succeeds: batches start and fail, none completes. The log is
    /// still cut to its retention, and keys past theirs are forgotten.
    pub async fn housekeeping_keeps_the_newest_events_and_forgets_expired_keys_with_no_batch_completing(
        store: DynStore,
    ) {
        let keyed = Admission {
            key: Some(IdempotencyKey {
                key: "once".into(),
                fingerprint: "f".into(),
            }),
            max_waiting: None,
        };
        let inserted = store
            .insert_ingestion(record(Priority::Low, at(0), &[&[1]]), keyed)
            .await
            .unwrap();
        assert_eq!(inserted, Inserted::Created);
        for i in 1..6u64 {
            ingest(&store, Priority::Low, at(i), &[&[i]]).await;
        }
        let batch = claimed(&store, at(10)).await;
        let failed = store
            .fail(
                batch.batch_id,
                batch.attempt,
                at(11),
                "down".into(),
                None,
                Some(at(100)),
            )
            .await
            .unwrap();
        assert_eq!(failed, Completion::Completed);
        let all: Vec<u64> = store
            .events_after(0, None, 1000)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert!(all.len() > 3, "{all:?}");
        let keep = Retention {
            events: 3,
            keys: Duration::from_secs(3600),
            ..Retention::default()
        };
        let done = store.housekeep(at(12), keep).await.unwrap();
        assert_eq!(
            done,
            Housekept {
                events: all.len() as u64 - 3,
                ..Housekept::default()
            }
        );
        let left: Vec<u64> = store
            .events_after(0, None, 1000)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(left, all[all.len() - 3..]);
        // Two hours later the key has expired; a second round finds nothing more.
        let done = store.housekeep(at(7200), keep).await.unwrap();
        assert_eq!(
            done,
            Housekept {
                keys: 1,
                ..Housekept::default()
            }
        );
        assert_eq!(
            store.housekeep(at(7201), keep).await.unwrap(),
            Housekept::default()
        );
    }

    pub async fn housekeeping_cuts_a_log_far_past_its_retention_down_to_it(store: DynStore) {
        // More events than one slice of housekeeping deletes (SQLite deletes in slices).
        futures::future::join_all((0..2_600u64).map(|i| {
            let store = store.clone();
            async move { ingest(&store, Priority::Low, at(1), &[&[i + 1]]).await }
        }))
        .await;
        let all = store.events_after(0, None, 10_000).await.unwrap();
        assert_eq!(all.len(), 2_600);
        let keep = Retention {
            events: 10,
            keys: Duration::from_secs(3600),
            ..Retention::default()
        };
        let done = store.housekeep(at(2), keep).await.unwrap();
        assert_eq!(done.events, 2_590);
        let left = store.events_after(0, None, 10_000).await.unwrap();
        assert_eq!(left, all[2_590..]);
    }

    pub async fn an_idempotency_key_stores_once_and_refuses_a_different_request(store: DynStore) {
        let key = |fingerprint: &str| Admission {
            key: Some(IdempotencyKey {
                key: "order-42".into(),
                fingerprint: fingerprint.into(),
            }),
            max_waiting: None,
        };
        let first = record(Priority::High, at(0), &[&[1, 2, 3]]);
        let first_id = first.id;
        let inserted = store.insert_ingestion(first, key("abc")).await.unwrap();
        assert_eq!(inserted, Inserted::Created);

        let retry = record(Priority::High, at(60), &[&[1, 2, 3]]);
        let retry_id = retry.id;
        let inserted = store.insert_ingestion(retry, key("abc")).await.unwrap();
        assert_eq!(inserted, Inserted::Replayed(first_id));
        assert_eq!(
            store.ingestion(retry_id).await.unwrap(),
            None,
            "nothing stored"
        );

        let other = record(Priority::Low, at(61), &[&[9]]);
        let other_id = other.id;
        let inserted = store.insert_ingestion(other, key("xyz")).await.unwrap();
        assert_eq!(inserted, Inserted::KeyConflict);
        assert_eq!(
            store.ingestion(other_id).await.unwrap(),
            None,
            "nothing stored"
        );
        assert_eq!(store.recent_ingestions(10).await.unwrap().len(), 1);

        // A day later the key is forgotten: the same key makes a new ingestion.
        let later = record(Priority::High, at(24 * 3600 + 1), &[&[1, 2, 3]]);
        let inserted = store.insert_ingestion(later, key("abc")).await.unwrap();
        assert_eq!(inserted, Inserted::Created);
    }

    pub async fn past_the_waiting_bound_nothing_is_stored_until_batches_start(store: DynStore) {
        let bounded = |max: u64| Admission {
            key: None,
            max_waiting: Some(max),
        };
        let two = record(Priority::Low, at(0), &[&[1], &[2]]);
        let inserted = store.insert_ingestion(two, bounded(3)).await.unwrap();
        assert_eq!(inserted, Inserted::Created);
        let two_more = record(Priority::High, at(1), &[&[3], &[4]]);
        let refused_id = two_more.id;
        let inserted = store
            .insert_ingestion(two_more.clone(), bounded(3))
            .await
            .unwrap();
        assert_eq!(inserted, Inserted::QueueFull { waiting: 2 });
        assert_eq!(store.ingestion(refused_id).await.unwrap(), None);

        // One batch starts: now the two fit, up to the bound itself, and nothing more does.
        claimed(&store, at(2)).await;
        let inserted = store.insert_ingestion(two_more, bounded(3)).await.unwrap();
        assert_eq!(inserted, Inserted::Created);
        let one = record(Priority::High, at(3), &[&[5]]);
        let inserted = store.insert_ingestion(one, bounded(3)).await.unwrap();
        assert_eq!(inserted, Inserted::QueueFull { waiting: 3 });
        assert_eq!(store.queue(0).await.unwrap().waiting.iter().sum::<u64>(), 3);
    }

    pub async fn a_paused_queue_starts_nothing_until_resumed(store: DynStore) {
        ingest(&store, Priority::High, at(0), &[&[1], &[2]]).await;
        assert!(store.set_paused(true, at(1)).await.unwrap());
        assert!(
            !store.set_paused(true, at(1)).await.unwrap(),
            "already paused"
        );
        assert_eq!(claim(&store, at(2)).await, Claim::Paused);
        let queue = store.queue(5).await.unwrap();
        assert!(queue.paused);
        assert_eq!(queue.waiting, [2, 0, 0]);
        assert!(store.set_paused(false, at(3)).await.unwrap());
        assert!(matches!(claim(&store, at(3)).await, Claim::Claimed(_)));
        assert!(!store.queue(5).await.unwrap().paused);
        let names: Vec<&str> = store
            .events_after(0, None, 100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.body.name())
            .collect();
        assert_eq!(
            names,
            [
                "ingestion_created",
                "dispatch_paused",
                "dispatch_resumed",
                "batch_triggered"
            ]
        );
    }

    pub async fn a_rate_interval_set_at_run_time_overrides_the_configured_one(store: DynStore) {
        ingest(&store, Priority::High, at(0), &[&[1], &[2], &[3]]).await;
        let first = claimed(&store, at(0)).await;
        finish(&store, &first, at(0)).await;
        assert_eq!(claim(&store, at(1)).await, not_before(at(1), at(5)));
        store
            .set_rate_interval(Some(Duration::from_secs(1)), 1000, at(1))
            .await
            .unwrap();
        assert_eq!(
            store.queue(0).await.unwrap().rate_interval,
            Some(Duration::from_secs(1))
        );
        let second = claimed(&store, at(1)).await;
        finish(&store, &second, at(1)).await;
        store.set_rate_interval(None, 5000, at(2)).await.unwrap();
        assert_eq!(claim(&store, at(2)).await, not_before(at(2), at(6)));
        assert_eq!(store.queue(0).await.unwrap().rate_interval, None);
        let events = store.events_after(0, None, 100).await.unwrap();
        let changes: Vec<&EventBody> = events
            .iter()
            .map(|e| &e.body)
            .filter(|b| b.name() == "rate_changed")
            .collect();
        assert_eq!(
            changes,
            [
                &EventBody::RateChanged {
                    rate_interval_ms: 1000
                },
                &EventBody::RateChanged {
                    rate_interval_ms: 5000
                }
            ]
        );
    }

    pub async fn every_change_appends_its_event_in_order(store: DynStore) {
        let mut feed = store.event_feed();
        let start = *feed.borrow_and_update();
        let id = ingest(&store, Priority::High, at(0), &[&[1, 2, 3], &[4]]).await;
        assert!(feed.has_changed().unwrap(), "the feed moves after a commit");
        let first = claimed(&store, at(0)).await;
        // A completion from a stale attempt appends nothing.
        let stale = store
            .complete(first.batch_id, 99, at(1), vec![])
            .await
            .unwrap();
        assert_eq!(stale, Completion::Fenced);
        finish(&store, &first, at(1)).await;
        let second = claimed(&store, at(5)).await;
        finish(&store, &second, at(6)).await;

        let events = store.events_after(start, None, 100).await.unwrap();
        let names: Vec<&str> = events.iter().map(|e| e.body.name()).collect();
        assert_eq!(
            names,
            [
                "ingestion_created",
                "batch_triggered",
                "batch_completed",
                "batch_triggered",
                "batch_completed",
                "ingestion_completed"
            ]
        );
        assert!(events.windows(2).all(|w| w[0].id < w[1].id), "ids increase");
        assert!(events.iter().all(|e| e.body.ingestion_id() == Some(id)));
        assert_eq!(
            events[0].body,
            EventBody::IngestionCreated {
                ingestion_id: id,
                priority: Priority::High,
                batches: 2
            }
        );
        assert_eq!(
            events[3].body,
            EventBody::BatchTriggered {
                ingestion_id: id,
                batch_id: second.batch_id,
                position: 1,
                attempt: 1
            }
        );
        assert_eq!(events[5].at, at(6));
        assert_eq!(*store.event_feed().borrow(), events[5].id);
    }

    pub async fn events_can_be_read_after_an_id_for_one_ingestion(store: DynStore) {
        let a = ingest(&store, Priority::Low, at(0), &[&[1]]).await;
        let b = ingest(&store, Priority::Low, at(1), &[&[2]]).await;
        let all = store.events_after(0, None, 100).await.unwrap();
        assert_eq!(all.len(), 2);
        let after_first = store.events_after(all[0].id, None, 100).await.unwrap();
        assert_eq!(after_first, all[1..].to_vec());
        let only_b = store.events_after(0, Some(b), 100).await.unwrap();
        assert_eq!(only_b.len(), 1);
        assert_eq!(only_b[0].body.ingestion_id(), Some(b));
        assert_eq!(store.events_after(0, None, 1).await.unwrap().len(), 1);
        assert!(store
            .events_after(0, Some(Uuid::new_v4()), 10)
            .await
            .unwrap()
            .is_empty());
        let _ = a;
    }

    pub async fn cancelling_stops_waiting_batches_and_lets_the_started_one_finish(store: DynStore) {
        let id = ingest(&store, Priority::High, at(0), &[&[1], &[2], &[3]]).await;
        let other = ingest(&store, Priority::Low, at(1), &[&[4]]).await;
        let running = claimed(&store, at(0)).await;
        let start = *store.event_feed().borrow();
        assert_eq!(store.cancel(id, at(2)).await.unwrap(), Some(2));
        let record = store.ingestion(id).await.unwrap().unwrap();
        let statuses: Vec<_> = record.batches.iter().map(|b| b.status).collect();
        use BatchStatus::*;
        assert_eq!(statuses, [Triggered, Cancelled, Cancelled]);
        assert_eq!(record.cancelled_at, Some(at(2)));
        assert_eq!(store.queue(5).await.unwrap().waiting, [0, 0, 1]);
        // A repeat cancels nothing more and keeps the first time.
        assert_eq!(store.cancel(id, at(3)).await.unwrap(), Some(0));
        assert_eq!(
            store.ingestion(id).await.unwrap().unwrap().cancelled_at,
            Some(at(2))
        );
        finish(&store, &running, at(4)).await;
        // The cancelled batches never start: the other ingestion's batch is next.
        assert_eq!(claimed(&store, at(5)).await.ingestion_id, other);
        let names: Vec<_> = store
            .events_after(start, Some(id), 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.body)
            .collect();
        assert_eq!(
            names,
            [
                EventBody::BatchesCancelled {
                    ingestion_id: id,
                    batches: 2
                },
                EventBody::BatchCompleted {
                    ingestion_id: id,
                    batch_id: running.batch_id,
                    position: 0
                },
                EventBody::IngestionCancelled { ingestion_id: id },
            ]
        );
    }

    pub async fn cancelling_an_idle_ingestion_ends_it_at_once_and_an_unknown_one_is_not_found(
        store: DynStore,
    ) {
        let id = ingest(&store, Priority::Medium, at(0), &[&[1], &[2]]).await;
        assert_eq!(store.cancel(id, at(1)).await.unwrap(), Some(2));
        let events = store.events_after(0, Some(id), 10).await.unwrap();
        let names: Vec<_> = events.iter().map(|e| e.body.name()).collect();
        assert_eq!(
            names,
            [
                "ingestion_created",
                "batches_cancelled",
                "ingestion_cancelled"
            ]
        );
        assert_eq!(claim(&store, at(2)).await, Claim::Idle);
        assert_eq!(store.cancel(Uuid::new_v4(), at(3)).await.unwrap(), None);
        // A finished ingestion has nothing to cancel.
        let done = ingest(&store, Priority::Medium, at(4), &[&[3]]).await;
        let batch = claimed(&store, at(5)).await;
        finish(&store, &batch, at(6)).await;
        assert_eq!(store.cancel(done, at(7)).await.unwrap(), Some(0));
        assert_eq!(
            store.ingestion(done).await.unwrap().unwrap().cancelled_at,
            None
        );
    }

    pub async fn a_failed_attempt_waits_for_its_retry_then_fails_for_good_and_can_be_requeued(
        store: DynStore,
    ) {
        let id = ingest(&store, Priority::High, at(0), &[&[1], &[2]]).await;
        let first = claimed(&store, at(0)).await;
        let retry_at = at(20);
        let outcome = store
            .fail(
                first.batch_id,
                first.attempt,
                at(1),
                "503".into(),
                None,
                Some(retry_at),
            )
            .await
            .unwrap();
        assert_eq!(outcome, Completion::Completed);
        let record = store.ingestion(id).await.unwrap().unwrap();
        assert_eq!(record.batches[0].status, BatchStatus::YetToStart);
        assert_eq!(record.batches[0].error.as_deref(), Some("503"));
        assert_eq!(record.batches[0].retry_at, Some(retry_at));
        assert_eq!(store.queue(5).await.unwrap().waiting, [2, 0, 0]);
        // Backing off: the next batch goes first, then nothing until the retry time.
        let second = claimed(&store, at(5)).await;
        assert_eq!(second.ids, vec![2]);
        finish(&store, &second, at(6)).await;
        assert_eq!(
            claim(&store, at(10)).await,
            Claim::RetryWait {
                at: retry_at,
                wait: retry_at.since(at(10))
            }
        );
        let again = claimed(&store, retry_at).await;
        assert_eq!((again.batch_id, again.attempt), (first.batch_id, 2));
        // A stale attempt's failure is fenced like its completion.
        let stale = store
            .fail(
                first.batch_id,
                first.attempt,
                at(21),
                "late".into(),
                None,
                None,
            )
            .await
            .unwrap();
        assert_eq!(stale, Completion::Fenced);
        store
            .fail(
                again.batch_id,
                again.attempt,
                at(22),
                "gave up".into(),
                None,
                None,
            )
            .await
            .unwrap();
        let record = store.ingestion(id).await.unwrap().unwrap();
        assert_eq!(record.batches[0].status, BatchStatus::Failed);
        assert_eq!(record.batches[0].error.as_deref(), Some("gave up"));
        let names: Vec<_> = store
            .events_after(0, Some(id), 20)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.body.name())
            .collect();
        assert_eq!(
            &names[names.len() - 2..],
            ["batch_failed", "ingestion_failed"]
        );
        assert_eq!(store.queue(5).await.unwrap().waiting, [0, 0, 0]);

        assert_eq!(
            store.requeue(second.batch_id, at(23)).await.unwrap(),
            Some(false)
        );
        assert_eq!(store.requeue(Uuid::new_v4(), at(23)).await.unwrap(), None);
        assert_eq!(
            store.requeue(first.batch_id, at(23)).await.unwrap(),
            Some(true)
        );
        assert_eq!(store.queue(5).await.unwrap().waiting, [1, 0, 0]);
        let third = claimed(&store, at(30)).await;
        assert_eq!((third.batch_id, third.attempt), (first.batch_id, 3));
        finish(&store, &third, at(31)).await;
        let record = store.ingestion(id).await.unwrap().unwrap();
        assert_eq!(record.batches[0].status, BatchStatus::Completed);
        assert_eq!(record.batches[0].error, None);
    }

    pub async fn a_lease_that_has_run_out_is_not_renewed(store: DynStore) {
        ingest(&store, Priority::High, at(0), &[&[1], &[2]]).await;
        let first = claimed(&store, at(0)).await;
        let live = at(0).plus(LEASE - Duration::from_micros(1));
        assert!(store
            .renew_lease(first.batch_id, first.attempt, live, LEASE)
            .await
            .unwrap());
        // Renewed at `live`: it now runs until live + LEASE. Past that, it is gone for good,
        // even before another dispatcher has claimed anything.
        let run_out = live.plus(LEASE);
        assert!(!store
            .renew_lease(first.batch_id, first.attempt, run_out, LEASE)
            .await
            .unwrap());
        let next = claimed(&store, run_out).await;
        assert_eq!((next.batch_id, next.attempt), (first.batch_id, 2));
    }

    pub async fn a_retry_backing_off_holds_back_no_new_work(store: DynStore) {
        ingest(&store, Priority::Low, at(0), &[&[1]]).await;
        let first = claimed(&store, at(0)).await;
        let retry_at = at(60);
        store
            .fail(
                first.batch_id,
                first.attempt,
                at(1),
                "503".into(),
                None,
                Some(retry_at),
            )
            .await
            .unwrap();
        // Only the retry waits: that is no rate slot.
        assert_eq!(
            claim(&store, at(6)).await,
            Claim::RetryWait {
                at: retry_at,
                wait: retry_at.since(at(6))
            }
        );
        // New work arriving meanwhile starts as soon as the slot allows.
        ingest(&store, Priority::High, at(7), &[&[2]]).await;
        assert_eq!(claimed(&store, at(7)).await.ids, vec![2]);
    }

    /// Cases that need to reopen the same database.
    pub async fn the_last_start_survives_a_restart(open: Open) {
        let store = open().await;
        ingest(&store, Priority::High, at(0), &[&[1], &[2]]).await;
        let first = claimed(&store, at(0)).await;
        finish(&store, &first, at(1)).await;
        drop(store);
        let store = open().await;
        assert_eq!(store.last_start().await.unwrap(), Some(at(0)));
        assert_eq!(claim(&store, at(2)).await, not_before(at(2), at(5)));
    }

    pub async fn a_batch_left_in_flight_goes_first_after_a_restart(open: Open) {
        let store = open().await;
        let old = ingest(&store, Priority::Medium, at(0), &[&[1], &[2]]).await;
        let in_flight = claimed(&store, at(0)).await;
        drop(store); // the process "dies" with [1] triggered
        let store = open().await;
        let newer = ingest(&store, Priority::Medium, at(1), &[&[3]]).await;
        let high = ingest(&store, Priority::High, at(2), &[&[4]]).await;
        assert_eq!(store.recover_abandoned().await.unwrap(), 1);
        let mut order = Vec::new();
        for step in 0..4 {
            let now = at(10 + step * 5);
            let batch = claimed(&store, now).await;
            order.push((batch.ingestion_id, batch.ids.clone(), batch.attempt));
            finish(&store, &batch, now).await;
        }
        assert_eq!(
            order,
            vec![
                (high, vec![4], 1),
                (old, vec![1], 2),
                (old, vec![2], 1),
                (newer, vec![3], 1)
            ]
        );
        assert_eq!(in_flight.ids, vec![1]);
    }

    pub async fn an_ingestion_keeps_its_tenant(store: DynStore) {
        let named = ingest_for(&store, "acme.eu-1", Priority::Low, at(0), &[&[1]]).await;
        let unnamed = ingest(&store, Priority::Low, at(1), &[&[2]]).await;
        let tenant = |id| {
            let store = store.clone();
            async move { store.ingestion(id).await.unwrap().unwrap().tenant }
        };
        assert_eq!(tenant(named).await, "acme.eu-1");
        assert_eq!(tenant(unnamed).await, "default");
        let listed = store
            .summaries(&Selection::newest(10), 4, Fairness::Fifo)
            .await
            .unwrap();
        let tenants: Vec<&str> = listed.iter().map(|s| s.tenant.as_str()).collect();
        assert_eq!(tenants, ["default", "acme.eu-1"]);
    }

    pub async fn under_tenant_fairness_tenants_take_turns_within_a_priority(store: DynStore) {
        // "big" submits a lot first; "small" and then "third" arrive later.
        ingest_for(
            &store,
            "big",
            Priority::Medium,
            at(0),
            &[&[1], &[2], &[3], &[4]],
        )
        .await;
        ingest_for(&store, "small", Priority::Medium, at(1), &[&[11], &[12]]).await;
        ingest_for(&store, "third", Priority::Medium, at(2), &[&[21]]).await;
        ingest_for(&store, "big", Priority::Low, at(3), &[&[31]]).await;
        let mut order = Vec::new();
        for step in 0..8 {
            let now = at(10 + step * 5);
            order.extend(start_and_finish(&store, now, Fairness::Tenant).await);
        }
        // Never started first (oldest batch first), then the longest since its last start;
        // LOW only once MEDIUM is empty.
        assert_eq!(order, [1, 11, 21, 2, 12, 3, 4, 31]);
    }

    pub async fn the_queue_counts_each_tenants_waiting_batches_and_places_follow_the_turns(
        store: DynStore,
    ) {
        let big = ingest_for(&store, "big", Priority::Medium, at(0), &[&[1], &[2], &[3]]).await;
        let small = ingest_for(&store, "small", Priority::Medium, at(1), &[&[11], &[12]]).await;
        let later_big = ingest_for(&store, "big", Priority::Medium, at(2), &[&[4], &[5]]).await;
        ingest_for(&store, "urgent", Priority::High, at(3), &[&[91]]).await;
        let tenants = |queue: &sluice::server::store::QueueRecord| queue.tenants.clone();
        let queue = store.queue(0).await.unwrap();
        let named = |list: &[(&str, u64)]| -> Vec<(String, u64)> {
            list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
        };
        assert_eq!(
            tenants(&queue),
            [
                named(&[("urgent", 1)]),
                named(&[("big", 5), ("small", 2)]),
                vec![]
            ],
            "most waiting first"
        );
        // Under `tenant`: HIGH first, then big and small alternate (small never started, but
        // big's first batch is older): big 1, small 11, big 2, small 12, big 3, big 4, big 5.
        let before = |id: Uuid, n: u64| {
            let store = store.clone();
            async move {
                let place = store
                    .queue_place(id, Fairness::Tenant)
                    .await
                    .unwrap()
                    .unwrap();
                (0..n).map(|k| place.ahead.before(k)).collect::<Vec<u64>>()
            }
        };
        assert_eq!(before(big, 3).await, [1, 3, 5]);
        assert_eq!(before(small, 2).await, [2, 4]);
        assert_eq!(before(later_big, 2).await, [6, 7]);
        let mut order = Vec::new();
        for step in 0..3 {
            order.extend(start_and_finish(&store, at(10 + step * 5), Fairness::Tenant).await);
        }
        assert_eq!(order, [91, 1, 11]);
        // Both have started now; big's start is older, so it goes next.
        assert_eq!(before(big, 2).await, [0, 2]);
        assert_eq!(before(small, 1).await, [1]);
        assert_eq!(before(later_big, 2).await, [3, 4]);
        // Counts follow starts and cancels; a tenant with nothing waiting is not listed.
        assert_eq!(store.cancel(small, at(30)).await.unwrap(), Some(1));
        let queue = store.queue(0).await.unwrap();
        assert_eq!(tenants(&queue), [vec![], named(&[("big", 4)]), vec![]]);
        assert_eq!(before(big, 2).await, [0, 1]);
    }

    pub async fn housekeeping_forgets_old_turns_of_tenants_without_waiting_work(store: DynStore) {
        ingest_for(&store, "gone", Priority::Medium, at(0), &[&[1]]).await;
        ingest_for(&store, "busy", Priority::Medium, at(1), &[&[11], &[12]]).await;
        let mut order = Vec::new();
        for step in 0..2 {
            order.extend(start_and_finish(&store, at(10 + step * 5), Fairness::Tenant).await);
        }
        assert_eq!(order, [1, 11]);
        let keep = Retention {
            turns: Duration::from_secs(3600),
            ..Retention::default()
        };
        // Within the retention nothing goes; past it, only the turn of the tenant with no
        // waiting work ("busy" still has one batch waiting).
        assert_eq!(store.housekeep(at(100), keep).await.unwrap().turns, 0);
        assert_eq!(store.housekeep(at(7200), keep).await.unwrap().turns, 1);
        assert_eq!(store.housekeep(at(7201), keep).await.unwrap().turns, 0);
        // "gone" returns and counts as never started: it goes before "busy", as it would
        // have with its old last start.
        ingest_for(&store, "gone", Priority::Medium, at(7202), &[&[2]]).await;
        let next = start_and_finish(&store, at(7210), Fairness::Tenant).await;
        assert_eq!(next, [2]);
    }

    pub async fn under_fifo_tenants_change_nothing_and_their_turns_still_count(store: DynStore) {
        ingest_for(&store, "big", Priority::Medium, at(0), &[&[1], &[2], &[3]]).await;
        ingest_for(&store, "small", Priority::Medium, at(1), &[&[11], &[12]]).await;
        let mut order = Vec::new();
        for step in 0..2 {
            order.extend(start_and_finish(&store, at(10 + step * 5), Fairness::Fifo).await);
        }
        assert_eq!(order, [1, 2]);
        // Switched to `tenant`: "small" never started, so it goes before "big", whose starts
        // under `fifo` were recorded; then they alternate.
        for step in 2..5 {
            order.extend(start_and_finish(&store, at(10 + step * 5), Fairness::Tenant).await);
        }
        assert_eq!(order, [1, 2, 11, 3, 12]);
    }

    pub async fn under_tenant_fairness_a_tenant_whose_retries_back_off_is_passed_over(
        store: DynStore,
    ) {
        ingest_for(&store, "flaky", Priority::High, at(0), &[&[1], &[2]]).await;
        ingest_for(&store, "steady", Priority::High, at(1), &[&[11], &[12]]).await;
        let first = match store
            .claim_next(at(10), INTERVAL, LEASE, "test", Fairness::Tenant)
            .await
            .unwrap()
        {
            Claim::Claimed(batch) => batch,
            other => panic!("{other:?}"),
        };
        assert_eq!(first.ids, [1]);
        // Its first batch fails and backs off for a minute: only that batch waits for it, the
        // tenant's next one takes its turns.
        store
            .fail(
                first.batch_id,
                first.attempt,
                at(11),
                "boom".into(),
                None,
                Some(at(70)),
            )
            .await
            .unwrap();
        let mut order = Vec::new();
        for step in 0..3 {
            order.extend(start_and_finish(&store, at(15 + step * 5), Fairness::Tenant).await);
        }
        assert_eq!(order, [11, 2, 12]);
        // Only the backing-off batch is left: nothing else starts before its time.
        assert!(matches!(
            store
                .claim_next(at(30), INTERVAL, LEASE, "test", Fairness::Tenant)
                .await
                .unwrap(),
            Claim::RetryWait { .. }
        ));
        assert_eq!(
            start_and_finish(&store, at(70), Fairness::Tenant).await,
            [1]
        );
    }

    pub async fn the_event_log_survives_a_restart(open: Open) {
        let store = open().await;
        ingest(&store, Priority::Low, at(0), &[&[1]]).await;
        let before = store.events_after(0, None, 100).await.unwrap();
        drop(store);
        let store = open().await;
        assert_eq!(store.events_after(0, None, 100).await.unwrap(), before);
        assert_eq!(*store.event_feed().borrow(), before.last().unwrap().id);
    }
}

macro_rules! conformance {
    // `cfg(all())` always holds: a backend without conditions.
    ($backend:ident, $fresh:expr) => {
        conformance!($backend, $fresh, #[cfg(all())]);
    };
    ($backend:ident, $fresh:expr, #[$attr:meta]) => {
        mod $backend {
            use super::*;
            conformance!(@cases $fresh, $attr;
                an_inserted_ingestion_reads_back_with_its_batches_in_split_order,
                an_unknown_ingestion_is_not_found,
                an_empty_queue_is_idle,
                batches_go_by_priority_then_acceptance_then_position,
                a_claim_marks_the_batch_triggered_and_moves_the_slot,
                the_next_start_waits_for_the_interval_and_not_a_microsecond_less,
                nothing_starts_while_another_batch_holds_a_live_lease,
                an_expired_lease_is_taken_over_and_the_late_completion_is_fenced,
                a_completed_batch_keeps_its_results_and_times,
                concurrent_inserts_are_all_stored,
                concurrent_submissions_never_pass_the_waiting_bound,
                concurrent_retries_with_one_key_store_one_ingestion,
                a_write_that_fails_fails_alone_and_the_others_are_stored,
                every_change_appends_its_event_in_order,
                events_can_be_read_after_an_id_for_one_ingestion,
                recent_ingestions_come_newest_first_with_their_batches,
                a_summary_reads_the_counts_and_a_window_of_batches_around_the_work_in_progress,
                a_page_of_ids_reads_only_the_batches_that_hold_it,
                a_selection_filters_by_priority_and_status_and_pages_to_older_ingestions,
                one_ingestion_is_summarized_with_the_page_of_batches_asked_for,
                the_pace_lists_the_starts_since_a_time_newest_first_with_the_waiting_counts,
                an_ingestion_is_found_by_its_id_a_batch_id_or_the_end_of_its_id,
                a_batch_keeps_the_record_of_its_attempts,
                the_queue_shows_depth_in_flight_and_recent_dispatches,
                an_ingestions_place_counts_the_waiting_batches_dispatched_before_it,
                places_stay_exact_across_blocks_of_ingestions_stored_together,
                an_idempotency_key_stores_once_and_refuses_a_different_request,
                housekeeping_keeps_the_newest_events_and_forgets_expired_keys_with_no_batch_completing,
                housekeeping_cuts_a_log_far_past_its_retention_down_to_it,
                past_the_waiting_bound_nothing_is_stored_until_batches_start,
                a_paused_queue_starts_nothing_until_resumed,
                a_rate_interval_set_at_run_time_overrides_the_configured_one,
                cancelling_stops_waiting_batches_and_lets_the_started_one_finish,
                cancelling_an_idle_ingestion_ends_it_at_once_and_an_unknown_one_is_not_found,
                a_failed_attempt_waits_for_its_retry_then_fails_for_good_and_can_be_requeued,
                a_lease_that_has_run_out_is_not_renewed,
                a_retry_backing_off_holds_back_no_new_work,
                an_ingestion_keeps_its_tenant,
                under_tenant_fairness_tenants_take_turns_within_a_priority,
                the_queue_counts_each_tenants_waiting_batches_and_places_follow_the_turns,
                housekeeping_forgets_old_turns_of_tenants_without_waiting_work,
                under_fifo_tenants_change_nothing_and_their_turns_still_count,
                under_tenant_fairness_a_tenant_whose_retries_back_off_is_passed_over,
            );
        }
    };
    (@cases $fresh:expr, $attr:meta; $($case:ident),* $(,)?) => {
        $(
            #[$attr]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $fresh.await;
                cases::$case(store).await;
            }
        )*
    };
}

async fn sqlite_memory() -> (DynStore, ()) {
    (Arc::new(SqliteStore::open_memory().await.unwrap()), ())
}

async fn sqlite_file() -> (DynStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_file(&dir.path().join("nested/dir/sluice.db"))
        .await
        .unwrap();
    (Arc::new(store), dir)
}

/// The tests drive time: slots on the caller's clock.
async fn open_postgres(url: &str) -> DynStore {
    Arc::new(
        PostgresStore::open(url, SlotClock::Caller, 4)
            .await
            .unwrap(),
    )
}

async fn postgres_fresh() -> (DynStore, postgres::TestDb) {
    let db = postgres::fresh_database().await;
    (open_postgres(&db.url).await, db)
}

conformance!(sqlite_in_memory, sqlite_memory());
conformance!(sqlite_on_disk, sqlite_file());
conformance!(on_postgres, postgres_fresh(), #[cfg_attr(skip_postgres, ignore = "SLUICE_SKIP_POSTGRES=1")]);

fn reopenable_postgres(db: &postgres::TestDb) -> Open {
    let url = db.url.clone();
    Arc::new(move || {
        let url = url.clone();
        Box::pin(async move { open_postgres(&url).await })
    })
}

#[cfg_attr(skip_postgres, ignore = "SLUICE_SKIP_POSTGRES=1")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_the_last_start_and_the_event_log_across_a_restart() {
    let db = postgres::fresh_database().await;
    cases::the_last_start_survives_a_restart(reopenable_postgres(&db)).await;
    let db = postgres::fresh_database().await;
    cases::the_event_log_survives_a_restart(reopenable_postgres(&db)).await;
}

#[cfg_attr(skip_postgres, ignore = "SLUICE_SKIP_POSTGRES=1")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stores_on_one_database_see_each_others_events_and_share_one_slot() {
    let db = postgres::fresh_database().await;
    let (a, b) = (open_postgres(&db.url).await, open_postgres(&db.url).await);
    let mut feed_b = b.event_feed();
    let id = ingest(&a, Priority::High, at(0), &[&[1], &[2]]).await;
    tokio::time::timeout(
        Duration::from_secs(10),
        feed_b.wait_for(|&latest| latest > 0),
    )
    .await
    .expect("the other store heard of the event")
    .unwrap();
    // Listening now, B hears of each of A's events through NOTIFY, well before its own poll
    // of the counter (once a second) could have found them all: three in a row, each within
    // 400 ms (by the poll alone, each would have a 40% chance).
    for round in 0..3u64 {
        let before = *feed_b.borrow_and_update();
        ingest(&a, Priority::Low, at(round), &[&[9]]).await;
        tokio::time::timeout(
            Duration::from_millis(400),
            feed_b.wait_for(|&latest| latest > before),
        )
        .await
        .expect("the other store heard of the event at once")
        .unwrap();
    }
    let first = claimed(&a, at(0)).await;
    assert_eq!(first.ingestion_id, id);
    // The slot and the lease are the cluster's: B may not start anything yet.
    assert_eq!(claim(&b, at(1)).await, not_before(at(1), at(5)));
    assert_eq!(claim(&b, at(6)).await, in_flight(at(6), first.lease_until));
    finish(&a, &first, at(6)).await;
    let second = claimed(&b, at(7)).await;
    assert_eq!(second.ids, vec![2]);
    assert_eq!(a.last_start().await.unwrap(), Some(at(7)));
}

/// How long a replica's feed may lag an event it was not told about.
const STALE_AT_MOST: Duration = Duration::from_secs(3);

#[cfg_attr(skip_postgres, ignore = "SLUICE_SKIP_POSTGRES=1")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_replica_hears_of_events_whose_notification_was_lost_or_whose_listener_was_cut()
{
    let db = postgres::fresh_database().await;
    let a = open_postgres(&db.url).await;
    let mut feed = a.event_feed();
    let client = db.connect().await;
    // An event committed with no NOTIFY (as if the notification were lost on the way).
    client
        .batch_execute(
            r#"WITH next AS (UPDATE event_serial SET last = last + 1 WHERE id = 1 RETURNING last)
               INSERT INTO events (id, at, ingestion_id, body)
               SELECT last, 0, '', '{"type":"dispatch_paused"}' FROM next"#,
        )
        .await
        .unwrap();
    tokio::time::timeout(STALE_AT_MOST, feed.wait_for(|&latest| latest >= 1))
        .await
        .expect("the feed caught up without the notification")
        .unwrap();

    // The listener's connection is cut; another replica's event still arrives.
    let cut = client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'sluice-listener' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(cut, 1, "one listener connection");
    let b = open_postgres(&db.url).await;
    ingest(&b, Priority::High, at(0), &[&[1]]).await;
    tokio::time::timeout(STALE_AT_MOST, feed.wait_for(|&latest| latest >= 2))
        .await
        .expect("the feed caught up after the listener was cut")
        .unwrap();
}

fn reopenable_sqlite_file() -> (Open, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    let open: Open = Arc::new(move || {
        let path = path.clone();
        Box::pin(async move { Arc::new(SqliteStore::open_file(&path).await.unwrap()) as DynStore })
    });
    (open, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_disk_keeps_the_last_start_across_a_restart() {
    let (open, _dir) = reopenable_sqlite_file();
    cases::the_last_start_survives_a_restart(open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_disk_dispatches_a_batch_left_in_flight_first_after_a_restart() {
    let (open, _dir) = reopenable_sqlite_file();
    cases::a_batch_left_in_flight_goes_first_after_a_restart(open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_in_use_by_one_store_cannot_be_opened_by_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    let first = SqliteStore::open_file(&path).await.unwrap();
    let second = SqliteStore::open_file(&path).await;
    let err = second
        .err()
        .expect("the second open is refused")
        .to_string();
    assert!(err.contains("in use by another sluice process"), "{err}");
    drop(first);
    assert!(SqliteStore::open_file(&path).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_disk_keeps_the_event_log_across_a_restart() {
    let (open, _dir) = reopenable_sqlite_file();
    cases::the_event_log_survives_a_restart(open).await;
}

/// The defect this guards against: the claim skipped (`SKIP LOCKED`) a batch whose lease had
/// run out while its holder's renewal held the row, and started the next batch, so two ran at
/// once. Now the claim waits for the renewal and sees the lease live.
/// Twenty ingestions arrive while another replica's group holds the writers' turn and the
/// counters, as every group does from its turn to its commit: they are stored together, in
/// one transaction, once it commits (not the first alone and the rest after: small groups,
/// each paying a commit, are what made three replicas slower than one).
#[cfg_attr(skip_postgres, ignore = "SLUICE_SKIP_POSTGRES=1")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingestions_arriving_while_another_replica_commits_are_stored_together_in_one_transaction()
{
    let db = postgres::fresh_database().await;
    let store = open_postgres(&db.url).await;
    ingest(&store, Priority::High, at(0), &[&[1]]).await;
    let other = db.connect().await;
    other
        .batch_execute(&format!(
            "BEGIN; {}; SELECT 1 FROM queue_depth ORDER BY priority FOR UPDATE;
             UPDATE event_serial SET last = last",
            PostgresStore::WRITERS_TURN
        ))
        .await
        .unwrap();
    let first = {
        let store = store.clone();
        tokio::spawn(async move { ingest(&store, Priority::Low, at(1), &[&[2]]).await })
    };
    // The writer is now waiting for the other replica.
    let mut waited = 0;
    loop {
        let waiting: i64 = other
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        waited += 1;
        assert!(
            waited < 1000,
            "the writer never waited for the other replica"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Nineteen more reach the writer's queue (a first poll sends each) while it waits.
    let mut rest: Vec<Pin<Box<dyn Future<Output = _> + Send + '_>>> = (0..19)
        .map(|i| {
            store.insert_ingestion(record(Priority::Low, at(2), &[&[i]]), Admission::default())
        })
        .collect();
    for submission in &mut rest {
        assert!(futures::poll!(submission.as_mut()).is_pending());
    }
    other.batch_execute("COMMIT").await.unwrap();
    first.await.unwrap();
    for answer in futures::future::join_all(rest).await {
        assert_eq!(answer.unwrap(), Inserted::Created);
    }
    let (stored, transactions): (i64, i64) = {
        let row = other
            .query_one(
                "SELECT count(*), count(DISTINCT xmin::text) FROM ingestions WHERE priority = $1",
                &[&(Priority::Low.rank() as i16)],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(stored, 20);
    assert_eq!(
        transactions, 1,
        "the twenty were stored in {transactions} transactions"
    );
}

#[cfg_attr(skip_postgres, ignore = "SLUICE_SKIP_POSTGRES=1")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_never_starts_a_second_batch_while_the_first_ones_renewal_holds_its_row() {
    let db = postgres::fresh_database().await;
    let store = open_postgres(&db.url).await;
    ingest(&store, Priority::High, at(0), &[&[1], &[2]]).await;
    let first = claimed(&store, at(0)).await;
    // The holder renews just as its lease runs out: its transaction holds the row.
    let renewer = db.connect().await;
    renewer.batch_execute("BEGIN").await.unwrap();
    let renewed_until = at(40).as_micros();
    renewer
        .execute(
            "UPDATE batches SET lease_until = $1 WHERE id = $2",
            &[&renewed_until, &first.batch_id],
        )
        .await
        .unwrap();
    // Another dispatcher asks after the old lease ran out.
    let claiming = {
        let store = store.clone();
        tokio::spawn(async move { claim(&store, at(31)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    renewer.batch_execute("COMMIT").await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), claiming)
        .await
        .expect("the claim finished once the renewal committed")
        .unwrap();
    assert_eq!(
        answer,
        in_flight(at(31), Timestamp::from_micros(renewed_until))
    );
}

#[cfg_attr(skip_postgres, ignore = "SLUICE_SKIP_POSTGRES=1")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_of_schema_3_keeps_its_queue_places_endings_and_summaries_after_the_upgrade(
) {
    let db = postgres::fresh_database().await;
    // The schema of the build before the counts, holding one MEDIUM ingestion with a completed
    // and a waiting batch.
    let sql = db.connect().await;
    for migration in [
        include_str!("../migrations/postgres/0001_init.sql"),
        include_str!("../migrations/postgres/0002_failures.sql"),
        include_str!("../migrations/postgres/0003_queue_depth.sql"),
    ] {
        sql.batch_execute(migration).await.unwrap();
    }
    let old = Uuid::new_v4();
    sql.batch_execute(&format!(
        "CREATE TABLE sluice_schema (version INTEGER NOT NULL);
         INSERT INTO sluice_schema (version) VALUES (3);
         INSERT INTO ingestions (id, priority, created_at) VALUES ('{old}', 1, 5);
         INSERT INTO batches (id, ingestion_seq, position, priority, ids, status, completed_at)
         VALUES ('{}', 1, 0, 1, ARRAY[7], 2, 4), ('{}', 1, 1, 1, ARRAY[8], 0, NULL);
         UPDATE queue_depth SET waiting = 1 WHERE priority = 1;",
        Uuid::new_v4(),
        Uuid::new_v4()
    ))
    .await
    .unwrap();

    let store = open_postgres(&db.url).await;
    // Its summary's ID count and last completion were taken at the upgrade (schema 5).
    let summary = store
        .summaries(&Selection::newest(1), 16, Fairness::Fifo)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(summary.id_count, 2);
    assert_eq!(summary.last_completed_at, Some(Timestamp::from_micros(4)));
    // And a replica of an older build could no longer write: the event counter was renamed
    // (by schema 4, 5 and 9 in turn).
    for old_counter in ["event_counter", "event_ids"] {
        let old_write = sql
            .batch_execute(&format!(
                "UPDATE {old_counter} SET last = last + 1 WHERE id = 1"
            ))
            .await;
        assert!(old_write.is_err(), "an older build's writes are fenced off");
    }
    // Its waiting batch was counted for its tenant too (schema 9), so round-robin places
    // count it as well.
    let queue = store.queue(0).await.unwrap();
    assert_eq!(queue.tenants[1], [("default".to_owned(), 1)]);
    let later = ingest(&store, Priority::Medium, at(1), &[&[9]]).await;
    for fairness in [Fairness::Fifo, Fairness::Tenant] {
        let place = store.queue_place(later, fairness).await.unwrap().unwrap();
        assert_eq!(place.ahead.before(0), 1, "{fairness:?}");
    }
    assert_eq!(store.cancel(old, at(2)).await.unwrap(), Some(1));
    assert_eq!(
        store
            .queue_place(later, Fairness::Fifo)
            .await
            .unwrap()
            .unwrap()
            .ahead
            .before(0),
        0
    );
    let events = store.events_after(0, Some(old), 10).await.unwrap();
    assert!(
        matches!(
            events.last().map(|e| &e.body),
            Some(sluice::domain::EventBody::IngestionCancelled { .. })
        ),
        "{events:?}"
    );
}

/// Housekeeping runs on its own timer: at start, then every period, with no batch completing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn housekeeping_cuts_the_event_log_every_period_while_nothing_completes() {
    use sluice::server::{clock::Clock, housekeeping, shutdown};
    let (store, ()) = sqlite_memory().await;
    let cut_to_two = |store: DynStore| async move {
        for _ in 0..500 {
            if store.events_after(0, None, 1000).await.unwrap().len() == 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the log was not cut to its retention within 5 s");
    };
    for i in 0..5u64 {
        ingest(&store, Priority::Low, at(i), &[&[i]]).await;
    }
    let keep = Retention {
        events: 2,
        keys: Duration::from_secs(3600),
        ..Retention::default()
    };
    let (trigger, down) = shutdown::channel();
    let task = tokio::spawn(housekeeping::run(
        Arc::downgrade(&store),
        Clock::system(),
        keep,
        Duration::from_millis(100),
        down,
    ));
    cut_to_two(store.clone()).await;
    // Later events are cut by a later round.
    for i in 0..4u64 {
        ingest(&store, Priority::Low, at(20 + i), &[&[i]]).await;
    }
    cut_to_two(store.clone()).await;
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("housekeeping stops at shutdown")
        .unwrap();
}
