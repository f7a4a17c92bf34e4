//! One bound on the request bodies held in memory at once, across all requests
//! (`--max-buffered-bytes`). `--max-body-bytes` bounds one body; without this, 64 clients
//! sending 4 MiB bodies at once made the server hold 256 MiB (and 515 MB of RSS once parsed)
//! and slowed every other request. A body waits for room before it is read: a burst is
//! absorbed (slowly) instead of refused, and the request timeout bounds the wait.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Room is counted in KiB, so the semaphore's permits (u32) cover any setting.
const UNIT: u64 = 1024;

#[derive(Clone)]
pub struct BufferBudget {
    room: Arc<Semaphore>,
    units: u32,
}

impl BufferBudget {
    pub fn new(max_buffered_bytes: u64) -> Self {
        let units = u32::try_from(max_buffered_bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
        Self {
            room: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    /// Wait for room for a body of up to `bytes` (its declared length, or the per-request
    /// limit when it declares none); the room is given back when the permit is dropped.
    pub(super) async fn reserve(&self, bytes: u64) -> OwnedSemaphorePermit {
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1))
            .unwrap_or(u32::MAX)
            .min(self.units);
        self.room
            .clone()
            .acquire_many_owned(units)
            .await
            .expect("the semaphore is never closed")
    }
}
