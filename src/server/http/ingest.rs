//! `POST /ingest`.

use super::{ApiError, ApiState};
use crate::domain::IngestResponse;
use axum::{
    body::Bytes,
    extract::{FromRequest, Request, State},
    http::{header, HeaderMap, StatusCode},
    Json,
};

/// Checks run cheapest first, before the body is read: content type (415), declared length
/// (413); then the body is read up to the limit (413 past it) and handed to the service.
pub(super) async fn ingest(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Json<IngestResponse>, ApiError> {
    require_json(request.headers())?;
    let limit = state.max_body_bytes;
    if declared_length(request.headers()).is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let body = Bytes::from_request(request, &())
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::BadBody(rejection.body_text())
            }
        })?;
    let ingestion_id = state.service.ingest_json(&body).await?;
    Ok(Json(IngestResponse { ingestion_id }))
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json") => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
