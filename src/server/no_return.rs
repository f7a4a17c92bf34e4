//! Cancel-safe writes: once a request has handed a write to the store, it runs to its end and
//! is answered.
//!
//! The request timeout (`http::request_timeout`) drops a request's future when the time is up
//! and answers 408. Dropped after its write was queued, the write would still commit, and the
//! client, told "timed out", would retry and store it twice. So the service marks the point
//! of no return just before it hands a write over ([`pass`]); the timeout then waits for the
//! real answer instead. A 408 therefore means nothing was stored.
//!
//! The mark is a task-local set up by whoever may drop the request ([`PointOfNoReturn::scope`]);
//! outside such a scope (the scheduler, tests, the CLI) [`pass`] does nothing. The service
//! knows no HTTP: it only says where the point is.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

tokio::task_local! {
    static CURRENT: PointOfNoReturn;
}

/// Whether the future run in [`scope`](Self::scope) has passed its point of no return.
#[derive(Clone, Debug, Default)]
pub struct PointOfNoReturn(Arc<AtomicBool>);

impl PointOfNoReturn {
    /// Run `f` so that a [`pass`] inside it marks this point.
    pub fn scope<F: Future>(&self, f: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self.clone(), f)
    }

    /// The future passed the point: it must not be dropped before it finishes.
    pub fn passed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Mark the point of no return of the current request, if it runs in a scope.
pub fn pass() {
    let _ = CURRENT.try_with(|point| point.0.store(true, Ordering::Release));
}
