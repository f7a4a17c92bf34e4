//! The JSON routes. Handlers only translate HTTP to service calls and back; every rule lives
//! in the service and the domain.

mod admin;
mod cors;
mod error;
mod events;
mod health;
mod ingest;
mod query;
mod queue;
mod server_fns;
mod status;
mod timeout;

pub use cors::cors;
pub use error::ApiError;
pub use server_fns::undecodable_arguments_are_bad_requests;
pub use timeout::request_timeout;

use crate::server::{service::Service, shutdown::Shutdown};
use axum::{
    extract::DefaultBodyLimit,
    routing::{get, post, put},
    Router,
};

/// State shared by the JSON handlers.
#[derive(Clone)]
pub struct ApiState {
    pub service: Service,
    pub max_body_bytes: usize,
    /// Ends event streams, so a graceful shutdown does not wait on them forever.
    pub shutdown: Shutdown,
}

/// `POST /ingest`, `GET /status/{ingestion_id}`, `GET /ingestions`, `GET /queue` and the event
/// streams, with the body limit
/// and JSON 405s.
pub fn router<S>(state: ApiState) -> Router<S> {
    let body_limit = state.max_body_bytes;
    Router::new()
        .route(
            "/ingest",
            post(ingest::ingest).layer(DefaultBodyLimit::max(body_limit)),
        )
        .route("/status/{ingestion_id}", get(status::status))
        .route("/ingest/{ingestion_id}/cancel", post(status::cancel))
        .route("/admin/pause", post(admin::pause))
        .route("/admin/resume", post(admin::resume))
        .route("/admin/rate", put(admin::rate))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/ingestions", get(queue::recent))
        .route("/queue", get(queue::queue))
        .route("/events", get(events::all))
        .route("/status/{ingestion_id}/events", get(events::one_ingestion))
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
}
