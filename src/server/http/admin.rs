//! Operator routes: `POST /admin/pause`, `POST /admin/resume` and `PUT /admin/rate`. They are
//! idempotent and answer the resulting state; each change is durable and recorded as an event.

use super::{ApiError, ApiState};
use axum::{body::Bytes, extract::State, Json};
use serde_json::{json, Value};

pub(super) async fn pause(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let changed = state.service.pause().await?;
    Ok(Json(json!({"paused": true, "changed": changed})))
}

pub(super) async fn resume(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let changed = state.service.resume().await?;
    Ok(Json(json!({"paused": false, "changed": changed})))
}

/// `{"rate_interval": "2s"}` sets the interval (humantime: `250ms`, `5s`, `1m`);
/// `{"rate_interval": null}` returns to the configured one.
pub(super) async fn rate(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadBody(e.to_string()))?;
    let interval = match body.get("rate_interval") {
        Some(Value::Null) => None,
        Some(Value::String(s)) => Some(*s.parse::<humantime::Duration>().map_err(|e| {
            ApiError::InvalidRate(format!(
                "rate_interval {s:?}: {e} (examples: 250ms, 5s, 1m)"
            ))
        })?),
        _ => {
            return Err(ApiError::InvalidRate(
                "send {\"rate_interval\": \"5s\"}, or null for the configured interval".into(),
            ))
        }
    };
    let effective = state.service.set_rate_interval(interval).await?;
    Ok(Json(json!({
        "rate_interval_ms": u64::try_from(effective.as_millis()).unwrap_or(u64::MAX),
        "overridden": interval.is_some(),
    })))
}
