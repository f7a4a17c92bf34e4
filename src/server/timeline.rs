//! The waiting depth over the last minutes, for the dashboard's timeline: every
//! [`SAMPLE_PERIOD`] each replica reads the waiting counts (one O(1) read of the per-priority
//! counters) and keeps the last [`KEPT`] samples in memory. The starts need no history of
//! their own: each batch's start is stored with it and read by index (`Store::pace`).

use crate::domain::{DepthSample, Timestamp};
use crate::server::clock::Clock;
use crate::server::shutdown::Shutdown;
use crate::server::store::Store;
use std::collections::VecDeque;
use std::sync::{Mutex, Weak};
use std::time::Duration;

/// How often the depth is sampled.
pub const SAMPLE_PERIOD: Duration = Duration::from_secs(1);
/// Samples kept: the longest window (`domain::timeline::MAX_WINDOW`) and a little more.
pub const KEPT: usize = 310;

/// The newest depth samples, oldest first.
#[derive(Debug, Default)]
pub struct DepthHistory {
    samples: Mutex<VecDeque<DepthSample>>,
}

impl DepthHistory {
    /// Keep `waiting` (per priority rank) as the depth at `at`.
    pub fn record(&self, at: Timestamp, waiting: [u64; 3]) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() == KEPT {
            samples.pop_front();
        }
        samples.push_back(sample(at, waiting));
    }

    /// The samples at or after `since`, with the newest one before it (where the window's
    /// line starts), oldest first, then `now`'s depth.
    pub fn since(&self, since: Timestamp, now: Timestamp, waiting: [u64; 3]) -> Vec<DepthSample> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let first = samples.partition_point(|s| s.at < since).saturating_sub(1);
        let mut out: Vec<DepthSample> = samples
            .range(first..)
            .copied()
            .filter(|s| s.at <= now)
            .collect();
        out.push(sample(now, waiting));
        out
    }
}

fn sample(at: Timestamp, [high, medium, low]: [u64; 3]) -> DepthSample {
    DepthSample {
        at,
        high,
        medium,
        low,
    }
}

/// Sample `store`'s depth into `history` every `period` until shutdown or until the store is
/// gone (the sampler does not keep it open). A failed read leaves a gap.
pub async fn run(
    store: Weak<dyn Store>,
    history: Weak<DepthHistory>,
    clock: Clock,
    period: Duration,
    mut shutdown: Shutdown,
) {
    loop {
        let (Some(store), Some(history)) = (store.upgrade(), history.upgrade()) else {
            break;
        };
        if let Ok(pace) = store.pace(clock.now(), 0).await {
            history.record(clock.now(), pace.waiting);
        }
        drop((store, history));
        tokio::select! {
            _ = shutdown.triggered() => break,
            _ = tokio::time::sleep(period) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_micros(s * 1_000_000)
    }

    #[test]
    fn the_history_keeps_the_newest_samples_and_answers_a_window_with_the_one_before_it() {
        let history = DepthHistory::default();
        for s in 0..(KEPT as i64 + 5) {
            history.record(t(s), [s as u64, 0, 0]);
        }
        let all = history.since(t(0), t(1_000), [9, 9, 9]);
        assert_eq!(all.len(), KEPT + 1, "the oldest were dropped");
        assert_eq!(all[0].at, t(5));
        assert_eq!(all.last().unwrap().high, 9, "ends with the depth now");
        let window = history.since(t(300), t(1_000), [1, 2, 3]);
        assert_eq!(
            window[0].at,
            t(299),
            "the sample before the window starts its line"
        );
        assert_eq!(window.len(), 1 + (KEPT + 5 - 300) + 1);
    }
}
