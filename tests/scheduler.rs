//! Scheduler timing on tokio's paused clock: exact start times, no sleeping and hoping.
//!
//! Each test runs the real scheduler over a real SQLite store; only time is virtual.

use async_trait::async_trait;
use sluice::domain::{
    BatchStatus, Event, Fairness, IdResult, IngestRequest, IngestionStatus, IngestionView, Limits,
    NewIngestion, Priority, Timestamp,
};
use sluice::server::{
    application::{Core, CoreConfig},
    clock::Clock,
    processor::{ProcessError, Processor, RetryPolicy, SimulatedProcessor},
    scheduler::SchedulerConfig,
    service::Service,
    shutdown::{self, ShutdownTrigger},
    store::{
        Admission, AttemptsRecord, Claim, ClaimedBatch, Completion, DynStore, IdPage,
        IngestionRecord, Inserted, Lookup, NewIngestionRecord, PaceRecord, QueuePlace, QueueRecord,
        Selection, SqliteStore, Store, StoreError, SummaryRecord,
    },
};
use std::{collections::HashMap, path::Path, sync::Arc, time::Duration};
use tokio::time::{sleep_until, Instant};
use uuid::Uuid;

const T0_MICROS: i64 = 1_800_000_000_000_000;

/// `secs` after the start of the test, as the service records it.
fn t(secs: f64) -> Timestamp {
    Timestamp::from_micros(T0_MICROS + (secs * 1e6).round() as i64)
}

struct Harness {
    service: Service,
    trigger: ShutdownTrigger,
    scheduler: tokio::task::JoinHandle<()>,
    start: Instant,
}

impl Harness {
    fn start(store: DynStore, interval: Duration, processor: Arc<dyn Processor>) -> Self {
        Self::start_with(store, interval, processor, Duration::from_secs(10), 0.0)
    }

    fn start_with(
        store: DynStore,
        interval: Duration,
        processor: Arc<dyn Processor>,
        shutdown_grace: Duration,
        at_secs: f64,
    ) -> Self {
        let scheduler = SchedulerConfig {
            interval,
            lease: Duration::from_secs(15),
            shutdown_grace,
            retry: RetryPolicy::default(),
            fairness: Fairness::Fifo,
        };
        Self::start_scheduler(store, processor, scheduler, at_secs)
    }

    fn start_scheduler(
        store: DynStore,
        processor: Arc<dyn Processor>,
        scheduler: SchedulerConfig,
        at_secs: f64,
    ) -> Self {
        let (trigger, shutdown) = shutdown::channel();
        let config = CoreConfig {
            batch_size: 3,
            limits: Limits::default(),
            scheduler,
            expected_work: Duration::from_secs(1),
            max_waiting_batches: None,
            replica: "test".into(),
        };
        let clock = Clock::starting_at(t(at_secs));
        let start = Instant::now() - Duration::from_secs_f64(at_secs);
        let core = Core::start(store, processor, config, clock, shutdown);
        Self {
            service: core.service,
            trigger,
            scheduler: core.scheduler,
            start,
        }
    }

    async fn ingest(&self, priority: Priority, ids: impl IntoIterator<Item = u64>) -> Uuid {
        let request = IngestRequest {
            ids: ids.into_iter().collect(),
            priority,
            tenant: None,
        };
        let ingestion = NewIngestion::parse(request, Limits::default()).unwrap();
        self.service.ingest(ingestion).await.unwrap()
    }

    async fn at(&self, secs: f64) {
        sleep_until(self.start + Duration::from_secs_f64(secs)).await;
    }

    async fn status(&self, id: Uuid) -> IngestionView {
        self.service.status(&id.to_string()).await.unwrap()
    }

    async fn starts(&self, id: Uuid) -> Vec<Option<Timestamp>> {
        self.status(id)
            .await
            .batches
            .iter()
            .map(|b| b.started_at)
            .collect()
    }
}

async fn memory_store() -> DynStore {
    Arc::new(SqliteStore::open_memory().await.unwrap())
}

fn simulated(secs: u64) -> Arc<dyn Processor> {
    Arc::new(SimulatedProcessor::new(Duration::from_secs(secs)))
}

/// A downstream whose time per batch depends on the batch's first ID (unlisted: 1 s).
struct Slow(HashMap<u64, Duration>);

#[async_trait]
impl Processor for Slow {
    async fn process(&self, batch: &ClaimedBatch) -> Result<Vec<IdResult>, ProcessError> {
        let work = self
            .0
            .get(&batch.ids[0])
            .copied()
            .unwrap_or(Duration::from_secs(1));
        tokio::time::sleep(work).await;
        Ok(batch
            .ids
            .iter()
            .map(|&id| IdResult::processed(id))
            .collect())
    }
}

const FIVE_S: Duration = Duration::from_secs(5);

#[tokio::test(start_paused = true)]
async fn the_canonical_case_starts_each_batch_exactly_on_its_slot() {
    // SPEC §2: MEDIUM [1..5] at T0, HIGH [6..9] at T4 →
    // [1,2,3] at T0, [6,7,8] at T5, [9] at T10, [4,5] at T15.
    let h = Harness::start(memory_store().await, FIVE_S, simulated(1));
    let medium = h.ingest(Priority::Medium, 1..=5).await;
    h.at(4.0).await;
    let high = h.ingest(Priority::High, 6..=9).await;
    h.at(4.5).await;
    assert_eq!(h.status(medium).await.status, IngestionStatus::Triggered);
    assert_eq!(h.status(high).await.status, IngestionStatus::YetToStart);
    h.at(30.0).await;

    assert_eq!(h.starts(medium).await, vec![Some(t(0.0)), Some(t(15.0))]);
    assert_eq!(h.starts(high).await, vec![Some(t(5.0)), Some(t(10.0))]);
    for id in [medium, high] {
        let view = h.status(id).await;
        assert_eq!(view.status, IngestionStatus::Completed);
        for batch in &view.batches {
            assert_eq!(batch.status, BatchStatus::Completed);
            assert_eq!(
                batch.completed_at,
                batch.started_at.map(|s| s.plus(Duration::from_secs(1)))
            );
            let ids: Vec<u64> = batch.results.iter().map(|r| r.id).collect();
            assert_eq!(ids, batch.ids);
            assert!(batch.results.iter().all(|r| r.data == "processed"));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn predictions_made_while_waiting_come_true_to_the_microsecond() {
    // The canonical case again: at T4.5 the queue already knows when everything will run.
    let h = Harness::start(memory_store().await, FIVE_S, simulated(1));
    let medium = h.ingest(Priority::Medium, 1..=5).await;
    h.at(4.0).await;
    let high = h.ingest(Priority::High, 6..=9).await;
    h.at(4.5).await;
    let predicted_starts = |view: &IngestionView| -> Vec<Option<Timestamp>> {
        view.batches.iter().map(|b| b.predicted_start).collect()
    };
    let (m, hi) = (h.status(medium).await, h.status(high).await);
    assert_eq!(predicted_starts(&m), vec![None, Some(t(15.0))]);
    assert_eq!(predicted_starts(&hi), vec![Some(t(5.0)), Some(t(10.0))]);
    assert_eq!(m.predicted_completion, Some(t(16.0)));
    assert_eq!(hi.predicted_completion, Some(t(11.0)));

    let queue = h.service.queue().await.unwrap();
    let depth: Vec<u64> = queue.waiting.iter().map(|d| d.batches).collect();
    assert_eq!(depth, vec![2, 1, 0]);
    assert_eq!(queue.next_slot, t(5.0));
    assert_eq!(queue.in_flight, None, "[1,2,3] finished at T1");
    assert_eq!(queue.recent.len(), 1);
    assert_eq!(queue.recent[0].started_at, t(0.0));

    h.at(30.0).await;
    assert_eq!(h.starts(medium).await, vec![Some(t(0.0)), Some(t(15.0))]);
    assert_eq!(h.starts(high).await, vec![Some(t(5.0)), Some(t(10.0))]);
    let done = h.status(medium).await;
    assert_eq!(done.predicted_completion, None);
    assert!(done.batches.iter().all(|b| b.predicted_start.is_none()));
    let recent = h.service.recent(10).await.unwrap();
    let newest_first: Vec<Uuid> = recent.ingestions.iter().map(|v| v.ingestion_id).collect();
    assert_eq!(newest_first, vec![high, medium]);
    assert!(recent.last_event_id > 0);
}

#[tokio::test(start_paused = true)]
async fn the_dashboard_list_predicts_what_the_status_says_for_a_big_ingestion() {
    let h = Harness::start(memory_store().await, FIVE_S, simulated(1));
    let first = h.ingest(Priority::Medium, 1..=3).await;
    // 100 batches: more than the list shows of one ingestion.
    let big = h.ingest(Priority::Medium, 1..=300).await;
    h.at(50.5).await;
    let status = h.status(big).await;
    let listed = h.service.recent(10).await.unwrap();
    assert_eq!(listed.ingestions[1].ingestion_id, first);
    let summary = &listed.ingestions[0];
    assert_eq!(summary.ingestion_id, big);
    assert_eq!(summary.status, status.status);
    assert_eq!(summary.id_count, 300);
    assert_eq!(summary.batch_count, 100);
    assert_eq!(
        (summary.completed_batches, summary.triggered_batches),
        (9, 1)
    );
    assert_eq!(summary.predicted_completion, status.predicted_completion);
    assert!(summary.predicted_completion.is_some());
    let first_shown = summary.first_shown as usize;
    assert_eq!(
        first_shown, 6,
        "three completed batches before the first unfinished"
    );
    assert_eq!(summary.batches.len(), 24);
    for (k, batch) in summary.batches.iter().enumerate() {
        assert_eq!(
            batch,
            &status.batches[first_shown + k],
            "batch {}",
            first_shown + k
        );
    }
}

#[tokio::test(start_paused = true)]
async fn dashboards_refreshing_after_the_same_events_share_one_read() {
    let store = Faulty::wrap(memory_store().await, Faults::default());
    let h = Harness::start(store.clone(), Duration::from_secs(3600), simulated(1));
    h.ingest(Priority::Medium, 1..=30).await;
    h.at(2.0).await;
    let reads = || {
        store
            .summary_reads
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    let before = reads();
    let lists = futures::future::join_all((0..10).map(|_| h.service.recent(20))).await;
    assert!(lists
        .iter()
        .all(|l| l.as_ref().unwrap().ingestions.len() == 1));
    assert_eq!(reads() - before, 1, "ten dashboards, one read");
    h.service.recent(20).await.unwrap();
    assert_eq!(reads() - before, 1, "nothing happened since");
    // A new event: the next refresh reads again, and sees it.
    h.ingest(Priority::High, [1]).await;
    assert_eq!(h.service.recent(20).await.unwrap().ingestions.len(), 2);
    assert_eq!(reads() - before, 2);
}

#[tokio::test(start_paused = true)]
async fn a_batch_in_flight_predicts_its_finish_from_the_expected_work() {
    let h = Harness::start(memory_store().await, FIVE_S, simulated(1));
    let id = h.ingest(Priority::Low, 1..=4).await;
    h.at(0.5).await;
    let view = h.status(id).await;
    assert_eq!(view.batches[0].status, BatchStatus::Triggered);
    assert_eq!(view.batches[1].predicted_start, Some(t(5.0)));
    assert_eq!(view.predicted_completion, Some(t(6.0)));
    let queue = h.service.queue().await.unwrap();
    assert_eq!(queue.in_flight.map(|d| d.ids), Some(vec![1, 2, 3]));
    assert_eq!(queue.next_slot, t(5.0));
    assert_eq!(queue.rate_interval_ms, 5000);
}

#[tokio::test(start_paused = true)]
async fn pausing_holds_dispatch_and_resuming_continues_on_the_next_slot() {
    let h = Harness::start(memory_store().await, FIVE_S, simulated(1));
    let id = h.ingest(Priority::Medium, 1..=9).await;
    h.at(1.0).await;
    assert!(h.service.pause().await.unwrap());
    h.at(30.0).await;
    let view = h.status(id).await;
    assert_eq!(h.starts(id).await, vec![Some(t(0.0)), None, None]);
    assert_eq!(
        view.predicted_completion, None,
        "no prediction while paused"
    );
    assert!(h.service.queue().await.unwrap().paused);

    assert!(h.service.resume().await.unwrap());
    h.at(45.0).await;
    // The slot passed long ago: the next batch starts at the resume, then the normal spacing.
    assert_eq!(
        h.starts(id).await,
        vec![Some(t(0.0)), Some(t(30.0)), Some(t(35.0))]
    );
}

#[tokio::test(start_paused = true)]
async fn a_rate_change_at_run_time_applies_to_the_very_next_slot() {
    let h = Harness::start(memory_store().await, FIVE_S, simulated(1));
    let id = h.ingest(Priority::Medium, 1..=12).await;
    h.at(2.0).await;
    // Waiting for the T5 slot; at 1 s the slot after T0 has already passed.
    let effective = h
        .service
        .set_rate_interval(Some(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(effective, Duration::from_secs(1));
    h.at(2.5).await;
    assert_eq!(
        h.service.queue().await.unwrap().rate_interval_ms,
        1000,
        "the queue view shows the interval in force"
    );
    h.at(4.5).await;
    assert_eq!(
        h.starts(id).await,
        vec![Some(t(0.0)), Some(t(2.0)), Some(t(3.0)), Some(t(4.0))]
    );
    assert!(h
        .service
        .set_rate_interval(Some(Duration::ZERO))
        .await
        .is_err());
}

#[tokio::test(start_paused = true)]
async fn the_service_is_not_ready_once_its_scheduler_has_stopped() {
    let h = Harness::start(memory_store().await, FIVE_S, simulated(1));
    assert!(h.service.readiness().await.is_ready());
    h.trigger.trigger();
    h.scheduler.await.unwrap();
    let readiness = h.service.readiness().await;
    assert!(!readiness.is_ready());
    assert_eq!(readiness.store, None);
    assert_eq!(
        readiness.scheduler.as_deref(),
        Some("the scheduler is not running")
    );
}

#[tokio::test(start_paused = true)]
async fn an_ingestion_is_triggered_while_some_batches_are_done_and_others_wait() {
    let h = Harness::start(memory_store().await, FIVE_S, simulated(1));
    let id = h.ingest(Priority::Low, 1..=4).await;
    h.at(2.0).await;
    let view = h.status(id).await;
    let statuses: Vec<_> = view.batches.iter().map(|b| b.status).collect();
    assert_eq!(
        statuses,
        vec![BatchStatus::Completed, BatchStatus::YetToStart]
    );
    assert_eq!(view.status, IngestionStatus::Triggered);
}

#[tokio::test(start_paused = true)]
async fn ingestions_of_one_priority_go_first_come_first_served() {
    let h = Harness::start(memory_store().await, FIVE_S, simulated(1));
    let first = h.ingest(Priority::Medium, [1]).await;
    let second = h.ingest(Priority::Medium, [2]).await;
    let third = h.ingest(Priority::Medium, [3]).await;
    h.at(20.0).await;
    assert_eq!(h.starts(first).await, vec![Some(t(0.0))]);
    assert_eq!(h.starts(second).await, vec![Some(t(5.0))]);
    assert_eq!(h.starts(third).await, vec![Some(t(10.0))]);
}

#[tokio::test(start_paused = true)]
async fn higher_priority_work_overtakes_waiting_lower_priority_work() {
    let h = Harness::start(memory_store().await, FIVE_S, simulated(1));
    let low = h.ingest(Priority::Low, 1..=6).await;
    h.at(1.0).await;
    let medium = h.ingest(Priority::Medium, [7]).await;
    let high = h.ingest(Priority::High, [8]).await;
    h.at(20.0).await;
    assert_eq!(h.starts(low).await, vec![Some(t(0.0)), Some(t(15.0))]);
    assert_eq!(h.starts(high).await, vec![Some(t(5.0))]);
    assert_eq!(h.starts(medium).await, vec![Some(t(10.0))]);
}

#[tokio::test(start_paused = true)]
async fn an_idle_service_starts_new_work_at_once() {
    let h = Harness::start(memory_store().await, FIVE_S, simulated(1));
    h.at(42.5).await;
    let id = h.ingest(Priority::Low, [1]).await;
    h.at(43.0).await;
    assert_eq!(h.starts(id).await, vec![Some(t(42.5))]);
}

#[tokio::test(start_paused = true)]
async fn work_arriving_inside_the_interval_waits_for_the_slot_not_a_tick() {
    let h = Harness::start(memory_store().await, FIVE_S, simulated(1));
    let first = h.ingest(Priority::Low, [1]).await;
    h.at(3.2).await;
    let second = h.ingest(Priority::Low, [2]).await;
    h.at(6.0).await;
    assert_eq!(h.starts(first).await, vec![Some(t(0.0))]);
    assert_eq!(h.starts(second).await, vec![Some(t(5.0))]);
    // And after a quiet period, the next arrival starts immediately again.
    h.at(11.7).await;
    let third = h.ingest(Priority::Low, [3]).await;
    h.at(12.0).await;
    assert_eq!(h.starts(third).await, vec![Some(t(11.7))]);
}

#[tokio::test(start_paused = true)]
async fn work_longer_than_the_interval_delays_the_next_start_until_it_finishes() {
    let h = Harness::start(memory_store().await, FIVE_S, simulated(12));
    let id = h.ingest(Priority::High, 1..=9).await;
    h.at(40.0).await;
    assert_eq!(
        h.starts(id).await,
        vec![Some(t(0.0)), Some(t(12.0)), Some(t(24.0))]
    );
}

#[tokio::test(start_paused = true)]
async fn after_a_stall_starts_resume_at_the_normal_spacing_without_a_burst() {
    let slow = Slow(HashMap::from([(1, Duration::from_secs(17))]));
    let h = Harness::start(memory_store().await, FIVE_S, Arc::new(slow));
    let id = h.ingest(Priority::High, 1..=12).await;
    h.at(40.0).await;
    assert_eq!(
        h.starts(id).await,
        vec![Some(t(0.0)), Some(t(17.0)), Some(t(22.0)), Some(t(27.0))]
    );
}

#[tokio::test(start_paused = true)]
async fn a_batch_in_flight_when_the_process_died_is_dispatched_again_first_under_the_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    let open = |path: &Path| {
        let path = path.to_path_buf();
        async move { Arc::new(SqliteStore::open_file(&path).await.unwrap()) as DynStore }
    };

    let first_life = Harness::start(open(&path).await, FIVE_S, simulated(10));
    let old = first_life.ingest(Priority::Medium, 1..=6).await;
    first_life.at(2.0).await;
    assert_eq!(
        first_life.status(old).await.batches[0].status,
        BatchStatus::Triggered
    );
    // Die without any chance to clean up: the batch in hand is simply dropped.
    first_life.scheduler.abort();
    let _ = first_life.scheduler.await;
    drop(first_life.service);

    let second_life = Harness::start_with(
        open(&path).await,
        FIVE_S,
        simulated(1),
        Duration::from_secs(10),
        2.0,
    );
    let newer = second_life.ingest(Priority::Medium, [7]).await;
    second_life.at(30.0).await;
    let view = second_life.status(old).await;
    // Re-dispatched no sooner than the durable last start (T0) + interval, before newer work.
    assert_eq!(view.batches[0].started_at, Some(t(5.0)));
    assert_eq!(view.batches[1].started_at, Some(t(10.0)));
    assert_eq!(second_life.starts(newer).await, vec![Some(t(15.0))]);
    assert_eq!(view.status, IngestionStatus::Completed);
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_the_batch_in_hand_finish_and_starts_nothing_new() {
    let h = Harness::start(memory_store().await, FIVE_S, simulated(3));
    let id = h.ingest(Priority::High, 1..=6).await;
    h.at(1.0).await;
    h.trigger.trigger();
    h.scheduler.await.unwrap();
    let view = h.service.status(&id.to_string()).await.unwrap();
    assert_eq!(view.batches[0].status, BatchStatus::Completed);
    assert_eq!(view.batches[0].completed_at, Some(t(3.0)));
    assert_eq!(view.batches[1].status, BatchStatus::YetToStart);
}

#[tokio::test(start_paused = true)]
async fn shutdown_gives_up_on_a_batch_that_outlasts_the_grace() {
    let h = Harness::start_with(
        memory_store().await,
        FIVE_S,
        simulated(60),
        Duration::from_secs(2),
        0.0,
    );
    let id = h.ingest(Priority::High, [1]).await;
    h.at(1.0).await;
    h.trigger.trigger();
    h.scheduler.await.unwrap();
    assert_eq!(Instant::now() - h.start, Duration::from_secs(3));
    let view = h.service.status(&id.to_string()).await.unwrap();
    assert_eq!(view.batches[0].status, BatchStatus::Triggered);
}

/// A store with faults a real deployment meets: a clock ahead or behind the dispatcher's, a
/// claim whose commit is slow, a lease lost to another dispatcher. It counts claims and
/// summary reads.
#[derive(Default)]
struct Faults {
    /// Added to every time the dispatcher passes (the store's clock against its own).
    skew_us: i64,
    /// The n-th successful claim (from 1) answers this much later (a slow commit).
    slow_claim: Option<(usize, Duration)>,
    /// Renewals of a batch's first attempt answer "lost".
    lose_first_leases: bool,
}

struct Faulty {
    inner: DynStore,
    faults: Faults,
    claims: std::sync::atomic::AtomicUsize,
    claimed: std::sync::atomic::AtomicUsize,
    summary_reads: std::sync::atomic::AtomicUsize,
}

impl Faulty {
    fn wrap(inner: DynStore, faults: Faults) -> Arc<Self> {
        Arc::new(Self {
            inner,
            faults,
            claims: Default::default(),
            claimed: Default::default(),
            summary_reads: Default::default(),
        })
    }

    fn skewed(&self, now: Timestamp) -> Timestamp {
        Timestamp::from_micros(now.as_micros() + self.faults.skew_us)
    }

    fn claims(&self) -> usize {
        self.claims.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait]
impl Store for Faulty {
    async fn insert_ingestion(
        &self,
        ingestion: NewIngestionRecord,
        admission: Admission,
    ) -> Result<Inserted, StoreError> {
        let ingestion = NewIngestionRecord {
            created_at: self.skewed(ingestion.created_at),
            ..ingestion
        };
        self.inner.insert_ingestion(ingestion, admission).await
    }
    async fn ingestion(&self, id: Uuid) -> Result<Option<IngestionRecord>, StoreError> {
        self.inner.ingestion(id).await
    }
    async fn claim_next(
        &self,
        now: Timestamp,
        interval: Duration,
        lease: Duration,
        replica: &str,
        fairness: Fairness,
    ) -> Result<Claim, StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        self.claims.fetch_add(1, SeqCst);
        let claim = self
            .inner
            .claim_next(self.skewed(now), interval, lease, replica, fairness)
            .await?;
        // Every answer takes a round trip.
        tokio::time::sleep(Duration::from_millis(1)).await;
        if matches!(claim, Claim::Claimed(_)) {
            let n = self.claimed.fetch_add(1, SeqCst) + 1;
            if let Some((_, delay)) = self.faults.slow_claim.filter(|(at, _)| *at == n) {
                tokio::time::sleep(delay).await;
            }
        }
        Ok(claim)
    }
    async fn renew_lease(
        &self,
        batch_id: Uuid,
        attempt: u32,
        now: Timestamp,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        if self.faults.lose_first_leases && attempt == 1 {
            return Ok(false);
        }
        self.inner
            .renew_lease(batch_id, attempt, self.skewed(now), lease)
            .await
    }
    async fn complete(
        &self,
        batch_id: Uuid,
        attempt: u32,
        at: Timestamp,
        results: Vec<IdResult>,
    ) -> Result<Completion, StoreError> {
        let at = self.skewed(at);
        self.inner.complete(batch_id, attempt, at, results).await
    }
    async fn fail(
        &self,
        batch_id: Uuid,
        attempt: u32,
        at: Timestamp,
        error: String,
        status_code: Option<u16>,
        retry_at: Option<Timestamp>,
    ) -> Result<Completion, StoreError> {
        let (at, retry_at) = (self.skewed(at), retry_at.map(|r| self.skewed(r)));
        self.inner
            .fail(batch_id, attempt, at, error, status_code, retry_at)
            .await
    }
    async fn requeue(&self, batch_id: Uuid, at: Timestamp) -> Result<Option<bool>, StoreError> {
        self.inner.requeue(batch_id, self.skewed(at)).await
    }
    async fn cancel(&self, ingestion: Uuid, at: Timestamp) -> Result<Option<u32>, StoreError> {
        self.inner.cancel(ingestion, self.skewed(at)).await
    }
    async fn recover_abandoned(&self) -> Result<u64, StoreError> {
        self.inner.recover_abandoned().await
    }
    async fn last_start(&self) -> Result<Option<Timestamp>, StoreError> {
        self.inner.last_start().await
    }
    async fn recent_ingestions(&self, limit: usize) -> Result<Vec<IngestionRecord>, StoreError> {
        self.inner.recent_ingestions(limit).await
    }
    async fn summaries(
        &self,
        selection: &Selection,
        window: u32,
        fairness: Fairness,
    ) -> Result<Vec<SummaryRecord>, StoreError> {
        self.summary_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.summaries(selection, window, fairness).await
    }
    async fn find_ingestions(
        &self,
        lookup: &Lookup,
        limit: usize,
    ) -> Result<Vec<Uuid>, StoreError> {
        self.inner.find_ingestions(lookup, limit).await
    }
    async fn attempts(&self, batch_id: Uuid) -> Result<Option<AttemptsRecord>, StoreError> {
        self.inner.attempts(batch_id).await
    }
    async fn id_page(
        &self,
        ingestion: Uuid,
        offset: u64,
        limit: u64,
    ) -> Result<Option<IdPage>, StoreError> {
        self.inner.id_page(ingestion, offset, limit).await
    }
    async fn queue(&self, recent: usize) -> Result<QueueRecord, StoreError> {
        self.inner.queue(recent).await
    }
    async fn pace(&self, since: Timestamp, limit: usize) -> Result<PaceRecord, StoreError> {
        self.inner.pace(since, limit).await
    }
    async fn queue_place(
        &self,
        ingestion: Uuid,
        fairness: Fairness,
    ) -> Result<Option<QueuePlace>, StoreError> {
        self.inner.queue_place(ingestion, fairness).await
    }
    async fn events_after(
        &self,
        after: u64,
        ingestion: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner.events_after(after, ingestion, limit).await
    }
    fn event_feed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.event_feed()
    }
    async fn latest_event(&self) -> Result<u64, StoreError> {
        self.inner.latest_event().await
    }
    async fn set_paused(&self, paused: bool, at: Timestamp) -> Result<bool, StoreError> {
        self.inner.set_paused(paused, self.skewed(at)).await
    }
    async fn set_rate_interval(
        &self,
        interval: Option<Duration>,
        effective_ms: u64,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner
            .set_rate_interval(interval, effective_ms, self.skewed(at))
            .await
    }
    async fn check(&self) -> Result<(), StoreError> {
        self.inner.check().await
    }
    async fn housekeep(
        &self,
        now: Timestamp,
        keep: sluice::server::store::Retention,
    ) -> Result<sluice::server::store::Housekept, StoreError> {
        self.inner.housekeep(now, keep).await
    }
}

/// A call to the downstream: the batch's IDs, its attempt, when it began, whether it ended.
type Call = (Vec<u64>, u32, f64, bool);

/// A downstream that notes when (seconds after the test's start, on the dispatcher's clock)
/// each call began, and whether it ran to its end; it fails or panics where told to.
struct Downstream {
    start: Instant,
    work: Duration,
    calls: std::sync::Mutex<Vec<Call>>,
    /// First IDs of batches whose first attempt fails (retryably).
    fail_first: Vec<u64>,
    /// First IDs of batches whose first attempt panics.
    panic_first: Vec<u64>,
}

impl Downstream {
    fn new(start: Instant, work: Duration) -> Arc<Self> {
        Self::with(start, work, vec![], vec![])
    }

    fn with(
        start: Instant,
        work: Duration,
        fail_first: Vec<u64>,
        panic_first: Vec<u64>,
    ) -> Arc<Self> {
        Arc::new(Self {
            start,
            work,
            calls: Default::default(),
            fail_first,
            panic_first,
        })
    }

    /// (first ID, attempt, began at, finished) per call, in call order.
    fn calls(&self) -> Vec<(u64, u32, f64, bool)> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(ids, attempt, at, done)| (ids[0], *attempt, *at, *done))
            .collect()
    }
}

#[async_trait]
impl Processor for Downstream {
    async fn process(&self, batch: &ClaimedBatch) -> Result<Vec<IdResult>, ProcessError> {
        let began = (Instant::now() - self.start).as_secs_f64();
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push((batch.ids.clone(), batch.attempt, began, false));
            calls.len() - 1
        };
        let first_attempt = batch.attempt == 1;
        if first_attempt && self.panic_first.contains(&batch.ids[0]) {
            panic!("downstream bug on batch {}", batch.ids[0]);
        }
        tokio::time::sleep(self.work).await;
        self.calls.lock().unwrap()[n].3 = true;
        if first_attempt && self.fail_first.contains(&batch.ids[0]) {
            return Err(ProcessError::retryable("503 from downstream"));
        }
        Ok(batch
            .ids
            .iter()
            .map(|&id| IdResult::processed(id))
            .collect())
    }
}

fn config(interval: Duration, retry: RetryPolicy) -> SchedulerConfig {
    SchedulerConfig {
        interval,
        lease: Duration::from_secs(15),
        shutdown_grace: Duration::from_secs(10),
        retry,
        fairness: Fairness::Fifo,
    }
}

#[tokio::test(start_paused = true)]
async fn one_slow_claim_commit_delays_one_start_and_the_pace_comes_back() {
    // The second claim commits 3 s late: its batch reaches the downstream at T8, not T5.
    let store = Faulty::wrap(
        memory_store().await,
        Faults {
            slow_claim: Some((2, Duration::from_secs(3))),
            ..Faults::default()
        },
    );
    let downstream = Downstream::new(Instant::now(), Duration::from_secs(1));
    let h = Harness::start_scheduler(
        store,
        downstream.clone(),
        config(FIVE_S, RetryPolicy::default()),
        0.0,
    );
    let id = h.ingest(Priority::Medium, 1..=15).await;
    h.at(40.0).await;
    let ms = |secs: f64| (secs * 1000.0).round() as i64;
    let starts: Vec<i64> = h
        .starts(id)
        .await
        .into_iter()
        .map(|s| (s.unwrap().as_micros() - T0_MICROS) / 1000)
        .collect();
    let handed: Vec<i64> = downstream.calls().iter().map(|c| ms(c.2)).collect();
    // The downstream never sees two batches closer than the interval ...
    for pair in handed.windows(2) {
        assert!(pair[1] - pair[0] >= 5000, "hand-offs {handed:?}");
    }
    // ... the slow hand-off delays the next start once, and from then on every batch is
    // handed over 1 ms (the claim's round trip) after its start, one interval apart: the
    // delay is not carried over.
    assert_eq!(starts, [0, 5000, 13_000, 18_000, 23_000]);
    assert_eq!(handed, [1, 8001, 13_001, 18_001, 23_001]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_backing_off_holds_back_no_new_work() {
    // The LOW batch fails once and backs off 20 s; HIGH work submitted meanwhile starts on
    // the next slot, not after the retry.
    let retry = RetryPolicy {
        max_attempts: 5,
        base: Duration::from_secs(40),
        cap: Duration::from_secs(40),
    };
    let downstream = Downstream::with(Instant::now(), Duration::from_secs(1), vec![1], vec![]);
    let h = Harness::start_scheduler(memory_store().await, downstream, config(FIVE_S, retry), 0.0);
    let low = h.ingest(Priority::Low, [1]).await;
    h.at(6.0).await;
    let high = h.ingest(Priority::High, [2]).await;
    h.at(7.0).await;
    assert_eq!(h.starts(high).await, vec![Some(t(6.0))]);
    let view = h.status(low).await;
    assert_eq!(view.batches[0].status, BatchStatus::YetToStart);
}

#[tokio::test(start_paused = true)]
async fn a_dispatcher_whose_clock_is_skewed_from_the_stores_starts_on_time_and_asks_once_per_slot()
{
    for skew_s in [-2i64, 2] {
        let store = Faulty::wrap(
            memory_store().await,
            Faults {
                skew_us: skew_s * 1_000_000,
                ..Faults::default()
            },
        );
        let downstream = Downstream::new(Instant::now(), Duration::from_secs(1));
        let h = Harness::start_scheduler(
            store.clone(),
            downstream.clone(),
            config(FIVE_S, RetryPolicy::default()),
            0.0,
        );
        h.ingest(Priority::High, 1..=9).await;
        h.at(12.0).await;
        let handed: Vec<i64> = downstream
            .calls()
            .iter()
            .map(|c| (c.2 * 1000.0).round() as i64)
            .collect();
        // Each start one interval after the last, handed over after the claim's 1 ms.
        assert_eq!(handed, [1, 5001, 10_001], "store clock {skew_s:+} s");
        // Per start: the claim, and one more when the batch is done (which finds the slot
        // not due); never a loop of early wake-ups.
        assert!(
            store.claims() <= 7,
            "{} claims at skew {skew_s:+} s",
            store.claims()
        );
        h.trigger.trigger();
        h.scheduler.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_processor_fails_that_attempt_and_dispatch_goes_on() {
    let downstream = Downstream::with(Instant::now(), Duration::from_secs(1), vec![], vec![1]);
    let h = Harness::start(memory_store().await, FIVE_S, downstream.clone());
    let id = h.ingest(Priority::High, 1..=6).await;
    h.at(12.0).await;
    let view = h.status(id).await;
    // [1,2,3] panicked at T0: that attempt failed and backed off (under a second); it went
    // again on the next slot, first in dispatch order, and [4,5,6] on the one after.
    assert_eq!(view.batches[0].started_at, Some(t(5.0)));
    assert_eq!(view.batches[0].status, BatchStatus::Completed);
    assert_eq!(view.batches[1].started_at, Some(t(10.0)));
    assert_eq!(view.batches[1].status, BatchStatus::Completed);
    let calls: Vec<(u64, u32, bool)> = downstream.calls().iter().map(|c| (c.0, c.1, c.3)).collect();
    assert_eq!(calls, [(1, 1, false), (1, 2, true), (4, 1, true)]);
    assert!(!h.scheduler.is_finished(), "the scheduler still runs");
}

#[tokio::test(start_paused = true)]
async fn a_lost_lease_cancels_the_work_and_discards_its_outcome() {
    let store = Faulty::wrap(
        memory_store().await,
        Faults {
            lose_first_leases: true,
            ..Faults::default()
        },
    );
    // Longer than the lease (15 s): the first renewal, at 5 s, finds the lease lost.
    let downstream = Downstream::new(Instant::now(), Duration::from_secs(20));
    let h = Harness::start_scheduler(
        store,
        downstream.clone(),
        config(FIVE_S, RetryPolicy::default()),
        0.0,
    );
    let id = h.ingest(Priority::High, [1]).await;
    h.at(6.0).await;
    // The first attempt was dropped at its renewal and recorded nothing.
    let calls: Vec<(u64, u32, bool)> = downstream.calls().iter().map(|c| (c.0, c.1, c.3)).collect();
    assert_eq!(calls, [(1, 1, false)]);
    assert_eq!(h.status(id).await.batches[0].status, BatchStatus::Triggered);
    h.at(40.0).await;
    // The lease ran out at 15 s; the next claim ran the batch again under attempt 2.
    let calls = downstream.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!((calls[1].1, calls[1].3), (2, true));
    let view = h.status(id).await;
    assert_eq!(view.batches[0].status, BatchStatus::Completed);
}

/// One submission of the property test: when (µs after the start), at which priority, how
/// many IDs, and how long each of its batches takes downstream.
#[derive(Clone, Debug)]
struct Arrival {
    at_us: i64,
    priority: Priority,
    ids: u64,
    work_ms: u64,
}

/// The rules of SPEC §2 written as plainly as possible: whenever the dispatcher may start a
/// batch (an interval after the last start, and the last batch finished), it starts the best
/// waiting one (priority, then acceptance, then position); if none waits, the next to arrive
/// starts on arrival. Start times of each arrival's batches, µs after the start.
fn reference_starts(arrivals: &[Arrival], interval_us: i64, batch_size: u64) -> Vec<Vec<i64>> {
    // (arrival time, priority rank, acceptance, position, work)
    let mut waiting: Vec<(i64, i64, usize, usize, i64)> = Vec::new();
    for (n, a) in arrivals.iter().enumerate() {
        for position in 0..a.ids.div_ceil(batch_size) as usize {
            waiting.push((
                a.at_us,
                a.priority.rank(),
                n,
                position,
                a.work_ms as i64 * 1000,
            ));
        }
    }
    let mut starts: Vec<Vec<i64>> = arrivals
        .iter()
        .map(|a| vec![0; a.ids.div_ceil(batch_size) as usize])
        .collect();
    let mut free_at = i64::MIN;
    while !waiting.is_empty() {
        let first_arrival = waiting.iter().map(|b| b.0).min().unwrap();
        let now = free_at.max(first_arrival);
        let best = waiting
            .iter()
            .enumerate()
            .filter(|(_, b)| b.0 <= now)
            .min_by_key(|(_, b)| (b.1, b.2, b.3))
            .map(|(i, _)| i)
            .unwrap();
        let (_, _, n, position, work) = waiting.remove(best);
        starts[n][position] = now;
        free_at = (now + interval_us).max(now + work);
    }
    starts
}

/// The property test's time unit: more milliseconds than arrivals, so each arrival can have
/// its own offset within it.
const TICK_MS: i64 = 16;
const PROPERTY_INTERVAL_MS: i64 = 63 * TICK_MS;

fn arrivals() -> impl proptest::strategy::Strategy<Value = Vec<Arrival>> {
    use proptest::prelude::*;
    proptest::collection::vec(
        (
            0i64..160,
            prop_oneof![
                Just(Priority::High),
                Just(Priority::Medium),
                Just(Priority::Low)
            ],
            1u64..=7,
            // Shorter and longer than the interval.
            prop_oneof![3u64..56, 56u64..160],
        ),
        1..10,
    )
    .prop_map(|raw| {
        let mut at = 0;
        raw.into_iter()
            .enumerate()
            .map(|(n, (gap, priority, ids, work))| {
                at += gap * TICK_MS;
                // Times are whole milliseconds (tokio's timer resolution). Interval and work are
                // multiples of TICK_MS and arrival n is offset by n + 1 ms, so every start (an
                // arrival plus intervals and work) keeps its arrival's residue: no arrival lands
                // exactly on another's start, which would race the dispatcher's timer against
                // the submission.
                Arrival {
                    at_us: (at + n as i64 + 1) * 1000,
                    priority,
                    ids,
                    work_ms: work * TICK_MS as u64,
                }
            })
            .collect()
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(40))]

    #[test]
    fn random_arrivals_start_exactly_when_the_reference_model_says(arrivals in arrivals()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let expected = reference_starts(&arrivals, PROPERTY_INTERVAL_MS * 1000, 3);
        let actual = runtime.block_on(async {
            let work: HashMap<u64, Duration> = arrivals
                .iter()
                .enumerate()
                .flat_map(|(n, a)| {
                    // Every batch of arrival n starts with an ID n*100 + 3k + 1.
                    (0..a.ids.div_ceil(3)).map(move |k| {
                        (n as u64 * 100 + 3 * k + 1, Duration::from_millis(a.work_ms))
                    })
                })
                .collect();
            let interval = Duration::from_millis(PROPERTY_INTERVAL_MS as u64);
            let h = Harness::start(memory_store().await, interval, Arc::new(Slow(work)));
            let mut ids = Vec::new();
            for (n, a) in arrivals.iter().enumerate() {
                sleep_until(h.start + Duration::from_micros(a.at_us as u64)).await;
                let first = n as u64 * 100 + 1;
                ids.push(h.ingest(a.priority, first..first + a.ids).await);
            }
            let last = expected.iter().flatten().max().unwrap();
            sleep_until(h.start + Duration::from_micros(*last as u64) + Duration::from_secs(5)).await;
            let mut actual = Vec::new();
            for id in ids {
                actual.push(
                    h.starts(id)
                        .await
                        .into_iter()
                        .map(|s| s.expect("every batch started").as_micros() - T0_MICROS)
                        .collect::<Vec<i64>>(),
                );
            }
            actual
        });
        proptest::prop_assert_eq!(actual, expected, "arrivals: {:?}", arrivals);
    }
}
