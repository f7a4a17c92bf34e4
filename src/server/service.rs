//! The service: the one place every rule is applied, whoever asks (JSON routes, server
//! functions, the CLI). It turns validated requests into stored work, wakes the scheduler,
//! and builds the views clients read.

use crate::domain::{
    window_for, AttemptView, BatchAttempts, BatchStatus, BatchView, CancelResponse, Depth,
    DispatchView, Event, Fairness, Found, IdResultView, IngestRequest, IngestionPage,
    IngestionStatus, IngestionSummary, IngestionView, Limits, NewIngestion, Pace, PaceView,
    Priority, QueueView, RecentIngestions, RequestError, ResultsPage, StartMark, Tenant,
    TenantDepth, Timestamp, DEFAULT_TENANT, MAX_RATE_INTERVAL, MAX_STARTS, MAX_WINDOW,
    MIN_RATE_INTERVAL,
};
use crate::server::timeline::DepthHistory;
use crate::server::{
    clock::Clock,
    memo::Memo,
    metrics::Metrics,
    no_return,
    scheduler::Wake,
    store::{
        Admission, BatchRecord, DispatchRecord, DynStore, IdempotencyKey, IngestionRecord,
        Inserted, Lookup, NewBatchRecord, NewIngestionRecord, QueuePlace, Selection, StoreError,
        SummaryRecord,
    },
};
use std::{sync::Arc, time::Duration};
use tokio::sync::watch;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("no ingestion with id {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Idempotency-Key must be 1 to 255 visible ASCII characters")]
    InvalidIdempotencyKey,
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyConflict,
    #[error("the queue is full; retry in {retry_after_secs} s")]
    QueueFull { retry_after_secs: u64 },
    #[error("the rate interval must be between 1ms and 1day")]
    InvalidRate,
    #[error("no batch with id {0:?}")]
    BatchNotFound(String),
    #[error("batch {0} has not failed: only a failed batch can be retried")]
    BatchNotFailed(Uuid),
    /// A list's condition or a search that names nothing it could match.
    #[error("{0}")]
    InvalidFilter(String),
}

/// What an ingest did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    Created(Uuid),
    /// The same `Idempotency-Key` and request were seen before: the first ingestion's id.
    Replayed(Uuid),
}

impl Accepted {
    pub fn ingestion_id(self) -> Uuid {
        match self {
            Accepted::Created(id) | Accepted::Replayed(id) => id,
        }
    }
}

/// An ingestion id as a client sent it; malformed is `NotFound`, like unknown (SPEC §1).
fn ingestion_uuid(ingestion_id: &str) -> Result<Uuid, ServiceError> {
    Uuid::parse_str(ingestion_id).map_err(|_| ServiceError::NotFound(ingestion_id.to_owned()))
}

fn check_key(key: &str) -> Result<String, ServiceError> {
    let visible = key.bytes().all(|b| (0x21..=0x7e).contains(&b));
    match (1..=255).contains(&key.len()) && visible {
        true => Ok(key.to_owned()),
        false => Err(ServiceError::InvalidIdempotencyKey),
    }
}

/// What makes two requests the same: priority, IDs in order and the tenant named (not
/// formatting or unknown fields).
fn fingerprint(ingestion: &NewIngestion) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(ingestion.priority().as_str().as_bytes());
    for id in ingestion.ids() {
        hash.update(id.to_le_bytes());
    }
    // Only when named and not the default (which is what an unnamed request gets), so a key
    // stored before tenants existed still replays its request, as does a retry that names
    // `default` explicitly.
    if let Some(tenant) = ingestion.tenant().filter(|t| t.as_str() != DEFAULT_TENANT) {
        hash.update(b"\0tenant:");
        hash.update(tenant.as_str().as_bytes());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Bodies up to this size are parsed on the async worker (well under a millisecond); larger
/// ones on a blocking thread.
const PARSE_ON_WORKER_BYTES: usize = 64 * 1024;

/// A cheap, cloneable handle to the service.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    store: DynStore,
    clock: Clock,
    batch_size: usize,
    limits: Limits,
    pace: Pace,
    /// Most batches allowed to wait; more are refused (backpressure). `None`: no bound.
    max_waiting: Option<u64>,
    /// How the scheduler chooses: predictions follow the same rule.
    fairness: Fairness,
    wake: Wake,
    /// Closed when the scheduler task ends (see [`SchedulerAlive`]).
    scheduler: watch::Receiver<()>,
    metrics: Metrics,
    /// Queue places as last read (see `queue_place`).
    places: Memo<QueuePlace>,
    /// Ingestions as last read (see `record`).
    records: Memo<Arc<IngestionRecord>>,
    /// The newest ingestions' summaries as last read (see `summaries`); held while one is
    /// read, so that callers asking at once share the one read.
    recent: tokio::sync::Mutex<Option<RecentMemo>>,
    /// The waiting depth over the last minutes (sampled by `timeline::run`).
    depth: Arc<DepthHistory>,
}

/// Summaries read from the store, valid while the event feed stands at `seen`.
struct RecentMemo {
    seen: u64,
    limit: usize,
    summaries: Arc<Vec<SummaryRecord>>,
}

/// Most queue places remembered.
const PLACES_CACHED: usize = 10_000;
/// Most IDs of remembered ingestions (an ingestion of more than a tenth of this is always read
/// afresh).
const RECORD_IDS_CACHED: usize = 100_000;

/// The service's settings.
#[derive(Clone, Copy, Debug)]
pub struct ServiceConfig {
    pub batch_size: usize,
    pub limits: Limits,
    /// The configured pace, for predictions and `Retry-After`.
    pub pace: Pace,
    /// Most batches allowed to wait (backpressure); `None`: no bound.
    pub max_waiting: Option<u64>,
    /// How the scheduler chooses the next batch; predictions follow the same rule (queue
    /// places counted in dispatch order, or by tenants' turns: `domain::Ahead`).
    pub fairness: Fairness,
}

/// Held by the running scheduler task; dropping it (the task ended) makes the service unready.
pub struct SchedulerAlive(#[allow(dead_code)] watch::Sender<()>);

/// What `GET /readyz` reports: each check, `None` when it passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub store: Option<String>,
    pub scheduler: Option<String>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.store.is_none() && self.scheduler.is_none()
    }
}

/// Most results one page of `GET /status/{id}/results` holds.
pub const MAX_RESULTS_PAGE: u64 = 1_000;

/// Most ingestions a recent-ingestions read returns.
pub const MAX_RECENT: usize = 100;
/// Batches each listed ingestion shows (around its work in progress).
const LISTED_BATCHES: u32 = 24;
/// Batches on one page of an ingestion (`Service::ingestion_page`).
pub const PAGE_BATCHES: u32 = 100;
/// Most ingestions a search answers.
pub const MAX_FOUND: usize = 10;

/// Which ingestions a list shows, as a request names them (checked by `Service::list`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Listing<'a> {
    pub limit: usize,
    /// Only those accepted before this ingestion (paging to older ones).
    pub before: Option<&'a str>,
    /// A priority's wire name.
    pub priority: Option<&'a str>,
    /// An ingestion status's wire name.
    pub status: Option<&'a str>,
}
/// Dispatches the queue view lists.
const RECENT_DISPATCHES: usize = 10;

impl Service {
    /// `wake` is the scheduler's: it is notified after new work is durably stored. The
    /// returned [`SchedulerAlive`] belongs to the scheduler task, for as long as it runs.
    pub fn new(
        store: DynStore,
        clock: Clock,
        config: ServiceConfig,
        wake: Wake,
        metrics: Metrics,
    ) -> (Self, SchedulerAlive) {
        let ServiceConfig {
            batch_size,
            limits,
            pace,
            max_waiting,
            fairness,
        } = config;
        let (alive, scheduler) = watch::channel(());
        let service = Self {
            inner: Arc::new(Inner {
                store,
                clock,
                batch_size,
                limits,
                pace,
                max_waiting,
                fairness,
                wake,
                scheduler,
                metrics,
                places: Memo::new(PLACES_CACHED),
                records: Memo::new(RECORD_IDS_CACHED),
                recent: tokio::sync::Mutex::new(None),
                depth: Arc::default(),
            }),
        };
        (service, SchedulerAlive(alive))
    }

    /// Where the depth sampler (`timeline::run`) keeps its samples.
    pub fn depth_history(&self) -> std::sync::Weak<DepthHistory> {
        Arc::downgrade(&self.inner.depth)
    }

    /// The pace over the last minutes, for the dashboard's timeline: every start in the window
    /// (`domain::window_for` the interval in force; the newest [`MAX_STARTS`]), the waiting
    /// depth this replica sampled over it, and the interval to draw the grid by.
    pub async fn pace(&self) -> Result<PaceView, ServiceError> {
        let last_event_id = self.feed_now();
        // The window depends on the interval, which the same read says: read the interval's
        // window for the configured one, or the longest one when a run-time rate may be set.
        let now = self.inner.clock.now();
        let read = self
            .inner
            .store
            .pace(now.minus(MAX_WINDOW), MAX_STARTS + 1)
            .await?;
        let interval = self.pace_with(read.rate_interval).interval;
        let window = window_for(interval);
        let from = now.minus(window);
        let mut starts: Vec<StartMark> = read
            .starts
            .iter()
            .filter(|(at, _, _)| *at >= from)
            .map(|&(at, priority, batch_id)| StartMark {
                at,
                priority,
                batch_id,
            })
            .collect();
        let truncated = starts.len() > MAX_STARTS;
        starts.truncate(MAX_STARTS);
        starts.reverse();
        Ok(PaceView {
            now,
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
            rate_interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            paused: read.paused,
            starts,
            truncated,
            depth: self.inner.depth.since(from, now, read.waiting),
            last_event_id,
        })
    }

    /// Whether the service can do its work: the store answers with the expected schema and
    /// the scheduler is running.
    pub async fn readiness(&self) -> Readiness {
        let store = self.inner.store.check().await.err().map(|e| e.to_string());
        let scheduler = self
            .inner
            .scheduler
            .has_changed()
            .is_err()
            .then(|| "the scheduler is not running".to_owned());
        Readiness { store, scheduler }
    }

    /// Parse a raw JSON body and ingest it (as `token_tenant`'s if it names no tenant), at
    /// most once per `Idempotency-Key` if one is given (the key is checked before the body, so
    /// a bad key never stores anything). A large body is parsed (and fingerprinted) on a
    /// blocking thread: parsing a 4 MiB body takes milliseconds, which on an async worker
    /// would stall every request sharing it.
    pub async fn ingest_json(
        &self,
        body: bytes::Bytes,
        idempotency_key: Option<&str>,
        token_tenant: Option<Tenant>,
    ) -> Result<Accepted, ServiceError> {
        let key = idempotency_key.map(check_key).transpose()?;
        let limits = self.inner.limits;
        let large = body.len() > PARSE_ON_WORKER_BYTES;
        let keyed = key.is_some();
        let parse = move || {
            let ingestion = NewIngestion::parse_json(&body, limits)?.or_tenant(token_tenant);
            let fingerprint = keyed.then(|| fingerprint(&ingestion));
            Ok::<_, ServiceError>((ingestion, fingerprint))
        };
        let (ingestion, fingerprint) = if large {
            // A blocking task fails by panicking, as parsing inline would have, or by the
            // runtime shutting down.
            match tokio::task::spawn_blocking(parse).await {
                Ok(parsed) => parsed?,
                Err(e) => match e.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    Err(_) => {
                        return Err(ServiceError::Store(StoreError::Unavailable(
                            "shutting down".to_owned(),
                        )))
                    }
                },
            }
        } else {
            parse()?
        };
        let key = key
            .zip(fingerprint)
            .map(|(key, fingerprint)| IdempotencyKey { key, fingerprint });
        self.store_ingestion(ingestion, key).await
    }

    /// Check a typed request (server functions) and ingest it (as `token_tenant`'s if it names
    /// no tenant).
    pub async fn ingest_request(
        &self,
        request: IngestRequest,
        token_tenant: Option<Tenant>,
    ) -> Result<Uuid, ServiceError> {
        let ingestion = NewIngestion::parse(request, self.inner.limits)?.or_tenant(token_tenant);
        self.ingest(ingestion).await
    }

    /// Store an ingestion and its batches; returns once they are durable.
    pub async fn ingest(&self, ingestion: NewIngestion) -> Result<Uuid, ServiceError> {
        Ok(self.store_ingestion(ingestion, None).await?.ingestion_id())
    }

    async fn store_ingestion(
        &self,
        ingestion: NewIngestion,
        key: Option<IdempotencyKey>,
    ) -> Result<Accepted, ServiceError> {
        // Version 7 (time-ordered) ids: new rows land at the right edge of the stores' id
        // indexes instead of on a random page each, so a group commit writes a few pages
        // rather than one per row (docs/benchmarks.md).
        let record = NewIngestionRecord {
            id: Uuid::now_v7(),
            priority: ingestion.priority(),
            tenant: ingestion
                .tenant()
                .cloned()
                .unwrap_or_else(Tenant::default_tenant),
            created_at: self.inner.clock.now(),
            batches: ingestion
                .batches(self.inner.batch_size)
                .map(|ids| NewBatchRecord {
                    id: Uuid::now_v7(),
                    ids: ids.to_vec(),
                })
                .collect(),
        };
        let id = record.id;
        let new_batches = record.batches.len() as u64;
        let ids = ingestion.ids().len();
        let admission = Admission {
            key,
            max_waiting: self.inner.max_waiting,
        };
        no_return::pass();
        match self.inner.store.insert_ingestion(record, admission).await? {
            Inserted::Created => {
                self.inner.wake.work.notify_one();
                self.inner.metrics.ingestion_accepted(ids);
                Ok(Accepted::Created(id))
            }
            Inserted::Replayed(first) => Ok(Accepted::Replayed(first)),
            Inserted::KeyConflict => Err(ServiceError::IdempotencyConflict),
            Inserted::QueueFull { waiting } => {
                let max = self.inner.max_waiting.unwrap_or(0);
                // Room for this request once enough waiting batches have started.
                let excess = (waiting + new_batches).saturating_sub(max).max(1);
                let spacing = self.inner.pace.spacing().as_secs_f64();
                Err(ServiceError::QueueFull {
                    retry_after_secs: (excess as f64 * spacing).ceil().max(1.0) as u64,
                })
            }
        }
    }

    /// The status of an ingestion; an unknown or malformed id is `NotFound`.
    pub async fn status(&self, ingestion_id: &str) -> Result<IngestionView, ServiceError> {
        // One reading of the newest event for the record and the queue place: both are read
        // after it.
        let seen = self.inner.store.latest_event().await?;
        let record = self.record(ingestion_id, seen).await?;
        self.predicted(&record, seen).await
    }

    /// An ingestion as stored; an unknown or malformed id is `NotFound`.
    ///
    /// Status polls between two events are answered from memory (see [`Memo`]): a record is
    /// remembered under the newest event id read before it (`Store::latest_event`), and
    /// served while that id stands still.
    async fn record(
        &self,
        ingestion_id: &str,
        seen: u64,
    ) -> Result<Arc<IngestionRecord>, ServiceError> {
        let id = ingestion_uuid(ingestion_id)?;
        let records = &self.inner.records;
        if let Some(record) = records.get(&id, seen) {
            return Ok(record);
        }
        let record = Arc::new(self.read_record(id, ingestion_id).await?);
        let ids = record.batches.iter().map(|b| b.ids.len()).sum();
        records.put(id, seen, record.clone(), ids);
        Ok(record)
    }

    async fn read_record(&self, id: Uuid, text: &str) -> Result<IngestionRecord, ServiceError> {
        self.inner
            .store
            .ingestion(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(text.to_owned()))
    }

    /// A page of an ingestion's per-ID results, in split order (at most `limit`, capped at
    /// [`MAX_RESULTS_PAGE`]), read from the batches that hold it, whatever the ingestion's
    /// size.
    pub async fn results(
        &self,
        ingestion_id: &str,
        offset: u64,
        limit: u64,
    ) -> Result<ResultsPage, ServiceError> {
        let id = ingestion_uuid(ingestion_id)?;
        let limit = limit.min(MAX_RESULTS_PAGE);
        let page = self
            .inner
            .store
            .id_page(id, offset, limit)
            .await?
            .ok_or_else(|| ServiceError::NotFound(ingestion_id.to_owned()))?;
        let results = page
            .batches
            .iter()
            .flat_map(|b| {
                b.ids.iter().enumerate().map(move |(i, &id)| {
                    let result = b.results.get(i).filter(|r| r.id == id);
                    IdResultView {
                        batch_id: b.id,
                        id,
                        status: b.status,
                        data: result.map_or(serde_json::Value::Null, |r| r.data.clone()),
                        error: result.and_then(|r| r.error.clone()),
                    }
                })
            })
            .skip(usize::try_from(offset.saturating_sub(page.first_offset)).unwrap_or(usize::MAX))
            .take(limit as usize)
            .collect();
        Ok(ResultsPage {
            ingestion_id: id,
            total: page.id_count,
            offset,
            results,
        })
    }

    /// The newest ingestions (at most `limit`, capped at [`MAX_RECENT`]), newest first, with
    /// the id of the newest event they reflect. Each is a summary read in O(window), whatever
    /// its size; predictions are made afresh for every caller from the shared read.
    pub async fn recent(&self, limit: usize) -> Result<RecentIngestions, ServiceError> {
        // Read the feed first: replaying an event already reflected is harmless, missing one
        // is not.
        let last_event_id = self.feed_now();
        let summaries = self.summaries(limit.min(MAX_RECENT), last_event_id).await?;
        Ok(self.listed(&summaries, last_event_id))
    }

    /// The list of `summaries` as clients read it, with predictions made now.
    fn listed(&self, summaries: &[SummaryRecord], last_event_id: u64) -> RecentIngestions {
        let now = self.inner.clock.now();
        RecentIngestions {
            now,
            ingestions: summaries.iter().map(|s| self.summary_of(s, now)).collect(),
            last_event_id,
        }
    }

    /// The ingestions `listing` asks for, newest first, as [`Service::recent`] answers them.
    /// Without conditions it is `recent` (one shared read per event); with them each call
    /// reads the store.
    pub async fn list(&self, listing: Listing<'_>) -> Result<RecentIngestions, ServiceError> {
        let filter = |what: &str, value: &str| {
            ServiceError::InvalidFilter(format!("{what} {value:?} is not one to filter by"))
        };
        let selection = Selection {
            limit: listing.limit.min(MAX_RECENT),
            before: listing
                .before
                .map(|id| Uuid::parse_str(id).map_err(|_| filter("ingestion id", id)))
                .transpose()?,
            priority: listing
                .priority
                .map(|p| Priority::from_wire(p).ok_or_else(|| filter("priority", p)))
                .transpose()?,
            status: listing
                .status
                .map(|s| IngestionStatus::from_name(s).ok_or_else(|| filter("status", s)))
                .transpose()?,
            ..Selection::default()
        };
        if selection == Selection::newest(selection.limit) {
            return self.recent(selection.limit).await;
        }
        let last_event_id = self.feed_now();
        let summaries = self
            .inner
            .store
            .summaries(&selection, LISTED_BATCHES, self.inner.fairness)
            .await?;
        Ok(self.listed(&summaries, last_event_id))
    }

    /// One ingestion with the page of [`PAGE_BATCHES`] batches from position `from` (a page
    /// past the end shows the last batch): its batches by primary key, plus one index count of
    /// its waiting batches before the page (for the predictions), whatever the ingestion's size.
    pub async fn ingestion_page(
        &self,
        ingestion_id: &str,
        from: u32,
    ) -> Result<IngestionPage, ServiceError> {
        let id = ingestion_uuid(ingestion_id)?;
        let last_event_id = self.feed_now();
        let summary = self
            .inner
            .store
            .summaries(&Selection::one(id, from), PAGE_BATCHES, self.inner.fairness)
            .await?
            .pop()
            .ok_or_else(|| ServiceError::NotFound(ingestion_id.to_owned()))?;
        let now = self.inner.clock.now();
        Ok(IngestionPage {
            now,
            ingestion: self.summary_of(&summary, now),
            page_size: PAGE_BATCHES,
            last_event_id,
        })
    }

    /// The ingestions a search names: a whole ingestion or batch id (as `GET /status` takes
    /// it), or the last 4 to 12 hex digits of an ingestion's id (the dashboard's cards show
    /// the last 8); newest first, at most [`MAX_FOUND`].
    pub async fn find(&self, text: &str) -> Result<Found, ServiceError> {
        let text = text.trim();
        let lookup = match Uuid::parse_str(text) {
            Ok(id) => Lookup::Id(id),
            Err(_) => {
                let end = text.to_ascii_lowercase();
                match (4..=12).contains(&end.len()) && end.bytes().all(|b| b.is_ascii_hexdigit()) {
                    true => Lookup::Suffix(end),
                    false => {
                        return Err(ServiceError::InvalidFilter(format!(
                            "{text:?} is neither an id nor the last 4 to 12 hex digits of one"
                        )))
                    }
                }
            }
        };
        Ok(Found {
            ingestions: self.inner.store.find_ingestions(&lookup, MAX_FOUND).await?,
        })
    }

    /// The store's summaries of the newest ingestions, read once per event: every open
    /// dashboard asks for the same list after the same events, so one read serves them all
    /// (callers that ask while it is being read wait for it). A read at feed value `seen` holds
    /// while the feed stands at `seen` (see `Memo`).
    async fn summaries(
        &self,
        limit: usize,
        seen: u64,
    ) -> Result<Arc<Vec<SummaryRecord>>, StoreError> {
        let mut memo = self.inner.recent.lock().await;
        // A read at a newer feed value serves too (replaying an event it reflects is harmless).
        if let Some(m) = memo.as_ref().filter(|m| m.seen >= seen && m.limit == limit) {
            return Ok(m.summaries.clone());
        }
        let summaries = Arc::new(
            self.inner
                .store
                .summaries(
                    &Selection::newest(limit),
                    LISTED_BATCHES,
                    self.inner.fairness,
                )
                .await?,
        );
        *memo = Some(RecentMemo {
            seen,
            limit,
            summaries: summaries.clone(),
        });
        Ok(summaries)
    }

    /// An ingestion as the dashboard lists it, with predictions made at `now`.
    fn summary_of(&self, s: &SummaryRecord, now: Timestamp) -> IngestionSummary {
        let mut batches: Vec<BatchView> = s.batches.iter().map(batch_view).collect();
        let place = s.place.as_ref().filter(|p| !p.paused).cloned();
        let predicted_completion = place.and_then(|place| {
            let pace = self.pace_with(place.rate_interval);
            predict(
                &mut batches,
                s.waiting_before_shown,
                s.counts.waiting,
                s.running_since,
                place,
                pace,
                now,
            )
        });
        let status = IngestionStatus::of_counts(s.counts);
        let c = s.counts;
        IngestionSummary {
            ingestion_id: s.id,
            status,
            priority: s.priority,
            tenant: s.tenant.clone(),
            created_at: s.created_at,
            predicted_completion,
            completed_at: match status {
                IngestionStatus::Completed => s.last_completed_at,
                _ => None,
            },
            cancelled_at: s.cancelled_at,
            id_count: s.id_count,
            batch_count: c.total() as u32,
            triggered_batches: c.running as u32,
            completed_batches: c.completed as u32,
            cancelled_batches: c.cancelled as u32,
            failed_batches: c.failed as u32,
            first_shown: s.first_shown,
            batches,
        }
    }

    /// The queue: depth per priority, the batch in flight, the next slot, recent dispatches.
    pub async fn queue(&self) -> Result<QueueView, ServiceError> {
        let last_event_id = self.feed_now();
        let queue = self.inner.store.queue(RECENT_DISPATCHES).await?;
        let now = self.inner.clock.now();
        let pace = self.pace_with(queue.rate_interval);
        let in_flight = queue.in_flight.into_iter().next().map(dispatch_view);
        let next_slot = pace.next_start(
            now,
            queue.last_start,
            in_flight.as_ref().map(|d| d.started_at),
        );
        Ok(QueueView {
            now,
            rate_interval_ms: u64::try_from(pace.interval.as_millis()).unwrap_or(u64::MAX),
            rate_overridden: queue.rate_interval.is_some(),
            paused: queue.paused,
            batch_size: self.inner.batch_size as u64,
            max_ids: self.inner.limits.max_ids as u64,
            waiting: Priority::ALL
                .into_iter()
                .map(|priority| {
                    let rank = priority.rank() as usize;
                    let batches = queue.waiting[rank];
                    let tenants: Vec<TenantDepth> = queue.tenants[rank]
                        .iter()
                        .map(|(tenant, batches)| TenantDepth {
                            tenant: tenant.clone(),
                            batches: *batches,
                        })
                        .collect();
                    let listed: u64 = tenants.iter().map(|t| t.batches).sum();
                    Depth {
                        priority,
                        batches,
                        tenants,
                        other_tenants: batches.saturating_sub(listed),
                    }
                })
                .collect(),
            oldest_waiting: queue.oldest_waiting,
            in_flight,
            last_start: queue.last_start,
            next_slot,
            recent: queue.recent.into_iter().map(dispatch_view).collect(),
            last_event_id,
        })
    }

    /// Cancel the ingestion's batches that have not started (started ones finish). Repeating
    /// it is harmless: nothing more is cancelled. An unknown or malformed id is `NotFound`.
    pub async fn cancel(&self, ingestion_id: &str) -> Result<CancelResponse, ServiceError> {
        let id = ingestion_uuid(ingestion_id)?;
        no_return::pass();
        let cancelled_batches = self
            .inner
            .store
            .cancel(id, self.inner.clock.now())
            .await?
            .ok_or_else(|| ServiceError::NotFound(ingestion_id.to_owned()))?;
        let view = self.status(ingestion_id).await?;
        Ok(CancelResponse {
            ingestion_id: id,
            cancelled_batches,
            status: view.status,
            cancelled_at: view.cancelled_at,
        })
    }

    /// The metrics, with the queue's gauges read now, in the Prometheus text format.
    pub async fn metrics_text(&self) -> Result<String, ServiceError> {
        let queue = self.queue().await?;
        self.inner.metrics.observe_queue(&queue);
        Ok(self.inner.metrics.encode())
    }

    /// Where the HTTP layer records requests.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// A batch's attempts, oldest first: who ran each, when, and how it ended. An unknown or
    /// malformed id is `BatchNotFound`.
    pub async fn attempts(&self, batch_id: &str) -> Result<BatchAttempts, ServiceError> {
        let not_found = || ServiceError::BatchNotFound(batch_id.to_owned());
        let id = Uuid::parse_str(batch_id).map_err(|_| not_found())?;
        let record = self.inner.store.attempts(id).await?.ok_or_else(not_found)?;
        let running = record.running;
        Ok(BatchAttempts {
            batch_id: id,
            attempts: record
                .attempts
                .into_iter()
                .map(|r| AttemptView {
                    outcome: match r.outcome {
                        Some(outcome) => outcome,
                        None if Some(r.attempt) == running => "running".into(),
                        None => "cut_off".into(),
                    },
                    status_code: r.status_code,
                    attempt: r.attempt,
                    replica: r.replica,
                    started_at: r.started_at,
                    finished_at: r.finished_at,
                    error: r.error,
                })
                .collect(),
        })
    }

    /// An operator's retry of a failed batch: back in the queue at its place in dispatch order
    /// (its attempts keep counting). Unknown or malformed id: `BatchNotFound`.
    pub async fn retry_batch(&self, batch_id: &str) -> Result<(), ServiceError> {
        let not_found = || ServiceError::BatchNotFound(batch_id.to_owned());
        let id = Uuid::parse_str(batch_id).map_err(|_| not_found())?;
        no_return::pass();
        match self.inner.store.requeue(id, self.inner.clock.now()).await? {
            None => Err(not_found()),
            Some(false) => Err(ServiceError::BatchNotFailed(id)),
            Some(true) => {
                self.inner.wake.work.notify_one();
                Ok(())
            }
        }
    }

    /// Pause dispatch (nothing new starts; the batch in flight finishes). False if it was.
    pub async fn pause(&self) -> Result<bool, ServiceError> {
        no_return::pass();
        Ok(self
            .inner
            .store
            .set_paused(true, self.inner.clock.now())
            .await?)
    }

    /// Resume dispatch, still under the rate limit. False if it was not paused.
    pub async fn resume(&self) -> Result<bool, ServiceError> {
        no_return::pass();
        let changed = self
            .inner
            .store
            .set_paused(false, self.inner.clock.now())
            .await?;
        self.inner.wake.work.notify_one();
        Ok(changed)
    }

    /// Set the rate interval at run time (1ms..=1day), or with `None` go back to the
    /// configured one. Durable and recorded as an event; the next start follows it.
    pub async fn set_rate_interval(
        &self,
        interval: Option<Duration>,
    ) -> Result<Duration, ServiceError> {
        if interval.is_some_and(|d| !(MIN_RATE_INTERVAL..=MAX_RATE_INTERVAL).contains(&d)) {
            return Err(ServiceError::InvalidRate);
        }
        let effective = interval.unwrap_or(self.inner.pace.interval);
        no_return::pass();
        self.inner
            .store
            .set_rate_interval(
                interval,
                u64::try_from(effective.as_millis()).unwrap_or(u64::MAX),
                self.inner.clock.now(),
            )
            .await?;
        self.inner.wake.pace.notify_one();
        Ok(effective)
    }

    /// The pace in force: the configured one, with a run-time interval if one is set.
    fn pace_with(&self, interval: Option<Duration>) -> Pace {
        Pace {
            interval: interval.unwrap_or(self.inner.pace.interval),
            ..self.inner.pace
        }
    }

    /// The view of a record, with predictions for the work it still has to do.
    /// `seen` is the event feed's value read before `record` was.
    async fn predicted(
        &self,
        record: &IngestionRecord,
        seen: u64,
    ) -> Result<IngestionView, ServiceError> {
        let unfinished = record.batches.iter().any(|b| !b.status.is_final());
        let place = match unfinished {
            true => self.queue_place(record.id, seen).await?,
            false => None,
        };
        let mut view = view_of(record);
        if let Some(place) = place.filter(|p| !p.paused) {
            let pace = self.pace_with(place.rate_interval);
            let waiting = record
                .batches
                .iter()
                .filter(|b| b.status == BatchStatus::YetToStart)
                .count() as u64;
            let running_since = record
                .batches
                .iter()
                .filter(|b| b.status == BatchStatus::Triggered)
                .filter_map(|b| b.started_at)
                .max();
            let now = self.inner.clock.now();
            view.predicted_completion = predict(
                &mut view.batches,
                0,
                waiting,
                running_since,
                place,
                pace,
                now,
            );
        }
        Ok(view)
    }

    /// Where an ingestion stands in the queue. Nothing in the queue changes without an event
    /// (inserts, claims, completions, failures, cancels, pause and rate all append one), so a
    /// place read when the newest event was `n` holds until a newer event commits: status
    /// reads between dispatches do not count the queue again.
    async fn queue_place(&self, id: Uuid, seen: u64) -> Result<Option<QueuePlace>, StoreError> {
        if let Some(place) = self.inner.places.get(&id, seen) {
            return Ok(Some(place));
        }
        let place = self
            .inner
            .store
            .queue_place(id, self.inner.fairness)
            .await?;
        if let Some(place) = &place {
            self.inner
                .places
                .put(id, seen, place.clone(), place.ahead.weight());
        }
        Ok(place)
    }

    /// Events after `after`, oldest first (one ingestion's only, if given).
    pub async fn events_after(
        &self,
        after: u64,
        ingestion: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<Event>, ServiceError> {
        Ok(self
            .inner
            .store
            .events_after(after, ingestion, limit)
            .await?)
    }

    /// Changes whenever newer events are committed; its value is the newest event id.
    pub fn event_feed(&self) -> watch::Receiver<u64> {
        self.inner.store.event_feed()
    }

    /// The newest event id now. Read it *before* the store: a value read afterwards is then
    /// at least as new as it, which is what remembering reads by it relies on (see `Memo`).
    fn feed_now(&self) -> u64 {
        *self.inner.store.event_feed().borrow()
    }
}

/// Fill in when each waiting batch of `batches` (some or all of an ingestion's, in split
/// order, with `waiting_before` of its waiting ones before the first) should start, and
/// answer when the whole ingestion should finish: its `waiting` batches start one after
/// another from `place`, in split order, and its running ones (the latest started at
/// `running_since`) finish.
fn predict(
    batches: &mut [BatchView],
    waiting_before: u64,
    waiting: u64,
    running_since: Option<Timestamp>,
    place: QueuePlace,
    pace: Pace,
    now: Timestamp,
) -> Option<Timestamp> {
    let next = pace.next_start(now, place.last_start, place.in_flight_since);
    let last = waiting.checked_sub(1).map(|k| place.ahead.before(k));
    let last_finish = last.map(|ahead| pace.finish_of(pace.start_after(next, ahead)));
    let running_finish = running_since.map(|s| pace.finish_of(s).max(now));
    let mut k = waiting_before;
    for batch in batches {
        if batch.status == BatchStatus::YetToStart {
            batch.predicted_start = Some(pace.start_after(next, place.ahead.before(k)));
            k += 1;
        }
    }
    last_finish.max(running_finish)
}

fn dispatch_view(d: DispatchRecord) -> DispatchView {
    DispatchView {
        batch_id: d.batch_id,
        ingestion_id: d.ingestion_id,
        priority: d.priority,
        position: d.position,
        ids: d.ids,
        started_at: d.started_at,
        completed_at: d.completed_at,
    }
}

fn view_of(record: &IngestionRecord) -> IngestionView {
    IngestionView {
        ingestion_id: record.id,
        status: IngestionStatus::of(record.batches.iter().map(|b| b.status)),
        priority: record.priority,
        tenant: record.tenant.clone(),
        created_at: record.created_at,
        cancelled_at: record.cancelled_at,
        batches: record.batches.iter().map(batch_view).collect(),
        predicted_completion: None,
    }
}

fn batch_view(b: &BatchRecord) -> BatchView {
    BatchView {
        batch_id: b.id,
        ids: b.ids.clone(),
        status: b.status,
        started_at: b.started_at,
        completed_at: b.completed_at,
        results: b.results.clone(),
        predicted_start: None,
        attempts: b.attempt,
        error: b.error.clone(),
        retry_at: b.retry_at,
    }
}
