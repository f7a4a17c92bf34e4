//! `GET /metrics` (Prometheus text format) and the layer that counts and times every request.

use super::{ApiError, ApiState};
use crate::domain::ErrorBody;
use crate::server::service::Service;
use axum::{
    extract::{MatchedPath, Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};
use std::time::Instant;

#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    summary = "Metrics in the Prometheus text format",
    responses(
        (status = 200, description = "OpenMetrics text", body = String,
         content_type = "application/openmetrics-text"),
        (status = 401, description = "A read token is needed", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(super) async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let text = state.service.metrics_text().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Count and time each request by its route template, so a series never multiplies per id;
/// requests no route matched (static files, 404s) share one label. Templates are written
/// `/status/:ingestion_id`: braces in label values trip simple text-format parsers.
pub async fn track(State(service): State<Service>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().replace('{', ":").replace('}', ""))
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    service.metrics().http_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
