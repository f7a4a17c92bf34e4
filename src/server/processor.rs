//! What happens to a dispatched batch: the downstream call.

use crate::domain::IdResult;
use crate::server::store::ClaimedBatch;
use async_trait::async_trait;
use std::time::Duration;

#[async_trait]
pub trait Processor: Send + Sync + 'static {
    /// Process one batch and return one result per ID, in the batch's order.
    async fn process(&self, batch: &ClaimedBatch) -> Vec<IdResult>;
}

/// The default processor (SPEC §2): simulates fetching every ID of the batch concurrently,
/// each taking `work`, and records `{"id": id, "data": "processed"}`.
#[derive(Clone, Debug)]
pub struct SimulatedProcessor {
    work: Duration,
}

impl SimulatedProcessor {
    pub fn new(work: Duration) -> Self {
        Self { work }
    }
}

#[async_trait]
impl Processor for SimulatedProcessor {
    async fn process(&self, batch: &ClaimedBatch) -> Vec<IdResult> {
        let fetches = batch.ids.iter().map(|&id| async move {
            tokio::time::sleep(self.work).await;
            IdResult::processed(id)
        });
        futures::future::join_all(fetches).await
    }
}
