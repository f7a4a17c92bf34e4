//! The dispatch loop: one batch at a time, in dispatch order, starts at least `interval` apart.
//!
//! The rule lives in one place, `domain::decide`, applied by the store's atomic `claim_next`
//! (slot check, in-flight check, ordered pick, slot advance). This loop only decides *when to
//! ask*, from what the store answered:
//!
//! - the rate slot is not due: sleep for the wait the store measured on its own clock (a
//!   replica whose clock is skewed still asks once per slot), deaf to anything but a rate
//!   change, since nothing can start sooner;
//! - another batch is in flight: ask again when its lease would run out;
//! - only retries back off: ask when the first may go, or at once when new work, an event or
//!   a resume arrives (a retry wait is no rate slot);
//! - idle or paused: ask when woken.
//!
//! It never "catches up": each start is a fresh claim gated by the durable last start, so a
//! stall is followed by one start, then the normal spacing. A claimed batch is processed while
//! its lease is renewed beside it; if the lease is lost (or cannot be renewed before it runs
//! out) the work is dropped and its outcome discarded, and a panicking processor fails its
//! attempt like an error. It knows no HTTP and no SQL: it talks to a
//! [`Store`](crate::server::store::Store) and a [`Processor`].

use crate::domain::Fairness;
use crate::server::{
    clock::Clock,
    metrics::Metrics,
    processor::{ProcessError, Processor, RetryPolicy},
    shutdown::Shutdown,
    store::{Claim, ClaimedBatch, Completion, DynStore},
};
use futures::FutureExt;
use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};
use tokio::{sync::Notify, time::Instant};

/// How long to wait before asking the store again after it failed.
const STORE_RETRY: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
pub struct SchedulerConfig {
    pub interval: Duration,
    pub lease: Duration,
    /// On shutdown, how long the batch in hand may still take.
    pub shutdown_grace: Duration,
    /// How failed attempts are tried again.
    pub retry: RetryPolicy,
    /// How the next batch is chosen (every replica of a cluster must use the same).
    pub fairness: Fairness,
}

pub struct Scheduler {
    store: DynStore,
    processor: Arc<dyn Processor>,
    clock: Clock,
    wake: Arc<Notify>,
    pace: Arc<Notify>,
    config: SchedulerConfig,
    metrics: Metrics,
    /// This process's name among replicas, recorded with each attempt it starts.
    replica: String,
}

/// How the scheduler is told to look again.
#[derive(Clone, Default)]
pub struct Wake {
    /// New work was stored (or dispatch resumed): heard while idle.
    pub work: Arc<Notify>,
    /// The pace changed (rate interval): heard while waiting for a slot too.
    pub pace: Arc<Notify>,
}

impl Scheduler {
    pub fn new(
        store: DynStore,
        processor: Arc<dyn Processor>,
        clock: Clock,
        wake: Wake,
        config: SchedulerConfig,
        metrics: Metrics,
    ) -> Self {
        Self {
            store,
            processor,
            clock,
            wake: wake.work,
            pace: wake.pace,
            config,
            metrics,
            replica: "local".into(),
        }
    }

    /// Name the attempts this scheduler starts after its replica (default `local`).
    pub fn with_replica(mut self, name: &str) -> Self {
        self.replica = name.to_owned();
        self
    }

    /// Dispatch until `shutdown` fires; then let the batch in hand finish within the grace.
    pub async fn run(self, mut shutdown: Shutdown) {
        match self.store.recover_abandoned().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                batches = n,
                "re-dispatching batches left in flight by a previous run"
            ),
            Err(e) => tracing::error!(error = %e, "could not recover abandoned batches"),
        }
        // The slot the loop last slept until (on the store's clock, and here), for the
        // lateness of the start that follows.
        let mut awaited: Option<(crate::domain::Timestamp, Instant)> = None;
        // The last hand-off to the processor (see `Handoff`), and the recent claims' round
        // trips it estimates the next one's from.
        let mut last_handoff: Option<Handoff> = None;
        let mut claim_times = ClaimTimes::default();
        // Committed events, from this process or (on a shared store) any other: new work
        // submitted elsewhere, or dispatch resumed elsewhere, must wake an idle loop too.
        let mut events = self.store.event_feed();
        while !shutdown.is_triggered() {
            // Before the claim: an event committed while it runs wakes the wait below at once.
            events.mark_unchanged();
            let asked = Instant::now();
            let claim = self
                .store
                .claim_next(
                    self.clock.now(),
                    self.config.interval,
                    self.config.lease,
                    &self.replica,
                    self.config.fairness,
                )
                .await;
            self.metrics.claim_took(asked.elapsed());
            // Only the wait just before this claim counts.
            let slot_waited_for = awaited.take();
            let wait = match claim {
                Ok(Claim::Claimed(batch)) => {
                    // Without the wait below: the claim's own round trip.
                    let claim_took = asked.elapsed();
                    // The downstream never sees two batches closer than the interval: a
                    // hand-off waits for the previous one plus the interval (only needed when
                    // the previous hand-off came later than a claim usually takes).
                    if let Some(not_before) =
                        last_handoff.map(|last| last.next_not_before(batch.interval))
                    {
                        if not_before > Instant::now() {
                            self.clock.sleep_until(not_before).await;
                        }
                    }
                    let handed = Instant::now();
                    last_handoff = Some(Handoff {
                        at: handed,
                        interval: batch.interval,
                        claim_takes: claim_times.record(claim_took),
                    });
                    let lateness = slot_waited_for.map(|(slot, _)| batch.started_at.since(slot));
                    self.metrics.batch_dispatched(lateness);
                    // Signed microseconds after the slot, of the recorded start and of the
                    // hand-off to the processor (after the claim committed);
                    // benches/precision.py reads them.
                    let late_us = slot_waited_for
                        .map(|(slot, _)| batch.started_at.as_micros() - slot.as_micros());
                    let handoff_late_us = slot_waited_for.map(|(_, at)| micros_after(handed, at));
                    // And every start's recorded time and hand-off (this process's clock), for
                    // the gaps between consecutive starts, whether they waited or not.
                    let start_us = batch.started_at.as_micros();
                    let handed_us = self.clock.now().as_micros();
                    tracing::info!(
                        batch = %batch.batch_id, ingestion = %batch.ingestion_id,
                        priority = batch.priority.as_str(), attempt = batch.attempt,
                        late_us, handoff_late_us, start_us, handed_us, "batch triggered"
                    );
                    self.dispatch(batch, asked, &mut shutdown).await;
                    continue;
                }
                Ok(Claim::SlotNotDue {
                    slot,
                    wait,
                    interval,
                }) => {
                    // The store measured the wait from its now, which is (at the latest)
                    // when it was asked.
                    let at = (asked + wait).max(
                        last_handoff.map_or(asked, |last| last.next_claim_not_before(interval)),
                    );
                    awaited = Some((slot, at));
                    Wait::Until(at)
                }
                Ok(Claim::InFlight { wait, .. }) => Wait::Until(asked + wait),
                Ok(Claim::RetryWait { wait, .. }) => Wait::Listen(Some(asked + wait)),
                // Resuming wakes the scheduler like new work does.
                Ok(Claim::Idle | Claim::Paused) => Wait::Listen(None),
                Err(e) => {
                    tracing::error!(error = %e, "claiming the next batch failed; retrying");
                    Wait::Until(Instant::now() + STORE_RETRY)
                }
            };
            let (until, listen) = match wait {
                Wait::Until(at) => (Some(at), false),
                Wait::Listen(at) => (at, true),
            };
            let woken = self.wake.notified();
            let repaced = self.pace.notified();
            tokio::select! {
                _ = shutdown.triggered() => break,
                // A new rate applies to the very next slot, as the store computes it.
                _ = repaced => {}
                _ = woken, if listen => {}
                Ok(()) = events.changed(), if listen => {}
                _ = self.clock.sleep_until(until.unwrap_or_else(Instant::now)), if until.is_some() => {}
            }
        }
        tracing::info!("scheduler stopped");
    }

    /// Process one claimed batch, renewing its lease, and record the outcome.
    ///
    /// `asked` is when its claim was asked: the lease began no earlier.
    async fn dispatch(&self, batch: ClaimedBatch, asked: Instant, shutdown: &mut Shutdown) {
        let work = self.process_with_lease(&batch, asked);
        tokio::pin!(work);
        let outcome = tokio::select! {
            outcome = &mut work => outcome,
            _ = shutdown.triggered() => {
                tracing::info!(grace = ?self.config.shutdown_grace, "shutting down: letting the batch in hand finish");
                match tokio::time::timeout(self.config.shutdown_grace, &mut work).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        tracing::warn!(batch = %batch.batch_id, "batch did not finish within the grace; it will be dispatched again on the next start");
                        return;
                    }
                }
            }
        };
        let Some(results) = outcome else {
            // The work was dropped when the lease was lost: whatever it did is not recorded
            // (the next claim runs the batch again under a newer attempt).
            self.metrics.completion_fenced();
            tracing::warn!(batch = %batch.batch_id, attempt = batch.attempt, "lease lost: the attempt was cancelled and its outcome discarded");
            return;
        };
        // A failed attempt: try again later (a new dispatch under the rate limit), or give up.
        let (results, failure) = match results {
            Ok(results) => (results, None),
            Err(e) => {
                let jitter = (uuid::Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0;
                let retry_at = self
                    .config
                    .retry
                    .backoff(batch.attempt, &e, jitter)
                    .map(|wait| self.clock.now().plus(wait));
                (Vec::new(), Some((e.message, e.status, retry_at)))
            }
        };
        loop {
            let now = self.clock.now();
            let recorded = match &failure {
                None => {
                    self.store
                        .complete(batch.batch_id, batch.attempt, now, results.clone())
                        .await
                }
                Some((error, status, retry_at)) => {
                    self.store
                        .fail(
                            batch.batch_id,
                            batch.attempt,
                            now,
                            error.clone(),
                            *status,
                            *retry_at,
                        )
                        .await
                }
            };
            match recorded {
                Ok(Completion::Completed) => {
                    match &failure {
                        None => {
                            self.metrics.batch_completed();
                            tracing::info!(batch = %batch.batch_id, "batch completed");
                        }
                        Some((error, _, Some(retry_at))) => {
                            self.metrics.batch_failed(true);
                            tracing::warn!(batch = %batch.batch_id, attempt = batch.attempt, %error, retry_at = %retry_at.to_rfc3339(), "attempt failed; will retry");
                        }
                        Some((error, _, None)) => {
                            self.metrics.batch_failed(false);
                            tracing::error!(batch = %batch.batch_id, attempt = batch.attempt, %error, "batch failed");
                        }
                    }
                    return;
                }
                Ok(Completion::Fenced) => {
                    self.metrics.completion_fenced();
                    tracing::warn!(batch = %batch.batch_id, attempt = batch.attempt, "completion rejected: the batch was taken over");
                    return;
                }
                Err(e) if !shutdown.is_triggered() => {
                    tracing::error!(error = %e, batch = %batch.batch_id, "recording completion failed; retrying");
                    tokio::time::sleep(STORE_RETRY).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, batch = %batch.batch_id, "recording completion failed during shutdown");
                    return;
                }
            }
        }
    }

    /// Run the processor while its lease is renewed beside it (both polled together, so a
    /// slow renewal never starves the work, nor the work the renewal). `None` when the lease
    /// was lost, or could not be renewed before it ran out: the work is then dropped (its
    /// downstream call cancelled). A panic in the processor fails the attempt like an error.
    async fn process_with_lease(
        &self,
        batch: &ClaimedBatch,
        asked: Instant,
    ) -> Option<Result<Vec<crate::domain::IdResult>, ProcessError>> {
        let work = AssertUnwindSafe(self.processor.process(batch)).catch_unwind();
        tokio::select! {
            outcome = work => Some(outcome.unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                tracing::error!(batch = %batch.batch_id, panic = %what, "the processor panicked");
                Err(ProcessError::retryable(format!("the processor panicked: {what}")))
            })),
            () = self.keep_lease(batch, asked) => None,
        }
    }

    /// Renew the lease at a third of its length; return once it is lost, or once it runs out
    /// before a renewal got through (the next claim may then take the batch over).
    async fn keep_lease(&self, batch: &ClaimedBatch, asked: Instant) {
        let lease = self.config.lease;
        // When the lease runs out at the latest, on this process's clock: it began at the
        // store's now, no earlier than the claim was asked.
        let mut runs_out = asked + lease;
        loop {
            tokio::time::sleep_until((runs_out - lease) + lease / 3).await;
            let asked = Instant::now();
            let renewal =
                self.store
                    .renew_lease(batch.batch_id, batch.attempt, self.clock.now(), lease);
            match tokio::time::timeout_at(runs_out, renewal).await {
                Ok(Ok(true)) => runs_out = asked + lease,
                Ok(Ok(false)) => {
                    tracing::warn!(batch = %batch.batch_id, "lease lost: another dispatcher may have taken the batch over");
                    return;
                }
                Ok(Err(e)) if Instant::now() < runs_out => {
                    tracing::error!(error = %e, batch = %batch.batch_id, "renewing the lease failed; trying again");
                    // Try again soon, within what is left of the lease.
                    let left = runs_out.saturating_duration_since(Instant::now());
                    tokio::time::sleep(left / 3).await;
                }
                Ok(Err(_)) | Err(_) => {
                    tracing::warn!(batch = %batch.batch_id, "the lease ran out before it could be renewed");
                    return;
                }
            }
        }
    }
}

/// A batch handed to the processor.
///
/// A start is recorded when its claim commits, and the batch reaches the processor once the
/// commit answers: a slow commit hands it over late. The next hand-off must still come an
/// interval after this one ([`next_not_before`](Self::next_not_before)), and to keep that
/// wait from being passed on to every later batch, the next claim itself is not asked before
/// this hand-off plus the interval, less what a claim takes to answer
/// ([`next_claim_not_before`](Self::next_claim_not_before), with a high estimate from
/// [`ClaimTimes`]). So one slow commit delays one start, and the pace is back on the next;
/// commits that only jitter within their usual range delay nothing, and a hand-off lags its
/// recorded start by at most about that usual range.
#[derive(Clone, Copy)]
struct Handoff {
    at: Instant,
    interval: Duration,
    /// What a claim usually takes to answer, at the most (see `ClaimTimes`).
    claim_takes: Duration,
}

impl Handoff {
    /// `interval` is the one in force now: a rate shortened since (here or on another
    /// replica) applies at once.
    fn next_not_before(self, interval: Duration) -> Instant {
        self.at + self.interval.min(interval)
    }

    fn next_claim_not_before(self, interval: Duration) -> Instant {
        let interval = self.interval.min(interval);
        self.at + (interval - self.claim_takes.min(interval))
    }
}

/// The round trips of the last claims that started a batch, for a high estimate of the next
/// one's: the second longest of the last 16, which one slow commit does not move.
#[derive(Default)]
struct ClaimTimes(std::collections::VecDeque<Duration>);

impl ClaimTimes {
    const KEEP: usize = 16;

    /// Note one claim's round trip; the estimate with it.
    fn record(&mut self, took: Duration) -> Duration {
        if self.0.len() == Self::KEEP {
            self.0.pop_front();
        }
        self.0.push_back(took);
        let (mut first, mut second) = (Duration::ZERO, Duration::ZERO);
        for &d in &self.0 {
            if d > first {
                (first, second) = (d, first);
            } else if d > second {
                second = d;
            }
        }
        if self.0.len() == 1 {
            first
        } else {
            second
        }
    }
}

/// How the loop waits for its next claim.
enum Wait {
    /// Until then; only a rate change or shutdown wakes it sooner.
    Until(Instant),
    /// Until new work, an event or a resume (or then, if given).
    Listen(Option<Instant>),
}

/// Signed microseconds from `at` to `instant`.
fn micros_after(instant: Instant, at: Instant) -> i64 {
    match instant.checked_duration_since(at) {
        Some(d) => d.as_micros() as i64,
        None => -(at.duration_since(instant).as_micros() as i64),
    }
}
