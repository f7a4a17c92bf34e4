//! The dispatch loop: one batch at a time, in dispatch order, starts at least `interval` apart.
//!
//! The rules live in one place, the store's atomic `claim_next` (slot check, in-flight check,
//! ordered pick, slot advance). This loop only decides *when to ask*: at once when woken by new
//! work, at the slot the store names, or when a foreign lease may have run out. It never
//! "catches up": each start is a fresh claim gated by the durable last start, so a stall is
//! followed by one start, then the normal spacing (no `MissedTickBehavior::Burst`).
//!
//! It knows no HTTP and no SQL: it talks to a [`Store`](crate::server::store::Store) and a
//! [`Processor`].

use crate::server::{
    clock::Clock,
    metrics::Metrics,
    processor::{ProcessError, Processor, RetryPolicy},
    shutdown::Shutdown,
    store::{Claim, ClaimedBatch, Completion, DynStore},
};
use std::{sync::Arc, time::Duration};
use tokio::sync::Notify;

/// How long to wait before asking the store again after it failed.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// The rate intervals sluice accepts, at start-up and at run time.
pub const MIN_RATE_INTERVAL: Duration = Duration::from_millis(1);
pub const MAX_RATE_INTERVAL: Duration = Duration::from_secs(86_400);

#[derive(Clone, Copy, Debug)]
pub struct SchedulerConfig {
    pub interval: Duration,
    pub lease: Duration,
    /// On shutdown, how long the batch in hand may still take.
    pub shutdown_grace: Duration,
    /// How failed attempts are tried again.
    pub retry: RetryPolicy,
}

pub struct Scheduler {
    store: DynStore,
    processor: Arc<dyn Processor>,
    clock: Clock,
    wake: Arc<Notify>,
    pace: Arc<Notify>,
    config: SchedulerConfig,
    metrics: Metrics,
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
        }
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
        // The slot the loop last slept until, for the lateness of the start that follows.
        let mut awaited_slot = None;
        // The last hand-off to the processor: its recorded start, and when it was handed over.
        let mut last_handoff: Option<(crate::domain::Timestamp, tokio::time::Instant)> = None;
        // Committed events, from this process or (on a shared store) any other: new work
        // submitted elsewhere, or dispatch resumed elsewhere, must wake an idle loop too.
        let mut events = self.store.event_feed();
        while !shutdown.is_triggered() {
            // Before the claim: an event committed while it runs wakes the wait below at once.
            events.mark_unchanged();
            let asked = std::time::Instant::now();
            let claim = self
                .store
                .claim_next(self.clock.now(), self.config.interval, self.config.lease)
                .await;
            self.metrics.claim_took(asked.elapsed());
            // Only the wait just before this claim counts.
            let slot_waited_for = awaited_slot.take();
            let wait_until = match claim {
                Ok(Claim::Claimed(batch)) => {
                    // The downstream sees batches at least as far apart as their recorded
                    // starts: a hand-off delayed by a slow commit never lets the next one come
                    // closer than the rate allows.
                    if let Some((started, handed)) = last_handoff {
                        let not_before = handed + batch.started_at.since(started);
                        if not_before > tokio::time::Instant::now() {
                            self.clock.sleep_until(not_before).await;
                        }
                    }
                    last_handoff = Some((batch.started_at, tokio::time::Instant::now()));
                    let lateness = slot_waited_for.map(|slot| batch.started_at.since(slot));
                    self.metrics.batch_dispatched(lateness);
                    // Signed microseconds after the slot, of the recorded start and of the hand-off
                    // to the processor (after the claim committed); benches/precision.py reads them.
                    let late_us =
                        slot_waited_for.map(|slot| batch.started_at.as_micros() - slot.as_micros());
                    let handoff_late_us =
                        slot_waited_for.map(|slot| self.clock.now().as_micros() - slot.as_micros());
                    tracing::info!(
                        batch = %batch.batch_id, ingestion = %batch.ingestion_id,
                        priority = batch.priority.as_str(), attempt = batch.attempt,
                        late_us, handoff_late_us, "batch triggered"
                    );
                    self.dispatch(batch, &mut shutdown).await;
                    continue;
                }
                Ok(Claim::NotBefore(slot)) => {
                    awaited_slot = Some(slot);
                    Some(self.clock.instant_at(slot))
                }
                Ok(Claim::InFlight(lease_until)) => Some(self.clock.instant_at(lease_until)),
                // Resuming wakes the scheduler like new work does.
                Ok(Claim::Idle | Claim::Paused) => None,
                Err(e) => {
                    tracing::error!(error = %e, "claiming the next batch failed; retrying");
                    Some(tokio::time::Instant::now() + STORE_RETRY)
                }
            };
            let woken = self.wake.notified();
            let repaced = self.pace.notified();
            tokio::select! {
                _ = shutdown.triggered() => break,
                _ = repaced => {}
                _ = woken, if wait_until.is_none() => {}
                Ok(()) = events.changed(), if wait_until.is_none() => {}
                _ = self.clock.sleep_until(wait_until.unwrap_or_else(tokio::time::Instant::now)), if wait_until.is_some() => {}
            }
        }
        tracing::info!("scheduler stopped");
    }

    /// Process one claimed batch, renewing its lease, and record the outcome.
    async fn dispatch(&self, batch: ClaimedBatch, shutdown: &mut Shutdown) {
        let work = self.process_with_lease(&batch);
        tokio::pin!(work);
        let results = tokio::select! {
            results = &mut work => results,
            _ = shutdown.triggered() => {
                tracing::info!(grace = ?self.config.shutdown_grace, "shutting down: letting the batch in hand finish");
                match tokio::time::timeout(self.config.shutdown_grace, &mut work).await {
                    Ok(results) => results,
                    Err(_) => {
                        tracing::warn!(batch = %batch.batch_id, "batch did not finish within the grace; it will be dispatched again on the next start");
                        return;
                    }
                }
            }
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
                (Vec::new(), Some((e.message, retry_at)))
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
                Some((error, retry_at)) => {
                    self.store
                        .fail(batch.batch_id, batch.attempt, now, error.clone(), *retry_at)
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
                        Some((error, Some(retry_at))) => {
                            self.metrics.batch_failed(true);
                            tracing::warn!(batch = %batch.batch_id, attempt = batch.attempt, %error, retry_at = %retry_at.to_rfc3339(), "attempt failed; will retry");
                        }
                        Some((error, None)) => {
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

    /// Run the processor while renewing the lease at a third of its length.
    async fn process_with_lease(
        &self,
        batch: &ClaimedBatch,
    ) -> Result<Vec<crate::domain::IdResult>, ProcessError> {
        let every = self.config.lease / 3;
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let work = self.processor.process(batch);
        tokio::pin!(work);
        loop {
            tokio::select! {
                results = &mut work => return results,
                _ = renew.tick() => {
                    let renewed = self
                        .store
                        .renew_lease(batch.batch_id, batch.attempt, self.clock.now(), self.config.lease)
                        .await;
                    match renewed {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(batch = %batch.batch_id, "lease lost: another dispatcher took the batch over"),
                        Err(e) => tracing::error!(error = %e, batch = %batch.batch_id, "renewing the lease failed"),
                    }
                }
            }
        }
    }
}
