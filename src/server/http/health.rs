//! `GET /healthz` (the process answers) and `GET /readyz` (it can do its work: the store
//! answers with the expected schema and the scheduler runs). For load balancers and
//! orchestrators; both are cheap, touch no queue data and need no token.

use super::ApiState;
use axum::{extract::State, http::StatusCode, Json};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    #[schema(examples("ok"))]
    pub status: String,
}

/// `ready` or `not_ready`, with each check's `ok` or its failure.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Readiness {
    #[schema(examples("ready"))]
    pub status: String,
    pub checks: ReadinessChecks,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReadinessChecks {
    #[schema(examples("ok"))]
    pub store: String,
    #[schema(examples("ok"))]
    pub scheduler: String,
}

#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    summary = "Liveness: the process answers",
    responses((status = 200, body = Health)),
)]
pub(super) async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    summary = "Readiness: the store answers with the expected schema and the scheduler runs",
    responses(
        (status = 200, body = Readiness),
        (status = 503, description = "A check failed (`not_ready`)", body = Readiness),
    ),
)]
pub(super) async fn readyz(State(state): State<ApiState>) -> (StatusCode, Json<Readiness>) {
    let readiness = state.service.readiness().await;
    let check = |failure: &Option<String>| failure.clone().unwrap_or_else(|| "ok".into());
    let (status, word) = match readiness.is_ready() {
        true => (StatusCode::OK, "ready"),
        false => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
    };
    (
        status,
        Json(Readiness {
            status: word.into(),
            checks: ReadinessChecks {
                store: check(&readiness.store),
                scheduler: check(&readiness.scheduler),
            },
        }),
    )
}
