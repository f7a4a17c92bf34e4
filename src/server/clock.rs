//! The service's clock: wall time anchored once, advanced by tokio's monotonic clock.
//!
//! Why not `SystemTime::now()` on every call: the rate limit compares start times, and a wall
//! clock that steps backwards (NTP) would let a batch start early. Anchoring once and adding
//! monotonic time never goes backwards, and under `tokio::time::pause()` it advances exactly as
//! the test says, which makes scheduler timing testable without sleeping.

use crate::domain::Timestamp;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    anchor: Timestamp,
    anchor_instant: Instant,
}

impl Clock {
    /// Anchored at the system's current wall time.
    pub fn system() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self::starting_at(Timestamp::from_micros(since_epoch.as_micros() as i64))
    }

    /// Anchored at a chosen time (tests use a round number to read start times easily).
    pub fn starting_at(anchor: Timestamp) -> Self {
        Self {
            anchor,
            anchor_instant: Instant::now(),
        }
    }

    /// Now, rounded *up* to the microsecond: a start is never recorded earlier than it
    /// happened, so `recorded start + interval` is never earlier than the real slot.
    pub fn now(&self) -> Timestamp {
        let elapsed = self.anchor_instant.elapsed();
        let micros = elapsed.as_nanos().div_ceil(1_000);
        self.anchor.plus(Duration::from_micros(micros as u64))
    }

    /// The monotonic instant at which `t` will be (or was) reached.
    pub fn instant_at(&self, t: Timestamp) -> Instant {
        self.anchor_instant + t.since(self.anchor)
    }
}
