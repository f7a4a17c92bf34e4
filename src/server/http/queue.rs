//! `GET /ingestions` (the newest ingestions) and `GET /queue` (the queue snapshot).

use super::{query, ApiError, ApiState};
use crate::domain::{ErrorBody, QueueView, RecentIngestions};
use crate::server::service::Listing;
use axum::{
    extract::{RawQuery, State},
    Json,
};

/// Ingestions listed when no `limit` is given.
const DEFAULT_LIMIT: usize = 20;

#[utoipa::path(
    get, path = "/ingestions", tag = "ingestions",
    summary = "The newest ingestions, newest first, optionally filtered, page by page",
    params(
        ("limit" = Option<u64>, Query, description = "At most this many (default 20, capped at 100)"),
        ("before" = Option<String>, Query, description = "Only ingestions accepted before this one (the last of the previous page): the next page of older ones"),
        ("priority" = Option<String>, Query, description = "Only this priority: `HIGH`, `MEDIUM` or `LOW`"),
        ("status" = Option<String>, Query, description = "Only ingestions in this status: `yet_to_start`, `triggered`, `completed`, `cancelled` or `failed`"),
    ),
    responses(
        (status = 200, body = RecentIngestions),
        (status = 400, description = "`limit` is not a number, or `before`, `priority` or `status` names nothing to filter by (`invalid_query`)", body = ErrorBody),
        (status = 401, description = "A read token is needed", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(super) async fn recent(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<RecentIngestions>, ApiError> {
    let raw = raw.as_deref();
    let limit = query::number(raw, "limit")?
        .map_or(DEFAULT_LIMIT, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let (before, priority, status) = (
        query::condition(raw, "before")?,
        query::condition(raw, "priority")?,
        query::condition(raw, "status")?,
    );
    let listing = Listing {
        limit,
        before: before.as_deref(),
        priority: priority.as_deref(),
        status: status.as_deref(),
    };
    Ok(Json(state.service.list(listing).await?))
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
