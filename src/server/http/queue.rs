//! `GET /ingestions` (the newest ingestions) and `GET /queue` (the queue snapshot).

use super::{query, ApiError, ApiState};
use crate::domain::{ErrorBody, QueueView, RecentIngestions};
use axum::{
    extract::{RawQuery, State},
    Json,
};

/// Ingestions listed when no `limit` is given.
const DEFAULT_LIMIT: usize = 20;

#[utoipa::path(
    get, path = "/ingestions", tag = "ingestions",
    summary = "The newest ingestions, newest first",
    params(("limit" = Option<u64>, Query, description = "At most this many (default 20, capped at 100)")),
    responses(
        (status = 200, body = RecentIngestions),
        (status = 400, description = "`limit` is not a number (`invalid_query`)", body = ErrorBody),
        (status = 401, description = "A read token is needed", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(super) async fn recent(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<RecentIngestions>, ApiError> {
    let limit = query::number(raw.as_deref(), "limit")?
        .map_or(DEFAULT_LIMIT, |n| usize::try_from(n).unwrap_or(usize::MAX));
    Ok(Json(state.service.recent(limit).await?))
}

#[utoipa::path(
    get, path = "/queue", tag = "queue",
    summary = "Depth per priority, the batch in flight, the next slot, recent dispatches",
    responses(
        (status = 200, body = QueueView),
        (status = 401, description = "A read token is needed", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(super) async fn queue(State(state): State<ApiState>) -> Result<Json<QueueView>, ApiError> {
    Ok(Json(state.service.queue().await?))
}
