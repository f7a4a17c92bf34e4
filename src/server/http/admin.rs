//! Operator routes: `POST /admin/pause`, `POST /admin/resume` and `PUT /admin/rate`. They are
//! idempotent and answer the resulting state; each change is durable and recorded as an event.

use super::{ApiError, ApiState, Segment};
use crate::domain::ErrorBody;
use axum::{body::Bytes, extract::State, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Whether dispatch is paused now, and whether this request changed it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PauseState {
    pub paused: bool,
    pub changed: bool,
}

/// `PUT /admin/rate`: a humantime duration (`250ms`, `5s`, `1m`; 1ms..=1day), or null for the
/// configured interval.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RateRequest {
    /// Required; `null` restores the configured interval.
    #[schema(examples("2s"), required = true)]
    pub rate_interval: Option<String>,
}

/// The interval in force after the change.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RateState {
    pub rate_interval_ms: u64,
    /// Whether a run-time interval overrides the configured one.
    pub overridden: bool,
}

#[utoipa::path(
    post, path = "/admin/pause", tag = "operations",
    summary = "Pause dispatch (the batch in flight finishes; submissions are still accepted)",
    responses(
        (status = 200, body = PauseState),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(super) async fn pause(State(state): State<ApiState>) -> Result<Json<PauseState>, ApiError> {
    let changed = state.service.pause().await?;
    Ok(Json(PauseState {
        paused: true,
        changed,
    }))
}

#[utoipa::path(
    post, path = "/admin/resume", tag = "operations",
    summary = "Resume dispatch, under the rate limit",
    responses(
        (status = 200, body = PauseState),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(super) async fn resume(State(state): State<ApiState>) -> Result<Json<PauseState>, ApiError> {
    let changed = state.service.resume().await?;
    Ok(Json(PauseState {
        paused: false,
        changed,
    }))
}

/// The batch an operator put back in the queue.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Requeued {
    pub batch_id: String,
    pub requeued: bool,
}

#[utoipa::path(
    post, path = "/admin/batches/{batch_id}/retry", tag = "operations",
    summary = "Put a failed batch back in the queue (its attempts keep counting)",
    params(("batch_id" = String, Path, description = "A batch's `batch_id` from the status")),
    responses(
        (status = 200, body = Requeued),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
        (status = 404, description = "Unknown or malformed batch id", body = ErrorBody),
        (status = 409, description = "The batch has not failed (`batch_not_failed`)", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(super) async fn retry_batch(
    State(state): State<ApiState>,
    Segment(batch_id): Segment,
) -> Result<Json<Requeued>, ApiError> {
    state.service.retry_batch(&batch_id).await?;
    Ok(Json(Requeued {
        batch_id,
        requeued: true,
    }))
}

#[utoipa::path(
    put, path = "/admin/rate", tag = "operations",
    summary = "Change the rate interval at run time (durable), or go back to the configured one",
    request_body(content = RateRequest, content_type = "application/json"),
    responses(
        (status = 200, body = RateState),
        (status = 400, description = "Not JSON (`bad_body`)", body = ErrorBody),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
        (status = 422, description = "Not a duration in 1ms..=1day (`invalid_rate_interval`)", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(super) async fn rate(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<Json<RateState>, ApiError> {
    let body: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadBody(e.to_string()))?;
    let interval = rate_setting(body.get("rate_interval"))?;
    let effective = state.service.set_rate_interval(interval).await?;
    Ok(Json(RateState {
        rate_interval_ms: u64::try_from(effective.as_millis()).unwrap_or(u64::MAX),
        overridden: interval.is_some(),
    }))
}

/// The `rate_interval` an operator sent (to the route or the dashboard's server function): a
/// duration as written (`250ms`, `5s`, `1m`), or null for the configured interval; anything
/// else, or nothing, is refused. The service checks the range.
pub fn rate_setting(value: Option<&Value>) -> Result<Option<std::time::Duration>, ApiError> {
    match value {
        Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => text
            .parse::<humantime::Duration>()
            .map(|d| Some(d.into()))
            .map_err(|e| {
                ApiError::InvalidRate(format!(
                    "rate_interval {text:?}: {e} (examples: 250ms, 5s, 1m)"
                ))
            }),
        _ => Err(ApiError::InvalidRate(
            "send {\"rate_interval\": \"5s\"}, or null for the configured interval".into(),
        )),
    }
}
