//! One error type for the JSON routes, answered in the one error shape.

use crate::domain::{ErrorBody, ErrorDetail, RequestError, RequestErrorKind};
use crate::server::{auth::Denied, service::ServiceError, store::StoreError};
use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("the body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the body could not be read: {0}")]
    BadBody(String),
    #[error("no ingestion with id {0:?}")]
    NotFound(String),
    #[error("Last-Event-ID must be a non-negative integer")]
    InvalidLastEventId,
    #[error("{0}")]
    InvalidQuery(String),
    #[error("Idempotency-Key must be 1 to 255 visible ASCII characters")]
    InvalidIdempotencyKey,
    #[error("this Idempotency-Key was used with a different request; use a new key")]
    IdempotencyConflict,
    #[error("the queue is full; retry in {retry_after_secs} s")]
    QueueFull { retry_after_secs: u64 },
    #[error("{0}")]
    InvalidRate(String),
    #[error("the request was not answered within {}", humantime::format_duration(*limit))]
    Timeout { limit: std::time::Duration },
    #[error("the body did not arrive within {} once there was room for it", humantime::format_duration(*limit))]
    BodyTooSlow { limit: std::time::Duration },
    #[error(transparent)]
    Denied(Denied),
    #[error("no batch with id {0:?}")]
    BatchNotFound(String),
    #[error("{0}")]
    BatchNotFailed(String),
    #[error("this client has {per_client} event streams open, its most; close one or retry later")]
    TooManyStreams { per_client: usize },
    #[error("the server has as many event streams open as it allows; retry later")]
    StreamsBusy,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// The store cannot be reached (a database outage or failover): retry shortly. Details
    /// are logged, never sent.
    #[error("the store is unavailable; retry shortly")]
    Unavailable(String),
    /// Details are logged, never sent.
    #[error("internal error")]
    Internal(String),
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Request(e) => ApiError::Request(e),
            ServiceError::NotFound(id) => ApiError::NotFound(id),
            ServiceError::Store(e @ StoreError::Unavailable(_)) => {
                ApiError::Unavailable(e.to_string())
            }
            ServiceError::Store(e) => ApiError::Internal(e.to_string()),
            ServiceError::InvalidIdempotencyKey => ApiError::InvalidIdempotencyKey,
            ServiceError::IdempotencyConflict => ApiError::IdempotencyConflict,
            ServiceError::QueueFull { retry_after_secs } => {
                ApiError::QueueFull { retry_after_secs }
            }
            e @ ServiceError::InvalidRate => ApiError::InvalidRate(e.to_string()),
            ServiceError::BatchNotFound(id) => ApiError::BatchNotFound(id),
            e @ ServiceError::BatchNotFailed(_) => ApiError::BatchNotFailed(e.to_string()),
            ServiceError::InvalidFilter(why) => ApiError::InvalidQuery(why),
        }
    }
}

impl ApiError {
    /// The error as the body's `error` field (and as server functions answer it), with the
    /// status it is sent with. Internal details are logged here and never sent.
    pub fn into_detail(self) -> (StatusCode, ErrorDetail) {
        if let ApiError::Internal(detail) | ApiError::Unavailable(detail) = &self {
            tracing::error!(error = %detail, "request failed");
        }
        let (status, code) = self.status_and_code();
        (
            status,
            ErrorDetail {
                code: code.into(),
                message: self.to_string(),
            },
        )
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Request(e) => (
                match e.kind() {
                    RequestErrorKind::Malformed => StatusCode::BAD_REQUEST,
                    RequestErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
                    RequestErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                },
                e.code(),
            ),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ApiError::BadBody(_) => (StatusCode::BAD_REQUEST, "bad_body"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::InvalidLastEventId => (StatusCode::BAD_REQUEST, "invalid_last_event_id"),
            ApiError::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            ApiError::InvalidIdempotencyKey => (StatusCode::BAD_REQUEST, "invalid_idempotency_key"),
            ApiError::IdempotencyConflict => {
                (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
            }
            ApiError::QueueFull { .. } => (StatusCode::TOO_MANY_REQUESTS, "queue_full"),
            ApiError::InvalidRate(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_rate_interval"),
            ApiError::Timeout { .. } | ApiError::BodyTooSlow { .. } => {
                (StatusCode::REQUEST_TIMEOUT, "request_timeout")
            }
            ApiError::BatchNotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::BatchNotFailed(_) => (StatusCode::CONFLICT, "batch_not_failed"),
            ApiError::Denied(Denied::ReadOnly) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Denied(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::TooManyStreams { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_streams"),
            ApiError::StreamsBusy => (StatusCode::SERVICE_UNAVAILABLE, "streams_busy"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use axum::http::{header, HeaderValue};
        // A refused stream's connection is closed: the client would only try again, and an
        // idle connection kept for it would hold a slot that requests need.
        let close = matches!(
            self,
            ApiError::TooManyStreams { .. } | ApiError::StreamsBusy
        );
        let extra = match &self {
            ApiError::QueueFull { retry_after_secs } => {
                Some((header::RETRY_AFTER, HeaderValue::from(*retry_after_secs)))
            }
            ApiError::Unavailable(_) => Some((header::RETRY_AFTER, HeaderValue::from(1))),
            ApiError::TooManyStreams { .. } | ApiError::StreamsBusy => Some((
                header::RETRY_AFTER,
                HeaderValue::from(super::streams::RETRY_AFTER_SECS),
            )),
            ApiError::Denied(Denied::Missing | Denied::Invalid) => Some((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sluice\""),
            )),
            _ => None,
        };
        let (status, error) = self.into_detail();
        let mut response = (status, Json(ErrorBody::new(error))).into_response();
        if let Some((name, value)) = extra {
            response.headers_mut().insert(name, value);
        }
        if close {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A path segment that names a resource. One that is not UTF-8 once percent-decoded names
/// nothing: it is answered like any malformed id (404 in the one error shape), never with the
/// framework's plain-text 400.
pub(super) struct Segment(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Segment {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let decoded = axum::extract::Path::<String>::from_request_parts(parts, state).await;
        Ok(Segment(match decoded {
            Ok(axum::extract::Path(segment)) => segment,
            Err(_) => char::REPLACEMENT_CHARACTER.to_string(),
        }))
    }
}
