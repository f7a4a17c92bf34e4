//! Status codes of server-function calls.
//!
//! The server-function machinery answers every error it raises itself with 500, including
//! arguments that do not decode, which are the caller's mistake. This layer turns exactly those
//! (`code: "invalid_arguments"`, set where the error is created) into 400; errors raised by the
//! service already carry their own status.
//!
//! It also checks, before decoding, that a server function's arguments are a JSON object within
//! the body limit: serde would otherwise read a struct from an array too (`[]` as "no
//! arguments"), which the documented object schema does not allow.

use crate::domain::{ErrorDetail, INVALID_ARGUMENTS};
use axum::{
    body::Body,
    extract::{Request, State},
    http::{Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    Json,
};

/// Server-function error bodies are small; anything bigger is passed through untouched.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub async fn undecodable_arguments_are_bad_requests(
    State(max_body): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let request = if request.method() == Method::POST && request.uri().path().starts_with("/api/") {
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, max_body).await else {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the arguments are over the {max_body}-byte limit, or were not received"),
            );
        };
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return refuse(
                StatusCode::BAD_REQUEST,
                INVALID_ARGUMENTS,
                "the arguments must be a JSON object".into(),
            );
        }
        Request::from_parts(parts, Body::from(bytes))
    } else {
        request
    };
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

fn refuse(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(ErrorDetail {
            code: code.into(),
            message,
        }),
    )
        .into_response()
}
