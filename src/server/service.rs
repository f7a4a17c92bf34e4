//! The service: the one place every rule is applied, whoever asks (JSON routes, server
//! functions, the CLI). It turns validated requests into stored work, wakes the scheduler,
//! and builds the views clients read.

use crate::domain::{
    BatchView, Event, IngestRequest, IngestionStatus, IngestionView, Limits, NewIngestion,
    RequestError,
};
use crate::server::{
    clock::Clock,
    store::{DynStore, IngestionRecord, NewBatchRecord, NewIngestionRecord, StoreError},
};
use std::sync::Arc;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("no ingestion with id {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

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
    wake: Arc<Notify>,
}

impl Service {
    /// `wake` is the scheduler's: it is notified after new work is durably stored.
    pub fn new(
        store: DynStore,
        clock: Clock,
        batch_size: usize,
        limits: Limits,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                clock,
                batch_size,
                limits,
                wake,
            }),
        }
    }

    /// Parse a raw JSON body and ingest it.
    pub async fn ingest_json(&self, body: &[u8]) -> Result<Uuid, ServiceError> {
        let ingestion = NewIngestion::parse_json(body, self.inner.limits)?;
        self.ingest(ingestion).await
    }

    /// Check a typed request (server functions) and ingest it.
    pub async fn ingest_request(&self, request: IngestRequest) -> Result<Uuid, ServiceError> {
        let ingestion = NewIngestion::parse(request, self.inner.limits)?;
        self.ingest(ingestion).await
    }

    /// Store an ingestion and its batches; returns once they are durable.
    pub async fn ingest(&self, ingestion: NewIngestion) -> Result<Uuid, ServiceError> {
        let record = NewIngestionRecord {
            id: Uuid::new_v4(),
            priority: ingestion.priority(),
            created_at: self.inner.clock.now(),
            batches: ingestion
                .batches(self.inner.batch_size)
                .map(|ids| NewBatchRecord {
                    id: Uuid::new_v4(),
                    ids: ids.to_vec(),
                })
                .collect(),
        };
        let id = record.id;
        self.inner.store.insert_ingestion(record).await?;
        self.inner.wake.notify_one();
        Ok(id)
    }

    /// The status of an ingestion; an unknown or malformed id is `NotFound`.
    pub async fn status(&self, ingestion_id: &str) -> Result<IngestionView, ServiceError> {
        let not_found = || ServiceError::NotFound(ingestion_id.to_owned());
        let id = Uuid::parse_str(ingestion_id).map_err(|_| not_found())?;
        let record = self
            .inner
            .store
            .ingestion(id)
            .await?
            .ok_or_else(not_found)?;
        Ok(view_of(record))
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
}

fn view_of(record: IngestionRecord) -> IngestionView {
    IngestionView {
        ingestion_id: record.id,
        status: IngestionStatus::of(record.batches.iter().map(|b| b.status)),
        priority: record.priority,
        created_at: record.created_at,
        batches: record
            .batches
            .into_iter()
            .map(|b| BatchView {
                batch_id: b.id,
                ids: b.ids,
                status: b.status,
                started_at: b.started_at,
                completed_at: b.completed_at,
                results: b.results,
            })
            .collect(),
    }
}
