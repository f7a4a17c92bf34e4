//! `POST /ingest`, with an optional `Idempotency-Key` header.

use super::{buffers, ApiError, ApiState};
use crate::domain::{ErrorBody, IngestRequest, IngestResponse};
use crate::server::{auth::Grant, service::Accepted};
use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{header, HeaderMap},
    response::{IntoResponse, Response},
    Json,
};

/// Checks run cheapest first, before the body is read: content type (415), declared length
/// (413); then the body waits for room among the bodies held at once (`buffers.rs`), is read
/// up to the limit (413 past it; 408 if it arrives too slowly) and handed to the service.
#[utoipa::path(
    post, path = "/ingest", tag = "ingestions",
    summary = "Submit IDs with a priority",
    description = "Splits the IDs into batches in order and stores the ingestion and all its \
        batches durably before answering. With an `Idempotency-Key`, a retry of the same request \
        within 24 h answers the first ingestion's id (200, `Idempotent-Replayed: true`) and \
        stores nothing.",
    request_body(content = IngestRequest, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header,
            description = "1 to 255 visible ASCII characters")),
    responses(
        (status = 200, description = "Accepted and durably stored", body = IngestResponse,
         headers(("Idempotent-Replayed" = String, description = "`true` on a replay"))),
        (status = 400, description = "Not JSON (`malformed_json`), or a bad `Idempotency-Key`", body = ErrorBody),
        (status = 401, description = "A token is needed (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "A read-only token (`forbidden`)", body = ErrorBody),
        (status = 408, description = "Not received in time (`request_timeout`)", body = ErrorBody),
        (status = 413, description = "Too many IDs or too large a body", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "JSON that breaks a rule, or a reused `Idempotency-Key`", body = ErrorBody),
        (status = 429, description = "The queue is full (`queue_full`); see `Retry-After`", body = ErrorBody,
         headers(("Retry-After" = u64, description = "Seconds until the request would fit"))),
    ),
    security((), ("bearer" = [])),
)]
pub(super) async fn ingest(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Response, ApiError> {
    require_json(request.headers())?;
    let grant = request
        .extensions()
        .get::<Grant>()
        .cloned()
        .unwrap_or_default();
    let key = match request.headers().get("idempotency-key") {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::InvalidIdempotencyKey)?
                .to_owned(),
        ),
        None => None,
    };
    let limit = state.max_body_bytes;
    let declared = declared_length(request.headers());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    // Held until the answer: the body, then its IDs, are in memory until then.
    let expected = declared.unwrap_or(limit as u64);
    let _room = state.buffers.reserve(expected).await;
    let within = buffers::deadline(expected);
    let body = tokio::time::timeout(within, read_body(request.into_body(), limit, declared))
        .await
        .map_err(|_| ApiError::BodyTooSlow { limit: within })??;
    let accepted = state
        .service
        .ingest_json(body, key.as_deref(), grant.tenant)
        .await?;
    let body = Json(IngestResponse {
        ingestion_id: accepted.ingestion_id(),
    });
    Ok(match accepted {
        Accepted::Created(_) => body.into_response(),
        // Same answer as the first time, marked so a client can tell.
        Accepted::Replayed(_) => ([("idempotent-replayed", "true")], body).into_response(),
    })
}

/// The body, read into one buffer of its declared size (collecting chunks and then copying
/// them into one piece held every body twice for a moment), refused past `limit`.
async fn read_body(body: Body, limit: usize, declared: Option<u64>) -> Result<Bytes, ApiError> {
    use futures::StreamExt;
    let mut chunks = body.into_data_stream();
    let mut buf = Vec::with_capacity(declared.map_or(0, |len| len as usize).min(limit));
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::BadBody(format!("Failed to buffer the request body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
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
