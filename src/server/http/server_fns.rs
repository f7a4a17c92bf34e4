//! Status codes of server-function calls.
//!
//! The server-function machinery answers every error it raises itself with 500, including
//! arguments that do not decode, which are the caller's mistake. This layer turns exactly those
//! (`code: "invalid_arguments"`, set where the error is created) into 400; errors raised by the
//! service already carry their own status.

use crate::domain::{ErrorDetail, INVALID_ARGUMENTS};
use axum::{
    body::Body,
    extract::Request,
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
    Json,
};

/// Server-function error bodies are small; anything bigger is passed through untouched.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub async fn undecodable_arguments_are_bad_requests(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        return Response::from_parts(parts, Body::empty());
    };
    match serde_json::from_slice::<ErrorDetail>(&bytes) {
        Ok(detail) if detail.code == INVALID_ARGUMENTS => {
            (StatusCode::BAD_REQUEST, Json(detail)).into_response()
        }
        _ => Response::from_parts(parts, Body::from(bytes)),
    }
}
