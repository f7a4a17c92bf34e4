//! Operator routes: `POST /admin/pause` and `POST /admin/resume`. Both are idempotent and
//! answer the resulting state; the change is durable and recorded as an event.

use super::{ApiError, ApiState};
use axum::{extract::State, Json};
use serde_json::{json, Value};

pub(super) async fn pause(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let changed = state.service.pause().await?;
    Ok(Json(json!({"paused": true, "changed": changed})))
}

pub(super) async fn resume(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let changed = state.service.resume().await?;
    Ok(Json(json!({"paused": false, "changed": changed})))
}
