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
    /// The real clock (not a test's): waits end with the OS timer's precision.
    real: bool,
}

/// tokio's timers fire on whole milliseconds, so a wait ends up to ~1 ms after its instant
/// (then the task still has to be scheduled). A real clock sleeps the last stretch on a
/// blocking thread with the OS's microsecond timer instead.
const PRECISE_STRETCH: Duration = Duration::from_millis(2);

impl Clock {
    /// Anchored at the system's current wall time.
    pub fn system() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            real: true,
            ..Self::starting_at(Timestamp::from_micros(since_epoch.as_micros() as i64))
        }
    }

    /// Anchored at a chosen time (tests use a round number to read start times easily).
    pub fn starting_at(anchor: Timestamp) -> Self {
        Self {
            anchor,
            anchor_instant: Instant::now(),
            real: false,
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

    /// Wait until `deadline`. A test's (paused) clock wakes exactly on it; the real one wakes
    /// within microseconds after it rather than up to a millisecond and more (see
    /// `PRECISE_STRETCH`). Never before it.
    pub async fn sleep_until(&self, deadline: Instant) {
        if !self.real {
            return tokio::time::sleep_until(deadline).await;
        }
        if let Some(coarse) = deadline.checked_sub(PRECISE_STRETCH) {
            tokio::time::sleep_until(coarse).await;
        }
        let deadline = deadline.into_std();
        let _ = tokio::task::spawn_blocking(move || {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if !left.is_zero() {
                std::thread::sleep(left);
            }
        })
        .await;
    }
}
