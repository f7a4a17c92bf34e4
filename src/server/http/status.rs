//! `GET /status/{ingestion_id}`.

use super::{ApiError, ApiState};
use crate::domain::IngestionView;
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
