//! A bound on how long a request may take to be answered (reading its body included):
//! past it, `408 request_timeout` in the one error shape. Event streams answer at once and then
//! stream, so the bound never cuts them.

use super::ApiError;
use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use std::time::Duration;

pub async fn request_timeout(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout { limit }.into_response(),
    }
}
