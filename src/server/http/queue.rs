//! `GET /ingestions` (the newest ingestions) and `GET /queue` (the queue snapshot).

use super::{query, ApiError, ApiState};
use crate::domain::{QueueView, RecentIngestions};
use axum::{
    extract::{RawQuery, State},
    Json,
};

/// Ingestions listed when no `limit` is given.
const DEFAULT_LIMIT: usize = 20;

pub(super) async fn recent(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<RecentIngestions>, ApiError> {
    let limit = query::number(raw.as_deref(), "limit")?
        .map_or(DEFAULT_LIMIT, |n| usize::try_from(n).unwrap_or(usize::MAX));
    Ok(Json(state.service.recent(limit).await?))
}

pub(super) async fn queue(State(state): State<ApiState>) -> Result<Json<QueueView>, ApiError> {
    Ok(Json(state.service.queue().await?))
}
