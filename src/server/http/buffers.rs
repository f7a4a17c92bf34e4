//! One bound on the request bodies held in memory at once, across all requests
//! (`--max-buffered-bytes`). `--max-body-bytes` bounds one body; without this, 64 clients
//! sending 4 MiB bodies at once made the server hold hundreds of MB and slowed every other
//! request (docs/benchmarks.md). A body takes room as its bytes arrive, so a client that
//! sends slowly holds only what it has sent; when there is no room, reading waits (a burst
//! is absorbed, slowly, instead of refused) and the request timeout bounds the wait.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Room is counted in KiB, so the semaphore's permits (u32) cover any setting.
const UNIT: usize = 1024;

#[derive(Clone)]
pub struct BufferBudget {
    room: Arc<Semaphore>,
    units: u32,
}

/// The room one body holds; given back when dropped (with the answer, or when the request
/// is cut).
pub(super) struct Room {
    budget: BufferBudget,
    held: Option<OwnedSemaphorePermit>,
    units: u32,
}

fn units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

impl BufferBudget {
    pub fn new(max_buffered_bytes: u64) -> Self {
        let units = units(usize::try_from(max_buffered_bytes).unwrap_or(usize::MAX)).max(1);
        Self {
            room: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    /// No room yet.
    pub(super) fn room(&self) -> Room {
        Room {
            budget: self.clone(),
            held: None,
            units: 0,
        }
    }
}

impl Room {
    /// Hold room for `bytes` in all (never more than the whole budget), waiting for what is
    /// missing.
    pub(super) async fn grow_to(&mut self, bytes: usize) {
        let want = units(bytes).min(self.budget.units);
        if want <= self.units {
            return;
        }
        let more = self
            .budget
            .room
            .clone()
            .acquire_many_owned(want - self.units)
            .await
            .expect("the semaphore is never closed");
        match &mut self.held {
            Some(held) => held.merge(more),
            None => self.held = Some(more),
        }
        self.units = want;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn room_is_taken_as_bytes_arrive_and_given_back_when_dropped() {
        let budget = BufferBudget::new(4 * 1024);
        let mut first = budget.room();
        first.grow_to(100).await;
        first.grow_to(3 * 1024).await;
        assert_eq!(budget.room.available_permits(), 1);
        let mut second = budget.room();
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), second.grow_to(2048));
        assert!(waiting.await.is_err(), "room was given beyond the budget");
        drop(first);
        second.grow_to(2048).await;
        assert_eq!(budget.room.available_permits(), 2);
    }
}
