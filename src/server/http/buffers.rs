//! One bound on the request bodies held in memory at once, across all requests
//! (`--max-buffered-bytes`). `--max-body-bytes` bounds one body; without this, 64 clients
//! sending 4 MiB bodies at once made the server hold hundreds of MB and slowed every other
//! request (docs/benchmarks.md).
//!
//! A body reserves its whole declared length before it is read, all or nothing: taking room
//! as bytes arrive instead let 64 half-read bodies hold all of it, each waiting for more, and
//! nothing finished until the request timeout (measured: no answer at all for 8 s). A body
//! holding room must then arrive at a useful pace (`deadline`), so slow senders cannot keep
//! the room: they are answered 408 and the room goes to the next in line (the queue is
//! first come, first served).

use std::{sync::Arc, time::Duration};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Room is counted in KiB, so the semaphore's permits (u32) cover any setting.
const UNIT: u64 = 1024;
/// Once it has room, a body gets this long plus the time to arrive at `MIN_RATE`.
const GRACE: Duration = Duration::from_secs(5);
const MIN_RATE_BYTES_PER_SEC: u64 = 256 * 1024;

#[derive(Clone)]
pub struct BufferBudget {
    room: Arc<Semaphore>,
    units: u32,
}

fn units(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

impl BufferBudget {
    pub fn new(max_buffered_bytes: u64) -> Self {
        let units = units(max_buffered_bytes).max(1);
        Self {
            room: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    /// Wait for room for a body of up to `bytes` (its declared length, or the per-request
    /// limit when it declares none); given back when the permit is dropped.
    pub(super) async fn reserve(&self, bytes: u64) -> OwnedSemaphorePermit {
        self.room
            .clone()
            .acquire_many_owned(units(bytes).clamp(1, self.units))
            .await
            .expect("the semaphore is never closed")
    }
}

/// How long a body of `bytes` may take to arrive once it has room.
pub(super) fn deadline(bytes: u64) -> Duration {
    GRACE + Duration::from_millis(bytes.saturating_mul(1000) / MIN_RATE_BYTES_PER_SEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn room_is_all_or_nothing_and_given_back_when_dropped() {
        let budget = BufferBudget::new(4 * 1024);
        let first = budget.reserve(3 * 1024).await;
        assert_eq!(budget.room.available_permits(), 1);
        let waiting = tokio::time::timeout(Duration::from_millis(50), budget.reserve(2048));
        assert!(waiting.await.is_err(), "room was given beyond the budget");
        drop(first);
        let _second = budget.reserve(2048).await;
        assert_eq!(budget.room.available_permits(), 2);
        // A body larger than the whole budget takes all of it rather than waiting forever.
        drop(_second);
        let _all = budget.reserve(1 << 30).await;
        assert_eq!(budget.room.available_permits(), 0);
    }

    #[test]
    fn a_body_gets_five_seconds_plus_the_time_to_arrive_at_256_kib_per_second() {
        assert_eq!(deadline(0), Duration::from_secs(5));
        assert_eq!(deadline(4 * 1024 * 1024), Duration::from_secs(21));
    }
}
