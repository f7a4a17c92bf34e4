//! `GET /status/{ingestion_id}` and `POST /ingest/{ingestion_id}/cancel`.

use super::{ApiError, ApiState};
use crate::domain::{CancelResponse, IngestionView};
use axum::{
    extract::{Path, State},
    Json,
};

pub(super) async fn status(
    State(state): State<ApiState>,
    Path(ingestion_id): Path<String>,
) -> Result<Json<IngestionView>, ApiError> {
    Ok(Json(state.service.status(&ingestion_id).await?))
}

/// Cancel the batches that have not started; idempotent (a repeat cancels nothing more).
pub(super) async fn cancel(
    State(state): State<ApiState>,
    Path(ingestion_id): Path<String>,
) -> Result<Json<CancelResponse>, ApiError> {
    Ok(Json(state.service.cancel(&ingestion_id).await?))
}
