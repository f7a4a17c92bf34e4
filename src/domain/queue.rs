//! The queue as clients see it, and the one rule that predicts when waiting work runs.
//!
//! Dispatch runs at a fixed pace, so a prediction is deterministic: the next batch starts at
//! the first moment the rate slot and the in-flight rule allow, and each batch after it one
//! spacing later (the interval, or the expected work per batch if that is longer). Work that
//! arrives later with a higher priority moves predictions back; clients re-read them on events.

use super::{Priority, TenantHead, Timestamp};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

/// The fixed pace of dispatch: the rate interval and the expected work per batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    pub interval: Duration,
    pub work: Duration,
}

impl Pace {
    /// Start-to-start spacing while work is waiting.
    pub fn spacing(self) -> Duration {
        self.interval.max(self.work)
    }

    /// The earliest the next waiting batch can start: not before `now`, not before the rate
    /// slot after the last start, not before the batch in flight is expected to finish.
    pub fn next_start(
        self,
        now: Timestamp,
        last_start: Option<Timestamp>,
        in_flight_since: Option<Timestamp>,
    ) -> Timestamp {
        let slot = super::slot_after(last_start, self.interval);
        let free = in_flight_since.map(|t| t.plus(self.work));
        [Some(now), slot, free]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(now)
    }

    /// When the waiting batch with `ahead` waiting batches before it is expected to start.
    pub fn start_after(self, next_start: Timestamp, ahead: u64) -> Timestamp {
        let spacing = i64::try_from(self.spacing().as_micros()).unwrap_or(i64::MAX);
        let offset = spacing.saturating_mul(i64::try_from(ahead).unwrap_or(i64::MAX));
        Timestamp::from_micros(next_start.as_micros().saturating_add(offset))
    }

    /// When a batch that starts (or started) at `start` is expected to finish.
    pub fn finish_of(self, start: Timestamp) -> Timestamp {
        start.plus(self.work)
    }
}

/// How many waiting batches start before each of an ingestion's waiting batches, under the
/// fairness in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ahead {
    /// `fifo`: this many before its first (every waiting batch earlier in dispatch order).
    Fifo(u64),
    /// `tenant`: round-robin between the tenants of its priority.
    Turns(Turns),
}

impl Ahead {
    /// Its size in a cache of places, in entries (one, plus one per tenant counted).
    pub fn weight(&self) -> usize {
        match self {
            Ahead::Fifo(_) => 1,
            Ahead::Turns(turns) => 1 + turns.before.sorted.len() + turns.after.sorted.len(),
        }
    }

    /// Waiting batches (its own earlier ones included) that start before the ingestion's
    /// `k`-th waiting batch (from 0), if nothing new arrives ahead of them.
    pub fn before(&self, k: u64) -> u64 {
        match self {
            Ahead::Fifo(n) => n.saturating_add(k),
            Ahead::Turns(turns) => turns.before(k),
        }
    }
}

/// A tenant with waiting work at a priority: its name, its turn (`TenantHead`) and its
/// waiting batches there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantQueue {
    pub tenant: String,
    pub head: TenantHead,
    pub waiting: u64,
}

/// Where an ingestion's waiting batches fall under round-robin between the tenants of its
/// priority (`Fairness::Tenant`), computed from counts in O(tenants), and answered per batch
/// in O(log tenants).
///
/// Why it is exact: the tenants take turns in a fixed cycle (`TenantHead::turn`: a start makes
/// its tenant's last start the newest, so it goes to the back, and the others keep their
/// order; a tenant whose work runs out leaves the cycle without reordering the rest). A batch
/// that is its tenant's `t`-th waiting one (from 0) starts in round `t`. Before it start: all
/// waiting work of higher priorities; its tenant's `t` earlier batches; of each tenant whose
/// turn comes before its tenant's, `min(w, t + 1)` of its `w` waiting batches (rounds 0 to
/// `t`); of each tenant after it, `min(w, t)` (rounds 0 to `t - 1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Turns {
    higher: u64,
    own: u64,
    before: Capped,
    after: Capped,
}

impl Turns {
    /// `higher`: waiting batches at higher priorities; `own`: the waiting batches of its
    /// `tenant` at its priority that come before the ingestion's (earlier ingestions);
    /// `tenants`: every tenant with waiting work at its priority.
    pub fn new(higher: u64, own: u64, tenant: &str, tenants: &[TenantQueue]) -> Self {
        let mine = tenants
            .iter()
            .find(|t| t.tenant == tenant)
            .map(|t| t.head.turn());
        let (before, after): (Vec<&TenantQueue>, Vec<&TenantQueue>) = tenants
            .iter()
            .filter(|t| t.tenant != tenant)
            .partition(|t| mine.is_none_or(|mine| t.head.turn() < mine));
        let counts = |list: Vec<&TenantQueue>| Capped::new(list.iter().map(|t| t.waiting));
        Self {
            higher,
            own,
            before: counts(before),
            after: counts(after),
        }
    }

    /// Waiting batches that start before the ingestion's `k`-th waiting batch.
    pub fn before(&self, k: u64) -> u64 {
        let t = self.own.saturating_add(k);
        self.higher
            .saturating_add(t)
            .saturating_add(self.before.sum(t.saturating_add(1)))
            .saturating_add(self.after.sum(t))
    }
}

/// Waiting counts, sorted, with prefix sums: `Σ min(w, cap)` in O(log n).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Capped {
    sorted: Vec<u64>,
    /// `prefix[i]` is the sum of `sorted[..i]`.
    prefix: Vec<u64>,
}

impl Capped {
    fn new(counts: impl Iterator<Item = u64>) -> Self {
        let mut sorted: Vec<u64> = counts.collect();
        sorted.sort_unstable();
        let prefix = std::iter::once(0)
            .chain(sorted.iter().scan(0u64, |sum, &w| {
                *sum = sum.saturating_add(w);
                Some(*sum)
            }))
            .collect();
        Self { sorted, prefix }
    }

    fn sum(&self, cap: u64) -> u64 {
        let below = self.sorted.partition_point(|&w| w < cap);
        let capped = (self.sorted.len() - below) as u64;
        self.prefix[below].saturating_add(cap.saturating_mul(capped))
    }
}

/// Waiting batches of one priority.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Depth {
    pub priority: Priority,
    pub batches: u64,
    /// The tenants with the most waiting batches at this priority, most first (at most
    /// [`TOP_TENANTS`]).
    #[serde(default)]
    pub tenants: Vec<TenantDepth>,
    /// Waiting batches of this priority's other tenants (those not listed).
    #[serde(default)]
    pub other_tenants: u64,
}

/// How many tenants a priority's depth lists by name (the queue view, the metrics' labels).
pub const TOP_TENANTS: usize = 20;

/// Waiting batches of one tenant at a priority.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TenantDepth {
    pub tenant: String,
    pub batches: u64,
}

/// A batch that has started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DispatchView {
    pub batch_id: Uuid,
    pub ingestion_id: Uuid,
    pub priority: Priority,
    /// The batch's position in its ingestion, from 0.
    pub position: u32,
    pub ids: Vec<u64>,
    pub started_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}

/// The queue snapshot: what waits, what runs, when the next batch may start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct QueueView {
    /// The server's time when the snapshot was taken (clients correct their clock by it).
    pub now: Timestamp,
    pub rate_interval_ms: u64,
    /// The interval was set at run time (`PUT /admin/rate`), over the configured one.
    #[serde(default)]
    pub rate_overridden: bool,
    /// Dispatch is paused by an operator: nothing starts until it is resumed.
    pub paused: bool,
    /// IDs per batch.
    pub batch_size: u64,
    /// Most IDs one submission may carry.
    pub max_ids: u64,
    /// Waiting batches per priority, HIGH first.
    pub waiting: Vec<Depth>,
    /// When the oldest waiting batch was submitted (null when none waits).
    #[serde(default)]
    pub oldest_waiting: Option<Timestamp>,
    pub in_flight: Option<DispatchView>,
    pub last_start: Option<Timestamp>,
    /// The earliest the next waiting batch can start (`now` if it could start at once).
    pub next_slot: Timestamp,
    /// The latest dispatches, newest first.
    pub recent: Vec<DispatchView>,
    /// The newest event reflected here: stream `/events` after it to stay current.
    pub last_event_id: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_micros(ms * 1000)
    }

    const PACE: Pace = Pace {
        interval: Duration::from_secs(5),
        work: Duration::from_secs(1),
    };

    #[test]
    fn an_idle_queue_starts_the_next_batch_now() {
        assert_eq!(PACE.next_start(t(100_000), None, None), t(100_000));
        assert_eq!(
            PACE.next_start(t(100_000), Some(t(90_000)), None),
            t(100_000)
        );
    }

    #[test]
    fn the_next_start_waits_for_the_rate_slot_and_for_long_work() {
        assert_eq!(PACE.next_start(t(1_000), Some(t(0)), Some(t(0))), t(5_000));
        let slow = Pace {
            work: Duration::from_secs(8),
            ..PACE
        };
        assert_eq!(slow.next_start(t(1_000), Some(t(0)), Some(t(0))), t(8_000));
        assert_eq!(slow.spacing(), Duration::from_secs(8));
    }

    #[test]
    fn each_batch_ahead_adds_one_spacing() {
        assert_eq!(PACE.start_after(t(5_000), 0), t(5_000));
        assert_eq!(PACE.start_after(t(5_000), 3), t(20_000));
        assert_eq!(PACE.finish_of(t(20_000)), t(21_000));
        assert_eq!(
            PACE.start_after(t(0), u64::MAX),
            Timestamp::from_micros(i64::MAX)
        );
    }

    use crate::domain::QueueKey;

    fn tenant(seq: i64, last_start: Option<i64>, waiting: u64, mine: bool) -> TenantQueue {
        TenantQueue {
            tenant: if mine {
                MINE.to_owned()
            } else {
                format!("t{seq}")
            },
            head: TenantHead {
                first: QueueKey {
                    rank: 1,
                    seq,
                    position: 0,
                },
                last_start: last_start.map(t),
            },
            waiting,
        }
    }

    const MINE: &str = "mine";

    /// The plain model: play round-robin out, one start at a time, and answer when each of
    /// `mine`'s batches starts (higher-priority work first).
    fn played(higher: u64, own: u64, tenants: &[TenantQueue]) -> Vec<u64> {
        let mut left: Vec<(TenantQueue, u64)> =
            tenants.iter().map(|q| (q.clone(), q.waiting)).collect();
        let (mut started, mut clock, mut mine) = (higher, 1_000_000, Vec::new());
        while let Some(i) = (0..left.len())
            .filter(|&i| left[i].1 > 0)
            .min_by_key(|&i| left[i].0.head.turn())
        {
            let (queue, remaining) = &mut left[i];
            let index = queue.waiting - *remaining;
            if queue.tenant == MINE && index >= own {
                mine.push(started);
            }
            *remaining -= 1;
            started += 1;
            clock += 1;
            queue.head.last_start = Some(t(clock));
        }
        mine
    }

    #[test]
    fn under_round_robin_each_batch_waits_for_the_turns_before_it() {
        // "big" started last, "mid" long ago, "new" never: new, mid, big, then again.
        let tenants = [
            tenant(1, Some(900), 5, true),
            tenant(2, Some(100), 2, false),
            tenant(3, None, 1, false),
        ];
        let turns = Turns::new(4, 1, MINE, &tenants);
        // Mine's batches from its 2nd (one earlier ingestion of its own): rounds 1 to 4.
        let expected = played(4, 1, &tenants);
        assert_eq!(
            expected,
            [8, 9, 10, 11],
            "new, mid, mine; mid, mine; mine; mine; mine"
        );
        for (k, want) in expected.into_iter().enumerate() {
            assert_eq!(turns.before(k as u64), want, "batch {k}");
        }
    }

    #[test]
    fn round_robin_predictions_agree_with_playing_it_out() {
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for _ in 0..300 {
            let count = 1 + next(6) as usize;
            let mine = next(count as u64) as usize;
            let tenants: Vec<TenantQueue> = (0..count)
                .map(|i| {
                    let last = (next(3) > 0).then(|| next(50) as i64);
                    tenant(i as i64, last, 1 + next(7), i == mine)
                })
                .collect();
            let own = next(tenants[mine].waiting);
            let turns = Turns::new(3, own, MINE, &tenants);
            for (k, want) in played(3, own, &tenants).into_iter().enumerate() {
                assert_eq!(
                    turns.before(k as u64),
                    want,
                    "{tenants:?}, own {own}, batch {k}"
                );
            }
        }
    }

    #[test]
    fn with_one_tenant_round_robin_predicts_as_fifo() {
        let turns = Turns::new(2, 5, MINE, &[tenant(1, Some(3), 9, true)]);
        for k in 0..4 {
            assert_eq!(turns.before(k), Ahead::Fifo(7).before(k));
        }
    }

    #[test]
    fn the_canonical_case_is_predicted_exactly() {
        // MEDIUM [1..5] at T0 (started at once), HIGH [6..9] at T4: [6,7,8] at T5, [9] at
        // T10, then MEDIUM's [4,5] at T15.
        let next = PACE.next_start(t(4_000), Some(t(0)), Some(t(0)));
        assert_eq!(PACE.start_after(next, 0), t(5_000));
        assert_eq!(PACE.start_after(next, 1), t(10_000));
        assert_eq!(PACE.start_after(next, 2), t(15_000));
    }
}
