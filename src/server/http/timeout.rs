//! A bound on how long a request may take to be answered (reading and parsing its body
//! included): past it, `408 request_timeout` in the one error shape, and nothing was stored.
//! A request that has handed a write to the store (`no_return::pass`) is no longer cut: it
//! waits for the store's answer, so a 408 never hides a stored write. Event streams answer at
//! once and then stream, so the bound never cuts them.

use super::ApiError;
use crate::server::no_return::PointOfNoReturn;
use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use std::time::Duration;

pub async fn request_timeout(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let point = PointOfNoReturn::default();
    let run = point.scope(next.run(request));
    tokio::pin!(run);
    match tokio::time::timeout(limit, &mut run).await {
        Ok(response) => response,
        // Dropping it now could still let its write commit: wait for the answer.
        Err(_) if point.passed() => run.await,
        Err(_) => ApiError::Timeout { limit }.into_response(),
    }
}
