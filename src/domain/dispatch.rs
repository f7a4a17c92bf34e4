//! The claim rule, written once for every store.
//!
//! Whether the next batch may start now, and if not, what the dispatcher waits for, is a pure
//! function of a few facts a store reads inside its claiming transaction ([`ClaimFacts`]).
//! Each backend only fetches those facts (under its own locking) and applies the outcome, so
//! the rule cannot drift between SQLite and PostgreSQL; a plain model checks it in the tests
//! below and in `tests/simulation.rs`.
//!
//! The order of the checks is the rule:
//!
//! 1. paused: nothing starts;
//! 2. the rate slot (the last start plus the interval in force) is not due: wait for it;
//! 3. another batch holds a live lease: at most one in flight, wait for it to end;
//! 4. the first claimable batch in dispatch order (a triggered batch whose lease ran out, or a
//!    waiting batch not backing off) starts now;
//! 5. only retries backing off wait: wait for the first, but new work starts as soon as it
//!    arrives (a retry wait is no rate slot);
//! 6. nothing waits: idle.
//!
//! Waits are durations measured on the store's clock (the `now` the store read), so a
//! dispatcher whose own clock is skewed still asks once per slot.
//!
//! Which batch is "first" in step 4 is [`candidate`]'s answer, under the [`Fairness`] set:
//! dispatch order (`fifo`), or round-robin between tenants within a priority (`tenant`).

use super::{Priority, Timestamp};
use std::time::Duration;
use uuid::Uuid;

/// The rate intervals sluice accepts, at start-up and at run time.
pub const MIN_RATE_INTERVAL: Duration = Duration::from_millis(1);
pub const MAX_RATE_INTERVAL: Duration = Duration::from_secs(86_400);

/// How the next batch is chosen among those that may start (`--fairness`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "ssr", derive(clap::ValueEnum))]
pub enum Fairness {
    /// Dispatch order: priority, then acceptance order, then position (SPEC §2).
    #[default]
    Fifo,
    /// Priority stays strict; within the highest priority with claimable work, the tenant that
    /// has waited longest since its last start at that priority goes next (one that never
    /// started first, ties by its oldest batch's acceptance order), FIFO within a tenant.
    Tenant,
}

impl Fairness {
    pub fn as_str(self) -> &'static str {
        match self {
            Fairness::Fifo => "fifo",
            Fairness::Tenant => "tenant",
        }
    }
}

/// A batch's place in dispatch order: priority rank (0 for HIGH), its ingestion's acceptance
/// order, its position. The derived order is dispatch order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueKey {
    pub rank: i64,
    pub seq: i64,
    pub position: i64,
}

/// A tenant's first claimable waiting batch at a priority, and when the tenant last started a
/// batch at that priority (never: `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantHead {
    pub first: QueueKey,
    pub last_start: Option<Timestamp>,
}

impl TenantHead {
    /// Its place in the turn order at its priority (lowest goes first): a tenant that never
    /// started there first, then the one whose last start is oldest; ties by its first batch.
    /// After a start its tenant's last start is the newest, so the order is a fixed cycle.
    pub fn turn(&self) -> (bool, Option<Timestamp>, QueueKey) {
        (self.last_start.is_some(), self.last_start, self.first)
    }

    /// Under `fifo` only the first waiting batch of all matters: it stands as the one head,
    /// with no last start.
    pub fn first_only(first: Option<QueueKey>) -> Vec<TenantHead> {
        first
            .map(|first| TenantHead {
                first,
                last_start: None,
            })
            .into_iter()
            .collect()
    }
}

/// The first claimable batch under `fairness`, from what a store found claimable:
/// `abandoned`, the first triggered batch (in dispatch order) whose lease ran out, and
/// `heads`, the first claimable waiting batch of each tenant at the highest priority that has
/// one (under `fifo` a store may pass only the first of them all, with no last start).
///
/// An abandoned batch already had its turn when it first started: it is compared with the
/// chosen waiting batch in dispatch order, as under `fifo` (so with a single tenant, `tenant`
/// is exactly `fifo`).
pub fn candidate(
    fairness: Fairness,
    abandoned: Option<QueueKey>,
    heads: &[TenantHead],
) -> Option<QueueKey> {
    let first_waiting = heads.iter().map(|h| h.first).min();
    let waiting = match fairness {
        Fairness::Fifo => first_waiting,
        Fairness::Tenant => first_waiting.and_then(|first| {
            heads
                .iter()
                .filter(|h| h.first.rank == first.rank)
                .min_by_key(|h| h.turn())
                .map(|h| h.first)
        }),
    };
    abandoned.into_iter().chain(waiting).min()
}

/// A batch handed to a dispatcher, with what it needs to complete it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedBatch {
    pub batch_id: Uuid,
    pub ingestion_id: Uuid,
    pub priority: Priority,
    pub position: u32,
    pub ids: Vec<u64>,
    /// Fencing token: only a completion carrying the latest attempt is accepted.
    pub attempt: u32,
    pub started_at: Timestamp,
    pub lease_until: Timestamp,
    /// The rate interval in force when it was claimed: the next start is not before
    /// `started_at` plus this.
    pub interval: Duration,
}

/// What a store knows, inside its claiming transaction, when asked for the next batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimFacts<C> {
    /// The store's now.
    pub now: Timestamp,
    /// Dispatch is paused by an operator.
    pub paused: bool,
    /// When the last batch started, if ever.
    pub last_start: Option<Timestamp>,
    /// The rate interval in force (a run-time setting, else the configured one).
    pub interval: Duration,
    /// The latest lease of any triggered batch, if one is triggered (live or run out).
    pub latest_lease: Option<Timestamp>,
    /// The first claimable batch in dispatch order at `now`, if any.
    pub candidate: Option<C>,
    /// The earliest time a waiting batch that is backing off may go, if one backs off.
    pub next_retry: Option<Timestamp>,
}

/// What the dispatcher does next. `decide` answers it with the candidate to start; a store
/// that applied it answers the batch it claimed (`store::Claim`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision<C> {
    /// This batch starts now.
    Claimed(C),
    /// The rate slot comes at `slot`, `wait` after the store's now, under `interval` (the one
    /// in force). Nothing starts before; only a rate change can make it sooner.
    SlotNotDue {
        slot: Timestamp,
        wait: Duration,
        interval: Duration,
    },
    /// Another batch is in flight; its lease runs until `until`, `wait` from now.
    InFlight { until: Timestamp, wait: Duration },
    /// Only retries wait; the first may go at `at`, `wait` from now. New work goes first:
    /// whoever waits here must also listen for it.
    RetryWait { at: Timestamp, wait: Duration },
    /// Nothing waits.
    Idle,
    /// Dispatch is paused.
    Paused,
}

impl<C> Decision<C> {
    /// The candidate to start, or this decision as the answer (it starts nothing, so it
    /// holds no candidate and stands for any type of one).
    pub fn start_or_answer<D>(self) -> Result<C, Decision<D>> {
        Err(match self {
            Decision::Claimed(candidate) => return Ok(candidate),
            Decision::SlotNotDue {
                slot,
                wait,
                interval,
            } => Decision::SlotNotDue {
                slot,
                wait,
                interval,
            },
            Decision::InFlight { until, wait } => Decision::InFlight { until, wait },
            Decision::RetryWait { at, wait } => Decision::RetryWait { at, wait },
            Decision::Idle => Decision::Idle,
            Decision::Paused => Decision::Paused,
        })
    }
}

/// The rate slot: when the batch after one started at `last_start` may start.
pub fn slot_after(last_start: Option<Timestamp>, interval: Duration) -> Option<Timestamp> {
    last_start.map(|last| last.plus(interval))
}

/// The claim rule (see the module doc).
pub fn decide<C>(facts: ClaimFacts<C>) -> Decision<C> {
    let now = facts.now;
    if facts.paused {
        return Decision::Paused;
    }
    if let Some(slot) = slot_after(facts.last_start, facts.interval).filter(|&slot| now < slot) {
        return Decision::SlotNotDue {
            slot,
            wait: slot.since(now),
            interval: facts.interval,
        };
    }
    if let Some(until) = facts.latest_lease.filter(|&until| until > now) {
        return Decision::InFlight {
            until,
            wait: until.since(now),
        };
    }
    if let Some(candidate) = facts.candidate {
        return Decision::Claimed(candidate);
    }
    match facts.next_retry {
        // A retry already due would have been the candidate; a store that still reports one
        // (a retry time in the past) is answered with a short wait rather than a busy loop.
        Some(at) => Decision::RetryWait {
            at,
            wait: at.since(now).max(Duration::from_micros(1)),
        },
        None => Decision::Idle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(us: i64) -> Timestamp {
        Timestamp::from_micros(us)
    }

    fn facts() -> ClaimFacts<u32> {
        ClaimFacts {
            now: at(10_000),
            paused: false,
            last_start: None,
            interval: Duration::from_micros(5_000),
            latest_lease: None,
            candidate: Some(7),
            next_retry: None,
        }
    }

    /// The rule as a reader would state it, independently of `decide`'s structure: what may
    /// start, and otherwise the earliest moment worth looking again and why.
    fn model(f: &ClaimFacts<u32>) -> Decision<u32> {
        let now = f.now.as_micros();
        let slot = f
            .last_start
            .map(|l| l.as_micros() + f.interval.as_micros() as i64);
        let lease_live = f.latest_lease.is_some_and(|l| l.as_micros() > now);
        let may_start = !f.paused && slot.is_none_or(|s| s <= now) && !lease_live;
        if f.paused {
            Decision::Paused
        } else if slot.is_some_and(|s| s > now) {
            let s = slot.unwrap();
            Decision::SlotNotDue {
                slot: at(s),
                wait: Duration::from_micros((s - now) as u64),
                interval: f.interval,
            }
        } else if lease_live {
            let l = f.latest_lease.unwrap().as_micros();
            Decision::InFlight {
                until: at(l),
                wait: Duration::from_micros((l - now) as u64),
            }
        } else if may_start && f.candidate.is_some() {
            Decision::Claimed(f.candidate.unwrap())
        } else if let Some(r) = f.next_retry {
            Decision::RetryWait {
                at: r,
                wait: Duration::from_micros((r.as_micros() - now).max(1) as u64),
            }
        } else {
            Decision::Idle
        }
    }

    #[test]
    fn a_due_slot_with_nothing_in_flight_starts_the_candidate() {
        assert_eq!(decide(facts()), Decision::Claimed(7));
    }

    #[test]
    fn a_slot_not_yet_due_is_waited_for_on_the_stores_clock() {
        let f = ClaimFacts {
            last_start: Some(at(8_000)),
            ..facts()
        };
        assert_eq!(
            decide(f),
            Decision::SlotNotDue {
                slot: at(13_000),
                wait: Duration::from_micros(3_000),
                interval: Duration::from_micros(5_000)
            }
        );
    }

    #[test]
    fn a_waiting_retry_never_holds_back_claimable_work() {
        let f = ClaimFacts {
            next_retry: Some(at(30_000_000)),
            ..facts()
        };
        assert_eq!(decide(f), Decision::Claimed(7));
    }

    #[test]
    fn only_retries_waiting_is_a_retry_wait_not_a_rate_slot() {
        let f = ClaimFacts {
            candidate: None,
            next_retry: Some(at(30_000)),
            ..facts()
        };
        assert_eq!(
            decide(f),
            Decision::RetryWait {
                at: at(30_000),
                wait: Duration::from_micros(20_000)
            }
        );
    }

    #[test]
    fn a_live_lease_holds_the_next_start_and_a_run_out_one_does_not() {
        let live = ClaimFacts {
            latest_lease: Some(at(10_001)),
            ..facts()
        };
        assert!(matches!(decide(live), Decision::InFlight { .. }));
        let run_out = ClaimFacts {
            latest_lease: Some(at(10_000)),
            ..facts()
        };
        assert_eq!(decide(run_out), Decision::Claimed(7));
    }

    fn key(rank: i64, seq: i64, position: i64) -> QueueKey {
        QueueKey {
            rank,
            seq,
            position,
        }
    }

    fn head(rank: i64, seq: i64, last_start: Option<i64>) -> TenantHead {
        TenantHead {
            first: key(rank, seq, 0),
            last_start: last_start.map(at),
        }
    }

    #[test]
    fn under_fifo_the_first_in_dispatch_order_goes() {
        let heads = [head(1, 5, None), head(1, 2, Some(9))];
        assert_eq!(candidate(Fairness::Fifo, None, &heads), Some(key(1, 2, 0)));
        let abandoned = Some(key(1, 3, 4));
        assert_eq!(
            candidate(Fairness::Fifo, abandoned, &heads),
            Some(key(1, 2, 0))
        );
        assert_eq!(candidate(Fairness::Fifo, abandoned, &[]), abandoned);
        assert_eq!(candidate(Fairness::Fifo, None, &[]), None);
    }

    #[test]
    fn under_tenant_fairness_the_tenant_that_waited_longest_goes() {
        // Both started before: the earlier last start goes, whatever its batches' order.
        let heads = [head(1, 2, Some(20)), head(1, 7, Some(10))];
        assert_eq!(
            candidate(Fairness::Tenant, None, &heads),
            Some(key(1, 7, 0))
        );
        // One that never started goes before both; among those, the oldest batch.
        let heads = [
            head(1, 2, Some(20)),
            head(1, 9, None),
            head(1, 8, None),
            head(1, 7, Some(10)),
        ];
        assert_eq!(
            candidate(Fairness::Tenant, None, &heads),
            Some(key(1, 8, 0))
        );
        // Priority stays strict: a tenant at a lower priority never goes first.
        let heads = [head(2, 1, None), head(1, 7, Some(10))];
        assert_eq!(
            candidate(Fairness::Tenant, None, &heads),
            Some(key(1, 7, 0))
        );
    }

    #[test]
    fn under_tenant_fairness_an_abandoned_batch_keeps_its_place_in_dispatch_order() {
        let heads = [head(1, 2, Some(5)), head(1, 9, None)];
        let earlier = Some(key(1, 5, 0));
        assert_eq!(candidate(Fairness::Tenant, earlier, &heads), earlier);
        let lower = Some(key(2, 1, 0));
        assert_eq!(
            candidate(Fairness::Tenant, lower, &heads),
            Some(key(1, 9, 0))
        );
    }

    #[test]
    fn with_a_single_tenant_tenant_fairness_is_fifo() {
        let heads = [head(1, 4, Some(3))];
        for abandoned in [
            None,
            Some(key(0, 9, 1)),
            Some(key(1, 3, 2)),
            Some(key(1, 5, 0)),
        ] {
            assert_eq!(
                candidate(Fairness::Tenant, abandoned, &heads),
                candidate(Fairness::Fifo, abandoned, &heads)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn the_decision_agrees_with_the_plain_model(
            now in 0i64..100,
            paused: bool,
            last in proptest::option::of(0i64..100),
            interval in 1u64..50,
            lease in proptest::option::of(0i64..200),
            candidate in proptest::option::of(0u32..3),
            retry in proptest::option::of(101i64..300),
        ) {
            let f = ClaimFacts {
                now: at(now),
                paused,
                last_start: last.map(at),
                interval: Duration::from_micros(interval),
                latest_lease: lease.map(at),
                candidate,
                next_retry: retry.map(at),
            };
            proptest::prop_assert_eq!(decide(f.clone()), model(&f));
        }
    }
}
