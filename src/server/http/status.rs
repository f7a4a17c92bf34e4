//! `GET /status/{ingestion_id}` and `POST /ingest/{ingestion_id}/cancel`.

use super::{query, ApiError, ApiState, Segment};
use crate::domain::{BatchAttempts, CancelResponse, ErrorBody, IngestionView, ResultsPage};
use axum::{
    extract::{RawQuery, State},
    Json,
};

#[utoipa::path(
    get, path = "/status/{ingestion_id}", tag = "ingestions",
    summary = "An ingestion's status, batches and predictions",
    params(("ingestion_id" = String, Path, description = "The id `POST /ingest` answered")),
    responses(
        (status = 200, body = IngestionView),
        (status = 401, description = "A read token is needed", body = ErrorBody),
        (status = 404, description = "Unknown or malformed id (`not_found`)", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(super) async fn status(
    State(state): State<ApiState>,
    Segment(ingestion_id): Segment,
) -> Result<Json<IngestionView>, ApiError> {
    Ok(Json(state.service.status(&ingestion_id).await?))
}

#[utoipa::path(
    get, path = "/status/{ingestion_id}/results", tag = "ingestions",
    summary = "Each ID's result or error, in split order, a page at a time",
    params(
        ("ingestion_id" = String, Path, description = "The id `POST /ingest` answered"),
        ("offset" = Option<u64>, Query, description = "IDs to skip (default 0)"),
        ("limit" = Option<u64>, Query, description = "At most this many (default 100, capped at 1000)"),
    ),
    responses(
        (status = 200, body = ResultsPage),
        (status = 400, description = "`offset` or `limit` is not a number", body = ErrorBody),
        (status = 401, description = "A read token is needed", body = ErrorBody),
        (status = 404, description = "Unknown or malformed id", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(super) async fn results(
    State(state): State<ApiState>,
    Segment(ingestion_id): Segment,
    RawQuery(raw): RawQuery,
) -> Result<Json<ResultsPage>, ApiError> {
    let offset = query::number(raw.as_deref(), "offset")?.unwrap_or(0);
    let limit = query::number(raw.as_deref(), "limit")?.unwrap_or(100);
    Ok(Json(
        state.service.results(&ingestion_id, offset, limit).await?,
    ))
}

#[utoipa::path(
    get, path = "/batches/{batch_id}/attempts", tag = "ingestions",
    summary = "A batch's attempts: which replica ran each, when, and how it ended",
    params(("batch_id" = String, Path, description = "A batch's `batch_id` from the status")),
    responses(
        (status = 200, body = BatchAttempts),
        (status = 401, description = "A read token is needed", body = ErrorBody),
        (status = 404, description = "Unknown or malformed batch id", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(super) async fn attempts(
    State(state): State<ApiState>,
    Segment(batch_id): Segment,
) -> Result<Json<BatchAttempts>, ApiError> {
    Ok(Json(state.service.attempts(&batch_id).await?))
}

/// Cancel the batches that have not started; idempotent (a repeat cancels nothing more).
#[utoipa::path(
    post, path = "/ingest/{ingestion_id}/cancel", tag = "ingestions",
    summary = "Cancel the batches that have not started",
    description = "Waiting batches become `cancelled` and never run; a started batch finishes. \
        Repeating it cancels nothing more.",
    params(("ingestion_id" = String, Path, description = "The id `POST /ingest` answered")),
    responses(
        (status = 200, body = CancelResponse),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
        (status = 404, description = "Unknown or malformed id", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(super) async fn cancel(
    State(state): State<ApiState>,
    Segment(ingestion_id): Segment,
) -> Result<Json<CancelResponse>, ApiError> {
    Ok(Json(state.service.cancel(&ingestion_id).await?))
}
