//! Housekeeping on a timer: every [`PERIOD`], the event log is cut to its retention and
//! expired idempotency keys are deleted, whatever else happens (before, the log was trimmed
//! only when a batch completed, so a downstream that never succeeded grew it without bound).
//! Every replica runs it; the deletes are idempotent.

use crate::server::clock::Clock;
use crate::server::shutdown::Shutdown;
use crate::server::store::{Housekept, Retention, Store};
use std::sync::Weak;
use std::time::Duration;

/// How often. Between two rounds the log grows past its retention by at most what is written
/// in one period; each round deletes about that much.
pub const PERIOD: Duration = Duration::from_secs(10);

/// Keep `store` within `keep` until shutdown or until the store is gone (housekeeping does
/// not keep it open): a first round at once, then every `period` ([`PERIOD`] in the server).
pub async fn run(
    store: Weak<dyn Store>,
    clock: Clock,
    keep: Retention,
    period: Duration,
    mut shutdown: Shutdown,
) {
    loop {
        let Some(store) = store.upgrade() else { break };
        let done = store.housekeep(clock.now(), keep).await;
        drop(store);
        match done {
            Ok(done) if done == Housekept::default() => {}
            Ok(done) => tracing::debug!(
                events = done.events,
                keys = done.keys,
                turns = done.turns,
                "housekeeping"
            ),
            Err(e) => tracing::warn!(error = %e, "housekeeping failed; trying again next period"),
        }
        tokio::select! {
            _ = shutdown.triggered() => break,
            _ = tokio::time::sleep(period) => {}
        }
    }
}
