//! `GET /healthz` (the process answers) and `GET /readyz` (it can do its work: the store
//! answers with the expected schema and the scheduler runs). For load balancers and
//! orchestrators; both are cheap and touch no queue data.

use super::ApiState;
use axum::{extract::State, http::StatusCode, Json};
use serde_json::{json, Value};

pub(super) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub(super) async fn readyz(State(state): State<ApiState>) -> (StatusCode, Json<Value>) {
    let readiness = state.service.readiness().await;
    let check = |failure: &Option<String>| match failure {
        None => json!("ok"),
        Some(message) => json!(message),
    };
    let (status, word) = match readiness.is_ready() {
        true => (StatusCode::OK, "ready"),
        false => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
    };
    (
        status,
        Json(json!({
            "status": word,
            "checks": {
                "store": check(&readiness.store),
                "scheduler": check(&readiness.scheduler),
            }
        })),
    )
}
